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
        let run = try SeededKill(program, name: "optimistic-\(checkpoint)",
                                 options: ["--logging", "optimistic", "--checkpoint", checkpoint])
        run.expectRecovered(program: program)
        let (seed, rank, result) = (run.seed, run.rank, run.result)
        let orphanEvent = result.events("orphans").first
        #expect(orphanEvent?["rank"] as? Int == rank, "seed \(seed): \(result.events("orphans"))")
        let orphans = (orphanEvent?["orphans"] as? String ?? "").split(separator: ",").compactMap { Int($0) }
        let relaunched = result.relaunchedRanks
        #expect(relaunched == ([rank] + orphans).sorted(), "seed \(seed): relaunched \(relaunched), orphans \(orphans)")
        #expect(result.events("replay_done").contains { $0["rank"] as? Int == rank }, "seed \(seed)")
    }

    /// A second kill of the same rank while it replays its optimistic log: still the
    /// failure-free hash, and only its own deaths count as failures (its orphans, restarting
    /// with it, once failed to connect to it and were counted too).
    @Test func optimisticLoggingSurvivesKillDuringReplay() throws {
        let result = try JobRunner.runHeat("optimistic-replay-kill", [
            "--logging", "optimistic", "--inject", "kill:rank=2,step=400", "--inject", "kill:rank=2,phase=recovery",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        let failures = result.events("failure")
        #expect(failures.filter { $0["rank"] as? Int == 2 }.count == 2, "\(failures)")
        #expect(failures.count == 2, "healthy ranks were counted as failed: \(failures)")
    }
}
