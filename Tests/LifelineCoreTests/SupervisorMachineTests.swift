import Testing
@testable import LifelineCore

/// The supervisor's decisions (`SupervisorMachine`): launches and START, held messages,
/// exits and silences, and what each scheme × logging mode does after a failure, driven
/// in-process with the storage facts given.
@Suite struct SupervisorMachineTests {
    /// Storage as a test states it.
    struct Facts: RecoveryFacts {
        var lineEpoch: UInt64 = 2
        var lost: String?
        var recoverable: UInt64? = 7
        var checkpointCounts: [Int] = []
        var restorable: [Int] = []
        var dependencies = IntervalDependencies(rankCount: 0)
        var entryPosition: UInt64? = 0
        func lostLog(of rank: Int) -> String? { lost }
        func entryLogPosition(of rank: Int) -> UInt64? { entryPosition }
        func recoverableInterval(of rank: Int) -> UInt64? { recoverable }
        func newestRestorableCheckpoint(of rank: Int) -> Int { restorable[rank] }
    }

    private func machine(_ ranks: Int = 3, logging: LoggingMode = .none, independent: Bool = false,
                         maxRestarts: Int = 10) -> SupervisorMachine {
        SupervisorMachine(
            settings: .init(rankCount: ranks, logging: logging, independent: independent, maxRestarts: maxRestarts,
                            heartbeatTimeoutSeconds: 2, joinTimeoutSeconds: 10),
            coordinator: CheckpointCoordinator(
                rankCount: ranks, intervalSeconds: independent ? 1e12 : 1, committed: Epoch(2), now: 0),
            incarnation: 0)
    }

    /// Performs a launch the way the runtime does (every rank begins at step 10).
    private func launch(_ machine: inout SupervisorMachine, _ actions: [SupervisorMachine.Action], now: Double) -> [Int] {
        var launched: [Int] = []
        for case .launch(let order) in actions {
            for rank in order.ranks {
                _ = machine.launching(rank, plan: machine.startPlan(for: order), step: 10, now: now)
            }
            machine.launched(order.ranks)
            launched += order.ranks
        }
        return launched
    }

    /// A job whose every rank is launched and started.
    private func started(_ ranks: Int = 3, logging: LoggingMode = .none, independent: Bool = false) -> SupervisorMachine {
        var machine = machine(ranks, logging: logging, independent: independent)
        _ = launch(&machine, machine.launchEveryRank(), now: 0)
        for rank in 0..<ranks { _ = machine.handleConnected(rank, now: 0.1) }
        return machine
    }

    private func sent(_ actions: [SupervisorMachine.Action]) -> [(Int, ControlMessage)] {
        actions.compactMap { if case .send(let rank, let message) = $0 { (rank, message) } else { nil } }
    }

    private func notes(_ actions: [SupervisorMachine.Action]) -> [SupervisorMachine.Note] {
        actions.compactMap { if case .note(let note) = $0 { note } else { nil } }
    }

    /// A snapshot that cannot be written aborts its round; under independent checkpoints the
    /// rank is killed and recovered like a failed one (once, however often it says so), and a
    /// request for a checkpoint starts no round.
    @Test func aSnapshotThatCannotBeWrittenAbortsItsRoundOrRestartsAnIndependentRank() {
        var coordinated = started()
        _ = coordinated.handleCheckpointWanted(now: 1)
        let aborted = coordinated.handleSnapshotFailed(from: 1, round: Epoch(3), reason: "disk full", now: 2, facts: Facts())
        #expect(aborted.contains { if case .round(.roundAborted(Epoch(3), _)) = $0 { true } else { false } }, "\(aborted)")

        var independent = started(independent: true)
        #expect(independent.handleCheckpointWanted(now: 1).isEmpty)
        let facts = Facts(checkpointCounts: [2, 2, 2], restorable: [2, 2, 2], dependencies: IntervalDependencies(rankCount: 3))
        let restarted = independent.handleSnapshotFailed(from: 1, round: Epoch(3), reason: "disk full", now: 2, facts: facts)
        #expect(restarted.first == .kill(1))
        #expect(notes(restarted).contains(.checkpointUnwritten(rank: 1, index: 3, reason: "disk full")))
        #expect(notes(restarted).contains { if case .failure(1, let cause, _, _) = $0 { cause.contains("checkpoint 3") } else { false } })
        #expect(independent.handleSnapshotFailed(from: 1, round: Epoch(3), reason: "again", now: 2.1, facts: facts).isEmpty)
    }

