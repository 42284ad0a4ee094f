#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// The engine behind a `Communicator`: owns the rank's protocol state and sockets, on the
/// program's thread. It performs what the participant state machine decides and moves bytes;
/// it makes no protocol decision of its own.
final class RankRuntime {
    /// A message that arrived and waits to be received.
    private struct Arrival {
        var header: DataHeader
        var payload: [UInt8]
    }

    /// Non-blocking reads of the awaited peer before sleeping in poll(2) (about a microsecond each).
    private static let spinReads = 100
    /// The cores this process may run on.
    private static let coreCount = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// How many bytes one wait reads from a peer before the program gets a chance to take them.
    private static let readBytesMaxPerWait = 2 << 20
    /// How long one wait for traffic lasts before the runtime looks around again.
    private static let pollIntervalMs: Int32 = 500

    let rank: RankID
    let rankCount: Int
    let incarnation: UInt32
    /// The step of the restored snapshot, if the rank was restored.
    private(set) var restoredStep: Int?

    private let launch: LaunchEnvironment?
    private let control: ControlLink?
    private let controlReader: Connection?
    private let listener: Int32
    private let store: MirroredStore?
    private let writer: SnapshotWriter?
    private let heartbeatStep: HeartbeatStep

    /// Data connections indexed by rank; nil until connected (and for this rank).
    private var peers: [Connection?]
    private var ledger: MessageLedger
    private var participant: CheckpointParticipant
    /// Arrived messages per source, in arrival order.
    private var inbox: [[Arrival]]
    /// Control messages read but not yet handled (they are handled outside of sends).
    private var pendingControl: [ControlMessage] = []
    /// Sends held between capture and DONE (blocking variant).
    private var heldSends: [(RankID, DataHeader, [UInt8])] = []
    private var restoredState: [UInt8]?
    private var released = false
    private var finished = false
    private var anySourceCursor = 0
    private var rankFaults: [(index: Int, spec: FaultSpec)]
    /// The rank's log (pessimistic or sender-based logging), nil without logging.
    private let log: MessageLog?
    /// Records to replay after a restart, in their logged order; nil when running live.
    private var replay: ReplayQueue?
    /// The incarnation of each peer's current connection.
    private var peerIncarnation: [UInt32]
    /// Peers restarted alone that must get this rank's retained messages again before anything
    /// new, so each channel stays in order.
    private var resendPending: [Bool]
    /// `--trace-deliveries`: what the rank sends, delivers and captures.
    private let trace: DeliveryTrace?
    /// The log position when the rank captured each open round.
    private var logPositionAtCapture: [(epoch: Epoch, position: UInt64)] = []
    /// The logging mode.
    private var logging: LoggingMode { launch?.logging ?? .none }
    /// Whether this rank asked for a checkpoint that has not happened yet.
    private var checkpointAsked = false
    /// The most bytes retained at once, and the largest the log grew on disk.
    private var retainedBytesPeak = 0
    private var logBytesPeak = 0
    /// Independent checkpointing: the checkpoint interval the rank is in (its checkpoints so
    /// far, counting the one it was restored from); messages carry it.
    private var interval = 0
    /// Independent checkpointing: per sender, the newest sender interval delivered from in the
    /// current interval (-1: none) — its dependency vector.
    private var intervalDependencies: [Int]
    /// Independent checkpointing: when (job clock) the next checkpoint is due, and the draws
    /// of the periods (±25 % around the interval, a generator per rank and incarnation).
    private var nextCheckpointAt = Double.infinity
    private var periodGenerator: SplitMix64
    /// Independent checkpointing: the supervisor is planning a recovery line; nothing is
    /// delivered and no checkpoint is taken until it thaws the rank.
    private var frozen = false
    /// Independent checkpointing: per peer, the incarnation its messages must come from at
    /// least (set when it rolls back: what its lost execution sent is obsolete).
    private var obsoleteBelow: [UInt32]
    private var independent: Bool { launch?.variant == .independent }
    /// Optimistic logging: the rank's dependency vector (`OptimisticLogging`), stamped on every
    /// message it sends.
    private var dependencyVector: [UInt64]
    /// Optimistic logging: records not yet written to the log, and when the log was last flushed.
    private var pendingLog: [[UInt8]] = []
    private var pendingLogBytes = 0
    private var lastLogFlush = 0.0

