import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// `--checkpoint independent`, with and without logging, on both examples: a rank killed at
    /// a step drawn from a printed seed still gives the failure-free result. Without logging the
    /// supervisor planned a recovery line (heat2d's halo exchange usually sends it back to the
    /// start: the domino effect); with pessimistic logging only the killed rank restarted.
    @Test(arguments: [("heat2d", "none"), ("heat2d", "pessimistic"), ("taskfarm", "none"), ("taskfarm", "pessimistic")])
    func independentCheckpointsRecover(program: String, logging: String) throws {
        let run = try SeededKill(program, name: "independent-\(logging)",
                                 options: ["--checkpoint", "independent", "--logging", logging], heatOptions: ["--interval", "0.3"])
        run.expectRecovered(program: program)
        let (seed, rank, result) = (run.seed, run.rank, run.result)
        #expect(!result.events("checkpoint").isEmpty, "seed \(seed): no rank checkpointed")
        if logging == "none" {
            let line = result.events("recovery_line")
            #expect(line.count == 1, "seed \(seed): \(line)")
            // Exactly the ranks the line rolls back were launched again.
            let rolledBack = (line.first?["rolled_back"] as? String ?? "").split(separator: ",").compactMap { Int($0) }
            let relaunched = result.relaunchedRanks
            #expect(relaunched == rolledBack, "seed \(seed): relaunched \(relaunched), the line rolled back \(rolledBack)")
            #expect(rolledBack.contains(rank), "seed \(seed)")
        } else {
            #expect(result.relaunchedRanks == [rank], "seed \(seed): only rank \(rank) restarts")
        }
    }

    /// The failed rank is killed again while it restarts: the survivors that were restarting
    /// with it are not waited for, those blocked sending to it answer the freeze from their
    /// wait, nobody is declared hung, and only its two deaths count (a healthy rank was once
    /// killed as hung after a 5 s stall).
    @Test func independentSurvivesAKillDuringRecovery() throws {
        let result = try JobRunner.runHeat("independent-recovery-kill", [
            "--checkpoint", "independent", "--inject", "kill:rank=1,step=300", "--inject", "kill:rank=1,phase=recovery",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        let failures = result.events("failure")
        #expect(failures.count == 2 && failures.allSatisfy { $0["rank"] as? Int == 1 }, "\(failures)")
        #expect(result.events("hang_detected").isEmpty)
        #expect(!result.stderr.contains("did not answer the freeze"), "\(result.stderr)")
    }

    /// A rank that received nothing since its newest checkpoint (an idle worker in the last
    /// quarter of the task farm) fails: nobody depends on what it lost, so it alone rolls back
    /// and the others keep their processes — a partial rollback, without any log.
    @Test func independentRollsBackOnlyWhatTheLineNeeds() throws {
        let runDirectory = JobRunner.scratch("independent-partial") + "/run"
        let farm = ["taskfarm", "--tasks", "480", "--work", "20000", "--sleep-ms", "60", "--idle-workers", "2"]
        let result = try JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.3", "--run-dir", runDirectory, "--quiet", "--checkpoint", "independent",
             "--inject", "kill:rank=1,step=39", "--"] + farm,
            runDirectory: runDirectory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.farmOracle])
        let line = result.events("recovery_line").first
        #expect(line?["rolled_back"] as? String == "1", "\(line ?? [:])")
        #expect(line?["domino"] as? Bool == false)
        #expect(result.relaunchedRanks == [1])
        #expect(result.events("recovery_start").first?["mode"] as? String == "partial-rollback")
        // inspect counts the ranks' own checkpoints.
        let inspect = try JobRunner.lifeline(["inspect", runDirectory], runDirectory: runDirectory)
        let taken = result.events("checkpoint").count
        #expect(taken > 0 && inspect.stdout.contains("independent: \(taken) rank checkpoints"), "\(inspect.stdout)")
        // The analysis of the finished run names the line it used.
        let analysis = try JobRunner.lifeline(["recovery-line", runDirectory, "--json"], runDirectory: runDirectory)
        #expect(analysis.status == 0, "\(analysis.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(analysis.stdout.utf8)) as? [String: Any]
        let recoveries = object?["recoveries"] as? [[String: Any]] ?? []
        #expect(recoveries.count == 1)
        let entries = recoveries.first?["line"] as? [Any] ?? []
        #expect(entries.count == 4 && entries[0] is NSNull && entries[2] is NSNull && entries[3] is NSNull && entries[1] is Int,
                "\(analysis.stdout)")
    }
}
