import Testing
@testable import LifelineCore

/// The stall detector's transition table, row by row, with virtual time: a deadlock is declared
/// only on two equal answers in which every rank waits on the others; anything that moves is
/// progress; a rank that does not answer is busy.
struct StallDetectorTests {
    private func receive(from source: Int?, tag: Int64 = 7, delivered: UInt64 = 3) -> RankWait {
        RankWait(kind: .receive, peer: source.map { RankID($0) }, tag: tag, step: 5, sent: 4, arrived: delivered,
                 delivered: delivered)
    }

    /// Drives a detector to its first query (no progress since `now` 0) and answers it.
    private func asked(_ detector: inout StallDetector, at time: Double, answers: [RankWait?]) -> UInt32 {
        let actions = detector.handleTick(now: time, recovering: false)
        guard case .query(let serial)? = actions.first, actions.count == 1 else {
            Issue.record("expected one query at \(time), got \(actions)")
            return 0
        }
        for (rank, answer) in answers.enumerated() {
            if let answer { detector.handleAnswer(from: RankID(rank), serial: serial, answer) }
        }
        return serial
    }

    @Test func aRingOfReceivesIsADeadlockAfterTwoEqualAnswers() {
        var detector = StallDetector(rankCount: 3, thresholdSecondsMin: 2, now: 0)
        let ring = [receive(from: 1), receive(from: 2), receive(from: 0)]
        #expect(detector.handleTick(now: 1.9, recovering: false).isEmpty, "asked before the threshold")
        _ = asked(&detector, at: 2, answers: ring)
        #expect(detector.handleTick(now: 2.1, recovering: false).isEmpty, "every rank answered: the first answers are kept")
        #expect(detector.handleTick(now: 2.5, recovering: false).isEmpty, "asked again before confirmSeconds")
        _ = asked(&detector, at: 3.1, answers: ring)
        #expect(detector.handleTick(now: 3.2, recovering: false) == [.deadlock(waits: ring)])
        #expect(detector.state == .deadlocked)
        detector.handleProgress(now: 4)
        #expect(detector.state == .deadlocked, "a deadlock is final")
    }

    @Test func answersThatMoveAreProgressNotAStall() {
        var detector = StallDetector(rankCount: 2, thresholdSecondsMin: 2, now: 0)
        _ = asked(&detector, at: 2, answers: [receive(from: 1), receive(from: 0)])
        _ = detector.handleTick(now: 2.1, recovering: false)
        _ = asked(&detector, at: 3.1, answers: [receive(from: 1, delivered: 4), receive(from: 0)])
        #expect(detector.handleTick(now: 3.2, recovering: false).isEmpty)
        #expect(detector.state == .watching)
        #expect(detector.lastProgressAt == 3.2)
        #expect(detector.handleTick(now: 5.1, recovering: false).isEmpty, "the silence counts again from the moved answers")
    }

    @Test func aRankThatDoesNotAnswerMakesAStallReportedOnceNotADeadlock() {
        var detector = StallDetector(rankCount: 3, thresholdSecondsMin: 2, now: 0)
        let waits: [RankWait?] = [nil, receive(from: 0), receive(from: 0)]
        _ = asked(&detector, at: 2, answers: waits)
        #expect(detector.handleTick(now: 2.5, recovering: false).isEmpty, "concluded before answerSeconds")
        #expect(detector.handleTick(now: 3.0, recovering: false).isEmpty)
        _ = asked(&detector, at: 4.0, answers: waits)
        #expect(detector.handleTick(now: 5.0, recovering: false) == [.stall(waits: waits, silentSeconds: 5)])
        // The next question comes a threshold later; the same answers are not reported again.
        #expect(detector.handleTick(now: 6.9, recovering: false).isEmpty)
        _ = asked(&detector, at: 7.0, answers: waits)
        #expect(detector.handleTick(now: 8.0, recovering: false).isEmpty, "a stall reported twice")
        detector.handleProgress(now: 9)
        #expect(detector.state == .watching)
    }

