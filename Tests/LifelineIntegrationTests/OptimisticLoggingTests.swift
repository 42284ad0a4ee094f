import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// `--logging optimistic`: a rank killed at a step drawn from a printed seed replays what
    /// reached its log; the ranks the event log names as orphans roll back too, and exactly
    /// those and the killed rank get new processes. The result is the failure-free one. Runs with
    /// each checkpoint scheme that has rounds, on both examples.
    @Test(arguments: [("heat2d", "coordinated"), ("heat2d", "blocking"), ("taskfarm", "coordinated"), ("taskfarm", "minimal")])
    func optimisticLoggingRollsBackTheOrphans(program: String, checkpoint: String) throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) % 100_000
        var generator = SplitMix64(seed: seed)
        let rank = Int.random(in: 0..<4, using: &generator)
        let result: JobRunner.Result
        let injection: String
        if program == "heat2d" {
            injection = "kill:rank=\(rank),step=\(Int.random(in: 150...550, using: &generator))"
            result = try JobRunner.runHeat("optimistic-heat-\(checkpoint)", [
                "--logging", "optimistic", "--checkpoint", checkpoint, "--inject", injection,
            ])
            #expect(result.resultLines == [Self.oracle], "seed \(seed): \(injection)")
        } else {
            injection = "kill:rank=\(rank),step=\(Int.random(in: 5...35, using: &generator))"
            let runDirectory = JobRunner.scratch("optimistic-farm-\(checkpoint)") + "/run"
            result = try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.3", "--run-dir", runDirectory, "--quiet", "--checkpoint", checkpoint,
                 "--logging", "optimistic", "--inject", injection, "--"] + Self.farm + ["--idle-workers", "2"],
                runDirectory: runDirectory)
            #expect(result.resultLines == [Self.farmOracle], "seed \(seed): \(injection)")
        }
        #expect(result.status == 0, "seed \(seed) (\(injection)): \(result.stderr)")
        #expect(result.events("failure").count == 1, "seed \(seed)")
        let orphanEvent = result.events("orphans").first
        #expect(orphanEvent?["rank"] as? Int == rank, "seed \(seed): \(result.events("orphans"))")
        let orphans = (orphanEvent?["orphans"] as? String ?? "").split(separator: ",").compactMap { Int($0) }
        var first: [Int: Int] = [:]
        var last: [Int: Int] = [:]
        for event in result.events("rank_launched") {
            guard let launched = event["rank"] as? Int, let pid = event["pid"] as? Int else { continue }
            if first[launched] == nil { first[launched] = pid }
            last[launched] = pid
        }
        let relaunched = (0..<4).filter { first[$0] != last[$0] }
        #expect(relaunched == ([rank] + orphans).sorted(), "seed \(seed): relaunched \(relaunched), orphans \(orphans)")
        #expect(result.events("replay_done").contains { $0["rank"] as? Int == rank }, "seed \(seed)")
    }

    /// A second kill of the same rank while it replays its optimistic log: still the
    /// failure-free hash. (Its orphans, restarting with it, may fail to reach it and fail too;
    /// then the job falls back to a global rollback and says so.)
    @Test func optimisticLoggingSurvivesKillDuringReplay() throws {
        let result = try JobRunner.runHeat("optimistic-replay-kill", [
            "--logging", "optimistic", "--inject", "kill:rank=2,step=400", "--inject", "kill:rank=2,phase=recovery",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        let failures = result.events("failure")
        #expect(failures.filter { $0["rank"] as? Int == 2 }.count == 2, "\(failures)")
        #expect(failures.count == 2 || !result.events("fallback_global_rollback").isEmpty, "\(failures)")
    }
}