    /// The machine's stall detector: it asks the ranks that joined where they wait, and two
    /// equal answers of a ring of receives end the job as a deadlock; progress keeps it quiet.
    @Test func theStallDetectorAsksTheJoinedRanksAndEndsADeadlock() {
        var machine = SupervisorMachine(
            settings: .init(rankCount: 2, logging: .none, independent: false, maxRestarts: 1, heartbeatTimeoutSeconds: 100,
                            joinTimeoutSeconds: 100),
            coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 1e9, committed: .start, now: 0), incarnation: 0,
            stalls: StallDetector(rankCount: 2, thresholdSecondsMin: 2, now: 0))
        _ = launch(&machine, machine.launchEveryRank(), now: 0)
        for rank in 0..<2 { _ = machine.handleConnected(rank, now: 0.1) }
        let progressed = machine.handleStep(11, of: 0, now: 1.5)
        #expect(progressed)
        let quiet = machine.checkStalls(now: 3)
        #expect(quiet.isEmpty, "progress at 1.5")
        let ring = [RankWait(kind: .receive, peer: RankID(1), tag: 7, step: 11, sent: 1, arrived: 1, delivered: 1),
                    RankWait(kind: .receive, peer: RankID(0), tag: 7, step: 11, sent: 1, arrived: 1, delivered: 1)]
        var now = 3.6
        var ended: [SupervisorMachine.Action] = []
        while now < 10, ended.isEmpty {
            let actions = machine.checkStalls(now: now)
            for case .send(let rank, .waitQuery(let serial)) in actions { machine.handleWaitReport(from: rank, serial: serial, ring[rank]) }
            ended = actions.filter { if case .fail = $0 { true } else { false } }
            now += 0.25
        }
        #expect(ended == [.fail(.deadlock(waits: ring))], "at \(now)")
    }

    @Test func everyRankOfALaunchGetsStartOnceAllHaveConnectedWithHeldMessagesFirst() {
        var machine = machine()
        #expect(launch(&machine, machine.launchEveryRank(), now: 0) == [0, 1, 2])
        #expect(machine.ranks.map(\.incarnation) == [0, 1, 2] && machine.starting == [0, 1, 2])
        #expect(machine.send(.checkpointRequest(Epoch(3)), to: 1).isEmpty, "held until rank 1 connects")
        #expect(sent(machine.handleConnected(0, now: 0.1)).isEmpty)
        #expect(sent(machine.handleConnected(1, now: 0.1)).map(\.1) == [.checkpointRequest(Epoch(3))])
        let last = machine.handleConnected(2, now: 0.2)
        #expect(sent(last).map(\.0) == [0, 1, 2])
        #expect(sent(last).allSatisfy { if case .start(let plan) = $0.1 { !plan.restarted && !plan.replayLog } else { false } })
        #expect(notes(last) == [.ranksStarted(count: 3)] && machine.starting.isEmpty && !machine.isRecovering)
        #expect(machine.isCurrent(2, incarnation: 2) && !machine.isCurrent(2, incarnation: 1))
    }

    @Test func messagesForARankNotConnectedAreHeldBoundedAndOnlyTheNewestTrimKept() {
        var machine = machine(2)
        _ = launch(&machine, machine.launchEveryRank(), now: 0)
        _ = machine.send(.trim(checkpoint: 1, coveredByReceiver: []), to: 0)
        _ = machine.send(.trim(checkpoint: 2, coveredByReceiver: []), to: 0)
        for _ in 0..<(SupervisorMachine.unsentMessagesMax - 1) { _ = machine.send(.thaw, to: 0) }
        #expect(notes(machine.send(.freeze, to: 0)) == [.unsentDropped(rank: 0, message: .freeze)])
        let held = sent(machine.handleConnected(0, now: 1)).map(\.1)
        #expect(held.count == SupervisorMachine.unsentMessagesMax && held.first == .trim(checkpoint: 2, coveredByReceiver: []))
        // A dead rank that had joined gets nothing: its restart gets its own.
        _ = machine.handleConnected(1, now: 1)
        _ = machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 2, facts: Facts())
        #expect(machine.send(.thaw, to: 1).allSatisfy { if case .send = $0 { false } else { true } })
    }

    @Test func withoutLoggingAFailureAbortsTheRoundAndRollsEveryRankBack() {
        var machine = started()
        _ = machine.coordinator.handleTick(now: 5)  // a round is open
        let actions = machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 5, facts: Facts())
        #expect(notes(actions).first == .failure(rank: 1, cause: "killed by signal 9", step: 10, epoch: 2))
        #expect(actions.contains(.round(.broadcast(.abort(Epoch(3))))))
        #expect(actions.contains(.stop([0, 2])), "the survivors stop; rank 1 is dead already")
        #expect(notes(actions).contains(.recoveryStart(rank: 1, mode: .globalRollback)))
        for rank in [0, 2] { machine.handleReaped(rank) }  // the runtime stops them before the launch
        #expect(launch(&machine, actions, now: 5) == [0, 1, 2])
        #expect(machine.isRecovering && machine.ranks.allSatisfy { $0.plan.restarted })
        _ = machine.handleConnected(0, now: 6)
        _ = machine.handleConnected(1, now: 6)
        let back = machine.handleConnected(2, now: 7)
        #expect(notes(back).contains(.recoveryDone(ranks: 3, seconds: 2)) && machine.recoveries == 1)
        #expect(!machine.isRecovering)
    }

    /// A relaunched rank catches up to the step it had reached: a second failure before it is
    /// back keeps the furthest step and counts from the newer failure, `caughtUp` is noted once,
    /// and a rank relaunched at or past its step has nothing to catch up.
    @Test func aRankCatchesUpToTheFurthestStepItHadReached() {
        var machine = started(logging: .pessimistic)
        machine.handleStep(40, of: 1, now: 4)
        var actions = machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 5, facts: Facts())
        #expect(launch(&machine, actions, now: 5) == [1])  // from step 10
        #expect(machine.catchUpStep(of: 1) == 40)
        _ = machine.handleConnected(1, now: 5.5)
        machine.handleStep(25, of: 1, now: 5.8)
        actions = machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 6, facts: Facts())
        #expect(launch(&machine, actions, now: 6) == [1])
        #expect(machine.catchUpStep(of: 1) == 40, "the second failure, at step 25, lowered the step to catch up to")
        #expect(notes(machine.handleCaughtUp(from: 1, step: 40, now: 9)) == [.caughtUp(rank: 1, step: 40, seconds: 3)])
        #expect(machine.handleCaughtUp(from: 1, step: 41, now: 9.5).isEmpty, "caught up twice")
        #expect(machine.catchUpStep(of: 1) == nil)

        machine.handleStep(30, of: 2, now: 10)
        _ = machine.handleExit(of: 2, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 11, facts: Facts())
        _ = machine.launching(2, plan: machine.ranks[2].plan, step: 30, now: 11)
        #expect(machine.catchUpStep(of: 2) == nil, "relaunched at the step it had reached")
    }

    @Test func pessimisticLoggingRestartsTheRankAloneAndTheOthersLearnOfIt() {
        var machine = started(logging: .pessimistic)
        let actions = machine.handleExit(of: 2, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 3, facts: Facts())
        #expect(actions.contains(.stop([])) && launch(&machine, actions, now: 3) == [2])
        #expect(machine.replaying == [2] && machine.ranks[2].plan.replayLog && machine.ranks[2].incarnation == 3)
        let connected = machine.handleConnected(2, now: 4)
        #expect(sent(connected).map(\.0) == [2, 0, 1])
        #expect(sent(connected).dropFirst().allSatisfy { $0.1 == .peerRestarted(RankID(2), incarnation: 3) })
        #expect(notes(connected).contains(.replayStart(rank: 2, incarnation: 3)))
        #expect(machine.handleReplayComplete(from: 1, now: 5).isEmpty, "only the replaying rank ends the replay")
        #expect(notes(machine.handleReplayComplete(from: 2, now: 5)) == [.recoveryDone(ranks: 1, seconds: 2, rank: 2)])
        // A lost log, or another rank recovering, means every rank rolls back.
        let lost = machine.handleExit(of: 0, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 6,
                                      facts: Facts(lost: "missing on both mirrors"))
        #expect(notes(lost).contains(.fallback(rank: 0, reason: "its message log cannot be replayed (missing on both mirrors)", optimistic: false)))
        #expect(launch(&machine, lost, now: 6) == [0, 1, 2] && machine.replaying.isEmpty)
    }

    /// Ranks that fail together (a lost host's) each replay alone under pessimistic and
    /// sender-based logging: the second joins the first's launch, both get START together,
    /// the survivors learn of both, and the recovery ends when the last has replayed.
    @Test(arguments: [LoggingMode.pessimistic, .senderBased])
    func ranksThatFailTogetherReplayAloneSideBySide(logging: LoggingMode) {
        var machine = started(4, logging: logging)
        let first = machine.handleExit(of: 2, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 3, facts: Facts())
        #expect(launch(&machine, first, now: 3) == [2])
        let second = machine.handleExit(of: 3, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 3.5, facts: Facts())
        #expect(notes(second).contains(.recoveryStart(rank: 3, mode: .replay)), "\(notes(second))")
        #expect(!notes(second).contains { if case .fallback = $0 { true } else { false } })
        #expect(launch(&machine, second, now: 3.5) == [3])
        #expect(machine.replaying == [2, 3] && machine.starting == [2, 3])
        #expect(sent(machine.handleConnected(3, now: 3.5)).allSatisfy { if case .start = $0.1 { false } else { true } },
                "START waits for every rank of the joined launch")
        let connected = machine.handleConnected(2, now: 4)
        #expect(Set(sent(connected).compactMap { if case .start = $0.1 { $0.0 } else { nil } }) == [2, 3])
        for survivor in [0, 1] {
            let learned = sent(connected).filter { $0.0 == survivor }.map(\.1)
            #expect(learned.contains(.peerRestarted(RankID(2), incarnation: 4)) && learned.contains(.peerRestarted(RankID(3), incarnation: 5)),
                    "\(learned)")
        }
        #expect(!machine.roundPossible, "no round while a rank replays")
        // Each ends on its own, timed from its own failure; rounds wait for the last.
        let third = machine.handleReplayComplete(from: 3, now: 5)
        #expect(notes(third) == [.recoveryDone(ranks: 1, seconds: 1.5, rank: 3)], "\(notes(third))")
        #expect(!machine.roundPossible, "rank 2 still replays")
        #expect(notes(machine.handleReplayComplete(from: 2, now: 6)) == [.recoveryDone(ranks: 1, seconds: 3, rank: 2)])
        #expect(machine.roundPossible && !machine.isRecovering && machine.recoveries == 2)
    }

    /// After a rollback every rank re-executes from its entry and cuts its log back when it
    /// opens it; one that dies before (it has not said `replayComplete`) still has the undone
    /// deliveries in its log and cannot replay alone. The simulator found a lone replay of such
    /// a log (`lifeline simulate --ranks 56 --seed 50480 --checkpoint independent --logging
    /// pessimistic --steps 23 --program farm`): the rank ran ahead of the master and the
    /// master added one worker's result twice.
    @Test func aRankThatDiesBeforeCuttingItsLogAfterARollbackDoesNotReplayAlone() {
        var machine = started(logging: .pessimistic)
        // A log lost on both mirrors: every rank rolls back.
        let first = machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1,
                                       facts: Facts(lost: "missing on both mirrors"))
        for rank in [0, 2] { machine.handleReaped(rank) }
        _ = launch(&machine, first, now: 1)
        #expect(machine.uncutLogs == [0, 1, 2])
        for rank in 0..<3 { _ = machine.handleConnected(rank, now: 2) }
        _ = machine.handleReplayComplete(from: 0, now: 2.1)
        let early = machine.handleExit(of: 2, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 2.2, facts: Facts())
        #expect(notes(early).contains(.fallback(rank: 2, reason: "it failed before it cut its log back to its checkpoint", optimistic: false)))
        for rank in [0, 1] { machine.handleReaped(rank) }
        _ = launch(&machine, early, now: 2.2)
        for rank in 0..<3 {
            _ = machine.handleConnected(rank, now: 3)
            _ = machine.handleReplayComplete(from: rank, now: 3.1)
        }
        let later = machine.handleExit(of: 2, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 4, facts: Facts())
        #expect(notes(later).contains(.recoveryStart(rank: 2, mode: .replay)), "its log is cut: it replays alone")
    }

    @Test func optimisticLoggingFreezesTheSurvivorsAndRestartsTheOrphansWithTheFailedRank() {
        var machine = started(4, logging: .optimistic)
        let actions = machine.handleExit(of: 0, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1, facts: Facts())
        #expect(sent(actions).map(\.0) == [1, 2, 3] && sent(actions).allSatisfy { $0.1 == .freeze })
        #expect(machine.freezing != nil)
        _ = machine.handleFrozen(from: 1, .init(interval: 0, dependencies: [9, 4, -1, -1]), now: 1.1, facts: Facts())
        _ = machine.handleFrozen(from: 2, .init(interval: 0, dependencies: [3, -1, 5, -1]), now: 1.1, facts: Facts())
        let planned = machine.handleFrozen(from: 3, .init(interval: 0, dependencies: [-1, -1, -1, 2]), now: 1.2, facts: Facts())
        #expect(notes(planned) == [.orphans(rank: 0, recoverable: 7, orphans: [1])])
        #expect(planned.contains(.stop([1])) && launch(&machine, planned, now: 1.2) == [0, 1])
        #expect(machine.ranks[0].plan.replayLimit == RecoveryPlan.ReplayLimit(rank: 0, recoverable: 7))
        _ = machine.handleConnected(0, now: 2)
        let connected = machine.handleConnected(1, now: 2)
        #expect(sent(connected).filter { $0.1 == .thaw }.map(\.0) == [2, 3])
        // The recovery ends when the orphan has replayed too: until then no round may start
        // (a rank still replaying would capture its log's end with its state behind it).
        #expect(notes(machine.handleReplayComplete(from: 0, now: 3)).isEmpty, "the orphan is still replaying")
        #expect(machine.coordinator.state == .recovering)
        #expect(notes(machine.handleReplayComplete(from: 1, now: 3)) == [.recoveryDone(ranks: 2, seconds: 2)])
        // A log that cannot be read: every rank rolls back without a freeze.
        let unreadable = machine.handleExit(of: 3, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 4,
                                            facts: Facts(recoverable: nil))
        #expect(notes(unreadable).contains(.fallback(rank: 3, reason: "rank 3's checkpoint or log cannot be read", optimistic: true)))
        #expect(launch(&machine, unreadable, now: 4) == [0, 1, 2, 3])
    }

    /// Under optimistic logging a rank that dies while the survivors are frozen joins the
    /// recovery (one plan, both failed ranks' limits); but not one whose log an earlier
    /// rollback has not yet cut: its log may hold the discarded execution, and every rank rolls
    /// back instead.
    @Test func optimisticLoggingTakesARankThatDiesDuringTheFreezeUnlessItsLogIsUncut() {
        var machine = started(4, logging: .optimistic)
        _ = machine.handleExit(of: 0, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1, facts: Facts())
        _ = machine.handleExit(of: 3, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1.05, facts: Facts())
        _ = machine.handleFrozen(from: 1, .init(interval: 0, dependencies: [-1, 4, -1, 9]), now: 1.1, facts: Facts())
        let planned = machine.handleFrozen(from: 2, .init(interval: 0, dependencies: [-1, -1, 5, -1]), now: 1.2, facts: Facts())
        #expect(notes(planned).contains(.orphans(rank: 0, recoverable: 7, orphans: [1], others: [3: 7])), "\(notes(planned))")
        #expect(launch(&machine, planned, now: 1.2) == [0, 3, 1])
        #expect(machine.ranks[1].plan.replayLimit == RecoveryPlan.ReplayLimit(recoverable: [0: 7, 3: 7]))

        // After a global rollback every log is uncut until its rank says so.
        var rolledBack = started(4, logging: .optimistic)
        let lost = rolledBack.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1,
                                         facts: Facts(recoverable: nil))
        for rank in [0, 2, 3] { rolledBack.handleReaped(rank) }
        _ = launch(&rolledBack, lost, now: 1)
        for rank in 0..<4 { _ = rolledBack.handleConnected(rank, now: 2) }
        _ = rolledBack.handleReplayComplete(from: 0, now: 2.1)  // rank 0 cut its log; rank 3 not yet
        _ = rolledBack.handleExit(of: 0, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 3, facts: Facts())
        _ = rolledBack.handleExit(of: 3, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 3.05, facts: Facts())
        _ = rolledBack.handleFrozen(from: 1, .init(interval: 0, dependencies: [-1, 1, -1, -1]), now: 3.1, facts: Facts())
        let fallback = rolledBack.handleFrozen(from: 2, .init(interval: 0, dependencies: [-1, -1, 1, -1]), now: 3.1, facts: Facts())
        #expect(notes(fallback).contains(.fallback(
            rank: 0, reason: "rank 3 failed before its log was cut to an earlier recovery", optimistic: true)), "\(notes(fallback))")
    }

    @Test func independentCheckpointsRollBackOnlyTheRanksTheLineNamesAndThawTheOthers() {
        var machine = started(3, independent: true)
        var dependencies = IntervalDependencies(rankCount: 3)
        dependencies.recordCheckpoint(rank: 0, dependencies: [-1, -1, -1])
        dependencies.recordCheckpoint(rank: 1, dependencies: [-1, -1, -1])
        let facts = Facts(checkpointCounts: [1, 1, 0], restorable: [1, 1, 0], dependencies: dependencies)
        let actions = machine.handleExit(of: 0, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 1, facts: facts)
        #expect(sent(actions).map(\.1) == [.freeze, .freeze])
        // A survivor that does not answer in time rolls back too.
        _ = machine.handleFrozen(from: 2, .init(interval: 0, dependencies: [-1, -1, -1]), now: 2, facts: facts)
        #expect(machine.checkFreeze(now: 3, facts: facts).isEmpty)
        let planned = machine.checkFreeze(now: 6.5, facts: facts)
        #expect(notes(planned).first == .freezeUnanswered(rank: 1))
        guard case .recoveryLine(first: 0, let line) = notes(planned)[1] else {
            Issue.record("no recovery line in \(planned)")
            return
        }
        #expect(line.entries == [1, 1, nil])
        guard case .launch(let order) = planned.last else {
            Issue.record("no launch in \(planned)")
            return
        }
        #expect(order.restart == [.init(0, .checkpoint(1)), .init(1, .checkpoint(1))] && order.recordsRecoveryLine)
        _ = launch(&machine, planned, now: 6.5)
        _ = machine.handleConnected(0, now: 7)
        let connected = machine.handleConnected(1, now: 7)
        #expect(sent(connected).filter { $0.1 == .thaw }.map(\.0) == [2])
        #expect(notes(connected).contains(.recoveryDone(ranks: 2, seconds: 0.5)))
    }

    @Test func silenceIsAHangOrAFailedStartAndAProgramThatNeverJoinsEndsTheJob() {
        var machine = started()
        machine.heard(from: 0, now: 2.5)
        machine.heard(from: 2, now: 2.5)
        #expect(machine.silentRanks(now: 2.5) == [1], "the driver reads what a silent rank sent last before judging it")
        let hung = machine.checkHeartbeats(now: 2.5, facts: Facts())
        #expect(hung.first == .kill(1) && notes(hung).first == .hang(rank: 1, silenceSeconds: 2.4))
        #expect(notes(hung).contains(.failure(rank: 1, cause: "stopped answering (hung) for 2.4 s", step: 10, epoch: 2)))
        #expect(machine.handleExit(of: 1, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: 2.6, facts: Facts()).isEmpty,
                "the kill's exit was expected")

        var neverJoined = self.machine()
        _ = launch(&neverJoined, neverJoined.launchEveryRank(), now: 0)
        #expect(neverJoined.checkHeartbeats(now: 11, facts: Facts()) == [.fail(.notJoined(rank: 0, seconds: 11))])
        var exitedClean = self.machine()
        _ = launch(&exitedClean, exitedClean.launchEveryRank(), now: 0)
        #expect(exitedClean.handleExit(of: 1, cause: "exited with status 0", programExit: "exited with status 0",
                                       cleanExit: true, now: 1, facts: Facts()) == [.fail(.notJoined(rank: 1, seconds: nil))])
    }

    @Test func theSameErrorFromTheSameLineEndsTheJob() {
        var machine = started()
        let first = machine.handleExit(of: 1, cause: "exited with status 3", programExit: "exited with status 3",
                                       cleanExit: false, now: 1, facts: Facts())
        for rank in [0, 2] { machine.handleReaped(rank) }
        _ = launch(&machine, first, now: 1)
        for rank in 0..<3 { _ = machine.handleConnected(rank, now: 2) }
        let again = machine.handleExit(of: 1, cause: "exited with status 3", programExit: "exited with status 3",
                                       cleanExit: false, now: 3, facts: Facts())
        #expect(again.last == .fail(.sameErrorAgain(rank: 1, exit: "exited with status 3", epoch: 2)))
    }
}
