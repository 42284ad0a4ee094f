import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    static let farm = ["taskfarm", "--tasks", "480", "--work", "20000", "--sleep-ms", "15"]

    /// The failure-free result of the task farm.
    static let farmOracle: String = {
        let runDirectory = JobRunner.scratch("farm-oracle") + "/run"
        let result = try! JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--"] + farm,
            runDirectory: runDirectory)
        precondition(result.status == 0 && result.resultLines.count == 1, "taskfarm failed: \(result.stderr)")
        return result.resultLines[0]
    }()

    /// The master's receives are from any source; killing the master or a worker at a round
    /// drawn from a seed still gives the failure-free result, with and without logging.
    @Test(arguments: ["none", "pessimistic", "sender-based", "optimistic"])
    func taskFarmRecovers(logging: String) throws {
        let seed = JobRunner.seed("taskfarm")
        var generator = SplitMix64(seed: seed)
        let round = Int.random(in: 5...30, using: &generator)
        let rank = Int.random(in: 0..<4, using: &generator)
        let runDirectory = JobRunner.scratch("farm-\(logging)") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--logging", logging,
             "--inject", "kill:rank=\(rank),step=\(round)", "--"] + Self.farm,
            runDirectory: runDirectory)
        #expect(result.status == 0, "seed \(seed): \(result.stderr)")
        #expect(result.resultLines == [Self.farmOracle], "seed \(seed): kill:rank=\(rank),step=\(round)")
        #expect(result.events("failure").count == 1, "seed \(seed)")
    }

    /// The task farm gives the same result on one rank (the master alone) as on four.
    @Test func taskFarmResultDoesNotDependOnRankCount() throws {
        let runDirectory = JobRunner.scratch("farm-1") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "1", "--run-dir", runDirectory, "--quiet", "--"] + Self.farm, runDirectory: runDirectory)
        #expect(result.resultLines == [Self.farmOracle])
    }
}