    private init(
        launch: LaunchEnvironment?, control: ControlLink?, controlReader: Connection?, listener: Int32,
        store: MirroredStore?, snapshot: RankSnapshot?, log: MessageLog?, replay: ReplayQueue?
    ) {
        self.launch = launch
        self.rank = launch?.rank ?? RankID(0)
        self.rankCount = launch?.rankCount ?? 1
        self.incarnation = launch?.incarnation ?? 0
        self.control = control
        self.controlReader = controlReader
        self.listener = listener
        self.store = store
        self.writer = store.flatMap { store in
            control.map {
                SnapshotWriter(store: store, control: $0,
                               chunkBytes: launch?.chunkBytes ?? ChunkedSnapshots.chunkBytesDefault,
                               level: launch?.compressionLevel ?? ChunkedSnapshots.levelDefault)
            }
        }
        self.heartbeatStep = HeartbeatStep.current
        self.heartbeatStep.value = snapshot?.step ?? -1
        self.peers = Array(repeating: nil, count: rankCount)
        self.ledger = snapshot?.ledger ?? MessageLedger(rank: rank, rankCount: rankCount)
        self.participant = CheckpointParticipant(
            variant: launch?.variant ?? .coordinated, epoch: snapshot?.epoch ?? .start, stepPassed: snapshot?.step ?? -1,
            deliverableEpoch: launch?.deliverableEpoch)
        self.inbox = Array(repeating: [], count: rankCount)
        self.restoredStep = snapshot?.step
        self.restoredState = snapshot?.programState
        self.rankFaults = launch?.faults ?? []
        self.log = log
        self.replay = replay
        self.peerIncarnation = Array(repeating: launch?.incarnation ?? 0, count: rankCount)
        self.resendPending = Array(repeating: false, count: rankCount)
        self.trace = launch.flatMap { DeliveryTrace(launch: $0) }
        self.intervalDependencies = Array(repeating: -1, count: launch?.rankCount ?? 1)
        self.obsoleteBelow = Array(repeating: 0, count: launch?.rankCount ?? 1)
        let count = launch?.rankCount ?? 1
        self.dependencyVector = snapshot.map { $0.dependencies.count == count ? $0.dependencies : [] } ?? []
        if dependencyVector.count != count { dependencyVector = Array(repeating: 0, count: count) }
        self.periodGenerator = SplitMix64(seed: UInt64(launch?.rank.rawValue ?? 0) << 32 | UInt64(launch?.incarnation ?? 0))
        if let launch, launch.variant == .independent, launch.intervalSeconds > 0 {
            interval = Int(snapshot?.epoch.rawValue ?? 0)
            nextCheckpointAt = jobClock() + nextPeriod()
        }
    }

    /// Seconds since the job started, on the supervisor's clock.
    private func jobClock() -> Double { monotonicSeconds() - (launch?.clockOrigin ?? 0) }

    /// The next independent checkpoint period: the interval ±25 %.
    private func nextPeriod() -> Double {
        (launch?.intervalSeconds ?? 0) * (0.75 + 0.5 * Double(periodGenerator.next() >> 11) / Double(1 << 53))
    }

    // MARK: Joining

    /// Joins the job described by the environment (or runs alone without one).
    static func join() throws -> RankRuntime {
        guard let launch = try LaunchEnvironment.current() else {
            return RankRuntime(
                launch: nil, control: nil, controlReader: nil, listener: -1, store: nil, snapshot: nil, log: nil, replay: nil)
        }
        signal(SIGPIPE, SIG_IGN)
        lifeline_tune_allocator()
        lifeline_set_parent_death_signal(SIGKILL)
        if getppid() != launch.supervisorPID { supervisorGone() }

        let listener = try Socket.listen(abstractName: launch.rankAddress(launch.rank))
        let controlFD = try Socket.connect(abstractName: launch.supervisorAddress)
        let handshake = Handshake(
            token: launch.token, role: .control, rank: launch.rank, incarnation: launch.incarnation, pid: getpid())
        guard Socket.sendAll(controlFD, handshake.frame()) else { supervisorGone() }
        let control = ControlLink(fd: controlFD)
        let controlReader = Connection(fd: controlFD)
        try awaitStart(controlReader)
        startHeartbeat(control: control, launch: launch)

        let store: MirroredStore
        do {
            store = try MirroredStore(rootA: launch.storageRoots.a, rootB: launch.storageRoots.b)
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
        if launch.restarted, let fault = launch.faults.first(where: { $0.spec == .killInPhase(launch.rank, .recovery) }) {
            fireFault(index: fault.index, control: control)
        }
        let snapshot = try loadSnapshot(launch: launch, store: store)
        let (log, replay) = try openLog(
            launch: launch, store: store, logPosition: snapshot?.logPosition ?? 0,
            dependencies: snapshot?.dependencies ?? [])
        let runtime = RankRuntime(
            launch: launch, control: control, controlReader: controlReader, listener: listener,
            store: store, snapshot: snapshot, log: log, replay: replay)
        try runtime.connectToLowerRanks()
        try runtime.resendRetained()
        if launch.restarted, log != nil, replay?.remainingCount ?? 0 == 0 { runtime.finishReplay() }
        return runtime
    }

    private static func awaitStart(_ reader: Connection) throws {
        var started = false
        while !started {
            var descriptor = pollfd(fd: reader.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 1000)
            let open = try reader.readAvailable { frame in
                if case .control(.start) = frame { started = true }
            }
            if !open { supervisorGone() }
        }
    }

    private static func startHeartbeat(control: ControlLink, launch: LaunchEnvironment) {
        let intervalMicroseconds = UInt32(max(10, launch.heartbeatMs) * 1000)
        let supervisor = launch.supervisorPID
        let step = HeartbeatStep.current
        Thread.detachNewThread {
            while true {
                usleep(intervalMicroseconds)
                if getppid() != supervisor { supervisorGone() }
                control.send(.heartbeat(step: step.value))
            }
        }
    }

    private static func loadSnapshot(launch: LaunchEnvironment, store: MirroredStore) throws -> RankSnapshot? {
        guard launch.restoreEpoch > .start, let name = launch.restoreSnapshot else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try ChunkedSnapshots(store: store).read(name)
        } catch {
            throw LifelineError(.storage, "cannot read the snapshot to restore: \(error)")
        }
        return try RankSnapshot.decode(bytes, rank: launch.rank, rankCount: launch.rankCount, epoch: launch.restoreEpoch)
    }

