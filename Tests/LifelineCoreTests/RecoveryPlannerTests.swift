import Testing
@testable import LifelineCore

/// The recovery policy and its planners (LifelineCore/Recovery): what the supervisor does when
/// a rank dies, decided without processes, clocks or disks.
@Suite struct RecoveryPlannerTests {
    private func failure(_ rank: Int, exit: String? = nil, epoch: UInt64 = 3) -> RecoveryPolicy.Failure {
        RecoveryPolicy.Failure(rank: RankID(rank), programExit: exit, lineEpoch: epoch)
    }

    @Test func thePolicyChoosesThePlannerOfEachSchemeAndLoggingMode() {
        let expected: [(LoggingMode, Bool, RecoveryPolicy.Decision)] = [
            (.none, false, .globalRollback(fallback: nil)), (.none, true, .partialRollback),
            (.pessimistic, false, .loneReplay), (.pessimistic, true, .loneReplay),
            (.senderBased, false, .loneReplay), (.optimistic, false, .optimisticReplay),
        ]
        for (logging, independent, decision) in expected {
            var policy = RecoveryPolicy(logging: logging, independent: independent, maxRestarts: 5)
            #expect(policy.decide(failure(1), othersRecovering: false) { nil } == decision, "\(logging) independent \(independent)")
            #expect(policy.failures == 1)
        }
    }

