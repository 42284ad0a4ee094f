import Testing
@testable import LifelineCore

/// Stopping on request (`StopControl`): a checkpoint then the stop, a second request or an
/// overdue round at once, the walltime's reserve, and what the supervisor machine says can
/// start a round.
@Suite struct StopControlTests {
    @Test func aRequestTakesACheckpointAndTheCommitStops() {
        var stop = StopControl(stopTimeoutSeconds: 5, walltimeSeconds: nil)
        #expect(stop.committed() == nil, "no stop awaits a commit")
        #expect(stop.request(signal: 2, reason: "SIGINT", now: 10, roundPossible: true) == .checkpointThenStop(reason: "SIGINT"))
        #expect(stop.deadline == 15 && stop.signal == 2)
        #expect(stop.tick(now: 14.9, elapsed: 14.9, lastRoundSeconds: 0, roundPossible: true, stopSignal: 15) == nil)
        #expect(stop.committed() == .stopNow(.committed, reason: "committed"))
        #expect(stop.stopped && stop.committed() == nil && stop.tick(now: 99, elapsed: 99, lastRoundSeconds: 0, roundPossible: true, stopSignal: 15) == nil)
    }

    @Test func aSecondRequestOrAnOverdueRoundStopsAtOnce() {
        var again = StopControl(stopTimeoutSeconds: 5, walltimeSeconds: nil)
        _ = again.request(signal: 15, reason: "SIGTERM", now: 0, roundPossible: true)
        #expect(again.request(signal: 15, reason: "SIGTERM", now: 1, roundPossible: true) == .stopNow(.again, reason: "SIGTERM"))

        var overdue = StopControl(stopTimeoutSeconds: 5, walltimeSeconds: nil)
        _ = overdue.request(signal: 15, reason: "SIGTERM", now: 0, roundPossible: true)
        #expect(overdue.tick(now: 5, elapsed: 5, lastRoundSeconds: 0, roundPossible: true, stopSignal: 15)
            == .stopNow(.timeout(seconds: 5), reason: "stop-timeout"))

        var noRound = StopControl(stopTimeoutSeconds: 5, walltimeSeconds: nil)
        #expect(noRound.request(signal: 2, reason: "SIGINT", now: 0, roundPossible: false) == .stopNow(.noRoundPossible, reason: "SIGINT"))
        #expect(noRound.deadline == nil)
    }

    /// The walltime's stop starts three rounds before it (at least 1 s, at most half of it).
    @Test(arguments: [(100.0, 0.0, 99.0), (100.0, 2.0, 94.0), (100.0, 40.0, 50.0), (1.0, 0.1, 0.5)])
    func theWalltimeStopsWithARoundsReserve(walltime: Double, lastRound: Double, startsAt: Double) {
        var stop = StopControl(stopTimeoutSeconds: 5, walltimeSeconds: walltime)
        #expect(stop.tick(now: 1000 + startsAt - 0.01, elapsed: startsAt - 0.01, lastRoundSeconds: lastRound, roundPossible: true,
                          stopSignal: 15) == nil)
        let decision = stop.tick(now: 1000 + startsAt, elapsed: startsAt, lastRoundSeconds: lastRound, roundPossible: true,
                                 stopSignal: 15)
        #expect(decision?.reason == "walltime \(StopControl.seconds(walltime)) s")
        #expect(decision.map { if case .checkpointThenStop = $0 { true } else { false } } == true && stop.signal == 15)
    }

    @Test func theMachineAsksForARoundOnlyWhereOneCanStart() {
        func machine(independent: Bool) -> SupervisorMachine {
            SupervisorMachine(
                settings: .init(rankCount: 2, logging: .none, independent: independent, maxRestarts: 1,
                                heartbeatTimeoutSeconds: 10, joinTimeoutSeconds: 10, stopTimeoutSeconds: 3),
                coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 100, committed: .start, now: 0), incarnation: 0)
        }
        var coordinated = machine(independent: false)
        let (decision, actions) = coordinated.requestStop(signal: 2, reason: "SIGINT", now: 1)
        #expect(decision == .checkpointThenStop(reason: "SIGINT"))
        #expect(actions.contains { if case .round(.broadcast(.checkpointRequest)) = $0 { true } else { false } }, "\(actions)")
        #expect(coordinated.stopAfterCommit() == .stopNow(.committed, reason: "committed"))

        var independent = machine(independent: true)
        #expect(independent.requestStop(signal: 2, reason: "SIGINT", now: 1).0 == .stopNow(.noRoundPossible, reason: "SIGINT"))
    }
}