    /// Opens the rank's log (with logging) and, after a restart, the records it logged after
    /// its checkpoint: those are replayed before anything live.
    private static func openLog(
        launch: LaunchEnvironment, store: MirroredStore, logPosition: UInt64, dependencies: [UInt64]
    ) throws -> (MessageLog?, ReplayQueue?) {
        guard launch.logging != .none else { return (nil, nil) }
        let log: MessageLog
        do {
            log = try MessageLog(store: store, name: MessageLog.name(ofRank: launch.rank.rawValue))
        } catch {
            throw LifelineError(.storage, "cannot open the message log: \(error)")
        }
        guard launch.restarted else {
            try? log.trim(before: log.nextIndex)  // a new job starts with an empty log
            return (log, nil)
        }
        guard launch.replayLog else {
            do {
                try log.resume(at: logPosition)
            } catch {
                throw LifelineError(.storage, "cannot cut the message log back to the checkpoint: \(error)")
            }
            return (log, nil)
        }
        guard logPosition >= log.firstIndex else {
            throw LifelineError(.storage,
                "the message log starts at record \(log.firstIndex), after the checkpoint's \(logPosition): it cannot be replayed")
        }
        let skip = Int(min(logPosition - log.firstIndex, UInt64(log.records.count)))
        var records: [LogRecord] = []
        for record in log.records[skip...] {
            do {
                records.append(try LogRecord.decode(record))
            } catch {
                throw LifelineError(.storage, "a message log record does not decode: \(error)")
            }
        }
        if launch.logging == .optimistic, let limit = launch.replayLimit {
            // An orphan replays only what does not depend on the failed rank's lost states;
            // the rest of its log describes an execution that is gone.
            let start = dependencies.count == launch.rankCount ? dependencies : Array(repeating: 0, count: launch.rankCount)
            let length = OptimisticLogging.replayLength(
                records, start: start, rank: launch.rank, failed: RankID(limit.rank), recoverable: limit.recoverable)
            if length < records.count {
                do {
                    try log.truncate(from: logPosition + UInt64(length))
                } catch {
                    throw LifelineError(.storage, "cannot cut the message log: \(error)")
                }
                records.removeLast(records.count - length)
            }
        }
        return (log, ReplayQueue(records, mode: launch.logging))
    }

    private func connectToLowerRanks() throws {
        guard let launch else { return }
        for lower in 0..<rank.rawValue {
            let fd = try Socket.connect(abstractName: launch.rankAddress(RankID(lower)))
            let handshake = Handshake(token: launch.token, role: .peer, rank: rank, incarnation: incarnation, pid: getpid())
            guard Socket.sendAll(fd, handshake.frame()) else {
                throw LifelineError(.transport, "\(RankID(lower)) closed the connection during the handshake")
            }
            peers[lower] = Connection(fd: fd)
        }
    }

    /// Sends every retained message again; receivers drop what they had already delivered.
    private func resendRetained() throws {
        for destination in 0..<rankCount {
            for message in ledger.retained[destination] {
                try deliverOrTransmit(RankID(destination), message.header, message.payload)
            }
        }
    }

    /// Hands the restored program state over, once.
    func takeRestoredState() throws -> [UInt8]? {
        defer { restoredState = nil }
        return restoredState
    }

    // MARK: Point to point

    /// Stamps, retains and sends a message (or holds it, between capture and DONE when blocking).
    func send(_ payload: [UInt8], to destination: RankID, tag: Int64) throws {
        precondition(!finished, "send after finish()")
        // Under independent checkpointing a message carries its sender's checkpoint interval.
        let stamp = independent ? Epoch(UInt64(interval)) : participant.epoch
        // Under optimistic logging a message carries its sender's dependency vector in front.
        let payload = logging == .optimistic ? OptimisticLogging.stamp(payload, with: dependencyVector) : payload
        let header = ledger.send(to: destination, tag: tag, epoch: stamp, incarnation: incarnation, payload: payload)
        trace?.sent(header, to: destination)
        retainedBytesPeak = max(retainedBytesPeak, ledger.retainedBytes)
        if let launch, launch.retainedBytesMax > 0, ledger.retainedBytes > launch.retainedBytesMax / Self.askAtShareOfMaximum {
            askForCheckpoint()
        }
        if participant.holdsSends {
            heldSends.append((destination, header, payload))
            return
        }
        if resendPending[destination.rawValue] {
            try flushResend(to: destination)  // the new message is retained too: sent in order
            return
        }
        try deliverOrTransmit(destination, header, payload)
    }

