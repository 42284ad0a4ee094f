/// A message a sender keeps until the receiver's committed checkpoint covers its delivery.
package struct RetainedMessage: Sendable, Equatable {
    /// The header it was sent with (its original epoch and sequence number).
    package var header: DataHeader
    /// The payload bytes.
    package var payload: [UInt8]

    /// A retained message.
    package init(header: DataHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }
}

/// The messages a sender retains for one destination, in sequence order, kept in blocks of
/// `blockCount`: a copy (the ledger a snapshot holds) shares every full block with the
/// original, so the first send after a capture copies at most one block's messages (and the
/// list of block references), not everything retained. Under independent checkpoints retention
/// can grow until a recovery line passes it, and copying it all at every capture was a
/// twentieth of a 10,000-rank simulation.
///
/// The layout is canonical (full blocks, then a tail of 1 to `blockCount` messages; none when
/// empty), so two equal sequences compare equal.
package struct RetainedMessages: RandomAccessCollection, ExpressibleByArrayLiteral, Sendable, Equatable {
    /// Messages per full block.
    static let blockCount = 64

    /// Full blocks, oldest first, each of `blockCount` messages.
    private var blocks: [[RetainedMessage]] = []
    /// The newest messages, up to `blockCount`.
    private var tail: [RetainedMessage] = []

    /// No message.
    package init() {}

    /// `messages`, in order.
    package init(_ messages: some Sequence<RetainedMessage>) {
        for message in messages { append(message) }
    }

    /// The messages listed.
    package init(arrayLiteral messages: RetainedMessage...) {
        self.init(messages)
    }

    /// The first position, 0.
    package var startIndex: Int { 0 }
    /// The number of messages.
    package var endIndex: Int { blocks.count * Self.blockCount + tail.count }

    /// The message at `position`, oldest first.
    package subscript(position: Int) -> RetainedMessage {
        let block = position / Self.blockCount
        return block < blocks.count ? blocks[block][position % Self.blockCount] : tail[position - blocks.count * Self.blockCount]
    }

    /// Adds the newest message.
    package mutating func append(_ message: RetainedMessage) {
        if tail.count == Self.blockCount {
            blocks.append(tail)
            tail = []
            tail.reserveCapacity(Self.blockCount)
        }
        tail.append(message)
    }
}

