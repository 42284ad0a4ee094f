import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// `Examples/CG`: a conjugate-gradient solver whose dot products are exact sums. Its solution
    /// has the same bits alone, on 3 ranks and on 4; killed at an iteration drawn from the seed
    /// under each scheme and logging mode, it prints the failure-free result.
    @Suite struct ConjugateGradient {
        static let program = ["cg", "--size", "40", "--iterations", "300", "--sleep-ms", "1"]

        @Test func theSolutionHasTheSameBitsOnAnyRankCountAndAfterAKill() throws {
            let aloneDirectory = JobRunner.scratch("cg-1") + "/run"
            let alone = try JobRunner.lifeline(
                ["run", "-n", "1", "--run-dir", aloneDirectory, "--quiet", "--"] + Self.program, runDirectory: aloneDirectory)
            let expected = alone.resultLines
            try #require(alone.status == 0 && expected.count == 1, "\(alone.stdout)\(alone.stderr)")
            for ranks in [3, 4] {
                let scratch = JobRunner.scratch("cg-\(ranks)") + "/run"
                let free = try JobRunner.lifeline(
                    ["run", "-n", "\(ranks)", "--run-dir", scratch, "--quiet", "--"] + Self.program, runDirectory: scratch)
                #expect(free.status == 0 && free.resultLines == expected, "\(ranks) ranks: \(free.stderr)")
            }
            let seed = Liveness.seed()
            var generator = SplitMix64(seed: seed)
            for (checkpoint, logging) in [("coordinated", "none"), ("blocking", "pessimistic"), ("minimal", "sender-based"),
                                          ("coordinated", "optimistic"), ("independent", "pessimistic")] {
                let injection = "kill:rank=\(Int.random(in: 0..<4, using: &generator)),step=\(Int.random(in: 80...240, using: &generator))"
                print("cg seed \(seed) (LIFELINE_TEST_SEED=\(seed) replays it): \(checkpoint), \(logging), \(injection)")
                let scratch = JobRunner.scratch("cg-\(checkpoint)-\(logging)") + "/run"
                let killed = try JobRunner.lifeline(
                    ["run", "-n", "4", "--run-dir", scratch, "--quiet", "--interval", "0.05", "--checkpoint", checkpoint,
                     "--logging", logging, "--inject", injection, "--"] + Self.program,
                    runDirectory: scratch)
                #expect(killed.status == 0, "seed \(seed), \(checkpoint), \(logging), \(injection): \(killed.stderr)")
                #expect(killed.resultLines == expected, "seed \(seed), \(checkpoint), \(logging), \(injection)")
                #expect(killed.events("failure").count == 1, "seed \(seed), \(checkpoint), \(logging), \(injection)")
            }
        }
    }
}
