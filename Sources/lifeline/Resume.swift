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

        func run() throws {
            finish(try Job.resume(runDirectory: absolute(runDirectory), injections: faults.injections))
        }
    }
}
