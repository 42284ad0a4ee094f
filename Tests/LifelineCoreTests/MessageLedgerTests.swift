import Testing
@testable import LifelineCore

/// Sequence numbers, retention and its trim, duplicate suppression, and the ledger's snapshot form.
struct MessageLedgerTests {
    private func seq(_ value: UInt64) -> SequenceNumber { SequenceNumber(value) }

    private func encode(_ ledger: MessageLedger) -> [UInt8] {
        var writer = ByteWriter()
        ledger.encode(into: &writer)
        return writer.bytes
    }

    @Test func sequenceNumbersCountPerDestination() {
        var ledger = MessageLedger(rank: RankID(1), rankCount: 3)
        var stamped: [[UInt64]] = [[], [], []]
        for destination in [0, 2, 2, 0, 2, 1, 0] {
            let header = ledger.send(to: RankID(destination), tag: 5, epoch: Epoch(2), incarnation: 3, payload: [1])
            #expect(header.source == RankID(1))
            #expect(header.epoch == Epoch(2))
            #expect(header.incarnation == 3)
            #expect(header.tag == 5)
            stamped[destination].append(header.sequence.rawValue)
        }
        #expect(stamped == [[0, 1, 2], [0], [0, 1, 2]], "each channel counts from 0 on its own")
        #expect(ledger.nextSequence.dense == [3, 1, 3].map(seq))
    }

