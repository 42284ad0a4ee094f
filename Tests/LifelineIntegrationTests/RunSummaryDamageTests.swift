import Foundation
@testable import Lifeline
import Testing

/// `lifeline inspect` and `timeline` on a run directory whose files were damaged (by hand, a
/// disk, or a stranger): one clear line or a summary, never a trap. Found by mutating the
/// fields of a real run's `job.json` and `events.jsonl` at random.
struct RunSummaryDamageTests {
    /// A `job.json` naming a rank count no job has, or storage roots that are not two, is
    /// refused in one line that names the file (before, readers sized arrays by it and trapped).
    @Test(arguments: [
        (-1, 2), (0, 2), (Int.max, 2), (2, 0), (2, 3),
    ])
    func aDamagedJobFileIsSaidInOneLine(rankCount: Int, roots: Int) throws {
        let directory = JobRunner.scratch("summary-damaged-job")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try JobConfiguration(program: "heat2d", rankCount: 2, runDirectory: directory).save()
        var fields = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/job.json"))) as? [String: Any])
        fields["rankCount"] = rankCount
        fields["storageRoots"] = (0..<roots).map { "storage-\($0)" }
        try JSONSerialization.data(withJSONObject: fields).write(to: URL(fileURLWithPath: directory + "/job.json"))
        do {
            _ = try RunSummary(runDirectory: directory)
            Issue.record("a job.json with \(rankCount) ranks and \(roots) roots was taken")
        } catch let error as LifelineError {
            #expect("\(error)".contains("job.json is damaged"), "\(error)")
            #expect(!"\(error)".contains("\n"))
        }
    }

    /// A field of the wrong type names the field (before: "not a Lifeline run directory").
    @Test func aFieldOfTheWrongTypeIsNamed() throws {
        let directory = JobRunner.scratch("summary-damaged-field")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try JobConfiguration(program: "heat2d", rankCount: 2, runDirectory: directory).save()
        var fields = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: directory + "/job.json"))) as? [String: Any])
        fields["rankCount"] = "two"
        try JSONSerialization.data(withJSONObject: fields).write(to: URL(fileURLWithPath: directory + "/job.json"))
        #expect {
            _ = try RunSummary(runDirectory: directory)
        } throws: { error in
            "\(error)".contains("job.json is damaged (field rankCount: ")
        }
    }

    /// Byte counts in events that add up past the largest integer read as that integer (before,
    /// the sum trapped).
    @Test func byteCountsPastTheLargestIntegerSaturate() throws {
        let directory = JobRunner.scratch("summary-damaged-events")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = JobConfiguration(program: "heat2d", rankCount: 2, runDirectory: directory)
        configuration.memoryLevel = true
        try configuration.save()
        let events: [[String: Any]] = [
            ["t": 1.0, "event": "commit", "epoch": 1, "step": 10, "bytes": Int.max, "wrote": "0,1", "kept": "", "kept_from": ""],
            ["t": 1.1, "event": "drained", "epoch": 1, "bytes": Int.max, "after_commit_s": 0.1],
            ["t": 2.0, "event": "commit", "epoch": 2, "step": 20, "bytes": Int.max, "wrote": "0,1", "kept": "", "kept_from": ""],
            ["t": 2.1, "event": "drained", "epoch": 2, "bytes": 5, "after_commit_s": 0.1],
        ]
        let lines = try events.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        try (lines.joined(separator: "\n") + "\n").write(toFile: directory + "/events.jsonl", atomically: true, encoding: .utf8)
        let summary = try RunSummary(runDirectory: directory)
        #expect(summary.commits == 2)
        #expect(summary.checkpointBytes == Int.max)
        #expect(summary.drainedBytes == Int.max)
        #expect(!summary.text.isEmpty && !summary.json.isEmpty)
    }
}
