import Foundation
import LifelineStorage
import Testing

extension RecoveryTests {
    /// The newest line's snapshot is damaged on both mirrors while the supervisor is down:
    /// `resume` says so, falls back to the previous line, and still finishes with the
    /// failure-free result.
    @Test func bothMirrorsDamagedFallsBackToPreviousLine() throws {
        let result = try JobRunner.runHeat("fallback", ["--inject", "kill:supervisor,epoch=2"])
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
        // The damaged line belongs to the execution given up: the manifest no longer lists it.
        let manifest = try Levels.manifest(result.runDirectory)
        #expect(!manifest.committed.contains { $0.epoch == UInt64(newest) }, "\(manifest.committed.map(\.epoch))")
    }
}

extension RecoveryTests {
    /// Pessimistic logging, and the hung rank's message log is damaged on both mirrors while it
    /// is stopped: a lone replay would not reproduce what it delivered, so the supervisor says
    /// so and rolls every rank back instead; the job still ends with the failure-free result.
    @Test func messageLogLostOnBothMirrorsFallsBackToGlobalRollback() throws {
        let runDirectory = JobRunner.scratch("log-lost") + "/run"
        let arguments = ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet",
                         "--logging", "pessimistic", "--inject", "hang:rank=1,after=1500ms",
                         "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "2500", "--"] + JobRunner.heat
        let result = try JobRunner.lifeline(arguments, runDirectory: runDirectory) { _ in
            JobRunner.waitForEvents(runDirectory, containing: "\"fault_injected\"")
            // The rank is stopped: nothing rewrites its log until the supervisor has decided.
            for root in ["storage-a", "storage-b"] {
                let path = try #require(JobRunner.logSegments(runDirectory, root: root, rank: 1).first)
                var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
                bytes[8] ^= 0x5A  // the first-record index: the header checksum fails
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            }
        }
        let stderr = result.stderr
        #expect(result.status == 0, "\(stderr)")
        #expect(result.resultLines == [Self.oracle])
        let fallback = result.events("fallback_global_rollback").first
        #expect(fallback?["rank"] as? Int == 1)
        #expect((fallback?["reason"] as? String)?.contains("message log cannot be replayed") == true, "\(result.events("fallback_global_rollback"))")
        #expect(result.events("recovery_start").first?["mode"] as? String == "global-rollback")
        #expect(stderr.contains("falling back to global rollback"), "\(stderr)")
    }
}

extension RecoveryTests {
    /// Stray names in a run directory (an output file naming the last incarnation there is, an
    /// epochs folder numbered past any job) make `resume` refuse in one line, instead of
    /// overflowing its numbering; without them the same run resumes to the failure-free bits.
    @Test func strayNamesInTheRunDirectoryAreRefusedInOneLine() throws {
        let result = try JobRunner.runHeat("stray-names", ["--inject", "kill:supervisor,epoch=2"])
        #expect(result.status != 0)
        let strays = [
            result.runDirectory + "/output/rank-0.\(UInt32.max).out",
            result.runDirectory + "/storage-a/epochs/\(UInt64(Int64.max))",
        ]
        for stray in strays {
            if stray.hasSuffix(".out") {
                try Data().write(to: URL(fileURLWithPath: stray))
            } else {
                try FileManager.default.createDirectory(atPath: stray, withIntermediateDirectories: true)
            }
            let refused = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
            #expect((1...4).contains(refused.status), "\(stray): \(refused.stderr)")
            #expect(refused.stderr.contains("past the"), "\(stray): \(refused.stderr)")
            try FileManager.default.removeItem(atPath: stray)
        }
        let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
    }
}
