import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// A program that sends random numbers drawn without `logged` is not deterministic: after a
    /// kill, its replay sends other bytes under the sequence numbers its peers delivered. Under
    /// every logging mode with a lone recovery the duplicate is caught and the job stops (or,
    /// with `--on-nondeterminism warn`, says so and goes on). Heat2d and the task farm under the
    /// same modes and kills (the other tests) must never report it.
    @Suite struct Nondeterminism {
        @Test func aDuplicateWithOtherBytesStopsTheJob() throws {
            let seed = Liveness.seed()
            var generator = SplitMix64(seed: seed)
            for logging in ["pessimistic", "sender-based", "optimistic"] {
                let step = Int.random(in: 100...200, using: &generator)
                print("nondeterminism seed \(seed) (LIFELINE_TEST_SEED replays it): \(logging), rank 1 killed at step \(step)")
                let result = try Liveness.probe(
                    "random-\(logging)", ranks: 3,
                    ["--logging", logging, "--interval", "0.2", "--inject", "kill:rank=1,step=\(step)"], ["random", "300"],
                    timeoutSeconds: 90)
                #expect(result.status == 1, "seed \(seed), \(logging): exit \(result.status): \(result.stderr)")
                #expect(result.stderr.contains("again with other bytes than the first time: the program is not deterministic"),
                        "seed \(seed), \(logging): \(result.stderr)")
                #expect(result.events("nondeterminism").count == 1, "seed \(seed), \(logging)")
                #expect(result.resultLines.isEmpty, "seed \(seed), \(logging): a result was released")
            }
        }

        @Test func warnGoesOnAndSaysSo() throws {
            let result = try Liveness.probe(
                "random-warn", ranks: 3,
                ["--logging", "pessimistic", "--interval", "0.2", "--on-nondeterminism", "warn", "--inject", "kill:rank=1,step=150"],
                ["random", "300"], timeoutSeconds: 90)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines.count == 1)
            #expect(result.stderr.contains("going on (--on-nondeterminism warn): the result may be wrong"), "\(result.stderr)")
            let event = result.events("nondeterminism").first
            #expect(event?["source"] as? Int == 1, "\(String(describing: event))")
            #expect(event?["sequence"] is Int)
        }
    }
}
