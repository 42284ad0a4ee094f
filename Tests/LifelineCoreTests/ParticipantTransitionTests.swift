import Testing
@testable import LifelineCore

/// `CheckpointParticipant`'s transition table (its doc comment), row by row, for the variants
/// that run in rounds (minimal's keep row: `MinimalParticipantTests`).
struct ParticipantTransitionTests {
    /// The variants with rounds; `independent` has none (`IntervalDependenciesTests`).
    static let roundVariants: [CheckpointVariant] = [.coordinated, .blocking, .minimal]

    private func participant(_ variant: CheckpointVariant = .coordinated, epoch: UInt64 = 0, stepPassed: Int = -1) -> CheckpointParticipant {
        CheckpointParticipant(variant: variant, epoch: Epoch(epoch), stepPassed: stepPassed)
    }

    /// A participant that captured round `round` at step `step` (having delivered a message, so
    /// that minimal captures too).
    private func captured(_ variant: CheckpointVariant, round: UInt64 = 1, step: Int = 5) -> CheckpointParticipant {
        var rank = participant(variant, epoch: round - 1, stepPassed: step - 1)
        rank.noteChange()
        _ = rank.handleRequest(Epoch(round))
        _ = rank.handleSafePointChosen(Epoch(round), step: step)
        #expect(rank.handleSafePoint(step: step) == .capture(Epoch(round)))
        return rank
    }

    @Test func idleProceedsAndCountsSteps() {
        var rank = participant()
        #expect(rank.stepPassed == -1)
        for step in [0, 1, 4, 9] {
            #expect(rank.handleSafePoint(step: step) == .proceed)
            #expect(rank.stepPassed == step)
        }
        #expect(rank.state == .idle)
        #expect(rank.epoch == .start)
    }

    @Test(arguments: roundVariants)
    func requestReportsTheLastPassedStep(_ variant: CheckpointVariant) {
        var fresh = participant(variant)
        #expect(fresh.handleRequest(Epoch(1)) == [.reportStep(Epoch(1), step: -1)], "a rank before its first safe point reports -1")
        #expect(fresh.state == .reported(Epoch(1)))

        var running = participant(variant, epoch: 2, stepPassed: 17)
        #expect(running.handleRequest(Epoch(3)) == [.reportStep(Epoch(3), step: 17)])
        #expect(running.state == .reported(Epoch(3)))
        #expect(running.epoch == Epoch(2), "a request alone must not change the epoch messages carry")
    }

    @Test func safePointBeforeSIsKnownWaitsWithoutPassing() {
        var rank = participant(stepPassed: 3)
        _ = rank.handleRequest(Epoch(1))
        for _ in 0..<3 {
            #expect(rank.handleSafePoint(step: 4) == .wait)
            #expect(rank.stepPassed == 3, "waiting at a safe point passed it")
        }
        #expect(rank.state == .reported(Epoch(1)))
        // After S is known, the same safe point is retried.
        _ = rank.handleSafePointChosen(Epoch(1), step: 4)
        #expect(rank.handleSafePoint(step: 4) == .capture(Epoch(1)))
    }

    @Test func safePointChosenForAnotherRoundIsIgnored() {
        var rank = participant(stepPassed: 3)
        #expect(rank.handleSafePointChosen(Epoch(1), step: 5).isEmpty)
        #expect(rank.state == .idle, "S without a request scheduled a capture")
        _ = rank.handleRequest(Epoch(1))
        #expect(rank.handleSafePointChosen(Epoch(2), step: 5).isEmpty)
        #expect(rank.state == .reported(Epoch(1)), "S of another round was taken")
        #expect(rank.handleSafePointChosen(Epoch(1), step: 5).isEmpty)
        #expect(rank.state == .scheduled(Epoch(1), step: 5))
    }