    private func deliverOrTransmit(_ destination: RankID, _ header: DataHeader, _ payload: [UInt8]) throws {
        if destination == rank {
            inbox[rank.rawValue].append(Arrival(header: header, payload: payload))
            return
        }
        let connection = try connection(to: destination)
        var head = ByteWriter(capacity: FramePrefix.byteCount + DataHeader.byteCount)
        FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payload.count)).encode(into: &head)
        header.encode(into: &head)
        // A peer that is gone will be restarted with everyone; the message is retained.
        try connection.write(head: head.bytes, payload: payload) { fd in try pump(timeoutMs: Self.pollIntervalMs, writable: fd) }
    }

    private func connection(to destination: RankID) throws -> Connection {
        while true {
            if let connection = peers[destination.rawValue] { return connection }
            try pump(timeoutMs: Self.pollIntervalMs)  // a higher rank has not connected yet
        }
    }

    /// Receives the next deliverable message with `tag` from `source` (nil: any source).
    func receive(from source: RankID?, tag: Int64) throws -> Message {
        precondition(!finished, "receive after finish()")
        if let replayed = try replayReceive(source: source, tag: tag) { return replayed }
        while true {
            try serviceControl()
            if let arrival = takeArrival(from: source, tag: tag) {
                switch logging {
                case .pessimistic: try appendToLog(.delivery(arrival.header, payload: arrival.payload))
                case .senderBased where source == nil: try appendToLog(.determinant(arrival.header))
                case .optimistic: try bufferLog(.delivery(arrival.header, payload: arrival.payload))
                case .none, .senderBased: break
                }
                return deliver(arrival.header, arrival.payload, replayed: false)
            }
            guard launch != nil else {
                throw LifelineError(.usage, "receive would wait forever: rank 0 runs alone and no message is queued")
            }
            if let source, try spin(for: source) { continue }
            try pump(timeoutMs: Self.pollIntervalMs)
        }
    }

    /// Receives one message for each (source, tag) of `requests`, in that order, once all have
    /// arrived: with pessimistic logging they go to the log together — one write and one
    /// fdatasync per mirror — before any of them is delivered (group commit that keeps the
    /// guarantee). During a replay each comes from the log as usual.
    func receive(all requests: [(source: RankID, tag: Int64)]) throws -> [Message] {
        precondition(!finished, "receive after finish()")
        var messages: [Message] = []
        var index = 0
        while index < requests.count, replay != nil {
            let request = requests[index]
            guard let replayed = try replayReceive(source: request.source, tag: request.tag) else { break }
            messages.append(replayed)
            index += 1
        }
        var taken: [Arrival] = []
        while taken.count < requests.count - index {
            try serviceControl()
            let request = requests[index + taken.count]
            if let arrival = takeArrival(from: request.source, tag: request.tag) {
                taken.append(arrival)
                continue
            }
            if try spin(for: request.source) { continue }
            try pump(timeoutMs: Self.pollIntervalMs)
        }
        switch logging {
        case .pessimistic:
            do {
                try log?.append(taken.map { LogRecord.delivery($0.header, payload: $0.payload).encoded() })
            } catch {
                throw LifelineError(.storage, "cannot write the message log: \(error)")
            }
            if let log {
                logBytesPeak = max(logBytesPeak, log.fileBytes)
                if let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / Self.askAtShareOfMaximum { askForCheckpoint() }
            }
        case .optimistic:
            for arrival in taken { try bufferLog(.delivery(arrival.header, payload: arrival.payload)) }
        case .none, .senderBased:
            break  // named sources: no determinant
        }
        return messages + taken.map { deliver($0.header, $0.payload, replayed: false) }
    }

    /// Waiting for a named peer while every rank has a core of its own: read its socket a few
    /// times before sleeping in poll(2), so a reply that comes within microseconds is taken
    /// without a sleep and a wake-up. With more ranks than cores, spinning would steal the time
    /// of the rank being waited for, so the runtime sleeps at once.
    private func spin(for source: RankID) throws -> Bool {
        guard Self.spinReads > 0, rankCount <= Self.coreCount, let peer = peers[source.rawValue], !peer.isClosed else {
            return false
        }
        let before = inbox[source.rawValue].count
        for _ in 0..<Self.spinReads {
            _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                if case .data(let header, let payload) = frame { arrive(header, payload) }
            }
            if inbox[source.rawValue].count != before { return true }
        }
        return false
    }

    private func deliver(_ header: DataHeader, _ stamped: [UInt8], replayed: Bool) -> Message {
        ledger.recordDelivery(source: header.source, sequence: header.sequence)
        participant.noteChange()
        var payload = stamped
        if logging == .optimistic, let (sender, bytes) = OptimisticLogging.split(stamped, rankCount: rankCount) {
            dependencyVector = OptimisticLogging.afterDelivery(dependencyVector, of: rank, sender: sender)
            payload = bytes
        }
        if independent {
            let source = header.source.rawValue
            intervalDependencies[source] = max(intervalDependencies[source], Int(header.epoch.rawValue))
        }
        trace?.delivered(header, replayed: replayed)
        return Message(source: header.source.rawValue, tag: Int(header.tag), bytes: payload)
    }

    private func appendToLog(_ record: LogRecord) throws {
        guard let log else { return }
        do {
            try log.append([record.encoded()])
        } catch {
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        logBytesPeak = max(logBytesPeak, log.fileBytes)
        if let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / Self.askAtShareOfMaximum { askForCheckpoint() }
    }

    /// Optimistic logging: keeps a record in memory; the log gets it at the next flush.
    private func bufferLog(_ record: LogRecord) throws {
        let bytes = record.encoded()
        pendingLog.append(bytes)
        pendingLogBytes += bytes.count
        try flushLogIfDue()
    }

    /// Optimistic logging: writes the buffered records (one write and one fdatasync per mirror
    /// for all of them) once the flush delay or size is reached.
    private func flushLogIfDue() throws {
        guard !pendingLog.isEmpty, let launch else { return }
        let due = pendingLogBytes >= launch.logFlushBytes || jobClock() - lastLogFlush >= Double(launch.logFlushMs) / 1000
        if due { try flushLog() }
    }

    /// Optimistic logging: writes every buffered record now.
    private func flushLog() throws {
        lastLogFlush = jobClock()
        guard !pendingLog.isEmpty, let log else { return }
        do {
            try log.append(pendingLog)
        } catch {
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        pendingLog.removeAll(keepingCapacity: true)
        pendingLogBytes = 0
        logBytesPeak = max(logBytesPeak, log.fileBytes)
        if let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / Self.askAtShareOfMaximum { askForCheckpoint() }
    }

    /// The process's peak resident memory (VmHWM), or 0 where /proc does not say.
    private static func residentBytesPeak() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = UInt64(line.split(separator: " ").dropFirst().first { !$0.isEmpty } ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// A rank asks for a checkpoint when its retained messages or its log pass this fraction
    /// (1/N) of their maximum, so that the round commits and trims them before they reach it.
    static let askAtShareOfMaximum = 4

    /// Retention or the log neared its maximum: a checkpoint that commits trims both, so the
    /// rank asks for one (once, until the next round) rather than growing without bound.
    private func askForCheckpoint() {
        guard !checkpointAsked else { return }
        checkpointAsked = true
        control?.send(.checkpointWanted)
    }

    /// A value read from outside the messages, logged (with logging) so replay returns it again.
    func loggedValue(_ produce: () -> [UInt8]) throws -> [UInt8] {
        participant.noteChange()
        if var queue = replay {
            let next = queue.nextValue()
            replay = queue
            switch next {
            case .success(let bytes?):
                if logging == .optimistic { dependencyVector[rank.rawValue] += 1 }
                if queue.remainingCount == 0 { finishReplay() }
                return bytes
            case .success(nil):
                finishReplay()
            case .failure(let error):
                throw LifelineError(.usage, "\(error)")
            }
        }
        let bytes = produce()
        if logging == .optimistic {
            dependencyVector[rank.rawValue] += 1
            try bufferLog(.value(bytes))
        } else if log != nil {
            try appendToLog(.value(bytes))
        }
        return bytes
    }

    /// During replay: the message this receive returned before the crash; nil when live.
    private func replayReceive(source: RankID?, tag: Int64) throws -> Message? {
        guard var queue = replay else { return nil }
        let next = queue.nextReceive(source: source, tag: tag)
        replay = queue
        defer { if replay != nil, queue.remainingCount == 0 { finishReplay() } }
        switch next {
        case .deliver(let header, let payload):
            return deliver(header, payload, replayed: true)
        case .await(let header):
            while true {
                try serviceControl()
                if let index = inbox[header.source.rawValue].firstIndex(where: { $0.header.sequence == header.sequence }) {
                    let arrival = inbox[header.source.rawValue].remove(at: index)
                    return deliver(arrival.header, arrival.payload, replayed: true)
                }
                try pump(timeoutMs: Self.pollIntervalMs)
            }
        case .live:
            return nil
        case .exhausted:
            finishReplay()
            return nil
        case .diverged(let expected):
            throw LifelineError(.usage,
                "replay diverged: the program asked for tag \(tag) from \(source.map { "\($0)" } ?? "any rank") where before the crash it made \(expected); it is not piecewise deterministic")
        }
    }

    private func finishReplay() {
        replay = nil
        control?.send(.replayComplete(deliveries: Int(ledger.delivered.reduce(0) { $0 + $1.count })))
    }

    private func takeArrival(from source: RankID?, tag: Int64) -> Arrival? {
        if frozen { return nil }
        if let source { return takeArrival(fromSource: source.rawValue, tag: tag) }
        for offset in 0..<rankCount {
            let candidate = (anySourceCursor + offset) % rankCount
            if let arrival = takeArrival(fromSource: candidate, tag: tag) {
                anySourceCursor = (candidate + 1) % rankCount
                return arrival
            }
        }
        return nil
    }

    /// The first message of the channel with `tag` that may be delivered. Epochs never decrease
    /// along a channel, so once one message is held back for its epoch, the rest are too.
    private func takeArrival(fromSource source: Int, tag: Int64) -> Arrival? {
        var index = 0
        while index < inbox[source].count {
            let header = inbox[source][index].header
            if ledger.isDuplicate(source: header.source, sequence: header.sequence) {
                inbox[source].remove(at: index)
                continue
            }
            guard participant.mayDeliver(messageEpoch: header.epoch) else { return nil }
            if header.tag == tag { return inbox[source].remove(at: index) }
            index += 1
        }
        return nil
    }

    // MARK: Checkpoints

    /// A safe point: fires step faults, waits for S when asked, captures when S is reached.
    func safePoint(step: Int, capture: () -> StateWriter) throws {
        guard let launch else { return }
        if step == restoredStep, step == participant.stepPassed { return }  // resuming right here
        guard step > participant.stepPassed else {
            throw LifelineError(.usage, "safe point \(step) does not come after \(participant.stepPassed): steps must increase")
        }
        if let fault = rankFaults.first(where: { $0.spec == .killAtStep(rank, step: step) }) {
            fireFault(index: fault.index, control: control)
        }
        // A rank that computes without messages reaches the runtime only here: read what the
        // supervisor sent, so a request is answered now and not at the next receive.
        try pump(timeoutMs: 0)
        try serviceControl()
        trace?.flush()
        if independent, !frozen, jobClock() >= nextCheckpointAt {
            heartbeatStep.value = step
            _ = participant.handleSafePoint(step: step)
            try captureIndependent(step: step, state: capture(), launch: launch)
            return
        }
        while true {
            switch participant.handleSafePoint(step: step) {
            case .proceed:
                heartbeatStep.value = step
                return
            case .wait:
                try pump(timeoutMs: Self.pollIntervalMs)
                try serviceControl()
            case .capture(let epoch):
                heartbeatStep.value = step
                trace?.captured(epoch: epoch, step: step)
                try captureSnapshot(epoch: epoch, step: step, state: capture(), launch: launch)
                return
            case .keep(let epoch):
                // Minimal checkpoints: nothing delivered since the last committed checkpoint,
                // which stays this rank's entry in the new line.
                heartbeatStep.value = step
                control?.send(.ack(epoch, Acknowledgement(
                    step: step, snapshotBytes: 0, outputOffset: 0, delivered: ledger.delivered, kept: true)))
                return
            }
        }
    }

    private func captureSnapshot(epoch: Epoch, step: Int, state: StateWriter, launch: LaunchEnvironment) throws {
        guard let writer, let store else { return }
        if logging == .optimistic { try flushLog() }  // the log position below counts every delivery
        lifeline_flush_stdio()
        let outputOffset = UInt64(max(0, lseek(STDOUT_FILENO, 0, SEEK_CUR)))
        let snapshot = RankSnapshot(
            epoch: epoch, step: step, incarnation: incarnation, logPosition: log?.nextIndex ?? 0,
            dependencies: logging == .optimistic ? dependencyVector : [], ledger: ledger, programState: state.bytes,
            numericRanges: state.numericRanges)
        logPositionAtCapture.append((epoch, log?.nextIndex ?? 0))
        let fault = rankFaults.first { $0.spec == .killInPhase(rank, .checkpoint) }
        writer.submit(SnapshotWriter.Job(
            epoch: epoch, step: step,
            name: ManifestStore(store: store).snapshotName(epoch: epoch.rawValue, rank: rank.rawValue),
            uncompressed: snapshot.encoded(), delivered: ledger.delivered, outputOffset: outputOffset,
            changes: participant.changesSinceCheckpoint, dependencies: [], faultIndex: fault?.index))
    }

    /// Independent checkpointing: closes the current interval with a checkpoint of its own,
    /// written in the background; its ACK carries the interval's dependency vector.
    private func captureIndependent(step: Int, state: StateWriter, launch: LaunchEnvironment) throws {
        guard let writer, let store else { return }
        interval += 1
        let index = Epoch(UInt64(interval))
        trace?.captured(epoch: index, step: step)
        lifeline_flush_stdio()
        let outputOffset = UInt64(max(0, lseek(STDOUT_FILENO, 0, SEEK_CUR)))
        let snapshot = RankSnapshot(
            epoch: index, step: step, incarnation: incarnation, logPosition: log?.nextIndex ?? 0, ledger: ledger,
            programState: state.bytes, numericRanges: state.numericRanges)
        logPositionAtCapture.append((index, log?.nextIndex ?? 0))
        let fault = rankFaults.first { $0.spec == .killInPhase(rank, .checkpoint) }
        writer.submit(SnapshotWriter.Job(
            epoch: index, step: step,
            name: ManifestStore(store: store).independentSnapshotName(rank: rank.rawValue, checkpoint: interval),
            uncompressed: snapshot.encoded(), delivered: ledger.delivered, outputOffset: outputOffset,
            changes: participant.changesSinceCheckpoint, dependencies: intervalDependencies, faultIndex: fault?.index))
        intervalDependencies = Array(repeating: -1, count: rankCount)
        nextCheckpointAt = jobClock() + nextPeriod()
    }

    /// Asks the supervisor for a checkpoint at the next common safe point.
    func requestCheckpoint() throws {
        control?.send(.checkpointWanted)
    }

    /// The final barrier: report, then serve the protocol until the supervisor releases the job.
    func finish() throws {
        guard launch != nil, !finished else { return }
        finished = true
        if logging == .optimistic { try flushLog() }
        trace?.flush()
        lifeline_flush_stdio()
        if let fault = rankFaults.first(where: { $0.spec == .killInPhase(rank, .finish) }) {
            fireFault(index: fault.index, control: control)
        }
        control?.send(.finished(
            step: participant.stepPassed, loggedBytes: log?.appendedBytes ?? 0,
            retainedBytesPeak: UInt64(retainedBytesPeak), logBytesPeak: UInt64(logBytesPeak),
            residentBytesPeak: Self.residentBytesPeak(), logSyncs: log?.syncCount ?? 0))
        while !released {
            try serviceControl()
            if !released { try pump(timeoutMs: Self.pollIntervalMs) }
        }
        writer?.drain()
    }

    // MARK: The progress engine

    /// Handles queued control messages. Never called from inside a send, so a message that
    /// releases held sends cannot interleave frames on a socket.
    private func serviceControl() throws {
        if logging == .optimistic { try flushLogIfDue() }
        for outcome in writer?.takeCompleted() ?? [] {
            if case .durable(let epoch) = outcome { participant.handleSnapshotDurable(epoch) }
        }
        while !pendingControl.isEmpty {
            let message = pendingControl.removeFirst()
            switch message {
            case .checkpointRequest(let epoch):
                checkpointAsked = false
                try perform(participant.handleRequest(epoch))
            case .safePointChosen(let epoch, let step):
                try perform(participant.handleSafePointChosen(epoch, step: step))
            case .checkpointDone(let epoch, let covered):
                for outcome in writer?.takeCompleted() ?? [] {
                    if case .durable(let durable) = outcome { participant.handleSnapshotDurable(durable) }
                }
                for (receiver, set) in covered.enumerated() where receiver != rank.rawValue {
                    ledger.trim(destination: RankID(receiver), covered: set)
                }
                ledger.trim(destination: rank, covered: ledger.delivered[rank.rawValue])
                try trimLog(committed: epoch)
                try perform(participant.handleDone(epoch))
            case .abort(let epoch):
                try perform(participant.handleAbort(epoch))
            case .release:
                released = true
                control?.markReleased()
            case .peerRestarted(let peer, let peerIncarnationNew):
                if independent || logging == .optimistic {
                    // The peer rolled back: what its lost execution sent and this rank has not
                    // delivered is obsolete (re-execution sends it again, perhaps differently).
                    obsoleteBelow[peer.rawValue] = peerIncarnationNew
                    inbox[peer.rawValue].removeAll { $0.header.incarnation < peerIncarnationNew }
                }
                try reconnect(to: peer, incarnation: peerIncarnationNew)
            case .freeze:
                writer?.drain()  // every checkpoint taken is durable and acknowledged first
                for outcome in writer?.takeCompleted() ?? [] {
                    if case .durable(let durable) = outcome { participant.handleSnapshotDurable(durable) }
                }
                frozen = true
                if logging == .optimistic {
                    // Everything delivered so far reaches the log: this rank loses nothing if it
                    // turns out to be an orphan and is restarted.
                    try flushLog()
                    control?.send(.frozen(interval: 0, dependencies: dependencyVector.map { Int($0) }))
                } else {
                    control?.send(.frozen(interval: interval, dependencies: intervalDependencies))
                }
            case .thaw:
                frozen = false
            case .trim(let checkpoint, let covered):
                for (receiver, set) in covered.enumerated() where receiver != rank.rawValue {
                    ledger.trim(destination: RankID(receiver), covered: set)
                }
                try trimLog(committed: Epoch(UInt64(checkpoint)))
            case .start, .heartbeat, .stepReport, .ack, .snapshotFailed, .finished, .checkpointWanted, .faultFired,
                 .replayComplete, .frozen:
                break  // not for a rank, or already handled
            }
        }
    }

    /// A committed checkpoint covers the deliveries it captured: drop them from the log.
    private func trimLog(committed epoch: Epoch) throws {
        guard let captured = logPositionAtCapture.first(where: { $0.epoch == epoch }) else { return }
        logPositionAtCapture.removeAll { $0.epoch <= epoch }
        do {
            try log?.trim(before: captured.position)
        } catch {
            throw LifelineError(.storage, "cannot trim the message log: \(error)")
        }
    }

    /// A peer was restarted alone: make a connection to its new incarnation (the higher rank
    /// connects) and send it again what it may have lost.
    private func reconnect(to peer: RankID, incarnation peerIncarnationNew: UInt32) throws {
        guard let launch, peer != rank else { return }
        if rank > peer {
            peers[peer.rawValue]?.close()
            // The restarted peer may die again before it accepts (a fault during its recovery):
            // then the supervisor restarts it once more and says so again; this rank goes on
            // (what it sends meanwhile is retained) instead of failing with it.
            guard let fd = try? Socket.connect(abstractName: launch.rankAddress(peer)) else { return }
            let handshake = Handshake(token: launch.token, role: .peer, rank: rank, incarnation: incarnation, pid: getpid())
            guard Socket.sendAll(fd, handshake.frame()) else {
                close(fd)
                return
            }
            peers[peer.rawValue] = Connection(fd: fd)
            peerIncarnation[peer.rawValue] = peerIncarnationNew
            resendPending[peer.rawValue] = true
        }
        while peerIncarnation[peer.rawValue] < peerIncarnationNew { try pump(timeoutMs: Self.pollIntervalMs) }
        try flushResend(to: peer)
    }

    /// Sends a restarted peer every retained message again, before anything new.
    private func flushResend(to peer: RankID) throws {
        guard resendPending[peer.rawValue] else { return }
        resendPending[peer.rawValue] = false
        for message in ledger.retained[peer.rawValue] { try deliverOrTransmit(peer, message.header, message.payload) }
    }

    private func perform(_ actions: [CheckpointParticipant.Action]) throws {
        for action in actions {
            switch action {
            case .reportStep(let epoch, let step):
                control?.send(.stepReport(epoch, step: step))
            case .capture:
                preconditionFailure("capture happens only at a safe point")
            case .trimRetained:
                break  // done with the coverage DONE carried
            case .releaseHeldSends:
                let held = heldSends
                heldSends.removeAll()
                for (destination, header, payload) in held { try deliverOrTransmit(destination, header, payload) }
            }
        }
    }

    /// Waits up to `timeoutMs` for traffic (or for `writable` to drain) and reads everything
    /// that arrived: data into the inbox, control messages into the pending queue, new peer
    /// connections through their handshake.
    private func pump(timeoutMs: Int32, writable: Int32? = nil) throws {
        var descriptors: [pollfd] = []
        descriptors.reserveCapacity(rankCount + 2)
        if let controlReader { descriptors.append(pollfd(fd: controlReader.fd, events: Int16(POLLIN), revents: 0)) }
        if listener >= 0 { descriptors.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
        for case let peer? in peers where !peer.isClosed {
            let events = peer.fd == writable ? Int16(POLLIN) | Int16(POLLOUT) : Int16(POLLIN)
            descriptors.append(pollfd(fd: peer.fd, events: events, revents: 0))
        }
        let ready = poll(&descriptors, nfds_t(descriptors.count), timeoutMs)
        if ready < 0, errno != EINTR {
            throw LifelineError(.transport, "poll failed: \(String(cString: strerror(errno)))")
        }
        guard ready > 0 else { return }
        for descriptor in descriptors where descriptor.revents != 0 {
            if let controlReader, descriptor.fd == controlReader.fd {
                let open = try controlReader.readAvailable { frame in
                    if case .control(let message) = frame { pendingControl.append(message) }
                }
                if !open { supervisorGone() }
            } else if descriptor.fd == listener {
                acceptPeer()
            } else if let peer = peers.first(where: { $0?.fd == descriptor.fd }) ?? nil {
                _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                    if case .data(let header, let payload) = frame { arrive(header, payload) }
                }
            }
        }
    }

    private func arrive(_ header: DataHeader, _ payload: [UInt8]) {
        guard (0..<rankCount).contains(header.source.rawValue),
              !ledger.isDuplicate(source: header.source, sequence: header.sequence)
        else { return }
        // Independent checkpointing: a message from an incarnation that was rolled back is obsolete.
        if independent, header.incarnation < obsoleteBelow[header.source.rawValue] { return }
        inbox[header.source.rawValue].append(Arrival(header: header, payload: payload))
    }

    /// Accepts a peer's connection if its handshake carries the job's token; refuses it otherwise.
    private func acceptPeer() {
        guard let launch, let fd = Socket.accept(listener) else { return }
        guard let handshake = Socket.receiveHandshake(fd, token: launch.token), handshake.role == .peer,
              (0..<rankCount).contains(handshake.rank.rawValue), handshake.rank != rank
        else {
            FileHandle.standardError.write(Data("lifeline: \(rank) refused a connection without the job's token\n".utf8))
            close(fd)
            return
        }
        peers[handshake.rank.rawValue]?.close()
        if handshake.incarnation > peerIncarnation[handshake.rank.rawValue] {
            peerIncarnation[handshake.rank.rawValue] = handshake.incarnation
            resendPending[handshake.rank.rawValue] = true
        }
        let connection = Connection(fd: fd)
        _ = connection.write(head: [UInt8](WelcomeFrame.frame)) { _ in }
        peers[handshake.rank.rawValue] = connection
    }
}

/// The acceptor's answer to a valid handshake: a frame of kind `welcome` with an empty body.
enum WelcomeFrame {
    /// Its bytes.
    static let frame: [UInt8] = {
        var writer = ByteWriter(capacity: FramePrefix.byteCount)
        FramePrefix(kind: .welcome, bodyLength: 0).encode(into: &writer)
        return writer.bytes
    }()
}

/// The last safe point the program passed, read by the heartbeat thread.
final class HeartbeatStep: Sendable {
    /// The instance the heartbeat thread reports (one rank per process).
    static let current = HeartbeatStep(-1)
    private let storage: Atomic<Int>

    init(_ initial: Int) { storage = Atomic(initial) }

    /// The step.
    var value: Int {
        get { storage.load(ordering: .relaxed) }
        set { storage.store(newValue, ordering: .relaxed) }
    }
}
