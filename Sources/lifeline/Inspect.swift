import ArgumentParser
import Foundation
import Lifeline

extension LifelineCommand {
    /// `lifeline inspect RUN_DIR [--json]`
    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Summarize a run: checkpoints, failures and their recovery, time lost, mirror health.")

        @Argument(help: "The run directory.")
        var runDirectory: String
        @Flag(help: "One JSON object instead of text.")
        var json = false

        func run() throws {
            let summary = try RunSummary(runDirectory: absolute(runDirectory))
            print(json ? summary.json : summary.text)
        }
    }
}