    @Test func scheduledProceedsBelowSAndCapturesAtS() {
        var rank = participant(stepPassed: 1)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.handleSafePointChosen(Epoch(1), step: 4)
        #expect(rank.handleSafePoint(step: 2) == .proceed)
        #expect(rank.handleSafePoint(step: 3) == .proceed)
        #expect(rank.state == .scheduled(Epoch(1), step: 4))
        #expect(rank.epoch == .start)
        #expect(!rank.mayDeliver(messageEpoch: Epoch(1)), "a round-1 message may not be delivered before this rank's capture")
        #expect(rank.handleSafePoint(step: 4) == .capture(Epoch(1)))
        #expect(rank.state == .writing(Epoch(1)))
        #expect(rank.epoch == Epoch(1))
        #expect(rank.deliverableEpoch == Epoch(1))
        #expect(rank.stepPassed == 4)
        #expect(rank.mayDeliver(messageEpoch: Epoch(1)))
        #expect(!rank.mayDeliver(messageEpoch: Epoch(2)))
        #expect(rank.handleSafePoint(step: 5) == .proceed, "one round captures once")
    }

    @Test func captureAtTheFirstSafePointPastASkippedS() {
        var rank = participant(stepPassed: 0)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.handleSafePointChosen(Epoch(1), step: 5)
        #expect(rank.handleSafePoint(step: 3) == .proceed)
        #expect(rank.handleSafePoint(step: 8) == .capture(Epoch(1)), "steps 5…7 were skipped: capture at 8")
        #expect(rank.stepPassed == 8)
    }

    @Test(arguments: roundVariants)
    func durableThenDoneTrimsAndReleasesOnlyForBlocking(_ variant: CheckpointVariant) {
        var rank = captured(variant)
        rank.handleSnapshotDurable(Epoch(1))
        #expect(rank.state == .acknowledged(Epoch(1)))
        let actions = rank.handleDone(Epoch(1))
        #expect(actions == (variant == .blocking ? [.trimRetained(Epoch(1)), .releaseHeldSends] : [.trimRetained(Epoch(1))]))
        #expect(rank.state == .idle)
        #expect(rank.epoch == Epoch(1))
        #expect(!rank.holdsSends)
    }

    /// DONE follows every ACK, so it may reach the rank's thread before its own writer's report.
    @Test(arguments: roundVariants)
    func doneOvertakingTheDurableReport(_ variant: CheckpointVariant) {
        var rank = captured(variant)
        let actions = rank.handleDone(Epoch(1))
        #expect(actions.first == .trimRetained(Epoch(1)))
        #expect(actions.contains(.releaseHeldSends) == (variant == .blocking))
        rank.handleSnapshotDurable(Epoch(1))
        #expect(rank.state == .idle, "a late durable report reopened a committed round")
    }

    @Test func durableReportOfAnotherRoundIsIgnored() {
        var rank = captured(.coordinated, round: 2)
        rank.handleSnapshotDurable(Epoch(1))
        #expect(rank.state == .writing(Epoch(2)))
    }

    @Test func holdsSendsOnlyInBlockingBetweenCaptureAndDone() {
        for variant in Self.roundVariants {
            var rank = participant(variant, stepPassed: 0)
            var observed: [Bool] = [rank.holdsSends]
            _ = rank.handleRequest(Epoch(1))
            observed.append(rank.holdsSends)
            _ = rank.handleSafePointChosen(Epoch(1), step: 2)
            observed.append(rank.holdsSends)
            _ = rank.handleSafePoint(step: 1)
            observed.append(rank.holdsSends)
            _ = rank.handleSafePoint(step: 2)  // capture
            observed.append(rank.holdsSends)
            _ = rank.handleSafePoint(step: 3)  // computing on while writing
            observed.append(rank.holdsSends)
            rank.handleSnapshotDurable(Epoch(1))
            observed.append(rank.holdsSends)
            _ = rank.handleDone(Epoch(1))
            observed.append(rank.holdsSends)
            let expected = variant == .blocking
                ? [false, false, false, false, true, true, true, false]
                : Array(repeating: false, count: 8)
            #expect(observed == expected, "\(variant)")
        }
    }

