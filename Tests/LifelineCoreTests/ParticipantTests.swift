import Testing
@testable import LifelineCore

/// The participant's transition table, row by row.
struct ParticipantTests {
    @Test func requestWaitScheduleCapture() {
        var participant = CheckpointParticipant(variant: .coordinated, epoch: .start, stepPassed: -1)
        #expect(participant.handleSafePoint(step: 0) == .proceed)
        #expect(participant.handleSafePoint(step: 1) == .proceed)
        #expect(participant.handleRequest(Epoch(1)) == [.reportStep(Epoch(1), step: 1)])
        #expect(participant.handleSafePoint(step: 2) == .wait, "passed its next safe point before S was known")
        #expect(participant.handleSafePointChosen(Epoch(1), step: 3).isEmpty)
        #expect(participant.handleSafePoint(step: 2) == .proceed)
        #expect(!participant.mayDeliver(messageEpoch: Epoch(1)), "a message of round 1 delivered before the capture")
        #expect(participant.handleSafePoint(step: 3) == .capture(Epoch(1)))
        #expect(participant.mayDeliver(messageEpoch: Epoch(1)))
        #expect(participant.epoch == Epoch(1))
        participant.handleSnapshotDurable(Epoch(1))
        #expect(participant.state == .acknowledged(Epoch(1)))
        #expect(participant.handleDone(Epoch(1)) == [.trimRetained(Epoch(1))])
        #expect(participant.state == .idle)
    }

    @Test func captureAtFirstSafePointPastAnSkippedStep() {
        var participant = CheckpointParticipant(variant: .coordinated, epoch: .start, stepPassed: 10)
        _ = participant.handleRequest(Epoch(1))
        _ = participant.handleSafePointChosen(Epoch(1), step: 11)
        #expect(participant.handleSafePoint(step: 20) == .capture(Epoch(1)))
    }

    @Test func blockingHoldsSendsFromCaptureToDone() {
        var participant = CheckpointParticipant(variant: .blocking, epoch: .start, stepPassed: 0)
        _ = participant.handleRequest(Epoch(1))
        _ = participant.handleSafePointChosen(Epoch(1), step: 1)
        #expect(!participant.holdsSends)
        _ = participant.handleSafePoint(step: 1)
        #expect(participant.holdsSends)
        participant.handleSnapshotDurable(Epoch(1))
        #expect(participant.holdsSends)
        #expect(participant.handleDone(Epoch(1)) == [.trimRetained(Epoch(1)), .releaseHeldSends])
        #expect(!participant.holdsSends)
    }

    @Test func coordinatedNeverHoldsSends() {
        var participant = CheckpointParticipant(variant: .coordinated, epoch: .start, stepPassed: 0)
        _ = participant.handleRequest(Epoch(1))
        _ = participant.handleSafePointChosen(Epoch(1), step: 1)
        _ = participant.handleSafePoint(step: 1)
        #expect(!participant.holdsSends)
    }

    @Test func abortLiftsTheEpochHoldAndReleasesHeldSends() {
        var other = CheckpointParticipant(variant: .blocking, epoch: .start, stepPassed: 4)
        _ = other.handleRequest(Epoch(1))
        #expect(!other.mayDeliver(messageEpoch: Epoch(1)))
        #expect(other.handleAbort(Epoch(1)).isEmpty)
        #expect(other.mayDeliver(messageEpoch: Epoch(1)), "ABORT must lift the hold on the aborted round's messages")
        #expect(other.state == .idle)

        var captured = CheckpointParticipant(variant: .blocking, epoch: .start, stepPassed: 4)
        _ = captured.handleRequest(Epoch(1))
        _ = captured.handleSafePointChosen(Epoch(1), step: 5)
        _ = captured.handleSafePoint(step: 5)
        #expect(captured.handleAbort(Epoch(1)) == [.releaseHeldSends])
        captured.handleSnapshotDurable(Epoch(1))
        #expect(captured.state == .idle, "a late durable report revived an aborted round")
    }

    @Test func staleRequestIsIgnoredAndRestartKnowsAbortedRounds() {
        var participant = CheckpointParticipant(variant: .coordinated, epoch: Epoch(3), stepPassed: 40)
        #expect(participant.handleRequest(Epoch(2)).isEmpty)
        let restarted = CheckpointParticipant(variant: .coordinated, epoch: Epoch(3), stepPassed: 40, deliverableEpoch: Epoch(5))
        #expect(restarted.mayDeliver(messageEpoch: Epoch(5)))
        #expect(!restarted.mayDeliver(messageEpoch: Epoch(6)))
    }
}