    @Test func aLoneRestartFallsBackToAGlobalRollbackAndReadsTheLogOnlyWhenItMatters() {
        var reads = 0
        func lost() -> String? {
            reads += 1
            return "missing on both mirrors"
        }
        var pessimistic = RecoveryPolicy(logging: .pessimistic, independent: false, maxRestarts: 9)
        #expect(pessimistic.decide(failure(2), othersRecovering: false, logLost: lost)
                == .globalRollback(fallback: "its message log cannot be replayed (missing on both mirrors)"))
        #expect(reads == 1)
        #expect(pessimistic.decide(failure(2), othersRecovering: true, logLost: lost)
                == .globalRollback(fallback: "it failed while another rank recovers"))
        #expect(reads == 1, "another rank recovering decides without reading the log")
        var optimistic = RecoveryPolicy(logging: .optimistic, independent: false, maxRestarts: 9)
        #expect(optimistic.decide(failure(0), othersRecovering: false, logLost: lost) == .optimisticReplay)
        #expect(reads == 1, "optimistic logging keeps no log a lone replay needs whole")
        // Sender-based logging's records are in the event logger, which the caller asks.
        var senderBased = RecoveryPolicy(logging: .senderBased, independent: false, maxRestarts: 9)
        #expect(senderBased.decide(failure(0), othersRecovering: false, logLost: lost)
                == .globalRollback(fallback: "its message log cannot be replayed (missing on both mirrors)"))
        #expect(reads == 2)
    }

    /// After a resize the newest line was written by another number of ranks: no rank has an
    /// entry of its own in it, so every logging mode rolls every rank back (and rebuilds them).
    @Test func aLineFromBeforeAResizeRollsEveryRankBack() {
        for logging in [LoggingMode.pessimistic, .senderBased, .optimistic] {
            var policy = RecoveryPolicy(logging: logging, independent: false, maxRestarts: 9)
            let decision = policy.decide(failure(1), othersRecovering: false, lineResized: true) { nil }
            guard case .globalRollback(let fallback?) = decision else {
                Issue.record("\(logging): \(decision)")
                continue
            }
            #expect(fallback.contains("resized"), "\(logging): \(fallback)")
        }
    }

    @Test func theJobGivesUpOnTheSameErrorFromTheSameLineAndPastMaxRestarts() {
        var policy = RecoveryPolicy(logging: .none, independent: false, maxRestarts: 4)
        #expect(policy.decide(failure(1, exit: "exited with status 3"), othersRecovering: false) { nil } == .globalRollback(fallback: nil))
        // From a newer line the same error is a new attempt; a kill in between starts over.
        #expect(policy.decide(failure(1, exit: "exited with status 3", epoch: 4), othersRecovering: false) { nil }
                == .globalRollback(fallback: nil))
        #expect(policy.decide(failure(0), othersRecovering: false) { nil } == .globalRollback(fallback: nil))
        #expect(policy.decide(failure(1, exit: "exited with status 3", epoch: 4), othersRecovering: false) { nil }
                == .globalRollback(fallback: nil))
        #expect(policy.decide(failure(2, exit: "exited with status 3", epoch: 4), othersRecovering: false) { nil }
                == .sameErrorAgain(exit: "exited with status 3", epoch: 4))
        var few = RecoveryPolicy(logging: .pessimistic, independent: false, maxRestarts: 1)
        #expect(few.decide(failure(0), othersRecovering: false) { nil } == .loneReplay)
        few.countFailureDuringFreeze()
        #expect(few.decide(failure(1), othersRecovering: false) { nil } == .restartsExhausted(failures: 3))
    }

    @Test func globalRollbackAndLoneReplayPlans() {
        let global = GlobalRollback.plan(failed: RankID(2), rankCount: 3, fallback: "why")
        #expect(global.mode == .globalRollback && global.stop == [0, 1, 2] && global.restartedRanks == [0, 1, 2])
        #expect(global.restart.allSatisfy { $0.start == .newestLine } && !global.replayLog && global.fallback == "why")
        #expect(global.restartsEveryRank(rankCount: 3))
        let alone = LoneReplay.plan(failed: RankID(1), independentStart: nil)
        #expect(alone.mode == .replay && alone.stop.isEmpty && alone.restart == [RecoveryPlan.Restart(1, .newestLine)] && alone.replayLog)
        #expect(LoneReplay.plan(failed: RankID(1), independentStart: 4).restart == [RecoveryPlan.Restart(1, .checkpoint(4))])
    }

    @Test func optimisticRecoveryRestartsTheOrphansAndThawsTheOthers() throws {
        // Rank 1's log recovers its states up to 5. Rank 0 depends on its state 7 (an orphan),
        // rank 2 on its state 5, rank 3 is dead (a survivor that did not come back is not thawed).
        let freeze = OptimisticOrphans.Freeze(vectors: [0: [9, 7, 0, 0], 2: [0, 5, 4, 0]], failed: [1])
        let result = OptimisticOrphans.plan(failed: RankID(1), recoverable: { _ in 5 }, freeze: freeze, rankCount: 4) { $0 != 3 }
        let (plan, orphans) = try result.get()
        #expect(orphans == [0])
        #expect(plan.mode == .replay && plan.stop == [0] && plan.restartedRanks == [1, 0] && plan.replayLog)
        #expect(plan.replayLimit == RecoveryPlan.ReplayLimit(rank: 1, recoverable: 5) && plan.thaw == [2])
        #expect(OptimisticOrphans.orphans(of: RankID(1), recoverable: 7, vectors: freeze.vectors, rankCount: 4).isEmpty)
        // A vector of the wrong length (a confused answer) never makes an orphan.
        #expect(OptimisticOrphans.orphans(of: RankID(1), recoverable: 0, vectors: [0: [1, 9]], rankCount: 4).isEmpty)
    }

    @Test func optimisticRecoveryFallsBackWhenItCannot() {
        let unreadable = OptimisticOrphans.plan(
            failed: RankID(1), recoverable: { _ in nil }, freeze: .init(vectors: [:], failed: [1]), rankCount: 3) { _ in true }
        #expect(unreadable.map(\.orphans) == .failure(.init("rank 1's checkpoint or log cannot be read")))
        let second = OptimisticOrphans.plan(
            failed: RankID(1), recoverable: { $0 == 1 ? 2 : nil }, freeze: .init(vectors: [0: [0, 0, 0]], failed: [1, 2]), rankCount: 3
        ) { _ in true }
        #expect(second.map(\.orphans) == .failure(.init("rank 2's checkpoint or log cannot be read")))
    }

    /// Ranks that failed together (a lost host's) are recovered together: each replays what its
    /// own log recovers, the orphans of any of them roll back, and a failed rank that is still
    /// alive (it did not answer the freeze) is stopped first.
    @Test func optimisticRecoveryTakesRanksThatFailedTogether() throws {
        // Ranks 1 and 2 failed; rank 1 recovers up to its state 5, rank 2 up to 3. Rank 0
        // depends on rank 2's state 4 (an orphan), rank 3 on rank 1's 5 and rank 2's 3 (not);
        // rank 4 did not answer (alive, hung): it failed too, and recovers up to its state 9.
        let freeze = OptimisticOrphans.Freeze(
            vectors: [0: [9, 1, 4, 0, 0], 3: [0, 5, 3, 8, 0]], failed: [1, 2, 4])
        let limits: [Int: UInt64] = [1: 5, 2: 3, 4: 9]
        let (plan, orphans) = try OptimisticOrphans.plan(
            failed: RankID(1), recoverable: { limits[$0] }, freeze: freeze, rankCount: 5) { [0, 3, 4].contains($0) }.get()
        #expect(orphans == [0])
        #expect(plan.restartedRanks == [1, 2, 4, 0] && plan.stop == [4, 0] && plan.thaw == [3])
        #expect(plan.replayLimit == RecoveryPlan.ReplayLimit(recoverable: limits))
        #expect(plan.replayLimit?.orphans(DependencyVector(dense: [0, 0, 4, 0, 0])) == true)
        #expect(plan.replayLimit?.orphans(DependencyVector(dense: [0, 5, 3, 0, 9])) == false)
    }

    @Test func independentRecoveryRollsBackOnlyWhatTheLineNeeds() {
        // Rank 0: two checkpoints; rank 1: one; rank 2: none. Rank 0 dies in its interval 2;
        // rank 1's current interval delivered what rank 0 sent in it, rank 2's nothing.
        var dependencies = IntervalDependencies(rankCount: 3)
        dependencies.recordCheckpoint(rank: 0, dependencies: [-1, -1, -1])
        dependencies.recordCheckpoint(rank: 0, dependencies: [-1, -1, -1])
        dependencies.recordCheckpoint(rank: 1, dependencies: [-1, -1, -1])
        let frozen: [Int: IndependentPartialRollback.Frozen] = [
            1: .init(interval: 1, dependencies: [2, -1, -1]), 2: .init(interval: 0, dependencies: [-1, -1, -1]),
        ]
        let line = IndependentPartialRollback.line(
            first: RankID(0), failed: [0], frozen: frozen, recordCounts: [2, 1, 0], dependencies: dependencies)
        #expect(line.entries == [2, 1, nil] && line.rolledBack == [0, 1] && !line.domino)
        #expect(line.plan.mode == .partialRollback && line.plan.stop == [0, 1] && line.plan.thaw == [2])
        #expect(line.plan.restart == [RecoveryPlan.Restart(0, .checkpoint(2)), RecoveryPlan.Restart(1, .checkpoint(1))])
        // A survivor whose interval the records do not know (its checkpoint failed) rolls back too.
        var confused = frozen
        confused[2] = .init(interval: 1, dependencies: [-1, -1, -1])
        let all = IndependentPartialRollback.line(
            first: RankID(0), failed: [0], frozen: confused, recordCounts: [2, 1, 0], dependencies: dependencies)
        #expect(all.entries == [2, 1, 0] && all.plan.mode == .globalRollback && all.plan.thaw.isEmpty && !all.domino)
    }

    @Test func theDominoEffectIsNamed() {
        // Each rank's checkpointed interval depends on the other's interval after its checkpoint.
        var dependencies = IntervalDependencies(rankCount: 2)
        dependencies.recordCheckpoint(rank: 0, dependencies: [-1, 1])
        dependencies.recordCheckpoint(rank: 1, dependencies: [1, -1])
        let line = IndependentPartialRollback.line(
            first: RankID(0), failed: [0], frozen: [1: .init(interval: 1, dependencies: [1, -1])], recordCounts: [1, 1],
            dependencies: dependencies)
        #expect(line.entries == [0, 0] && line.domino && line.plan.mode == .globalRollback)
    }
}

