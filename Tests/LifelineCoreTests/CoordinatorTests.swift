import Testing
@testable import LifelineCore

/// The coordinator's transition table, row by row, with virtual time.
struct CoordinatorTests {
    private func ack(step: Int, rankCount: Int, delivered: Int = 0) -> Acknowledgement {
        let set = DeliveredSet(watermark: SequenceNumber(UInt64(delivered)), above: [])
        return Acknowledgement(step: step, snapshotBytes: 10, outputOffset: 0,
                               delivered: DeliveredSets(Array(repeating: set, count: rankCount)))
    }

    @Test func normalRoundChoosesSafePointAndCommits() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 5, committed: .start, now: 0)
        #expect(coordinator.handleTick(now: 4.9).isEmpty, "a round started before it was due")
        #expect(coordinator.handleTick(now: 5) == [.broadcast(.checkpointRequest(Epoch(1)))])
        #expect(coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 7).isEmpty)
        #expect(coordinator.handleStepReport(from: RankID(2), round: Epoch(1), step: 9).isEmpty)
        #expect(coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 8)
                == [.broadcast(.safePointChosen(Epoch(1), step: 10))])
        #expect(coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 10, rankCount: 3), now: 0).isEmpty)
        #expect(coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 10, rankCount: 3), now: 0).isEmpty)
        let commit = coordinator.handleAck(from: RankID(2), round: Epoch(1), ack(step: 10, rankCount: 3), now: 0)
        guard case .writeCommit(Epoch(1), 10, let acks)? = commit.first, commit.count == 1 else {
            Issue.record("expected writeCommit, got \(commit)")
            return
        }
        #expect(acks.count == 3)
        let done = coordinator.handleCommitDurable(Epoch(1), now: 6)
        #expect(done.count == 3)
        #expect(coordinator.committedEpoch == Epoch(1))
        #expect(coordinator.state == .idle(dueAt: 11))
    }

    /// A resumed supervisor numbers its rounds after every round an earlier one started (the
    /// store holds snapshots of round 5, committed only up to 3): round 5 is never numbered
    /// again, so a round's number names one round in the whole job.
    @Test func aResumedCoordinatorNumbersItsRoundsAfterEveryRoundStarted() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: Epoch(3), started: Epoch(5), now: 0)
        #expect(coordinator.committedEpoch == Epoch(3))
        #expect(coordinator.handleTick(now: 1) == [.broadcast(.checkpointRequest(Epoch(6)))])
        var fresh = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: Epoch(3), now: 0)
        #expect(fresh.handleTick(now: 1) == [.broadcast(.checkpointRequest(Epoch(4)))])
    }

    @Test func doneCarriesEachReceiversCoverageOfTheSender() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 0)
        _ = coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 0)
        let fromZero = DeliveredSet(watermark: SequenceNumber(4), above: [])
        let fromOne = DeliveredSet(watermark: SequenceNumber(2), above: [SequenceNumber(5)])
        let rank0 = Acknowledgement(step: 1, snapshotBytes: 1, outputOffset: 0, delivered: [DeliveredSet(), fromOne])
        let rank1 = Acknowledgement(step: 1, snapshotBytes: 1, outputOffset: 0, delivered: [fromZero, DeliveredSet()])
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), rank0, now: 0)
        _ = coordinator.handleAck(from: RankID(1), round: Epoch(1), rank1, now: 0)
        let actions = coordinator.handleCommitDurable(Epoch(1), now: 2)
        #expect(actions.contains(.send(RankID(0), .checkpointDone(Epoch(1), coveredByReceiver: [DeliveredSet(), fromZero]))))
        #expect(actions.contains(.send(RankID(1), .checkpointDone(Epoch(1), coveredByReceiver: [fromOne, DeliveredSet()]))))
    }

    @Test func theCutGoesToEveryRankOnceEveryRankHasCaptured() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        #expect(coordinator.handleCaptured(from: RankID(0), round: Epoch(1), delivered: DeliveredSets(rankCount: 3), now: 1).isEmpty,
                "a captured report before S was taken")
        for rank in 0..<3 { _ = coordinator.handleStepReport(from: RankID(rank), round: Epoch(1), step: 2) }
        let fromZero = DeliveredSet(watermark: SequenceNumber(4), above: [])
        let fromTwo = DeliveredSet(watermark: SequenceNumber(1), above: [SequenceNumber(3)])
        var rank1 = DeliveredSets(rankCount: 3)
        rank1[0] = fromZero
        rank1[2] = fromTwo
        var rank2 = DeliveredSets(rankCount: 3)
        rank2[0] = fromTwo
        #expect(coordinator.handleCaptured(from: RankID(1), round: Epoch(1), delivered: rank1, now: 1).isEmpty)
        #expect(coordinator.handleCaptured(from: RankID(2), round: Epoch(0), delivered: rank2, now: 1).isEmpty, "a stale round counted")
        #expect(coordinator.handleCaptured(from: RankID(2), round: Epoch(1), delivered: rank2, now: 1).isEmpty)
        #expect(coordinator.handleCaptured(from: RankID(1), round: Epoch(1), delivered: rank1, now: 1).isEmpty,
                "a rank's second report counted as another rank's")
        let cut = coordinator.handleCaptured(from: RankID(0), round: Epoch(1), delivered: DeliveredSets(rankCount: 3), now: 1)
        #expect(cut == [
            .send(RankID(0), .cut(Epoch(1), coveredByReceiver: [DeliveredSet(), fromZero, fromTwo])),
            .send(RankID(1), .cut(Epoch(1), coveredByReceiver: DeliveredSets(rankCount: 3))),
            .send(RankID(2), .cut(Epoch(1), coveredByReceiver: [DeliveredSet(), fromTwo, DeliveredSet()])),
        ])
        #expect(coordinator.handleCaptured(from: RankID(0), round: Epoch(1), delivered: DeliveredSets(rankCount: 3), now: 1).isEmpty,
                "the cut was sent twice")
    }

    @Test func aCapturedReportForAnotherJobSizeAbortsTheRound() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        for rank in 0..<2 { _ = coordinator.handleStepReport(from: RankID(rank), round: Epoch(1), step: 0) }
        let actions = coordinator.handleCaptured(from: RankID(1), round: Epoch(1), delivered: DeliveredSets(rankCount: 5), now: 1)
        #expect(actions.first == .broadcast(.abort(Epoch(1))))
        #expect(coordinator.state == .idle(dueAt: 2))
    }

    @Test func rankFailingBeforeItsAckAbortsTheRound() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 3)
        _ = coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 3)
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 4, rankCount: 2), now: 0)
        let actions = coordinator.handleRankFailed(RankID(1), now: 2)
        #expect(actions == [.broadcast(.abort(Epoch(1))), .roundAborted(Epoch(1), reason: "rank 1 failed")])
        #expect(coordinator.state == .recovering)
        #expect(coordinator.committedEpoch == .start)
        #expect(coordinator.handleTick(now: 100).isEmpty, "a round started while recovering")
        #expect(coordinator.handleRestarted(now: 3).isEmpty)
        #expect(coordinator.handleTick(now: 4) == [.broadcast(.checkpointRequest(Epoch(2)))], "round numbers never repeat")
    }

    @Test func rankFailingAfterCommitLeavesTheLine() {
        var coordinator = CheckpointCoordinator(rankCount: 1, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 0)
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 1, rankCount: 1), now: 0)
        _ = coordinator.handleCommitDurable(Epoch(1), now: 2)
        #expect(coordinator.handleRankFailed(RankID(0), now: 2.5).isEmpty, "nothing to abort after a commit")
        #expect(coordinator.committedEpoch == Epoch(1))
    }

    @Test func supervisorRestartedAfterCommitContinuesTheNumbering() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: Epoch(3), now: 10)
        #expect(coordinator.handleTick(now: 11) == [.broadcast(.checkpointRequest(Epoch(4)))])
    }

    @Test func commitOrSnapshotFailureAborts() {
        var coordinator = CheckpointCoordinator(rankCount: 1, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 0)
        #expect(coordinator.handleSnapshotFailed(from: RankID(0), round: Epoch(1), reason: "disk full", now: 2).first
                == .broadcast(.abort(Epoch(1))))
        _ = coordinator.handleTick(now: 3)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(2), step: 5)
        _ = coordinator.handleAck(from: RankID(0), round: Epoch(2), ack(step: 6, rankCount: 1), now: 0)
        #expect(coordinator.handleCommitFailed(Epoch(2), reason: "EIO", now: 4).first == .broadcast(.abort(Epoch(2))))
        #expect(coordinator.committedEpoch == .start)
    }

    @Test func finishingBeforeTheSafePointAbortsAndAllFinishedReleases() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 1)
        _ = coordinator.handleStepReport(from: RankID(0), round: Epoch(1), step: 9)
        _ = coordinator.handleStepReport(from: RankID(1), round: Epoch(1), step: 8)
        let actions = coordinator.handleFinished(from: RankID(0), step: 9, now: 2)
        #expect(actions.first == .broadcast(.abort(Epoch(1))))
        #expect(coordinator.handleTick(now: 50).isEmpty, "no round once a rank finished")
        #expect(coordinator.handleFinished(from: RankID(1), step: 9, now: 3) == [.broadcast(.release), .finishJob])
    }

    @Test func checkpointWantedStartsEarly() {
        var coordinator = CheckpointCoordinator(rankCount: 1, intervalSeconds: 100, committed: .start, now: 0)
        #expect(coordinator.handleCheckpointWanted(now: 1) == [.broadcast(.checkpointRequest(Epoch(1)))])
    }

    @Test func loneRestartKeepsTheOthersAtTheFinalBarrier() {
        var coordinator = CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0)
        _ = coordinator.handleFinished(from: RankID(0), step: 5, now: 1)
        _ = coordinator.handleRankFailed(RankID(1), now: 2)
        #expect(coordinator.handleRestarted(now: 3).isEmpty)
        #expect(coordinator.handleFinished(from: RankID(1), step: 5, now: 4) == [.broadcast(.release), .finishJob])
    }
}

