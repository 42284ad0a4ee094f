/// Sender-based logging's event logger, held by the supervisor machine (MPICH-V2's design): the
/// determinant of every receive from any source (which message it returned) and every value a
/// rank reads from outside, kept in memory per rank and acknowledged, instead of synced to a
/// disk per receive. Payloads stay with their senders (retention).
///
/// The rules that make memory enough (docs/protocol.md, "Sender-based logging"):
/// - a rank may deliver at once, but sends nothing until every record it appended is
///   acknowledged (`eventsLogged`): so no other rank can depend on a delivery whose
///   determinant a crash could lose — the no-orphan rule;
/// - a rank that crashes restarts from its entry in the newest line and gets the records after
///   its entry's position (`eventRecords`, before START) to replay;
/// - the supervisor's death takes every rank with it, and the job resumes by a global rollback,
///   where determinants do not matter: the logger starts empty.
///
/// Positions are the rank's record indices, as in a message log: a snapshot stores the position
/// of the next record at its capture, a commit trims each rank's records before its entry's.
///
/// | event | effect |
/// |---|---|
/// | append(r, first i, records) | r's log continues at i (what followed i is dropped: a rollback), then holds the records; acknowledged through i + count |
/// | commit of a line | each rank that wrote an entry: records before its entry's position dropped |
/// | r relaunched without replay (a rollback, a resume) | r's log forgotten; its next append says where it continues |
/// | r relaunched to replay | r gets the records it holds, from where they start |
package struct EventLogger: Sendable, Equatable {
    /// One rank's records.
    package struct RankLog: Sendable, Equatable {
        /// The index of `records[0]`; nil when the log was forgotten and nothing was appended
        /// since (a rank relaunched without replay: its position is its entry's).
        package var firstIndex: UInt64?
        /// The encoded records (`LogRecord.encoded()`), in order.
        package var records: [[UInt8]] = []
        /// Their bytes.
        package var bytes = 0

        /// The index after the last record.
        package var nextIndex: UInt64? { firstIndex.map { $0 + UInt64(records.count) } }
    }

    /// Per rank, its records.
    package private(set) var logs: [RankLog]
    /// The bytes held, all ranks together, and the most held at once.
    package private(set) var bytes = 0
    package private(set) var bytesPeak = 0

    /// An empty logger for `rankCount` ranks (a new job, or a resumed one).
    package init(rankCount: Int) {
        logs = Array(repeating: RankLog(), count: rankCount)
    }

    /// `rank` appends `records` at index `first`: its log continues there (records at and after
    /// `first` belong to an execution a rollback undid; a `first` outside what the log holds
    /// starts it afresh at `first`). Returns the index acknowledged through (the next one).
    package mutating func append(_ rank: Int, first: UInt64, records: [[UInt8]]) -> UInt64 {
        cut(rank, at: first)
        let added = records.reduce(0) { $0 + $1.count }
        logs[rank].records += records
        logs[rank].bytes += added
        bytes += added
        bytesPeak = max(bytesPeak, bytes)
        return first + UInt64(records.count)
    }

    /// A line committed with `rank`'s entry captured at `position`: the records before it are
    /// covered and dropped.
    package mutating func trim(_ rank: Int, before position: UInt64) {
        guard let first = logs[rank].firstIndex else {
            logs[rank].firstIndex = position
            return
        }
        guard position > first else { return }
        let drop = Int(min(position - first, UInt64(logs[rank].records.count)))
        let dropped = logs[rank].records[..<drop].reduce(0) { $0 + $1.count }
        logs[rank].records.removeFirst(drop)
        logs[rank].bytes -= dropped
        bytes -= dropped
        logs[rank].firstIndex = position
    }

    /// `rank` is relaunched without replay (a global rollback): what it holds describes an
    /// execution that is gone, and where its new one continues its next append says.
    package mutating func forget(_ rank: Int) {
        bytes -= logs[rank].bytes
        logs[rank] = RankLog()
    }

    /// What makes `rank`'s records unfit to replay from `position` (its entry's), or nil: they
    /// start after it (trimmed by a newer commit than the entry's line) or end before it.
    package func lost(_ rank: Int, from position: UInt64) -> String? {
        guard let first = logs[rank].firstIndex, let next = logs[rank].nextIndex else { return nil }
        if position < first { return "the event logger holds its records from \(first), after its checkpoint's position \(position)" }
        if position > next { return "the event logger holds its records up to \(next), before its checkpoint's position \(position)" }
        return nil
    }

    /// What `rank` replays after a restart: the records held and the index of the first (nil:
    /// none since its last relaunch; the rank replays nothing).
    package func replay(of rank: Int) -> (first: UInt64, records: [[UInt8]])? {
        logs[rank].firstIndex.map { ($0, logs[rank].records) }
    }

    private mutating func cut(_ rank: Int, at index: UInt64) {
        guard let first = logs[rank].firstIndex, let next = logs[rank].nextIndex, index >= first, index <= next else {
            forget(rank)
            logs[rank].firstIndex = index
            return
        }
        let keep = Int(index - first)
        let dropped = logs[rank].records[keep...].reduce(0) { $0 + $1.count }
        logs[rank].records.removeLast(logs[rank].records.count - keep)
        logs[rank].bytes -= dropped
        bytes -= dropped
    }
}