    @Test func everySendIsRetainedWithItsHeaderAndPayload() {
        var ledger = MessageLedger(rank: RankID(0), rankCount: 2)
        let first = ledger.send(to: RankID(1), tag: 1, epoch: .start, incarnation: 0, payload: [1, 2, 3])
        let second = ledger.send(to: RankID(1), tag: 2, epoch: Epoch(1), incarnation: 0, payload: [])
        #expect(ledger.retained[1] == [RetainedMessage(header: first, payload: [1, 2, 3]),
                                       RetainedMessage(header: second, payload: [])])
        #expect(ledger.retained[0].isEmpty)
        #expect(ledger.retainedBytes == 3)
    }

    /// Retention in blocks reads as one sequence across block boundaries, a copy is unchanged
    /// by what the original appends or trims after it, and equal contents compare equal however
    /// they were built.
    @Test func retainedMessagesAcrossBlocksAndCopies() {
        var ledger = MessageLedger(rank: RankID(0), rankCount: 2)
        let count = 3 * RetainedMessages.blockCount + 5
        for index in 0..<count {
            _ = ledger.send(to: RankID(1), tag: 0, epoch: .start, incarnation: 0, payload: [UInt8(index % 251)])
        }
        #expect(ledger.retained[1].map(\.header.sequence.rawValue) == Array(0..<UInt64(count)))
        #expect(ledger.retained[1].map { $0.payload[0] } == (0..<count).map { UInt8($0 % 251) })
        let snapshot = ledger
        _ = ledger.send(to: RankID(1), tag: 0, epoch: .start, incarnation: 0, payload: [7])
        #expect(snapshot.retained[1].count == count, "an append after the copy changed the copy")
        #expect(ledger.retained[1].count == count + 1)
        ledger.trim(destination: RankID(1), covered: DeliveredSet(watermark: seq(UInt64(RetainedMessages.blockCount + 1)), above: []))
        #expect(snapshot.retained[1].count == count, "a trim after the copy changed the copy")
        #expect(ledger.retained[1].first?.header.sequence == seq(UInt64(RetainedMessages.blockCount + 1)))
        #expect(ledger.retained[1] == RetainedMessages(snapshot.retained[1].dropFirst(RetainedMessages.blockCount + 1)
                                                       + [ledger.retained[1].last!]))
    }

    @Test func trimDropsExactlyTheCoveredMessagesAndTheirBytes() {
        var ledger = MessageLedger(rank: RankID(0), rankCount: 3)
        for index in 0..<6 {
            _ = ledger.send(to: RankID(1), tag: 0, epoch: .start, incarnation: 0, payload: Array(repeating: 0, count: index + 1))
            _ = ledger.send(to: RankID(2), tag: 0, epoch: .start, incarnation: 0, payload: [9, 9])
        }
        #expect(ledger.retainedBytes == 21 + 12)
        // Receiver 1 delivered 0, 1 and 4 (by tag, out of order).
        ledger.trim(destination: RankID(1), covered: DeliveredSet(watermark: seq(2), above: [seq(4)]))
        #expect(ledger.retained[1].map(\.header.sequence.rawValue) == [2, 3, 5])
        #expect(ledger.retainedBytes == (3 + 4 + 6) + 12, "bytes of the trimmed payloads (1, 2, 5) must be subtracted")
        #expect(ledger.retained[2].count == 6, "trimming one destination touched another")
        // Trimming again with a smaller (older) set changes nothing.
        let before = ledger
        ledger.trim(destination: RankID(1), covered: DeliveredSet(watermark: seq(1), above: []))
        #expect(ledger == before)
        ledger.trim(destination: RankID(2), covered: DeliveredSet(watermark: seq(6), above: []))
        ledger.trim(destination: RankID(1), covered: DeliveredSet(watermark: seq(6), above: []))
        #expect(ledger.retainedBytes == 0)
        #expect(ledger.retained.allSatisfy { $0.isEmpty })
        #expect(ledger.nextSequence.dense == [0, 6, 6].map(seq), "trimming must not rewind sequence numbers")
    }

    @Test func aRoundsSnapshotKeepsOnlyWhatTheCutLeavesInFlight() {
        var ledger = MessageLedger(rank: RankID(0), rankCount: 4)
        for _ in 0..<4 {
            _ = ledger.send(to: RankID(1), tag: 0, epoch: .start, incarnation: 0, payload: [1])
            _ = ledger.send(to: RankID(2), tag: 0, epoch: .start, incarnation: 0, payload: [2, 2])
            _ = ledger.send(to: RankID(0), tag: 0, epoch: .start, incarnation: 0, payload: [0, 0, 0])
        }
        ledger.recordDelivery(source: RankID(0), sequence: seq(0))
        // Rank 1 had delivered 0, 1 and 3 at its capture; rank 2 nothing (it is absent from the
        // cut); rank 0 itself 0 (its own delivered set); rank 3 was never sent to.
        var covered = DeliveredSets(rankCount: 4)
        covered[1] = DeliveredSet(watermark: seq(2), above: [seq(3)])
        covered[0] = ledger.delivered[0]
        let stored = ledger.inFlight(coveredByReceiver: covered)
        #expect(stored.retained[1].map(\.header.sequence.rawValue) == [2], "message 2 to rank 1 was in flight at the cut")
        #expect(stored.retained[2].count == 4, "a receiver that delivered nothing has every retained message in flight")
        #expect(stored.retained[0].map(\.header.sequence.rawValue) == [1, 2, 3])
        #expect(stored.retainedBytes == 1 + 8 + 9)
        #expect(stored.delivered == ledger.delivered && stored.nextSequence == ledger.nextSequence,
                "only the retained messages change")
        #expect(ledger.retained[1].count == 4, "what the rank keeps in memory does not change")
        #expect(ledger.inFlight(coveredByReceiver: DeliveredSets(rankCount: 4)) == ledger, "an empty cut stores every message")
    }

    @Test func duplicatesAreDetectedPerSource() {
        var ledger = MessageLedger(rank: RankID(2), rankCount: 3)
        #expect(ledger.recordDelivery(source: RankID(0), sequence: seq(0)) == true)
        #expect(ledger.recordDelivery(source: RankID(0), sequence: seq(2)) == true)
        #expect(ledger.isDuplicate(source: RankID(0), sequence: seq(0)))
        #expect(ledger.isDuplicate(source: RankID(0), sequence: seq(2)))
        #expect(!ledger.isDuplicate(source: RankID(0), sequence: seq(1)))
        #expect(!ledger.isDuplicate(source: RankID(1), sequence: seq(0)), "channels must be independent")
        #expect(ledger.recordDelivery(source: RankID(0), sequence: seq(2)) == false, "a duplicate was recorded")
        #expect(ledger.recordDelivery(source: RankID(1), sequence: seq(0)) == true)
        #expect(ledger.delivered[0] == DeliveredSet(watermark: seq(1), above: [seq(2)]))
        #expect(ledger.delivered[1] == DeliveredSet(watermark: seq(1), above: []))
        #expect(ledger.delivered[2] == DeliveredSet())
    }

    @Test func snapshotRoundTripKeepsRetainedPayloads() throws {
        var ledger = MessageLedger(rank: RankID(2), rankCount: 4)
        for index in 0..<20 {
            let destination = RankID(index % 4)
            _ = ledger.send(to: destination, tag: Int64(index) - 10, epoch: Epoch(UInt64(index / 7)),
                            incarnation: UInt32(index % 3), payload: (0..<(index * 3)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) })
        }
        ledger.recordDelivery(source: RankID(0), sequence: seq(0))
        ledger.recordDelivery(source: RankID(0), sequence: seq(3))
        ledger.recordDelivery(source: RankID(3), sequence: seq(0))
        ledger.trim(destination: RankID(1), covered: DeliveredSet(watermark: seq(2), above: []))
        let bytes = encode(ledger)
        var reader = ByteReader(bytes)
        let decoded = try MessageLedger.decode(from: &reader, rank: RankID(2), rankCount: 4)
        #expect(reader.isAtEnd)
        #expect(decoded == ledger)
        #expect(decoded.retainedBytes == ledger.retainedBytes)
        #expect(decoded.retained[3].last?.payload == ledger.retained[3].last?.payload)
        #expect(decoded.retained[3].last?.payload.isEmpty == false)
        // A restored ledger goes on stamping where the snapshot left off.
        var restored = decoded
        #expect(restored.send(to: RankID(1), tag: 0, epoch: Epoch(3), incarnation: 1, payload: []).sequence == seq(5))
    }

    /// A rank of 10,000 that talks to two peers stores two entries, not 10,000; the dense
    /// layout of snapshot formats 1–3 (an entry per rank) still reads; peers out of order are
    /// refused.
    @Test func aLedgerStoresOnlyThePeersUsedAndStillReadsTheDenseLayout() throws {
        var ledger = MessageLedger(rank: RankID(5), rankCount: 10_000)
        _ = ledger.send(to: RankID(4), tag: 1, epoch: .start, incarnation: 0, payload: [1, 2])
        ledger.recordDelivery(source: RankID(6), sequence: seq(0))
        let bytes = encode(ledger)
        #expect(ledger.usedPeers == [4, 6] && bytes.count < 160, "\(bytes.count) bytes")
        var reader = ByteReader(bytes)
        #expect(try MessageLedger.decode(from: &reader, rank: RankID(5), rankCount: 10_000) == ledger && reader.isAtEnd)

        var dense = ByteWriter()
        dense.write(UInt32(5))
        dense.write(UInt32(10_000))
        for peer in 0..<10_000 {
            dense.write(ledger.nextSequence[peer].rawValue)
            ledger.delivered[peer].encode(into: &dense)
            dense.write(UInt32(ledger.retained[peer].count))
            for message in ledger.retained[peer] {
                message.header.encode(into: &dense)
                dense.writeCounted(message.payload)
            }
        }
        var old = ByteReader(dense.bytes)
        #expect(try MessageLedger.decode(from: &old, rank: RankID(5), rankCount: 10_000, dense: true) == ledger && old.isAtEnd)

        var swapped = bytes
        let first = 12  // rank, rank count, peer count
        swapped.replaceSubrange(first..<(first + 4), with: [7, 0, 0, 0])  // peer 7 before peer 6
        var disordered = ByteReader(swapped)
        #expect(throws: WireError.self) { try MessageLedger.decode(from: &disordered, rank: RankID(5), rankCount: 10_000) }
    }

    @Test func snapshotOfAnotherRankOrJobIsRefused() {
        let bytes = encode(MessageLedger(rank: RankID(1), rankCount: 3))
        var wrongRank = ByteReader(bytes)
        #expect(throws: WireError.self) { try MessageLedger.decode(from: &wrongRank, rank: RankID(0), rankCount: 3) }
        var wrongSize = ByteReader(bytes)
        #expect(throws: WireError.self) { try MessageLedger.decode(from: &wrongSize, rank: RankID(1), rankCount: 4) }
        var right = ByteReader(bytes)
        #expect((try? MessageLedger.decode(from: &right, rank: RankID(1), rankCount: 3)) != nil)
    }

    @Test func truncatedSnapshotIsRefused() {
        var ledger = MessageLedger(rank: RankID(0), rankCount: 2)
        _ = ledger.send(to: RankID(1), tag: 1, epoch: .start, incarnation: 0, payload: [1, 2, 3, 4])
        ledger.recordDelivery(source: RankID(1), sequence: seq(1))
        let bytes = encode(ledger)
        for length in 0..<bytes.count {
            var reader = ByteReader(Array(bytes.prefix(length)))
            #expect(throws: WireError.self, "a ledger cut to \(length) of \(bytes.count) bytes decoded") {
                try MessageLedger.decode(from: &reader, rank: RankID(0), rankCount: 2)
            }
        }
    }
}
