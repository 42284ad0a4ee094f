import Testing
@testable import LifelineCore

/// `CheckpointCoordinator`'s transition table, row by row, with virtual time.
struct CoordinatorTransitionTests {
    private func set(_ watermark: UInt64, _ above: [UInt64] = []) -> DeliveredSet {
        DeliveredSet(watermark: SequenceNumber(watermark), above: above.map { SequenceNumber($0) })
    }

    private func ack(step: Int, delivered: [DeliveredSet]) -> Acknowledgement {
        Acknowledgement(step: step, snapshotBytes: 100, outputOffset: 0, delivered: DeliveredSets(delivered))
    }

    private func ack(step: Int, rankCount: Int) -> Acknowledgement {
        ack(step: step, delivered: Array(repeating: DeliveredSet(), count: rankCount))
    }

    /// A coordinator of `rankCount` ranks, interval 10 s, whose round 1 is in `capturing` with
    /// S = `step` (every rank reported `step - 1`) at time 10.
    private func capturing(rankCount: Int, step: Int = 5) -> CheckpointCoordinator {
        var coordinator = CheckpointCoordinator(rankCount: rankCount, intervalSeconds: 10, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 10)
        for rank in 0..<rankCount { _ = coordinator.handleStepReport(from: RankID(rank), round: Epoch(1), step: step - 1) }
        #expect(coordinator.state == .capturing(Epoch(1), step: step, acks: Array(repeating: nil, count: rankCount)))
        return coordinator
    }

    /// The same, in `committing` after every ACK.
    private func committing(rankCount: Int, step: Int = 5) -> CheckpointCoordinator {
        var coordinator = capturing(rankCount: rankCount, step: step)
        for rank in 0..<rankCount { _ = coordinator.handleAck(from: RankID(rank), round: Epoch(1), ack(step: step, rankCount: rankCount), now: 0) }
        guard case .committing(Epoch(1), step, _) = coordinator.state else {
            Issue.record("not committing: \(coordinator.state)")
            return coordinator
        }
        return coordinator
    }

