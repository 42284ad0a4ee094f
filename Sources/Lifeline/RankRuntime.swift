#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// How long this process's restore took and where its snapshot came from (0 none, 1 disk,
/// 2 memory): set by `RankRuntime.loadSnapshot`, reported in `finished`.
enum RestoreTiming {
    static let last = Mutex<(seconds: Double, source: UInt8)>((0, 0))
}

/// The engine behind a `Communicator`: the rank's sockets, log, snapshot writer and control
/// connection, on the program's thread. What to do with a message, a control message or a
/// safe point is decided by its `RankMachine` (and the participant within it); this class
/// moves bytes and makes no protocol decision of its own.
///
/// Owned by the program's thread, which alone touches its state, so its stored variables
/// (and `Connection`'s) opt out of Swift's dynamic exclusivity checks
/// (`@exclusivity(unchecked)`): a message's path reads and writes them a few dozen times, and
/// the checks (a thread-local access set per access) took a fifth of a 64 B round trip over
/// shared memory (2.0 µs → 1.6 µs here). Static checking still applies: the compiler refuses
/// overlapping accesses it can see, and none of these is ever passed `inout` across a call that
/// reaches back into the runtime.
final class RankRuntime {
    typealias Arrival = RankMachine.Arrival

    /// Non-blocking reads of the awaited peer before sleeping in poll(2) (about a microsecond each).
    static let spinReads = 100
    /// How long a rank waiting for a named peer watches a shared-memory ring before it sleeps
    /// in poll(2) (when every rank has a core): about what `spinReads` reads of a socket take.
    static let ringSpinSeconds = 50e-6
    /// How long a rank waiting for a peer watches its ring, yielding the core between looks,
    /// before it sleeps in poll(2), when there are more ranks than cores. A sleep and a wake-up
    /// cost tens of microseconds here; heat2d on 4 ranks of 2 cores ran in 2.9 s watching for
    /// 1 ms (3.0 s for 100 µs) against 3.8 s sleeping at once, and a scalar allreduce took
    /// 9.6 µs against 37 µs.
    static let yieldWatchSeconds = 1e-3
    /// How long a writer watches a full ring for room before it waits in poll(2): as long as a
    /// reader watches an empty one when every rank has a core, else nothing.
    var roomSpinSeconds: Double { rankCount <= Self.coreCount ? Self.ringSpinSeconds : 0 }
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
    @exclusivity(unchecked) private(set) var restoredStep: Int?
    /// Relaunched after a failure: the safe point this rank had reached then, until it passes
    /// it again and says so (`LaunchEnvironment.catchUpStep`).
    @exclusivity(unchecked) var catchUpStep: Int?

    let launch: LaunchEnvironment?
    /// Whether the rank was launched into a job (`launch` is set): asked on hot paths, where
    /// `launch != nil` would copy the whole environment.
    let isLaunched: Bool
    let control: ControlLink?
    let controlReader: Connection?
    let listener: Int32
    /// Peers' new connections, until their handshakes are in (nil when running alone).
    let acceptor: HandshakeAcceptor?
    /// A job on several hosts: the TCP listener for peers on other hosts (its own thread runs
    /// their handshakes), and where every rank listens (`peerAddresses`, from the supervisor).
    @exclusivity(unchecked) var hostListener: HostListener?
    @exclusivity(unchecked) var peerAddresses: [RankAddress?] = [] {
        didSet {
            guard partners != nil || memoryPartners != nil else { return }
            partners?.update(peerAddresses)
            if memoryPartners !== partners { memoryPartners?.update(peerAddresses) }
            hostListener?.fence(peerAddresses)
        }
    }
    /// With partner hosts (`{partner}` in `--storage`): where the second copies go, and where
    /// a rank restarted on another host finds its files.
    let partners: PartnerDirectory?
    /// With levels on several hosts: where the second copy of each level-1 copy goes, the
    /// partner host's memory (`partners` itself when there are partner hosts).
    let memoryPartners: PartnerDirectory?
    let store: MirroredStore?
    let writer: SnapshotWriter?
    let heartbeatStep: HeartbeatStep

