import Foundation
import LifelineCore
import Testing

/// One run of heat2d or of the task farm (with two idle workers) with a rank SIGKILLed at a
/// step drawn from a printed seed, and what the scheme tests check on it.
struct SeededKill {
    let seed: UInt64
    let rank: Int
    let injection: String
    let result: JobRunner.Result

    /// Runs `program` (`heat2d` or `taskfarm`) with `options`, killing a rank at a step drawn
    /// from the clock's seed: heat2d between steps 150 and 550 (with `heatOptions` added), the
    /// farm in `farmRounds` with checkpoints every `farmInterval` s.
    init(_ program: String, name: String, options: [String], heatOptions: [String] = [],
         farmRounds: ClosedRange<Int> = 5...35, farmInterval: String = "0.3") throws {
        seed = JobRunner.seed(name)
        var generator = SplitMix64(seed: seed)
        rank = Int.random(in: 0..<4, using: &generator)
        if program == "heat2d" {
            injection = "kill:rank=\(rank),step=\(Int.random(in: 150...550, using: &generator))"
            result = try JobRunner.runHeat("\(name)-heat", heatOptions + options + ["--inject", injection])
        } else {
            injection = "kill:rank=\(rank),step=\(Int.random(in: farmRounds, using: &generator))"
            let runDirectory = JobRunner.scratch("\(name)-farm") + "/run"
            result = try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", farmInterval, "--run-dir", runDirectory, "--quiet"] + options
                    + ["--inject", injection, "--"] + RecoveryTests.farm + ["--idle-workers", "2"],
                runDirectory: runDirectory)
        }
    }

    /// Checks the failure-free result, a clean exit and exactly one failure, naming the seed.
    func expectRecovered(program: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let oracle = program == "heat2d" ? RecoveryTests.oracle : RecoveryTests.farmOracle
        #expect(result.resultLines == [oracle], "seed \(seed): \(injection)", sourceLocation: sourceLocation)
        #expect(result.status == 0, "seed \(seed) (\(injection)): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.events("failure").count == 1, "seed \(seed)", sourceLocation: sourceLocation)
    }
}

extension JobRunner.Result {
    /// The ranks whose process at the end is not the one they started with, in rank order.
    var relaunchedRanks: [Int] {
        var first: [Int: Int] = [:]
        var last: [Int: Int] = [:]
        for event in events("rank_launched") {
            guard let rank = event["rank"] as? Int, let pid = event["pid"] as? Int else { continue }
            if first[rank] == nil { first[rank] = pid }
            last[rank] = pid
        }
        return first.keys.sorted().filter { first[$0] != last[$0] }
    }
}
