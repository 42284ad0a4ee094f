import ArgumentParser
import Foundation
import Lifeline

extension LifelineCommand {
    /// `lifeline resume RUN_DIR`
    struct Resume: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Continue a job whose supervisor died, from its last committed checkpoint.")

        @Argument(help: "The run directory of the job.")
        var runDirectory: String
        @OptionGroup var faults: InjectionOptions
        @Option(name: [.customShort("n"), .long], help: "The job's number of ranks (checked, not changed).")
        var ranks: Int?

        func run() throws {
            finish(try Job.resume(runDirectory: absolute(runDirectory), injections: faults.injections, rankCount: ranks))
        }
    }
}
