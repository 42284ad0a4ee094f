import ArgumentParser
import Foundation
import Lifeline

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

        func run() throws {
            finish(try Job.resume(runDirectory: absolute(runDirectory), injections: faults.injections, rankCount: ranks))
        }
    }
}
