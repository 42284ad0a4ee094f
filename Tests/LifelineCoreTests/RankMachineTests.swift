import Testing
@testable import LifelineCore

/// The rank's decisions about its messages (`RankMachine`), driven in-process: routes of a
/// send, arrivals that are dropped, what a receive may take, what a delivery changes, replay,
/// commits and freezes, in each logging mode where they differ.
@Suite struct RankMachineTests {
    /// A payload's hash: its bytes summed with their positions (enough to tell test payloads apart).
    static let hash: @Sendable ([UInt8]) -> UInt64 = { bytes in
        bytes.enumerated().reduce(UInt64(bytes.count)) { $0 &* 31 &+ UInt64($1.element) &+ UInt64($1.offset) }
    }

    private func machine(_ rank: Int = 1, ranks: Int = 3, incarnation: UInt32 = 0, variant: CheckpointVariant = .coordinated,
                         logging: LoggingMode = .none, retainedMax: Int = 0, replay: [LogRecord]? = nil) -> RankMachine {
        RankMachine(
            settings: .init(rank: RankID(rank), rankCount: ranks, incarnation: incarnation, variant: variant, logging: logging,
                            retainedBytesMax: retainedMax, intervalSeconds: variant == .independent ? 1 : 0),
            restored: nil, deliverableEpoch: nil, replay: replay.map { ReplayQueue($0, mode: logging) }, now: 0,
            fingerprint: Self.hash)
    }

    private func header(from source: Int, _ sequence: UInt64, tag: Int64 = 7, epoch: UInt64 = 0, incarnation: UInt32 = 0) -> DataHeader {
        DataHeader(source: RankID(source), incarnation: incarnation, tag: tag, sequence: SequenceNumber(sequence), epoch: Epoch(epoch))
    }

    @Test func aSendLeavesNowIsHeldWhileBlockingOrWaitsBehindARestartedPeersResend() {
        var rank = machine(variant: .blocking)
        #expect(rank.send([1], to: RankID(0), tag: 7).route == .now)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.participant.handleSafePointChosen(Epoch(1), step: 0)
        #expect(rank.participant.handleSafePoint(step: 0) == .capture(Epoch(1)))
        #expect(rank.send([2], to: RankID(2), tag: 7).route == .held)
        rank.participant.handleSnapshotDurable(Epoch(1))
        #expect(rank.participant.handleDone(Epoch(1)).contains(.releaseHeldSends))
        #expect(rank.takeHeldSends().map(\.payload) == [[2]] && rank.heldSends.isEmpty)

        var restarted = machine(incarnation: 4)
        _ = restarted.send([1], to: RankID(0), tag: 7)
        restarted.peerConnected(RankID(0), incarnation: 9, connecting: false)
        let next = restarted.send([2], to: RankID(0), tag: 7)
        #expect(next.route == .afterResend)
        #expect(restarted.takeResend(to: RankID(0))?.map(\.payload) == [[1], [2]], "the retained messages, the new one last")
        #expect(restarted.takeResend(to: RankID(0)) == nil)
        restarted.peerConnected(RankID(0), incarnation: 9, connecting: false)
        #expect(restarted.send([3], to: RankID(0), tag: 7).route == .now, "an older or equal incarnation is no restart")
    }