/// Sender-based logging, a rank's side of the event logger: it numbers the records it sends
/// (`logEvents`), learns which are held (`eventsLogged`), and says whether the program may send
/// — only once every record appended is stable (the no-orphan rule). `RankRuntime` and the
/// simulator ask it before each send of the program.
///
/// When is a record stable? Once the event logger holds it — or, for a rank on the
/// supervisor's own host, once its frame is in the control socket: the kernel keeps what a
/// process wrote to a Unix socket after the process dies, and the supervisor reads a dead
/// rank's connection to its end before it plans the recovery (`Supervisor.handleExit`), while
/// the supervisor's own death is a global rollback. Such a rank waits for nothing
/// (`stableOnWrite`). A rank on another host, whose frames in flight are lost with its host,
/// waits for the acknowledgement; the simulator, which drops what a dead process had in
/// flight, checks that discipline.
package struct EventLogClient: Sendable, Equatable {
    /// The index of the next record: a snapshot stores it as its log position.
    package private(set) var nextIndex: UInt64
    /// Records below this index are held by the event logger.
    package private(set) var acknowledged: UInt64
    /// The bytes of the records this process appended.
    package private(set) var appendedBytes: UInt64 = 0
    /// The bytes of the records not yet covered by a committed checkpoint (what the event
    /// logger holds for this rank, as far as the rank knows), and the most at once.
    package private(set) var heldBytes = 0
    package private(set) var heldBytesPeak = 0
    /// Whether a record is stable once written to the control socket (a rank on the
    /// supervisor's host), rather than once acknowledged.
    package let stableOnWrite: Bool
    /// Index and size of each record not yet covered, oldest first.
    private var held: [Held] = []

    /// A record the event logger holds for this rank, as far as the rank knows.
    private struct Held: Sendable, Equatable {
        var index: UInt64
        var bytes: Int
    }

    /// A client whose next record has index `position` (its entry's, or after a replay the
    /// end of the records it replayed: those are held already).
    package init(position: UInt64, stableOnWrite: Bool = false) {
        nextIndex = position
        acknowledged = position
        self.stableOnWrite = stableOnWrite
    }

    /// Numbers `records` and returns the message that carries them to the event logger.
    package mutating func append(_ records: [[UInt8]]) -> ControlMessage {
        let first = nextIndex
        for record in records {
            held.append(Held(index: nextIndex, bytes: record.count))
            nextIndex += 1
            heldBytes += record.count
            appendedBytes += UInt64(record.count)
        }
        heldBytesPeak = max(heldBytesPeak, heldBytes)
        if stableOnWrite { acknowledged = nextIndex }  // the caller writes the frame before going on
        return .logEvents(first: first, records: records, acknowledge: !stableOnWrite)
    }

    /// `eventsLogged(through:)`: the event logger holds everything below `index`.
    package mutating func handleLogged(through index: UInt64) {
        acknowledged = max(acknowledged, min(index, nextIndex))
    }

    /// Whether the program may send now: every record it appended is stable, so no delivery
    /// it depends on can be lost with this process.
    package var sendsMayGo: Bool { acknowledged >= nextIndex }

    /// A committed checkpoint of this rank captured at `position`: the event logger dropped
    /// the records before it.
    package mutating func committed(before position: UInt64) {
        let covered = held.prefix { $0.index < position }
        heldBytes -= covered.reduce(0) { $0 + $1.bytes }
        held.removeFirst(covered.count)
    }
}