    @Test func aRankAtItsSafePointOrHoldingSendsIsNotADeadlock() {
        for blocker in [RankWait(kind: .safePoint, step: 6), RankWait(kind: .send, peer: RankID(0), step: 5),
                        RankWait(kind: .receive, peer: RankID(0), step: 5, heldSends: 1)] {
            var detector = StallDetector(rankCount: 2, thresholdSecondsMin: 1, now: 0)
            let waits: [RankWait?] = [receive(from: 1), blocker]
            _ = asked(&detector, at: 1, answers: waits)
            _ = detector.handleTick(now: 1.1, recovering: false)
            _ = asked(&detector, at: 2.1, answers: waits)
            #expect(detector.handleTick(now: 2.2, recovering: false) == [.stall(waits: waits, silentSeconds: 2.2)],
                    "\(blocker.summary)")
        }
    }

    @Test func everyRankAtTheBarrierIsTheEndNotADeadlock() {
        var detector = StallDetector(rankCount: 2, thresholdSecondsMin: 1, now: 0)
        let waits: [RankWait?] = [RankWait(kind: .barrier, step: 9), RankWait(kind: .barrier, step: 9)]
        _ = asked(&detector, at: 1, answers: waits)
        _ = detector.handleTick(now: 1.1, recovering: false)
        _ = asked(&detector, at: 2.1, answers: waits)
        #expect(detector.handleTick(now: 2.2, recovering: false) == [.stall(waits: waits, silentSeconds: 2.2)])
        // One rank waiting to receive from a rank at the barrier is.
        var stuck = StallDetector(rankCount: 2, thresholdSecondsMin: 1, now: 0)
        let deadlocked = [receive(from: 1), RankWait(kind: .barrier, step: 9)]
        _ = asked(&stuck, at: 1, answers: deadlocked)
        _ = stuck.handleTick(now: 1.1, recovering: false)
        _ = asked(&stuck, at: 2.1, answers: deadlocked)
        #expect(stuck.handleTick(now: 2.2, recovering: false) == [.deadlock(waits: deadlocked)])
    }

    @Test func progressAndRecoveriesStartTheWatchAgainAndLateAnswersAreIgnored() {
        var detector = StallDetector(rankCount: 2, thresholdSecondsMin: 2, now: 0)
        let first = asked(&detector, at: 2, answers: [nil, nil])
        detector.handleProgress(now: 2.5)
        detector.handleAnswer(from: RankID(0), serial: first, receive(from: 1))
        #expect(detector.state == .watching, "an answer outside a question changed the state")
        #expect(detector.handleTick(now: 4.4, recovering: false).isEmpty)
        let second = asked(&detector, at: 4.5, answers: [nil, nil])
        #expect(second > first)
        #expect(detector.handleTick(now: 4.6, recovering: true).isEmpty)
        #expect(detector.state == .watching)
        #expect(detector.handleTick(now: 6.5, recovering: false).isEmpty, "the recovery did not count as activity")
    }

    @Test func theThresholdFollowsTheJobsPaceAboveTheMinimum() {
        var detector = StallDetector(rankCount: 1, thresholdSecondsMin: 1, now: 0)
        detector.handleProgress(now: 30)  // the launch: not a pace
        #expect(detector.thresholdSeconds == 1)
        for step in 1...40 { detector.handleProgress(now: 30 + Double(step) * 0.5) }
        #expect(abs(detector.thresholdSeconds - StallDetector.paceFactor * 0.5) < 1e-9)
        let threshold = StallDetector.paceFactor * 0.5
        #expect(detector.handleTick(now: 50 + threshold - 0.1, recovering: false).isEmpty, "asked before paceFactor paces of silence")
        guard case .query? = detector.handleTick(now: 50 + threshold + 0.1, recovering: false).first else {
            Issue.record("no query after paceFactor paces of silence")
            return
        }
    }
}
