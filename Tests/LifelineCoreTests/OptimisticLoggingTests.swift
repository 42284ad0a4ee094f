import Testing
@testable import LifelineCore

/// Optimistic logging's decisions: dependency vectors, orphans, and how far an orphan replays.
struct OptimisticLoggingTests {
    private func header(from source: Int, sequence: UInt64, tag: Int64 = 1) -> DataHeader {
        DataHeader(source: RankID(source), incarnation: 0, tag: tag, sequence: SequenceNumber(sequence), epoch: .start)
    }

    @Test func stampAndSplitRoundTrip() {
        let vector: DependencyVector = [3, 0, UInt64.max, 7]
        #expect(vector.ranks == [0, 2, 3], "an interval of 0 (the start) is not stored")
        let stamped = OptimisticLogging.stamp([9, 8, 7], with: vector)
        #expect(stamped.count == OptimisticLogging.prefixBytes(entries: 3) + 3)
        let split = OptimisticLogging.split(stamped, rankCount: 4)
        #expect(split?.vector == vector && split?.payload == [9, 8, 7])
        #expect(OptimisticLogging.split(Array(stamped.prefix(30)), rankCount: 4) == nil, "cut inside the vector")
        #expect(OptimisticLogging.split(stamped, rankCount: 3) == nil, "a rank beyond the job")
        #expect(OptimisticLogging.split(OptimisticLogging.stamp([], with: [1, 2]), rankCount: 2)?.payload == [])
        #expect(OptimisticLogging.split([1, 0, 0], rankCount: 4) == nil, "cut inside the count")
        // Entries out of order, or with interval 0, are not a vector.
        var swapped = stamped
        swapped.replaceSubrange(4..<8, with: stamped[24..<28])
        swapped.replaceSubrange(24..<28, with: stamped[4..<8])
        #expect(OptimisticLogging.split(swapped, rankCount: 4) == nil, "ranks out of order")
        var zero = stamped
        zero.replaceSubrange(8..<16, with: [UInt8](repeating: 0, count: 8))
        #expect(OptimisticLogging.split(zero, rankCount: 4) == nil, "an interval of 0")
        #expect(DependencyVector(words: vector.words, rankCount: 4) == vector)
        #expect(DependencyVector(words: [2, 1, 0, 1, 1, 0], rankCount: 4) == nil, "ranks out of order")
    }

    /// A vector stays sparse: merging keeps the larger interval per rank, and a commit drops
    /// every entry reached before its rank captured the committed round (its checkpoint in the
    /// line covers it: no failure can lose it), except the rank's own.
    @Test func aCommitForgetsWhatTheLineMadeStable() {
        var vector = DependencyVector()
        vector.advance(5, epoch: 2)  // rank 5, itself, in round 2
        var sender = DependencyVector()
        sender.advance(9, epoch: 1)
        sender.advance(9, epoch: 3)  // interval 2 of rank 9, reached after it captured round 3
        sender.advance(1, epoch: 0)
        vector.merge(sender)
        #expect(vector.ranks == [1, 5, 9] && vector[9] == 2 && vector[5] == 1 && vector[4] == 0)
        vector.forgetStable(committed: Epoch(3), except: 5)
        #expect(vector.ranks == [5, 9], "rank 1's interval came before its capture of round 1 or later")
        vector.forgetStable(committed: Epoch(4), except: 5)
        #expect(vector.ranks == [5], "its own entry stays")
    }