/// The freeze before a partial recovery, as a state: answers, deaths and time in, the outcome out.
@Suite struct FreezeTests {
    private let answer = IndependentPartialRollback.Frozen(interval: 2, dependencies: [1, -1, 0, 3])

    @Test func completesWhenEveryAskedRankAnswered() {
        var freeze = Freeze(first: RankID(1), purpose: .independent, asked: [0, 2, 3], restarting: [], now: 10, timeoutSeconds: 5)
        #expect(freeze.outcome == nil && freeze.deadline == 15)
        #expect(freeze.handleReply(from: 0, answer) == nil)
        #expect(freeze.handleReply(from: 9, answer) == nil, "a rank not asked changes nothing")
        #expect(freeze.handleTick(now: 14.9) == nil)
        #expect(freeze.handleReply(from: 2, answer) == nil)
        let outcome = freeze.handleReply(from: 3, answer)
        #expect(outcome == Freeze.Outcome(failed: [1], replies: [0: answer, 2: answer, 3: answer], unanswered: []))
    }

    @Test func startingRanksFailAtOnceAndSilentOnesAtTheDeadline() {
        var freeze = Freeze(first: RankID(0), purpose: .independent, asked: [1, 3], restarting: [2], now: 0, timeoutSeconds: 5)
        #expect(freeze.failed == [0, 2])
        #expect(freeze.handleReply(from: 1, answer) == nil)
        let outcome = freeze.handleTick(now: 5)
        #expect(outcome == Freeze.Outcome(failed: [0, 2, 3], replies: [1: answer], unanswered: [3]))
        // With nobody to ask, the freeze is complete at once.
        let empty = Freeze(first: RankID(0), purpose: .independent, asked: [], restarting: [], now: 0, timeoutSeconds: 5)
        #expect(empty.outcome == Freeze.Outcome(failed: [0], replies: [:], unanswered: []))
    }

