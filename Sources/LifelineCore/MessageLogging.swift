/// What the runtime logs of the messages a rank delivers (`--logging`).
package enum LoggingMode: String, Sendable, CaseIterable {
    /// Nothing: a failure rolls every rank back to the last committed recovery line.
    case none
    /// Receiver-based pessimistic logging: every message is in the receiver's log on stable
    /// storage, in delivery order, before the program sees it. A crashed rank restarts alone
    /// from its checkpoint and replays its log; the others keep running.
    case pessimistic

    /// Whether a crashed rank can be recovered alone.
    package var recoversAlone: Bool { self != .none }
}

/// One delivery as the receiver's log records it: enough to hand the program the same message
/// in the same place of its execution again.
package struct LoggedDelivery: Sendable, Equatable {
    /// The message's header as it arrived (source, tag, sequence number, epoch).
    package var header: DataHeader
    /// The payload.
    package var payload: [UInt8]

    /// A logged delivery.
    package init(header: DataHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// The log record's bytes.
    package func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: DataHeader.byteCount + payload.count)
        header.encode(into: &writer)
        writer.writeRaw(payload)
        return writer.bytes
    }

    /// Decodes a log record.
    package static func decode(_ bytes: [UInt8]) throws(WireError) -> LoggedDelivery {
        guard bytes.count >= DataHeader.byteCount else { throw WireError("log record shorter than a header") }
        let header = bytes.withUnsafeBytes { DataHeader.decode($0) }
        return LoggedDelivery(header: header, payload: Array(bytes[DataHeader.byteCount...]))
    }
}

/// The deliveries a restarted rank must replay, in their logged order. During replay a receive
/// returns exactly the message it returned before the crash, whatever arrives first.
package struct ReplayQueue: Sendable, Equatable {
    /// What a receive gets during replay.
    package enum Next: Sendable, Equatable {
        /// The logged delivery to hand over.
        case deliver(LoggedDelivery)
        /// Replay is over: receive live messages.
        case exhausted
        /// The program asked for something else than it received before: it is not
        /// piecewise deterministic, and replay cannot go on.
        case diverged(expected: DataHeader)
    }

    private var entries: [LoggedDelivery]
    private var position = 0

    /// The deliveries logged after the restored checkpoint, oldest first.
    package init(_ entries: [LoggedDelivery]) { self.entries = entries }

    /// How many deliveries are left to replay.
    package var remainingCount: Int { entries.count - position }

    /// The delivery for a receive from `source` (nil: any) with `tag`.
    package mutating func next(source: RankID?, tag: Int64) -> Next {
        guard position < entries.count else { return .exhausted }
        let entry = entries[position]
        guard entry.header.tag == tag, source.map({ $0 == entry.header.source }) ?? true else {
            return .diverged(expected: entry.header)
        }
        position += 1
        return .deliver(entry)
    }
}