    @Test func normalRound() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 5, committed: .start, now: 100)
        #expect(coordinator.state == .idle(dueAt: 105))
        #expect(coordinator.nextDeadline == 105)
        #expect(coordinator.handleTick(now: 101).isEmpty)
        #expect(coordinator.handleTick(now: 104.999).isEmpty, "a round started before it was due")
        #expect(coordinator.state == .idle(dueAt: 105))
        #expect(coordinator.handleTick(now: 105) == [.broadcast(.checkpointRequest(Epoch(1)))])
        #expect(coordinator.nextDeadline == nil)
        #expect(coordinator.lastEpoch == Epoch(1))
        #expect(coordinator.handleTick(now: 200).isEmpty, "a second round started while one is open")

        #expect(coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 12).isEmpty)
        #expect(coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 12).isEmpty, "a repeated report counted twice")
        #expect(coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 30).isEmpty)
        #expect(coordinator.handleStepReport(from: RankID(2), round: Epoch(2), step: 99).isEmpty, "a report for another round counted")
        #expect(coordinator.handleStepReport(from: RankID(2), round: Epoch(1), step: -1)
                == [.broadcast(.safePointChosen(Epoch(1), step: 31))], "S = the largest report + 1")
        #expect(coordinator.state == .capturing(Epoch(1), step: 31, acks: [nil, nil, nil]))

        let acks = Array(repeating: ack(step: 31, rankCount: 3), count: 3)
        #expect(coordinator.handleAck(from: RankID(2), round: Epoch(1), acks[2], now: 0).isEmpty)
        #expect(coordinator.handleAck(from: RankID(0), round: Epoch(2), acks[0], now: 0).isEmpty, "an ACK for another round counted")
        #expect(coordinator.handleAck(from: RankID(0), round: Epoch(1), acks[0], now: 0).isEmpty)
        #expect(coordinator.handleAck(from: RankID(1), round: Epoch(1), acks[1], now: 0) == [.writeCommit(Epoch(1), step: 31, acks: acks)])
        #expect(coordinator.committedEpoch == .start, "committed before the manifest was durable")

        let done = coordinator.handleCommitDurable(Epoch(1), now: 120)
        #expect(done.count == 3)
        #expect(done.allSatisfy { if case .send(_, .checkpointDone(Epoch(1), _)) = $0 { true } else { false } })
        #expect(coordinator.committedEpoch == Epoch(1))
        #expect(coordinator.state == .idle(dueAt: 125), "the next round is due an interval after the commit")
        #expect(coordinator.handleTick(now: 124).isEmpty)
        #expect(coordinator.handleTick(now: 125) == [.broadcast(.checkpointRequest(Epoch(2)))])
    }

    /// DONE to sender s carries, for every receiver r, what r had delivered from s at capture.
    @Test func doneCarriesEveryReceiversCoverageOfTheSender() {
        var coordinator = capturing(rankCount: 3)
        // delivered[r][s]: what r delivered from s.
        let delivered = [
            [set(0), set(4), set(7, [9])],
            [set(2), set(0), set(1)],
            [set(5, [8, 11]), set(3), set(0)],
        ]
        for rank in [2, 0, 1] {
            _ = coordinator.handleAck(from: RankID(rank), round: Epoch(1), ack(step: 5, delivered: delivered[rank]), now: 0)
        }
        let actions = coordinator.handleCommitDurable(Epoch(1), now: 20)
        let expected: [CheckpointCoordinator.Action] = (0..<3).map { sender in
            .send(RankID(sender), .checkpointDone(Epoch(1), coveredByReceiver: DeliveredSets((0..<3).map { delivered[$0][sender] })))
        }
        #expect(actions == expected)
    }

    @Test func rankFailingBeforeItsAckAbortsAndRecovers() {
        for failBeforeAnyAck in [true, false] {
            var coordinator = capturing(rankCount: 3)
            if !failBeforeAnyAck {
                _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 5, rankCount: 3), now: 0)
            }
            #expect(coordinator.handleRankFailed(RankID(2), now: 12)
                    == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 2 failed")])
            #expect(coordinator.state == .recovering)
            #expect(coordinator.nextDeadline == nil)
            #expect(coordinator.committedEpoch == .start)
            #expect(coordinator.handleTick(now: 1000).isEmpty, "a round started while recovering")
            #expect(coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 5, rankCount: 3), now: 0).isEmpty,
                    "a late ACK of the aborted round was taken")
            #expect(coordinator.handleRankFailed(RankID(1), now: 13).isEmpty, "a second failure aborted again")
            #expect(coordinator.handleRestarted(now: 14).isEmpty)
            #expect(coordinator.state == .idle(dueAt: 24))
            #expect(coordinator.handleTick(now: 24) == [.broadcast(.checkpointRequest(Epoch(2)))], "round numbers never repeat")
        }
    }

    @Test func rankFailingAfterItsAckStillAborts() {
        var coordinator = capturing(rankCount: 2)
        _ = coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 5, rankCount: 2), now: 0)
        #expect(coordinator.handleRankFailed(RankID(1), now: 12)
                == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 1 failed")])
        #expect(coordinator.state == .recovering)
    }

    @Test func rankFailingWhileCollectingOrCommittingAborts() {
        var collecting = CheckpointCoordinator(rankCount: 2, intervalSeconds: 10, committed: .start, now: 0)
        _ = collecting.handleTick(now: 10)
        _ = collecting.handleStepReport(from: RankID(0), round: Epoch(1), step: 3)
        #expect(collecting.handleRankFailed(RankID(0), now: 11).first == .broadcast(.abort(Epoch(1))))
        #expect(collecting.state == .recovering)

        var committing = committing(rankCount: 2)
        #expect(committing.handleRankFailed(RankID(0), now: 11).first == .broadcast(.abort(Epoch(1))))
        #expect(committing.state == .recovering)
        #expect(committing.committedEpoch == .start)
    }

    @Test func rankFailingWhileIdleAbortsNothing() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 10, committed: Epoch(4), now: 0)
        #expect(coordinator.handleRankFailed(RankID(1), now: 3).isEmpty)
        #expect(coordinator.state == .recovering)
        #expect(coordinator.handleRestarted(now: 50).isEmpty)
        #expect(coordinator.state == .idle(dueAt: 60))
        #expect(coordinator.committedEpoch == Epoch(4))
    }

    @Test func commitFailedAborts() {
        var coordinator = committing(rankCount: 2)
        #expect(coordinator.handleCommitFailed(Epoch(2), reason: "EIO", now: 30).isEmpty, "a failure of another round was taken")
        #expect(coordinator.handleCommitFailed(Epoch(1), reason: "EIO", now: 30)
                == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "EIO")])
        #expect(coordinator.committedEpoch == .start)
        #expect(coordinator.state == .idle(dueAt: 40))
        #expect(coordinator.handleTick(now: 40) == [.broadcast(.checkpointRequest(Epoch(2)))])
    }

    @Test func snapshotFailedAbortsWhileCollectingOrCapturing() {
        var capturing = capturing(rankCount: 2)
        #expect(capturing.handleSnapshotFailed(from: RankID(1), round: Epoch(2), reason: "ENOSPC", now: 11).isEmpty)
        #expect(capturing.handleSnapshotFailed(from: RankID(1), round: Epoch(1), reason: "ENOSPC", now: 11)
                == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 1 could not write its snapshot: ENOSPC")])
        #expect(capturing.state == .idle(dueAt: 21))

        var collecting = CheckpointCoordinator(rankCount: 2, intervalSeconds: 10, committed: .start, now: 0)
        _ = collecting.handleTick(now: 10)
        #expect(collecting.handleSnapshotFailed(from: RankID(0), round: Epoch(1), reason: "x", now: 11).first
                == .broadcast(.abort(Epoch(1))))

        var committing = committing(rankCount: 2)
        #expect(committing.handleSnapshotFailed(from: RankID(0), round: Epoch(1), reason: "late", now: 11).isEmpty,
                "every snapshot is durable once committing: a late failure report must not abort")
    }

    @Test func rankFinishingBeforeSAborts() {
        var collecting = CheckpointCoordinator(rankCount: 2, intervalSeconds: 10, committed: .start, now: 0)
        _ = collecting.handleTick(now: 10)
        #expect(collecting.handleFinished(from: RankID(1), step: 9, now: 11)
                == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 1 finished at step 9 before the round's safe point")])

        var capturing = capturing(rankCount: 2, step: 10)
        #expect(capturing.handleFinished(from: RankID(0), step: 9, now: 11)
                == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 0 finished at step 9, before safe point 10")])
        #expect(capturing.state == .idle(dueAt: 21))
    }

    @Test func rankFinishingAtOrAfterSDoesNotAbort() {
        var coordinator = capturing(rankCount: 2, step: 10)
        #expect(coordinator.handleFinished(from: RankID(0), step: 10, now: 11).isEmpty, "a rank that passed S captured there")
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 10, rankCount: 2), now: 0)
        _ = coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 10, rankCount: 2), now: 0)
        #expect(coordinator.handleFinished(from: RankID(1), step: 12, now: 12).isEmpty, "no release before the commit is durable")
        let actions = coordinator.handleCommitDurable(Epoch(1), now: 13)
        #expect(actions.suffix(2) == [.broadcast(.release), .finishJob], "the last commit releases ranks already at the barrier")
        #expect(coordinator.state == .released)
        #expect(coordinator.committedEpoch == Epoch(1))
    }

    @Test func allFinishedReleasesAndNoRoundStartsOnceARankFinished() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 10, committed: .start, now: 0)
        #expect(coordinator.handleFinished(from: RankID(2), step: 50, now: 1).isEmpty)
        #expect(coordinator.handleTick(now: 500).isEmpty, "a round started after a rank finished")
        #expect(coordinator.handleCheckpointWanted(now: 501).isEmpty, "a wanted round started after a rank finished")
        #expect(coordinator.handleFinished(from: RankID(0), step: 50, now: 502).isEmpty)
        #expect(coordinator.handleFinished(from: RankID(1), step: 50, now: 503) == [.broadcast(.release), .finishJob])
        #expect(coordinator.state == .released)
        #expect(coordinator.handleTick(now: 1000).isEmpty)
        #expect(coordinator.lastEpoch == .start)
    }

    @Test func checkpointWantedStartsARoundEarly() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 100, committed: .start, now: 0)
        #expect(coordinator.handleCheckpointWanted(now: 1) == [.broadcast(.checkpointRequest(Epoch(1)))])
        // Wanted while a round is open: the next starts as soon as this one ends.
        #expect(coordinator.handleCheckpointWanted(now: 2).isEmpty)
        #expect(coordinator.handleFinished(from: RankID(0), step: 0, now: 3).first == .broadcast(.abort(Epoch(1))))
        var fresh = CheckpointCoordinator(rankCount: 1, intervalSeconds: 100, committed: .start, now: 0)
        _ = fresh.handleCheckpointWanted(now: 1)
        _ = fresh.handleStepReport(from: RankID(0), round: Epoch(1), step: 0)
        _ = fresh.handleCheckpointWanted(now: 2)
        _ = fresh.handleAck(from: RankID(0), round: Epoch(1), ack(step: 1, rankCount: 1), now: 0)
        _ = fresh.handleCommitDurable(Epoch(1), now: 3)
        #expect(fresh.handleTick(now: 3.5) == [.broadcast(.checkpointRequest(Epoch(2)))], "a wish made during a round was lost")
        _ = fresh.handleStepReport(from: RankID(0), round: Epoch(2), step: 4)
        _ = fresh.handleAck(from: RankID(0), round: Epoch(2), ack(step: 5, rankCount: 1), now: 0)
        _ = fresh.handleCommitDurable(Epoch(2), now: 4)
        #expect(fresh.handleTick(now: 5).isEmpty, "a wish started two rounds")
    }

    @Test func supervisorRestartedWithACommittedLineContinuesTheNumbering() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: Epoch(3), now: 10)
        #expect(coordinator.committedEpoch == Epoch(3))
        #expect(coordinator.lastEpoch == Epoch(3))
        #expect(coordinator.handleTick(now: 10.5).isEmpty)
        #expect(coordinator.handleTick(now: 11) == [.broadcast(.checkpointRequest(Epoch(4)))])
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(4), step: 7)
        #expect(coordinator.handleStepReport(from: RankID(1), round: Epoch(4), step: 7) == [.broadcast(.safePointChosen(Epoch(4), step: 8))])
    }

    @Test func loneRestartKeepsTheOthersAtTheFinalBarrier() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleFinished(from: RankID(0), step: 5, now: 1)
        _ = coordinator.handleFinished(from: RankID(2), step: 5, now: 1)
        _ = coordinator.handleRankFailed(RankID(1), now: 2)
        #expect(coordinator.handleRestarted(now: 3).isEmpty)
        #expect(coordinator.finished == [true, false, true])
        #expect(coordinator.handleFinished(from: RankID(1), step: 5, now: 4) == [.broadcast(.release), .finishJob])
    }

    /// A global rollback restarts everyone: ranks at the barrier before the failure run again
    /// (each loses its place when its new process is launched).
    @Test func globalRestartForgetsWhoFinished() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleFinished(from: RankID(0), step: 5, now: 1)
        _ = coordinator.handleRankFailed(RankID(1), now: 2)
        for rank in 0..<2 { coordinator.handleLaunched(RankID(rank)) }
        #expect(coordinator.handleRestarted(now: 3).isEmpty)
        #expect(coordinator.finished == [false, false])
        #expect(coordinator.handleTick(now: 4) == [.broadcast(.checkpointRequest(Epoch(1)))])
    }

    /// Every rank passed S and reached the barrier, then the manifest write failed: the round
    /// aborts, the coordinator goes idle, and since no round starts once a rank finished and
    /// every finished report is already in, nothing ever releases the job.
    /// Found by this test (disabled in 5223b2c), fixed in f8cd902.
    @Test
    func commitFailingAfterEveryRankFinishedStillReleases() {
        var coordinator = capturing(rankCount: 2, step: 5)
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 5, rankCount: 2), now: 0)
        _ = coordinator.handleFinished(from: RankID(0), step: 9, now: 11)
        _ = coordinator.handleFinished(from: RankID(1), step: 9, now: 11)
        _ = coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 5, rankCount: 2), now: 0)
        let actions = coordinator.handleCommitFailed(Epoch(1), reason: "EIO", now: 12)
        let later = coordinator.handleTick(now: 1000)
        #expect((actions + later).contains(.finishJob), "the job is never released: state \(coordinator.state)")
    }

    /// Found by this test (disabled in 5223b2c), fixed in f8cd902.
    @Test
    func snapshotFailingAfterEveryRankFinishedStillReleases() {
        var coordinator = capturing(rankCount: 2, step: 5)
        _ = coordinator.handleFinished(from: RankID(0), step: 9, now: 11)
        _ = coordinator.handleFinished(from: RankID(1), step: 9, now: 11)
        let actions = coordinator.handleSnapshotFailed(from: RankID(1), round: Epoch(1), reason: "ENOSPC", now: 12)
        let later = coordinator.handleTick(now: 1000)
        #expect((actions + later).contains(.finishJob), "the job is never released: state \(coordinator.state)")
    }
}
