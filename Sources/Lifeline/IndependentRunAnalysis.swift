import Foundation
import LifelineCore
import LifelineStorage

/// `lifeline recovery-line RUN_DIR`: what the records of a run under `--checkpoint independent`
/// say about its recovery lines — each rank's checkpoints with their dependency vectors, the
/// line of checkpoints only (no later recovery line can be older), the line a failure of each
/// rank alone would give now, the checkpoints no line can use, and the lines the run used.
/// Reads the run directory without changing it.
package struct IndependentRunAnalysis: Sendable {
    /// A recovery the run went through, from its event log.
    package struct Recovery: Sendable {
        /// Seconds since the job started.
        package var time: Double
        /// The entry per rank: a checkpoint index, or nil when the rank kept its state.
        package var line: [Int?]
        /// Whether every rank that rolled back went back to the start.
        package var domino: Bool
    }

    /// The number of ranks.
    package var rankCount: Int
    /// Per rank, its recorded checkpoints (those of its current execution).
    package var records: [[IndependentCheckpoint]]
    /// Per rank, the checkpoint of the line of checkpoints only.
    package var checkpointOnlyLine: [Int]
    /// Per rank r, the line if r alone failed now (the others' current intervals taken to
    /// depend on nothing, which their records cannot tell).
    package var lineIfFails: [[Int?]]
    /// Per rank, the recorded checkpoints no consistent line can contain.
    package var useless: [[Int]]
    /// The recovery lines the run used.
    package var recoveries: [Recovery]

    /// Reads the run in `runDirectory`; refuses one that did not run under independent
    /// checkpointing.
    package init(runDirectory: String) throws {
        let configuration = try JobConfiguration.load(runDirectory: runDirectory)
        guard configuration.checkpointing == .independent else {
            throw LifelineError(.configuration,
                "\(runDirectory) ran with --checkpoint \(configuration.checkpointing.rawValue): its recovery lines are its committed rounds (see `lifeline inspect`); recovery-line analyses runs with --checkpoint independent")
        }
        let manifest: Manifest?
        do {
            let store = try StorageRoots.open(configuration.storageRoots, fills: false, creating: false)
            manifest = try ManifestStore(store: store).load(repair: false)
        } catch {
            throw LifelineError(.storage, "cannot read the manifest of \(runDirectory): \(error)")
        }
        rankCount = configuration.rankCount
        records = manifest?.independent ?? Array(repeating: [], count: rankCount)
        let planner = IntervalDependencies(records: records)
        checkpointOnlyLine = planner.checkpointOnlyLine()
        let count = rankCount
        lineIfFails = (0..<count).map { failed in
            planner.latestLine(failed: [failed], volatile: (0..<count).map { $0 == failed ? nil : Array(repeating: -1, count: count) })
        }
        useless = planner.uselessCheckpoints()
        let text = (try? String(contentsOfFile: runDirectory + "/events.jsonl", encoding: .utf8)) ?? ""
        recoveries = text.split(separator: "\n").compactMap { line -> Recovery? in
            guard let event = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  event["event"] as? String == "recovery_line", let entries = event["line"] as? String
            else { return nil }
            return Recovery(time: event["t"] as? Double ?? 0, line: entries.split(separator: ",").map { Int($0) },
                            domino: event["domino"] as? Bool ?? false)
        }
    }

    private static func describe(_ line: [Int?]) -> String {
        line.enumerated().map { rank, entry in entry.map { "rank \(rank) → checkpoint \($0)" } ?? "rank \(rank) keeps its state" }
            .joined(separator: "; ")
    }

    /// The analysis in words.
    package var text: String {
        var lines: [String] = []
        for (rank, list) in records.enumerated() {
            let kept = list.filter { $0.snapshot != nil }.map { "\($0.index)@\($0.step)" }
            lines.append("rank \(rank): \(list.count) checkpoints recorded, on disk: \(kept.isEmpty ? "none" : kept.joined(separator: " ")) (index@step)")
            for record in list {
                let vector = record.dependencies.enumerated().filter { $0.element >= 0 }.map { "rank \($0.offset) interval \($0.element)" }
                lines.append("  checkpoint \(record.index) at step \(record.step): depends on " + (vector.isEmpty ? "nothing" : vector.joined(separator: ", "))
                             + (useless[rank].contains(record.index) ? " — useless (a Z-cycle runs through it)" : ""))
            }
        }
        lines.append("checkpoint-only line (no later recovery line can be older): "
                     + checkpointOnlyLine.enumerated().map { "rank \($0.offset) → checkpoint \($0.element)" }.joined(separator: "; "))
        if checkpointOnlyLine.allSatisfy({ $0 == 0 }), records.contains(where: { !$0.isEmpty }) {
            lines.append("domino effect: with every rank failed, the line is the start of the job")
        }
        for (rank, line) in lineIfFails.enumerated() {
            lines.append("if rank \(rank) failed now: " + Self.describe(line))
        }
        for recovery in recoveries {
            lines.append(String(format: "recovery at %.3f s: ", recovery.time) + Self.describe(recovery.line)
                         + (recovery.domino ? " (domino: back to the start)" : ""))
        }
        return lines.joined(separator: "\n")
    }

    /// The analysis as one JSON object.
    package var json: String {
        func entries(_ line: [Int?]) -> [Any] { line.map { $0.map { $0 as Any } ?? NSNull() } }
        let object: [String: Any] = [
            "ranks": rankCount,
            "checkpoints": records.map { list in
                list.map { record -> [String: Any] in
                    ["index": record.index, "step": record.step, "dependencies": record.dependencies,
                     "onDisk": record.snapshot != nil]
                }
            },
            "checkpointOnlyLine": checkpointOnlyLine,
            "lineIfFails": lineIfFails.map(entries),
            "useless": useless,
            "recoveries": recoveries.map { ["t": $0.time, "line": entries($0.line), "domino": $0.domino] as [String: Any] },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