    /// Every decision about messages, checkpoints, replay and freezes.
    @exclusivity(unchecked) var machine: RankMachine
    /// Data connections indexed by rank; nil until connected (and for this rank).
    @exclusivity(unchecked) var peers: [Connection?]
    /// Control messages read but not yet handled (they are handled outside of sends).
    @exclusivity(unchecked) var pendingControl: [ControlMessage] = []
    /// A round's capture waiting for the round's cut, which says what of its retained messages
    /// the snapshot stores; written once the cut arrives (`writeCaptured`).
    @exclusivity(unchecked) var awaitingCut: (snapshot: RankSnapshot, job: SnapshotWriter.Job)?
    /// The round whose state is being captured, after its `captured` went and before the
    /// capture waits for the cut (`awaitingCut`), or nil.
    @exclusivity(unchecked) var roundCapturing: Epoch?
    /// The cut of `roundCapturing` when it arrived before the capture was done (the program's
    /// state expression called into the runtime, which read it): taken when the capture is.
    @exclusivity(unchecked) var earlyCut: (epoch: Epoch, covered: DeliveredSets)?
    /// The restored program state, handed to the program once (`takeRestoredState`).
    @exclusivity(unchecked) var restoredState: StateBytes?
    /// The bytes of the last captures, kept so that a later capture writes into the same
    /// storage once the snapshot writer is done with it (`StateWriter(recycling:)`): a state of
    /// 64 MiB is captured in 8 ms instead of 46 on a fresh allocation, which faults in every
    /// page (and takes several times as long again beside another rank's drain). A capture
    /// writes into the buffer of the capture `captureBuffers.count` before it. A rank holds one
    /// such copy of its state between captures; with a memory level, two: a round's drain to
    /// disk (`SnapshotWriter`) still reads its state when the next round captures, and then
    /// that round would get a fresh buffer every time. (With a memory level a rank captures
    /// into its copy in memory once it has a spare, and then lets go of these: `capturedIntoMemory`.)
    @exclusivity(unchecked) var captureBuffers: [[UInt8]] = [[]]
    /// Captures taken so far: the next one writes into `captureBuffers[captureCount % count]`.
    @exclusivity(unchecked) var captureCount = 0
    /// A capture buffer allocated and its pages faulted in on another thread, so that a capture
    /// whose round's commit waits for it does not fault in a state's worth of new pages: with a
    /// memory level, the second buffer, after the first commit (`warmNextCaptureBuffer`); and a
    /// restored rank's first, as soon as it starts.
    let warmedCaptureBuffer = WarmedBuffer()
    /// Whether a buffer was asked of `warmedCaptureBuffer` and not taken yet.
    @exclusivity(unchecked) var captureBufferWarming = false
    /// With a memory level: the round's copy in memory, opened for the capture under way to
    /// write the state straight into (`SnapshotWriter.openMemoryCapture`; `makeCaptureWriter`).
    @exclusivity(unchecked) var memoryCapture: MemoryLevel.CaptureTarget?
    /// Whether the last capture wrote its state straight into its copy in memory: the rank then
    /// needs no capture buffer (it lets go of them, and warms none).
    @exclusivity(unchecked) var capturedIntoMemory = false
    /// A resized job: the states of the ranks that wrote the line, from which the program
    /// builds this rank's (`Redistributable`); handed over once, like `restoredState`.
    @exclusivity(unchecked) var previousRanks: PreviousRanks?
    /// A resize probe (`ResizeProbe`): the answer file; any call before `restore` ends it.
    let probe: String?
    /// `lifeline replay`: the rank runs alone from its log, and this says when it ends.
    let replaySession: ReplaySession?
    /// Whether the program asked for its restored state (`Communicator.restore`).
    @exclusivity(unchecked) var restoreAsked = false
    /// Standalone (no supervisor): the last safe point passed, to check that steps increase.
    @exclusivity(unchecked) var standaloneStepPassed = -1
    @exclusivity(unchecked) var released = false
    @exclusivity(unchecked) var finished = false
    @exclusivity(unchecked) var rankFaults: [(index: Int, spec: FaultSpec)]
    /// The rank's log (with logging), nil without logging.
    let log: MessageLog?
    /// `--trace-deliveries`: what the rank sends, delivers and captures.
    let trace: DeliveryTrace?
    /// The page in which the host's ranks sum their log syncs as one union (absent: not on
    /// the supervisor's host, or a job without a log).
    let syncTime: SharedSyncTime?
    /// The logging mode.
    var logging: LoggingMode { launch?.logging ?? .none }
    /// What the logging mode (and the checkpoint scheme) ask of this rank: the one switch.
    var rules: RankLogging { machine.rules }
    /// The largest the log grew on disk.
    @exclusivity(unchecked) var logBytesPeak = 0
    /// Sender-based logging: the rank's side of the supervisor's event logger, which holds its
    /// determinants and logged values instead of a log on the disk.
    @exclusivity(unchecked) var eventLog: EventLogClient?
    /// The mirrors snapshots are written to: both, or one while the other has failed.
    @exclusivity(unchecked) var writeMirrors: StorageMirrors
    /// Whether the supervisor was told that the message log dropped a mirror.
    @exclusivity(unchecked) var logMirrorFailureReported = false
    var independent: Bool { launch?.variant == .independent }
    /// Optimistic logging: records not yet written to the log, and when the log was last flushed.
    @exclusivity(unchecked) var pendingLog: [[UInt8]] = []
    @exclusivity(unchecked) var pendingLogBytes = 0
    @exclusivity(unchecked) var lastLogFlush = 0.0

    init(
        launch: LaunchEnvironment?, control: ControlLink?, controlReader: Connection?, listener: Int32,
        store: MirroredStore?, snapshot: RankSnapshot?, log: MessageLog?, replay: ReplayQueue?,
        previous: PreviousRanks? = nil, probe: (path: String, size: Int)? = nil, replaySession: ReplaySession? = nil,
        restoredState: StateBytes? = nil, partners: PartnerDirectory? = nil, memoryPartners: PartnerDirectory? = nil
    ) {
        self.partners = partners
        self.memoryPartners = memoryPartners
        self.launch = launch
        self.isLaunched = launch != nil
        self.rank = launch?.rank ?? replaySession.map { RankID($0.plan.rank) } ?? RankID(0)
        self.rankCount = launch?.rankCount ?? replaySession?.plan.rankCount ?? probe?.size ?? 1
        self.probe = probe?.path
        self.replaySession = replaySession
        self.incarnation = launch?.incarnation ?? 0
        self.control = control
        self.controlReader = controlReader
        self.listener = listener
        self.acceptor = launch.flatMap { listener >= 0 ? HandshakeAcceptor(listener: listener, token: $0.token, takesDescriptors: true) : nil }
        self.store = store
        self.writeMirrors = launch?.writeMirrors ?? .both
        // The ranks' drains share the cores (on several hosts, as if every rank were on this
        // one: a share on the safe side).
        let drainChunksAtATime = Self.coreCount / max(1, self.rankCount)
        self.writer = store.flatMap { store in
            control.map {
                SnapshotWriter(store: store, control: $0,
                               chunkBytes: launch?.chunkBytes ?? ChunkedSnapshots.chunkBytesDefault,
                               level: launch?.compressionLevel ?? ChunkedSnapshots.levelDefault,
                               memory: launch?.memoryLevel, rank: launch?.rank.rawValue ?? 0,
                               drainChunksAtATime: drainChunksAtATime,
                               // A host cut off but not yet found lost delays a round's ACK by
                               // a second, not by a connection's full allowance.
                               memoryPartner: memoryPartners?.partnerFolder(
                                   role: .partnerMemory, connectSeconds: 1, replyFloorSeconds: 5),
                               hostCollection: partners.flatMap { Self.hostCollection(store: store, partners: $0, launch: launch) })
            }
        }
        if launch?.memoryLevel != nil { self.captureBuffers = [[], []] }
        self.heartbeatStep = HeartbeatStep.current
        self.heartbeatStep.value = snapshot?.step ?? previous?.step ?? -1
        self.peers = Array(repeating: nil, count: rankCount)
        let clockOrigin = launch?.clockOrigin ?? 0
        let (rank, rankCount) = (self.rank, self.rankCount)
        self.machine = RankMachine(
            settings: RankMachine.Settings(
                rank: rank, rankCount: rankCount, incarnation: incarnation, variant: launch?.variant ?? .coordinated,
                logging: launch?.logging ?? replaySession.flatMap { LoggingMode(rawValue: $0.plan.logging) } ?? .none,
                retainedBytesMax: launch?.retainedBytesMax ?? 0,
                intervalSeconds: launch?.intervalSeconds ?? 0),
            restored: snapshot.map {
                RankMachine.Restored(epoch: $0.epoch, step: $0.step, ledger: $0.ledger, dependencies: $0.dependencies)
            } ?? previous.map {
                // Rebuilt from the old ranks' states: its channels start empty, at the line's step.
                RankMachine.Restored(epoch: $0.epoch, step: $0.step, ledger: MessageLedger(rank: rank, rankCount: rankCount),
                                     dependencies: DependencyVector(), ownSnapshot: false)
            },
            deliverableEpoch: launch?.deliverableEpoch, replay: replay, now: monotonicSeconds() - clockOrigin,
            fingerprint: Self.fingerprint)
        self.restoredStep = snapshot?.step ?? previous?.step
        self.catchUpStep = launch?.catchUpStep
        self.restoredState = restoredState ?? snapshot.map { .array($0.programState) }
        self.previousRanks = previous
        self.rankFaults = launch?.faults ?? []
        self.log = log
        self.trace = launch.flatMap { DeliveryTrace(launch: $0) }
        self.syncTime = launch?.syncTimePath.flatMap { SharedSyncTime.open(path: $0) }
        // A restored rank's first capture writes over pages already there, as a second capture
        // does (`warmNextCaptureBuffer`): after a rollback every rank captures into a fresh
        // buffer at once, beside the drain of the line it restored: four ranks of 64 MiB took
        // 0.05–0.56 s to capture, and their first round after a rollback committed 0.16–0.74 s
        // after its first capture; with the buffer warmed, 0.01–0.03 s and 0.06–0.16 s.
        // Its first copy in memory, likewise, writes over a spare already mapped.
        // With a spare mapped, that copy is the capture itself (`openMemoryCapture`), and no
        // buffer is warmed.
        if launch != nil, let restored = self.restoredState, writer?.prepareSpare(stateBytes: restored.count) != true {
            warmCaptureBuffer(count: restored.count)
        }
    }