    /// A dropped connection loses what was in flight: the sender sends everything it retains
    /// for that peer again, first; the receiver delivers each message once, in order, whether
    /// its copy was delivered already, waits in its inbox, or was lost.
    @Test func afterADroppedConnectionTheRetainedMessagesGoAgainAndArriveOnce() throws {
        var sender = machine(0)
        var receiver = machine(1)
        let sent = (1...4).map { sender.send([UInt8($0)], to: RankID(1), tag: 7).outgoing }
        receiver.arrive(sent[0].header, sent[0].payload)
        #expect(try receiver.deliver(sent[0].header, receiver.take(from: RankID(0), tag: 7)!.payload) == [1])
        receiver.arrive(sent[1].header, sent[1].payload)  // arrived, not yet received; 3 and 4 lost
        #expect(sender.takeResend(to: RankID(1)) == nil, "nothing to resend before a drop")
        sender.connectionLost(to: RankID(1))
        #expect(sender.send([5], to: RankID(1), tag: 7).route == .afterResend)
        let again = sender.takeResend(to: RankID(1)) ?? []
        #expect(again.map(\.payload) == [[1], [2], [3], [4], [5]], "every retained message, the new one last")
        for message in again { receiver.arrive(message.header, message.payload) }
        var delivered: [[UInt8]] = []
        while let arrival = receiver.take(from: RankID(0), tag: 7) { delivered.append(try receiver.deliver(arrival.header, arrival.payload)) }
        #expect(delivered == [[2], [3], [4], [5]])
        #expect(receiver.takeNondeterminism() == nil)
        #expect(sender.send([6], to: RankID(1), tag: 7).route == .now)
    }

