import Foundation
import LifelineCore
import LifelineStorage
import Testing

/// Real processes, real SIGKILLs: heat2d on 4 ranks must finish with the failure-free hash
/// whatever is injected. Serialized: several multi-process jobs at once on 2 cores would trip
/// heartbeat timeouts.
@Suite(.serialized)
struct RecoveryTests {
    /// The failure-free result, computed once.
    static let oracle: String = {
        let result = try! JobRunner.runHeat("oracle")
        precondition(result.status == 0, "the failure-free run failed: \(result.stderr)")
        precondition(result.resultLines.count == 1, "the failure-free run printed \(result.resultLines)")
        return result.resultLines[0]
    }()

    private func expectRecovered(_ result: JobRunner.Result, failures: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 0, "lifeline failed: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.resultLines == [Self.oracle], "stdout: \(result.stdout)", sourceLocation: sourceLocation)
        #expect(result.events("failure").count == failures, sourceLocation: sourceLocation)
        #expect(result.events("recovery_done").count == failures, sourceLocation: sourceLocation)
        let last = result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        #expect(last.hasPrefix("lifeline: finished ranks=4 epochs="), "last line: \(last)", sourceLocation: sourceLocation)
        #expect(last.hasSuffix("failures=\(failures) recoveries=\(failures)"), "last line: \(last)", sourceLocation: sourceLocation)
    }

    @Test func sameBitsForEveryRankCount() throws {
        for ranks in [1, 3] {
            let result = try JobRunner.runHeat("ranks\(ranks)", ranks: ranks)
            #expect(result.status == 0, "\(ranks) ranks: \(result.stderr)")
            #expect(result.resultLines == [Self.oracle], "\(ranks) ranks")
        }
    }

    @Test func killAtStep() throws {
        let result = try JobRunner.runHeat("step", ["--inject", "kill:rank=1,step=400"])
        expectRecovered(result, failures: 1)
        #expect(result.events("fault_injected").first?["spec"] as? String == "kill:rank=1,step=400")
        #expect(!result.events("commit").isEmpty, "no checkpoint committed, so nothing was restored")
        // The rolled-back rank says when it is back at step 400, after every rank restored.
        Self.expectCaughtUp(result, rank: 1, step: 400)
    }

