import ArgumentParser
import Foundation
import Lifeline
import LifelineCore

extension LifelineCommand {
    /// `lifeline resume RUN_DIR`
    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Continue a job whose supervisor died or stopped, from its last committed checkpoint, on the same or another number of ranks.")

        @Argument(help: "The run directory of the job.")
        var runDirectory: String
        @OptionGroup var faults: InjectionOptions
        @Option(name: [.customShort("n"), .long], help: ArgumentHelp(
            "The number of ranks to continue on. Another count than the job's restores the newest line onto it, if the program's state conforms to Redistributable and every rank wrote the line at one step; otherwise nothing changes.",
            valueName: "M"))
        var ranks: Int?
        @Option(help: ArgumentHelp("New hosts for a job on several hosts (one was lost, or others are free), in place of those it ran on.", valueName: "H1,H2,…"))
        var hosts: String?
        @Option(help: ArgumentHelp("The same from a file: one host a line, optionally with slots=K.", valueName: "FILE"))
        var hostfile: String?
        @Option(help: ArgumentHelp("Checkpoint and stop before this much time has passed (e.g. 30m), in place of the walltime the job was started with, from this resume on; none: no walltime.", valueName: "DURATION|none"))
        var walltime: String?

        func run() throws {
            var newWalltime: Job.Walltime?
            if let walltime {
                newWalltime = walltime == "none" ? Job.Walltime.none : .seconds(try positiveSeconds(walltime, option: "--walltime"))
            }
            finish(try Job.resume(
                runDirectory: absolute(runDirectory), injections: faults.injections, rankCount: ranks,
                hosts: try parseHosts(hosts, hostfile: hostfile), walltime: newWalltime))
        }
    }
}