    /// A group receive takes its messages before it delivers any: a restarted sender's second
    /// copy of one it took (sent again because it was not delivered yet) is not taken again
    /// for the group's next request on that channel, which gets the next message instead.
    @Test(arguments: [LoggingMode.pessimistic, .senderBased, .none])
    func aGroupReceiveTakesAResentCopyOfATakenMessageOnce(logging: LoggingMode) throws {
        var sender = machine(0, logging: logging)
        var receiver = machine(1, logging: logging)
        let first = sender.send([1], to: RankID(1), tag: 7).outgoing
        receiver.arrive(first.header, first.payload)
        var taken: [RankMachine.Arrival] = []
        let firstTaken = receiver.take(from: RankID(0), tag: 7, besides: taken)
        taken.append(try #require(firstTaken))
        // The sender restarts before the group delivers; its restored state sends the first again.
        receiver.arrive(first.header, first.payload)
        let again = receiver.take(from: RankID(0), tag: 7, besides: taken)
        #expect(again == nil, "the resent copy was taken a second time")
        let second = sender.send([2], to: RankID(1), tag: 7).outgoing
        receiver.arrive(second.header, second.payload)
        let secondTaken = receiver.take(from: RankID(0), tag: 7, besides: taken)
        taken.append(try #require(secondTaken))
        #expect(try taken.map { try receiver.deliver($0.header, $0.payload) } == [[1], [2]])
    }

    /// A restored rank's resend after a dropped connection carries its own incarnation, like
    /// the resend after its restore: a peer that knows it rolled back drops what its earlier
    /// incarnations sent, but not the messages of the restored state.
    @Test func aResendAfterARestoreCarriesTheNewIncarnation() {
        var earlier = machine(0, incarnation: 4, variant: .independent)
        _ = earlier.send([1], to: RankID(1), tag: 7)
        var restored = RankMachine(
            settings: .init(rank: RankID(0), rankCount: 3, incarnation: 9, variant: .independent, logging: .none, intervalSeconds: 1),
            restored: .init(epoch: Epoch(1), step: 3, ledger: earlier.ledger, dependencies: DependencyVector()),
            deliverableEpoch: nil, replay: nil, now: 0, fingerprint: Self.hash)
        #expect(restored.retainedOutgoing.map(\.header.incarnation) == [9])
        restored.connectionLost(to: RankID(1))
        let again = restored.takeResend(to: RankID(1)) ?? []
        #expect(again.map(\.header.incarnation) == [9] && again.map(\.payload) == [[1]])
        var peer = machine(1, variant: .independent)
        peer.peerRestarted(RankID(0), incarnation: 9)
        #expect(again.allSatisfy { !peer.isObsolete($0.header) })
        #expect(peer.isObsolete(earlier.ledger.retained[1][0].header), "what incarnation 4 itself sent is obsolete")
    }

    /// Blocking checkpoints: a send held since the capture must not overtake, when it is
    /// released, the resend a dropped connection (or a restarted peer) made pending meanwhile
    /// (`lifeline simulate --ranks 12 --seed 30007814 --checkpoint blocking --logging
    /// sender-based --steps 17 --program ring --faults all` delivered message 12 before 9).
    @Test func heldSendsGoBehindAPendingResend() {
        var rank = machine(variant: .blocking)
        _ = rank.send([1], to: RankID(0), tag: 7)
        _ = rank.send([2], to: RankID(2), tag: 7)
        _ = rank.handleRequest(Epoch(1))
        _ = rank.participant.handleSafePointChosen(Epoch(1), step: 0)
        #expect(rank.participant.handleSafePoint(step: 0) == .capture(Epoch(1)))
        #expect(rank.send([3], to: RankID(0), tag: 7).route == .held)
        #expect(rank.send([4], to: RankID(2), tag: 7).route == .held)
        #expect(rank.send([5], to: RankID(0), tag: 7).route == .held)
        rank.connectionLost(to: RankID(0))
        let released = rank.takeHeldSends()
        #expect(released.map(\.payload) == [[1], [3], [5], [4]], "the resend to rank 0 (held sends included, once), then rank 2's held send")
        #expect(rank.takeResend(to: RankID(0)) == nil)
    }

    /// Optimistic logging: a message whose dependency vector cannot be read is not delivered
    /// (its dependencies are unknown); the rank records nothing of it.
    @Test func anOptimisticMessageWithoutAReadableVectorIsNotDelivered() {
        var rank = machine(logging: .optimistic)
        let unreadable = header(from: 0, 0)
        rank.arrive(unreadable, [0xFF])
        let taken = rank.take(from: RankID(0), tag: 7)
        #expect(throws: WireError.self) { _ = try rank.deliver(unreadable, taken?.payload ?? []) }
        #expect(rank.deliveries == 0 && !rank.ledger.isDuplicate(source: RankID(0), sequence: SequenceNumber(0)))
    }

    /// What a non-blocking receive's test counts: messages of the tag, not duplicates, up to
    /// the first held back for its round; none while frozen.
    @Test func theDeliverableCountSkipsDuplicatesAndStopsAtAHeldMessage() throws {
        var rank = machine(variant: .coordinated)
        rank.arrive(header(from: 0, 0), [1])
        rank.arrive(header(from: 0, 1, tag: 9), [2])
        rank.arrive(header(from: 0, 2), [3])
        rank.arrive(header(from: 0, 2), [3])  // a resend's copy
        #expect(rank.deliverableCount(from: RankID(0), tag: 7) == 2)
        _ = try rank.deliver(header(from: 0, 0), rank.take(from: RankID(0), tag: 7)!.payload)
        #expect(rank.deliverableCount(from: RankID(0), tag: 7) == 1)
        rank.arrive(header(from: 0, 3, epoch: 5), [4])  // a round this rank has not captured
        rank.arrive(header(from: 0, 4, epoch: 5), [5])
        #expect(rank.deliverableCount(from: RankID(0), tag: 7) == 1)
        _ = rank.freeze()
        #expect(rank.deliverableCount(from: RankID(0), tag: 7) == 0)
    }

    @Test func retentionNearItsMaximumAsksForOneCheckpointPerRound() {
        var rank = machine(retainedMax: 40)
        #expect(!rank.send([UInt8](repeating: 0, count: 8), to: RankID(0), tag: 1).askCheckpoint)
        #expect(rank.send([UInt8](repeating: 0, count: 8), to: RankID(0), tag: 1).askCheckpoint)
        #expect(!rank.send([UInt8](repeating: 0, count: 8), to: RankID(0), tag: 1).askCheckpoint, "asked already")
        _ = rank.handleRequest(Epoch(1))
        #expect(rank.send([UInt8](repeating: 0, count: 8), to: RankID(0), tag: 1).askCheckpoint)
    }

    @Test func aReceiveTakesByTagAndSourceInTurnAndNothingWhileFrozenOrBeforeItsRound() {
        var rank = machine()
        rank.arrive(header(from: 0, 0, tag: 5), [1])
        rank.arrive(header(from: 0, 1, tag: 7), [2])
        rank.arrive(header(from: 2, 0, tag: 7), [3])
        #expect(rank.take(from: RankID(0), tag: 7)?.payload == [2], "tag 5 waits; tag 7 behind it is taken")
        #expect(rank.take(from: nil, tag: 7)?.payload == [3])
        _ = rank.freeze()
        #expect(rank.take(from: RankID(0), tag: 5) == nil)
        rank.thaw()
        #expect(rank.take(from: RankID(0), tag: 5)?.payload == [1])
        // A message of round 2 waits until this rank has captured it (or the round aborted).
        rank.arrive(header(from: 0, 2, epoch: 2), [4])
        #expect(rank.take(from: RankID(0), tag: 7) == nil)
        _ = rank.participant.handleAbort(Epoch(2))
        #expect(rank.take(from: RankID(0), tag: 7)?.payload == [4])
    }

    @Test func aDuplicateIsDroppedAndADuplicateWithOtherBytesIsNondeterminismSaidOnce() throws {
        var rank = machine(logging: .pessimistic)
        let first = header(from: 0, 0)
        rank.arrive(first, [1, 2])
        #expect(try rank.deliver(first, rank.take(from: RankID(0), tag: 7)!.payload) == [1, 2])
        #expect(!rank.arrive(first, [1, 2]) && rank.takeNondeterminism() == nil)
        let differing = rank.arrive(first, [9, 9])
        #expect(!differing)
        #expect(rank.takeNondeterminism() == .init(source: RankID(0), sequence: SequenceNumber(0)))
        #expect(!rank.arrive(first, [8, 8]) && rank.takeNondeterminism() == nil, "said once")
        #expect(rank.arrivals == 1 && rank.deliveries == 1)

        // Without logging a peer never restarts alone: deliveries are not hashed, and a
        // duplicate (a connection dropped and its retained messages sent again) is only dropped.
        var plain = machine(logging: .none)
        plain.arrive(first, [1, 2])
        _ = try plain.deliver(first, plain.take(from: RankID(0), tag: 7)!.payload)
        #expect(!plain.arrive(first, [9, 9]) && plain.takeNondeterminism() == nil)
    }

    /// What a restarted peer's earlier incarnation sent is obsolete where the peer rolled back
    /// (independent checkpoints, optimistic orphans) — under optimistic logging too, which the
    /// runtime once missed — and a plain duplicate where it replayed alone.
    @Test(arguments: [(LoggingMode.optimistic, CheckpointVariant.coordinated, true), (.none, .independent, true),
                      (.pessimistic, .coordinated, false), (.senderBased, .coordinated, false)])
    func aRestartedPeersEarlierMessagesAreObsoleteWhereItRolledBack(logging: LoggingMode, variant: CheckpointVariant, obsolete: Bool) {
        var rank = machine(variant: variant, logging: logging)
        let stamped = logging == .optimistic ? OptimisticLogging.stamp([5], with: [0, 0, 0]) : [5]
        rank.arrive(header(from: 0, 0, incarnation: 0), stamped)
        rank.peerRestarted(RankID(0), incarnation: 3)
        #expect((rank.take(from: RankID(0), tag: 7) == nil) == obsolete, "queued before the restart")
        #expect(rank.arrive(header(from: 0, 1, incarnation: 2), stamped) != obsolete, "arriving after it")
        var taken = [RankMachine.Arrival(header: header(from: 0, 2, incarnation: 1), payload: stamped),
                     RankMachine.Arrival(header: header(from: 2, 0, incarnation: 0), payload: stamped)]
        rank.returnObsolete(&taken)
        #expect(taken.count == (obsolete ? 0 : 2))
    }

    /// A restarted rank sends what it retained again, stamped with its new incarnation: a
    /// receiver that drops what the rank's earlier incarnations sent (independent checkpoints,
    /// optimistic logging) must keep these, or it skips one and delivers the next in its place.
    /// The simulator found this (`lifeline simulate --ranks 5 --seed 2 --logging optimistic
    /// --steps 16`, before the stamp): rank 1 delivered rank 2's step-8 message as step 7's.
    @Test func retainedMessagesSentAgainAfterARestartAreNotObsolete() {
        var before = machine(2, incarnation: 2, logging: .optimistic)
        _ = before.send([1], to: RankID(1), tag: 7)
        let restored = RankMachine.Restored(epoch: Epoch(1), step: 8, ledger: before.ledger, dependencies: [0, 0, 0])
        let restarted = RankMachine(
            settings: .init(rank: RankID(2), rankCount: 3, incarnation: 11, variant: .coordinated, logging: .optimistic),
            restored: restored, deliverableEpoch: nil, replay: nil, now: 0, fingerprint: Self.hash)
        let resent = restarted.retainedOutgoing
        #expect(resent.map(\.header.incarnation) == [11] && resent.map(\.header.sequence) == [SequenceNumber(0)])
        var receiver = machine(1, logging: .optimistic)
        receiver.peerRestarted(RankID(2), incarnation: 11)
        let kept = receiver.arrive(resent[0].header, resent[0].payload)
        let stale = receiver.arrive(before.ledger.retained[1][0].header, before.ledger.retained[1][0].payload)
        #expect(kept, "the resent copy is kept")
        #expect(!stale, "the copy the earlier incarnation sent is obsolete")
    }

    @Test func optimisticDeliveriesMergeTheSendersVectorAndIndependentOnesItsInterval() throws {
        var optimistic = machine(logging: .optimistic)
        let first = header(from: 0, 0)
        optimistic.arrive(first, OptimisticLogging.stamp([7], with: [4, 0, 2]))
        #expect(try optimistic.deliver(first, optimistic.take(from: RankID(0), tag: 7)!.payload) == [7])
        #expect(optimistic.dependencyVector == [4, 1, 2])
        optimistic.noteLoggedValue()
        #expect(optimistic.dependencyVector == [4, 2, 2])
        #expect(optimistic.freeze() == .frozen(interval: 0, dependencies: [4, 2, 2]))
        let sent = optimistic.send([1], to: RankID(2), tag: 1).outgoing
        #expect(OptimisticLogging.split(sent.payload, rankCount: 3)?.vector == [4, 2, 2])

        var independent = machine(variant: .independent)
        let late = header(from: 2, 0, epoch: 3)
        independent.arrive(late, [1])
        _ = try independent.deliver(late, [1])
        #expect(independent.intervalDependencies.dense == [-1, -1, 3])
        #expect(!independent.independentCheckpointDue(now: 0.5) && independent.independentCheckpointDue(now: 1.3))
        let closed = independent.closeInterval(now: 1.3)
        #expect(closed.index == 1 && closed.dependencies == [-1, -1, 3] && independent.intervalDependencies.dense == [-1, -1, -1])
        #expect(independent.send([1], to: RankID(0), tag: 1).outgoing.header.epoch == Epoch(1), "messages carry the interval")
    }

    /// The next independent checkpoint is due a period (the interval ±25 %) after the last one's
    /// write ended, not after its capture: a write longer than the period must not queue the
    /// next behind it (heat2d ×4 on 2 cores, a 6.8 s computation, took 158 s).
    @Test func theNextIndependentCheckpointIsDueAPeriodAfterTheLastWriteEnds() {
        var rank = machine(variant: .independent)  // interval 1 s
        #expect(rank.independentCheckpointDue(now: 1.3))
        let first = rank.closeInterval(now: 1.3)
        #expect(!rank.independentCheckpointDue(now: 100), "still being written")
        rank.independentCheckpointEnded(first.index + 1, now: 50)
        #expect(!rank.independentCheckpointDue(now: 100), "another checkpoint's end does not count")
        rank.independentCheckpointEnded(first.index, now: 100)
        #expect(!rank.independentCheckpointDue(now: 100.74) && rank.independentCheckpointDue(now: 101.26))
        let second = rank.closeInterval(now: 101.26)
        rank.independentCheckpointEnded(second.index, now: 101.5)  // a failed write ends it too
        #expect(!rank.independentCheckpointDue(now: 102.24) && rank.independentCheckpointDue(now: 102.76))
    }

    /// A rank that replays its log takes no independent checkpoint: its snapshot would record
    /// the log's end while its state is still behind it, and a restore from it would skip the
    /// rest of the replay. The simulator found it (`lifeline simulate --ranks 7 --seed 63391
    /// --checkpoint independent --logging pessimistic --steps 38 --program farm --faults storage`).
    @Test func noIndependentCheckpointWhileReplaying() {
        let logged = header(from: 0, 0)
        var rank = machine(variant: .independent, logging: .pessimistic, replay: [.delivery(logged, payload: [3])])
        #expect(!rank.independentCheckpointDue(now: 10), "replaying")
        rank.endReplay()
        #expect(rank.independentCheckpointDue(now: 10))
    }

    @Test func aReplayReturnsTheLoggedDeliveriesInOrderAndSaysWhereTheProgramDiverged() throws {
        let logged = header(from: 0, 0)
        var pessimistic = machine(logging: .pessimistic, replay: [.delivery(logged, payload: [3]), .value([9])])
        #expect(pessimistic.replayReceive(source: RankID(0), tag: 7) == .deliver(logged, [3]))
        #expect(try pessimistic.replayValue() == [9] && pessimistic.replayExhausted)
        #expect(pessimistic.replayReceive(source: nil, tag: 7) == .exhausted)

        let any = header(from: 2, 4)
        var senderBased = machine(logging: .senderBased, replay: [.determinant(any)])
        #expect(senderBased.replayReceive(source: RankID(0), tag: 7) == .live, "a named source is received live")
        #expect(senderBased.replayReceive(source: nil, tag: 7) == .await(any))
        #expect(senderBased.takeReplayed(any) == nil)
        senderBased.arrive(any, [5])
        #expect(senderBased.takeReplayed(any)?.payload == [5])

        var diverged = machine(logging: .pessimistic, replay: [.delivery(logged, payload: [3])])
        guard case .diverged = diverged.replayReceive(source: RankID(0), tag: 8) else {
            Issue.record("a receive of another tag than logged must diverge")
            return
        }
        var threw = false
        do { _ = try diverged.replayValue() } catch { threw = true }
        #expect(threw, "a value read where a delivery was logged diverges")
    }

    @Test func aCommitDropsWhatTheReceiversCheckpointsCoverAndSaysWhereTheLogIsTrimmed() {
        var rank = machine()
        _ = rank.send([1], to: RankID(0), tag: 1)
        _ = rank.send([2], to: RankID(0), tag: 1)
        _ = rank.send([3], to: RankID(2), tag: 1)
        rank.noteCapture(Epoch(1), logPosition: 12)
        var covered = DeliveredSet()
        _ = covered.insert(SequenceNumber(0))
        #expect(rank.committed(Epoch(1), coveredByReceiver: [covered, DeliveredSet(), DeliveredSet()], coversSelf: true) == 12)
        #expect(rank.ledger.retained[0].map(\.payload) == [[2]] && rank.ledger.retained[2].count == 1)
        #expect(rank.committed(Epoch(1), coveredByReceiver: [], coversSelf: true) == nil, "trimmed once")
        #expect(rank.retainedOutgoing.map(\.payload) == [[2], [3]])
    }
}
