import Foundation
import Testing

extension RecoveryTests {
    /// The newest line's snapshot is damaged on both mirrors while the supervisor is down:
    /// `resume` says so, falls back to the previous line, and still finishes with the
    /// failure-free result.
    @Test func bothMirrorsDamagedFallsBackToPreviousLine() throws {
        let result = try JobRunner.runHeat("fallback", ["--inject", "kill:supervisor,after=2200ms"])
        #expect(result.status != 0)
        let commits = result.events("commit").compactMap { $0["epoch"] as? Int }
        try #require(commits.count >= 2, "need two committed lines, got \(commits)")
        let newest = commits.max()!
        let name = String(format: "epochs/%06d/rank-0001.snap", newest)
        for root in ["storage-a", "storage-b"] {
            let path = result.runDirectory + "/" + root + "/" + name
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0x5A
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        #expect(resumed.stderr.contains("falling back"), "stderr: \(resumed.stderr)")
        let fallback = resumed.events("fallback").last?["epoch"] as? Int
        #expect(fallback != nil && fallback! < newest, "fell back to \(String(describing: fallback)), newest \(newest)")
    }
}
