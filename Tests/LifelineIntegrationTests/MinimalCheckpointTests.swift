import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// `--checkpoint minimal`, with and without logging, on both examples: a rank killed at a
    /// step drawn from a printed seed still gives the failure-free result. The task farm runs
    /// with idle workers, so the lines it recovers from hold kept entries (ranks that never
    /// wrote restart from the beginning and re-execute).
    @Test(arguments: [("heat2d", "none"), ("heat2d", "pessimistic"), ("taskfarm", "none"), ("taskfarm", "pessimistic")])
    func minimalCheckpointsRecover(program: String, logging: String) throws {
        let seed = UInt64(Date().timeIntervalSince1970 * 1000) % 100_000
        var generator = SplitMix64(seed: seed)
        let rank = Int.random(in: 0..<4, using: &generator)
        let result: JobRunner.Result
        let injection: String
        if program == "heat2d" {
            injection = "kill:rank=\(rank),step=\(Int.random(in: 150...550, using: &generator))"
            result = try JobRunner.runHeat("minimal-heat-\(logging)", [
                "--checkpoint", "minimal", "--logging", logging, "--inject", injection,
            ])
            #expect(result.resultLines == [Self.oracle], "seed \(seed): \(injection)")
        } else {
            injection = "kill:rank=\(rank),step=\(Int.random(in: 5...30, using: &generator))"
            let runDirectory = JobRunner.scratch("minimal-farm-\(logging)") + "/run"
            result = try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.2", "--run-dir", runDirectory, "--quiet", "--checkpoint", "minimal",
                 "--logging", logging, "--inject", injection, "--"] + Self.farm + ["--idle-workers", "2"],
                runDirectory: runDirectory)
            #expect(result.resultLines == [Self.farmOracle], "seed \(seed): \(injection)")
        }
        #expect(result.status == 0, "seed \(seed) (\(injection)): \(result.stderr)")
        #expect(result.events("failure").count == 1, "seed \(seed)")
        #expect(!result.events("commit").isEmpty, "seed \(seed): nothing was committed")
    }

    /// `taskfarm --idle-workers 2` under `--checkpoint minimal`: while workers 1 and 2 get no
    /// message (the first half of the rounds) they write nothing, every round keeps their
    /// entry, and `lifeline inspect` says so; once they work, they write.
    @Test func idleWorkersWriteNothing() throws {
        let runDirectory = JobRunner.scratch("minimal-idle") + "/run"
        let farm = ["taskfarm", "--tasks", "480", "--work", "20000", "--sleep-ms", "40", "--idle-workers", "2"]
        let result = try JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.15", "--run-dir", runDirectory, "--quiet", "--checkpoint", "minimal", "--"]
                + farm,
            runDirectory: runDirectory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.farmOracle])
        let idleRounds = 20  // 480 tasks in rounds of 12: 40 rounds, the first half idle
        func ranks(_ event: [String: Any], _ key: String) -> [Int] {
            (event[key] as? String ?? "").split(separator: ",").compactMap { Int($0) }
        }
        let commits = result.events("commit")
        let idle = commits.filter { ($0["step"] as? Int ?? .max) <= idleRounds }
        let busy = commits.filter { ($0["step"] as? Int ?? -1) > idleRounds }
        #expect(!idle.isEmpty && !busy.isEmpty, "commits at steps \(commits.map { $0["step"] ?? "?" })")
        for commit in idle {
            #expect(ranks(commit, "wrote") == [0, 3], "round at step \(commit["step"] ?? "?"): \(commit)")
            #expect(ranks(commit, "kept") == [1, 2], "round at step \(commit["step"] ?? "?"): \(commit)")
        }
        for commit in busy.dropFirst() {
            #expect(ranks(commit, "wrote") == [0, 1, 2, 3], "round at step \(commit["step"] ?? "?"): \(commit)")
        }
        // The idle workers acknowledged every idle round as kept, with no byte written.
        for commit in idle {
            let acks = result.events("ack").filter { $0["epoch"] as? Int == commit["epoch"] as? Int }
            for rank in [1, 2] {
                let ack = acks.first { $0["rank"] as? Int == rank }
                #expect(ack?["kept"] as? Bool == true && ack?["bytes"] as? Int == 0, "rank \(rank): \(ack ?? [:])")
            }
        }
        let inspect = try JobRunner.lifeline(["inspect", runDirectory], runDirectory: runDirectory)
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("1@start,2@start"), "inspect does not show the kept entries:\n\(inspect.stdout)")
    }
}