    /// Seconds since the job started, on the supervisor's clock.
    func jobClock() -> Double { monotonicSeconds() - (launch?.clockOrigin ?? 0) }

    // MARK: Joining

    /// Joins the job described by the environment (or runs alone without one). A probe of a
    /// lost host (`HostProbe`) ends here.
    static func join() throws -> RankRuntime {
        HostProbe.answerIfAsked()
        if let probe = ResizeProbe.current() {
            return RankRuntime(
                launch: nil, control: nil, controlReader: nil, listener: -1, store: nil, snapshot: nil, log: nil, replay: nil,
                probe: probe)
        }
        if let plan = try ReplaySession.currentPlan() { return try joinReplay(plan) }
        guard var launch = try LaunchEnvironment.current() else {
            return RankRuntime(
                launch: nil, control: nil, controlReader: nil, listener: -1, store: nil, snapshot: nil, log: nil, replay: nil)
        }
        signal(SIGPIPE, SIG_IGN)
        lifeline_tune_allocator()
        lifeline_set_parent_death_signal(SIGKILL)
        if launch.hosts == nil, getppid() != launch.supervisorPID { supervisorGone() }

        let listener = try Socket.listen(abstractName: launch.rankAddress(launch.rank))
        let (controlFD, hostListener) = try connectToSupervisor(launch)
        let control = ControlLink(fd: controlFD)
        if launch.hosts != nil { control.sayProgramExits() }
        let controlReader = Connection(fd: controlFD)
        var (plan, controlBeforeJoined) = try awaitStart(controlReader)
        var peerAddresses: [RankAddress?] = []
        controlBeforeJoined.removeAll { message in
            guard case .peerAddresses(let table) = message else { return false }
            peerAddresses = table
            return true
        }
        // Sender-based logging: a rank restarted to replay gets its records before START.
        var eventRecords: (first: UInt64?, records: [[UInt8]])?
        controlBeforeJoined.removeAll { message in
            guard case .eventRecords(let first, let records) = message else { return false }
            eventRecords = (first, records)
            return true
        }
        launch.apply(plan)
        // Beating before the folder in memory below is locked, which may wait, and before
        // what is reclaimed there, which may take a while to remove.
        startHeartbeat(control: control, launch: launch)
        reportStepOnCrash(control: control)
        if launch.hosts != nil, let memory = launch.memoryLevel {
            // On another host the rank makes the job's folder in that host's memory (a copy
            // that cannot be written there goes to disk alone, as one over `--memory-max`) and
            // holds its lock with the job's other ranks there, so that no other job takes it
            // for abandoned; it removes what earlier ranks of it left there but the copy it
            // restores (its START names it), and removes its copies when the job ends.
            let level = MemoryLevel(folder: memory.folder)
            let lock = level.holdRanksLock()
            if lock == nil {
                try? level.create()
                FileHandle.standardError.write(Data(
                    "lifeline: rank \(launch.rank.rawValue): cannot lock its folder in memory \(memory.folder): once no rank of the job there holds it, a job starting on the host may remove it, and a restore then reads disk\n".utf8))
            }
            level.removeCopies(of: launch.rank.rawValue, except: launch.restoreEpoch.rawValue)
            copiesRemovedAtExit.withLock { $0 = (memory.folder, launch.rank.rawValue, lock) }
            // No supervisor runs on this host to remove what jobs whose supervisor was killed
            // left in its memory: their ranks' locks are free (and stale), and a rank of a job
            // starting here removes them, and says so.
            if !launch.restarted, MemoryLevel.isMemoryFileSystem(memory.folder) {
                let root = (memory.folder as NSString).deletingLastPathComponent
                for (folder, bytes) in MemoryLevel.reclaimAbandoned(root: root, sparingJobOf: memory.folder) {
                    control.send(.memoryReclaimed(folder: folder, bytes: UInt64(bytes)))
                }
            }
            // Said once per host, as the supervisor says it of its own: by the host's lowest
            // rank, at the job's start.
            if !launch.restarted, let hosts = launch.hosts,
               peerAddresses.firstIndex(where: { $0?.host == hosts.host }).map({ $0 == launch.rank.rawValue }) ?? true,
               !MemoryLevel.isMemoryFileSystem(memory.folder) {
                let root = (memory.folder as NSString).deletingLastPathComponent
                FileHandle.standardError.write(Data("lifeline: on host \(hosts.host), \(MemoryLevel.notInMemory(root: root))\n".utf8))
            }
        }

        let store: MirroredStore
        // The message log's: with partner copies, its partner pinned to this host's partner now.
        let logStore: MirroredStore
        var partners: PartnerDirectory?
        do {
            let roots = [launch.storageRoots.a, launch.storageRoots.b]
            if StorageRoots.partnered(roots), let hosts = launch.hosts {
                let directory = PartnerDirectory(
                    host: hosts.host, rootB: roots[1], table: peerAddresses, rank: launch.rank, incarnation: launch.incarnation,
                    token: launch.token)
                store = try MirroredStore(rootA: StorageRoots.expand(roots[0], host: hosts.host), remoteB: directory.partnerFolder())
                    .withNodeLocal(.a, fills: true, partnerHeld: true)
                    .withFallback { directory.find($0) }
                // An optimistic log goes on without a partner that does not answer (`goesOnAlone`):
                // within a second to connect, 3 s to reply, so that a rank flushing its log to a
                // host cut off still answers a freeze (5 s at least) and is not rolled back.
                let optimistic = launch.logging == .optimistic
                logStore = try MirroredStore(
                    rootA: StorageRoots.expand(roots[0], host: hosts.host),
                    remoteB: directory.partnerFolder(pinned: true, connectSeconds: optimistic ? 1 : HostLink.handshakeSeconds,
                                                     replyFloorSeconds: optimistic ? 3 : 30))
                    .withNodeLocal(.a, fills: true, partnerHeld: true)
                partners = directory
            } else {
                store = try StorageRoots.open(roots, host: launch.hosts?.host ?? StorageRoots.localHost, fills: true)
                logStore = store
            }
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
        // With levels on several hosts, each level-1 copy also goes to the partner host's
        // memory, paired as partner copies on disk are (with or without `{partner}`).
        let memoryPartners = launch.memoryLevel == nil ? nil : launch.hosts.map { hosts in
            partners ?? PartnerDirectory(
                host: hosts.host, rootB: "", table: peerAddresses, rank: launch.rank, incarnation: launch.incarnation,
                token: launch.token)
        }
        if launch.restarted, let fault = launch.faults.first(where: { $0.spec == .killInPhase(launch.rank, .recovery) }) {
            fireFault(index: fault.index, control: control)
        }
        // While a mirror has failed, reading a snapshot does not try to repair it.
        let loaded: (snapshot: RankSnapshot, state: StateBytes)?
        do {
            loaded = try loadSnapshot(launch: launch, store: store.writing(only: launch.writeMirrors.mirrors)) {
                // A lost host's rank placed away from the host that holds its copy in memory
                // fetches it into its own host's memory first (a copy it cannot fetch is read
                // from disk).
                guard let memory = launch.memoryLevel, memory.readsCopy, let holder = memory.copyHost,
                      let memoryPartners else { return }
                let folder = memoryPartners.memoryFolder(on: holder)
                defer { folder.closeConnection() }
                let name = MemoryLevel.fileName(rank: launch.rank.rawValue, epoch: launch.restoreEpoch.rawValue)
                do {
                    let partBytes = SnapshotWriter.partnerPartBytes
                    try MemoryLevel(folder: memory.folder).adopt(
                        rank: launch.rank.rawValue, epoch: launch.restoreEpoch.rawValue, partBytes: partBytes
                    ) { offset throws(StorageError) in try folder.read(name, offset: offset, count: partBytes) }
                } catch {
                    FileHandle.standardError.write(Data(
                        "lifeline: rank \(launch.rank.rawValue) could not fetch its copy in memory from \(holder) (\(error)): it reads disk\n".utf8))
                }
            }
        } catch let error as LifelineError where launch.hosts != nil && launch.memoryLevel != nil {
            // The supervisor took this rank's copy for held on this host, unread: it learns
            // otherwise from the exit status, and decides again.
            stopForSupervisor(RuntimeExitStatus.restoreFailed, rank: launch.rank.rawValue, "\(error)", control: control)
        }
        let snapshot = loaded?.snapshot
        let previous = launch.plan.resize.map {
            PreviousRanks(size: $0.rankCount, step: $0.step, epoch: launch.restoreEpoch,
                          store: store.writing(only: launch.writeMirrors.mirrors), hasMessagesInFlight: $0.messagesInFlight)
        }
        var log: MessageLog?
        var replay: ReplayQueue?
        var eventLog: EventLogClient?
        if launch.logging == .senderBased {
            (eventLog, replay) = try openEventLog(
                launch: launch, records: eventRecords, logPosition: snapshot?.logPosition ?? 0)
        } else {
            do {
                (log, replay) = try openLog(
                    launch: launch, store: logStore, logPosition: snapshot?.logPosition ?? 0,
                    dependencies: snapshot?.dependencies ?? DependencyVector(),
                    partners: partners.map { ($0, snapshot?.incarnation ?? 0) })
            } catch let error as LifelineError where partners != nil && launch.replayLog {
                // The supervisor took the log for fit unread, or read less of it than this
                // copy holds: it learns so from the exit status, and rolls every rank back.
                stopForSupervisor(RuntimeExitStatus.logUnfit, rank: launch.rank.rawValue, "\(error)", control: control)
            }
        }
        let runtime = RankRuntime(
            launch: launch, control: control, controlReader: controlReader, listener: listener,
            store: store, snapshot: snapshot, log: log, replay: replay, previous: previous, restoredState: loaded?.state,
            partners: partners, memoryPartners: memoryPartners)
        runtime.eventLog = eventLog
        runtime.hostListener = hostListener
        if launch.memoryLevel?.drainRestored == true, let name = launch.restoreSnapshot, var restored = snapshot {
            // The line was held in memory alone and this rank's snapshot in it (of the line's
            // round, or of an older one it kept) was not on disk as far as the supervisor heard:
            // its copy in memory goes to disk, as the
            // predecessor's drain would have written it (the program state as one segment: the
            // copy in memory does not say which ranges are numeric). A snapshot read from disk
            // was drained: the supervisor learns so.
            if case .mapped(let copy)? = loaded?.state {
                restored.programState = Array(copy.state)
                runtime.writer?.drain(launch.restoreEpoch, name: name, segments: restored.encoded(metadata: Array(copy.metadata)),
                                      mirrors: launch.writeMirrors)
            } else {
                control.send(.drained(launch.restoreEpoch, storedBytes: 0, failure: nil))
            }
        }
        runtime.peerAddresses = peerAddresses
        runtime.pendingControl = controlBeforeJoined
        try runtime.connectToLowerRanks()
        try runtime.resendRetained()
        if launch.restarted, launch.logging != .none, replay?.remainingCount ?? 0 == 0 { runtime.finishReplay() }
        return runtime
    }

    /// Connects to the supervisor and proves the job's token: over the Unix socket on this
    /// host, or (a job on several hosts) over TCP by the mutual handshake, after starting the
    /// listener for peers on other hosts whose port the hello carries. A supervisor that cannot
    /// be reached is gone.
    static func connectToSupervisor(_ launch: LaunchEnvironment) throws -> (Int32, HostListener?) {
        guard let hosts = launch.hosts else {
            let fd = try Socket.connect(abstractName: launch.supervisorAddress)
            let handshake = Handshake(
                token: launch.token, role: .control, rank: launch.rank, incarnation: launch.incarnation, pid: getpid())
            guard Socket.sendAll(fd, handshake.frame()) else { supervisorGone() }
            return (fd, nil)
        }
        HostLink.userTimeoutMs.store(UInt32(clamping: hosts.linkTimeoutMs), ordering: .relaxed)
        // With partner hosts, this rank also keeps its host's folder for the partner's ranks,
        // and lends its host's own folder to the supervisor for reading. With levels, it keeps
        // the partner's ranks' copies in its host's memory, beside those of the host's own ranks.
        let roots = [launch.storageRoots.a, launch.storageRoots.b]
        let kept: FolderService?
        let lent: FolderService?
        let memory: FolderService?
        do {
            kept = StorageRoots.partnered(roots) ? try FolderService(root: StorageRoots.expand(roots[1], host: hosts.host)) : nil
            lent = StorageRoots.partnered(roots)
                ? try FolderService(root: StorageRoots.expand(roots[0], host: hosts.host), readOnly: true) : nil
            memory = try launch.memoryLevel.map { level throws(StorageError) in try FolderService(root: level.folder) }
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
        let listener = try HostListener(
            address: hosts.hostAddress,
            identity: HostIdentity(role: .peer, rank: launch.rank, incarnation: launch.incarnation), token: launch.token,
            storage: kept, lent: lent, memory: memory)
        let hello = HostHello(
            role: .control, rank: launch.rank, incarnation: launch.incarnation, pid: getpid(), port: listener.port,
            nonce: HostLink.nonce())
        guard let fd = try HostLink.connectAuthenticated(
            address: hosts.supervisorAddress, port: hosts.supervisorPort, hello: hello, expected: .supervisor,
            token: launch.token)
        else {
            FileHandle.standardError.write(Data(
                "lifeline: rank \(launch.rank.rawValue) cannot reach its supervisor at \(hosts.supervisorAddress):\(hosts.supervisorPort)\n".utf8))
            supervisorGone()
        }
        return (fd, listener)
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

    /// `lifeline replay`: the rank restored alone from its snapshot in the plan's line, with the
    /// records its log holds after the snapshot's position to replay, and nothing to talk to.
    static func joinReplay(_ plan: ReplayPlan) throws -> RankRuntime {
        guard plan.storageRoots.count == 2, let mode = LoggingMode(rawValue: plan.logging) else {
            throw LifelineError(.environment, "\(ReplayPlan.variable): the plan names no storage roots or logging mode")
        }
        let store: MirroredStore
        do {
            store = try StorageRoots.open(plan.storageRoots, fills: false, creating: false).readingOnly
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
        var snapshot: RankSnapshot?
        if let name = plan.snapshot {
            do {
                snapshot = try RankSnapshot.decode(
                    try ChunkedSnapshots(store: store).read(name), rank: RankID(plan.rank), rankCount: plan.rankCount,
                    epoch: Epoch(plan.snapshotEpoch))
            } catch let error as LifelineError {
                throw error
            } catch {
                throw LifelineError(.storage, "cannot read the snapshot to replay from: \(error)")
            }
        }
        let position = snapshot?.logPosition ?? 0
        let held: (first: UInt64, records: [[UInt8]], recordsLost: Bool)
        do {
            held = try MessageLog.readRecords(store: store, name: MessageLog.name(ofRank: plan.rank))
        } catch {
            throw LifelineError(.storage, "cannot read the message log: \(error)")
        }
        let records = try Self.records(held.records, first: held.first, from: position, of: "the message log")
        return RankRuntime(
            launch: nil, control: nil, controlReader: nil, listener: -1, store: nil, snapshot: snapshot, log: nil,
            replay: ReplayQueue(records, mode: mode),
            replaySession: ReplaySession(plan: plan, store: store, startStep: snapshot?.step ?? -1) { [ledger = snapshot?.ledger] in
                ledger?.nextSequence[$0].rawValue ?? 0
            })
    }

    /// Makes a crash (a Swift runtime error, an uncaught error, a bad access) tell the
    /// supervisor the last safe point first, so the failure is reported at its true step.
    static func reportStepOnCrash(control: ControlLink) {
        let sentinel: Int64 = 0x0123_4567_89AB_CDEF
        let frame = ControlMessage.heartbeat(step: Int(sentinel)).frame()
        let needle = withUnsafeBytes(of: sentinel.littleEndian) { Array($0) }
        guard frame.count >= needle.count,
              let offset = (0...(frame.count - needle.count)).first(where: { Array(frame[$0..<$0 + needle.count]) == needle })
        else { return }
        _ = frame.withUnsafeBufferPointer { lifeline_report_step_on_crash(control.fd, $0.baseAddress, frame.count, offset) }
    }

    static func startHeartbeat(control: ControlLink, launch: LaunchEnvironment) {
        let intervalMicroseconds = UInt32(max(10, launch.heartbeatMs) * 1000)
        // On another host the supervisor is no parent: a lost control connection says it.
        let supervisor = launch.hosts == nil ? launch.supervisorPID : 0
        let step = HeartbeatStep.current
        Thread.detachNewThread {
            var touched = monotonicSeconds()
            while true {
                usleep(intervalMicroseconds)
                if supervisor != 0, getppid() != supervisor { supervisorGone() }
                control.send(.heartbeat(step: step.value))
                // The folder in memory this rank holds on another host: its job lives.
                if monotonicSeconds() - touched >= MemoryLevel.ranksLockTouchSeconds {
                    touched = monotonicSeconds()
                    copiesRemovedAtExit.withLock { if let lock = $0?.lock { MemoryLevel.touchRanksLock(lock) } }
                }
            }
        }
    }

    /// The snapshot the plan names and its program state: from the host's memory when the job
    /// holds a memory level and the copy there is intact (no disk read; the state is read in
    /// place, mapped, not copied), from the mirrors otherwise. Records how long it took and
    /// where it came from (`restoreTiming`), which the rank reports when it finishes.
    /// `fetch`: brings a copy held on another host into this host's memory first (counted in
    /// the restore's time).
    static func loadSnapshot(
        launch: LaunchEnvironment, store: MirroredStore, fetch: () -> Void = {}
    ) throws -> (snapshot: RankSnapshot, state: StateBytes)? {
        guard launch.restoreEpoch > .start, let name = launch.restoreSnapshot else { return nil }
        let started = monotonicSeconds()
        // On several hosts a copy the supervisor does not hold is another run's: not read.
        let memory = launch.memoryLevel.flatMap { $0.readsCopy ? MemoryLevel(folder: $0.folder) : nil }
        if memory != nil { fetch() }
        if let copy = try? memory?.map(rank: launch.rank.rawValue, epoch: launch.restoreEpoch.rawValue) {
            let snapshot = try RankSnapshot.decode(
                metadata: copy.metadata, stateCount: copy.state.count, rank: launch.rank, rankCount: launch.rankCount,
                epoch: launch.restoreEpoch)
            RestoreTiming.last.withLock { $0 = (monotonicSeconds() - started, 2) }
            return (snapshot, .mapped(copy))
        }
        let bytes: [UInt8]
        do {
            bytes = try ChunkedSnapshots(store: store).read(name)
        } catch {
            throw LifelineError(.storage, "cannot read the snapshot to restore: \(error)")
        }
        var snapshot = try RankSnapshot.decode(consume bytes, rank: launch.rank, rankCount: launch.rankCount, epoch: launch.restoreEpoch)
        let state = StateBytes.array(snapshot.programState)
        snapshot.programState = []
        RestoreTiming.last.withLock { $0 = (monotonicSeconds() - started, 1) }
        return (snapshot, state)
    }

    /// How long this rank's restore took and where it read its snapshot (`RestoreTiming`).
    var restoreTiming: (seconds: Double, source: UInt8) { RestoreTiming.last.withLock { $0 } }

    /// The log's segment size: at most a sixteenth of the log maximum, so the records a trim
    /// leaves behind (those of a segment not yet wholly covered) stay far below the quarter
    /// of the maximum at which the rank asks for a checkpoint.
    static func segmentBytes(logBytesMax: Int) -> Int {
        guard logBytesMax > 0 else { return MessageLog.segmentBytesDefault }
        return min(MessageLog.segmentBytesDefault, max(4 << 10, logBytesMax / 16))
    }

    /// Sender-based logging: the rank's side of the event logger, numbering from its entry's
    /// position, and after a restart to replay the records the logger held after it (from
    /// `eventRecords`, which came before START): those are replayed before anything live.
    /// A rank on the supervisor's host has a record stable once its frame is in the control
    /// socket (`EventLogClient.stableOnWrite`): its sends do not wait. A rank on another host
    /// (`--launcher ssh`) loses what is in flight with its host, so its sends wait for the
    /// logger's acknowledgement (the no-orphan rule).
    static func openEventLog(
        launch: LaunchEnvironment, records held: (first: UInt64?, records: [[UInt8]])?, logPosition: UInt64
    ) throws -> (EventLogClient, ReplayQueue?) {
        let stable = launch.hosts == nil
        guard launch.restarted, launch.replayLog else { return (EventLogClient(position: logPosition, stableOnWrite: stable), nil) }
        guard let held, let first = held.first else {
            // Nothing logged since the rank's last relaunch: it replays nothing.
            return (EventLogClient(position: logPosition, stableOnWrite: stable), ReplayQueue([], mode: launch.logging))
        }
        let records = try Self.records(held.records, first: first, from: logPosition, of: "the event logger")
        return (EventLogClient(position: first + UInt64(held.records.count), stableOnWrite: stable),
                ReplayQueue(records, mode: launch.logging))
    }

    /// The records `held` (numbered from `first`) from `position` on, decoded, to replay;
    /// `source` names where they were kept in the error when they do not reach back to
    /// `position` or do not decode.
    static func records(_ held: [[UInt8]], first: UInt64, from position: UInt64, of source: String) throws -> [LogRecord] {
        let end = first + UInt64(held.count)
        guard position >= first, position <= end else {
            throw LifelineError(.storage,
                "\(source) holds records \(first)..<\(end), not from the checkpoint's position \(position): they cannot be replayed")
        }
        return try held[Int(position - first)...].map { bytes in
            do {
                return try LogRecord.decode(bytes)
            } catch {
                throw LifelineError(.storage, "a record of \(source) does not decode: \(error)")
            }
        }
    }

    /// Opens the rank's log (with logging) and, after a restart, the records it logged after
    /// its checkpoint: those are replayed before anything live. With partner copies
    /// (`partners`: where other hosts keep copies, and the incarnation that took the checkpoint),
    /// a rank to replay whose host's folder holds no copy of its log as new as its checkpoint (it
    /// moved off a lost host) first copies the newest one another host kept.
    static func openLog(
        launch: LaunchEnvironment, store: MirroredStore, logPosition: UInt64, dependencies: DependencyVector,
        partners: (directory: PartnerDirectory, checkpointIncarnation: UInt32)? = nil
    ) throws -> (MessageLog?, ReplayQueue?) {
        guard launch.logging != .none else { return (nil, nil) }
        let name = MessageLog.name(ofRank: launch.rank.rawValue)
        if let partners, launch.restarted, launch.replayLog,
           MessageLog.newestIncarnation(root: store.root(.a), name: name).map({ $0 < partners.checkpointIncarnation }) ?? true {
            // Every process claims its log with a segment of its own: a copy without one of the
            // checkpoint's incarnation (or a later one) is older than the checkpoint.
            guard let files = partners.directory.findFolder(MessageLog.folder + "/" + name, rank: MessageLog.newness(ofFiles:)),
                  let newest = MessageLog.newness(ofFiles: files.map(\.name)).first, newest >= partners.checkpointIncarnation else {
                throw LifelineError(.storage,
                    "no copy of the message log as new as the checkpoint (incarnation \(partners.checkpointIncarnation)) "
                    + "is on this host or on a host that answered: it cannot be replayed")
            }
            do {
                try MessageLog.adopt(files, root: store.root(.a), name: name)
            } catch {
                throw LifelineError(.storage, "cannot copy the message log kept on another host: \(error)")
            }
        }
        let log: MessageLog
        do {
            log = try MessageLog(store: store.writing(only: launch.writeMirrors.mirrors),
                                 name: name, incarnation: launch.incarnation,
                                 segmentBytesMax: segmentBytes(logBytesMax: launch.logBytesMax))
        } catch {
            throw LifelineError(.storage, "cannot open the message log: \(error)")
        }
        // An optimistic log whose partner fails goes on on this host: its orphan search reads
        // whatever copy is found (a partner's stale one is a prefix of the log), and a rank
        // stopped for it would stop the ranks of every host whose partner is lost.
        log.goesOnAlone = launch.logging == .optimistic
        guard launch.restarted, launch.plan.resize == nil else {
            // A new job starts with an empty log, and so does a resized one: the old ranks'
            // records describe channels that are gone (left there, a replay would compare this
            // rank's sends with deliveries of ranks that no longer exist).
            do {
                try log.trim(before: log.nextIndex)
            } catch {
                FileHandle.standardError.write(Data(
                    "lifeline: \(launch.rank) could not empty its message log for a new start (\(error)); `lifeline replay` may compare against its older records\n".utf8))
            }
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
        guard launch.logging != .pessimistic || log.nextIndex >= logPosition else {
            // Every delivery since the checkpoint was logged before it was made: a log ending
            // before the checkpoint lost records (the supervisor checks this where it can read
            // the log; with partner copies it cannot).
            throw LifelineError(.storage,
                "the message log ends at record \(log.nextIndex), before the checkpoint's \(logPosition): it cannot be replayed")
        }
        if launch.logging == .optimistic, log.nextIndex < logPosition {
            // A copy that ends before the checkpoint (a partner's, left behind when the log
            // went on on its host alone): what it lacks, the checkpoint holds. The log goes on
            // from the checkpoint's position, so that its records keep the numbers that the
            // positions of later checkpoints count.
            do {
                try log.resume(at: logPosition)
            } catch {
                throw LifelineError(.storage, "cannot start the message log at the checkpoint: \(error)")
            }
        }
        var records = try Self.records(log.records, first: log.firstIndex, from: min(logPosition, log.nextIndex),
                                  of: "the message log")
        if launch.logging == .optimistic, let limit = launch.replayLimit {
            // With partner copies the supervisor read how far the log recovers this rank on the
            // host that keeps its copy, and found the orphans by it: the copy opened here must
            // hold as much, or the orphans found would be too few.
            let held = dependencies[launch.rank.rawValue] + UInt64(records.count)
            if partners != nil, let last = limit.recoverable[launch.rank.rawValue], held < last {
                throw LifelineError(.storage,
                    "the message log recovers state interval \(held), short of the \(last) its copy elsewhere recovers: it cannot be replayed")
            }
            // An orphan replays only what does not depend on the failed rank's lost states;
            // the rest of its log describes an execution that is gone.
            let length = OptimisticLogging.replayLength(
                records, start: dependencies, rank: launch.rank, rankCount: launch.rankCount, limit: limit)
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
            guard let connection = try connectToPeer(RankID(lower), launch: launch) else { continue }
            peers[lower] = connection
        }
    }

    /// Connects to `peer` and proves the token: over its Unix socket when it runs on this host
    /// (passing the shared-memory rings the stream then runs through, unless `--transport
    /// sockets`), over TCP by the mutual handshake when it runs on another (`peerAddresses`), to
    /// the incarnation named there or a newer one. Nil when it cannot be reached: it died since.
    func connectToPeer(_ peer: RankID, launch: LaunchEnvironment) throws -> Connection? {
        if let hosts = launch.hosts, peer.rawValue < peerAddresses.count, let address = peerAddresses[peer.rawValue],
           address.host != hosts.host {
            let hello = HostHello(
                role: .peer, rank: rank, incarnation: incarnation, pid: getpid(), port: 0, nonce: HostLink.nonce())
            return try HostLink.connectAuthenticated(
                address: address.address, port: address.port, hello: hello,
                expected: HostIdentity(role: .peer, rank: peer, incarnation: address.incarnation),
                acceptIncarnationAbove: true, token: launch.token).map { Connection(fd: $0) }
        }
        guard let fd = try Socket.connectUnlessRefused(abstractName: launch.rankAddress(peer)) else { return nil }
        let handshake = Handshake(token: launch.token, role: .peer, rank: rank, incarnation: incarnation, pid: getpid())
        // The rings go with the handshake's first byte: the peer has them before any data can
        // follow. Where none can be made, the stream stays on the socket.
        let rings = launch.ringBytes > 0 ? SharedRings.create(capacity: launch.ringBytes) : nil
        guard Socket.sendAll(fd, handshake.frame(), passing: rings?.descriptor) else {
            if let rings { close(rings.descriptor) }
            close(fd)
            return nil
        }
        if let rings { close(rings.descriptor) }
        return Connection(fd: fd, rings: rings?.rings, roomSpinSeconds: roomSpinSeconds)
    }

    /// Sends every retained message again; receivers drop what they had already delivered.
    func resendRetained() throws {
        for message in machine.retainedOutgoing {
            trace?.sent(message.header, to: message.destination)
            try deliverOrTransmit(message)
        }
    }

    /// The writer the program's next capture writes into: the round's copy in memory opened
    /// for it (`memoryCapture`), or a capture buffer (`takeCaptureBuffer`).
    func makeCaptureWriter() -> StateWriter {
        if let target = memoryCapture, let base = target.state.baseAddress {
            return StateWriter(into: ExternalBytes(base: base, capacity: target.state.count))
        }
        return StateWriter(recycling: takeCaptureBuffer())
    }

    /// Keeps the storage of the capture `writer` took (`keepCaptureBuffer`), unless the state
    /// went straight into memory that is not the rank's.
    func keepCaptureWriter(_ writer: StateWriter) {
        guard !writer.writesExternally else { return }
        keepCaptureBuffer(writer.array)
    }

    /// The last capture went straight into its copy in memory, as later ones will: the capture
    /// buffers, a state's worth of memory each, go.
    func letGoOfCaptureBuffers() {
        capturedIntoMemory = true
        captureBuffers = captureBuffers.map { _ in [] }
        if captureBufferWarming, warmedCaptureBuffer.take() != nil { captureBufferWarming = false }
    }

    /// The buffer for the next capture to write into; the runtime lets go of it (so that it is
    /// the writer's alone once the snapshot writer is done with it) until `keepCaptureBuffer`.
    func takeCaptureBuffer() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &captureBuffers[captureCount % captureBuffers.count])
        if taken.capacity == 0, let warmed = warmedCaptureBuffer.take() {
            captureBufferWarming = false
            return warmed
        }
        return taken
    }

    /// Keeps the bytes of the capture just taken for a later capture (`captureBuffers`).
    func keepCaptureBuffer(_ bytes: [UInt8]) {
        captureBuffers[captureCount % captureBuffers.count] = bytes
        captureCount += 1
    }

    /// A round committed: with two capture buffers of which the next is still to be made, it
    /// is made on another thread now (`warmedCaptureBuffer`), the size of the last capture, so
    /// that the next round's capture writes over pages already there: 64 MiB of new pages cost
    /// 23 ms of a core here against 2 ms to write over, and four ranks' second round committed
    /// up to 0.8 s after its first capture instead of 0.04–0.07 s. Not at the capture itself:
    /// then it would take the cores from the round's own copies.
    func warmNextCaptureBuffer() {
        guard !capturedIntoMemory, captureBuffers.count > 1, captureBuffers[captureCount % captureBuffers.count].capacity == 0 else { return }
        warmCaptureBuffer(count: captureBuffers.map(\.count).max() ?? 0)
    }

    /// Makes a capture buffer of `count` bytes on another thread (`warmedCaptureBuffer`), for
    /// the next capture that has none to take it; one at a time.
    func warmCaptureBuffer(count: Int) {
        guard count > 0, !captureBufferWarming else { return }
        captureBufferWarming = true
        let warmed = warmedCaptureBuffer
        DispatchQueue.global(qos: .utility).async { warmed.fill(count: count) }
    }

    /// Hands the restored program state over, once.
    func takeRestoredState() throws -> StateBytes? {
        defer { restoredState = nil }
        restoreAsked = true
        return restoredState
    }

    /// Hands the old ranks' states of a resized job over, once (nil: the job was not resized,
    /// or they were taken).
    func takePreviousRanks() -> PreviousRanks? {
        defer { previousRanks = nil }
        restoreAsked = true
        return previousRanks
    }

    /// In a resize probe, a call of the runtime before `restore` ends the probe: the program
    /// cannot say whether it can be resized, and must not start computing alone.
    func checkProbe(_ call: String) {
        if let probe { ResizeProbe.answer(.calledFirst(call), path: probe) }
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

    /// The step (also noted for the crash report, `reportStepOnCrash`).
    var value: Int {
        get { storage.load(ordering: .relaxed) }
        set {
            storage.store(newValue, ordering: .relaxed)
            lifeline_note_step(Int64(newValue))
        }
    }
}

/// A buffer made on another thread for the program's thread to take (`RankRuntime.warmedCaptureBuffer`).
final class WarmedBuffer: Sendable {
    private let slot = Mutex<[UInt8]?>(nil)

    /// Makes a buffer of `count` bytes, every page written (so faulted in), and leaves it to `take`.
    func fill(count: Int) {
        let buffer = HugePages.zeroed(count: count)
        slot.withLock { $0 = buffer }
    }

    /// The buffer `fill` made, once; nil before it is done.
    func take() -> [UInt8]? {
        slot.withLock { $0.take() }
    }
}

extension RankRuntime {
    /// With partner hosts: this host's folder and the folder it keeps for its partner are
    /// collected against the manifest the supervisor lends (no folder is shared).
    static func hostCollection(
        store: MirroredStore, partners: PartnerDirectory, launch: LaunchEnvironment?
    ) -> SnapshotWriter.HostCollection? {
        guard let hosts = launch?.hosts, let own = store.confinedToNodeLocal,
              let lent = try? MirroredStore(rootA: store.rootA, remoteB: partners.supervisorFolder(
                  address: hosts.supervisorAddress, port: hosts.supervisorPort)).withNodeLocal(.a, fills: false, partnerHeld: true),
              let manifest = lent.sharedReadOnly,
              let kept = try? MirroredStore(rootA: partners.keptRoot, remoteB: partners.partnerFolder())
                  .withNodeLocal(.a, fills: false, partnerHeld: true).confinedToNodeLocal
        else { return nil }
        return SnapshotWriter.HostCollection(manifest: manifest, folders: [own, kept])
    }
}