extension CoordinatorTests {
    /// An ACK whose delivered sets are for another job size (a broken rank) aborts the round
    /// instead of taking the supervisor down; the previous line stands and rounds go on.
    @Test func anAckForAnotherJobSizeAbortsTheRound() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 5, committed: .start, now: 0)
        _ = coordinator.handleTick(now: 5)
        for rank in 0..<3 { _ = coordinator.handleStepReport(from: RankID(rank), round: Epoch(1), step: 4) }
        #expect(coordinator.handleAck(from: RankID(0), round: Epoch(1), ack(step: 5, rankCount: 3), now: 6).isEmpty)
        let actions = coordinator.handleAck(from: RankID(1), round: Epoch(1), ack(step: 5, rankCount: 7), now: 6)
        #expect(actions.first == .broadcast(.abort(Epoch(1))), "\(actions)")
        #expect(coordinator.committedEpoch == .start && coordinator.state == .idle(dueAt: 11))
        #expect(coordinator.handleTick(now: 11) == [.broadcast(.checkpointRequest(Epoch(2)))])
    }
}

extension CoordinatorTests {
    /// A restarted rank that reaches the final barrier before the last of its group has caught
    /// up keeps its place there: the job is released once the recovery ends. A rank that had
    /// finished before it failed loses its place when its new process is launched.
    @Test func aRestartedRankThatFinishesBeforeTheRecoveryEndsIsReleased() {
        var coordinator = CheckpointCoordinator(rankCount: 3, intervalSeconds: 5, committed: .start, now: 0)
        _ = coordinator.handleFinished(from: RankID(0), step: 9, now: 1)
        _ = coordinator.handleFinished(from: RankID(1), step: 9, now: 1)
        _ = coordinator.handleRankFailed(RankID(1), now: 2)
        for rank in [1, 2] { coordinator.handleLaunched(RankID(rank)) }
        #expect(coordinator.finished == [true, false, false], "the relaunched rank runs again")
        #expect(coordinator.handleFinished(from: RankID(2), step: 9, now: 3).isEmpty, "still recovering")
        #expect(coordinator.handleFinished(from: RankID(1), step: 9, now: 3).isEmpty)
        #expect(coordinator.handleRestarted(now: 4) == [.broadcast(.release), .finishJob])
    }
}
