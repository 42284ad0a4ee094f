import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// The survivors' processes at the end of a run: the last `rank_launched` pid of each rank.
    private func lastPIDs(_ result: JobRunner.Result) -> [Int: Int] {
        var pids: [Int: Int] = [:]
        for event in result.events("rank_launched") {
            if let rank = event["rank"] as? Int, let pid = event["pid"] as? Int { pids[rank] = pid }
        }
        return pids
    }

    /// With logging, the killed rank restarts alone, replays its log, and the job ends with the
    /// failure-free hash; the other ranks keep their processes.
    @Test(arguments: [("pessimistic", "coordinated"), ("pessimistic", "blocking"), ("sender-based", "coordinated"),
                      ("sender-based", "blocking")])
    func loggingRecoversOneRank(logging: String, checkpoint: String) throws {
        let seed = JobRunner.seed("logging")
        var generator = SplitMix64(seed: seed)
        let step = Int.random(in: 150...550, using: &generator)
        let rank = Int.random(in: 0..<4, using: &generator)
        let result = try JobRunner.runHeat("\(logging)-\(checkpoint)", [
            "--logging", logging, "--checkpoint", checkpoint, "--inject", "kill:rank=\(rank),step=\(step)",
        ])
        #expect(result.status == 0, "seed \(seed): \(result.stderr)")
        #expect(result.resultLines == [Self.oracle], "seed \(seed): kill:rank=\(rank),step=\(step)")
        #expect(result.events("failure").count == 1, "seed \(seed)")
        #expect(result.events("recovery_start").first?["mode"] as? String == "replay", "seed \(seed)")
        #expect(result.events("replay_done").contains { $0["rank"] as? Int == rank }, "seed \(seed)")
        let launches = result.events("rank_launched").compactMap { $0["rank"] as? Int }
        #expect(launches.sorted() == ([0, 1, 2, 3] + [rank]).sorted(), "seed \(seed): only rank \(rank) restarts, got \(launches)")
        // heat2d receives from named sources: sender-based logging has nothing to replay (its
        // replay answers no receive, and the rank re-executes live); pessimistic logging answers
        // every receive the rank made since its checkpoint from its log.
        let replayed = result.events("replay_done").first { $0["rank"] as? Int == rank }?["deliveries"] as? Int ?? -1
        #expect(logging == "sender-based" ? replayed == 0 : replayed > 0, "seed \(seed): replayed \(replayed)")
        Self.expectCaughtUp(result, rank: rank, step: step)
    }

    /// The job reports the time during which some rank was making log records durable: no
    /// less than any one rank's own sync time (each rank's appends lie inside it) and no more
    /// than their sum, within the clock reads around each append (the union's stamps are
    /// microseconds, taken just outside the log's own); a job without a log reports none, nor
    /// one under sender-based logging.
    @Test func jobReportsTheUnionOfItsRanksLogSyncs() throws {
        let result = try JobRunner.runHeat("sync-union", ["--logging", "pessimistic"])
        #expect(result.status == 0, "\(result.stderr)")
        let own = result.events("rank_finished").compactMap { $0["log_sync_s"] as? Double }
        #expect(own.count == 4 && own.allSatisfy { $0 > 0 }, "\(result.events("rank_finished"))")
        let union = try #require(result.events("job_finished").first?["log_sync_union_s"] as? Double)
        let appends = result.events("rank_finished").compactMap { $0["log_syncs"] as? Int }.reduce(0, +)
        let slack = 0.001 + Double(appends) * 2e-6
        #expect(union >= own.max()! - slack && union <= own.reduce(0, +) + slack, "union \(union) of \(own), \(appends) syncs")
        let unlogged = try JobRunner.runHeat("sync-union-none", [])
        #expect(unlogged.status == 0, "\(unlogged.stderr)")
        #expect(unlogged.events("job_finished").first?["log_sync_union_s"] == nil)
        // Sender-based ranks keep no log (determinants go to the event logger): none either.
        let senderBased = try JobRunner.runHeat("sync-union-sender", ["--logging", "sender-based"])
        #expect(senderBased.status == 0, "\(senderBased.stderr)")
        #expect(senderBased.events("job_finished").first?["log_sync_union_s"] == nil)
    }

    /// Two ranks killed at the same step (as a lost host's ranks fail together) each restart
    /// alone and replay their own logs side by side, with no global rollback: the failure-free
    /// hash, and the other two ranks keep their processes.
    @Test(arguments: ["pessimistic", "sender-based"])
    func ranksKilledTogetherReplayAloneSideBySide(logging: String) throws {
        let result = try JobRunner.runHeat("together-\(logging)", [
            "--logging", logging, "--inject", "kill:rank=1,step=400", "--inject", "kill:rank=2,step=400",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        #expect(result.events("failure").count == 2)
        #expect(result.events("fallback_global_rollback").isEmpty, "\(result.events("fallback_global_rollback"))")
        let modes = result.events("recovery_start").compactMap { $0["mode"] as? String }
        #expect(modes == ["replay", "replay"], "\(modes)")
        let launches = result.events("rank_launched").compactMap { $0["rank"] as? Int }
        #expect(launches.sorted() == [0, 1, 1, 2, 2, 3], "only ranks 1 and 2 restart, got \(launches)")
        // Each ends on its own, and the summary gives each failure its own recovery.
        #expect(Set(result.events("recovery_done").compactMap { $0["rank"] as? Int }) == [1, 2])
        let inspect = try JobRunner.lifeline(["inspect", result.runDirectory, "--json"], runDirectory: result.runDirectory)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let failures = try #require(summary["failures"] as? [[String: Any]])
        #expect(failures.count == 2 && failures.allSatisfy { $0["recovery"] as? String == "replay" && $0["recoverySeconds"] is Double },
                "\(failures)")
        // And each its own time back at the step it had reached, no sooner than its recovery.
        #expect(failures.allSatisfy { ($0["caughtUpSeconds"] as? Double ?? -1) >= ($0["recoverySeconds"] as? Double ?? .infinity) },
                "\(failures)")
    }

    /// Under optimistic logging two ranks killed at once (by the supervisor, in one turn, as a
    /// host takes its ranks down) are recovered together with the ranks that depend on what
    /// they lost (on a halo exchange, soon every other rank), by one plan and no global
    /// rollback: the failure-free hash.
    @Test func optimisticRanksKilledTogetherRecoverTogether() throws {
        let result = try JobRunner.runHeat("together-optimistic", [
            "--logging", "optimistic", "--inject", "kill:rank=1,after=1200ms", "--inject", "kill:rank=2,after=1200ms",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        #expect(result.events("failure").count == 2)
        #expect(result.events("fallback_global_rollback").isEmpty, "\(result.events("fallback_global_rollback"))")
        #expect(result.events("orphans").count == 1 && result.events("recovery_start").count == 1)
        #expect(result.events("recovery_start").first?["mode"] as? String == "replay")
    }

    /// A second kill of the same rank while it replays: still the failure-free hash, and the
    /// other ranks keep their processes.
    @Test(arguments: ["pessimistic", "sender-based"])
    func loggingSurvivesKillDuringReplay(logging: String) throws {
        let result = try JobRunner.runHeat("replay-kill-\(logging)", [
            "--logging", logging, "--inject", "kill:rank=2,step=400", "--inject", "kill:rank=2,phase=recovery",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        #expect(result.events("failure").count == 2)
        let survivors = lastPIDs(result).filter { $0.key != 2 }
        let first = Dictionary(uniqueKeysWithValues: result.events("rank_launched").prefix(4).compactMap { event -> (Int, Int)? in
            guard let rank = event["rank"] as? Int, let pid = event["pid"] as? Int else { return nil }
            return (rank, pid)
        })
        #expect(survivors == first.filter { $0.key != 2 }, "survivors were restarted")
    }
}

extension RecoveryTests {
    /// With no scheduled checkpoint, small maxima on retained messages and on the log force
    /// checkpoints (asked for at a quarter of the maximum), which trim both: the runtime's own
    /// peaks stay under the maxima instead of growing with the run.
    @Test func retentionAndLogMaximaForceCheckpoints() throws {
        let maximum = 96 << 10
        let result = try JobRunner.runHeat("maxima", [
            "--interval", "1e9", "--logging", "pessimistic",
            "--retained-bytes-max", String(maximum), "--log-bytes-max", String(maximum),
        ])
        #expect(result.resultLines == [Self.oracle], "\(result.stderr)")
        #expect(!result.events("checkpoint_wanted").isEmpty, "no rank asked for a checkpoint")
        #expect(result.events("commit").count >= 3, "the maxima forced \(result.events("commit").count) commits")
        let finished = result.events("rank_finished")
        #expect(finished.count == 4)
        let totalLogged = finished.compactMap { $0["log_bytes"] as? Int }.reduce(0, +)
        for event in finished {
            let retained = event["retained_bytes_peak"] as? Int ?? .max
            let log = event["log_bytes_peak"] as? Int ?? .max
            #expect(retained < maximum, "rank \(event["rank"] ?? "?") retained up to \(retained) bytes")
            #expect(log < maximum, "rank \(event["rank"] ?? "?") let its log grow to \(log) bytes")
        }
        #expect(totalLogged > 4 * maximum, "the run logged too little (\(totalLogged) bytes) for the maxima to matter")
    }
}
