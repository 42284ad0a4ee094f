import ArgumentParser
import Foundation
import Lifeline
import LifelineCore

extension LifelineCommand {
    /// `lifeline recovery-line FILE [--json]`
    struct RecoveryLineCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "recovery-line",
            abstract: "Find the latest consistent recovery line of a checkpoint/message history, or of a run.",
            discussion: """
            FILE is JSON: {"processes": [["S:u", "C", "S:v", "F"], ["R:u", "C", "R:v"], …]} with events C (a checkpoint; \
            0 is implicit at the start), S:NAME, R:NAME and F (a failure, last only). Given the run directory of a job \
            run with --checkpoint independent, it analyses the run's records instead: each rank's checkpoints and \
            dependencies, the checkpoint-only line, the line a failure of each rank would give now, useless \
            checkpoints, and the recovery lines the run used.
            """)

        @Argument(help: "The history (JSON), or the run directory of an independent-mode run.")
        var file: String
        @Flag(help: "Print the line as JSON.")
        var json = false

        func run() throws {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue {
                let analysis = try IndependentRunAnalysis(runDirectory: absolute(file))
                print(json ? analysis.json : analysis.text)
                return
            }
            guard let data = FileManager.default.contents(atPath: file) else {
                throw LifelineError(.configuration, "cannot read \(file)")
            }
            guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                  let processes = object["processes"] as? [[String]]
            else {
                throw LifelineError(.configuration,
                    "\(file) is not a history: expected {\"processes\": [[\"C\", \"S:m\", …], …]} with string events")
            }
            let history: RecoveryHistory
            do {
                history = try RecoveryHistory(processes)
            } catch {
                throw LifelineError(.configuration, "\(file): \(error)")
            }
            let line = history.latestLine()
            if json {
                let entries = line.checkpoints.enumerated().map { process, checkpoint in
                    "{\"process\":\(process),\"checkpoint\":\(checkpoint.map(String.init) ?? "null")}"
                }
                let transit = line.inTransit.map { "\"\($0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" }
                print("{\"line\":[\(entries.joined(separator: ","))],\"inTransit\":[\(transit.joined(separator: ","))],\"domino\":\(line.isDomino)}")
                return
            }
            for (process, checkpoint) in line.checkpoints.enumerated() {
                print(checkpoint.map { "process \(process): rolls back to checkpoint \($0)" } ?? "process \(process): keeps its current state")
            }
            print(line.inTransit.isEmpty ? "no message in transit" : "in transit: \(line.inTransit.joined(separator: ", "))")
            if line.isDomino { print("domino effect: every process that rolls back returns to its start (checkpoint 0)") }
        }
    }
}
