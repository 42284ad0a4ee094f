import Foundation
@testable import Lifeline
import Testing

/// What `lifeline inspect` makes of failed drains under levels with minimal checkpoints, read
/// from a run directory written here: a failed drain belongs to every line holding that
/// snapshot, not only to the line of the round it was taken in.
struct RunSummaryLevelsTests {
    @Test func aFailedDrainOfAKeptSnapshotMarksEveryLineThatHoldsIt() throws {
        let directory = JobRunner.scratch("summary-levels")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = JobConfiguration(program: "heat2d", rankCount: 2, runDirectory: directory, checkpointing: .minimal)
        configuration.memoryLevel = true
        try configuration.save()
        // Round 1: both ranks write; rank 1's drain fails. Round 2: rank 0 writes, rank 1 keeps
        // its snapshot of round 1. Round 3 aborts after rank 0's drain of it failed (drains may
        // run before the commit). Round 4: both write and drain.
        let events: [[String: Any]] = [
            ["t": 1.0, "event": "commit", "epoch": 1, "step": 10, "level": "memory", "wrote": "0,1", "kept": "", "kept_from": ""],
            ["t": 1.1, "event": "drain_failed", "rank": 1, "epoch": 1, "reason": "no space"],
            ["t": 2.0, "event": "commit", "epoch": 2, "step": 20, "level": "memory", "wrote": "0", "kept": "1", "kept_from": "1"],
            ["t": 2.5, "event": "drain_failed", "rank": 0, "epoch": 3, "reason": "no space"],
            ["t": 2.6, "event": "abort", "epoch": 3, "reason": "rank 1 failed"],
            ["t": 4.0, "event": "commit", "epoch": 4, "step": 40, "level": "memory", "wrote": "0,1", "kept": "", "kept_from": ""],
            ["t": 4.2, "event": "drained", "epoch": 4, "bytes": 100, "after_commit_s": 0.2],
        ]
        let lines = try events.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: directory + "/events.jsonl", atomically: true, encoding: .utf8)

        let summary = try RunSummary(runDirectory: directory)
        #expect(summary.commitsDetail.map(\.drainFailedRanks) == [[1], [1], []], "\(summary.commitsDetail.map(\.drainFailedRanks))")
        #expect(summary.commitsDetail.map { RunSummary.levelText($0) } == [
            "memory alone (the drain failed: rank 1)", "memory alone (the drain failed: rank 1)", "memory, on disk 0.200 s later",
        ])
        #expect(summary.drainsFailed == 2, "rank 1's of round 1, and rank 0's of the aborted round 3")
    }
}