    /// `caught_up` for `rank` at `step`: once, after the recovery's end (counted from the
    /// same start, so its duration is no shorter), and after the failure in the log.
    static func expectCaughtUp(_ result: JobRunner.Result, rank: Int, step: Int, sourceLocation: SourceLocation = #_sourceLocation) {
        let caughtUp = result.events("caught_up").filter { $0["rank"] as? Int == rank }
        #expect(caughtUp.count == 1 && caughtUp.first?["step"] as? Int == step, "\(caughtUp)", sourceLocation: sourceLocation)
        let seconds = caughtUp.first?["duration_s"] as? Double ?? -1
        let recovered = result.events("recovery_done").first?["duration_s"] as? Double ?? .infinity
        #expect(seconds >= recovered, "back at step \(step) \(seconds) s after the recovery started, restored after \(recovered) s",
                sourceLocation: sourceLocation)
        let failed = result.events("failure").first?["t"] as? Double ?? .infinity
        #expect((caughtUp.first?["t"] as? Double ?? 0) > failed, sourceLocation: sourceLocation)
    }

    /// Both transports between ranks of one host carry a run with a kill to the failure-free
    /// bits: by a global rollback, and with a rank that restarts alone and replays (its peers
    /// connect to its new incarnation: new connections, and new rings under shared memory).
    @Test(arguments: ["sockets", "shared-memory"], ["none", "pessimistic"])
    func eachTransportRecovers(transport: String, logging: String) throws {
        let result = try JobRunner.runHeat("transport-\(transport)-\(logging)",
                                           ["--transport", transport, "--logging", logging, "--inject", "kill:rank=1,step=400"])
        expectRecovered(result, failures: 1)
        #expect(result.events("job_start").first?["transport"] as? String == transport)
    }

    /// Small chunks at another zstd level: the snapshots are cut as asked, and a
    /// kill still recovers the failure-free result.
    @Test func chunkSizeAndLevelFollowTheOptions() throws {
        let result = try JobRunner.runHeat("chunks", ["--chunk-kib", "4", "--zstd-level", "-3",
                                                      "--inject", "kill:rank=1,step=400"])
        expectRecovered(result, failures: 1)
        let store = try MirroredStore(rootA: result.runDirectory + "/storage-a", rootB: result.runDirectory + "/storage-b")
        let snapshots = ChunkedSnapshots(store: store)
        let indexes = store.list("epochs").flatMap { epoch in
            store.list("epochs/" + epoch).map { (try? snapshots.index("epochs/\(epoch)/\($0)")) }
        }
        #expect(!indexes.isEmpty)
        for index in indexes {
            #expect(index?.chunkBytes == 4 << 10, "an index was not cut into 4 KiB chunks")
            #expect(index?.chunks.allSatisfy { $0.length <= 4 << 10 } == true)
        }
        // A rank's state (12 × 48 doubles) is longer than one chunk.
        #expect(indexes.contains { $0?.chunks.contains { $0.length == 4 << 10 } == true })
    }

    @Test func killDuringCheckpoint() throws {
        let result = try JobRunner.runHeat("phase", ["--inject", "kill:rank=2,phase=checkpoint"])
        expectRecovered(result, failures: 1)
        let aborts = result.events("abort")
        #expect(!aborts.isEmpty, "the round the rank died in must be aborted")
    }

    @Test func killAtSeededTime() throws {
        let seed = JobRunner.seed("recovery")
        var generator = SplitMix64(seed: seed)
        let milliseconds = Int.random(in: 300...1800, using: &generator)
        let rank = Int.random(in: 0..<4, using: &generator)
        let result = try JobRunner.runHeat("time", ["--inject", "kill:rank=\(rank),after=\(milliseconds)ms"])
        #expect(result.events("failure").count == 1, "seed \(seed): the fault did not fire once")
        #expect(result.status == 0, "seed \(seed): \(result.stderr)")
        #expect(result.resultLines == [Self.oracle], "seed \(seed)")
    }

    @Test func chaosKillsAtSeededIntervals() throws {
        let seed = JobRunner.seed("chaos", below: 1000)
        let result = try JobRunner.runHeat("chaos", ["--inject", "chaos:seed=\(seed),mtbf=1200ms", "--max-restarts", "50"])
        #expect(result.status == 0, "seed \(seed): \(result.stderr)")
        #expect(result.resultLines == [Self.oracle], "seed \(seed)")
        #expect(result.events("fault_injected").allSatisfy { $0["spec"] as? String == "chaos" }, "seed \(seed)")
    }

    @Test func hungRankIsFoundByHeartbeat() throws {
        let result = try JobRunner.runHeat("hang", [
            "--inject", "hang:rank=3,after=800ms", "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1500",
        ])
        expectRecovered(result, failures: 1)
        #expect(result.events("hang_detected").count == 1)
    }

    @Test func blockingVariantRecovers() throws {
        let result = try JobRunner.runHeat("blocking", [
            "--checkpoint", "blocking", "--inject", "kill:rank=0,step=450", "--inject", "kill:rank=3,phase=checkpoint",
        ])
        expectRecovered(result, failures: 2)
    }

    @Test func resultPrintedOnceWhenRankDiesAfterPrinting() throws {
        let result = try JobRunner.runHeat("finish", ["--inject", "kill:rank=0,phase=finish"])
        expectRecovered(result, failures: 1)
        let output = try String(contentsOfFile: result.runDirectory + "/output/rank-0.0.out", encoding: .utf8)
        #expect(output.contains("result sha256="), "rank 0 had printed before it was killed")
    }

    @Test func programFailingEveryTimeStops() throws {
        let runDirectory = JobRunner.scratch("false") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "2", "--run-dir", runDirectory, "--quiet", "--", "/bin/false"], runDirectory: runDirectory)
        #expect(result.status == 1)
        #expect(result.stderr.contains("on every attempt"), "stderr: \(result.stderr)")
        #expect(result.events("failure").count == 2)
    }

    @Test func supervisorKilledLeavesNoRankAndResumeFinishes() throws {
        let result = try JobRunner.runHeat("resume", ["--inject", "kill:supervisor,after=1500ms"])
        #expect(result.status != 0)
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
            .split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int32($0) } }
        #expect(pids.count == 4)
        let deadline = Date().addingTimeInterval(10)
        while pids.contains(where: JobRunner.isRunning), Date() < deadline { usleep(50_000) }
        #expect(!pids.contains(where: JobRunner.isRunning), "ranks outlived their supervisor")
        let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        #expect(!resumed.events("resume").isEmpty)
    }
}

