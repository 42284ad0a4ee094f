import Testing
@testable import LifelineCore

/// `CheckpointParticipant` under `--checkpoint minimal`: the keep row of its transition table,
/// and the change count the rule reads (changes since the last *committed* capture).
struct MinimalParticipantTests {
    /// A minimal participant that has passed `stepPassed` and made `changes` deliveries.
    private func participant(epoch: UInt64 = 0, stepPassed: Int = 4, changes: Int = 0) -> CheckpointParticipant {
        var rank = CheckpointParticipant(variant: .minimal, epoch: Epoch(epoch), stepPassed: stepPassed)
        for _ in 0..<changes { rank.noteChange() }
        return rank
    }

    /// Runs `rank` to the safe point `step` of round `round` (S = step) and returns its decision there.
    private func reachSafePoint(_ rank: inout CheckpointParticipant, round: UInt64, step: Int) -> CheckpointParticipant.SafePointDecision {
        #expect(rank.handleRequest(Epoch(round)) == [.reportStep(Epoch(round), step: rank.stepPassed)])
        #expect(rank.handleSafePointChosen(Epoch(round), step: step).isEmpty)
        return rank.handleSafePoint(step: step)
    }

    @Test func keepsWhenNothingWasDelivered() {
        var rank = participant(stepPassed: 4)
        #expect(rank.changesSinceCheckpoint == 0)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.handleSafePointChosen(Epoch(1), step: 6)
        #expect(rank.handleSafePoint(step: 5) == .proceed)
        #expect(!rank.mayDeliver(messageEpoch: Epoch(1)), "a round-1 message may not be delivered before S")
        #expect(rank.handleSafePoint(step: 6) == .keep(Epoch(1)))
        #expect(rank.state == .acknowledged(Epoch(1)), "a kept rank acknowledges at once")
        #expect(rank.stepPassed == 6)
        #expect(rank.changesSinceCheckpoint == 0)
        #expect(rank.handleSafePoint(step: 7) == .proceed, "one round keeps once")
    }

    /// The round of the rank's own checkpoint in the newest committed line: the restored one,
    /// then each round whose capture committed; unchanged by a round it kept. After a failed
    /// drain (`writeAtNextRound`) the rank writes its next round instead of keeping.
    @Test func theCommittedRoundFollowsCapturesAndStaysWhileTheRankKeeps() {
        var rank = CheckpointParticipant(variant: .minimal, epoch: Epoch(3), stepPassed: 30)
        #expect(rank.committedRound == Epoch(3))
        #expect(reachSafePoint(&rank, round: 4, step: 31) == .keep(Epoch(4)))
        _ = rank.handleDone(Epoch(4))
        #expect(rank.committedRound == Epoch(3), "a kept round leaves the entry")
        rank.writeAtNextRound()
        #expect(reachSafePoint(&rank, round: 5, step: 32) == .capture(Epoch(5)))
        rank.handleSnapshotDurable(Epoch(5))
        _ = rank.handleDone(Epoch(5))
        #expect(rank.committedRound == Epoch(5))
        #expect(reachSafePoint(&rank, round: 6, step: 33) == .keep(Epoch(6)), "its capture committed: it may keep again")
    }

    /// A rank rebuilt by a resize has no checkpoint of its own to keep (the line it began
    /// from was written by the ranks before the resize): it writes its first round even with
    /// nothing delivered, and keeps from then on.
    @Test func aRankRebuiltByAResizeWritesItsFirstRound() {
        var rank = CheckpointParticipant(variant: .minimal, epoch: Epoch(4), stepPassed: 40, hasOwnCheckpoint: false)
        #expect(rank.changesSinceCheckpoint == 0)
        #expect(reachSafePoint(&rank, round: 5, step: 41) == .capture(Epoch(5)))
        rank.handleSnapshotDurable(Epoch(5))
        _ = rank.handleDone(Epoch(5))
        #expect(reachSafePoint(&rank, round: 6, step: 42) == .keep(Epoch(6)), "its own capture committed: it may keep")
        var aborted = CheckpointParticipant(variant: .minimal, epoch: Epoch(4), stepPassed: 40, hasOwnCheckpoint: false)
        #expect(reachSafePoint(&aborted, round: 5, step: 41) == .capture(Epoch(5)))
        _ = aborted.handleAbort(Epoch(5))
        #expect(reachSafePoint(&aborted, round: 6, step: 42) == .capture(Epoch(6)), "an aborted round left it nothing to keep")
    }

    @Test func keptRankEntersTheRound() {
        var rank = participant(epoch: 2, stepPassed: 9)
        #expect(reachSafePoint(&rank, round: 3, step: 10) == .keep(Epoch(3)))
        // Messages it sends from here on carry round 3, so members that have not captured hold them.
        #expect(rank.epoch == Epoch(3))
        #expect(rank.deliverableEpoch == Epoch(3))
        #expect(rank.mayDeliver(messageEpoch: Epoch(3)), "a kept rank takes the members' round-3 messages")
        #expect(!rank.mayDeliver(messageEpoch: Epoch(4)))
        #expect(!rank.holdsSends, "minimal holds no sends")
        rank.handleSnapshotDurable(Epoch(3))
        #expect(rank.state == .acknowledged(Epoch(3)), "a durable report for a round it kept changed its state")
    }

    @Test func keepsAtTheFirstSafePointPastASkippedS() {
        var rank = participant(stepPassed: 0)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.handleSafePointChosen(Epoch(1), step: 5)
        #expect(rank.handleSafePoint(step: 8) == .keep(Epoch(1)))
        #expect(rank.stepPassed == 8)
    }