    @Test(arguments: roundVariants)
    func abortBeforeCaptureLiftsTheEpochHold(_ variant: CheckpointVariant) {
        // Aborted while reported (waiting for S) and while scheduled.
        for chooseS in [false, true] {
            var rank = participant(variant, stepPassed: 4)
            _ = rank.handleRequest(Epoch(1))
            if chooseS { _ = rank.handleSafePointChosen(Epoch(1), step: 6) }
            #expect(!rank.mayDeliver(messageEpoch: Epoch(1)))
            #expect(rank.handleAbort(Epoch(1)).isEmpty, "nothing was held before the capture")
            #expect(rank.state == .idle)
            #expect(rank.mayDeliver(messageEpoch: Epoch(1)), "ABORT(1) must let round-1 messages through")
            #expect(!rank.mayDeliver(messageEpoch: Epoch(2)))
            #expect(rank.epoch == .start, "an aborted round this rank never captured is not its epoch")
            #expect(rank.handleSafePoint(step: 5) == .proceed, "the aborted round still made the rank wait")
            #expect(rank.handleSafePoint(step: 6) == .proceed, "the aborted round still captured")
            // The next round is accepted.
            #expect(rank.handleRequest(Epoch(2)) == [.reportStep(Epoch(2), step: 6)])
        }
    }

    @Test(arguments: roundVariants)
    func abortAfterCaptureReleasesHeldSendsOnlyForBlocking(_ variant: CheckpointVariant) {
        for durable in [false, true] {
            var rank = captured(variant)
            if durable { rank.handleSnapshotDurable(Epoch(1)) }
            #expect(rank.handleAbort(Epoch(1)) == (variant == .blocking ? [.releaseHeldSends] : []))
            #expect(rank.state == .idle)
            #expect(!rank.holdsSends)
            #expect(rank.epoch == Epoch(1), "the rank's messages already carry epoch 1")
            #expect(rank.mayDeliver(messageEpoch: Epoch(1)))
            #expect(rank.handleRequest(Epoch(2)) == [.reportStep(Epoch(2), step: 5)])
        }
    }

    @Test func abortWhileIdleOnlyRaisesTheDeliverableEpoch() {
        var rank = participant(stepPassed: 2)
        #expect(rank.handleAbort(Epoch(3)).isEmpty)
        #expect(rank.state == .idle)
        #expect(rank.deliverableEpoch == Epoch(3))
        #expect(rank.epoch == .start)
        #expect(rank.handleAbort(Epoch(1)).isEmpty)
        #expect(rank.deliverableEpoch == Epoch(3), "an old ABORT lowered the deliverable epoch")
    }

    @Test func staleRequestsAreIgnored() {
        var rank = participant(epoch: 3, stepPassed: 40)
        #expect(rank.handleRequest(Epoch(3)).isEmpty, "a request for the rank's own epoch")
        #expect(rank.handleRequest(Epoch(2)).isEmpty, "a request for an older round")
        #expect(rank.state == .idle)
        _ = rank.handleAbort(Epoch(5))
        #expect(rank.handleRequest(Epoch(5)).isEmpty, "a request for a round already aborted")
        #expect(rank.handleRequest(Epoch(6)) == [.reportStep(Epoch(6), step: 40)])
    }

    @Test func restartedParticipantKnowsTheAbortedRounds() {
        let rank = CheckpointParticipant(variant: .coordinated, epoch: Epoch(3), stepPassed: 40, deliverableEpoch: Epoch(5))
        #expect(rank.epoch == Epoch(3))
        #expect(rank.deliverableEpoch == Epoch(5))
        #expect(rank.mayDeliver(messageEpoch: Epoch(5)) && !rank.mayDeliver(messageEpoch: Epoch(6)))
        let older = CheckpointParticipant(variant: .coordinated, epoch: Epoch(3), stepPassed: 40, deliverableEpoch: Epoch(1))
        #expect(older.deliverableEpoch == Epoch(3), "the deliverable epoch may not be below the rank's own")
        var copy = rank
        #expect(copy.handleRequest(Epoch(5)).isEmpty)
        #expect(copy.handleRequest(Epoch(6)) == [.reportStep(Epoch(6), step: 40)])
    }
}