    /// The scenario: Q delivered m1 and m2 from any source, only m1's record reached
    /// Q's log; Q sent m3 (depending on m2) to R, which delivered it; Q crashes. R is an orphan:
    /// it rolls back to before m3 (its replay stops there), and m3 is gone with Q's lost state.
    /// A rank that only heard from Q before m2 is not an orphan.
    @Test func orphanAfterAPartiallyLoggedExecution() {
        let (p1, q, r, p2, s) = (RankID(0), RankID(1), RankID(2), RankID(3), RankID(4))
        let zero = DependencyVector()
        // m1 from P2, then m2 from P1, delivered by Q.
        let m1Vector = OptimisticLogging.afterDelivery(zero, of: p2, sender: zero, epoch: 0)  // P2 after a delivery of its own
        var qVector = OptimisticLogging.afterDelivery(zero, of: q, sender: m1Vector, epoch: 0)
        let qAfterM1 = qVector
        qVector = OptimisticLogging.afterDelivery(qVector, of: q, sender: OptimisticLogging.afterDelivery(zero, of: p1, sender: zero, epoch: 0), epoch: 0)
        #expect(qVector[q.rawValue] == 2)
        // Q sends m3 to R (and, before m2, a message to S).
        let m3 = OptimisticLogging.stamp([3], with: qVector)
        let toS = OptimisticLogging.stamp([1], with: qAfterM1)
        let rVector = OptimisticLogging.afterDelivery(zero, of: r, sender: qVector, epoch: 0)
        let sVector = OptimisticLogging.afterDelivery(zero, of: s, sender: qAfterM1, epoch: 0)
        // Only m1's record reached Q's log (its checkpoint is the start): Q recovers state 1.
        let recoverable: UInt64 = 0 + 1
        #expect(OptimisticLogging.isOrphan(rVector, failed: q, recoverable: recoverable))
        #expect(!OptimisticLogging.isOrphan(sVector, failed: q, recoverable: recoverable))
        // R rolls back to before m3: its replay stops at m3's record; S would replay its own.
        let rLog: [LogRecord] = [.delivery(header(from: 1, sequence: 0), payload: m3)]
        #expect(OptimisticLogging.replayLength(rLog, start: zero, rank: r, rankCount: 5, failed: q, recoverable: recoverable) == 0)
        let sLog: [LogRecord] = [.delivery(header(from: 1, sequence: 0), payload: toS)]
        #expect(OptimisticLogging.replayLength(sLog, start: zero, rank: s, rankCount: 5, failed: q, recoverable: recoverable) == 1)
        // Q itself replays everything its log holds.
        let qLog: [LogRecord] = [.delivery(header(from: 3, sequence: 0), payload: OptimisticLogging.stamp([1], with: m1Vector))]
        #expect(OptimisticLogging.replayLength(qLog, start: zero, rank: q, rankCount: 5, failed: q, recoverable: recoverable) == 1)
    }

    /// An orphan keeps the prefix of its log that depends on nothing lost, values included,
    /// and stops at the first record that does.
    @Test func anOrphanReplaysUpToItsFirstDependencyOnALostState() {
        let zero = DependencyVector()
        let failed = RankID(0)
        let early = OptimisticLogging.stamp([], with: [2, 0, 0])
        let late = OptimisticLogging.stamp([], with: [5, 0, 0])
        let log: [LogRecord] = [
            .delivery(header(from: 0, sequence: 0), payload: early),
            .value([1, 2]),
            .delivery(header(from: 2, sequence: 0), payload: OptimisticLogging.stamp([], with: [1, 0, 4])),
            .delivery(header(from: 0, sequence: 1), payload: late),
            .delivery(header(from: 2, sequence: 1), payload: OptimisticLogging.stamp([], with: [0, 0, 5])),
        ]
        #expect(OptimisticLogging.replayLength(log, start: zero, rank: RankID(1), rankCount: 5, failed: failed, recoverable: 4) == 3)
        #expect(OptimisticLogging.replayLength(log, start: zero, rank: RankID(1), rankCount: 5, failed: failed, recoverable: 5) == 5)
        #expect(OptimisticLogging.replayLength(log, start: zero, rank: RankID(1), rankCount: 5, failed: failed, recoverable: 1) == 0)
        // A checkpoint that already depends on more than is recoverable replays nothing.
        #expect(OptimisticLogging.replayLength(log, start: [9, 0, 0], rank: RankID(1), rankCount: 3, failed: failed, recoverable: 4) == 0)
    }

    @Test func replayReturnsTheLoggedOrderWhateverArrivesFirst() {
        // Optimistic records replay like pessimistic ones: the logged message, in logged order.
        let first = header(from: 2, sequence: 0)
        let second = header(from: 1, sequence: 0)
        var queue = ReplayQueue([.delivery(first, payload: [2]), .delivery(second, payload: [1])], mode: .optimistic)
        #expect(queue.nextReceive(source: nil, tag: 1) == .deliver(first, payload: [2]))
        #expect(queue.nextReceive(source: nil, tag: 1) == .deliver(second, payload: [1]))
        #expect(queue.nextReceive(source: nil, tag: 1) == .exhausted)
    }
}