/// One rank's view of its channels: sequence numbers it stamps on what it sends, what it has
/// delivered from each source, and what it retains for each destination.
///
/// This is the *retention* rule of the design: a rank keeps what it sent until the receiver's
/// committed checkpoint covers it. A round's snapshot holds its delivered sets and, of what it
/// retained, the messages in flight across the line (`inFlight`; all of it under independent
/// checkpoints); on a restore they are sent again and receivers drop what they already
/// delivered. It makes the in-transit messages of any recovery line recoverable.
package struct MessageLedger: Sendable, Equatable {
    /// The rank that owns this ledger.
    package let rank: RankID
    /// The number of ranks in the job.
    package let rankCount: Int
    /// The sequence number of the next message to each destination (indexed by rank; stored
    /// for the destinations used).
    package private(set) var nextSequence: PerPeer<SequenceNumber>
    /// What has been delivered from each source (indexed by rank; stored for the sources used).
    package private(set) var delivered: DeliveredSets
    /// Messages kept for each destination (indexed by rank), ascending by sequence number.
    package private(set) var retained: PerPeer<RetainedMessages>
    /// The payload bytes held in `retained`.
    package private(set) var retainedBytes: Int

    /// The bytes the retained messages take in a snapshot: payloads and headers (so a message
    /// with an empty payload still counts).
    package var storedMessageBytes: Int {
        retainedBytes + DataHeader.byteCount * retained.reduceUsed(0) { $0 + $1.count }
    }

    /// An empty ledger: nothing sent, nothing delivered.
    package init(rank: RankID, rankCount: Int) {
        precondition(rankCount > 0 && (0..<rankCount).contains(rank.rawValue))
        self.rank = rank
        self.rankCount = rankCount
        nextSequence = PerPeer(rankCount: rankCount, absent: SequenceNumber(0))
        delivered = DeliveredSets(rankCount: rankCount)
        retained = PerPeer(rankCount: rankCount, absent: [])
        retainedBytes = 0
    }

    /// Stamps the next message to `destination` and retains it; returns its header.
    package mutating func send(
        to destination: RankID, tag: Int64, epoch: Epoch, incarnation: UInt32, payload: [UInt8]
    ) -> DataHeader {
        let sequence = nextSequence[destination.rawValue]
        nextSequence[destination.rawValue] = sequence.next
        let header = DataHeader(source: rank, incarnation: incarnation, tag: tag, sequence: sequence, epoch: epoch)
        retained[destination.rawValue].append(RetainedMessage(header: header, payload: payload))
        retainedBytes += payload.count
        return header
    }

    /// Whether a message from `source` with `sequence` was already delivered.
    package func isDuplicate(source: RankID, sequence: SequenceNumber) -> Bool {
        delivered[source.rawValue].contains(sequence)
    }

    /// Records the delivery of a message to the program; returns false for a duplicate.
    @discardableResult
    package mutating func recordDelivery(source: RankID, sequence: SequenceNumber) -> Bool {
        delivered[source.rawValue].insert(sequence)
    }

    /// Drops the messages to `destination` that its committed checkpoint has delivered.
    package mutating func trim(destination: RankID, covered: DeliveredSet) {
        let messages = retained[destination.rawValue]
        // Nothing covered: the blocks stay shared with any copy (a snapshot's).
        guard messages.contains(where: { covered.contains($0.header.sequence) }) else { return }
        var kept = RetainedMessages()
        for message in messages {
            if covered.contains(message.header.sequence) {
                retainedBytes -= message.payload.count
            } else {
                kept.append(message)
            }
        }
        retained[destination.rawValue] = kept
        precondition(retainedBytes >= 0)
    }

    /// The ledger as a round's snapshot stores it: of the retained messages, only those each
    /// receiver had not delivered at its own capture for the round (`coveredByReceiver`, the
    /// round's cut) — the messages in flight across the line. The others are what DONE would
    /// trim from memory, so no restore that may use this snapshot needs them (docs/protocol.md,
    /// "What a snapshot stores").
    package func inFlight(coveredByReceiver covered: DeliveredSets) -> MessageLedger {
        var ledger = self
        for receiver in covered.used where !retained[receiver].isEmpty {
            ledger.trim(destination: RankID(receiver), covered: covered[receiver])
        }
        return ledger
    }

    /// The peers it holds anything for: sent to, delivered from, or retaining messages for.
    package var usedPeers: [Int] {
        Set(nextSequence.used).union(delivered.used).union(retained.used).sorted()
    }

    /// Appends the ledger to a snapshot: rank, rank count, the number of peers used, then per
    /// peer used (ascending) its rank and its channel state — what a rank that talks to a few
    /// peers of 10,000 holds, not an entry per rank.
    package func encode(into writer: inout ByteWriter) {
        writer.write(UInt32(rank.rawValue))
        writer.write(UInt32(rankCount))
        let peers = usedPeers
        writer.write(UInt32(peers.count))
        for peer in peers {
            writer.write(UInt32(peer))
            writer.write(nextSequence[peer].rawValue)
            delivered[peer].encode(into: &writer)
            writer.write(UInt32(retained[peer].count))
            for message in retained[peer] {
                message.header.encode(into: &writer)
                writer.writeCounted(message.payload)
            }
        }
    }

    /// Reads a ledger from a snapshot, checking it belongs to `rank` of a job of `rankCount`.
    /// `dense`: the layout of snapshot formats 1–3, an entry for every rank in order.
    package static func decode(
        from reader: inout ByteReader, rank: RankID, rankCount: Int, dense: Bool = false
    ) throws(WireError) -> MessageLedger {
        let storedRank = Int(try reader.read(UInt32.self))
        let storedCount = Int(try reader.read(UInt32.self))
        guard storedRank == rank.rawValue, storedCount == rankCount else {
            throw WireError("snapshot belongs to rank \(storedRank) of \(storedCount), not \(rank.rawValue) of \(rankCount)")
        }
        var ledger = MessageLedger(rank: rank, rankCount: rankCount)
        var peers = 0..<rankCount
        var sparseCount = 0
        if !dense {
            sparseCount = Int(try reader.read(UInt32.self))
            guard sparseCount <= rankCount else { throw WireError("snapshot claims \(sparseCount) peers of \(rankCount)") }
            peers = 0..<sparseCount
        }
        var previous = -1
        for position in peers {
            var peer = position
            if !dense {
                peer = Int(try reader.read(UInt32.self))
                guard peer > previous, peer < rankCount else { throw WireError("snapshot names peer \(peer) out of order") }
                previous = peer
            }
            ledger.nextSequence[peer] = SequenceNumber(try reader.read(UInt64.self))
            ledger.delivered[peer] = try DeliveredSet.decode(from: &reader)
            let count = Int(try reader.read(UInt32.self))
            guard count <= reader.remainingCount / DataHeader.byteCount else {
                throw WireError("snapshot claims \(count) retained messages")
            }
            for _ in 0..<count {
                let header = try reader.readRaw(DataHeader.byteCount).withUnsafeBytes { DataHeader.decode($0) }
                let payload = try reader.readCounted()
                ledger.retained[peer].append(RetainedMessage(header: header, payload: payload))
                ledger.retainedBytes += payload.count
            }
        }
        return ledger
    }
}