    /// A death joins the failed ranks; under optimistic logging too the freeze then waits for
    /// the other survivors' vectors (they say which of them are orphans of either failure).
    @Test func aDeathJoinsTheFailedAndTheFreezeWaitsForTheOthers() {
        var independent = Freeze(first: RankID(0), purpose: .independent, asked: [1, 2], restarting: [], now: 0, timeoutSeconds: 5)
        #expect(independent.handleReply(from: 1, answer) == nil)
        #expect(independent.handleRankDied(1) == nil, "an answer from a rank that died does not count")
        #expect(independent.handleRankDied(2) == Freeze.Outcome(failed: [0, 1, 2], replies: [:], unanswered: []))
        var optimistic = Freeze(
            first: RankID(0), purpose: .optimistic(recoverable: 4), asked: [1, 2], restarting: [], now: 0, timeoutSeconds: 5)
        #expect(optimistic.handleRankDied(2) == nil, "rank 1 has not answered")
        #expect(optimistic.handleReply(from: 1, answer) == Freeze.Outcome(failed: [0, 2], replies: [1: answer], unanswered: []))
    }
}

/// The rank's one switch over the logging modes: each mode's row of the table, as stated.
@Suite struct RankLoggingTests {
    @Test func eachModeLogsWhatItsRuleSays() {
        let none = RankLogging(mode: .none, independent: false)
        #expect(none.delivery(anySource: true) == nil && none.value == nil && !none.tracksDependencies)
        let pessimistic = RankLogging(mode: .pessimistic, independent: false)
        #expect(pessimistic.delivery(anySource: false) == .synchronously(.delivery))
        #expect(pessimistic.delivery(anySource: true) == .synchronously(.delivery) && pessimistic.value == .synchronously(.value))
        let senderBased = RankLogging(mode: .senderBased, independent: false)
        #expect(senderBased.delivery(anySource: false) == nil, "a named source needs no determinant: channels are FIFO")
        #expect(senderBased.delivery(anySource: true) == .synchronously(.determinant))
        let optimistic = RankLogging(mode: .optimistic, independent: false)
        #expect(optimistic.delivery(anySource: false) == .buffered(.delivery) && optimistic.value == .buffered(.value))
        #expect(optimistic.tracksDependencies && optimistic.flushesAtCheckpoints)
        #expect(!pessimistic.flushesAtCheckpoints && !senderBased.tracksDependencies)
    }

    @Test func aPeersRestartMakesItsOldMessagesObsoleteOnlyWhereItReExecutes() {
        for mode in LoggingMode.allCases {
            #expect(RankLogging(mode: mode, independent: true).peerRestartMakesObsolete, "\(mode), independent")
            #expect(RankLogging(mode: mode, independent: false).peerRestartMakesObsolete == (mode == .optimistic), "\(mode)")
        }
    }
}
