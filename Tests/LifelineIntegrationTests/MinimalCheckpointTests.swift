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
        let run = try SeededKill(program, name: "minimal-\(logging)", options: ["--checkpoint", "minimal", "--logging", logging],
                                 farmRounds: 5...30, farmInterval: "0.2")
        run.expectRecovered(program: program)
        #expect(!run.result.events("commit").isEmpty, "seed \(run.seed): nothing was committed")
    }

    /// `taskfarm --idle-workers 2` under `--checkpoint minimal`: while workers 1 and 2 get no
    /// message (the first and last quarter of the rounds) they write nothing, every round keeps
    /// their entry — at first the start, at the end the checkpoint they wrote while working — and
    /// `lifeline inspect` says so. A kill in the last quarter restores them from that older
    /// checkpoint, and the result is still the failure-free one.
    @Test func idleWorkersWriteNothing() throws {
        let runDirectory = JobRunner.scratch("minimal-idle") + "/run"
        let farm = ["taskfarm", "--tasks", "480", "--work", "20000", "--sleep-ms", "150", "--idle-workers", "2"]
        let result = try JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.15", "--run-dir", runDirectory, "--quiet", "--checkpoint", "minimal",
             "--inject", "kill:rank=3,step=39", "--"] + farm,
            runDirectory: runDirectory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.farmOracle])
        // 480 tasks in rounds of 12: 40 rounds, 0..<10 and 30..<40 idle.
        func ranks(_ event: [String: Any], _ key: String) -> [Int] {
            (event[key] as? String ?? "").split(separator: ",").compactMap { Int($0) }
        }
        func step(_ event: [String: Any]) -> Int { event["step"] as? Int ?? -1 }
        let commits = result.events("commit")
        let early = commits.filter { step($0) <= 10 }
        let late = commits.filter { step($0) > 31 }
        #expect(!early.isEmpty && !late.isEmpty, "commits at steps \(commits.map(step))")
        for commit in early {
            #expect(ranks(commit, "wrote") == [0, 3], "round at step \(step(commit)): \(commit)")
            #expect(ranks(commit, "kept") == [1, 2] && commit["kept_from"] as? String == "start,start", "\(commit)")
        }
        // Late rounds: the idle workers kept a checkpoint they wrote while working (after the first
        // late round, which may still find deliveries since their last one).
        for commit in late.dropFirst() {
            #expect(ranks(commit, "kept") == [1, 2], "round at step \(step(commit)): \(commit)")
            let from = (commit["kept_from"] as? String ?? "").split(separator: ",").compactMap { Int($0) }
            #expect(from.count == 2 && from.allSatisfy { $0 > 0 }, "\(commit)")
        }
        // The idle workers acknowledged every early round as kept, with no byte written.
        for commit in early {
            let acks = result.events("ack").filter { $0["epoch"] as? Int == commit["epoch"] as? Int }
            for rank in [1, 2] {
                let ack = acks.first { $0["rank"] as? Int == rank }
                #expect(ack?["kept"] as? Bool == true && ack?["bytes"] as? Int == 0, "rank \(rank): \(ack ?? [:])")
            }
        }
        // The kill (in the last round) rolled the idle workers back to the older checkpoints they
        // kept, behind the line's own step.
        let failure = result.events("failure").first?["t"] as? Double ?? .infinity
        let relaunched = result.events("rank_launched").filter { ($0["t"] as? Double ?? 0) > failure }
        let restoredStep = Dictionary(relaunched.compactMap { event in
            (event["rank"] as? Int).map { ($0, event["step"] as? Int ?? -1) }
        }, uniquingKeysWith: { $1 })
        #expect(relaunched.count == 4, "\(relaunched)")
        #expect(restoredStep[1]! < restoredStep[0]! && restoredStep[2]! < restoredStep[0]!,
                "the idle workers did not restore an older kept checkpoint: \(restoredStep)")
        let inspect = try JobRunner.lifeline(["inspect", runDirectory], runDirectory: runDirectory)
        #expect(inspect.status == 0)
        #expect(inspect.stdout.contains("1@start,2@start"), "inspect does not show the kept entries:\n\(inspect.stdout)")
    }
}

extension RecoveryTests {
    /// `--keep K` keeps the K newest committed lines: their snapshot folders stay, older ones go,
    /// and the run still ends with the failure-free result.
    @Test(arguments: [1, 4])
    func keepKeepsThatManyLines(keep: Int) throws {
        let result = try JobRunner.runHeat("keep-\(keep)", ["--interval", "0.15", "--keep", String(keep)])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle])
        let commits = result.events("commit").compactMap { $0["epoch"] as? Int }
        #expect(commits.count > keep, "only \(commits.count) commits")
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: result.runDirectory + "/storage-a/epochs")) ?? []
        let expected = commits.suffix(keep).map { String(format: "%06d", $0) }
        #expect(folders.sorted() == expected, "kept \(folders.sorted()), the newest \(keep) lines are \(expected)")
    }
}
