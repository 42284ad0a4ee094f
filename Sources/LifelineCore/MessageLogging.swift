/// What the runtime logs of the messages a rank delivers (`--logging`).
package enum LoggingMode: String, Sendable, CaseIterable {
    /// Nothing: a failure rolls every rank back to the last committed recovery line.
    case none
    /// Receiver-based pessimistic logging: every message is in the receiver's log on stable
    /// storage, in delivery order, before the program sees it. A crashed rank restarts alone
    /// from its checkpoint and replays its log; the others keep running.
    case pessimistic
    /// Sender-based logging: payloads stay in the senders' memory (their retained messages);
    /// only the determinants of nondeterministic deliveries (receives from any source) are
    /// logged, synchronously, before the program sees the message. A crashed rank restarts
    /// alone; the senders send their retained messages again and it delivers them in the
    /// logged order.
    case senderBased = "sender-based"
    /// Optimistic logging: every message goes to the receiver's log, flushed in the background
    /// (after a delay or a size); a crash loses what had not reached the disk. The crashed rank
    /// replays what did, and every rank that depends on what was lost (an orphan) rolls back
    /// too (`OptimisticLogging`).
    case optimistic

    /// Whether a crashed rank can be recovered alone.
    package var recoversAlone: Bool { self != .none }
}

/// One record of a rank's log: what replay needs to put the program back where it was.
package enum LogRecord: Sendable, Equatable {
    /// A delivered message, payload included (pessimistic and optimistic logging; under
    /// optimistic logging the payload carries its sender's dependency vector in front).
    case delivery(DataHeader, payload: [UInt8])
    /// The determinant of a receive from any source: which message it returned (sender-based
    /// logging; the payload comes from the sender again).
    case determinant(DataHeader)
    /// A value the program read from outside its messages (a clock, a random draw).
    case value([UInt8])

    private enum Kind: UInt8 { case delivery = 1, determinant = 2, value = 3 }

    /// The log record's bytes: a kind byte, then the header and payload, or the value.
    package func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 1 + DataHeader.byteCount)
        switch self {
        case .delivery(let header, let payload):
            writer.write(Kind.delivery.rawValue)
            header.encode(into: &writer)
            writer.writeRaw(payload)
        case .determinant(let header):
            writer.write(Kind.determinant.rawValue)
            header.encode(into: &writer)
        case .value(let bytes):
            writer.write(Kind.value.rawValue)
            writer.writeRaw(bytes)
        }
        return writer.bytes
    }

    /// Decodes a log record.
    package static func decode(_ bytes: [UInt8]) throws(WireError) -> LogRecord {
        guard let first = bytes.first, let kind = Kind(rawValue: first) else { throw WireError("log record of unknown kind") }
        let body = Array(bytes.dropFirst())
        switch kind {
        case .value:
            return .value(body)
        case .delivery, .determinant:
            guard body.count >= DataHeader.byteCount else { throw WireError("log record shorter than a header") }
            let header = body.withUnsafeBytes { DataHeader.decode($0) }
            if kind == .determinant {
                guard body.count == DataHeader.byteCount else { throw WireError("determinant with stray bytes") }
                return .determinant(header)
            }
            return .delivery(header, payload: Array(body[DataHeader.byteCount...]))
        }
    }
}

/// The records a restarted rank must replay, in their logged order. During replay a receive
/// returns exactly the message it returned before the crash, even if another message arrives
/// first, and a logged value read returns the value read before.
package struct ReplayQueue: Sendable, Equatable {
    /// What a receive does during replay.
    package enum Receive: Sendable, Equatable {
        /// Hand over this logged message (pessimistic).
        case deliver(DataHeader, payload: [UInt8])
        /// Wait for this message (the sender sends it again) and hand it over (sender-based).
        case await(DataHeader)
        /// Receive as usual: a receive from a named source is deterministic (FIFO channels,
        /// retained messages sent again in order), so sender-based logging does not log it.
        case live
        /// Replay is over: receive live messages.
        case exhausted
        /// The program asked for something else than it did before: it is not piecewise
        /// deterministic, and replay cannot go on.
        case diverged(expected: String)
    }

    private let mode: LoggingMode
    private var records: [LogRecord]
    private var position = 0

    /// The records logged after the restored checkpoint, oldest first, under `mode`.
    package init(_ records: [LogRecord], mode: LoggingMode) {
        self.records = records
        self.mode = mode
    }

    /// The logged deliveries replayed so far (a delivery with its payload, or the determinant of
    /// a receive from any source; not the logged values read): how many receives the log has
    /// answered (`replay_done`'s `deliveries`).
    package var deliveriesReplayed: Int {
        records[..<position].reduce(0) { count, record in
            if case .value = record { count } else { count + 1 }
        }
    }

    /// How many records are left to replay.
    package var remainingCount: Int { records.count - position }

    /// What a receive from `source` (nil: any) with `tag` does.
    package mutating func nextReceive(source: RankID?, tag: Int64) -> Receive {
        guard position < records.count else { return .exhausted }
        if mode == .senderBased, source != nil { return .live }
        switch records[position] {
        case .delivery(let header, let payload) where header.tag == tag && (source.map { $0 == header.source } ?? true):
            position += 1
            return .deliver(header, payload: payload)
        case .determinant(let header) where header.tag == tag && source == nil:
            position += 1
            return .await(header)
        case .delivery(let header, _), .determinant(let header):
            return .diverged(expected: "a receive of tag \(header.tag) from \(header.source)")
        case .value:
            return .diverged(expected: "a logged value read")
        }
    }

    /// What a logged value read returns: the value read before the crash, or nil when replay
    /// is over (read it live); throws when the program diverged.
    package mutating func nextValue() -> Result<[UInt8]?, WireError> {
        guard position < records.count else { return .success(nil) }
        guard case .value(let bytes) = records[position] else {
            return .failure(WireError("replay diverged: the program read a logged value where it received a message before"))
        }
        position += 1
        return .success(bytes)
    }
}
