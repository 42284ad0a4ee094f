import ArgumentParser
import Foundation
import Lifeline

extension LifelineCommand {
    /// `lifeline timeline RUN_DIR [-o FILE]`
    struct TimelineCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "timeline",
            abstract: "Draw a run as a space-time diagram (a self-contained HTML page).")

        @Argument(help: "The run directory.")
        var runDirectory: String
        @Option(name: [.customShort("o"), .long], help: "The page to write (default RUN_DIR/timeline.html).")
        var output: String?

        func run() throws {
            let directory = absolute(runDirectory)
            let path = absolute(output ?? directory + "/timeline.html")
            let page = try Timeline(runDirectory: directory).html
            do {
                try Data(page.utf8).write(to: URL(fileURLWithPath: path))
            } catch {
                throw LifelineError(.configuration, "cannot write \(path): \(error.localizedDescription)")
            }
            print(path)
        }
    }
}
