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
    struct Arrival {
        var header: DataHeader
        var payload: [UInt8]
    }

    /// Non-blocking reads of the awaited peer before sleeping in poll(2) (about a microsecond each).
    static let spinReads = 100
    /// The cores this process may run on.
    static let coreCount = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    /// How many bytes one wait reads from a peer before the program gets a chance to take them.
    static let readBytesMaxPerWait = 2 << 20
    /// How long one wait for traffic lasts before the runtime looks around again.
    static let pollIntervalMs: Int32 = 500

    let rank: RankID
    let rankCount: Int
    let incarnation: UInt32
    /// The step of the restored snapshot, if the rank was restored.
    private(set) var restoredStep: Int?

    let launch: LaunchEnvironment?
    let control: ControlLink?
    let controlReader: Connection?
    let listener: Int32
    /// Peers' new connections, until their handshakes are in (nil when running alone).
    let acceptor: HandshakeAcceptor?
    let store: MirroredStore?
    let writer: SnapshotWriter?
    let heartbeatStep: HeartbeatStep

    /// Data connections indexed by rank; nil until connected (and for this rank).
    var peers: [Connection?]
    var ledger: MessageLedger
    var participant: CheckpointParticipant
    /// Arrived messages per source, in arrival order.
    var inbox: [[Arrival]]
    /// Control messages read but not yet handled (they are handled outside of sends).
    var pendingControl: [ControlMessage] = []
    /// Sends held between capture and DONE (blocking variant).
    var heldSends: [(RankID, DataHeader, [UInt8])] = []
    var restoredState: [UInt8]?
    /// Whether the program asked for its restored state (`Communicator.restore`).
    var restoreAsked = false
    /// Standalone (no supervisor): the last safe point passed, to check that steps increase.
    var standaloneStepPassed = -1
    var released = false
    var finished = false
    var anySourceCursor = 0
    var rankFaults: [(index: Int, spec: FaultSpec)]
    /// The rank's log (pessimistic or sender-based logging), nil without logging.
    let log: MessageLog?
    /// Records to replay after a restart, in their logged order; nil when running live.
    var replay: ReplayQueue?
    /// The incarnation of each peer's current connection.
    var peerIncarnation: [UInt32]
    /// Peers restarted alone that must get this rank's retained messages again before anything
    /// new, so each channel stays in order.
    var resendPending: [Bool]
    /// `--trace-deliveries`: what the rank sends, delivers and captures.
    let trace: DeliveryTrace?
    /// The log position when the rank captured each open round.
    var logPositionAtCapture: [(epoch: Epoch, position: UInt64)] = []
    /// The logging mode.
    var logging: LoggingMode { launch?.logging ?? .none }
    /// What the logging mode (and the checkpoint scheme) ask of this rank: the one switch.
    let rules: RankLogging
    /// Whether this rank asked for a checkpoint that has not happened yet.
    var checkpointAsked = false
    /// The most bytes retained at once, and the largest the log grew on disk.
    var retainedBytesPeak = 0
    var logBytesPeak = 0
    /// Independent checkpointing: the checkpoint interval the rank is in (its checkpoints so
    /// far, counting the one it was restored from); messages carry it.
    var interval = 0
    /// Independent checkpointing: per sender, the newest sender interval delivered from in the
    /// current interval (-1: none) — its dependency vector.
    var intervalDependencies: [Int]
    /// Independent checkpointing: when (job clock) the next checkpoint is due, and the draws
    /// of the periods (±25 % around the interval, a generator per rank and incarnation).
    var nextCheckpointAt = Double.infinity
    var periodGenerator: SplitMix64
    /// Independent checkpointing: the supervisor is planning a recovery line; nothing is
    /// delivered and no checkpoint is taken until it thaws the rank.
    var frozen = false
    /// The mirrors snapshots are written to: both, or one while the other has failed.
    var writeMirrors: StorageMirrors
    /// Whether the supervisor was told that the message log dropped a mirror.
    var logMirrorFailureReported = false
    /// Independent checkpointing: per peer, the incarnation its messages must come from at
    /// least (set when it rolls back: what its lost execution sent is obsolete).
    var obsoleteBelow: [UInt32]
    var independent: Bool { launch?.variant == .independent }
    /// Optimistic logging: the rank's dependency vector (`OptimisticLogging`), stamped on every
    /// message it sends.
    var dependencyVector: [UInt64]
    /// Optimistic logging: records not yet written to the log, and when the log was last flushed.
    var pendingLog: [[UInt8]] = []
    var pendingLogBytes = 0
    var lastLogFlush = 0.0
    /// Messages this incarnation sent, that arrived at it (not duplicates), and that it
    /// delivered: what a `waitReport` shows moving.
    var sends: UInt64 = 0
    var arrivals: UInt64 = 0
    var deliveries: UInt64 = 0
    /// A hash of each delivered payload since the last commit, to catch a duplicate with other
    /// bytes (a sender that did not re-execute the same way).
    var fingerprints: DeliveryFingerprints
    /// Whether this rank reported nondeterminism (once is enough).
    var nondeterminismReported = false

    init(
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
        self.acceptor = launch.flatMap { listener >= 0 ? HandshakeAcceptor(listener: listener, token: $0.token) : nil }
        self.store = store
        self.writeMirrors = launch?.writeMirrors ?? .both
        self.rules = RankLogging(mode: launch?.logging ?? .none, independent: launch?.variant == .independent)
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
        self.fingerprints = DeliveryFingerprints(rankCount: rankCount)
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
    func jobClock() -> Double { monotonicSeconds() - (launch?.clockOrigin ?? 0) }

    /// The next independent checkpoint period: the interval ±25 %.
    func nextPeriod() -> Double {
        (launch?.intervalSeconds ?? 0) * (0.75 + 0.5 * Double(periodGenerator.next() >> 11) / Double(1 << 53))
    }

    // MARK: Joining

    /// Joins the job described by the environment (or runs alone without one).
    static func join() throws -> RankRuntime {
        guard var launch = try LaunchEnvironment.current() else {
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
        let (plan, controlBeforeJoined) = try awaitStart(controlReader)
        launch.apply(plan)
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
        // While a mirror has failed, reading a snapshot does not try to repair it.
        let snapshot = try loadSnapshot(launch: launch, store: store.writing(only: launch.writeMirrors.mirrors))
        let (log, replay) = try openLog(
            launch: launch, store: store, logPosition: snapshot?.logPosition ?? 0,
            dependencies: snapshot?.dependencies ?? [])
        let runtime = RankRuntime(
            launch: launch, control: control, controlReader: controlReader, listener: listener,
            store: store, snapshot: snapshot, log: log, replay: replay)
        runtime.pendingControl = controlBeforeJoined
        try runtime.connectToLowerRanks()
        try runtime.resendRetained()
        if launch.restarted, log != nil, replay?.remainingCount ?? 0 == 0 { runtime.finishReplay() }
        return runtime
    }

    /// Waits for START and returns its plan with every other control message read meanwhile,
    /// in order: the supervisor may send a checkpoint request right behind START (a round that
    /// was wanted during a recovery starts the moment it ends), and both can arrive in one read.
    static func awaitStart(_ reader: Connection) throws -> (StartPlan, [ControlMessage]) {
        var plan: StartPlan?
        var others: [ControlMessage] = []
        while plan == nil {
            var descriptor = pollfd(fd: reader.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 1000)
            let open = try reader.readAvailable { frame in
                guard case .control(let message) = frame else { return }
                if case .start(let started) = message, plan == nil { plan = started } else { others.append(message) }
            }
            if !open { supervisorGone() }
        }
        return (plan!, others)
    }

    static func startHeartbeat(control: ControlLink, launch: LaunchEnvironment) {
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

    static func loadSnapshot(launch: LaunchEnvironment, store: MirroredStore) throws -> RankSnapshot? {
        guard launch.restoreEpoch > .start, let name = launch.restoreSnapshot else { return nil }
        let bytes: [UInt8]
        do {
            bytes = try ChunkedSnapshots(store: store).read(name)
        } catch {
            throw LifelineError(.storage, "cannot read the snapshot to restore: \(error)")
        }
        return try RankSnapshot.decode(bytes, rank: launch.rank, rankCount: launch.rankCount, epoch: launch.restoreEpoch)
    }

    /// The log's segment size: at most a sixteenth of the log maximum, so the records a trim
    /// leaves behind (those of a segment not yet wholly covered) stay far below the quarter
    /// of the maximum at which the rank asks for a checkpoint.
    static func segmentBytes(logBytesMax: Int) -> Int {
        guard logBytesMax > 0 else { return MessageLog.segmentBytesDefault }
        return min(MessageLog.segmentBytesDefault, max(4 << 10, logBytesMax / 16))
    }

    /// Opens the rank's log (with logging) and, after a restart, the records it logged after
    /// its checkpoint: those are replayed before anything live.
    static func openLog(
        launch: LaunchEnvironment, store: MirroredStore, logPosition: UInt64, dependencies: [UInt64]
    ) throws -> (MessageLog?, ReplayQueue?) {
        guard launch.logging != .none else { return (nil, nil) }
        let log: MessageLog
        do {
            log = try MessageLog(store: store.writing(only: launch.writeMirrors.mirrors),
                                 name: MessageLog.name(ofRank: launch.rank.rawValue),
                                 segmentBytesMax: segmentBytes(logBytesMax: launch.logBytesMax))
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

    /// Connects to every lower rank (the higher rank of a pair connects). Every rank of a
    /// launch listens before START, so a refused connection (and only that) means the peer died
    /// since (a fault during the recovery): this rank goes on without it instead of failing with
    /// it. The supervisor either restarts the peer alone and announces it (`peerRestarted`: then
    /// this rank connects) or rolls every rank back; what this rank sends it meanwhile is retained.
    func connectToLowerRanks() throws {
        guard let launch else { return }
        for lower in 0..<rank.rawValue {
            guard let fd = try Socket.connectUnlessRefused(abstractName: launch.rankAddress(RankID(lower))) else { continue }
            let handshake = Handshake(token: launch.token, role: .peer, rank: rank, incarnation: incarnation, pid: getpid())
            guard Socket.sendAll(fd, handshake.frame()) else {
                close(fd)
                continue
            }
            peers[lower] = Connection(fd: fd)
        }
    }

    /// Sends every retained message again; receivers drop what they had already delivered.
    func resendRetained() throws {
        for destination in 0..<rankCount {
            for message in ledger.retained[destination] {
                trace?.sent(message.header, to: RankID(destination))
                try deliverOrTransmit(RankID(destination), message.header, message.payload)
            }
        }
    }

    /// Hands the restored program state over, once.
    func takeRestoredState() throws -> [UInt8]? {
        defer { restoredState = nil }
        restoreAsked = true
        return restoredState
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
