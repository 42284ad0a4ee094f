import Foundation
import LifelineCore
@testable import Lifeline
import Testing

extension RecoveryTests {
    /// The collectives (`sendReceive`, tree `broadcast` and `reduce`, `scatter`, scalar
    /// `allreduce`, `allreduce(exactSum:)`) with a root that moves every round: after a kill at
    /// a step drawn from the seed, under every logging mode (a global rollback, a lone replay of
    /// named-source receives, optimistic orphans), the result is the failure-free one, bit for bit; and the
    /// exact sum of values split between the ranks has the same bits on 3 and on 4 ranks.
    @Suite struct Collectives {
        @Test func collectivesRecoverBitExactAndTheExactSumIgnoresTheRankCount() throws {
            let arguments = ["collectives", "160"]
            let oracle = try RecoveryTests.Liveness.probe("collectives-free", ranks: 4, ["--interval", "0.05"], arguments)
            try #require(oracle.status == 0 && oracle.resultLines.count == 1, "\(oracle.stderr)")
            let exact = oracle.stdout.split(separator: "\n").filter { $0.hasPrefix("exact=") }
            #expect(exact.count == 1, "\(oracle.stdout)")

            try Self.killedUnderEveryLoggingMode("collectives", ranks: 4, steps: 40...120, arguments, oracle: oracle)

            let three = try RecoveryTests.Liveness.probe("collectives-3", ranks: 3, ["--interval", "0.05"], arguments)
            #expect(three.status == 0, "\(three.stderr)")
            #expect(three.stdout.split(separator: "\n").filter { $0.hasPrefix("exact=") } == exact, "\(three.stdout)")
        }
    }
}

extension RecoveryTests.Collectives {
    /// Non-blocking receives matched in posting order, one polled with `test()` whose outcomes
    /// depend on timing (logged, so a replay sees the same): after a kill at a step drawn from
    /// the seed, under every logging mode, the result is the failure-free one.
    @Test func requestsRecoverBitExact() throws {
        let arguments = ["requests", "150"]
        let oracle = try RecoveryTests.Liveness.probe("requests-free", ranks: 3, ["--interval", "0.05"], arguments)
        try #require(oracle.status == 0 && oracle.resultLines.count == 1, "\(oracle.stderr)")
        try Self.killedUnderEveryLoggingMode("requests", ranks: 3, steps: 40...110, arguments, oracle: oracle)
    }

    /// The probe `arguments` on `ranks` ranks, one rank killed at a step in `steps` (both drawn
    /// from a printed seed), under each logging mode: it recovers once and prints `oracle`'s result.
    static func killedUnderEveryLoggingMode(
        _ name: String, ranks: Int, steps: ClosedRange<Int>, _ arguments: [String], oracle: JobRunner.Result
    ) throws {
        let seed = RecoveryTests.Liveness.seed()
        var generator = SplitMix64(seed: seed)
        for logging in ["none", "pessimistic", "sender-based", "optimistic"] {
            let injection = "kill:rank=\(Int.random(in: 0..<ranks, using: &generator)),step=\(Int.random(in: steps, using: &generator))"
            print("\(name) seed \(seed) (LIFELINE_TEST_SEED=\(seed) replays it): \(logging), \(injection)")
            let killed = try RecoveryTests.Liveness.probe(
                "\(name)-\(logging)", ranks: ranks, ["--interval", "0.05", "--logging", logging, "--inject", injection], arguments)
            #expect(killed.status == 0, "seed \(seed), \(logging), \(injection): \(killed.stderr)")
            #expect(killed.resultLines == oracle.resultLines, "seed \(seed), \(logging), \(injection)")
            #expect(killed.events("failure").count == 1, "seed \(seed), \(logging), \(injection)")
        }
    }

    /// A plain receive on a channel with an irecv pending would take the request's message:
    /// refused, by name.
    @Test func aPlainReceiveCannotStealARequestsMessage() throws {
        let result = try RecoveryTests.Liveness.probe("steal", ranks: 2, ["--max-restarts", "0"], ["steal"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("irecv requests on that channel are pending"), "\(result.stderr)")
    }
}

/// `ExactSum`, in-process: exact where a plain sum is not, the same bits whatever the order and
/// the split, and rounded once to nearest even.
@Suite struct ExactSumTests {
    @Test func cancellationAndRoundingAreExact() {
        #expect(ExactSum([1e16, 1.0, -1e16]).value == 1.0, "a plain sum gives 0")
        #expect(ExactSum([1e308, 1e308, -1e308]).value == 1e308, "no overflow in between")
        #expect(ExactSum(Array(repeating: 0.1, count: 10)).value == 1.0)
        #expect(ExactSum([1.0, 0x1p-53]).value == 1.0, "a tie rounds to even")
        #expect(ExactSum([1.0, 0x1p-53, 0x1p-105]).value == 1.0 + 0x1p-52, "above the tie rounds up")
        #expect(ExactSum([Double.leastNonzeroMagnitude, Double.leastNonzeroMagnitude]).value == 2 * Double.leastNonzeroMagnitude)
        #expect(ExactSum([-3.5, 1.25]).value == -2.25)
        #expect(ExactSum([]).value == 0)
        #expect(ExactSum([Double.greatestFiniteMagnitude, Double.greatestFiniteMagnitude]).value == .infinity)
        #expect(ExactSum([1, .infinity]).value == .infinity && ExactSum([.infinity, -.infinity]).value.isNaN)
        #expect(ExactSum([.nan, 1]).value.isNaN && ExactSum([-.infinity, 5]).value == -.infinity)
    }

    /// Wide-ranging random terms: any order and any split into parts merged in any order give
    /// the same bits, and integers below 2⁵³ give their plain sum.
    @Test func theSumDoesNotDependOnOrderOrSplit() {
        let seed = RecoveryTests.Liveness.seed()
        print("ExactSum seed \(seed) (LIFELINE_TEST_SEED=\(seed) replays it)")
        var generator = SplitMix64(seed: seed)
        for trial in 0..<50 {
            let terms = (0..<Int.random(in: 1...400, using: &generator)).map { _ in
                Double(sign: Bool.random(using: &generator) ? .plus : .minus,
                       exponent: Int.random(in: -1074...1000, using: &generator),
                       significand: Double.random(in: 1..<2, using: &generator))
            }
            let whole = ExactSum(terms).value
            let shuffled = ExactSum(terms.shuffled(using: &generator)).value
            let parts = Int.random(in: 1...7, using: &generator)
            var merged = ExactSum()
            for part in (0..<parts).shuffled(using: &generator) {
                merged.add(ExactSum(stride(from: part, to: terms.count, by: parts).map { terms[$0] }))
            }
            #expect(whole.bitPattern == shuffled.bitPattern && whole.bitPattern == merged.value.bitPattern,
                    "seed \(seed), trial \(trial)")
            let integers = terms.prefix(50).map { Double(Int64($0.bitPattern % (1 << 40)) - (1 << 39)) }
            #expect(ExactSum(integers).value == integers.reduce(0, +), "seed \(seed), trial \(trial)")
            #expect(ExactSum(words: merged.words) == merged)
        }
    }
}