    @Test func capturesWhenSomethingWasDelivered() {
        for changes in [1, 3] {
            var rank = participant(stepPassed: 4, changes: changes)
            #expect(rank.changesSinceCheckpoint == UInt64(changes))
            #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
            #expect(rank.state == .writing(Epoch(1)))
            #expect(rank.epoch == Epoch(1))
        }
    }

    /// The rule is minimal's alone: the other variants capture with nothing delivered.
    @Test(arguments: [CheckpointVariant.coordinated, .blocking])
    func otherVariantsCaptureWithNothingDelivered(_ variant: CheckpointVariant) {
        var rank = CheckpointParticipant(variant: variant, epoch: .start, stepPassed: 4)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
    }

    @Test func abortedCaptureDoesNotResetTheCount() {
        for durable in [false, true] {
            var rank = participant(stepPassed: 4, changes: 1)
            #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
            if durable { rank.handleSnapshotDurable(Epoch(1)) }
            #expect(rank.handleAbort(Epoch(1)).isEmpty)
            #expect(rank.state == .idle)
            #expect(rank.changesSinceCheckpoint == 1, "an aborted capture counted as a checkpoint (durable: \(durable))")
            #expect(reachSafePoint(&rank, round: 2, step: 6) == .capture(Epoch(2)),
                    "the delivery before the aborted capture is in no committed checkpoint: the rank must write")
        }
    }

    @Test func committedCaptureResetsTheCount() {
        var rank = participant(stepPassed: 4, changes: 2)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
        rank.handleSnapshotDurable(Epoch(1))
        #expect(rank.changesSinceCheckpoint == 2, "the count reset before the round committed")
        #expect(rank.handleDone(Epoch(1)) == [.trimRetained(Epoch(1))])
        #expect(rank.changesSinceCheckpoint == 0)
        #expect(reachSafePoint(&rank, round: 2, step: 6) == .keep(Epoch(2)), "nothing new since the committed capture")
    }

    /// The committed count is the one at capture: what the rank delivered between its capture
    /// and DONE is not in the snapshot.
    @Test func deliveryBetweenCaptureAndDoneStillCounts() {
        var rank = participant(stepPassed: 4, changes: 2)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
        rank.noteChange()
        rank.handleSnapshotDurable(Epoch(1))
        _ = rank.handleDone(Epoch(1))
        #expect(rank.changesSinceCheckpoint == 1)
        #expect(reachSafePoint(&rank, round: 2, step: 6) == .capture(Epoch(2)))
    }

    @Test func doneAfterKeepTrims() {
        var rank = participant(epoch: 1, stepPassed: 4)
        #expect(reachSafePoint(&rank, round: 2, step: 5) == .keep(Epoch(2)))
        #expect(rank.handleDone(Epoch(2)) == [.trimRetained(Epoch(2))])
        #expect(rank.state == .idle)
        #expect(rank.epoch == Epoch(2))
        #expect(rank.changesSinceCheckpoint == 0)
        #expect(reachSafePoint(&rank, round: 3, step: 6) == .keep(Epoch(3)), "a rank that stays idle keeps round after round")
    }

    /// A keep moves no count: a delivery after S (a member's round-e message) is not in the
    /// entry the rank kept, so the next round must capture.
    @Test func keepDoesNotResetTheCount() {
        var rank = participant(stepPassed: 4)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .keep(Epoch(1)))
        rank.noteChange()
        _ = rank.handleDone(Epoch(1))
        #expect(rank.changesSinceCheckpoint == 1)
        #expect(reachSafePoint(&rank, round: 2, step: 6) == .capture(Epoch(2)))
    }

    @Test func abortAfterKeep() {
        var rank = participant(stepPassed: 4)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .keep(Epoch(1)))
        #expect(rank.handleAbort(Epoch(1)).isEmpty, "a kept rank holds nothing to release")
        #expect(rank.state == .idle)
        #expect(rank.epoch == Epoch(1), "the rank's messages already carry epoch 1")
        #expect(reachSafePoint(&rank, round: 2, step: 6) == .keep(Epoch(2)))
    }

    @Test func restoredParticipantStartsWithoutChanges() {
        var rank = CheckpointParticipant(variant: .minimal, epoch: Epoch(3), stepPassed: 10, deliverableEpoch: Epoch(5))
        #expect(rank.changesSinceCheckpoint == 0)
        #expect(reachSafePoint(&rank, round: 6, step: 11) == .keep(Epoch(6)))
        #expect(rank.epoch == Epoch(6))
    }

    @Test func countSurvivesAnAbortedRoundUntilACommittedOne() {
        var rank = participant(stepPassed: 4, changes: 1)
        #expect(reachSafePoint(&rank, round: 1, step: 5) == .capture(Epoch(1)))
        _ = rank.handleAbort(Epoch(1))
        rank.noteChange()
        #expect(rank.changesSinceCheckpoint == 2)
        #expect(reachSafePoint(&rank, round: 2, step: 6) == .capture(Epoch(2)))
        rank.handleSnapshotDurable(Epoch(2))
        _ = rank.handleDone(Epoch(2))
        #expect(rank.changesSinceCheckpoint == 0)
        // A DONE for a round this rank kept does not move the count back to an older capture.
        #expect(reachSafePoint(&rank, round: 3, step: 7) == .keep(Epoch(3)))
        _ = rank.handleDone(Epoch(3))
        #expect(rank.changesSinceCheckpoint == 0)
    }
}
