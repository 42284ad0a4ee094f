#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// The supervisor of one job: launches the ranks, coordinates checkpoints (it is the
/// coordinator of the protocol), detects failures, and drives recovery by global rollback to
/// the newest committed recovery line. One thread runs it: a poll loop over the listener, the
/// ranks' control connections and the exit pipe, with time passed to the state machines.
final class Supervisor {
    /// One rank's process and control connection (what it is to the protocol is in
    /// `machine.ranks`).
    struct Slot {
        var pid: pid_t = 0
        var connection: Connection?
    }

    let configuration: JobConfiguration
    let faults: [FaultSpec]
    let jobID: String
    let token: String
    /// The store on both mirrors, as configured.
    let bothMirrors: MirroredStore
    /// The store this job writes now: `bothMirrors`, or one mirror alone while the other has
    /// failed (see `Supervisor+Mirrors`; the machine's `writeMirrors`, which START plans name).
    var store: MirroredStore
    /// The manifest on `store`.
    var manifests: ManifestStore
    /// The mirror that failed, why and when (job clock); nil while both take writes.
    var failedMirror: (mirror: Mirror, reason: String, since: Double)? {
        machine.mirrors.failed.map { ($0.mirror.mirrors[0], $0.reason, $0.since) }
    }
    /// `fail:mirror=` faults that fired: the marker to remove from which root, and when.
    var mirrorFaults: [(index: Int, mirror: Mirror, until: Double?)] = []
    var manifest: Manifest
    let events: EventLog
    let launcher: RankLauncher
    let output: OutputCommitter
    /// The ranks' standard error, forwarded live (nil with `--quiet-ranks`).
    let rankErrors: RankErrorForwarder?
    let listener: Int32
    /// The ranks' new control connections, until their handshakes are in.
    let acceptor: HandshakeAcceptor
    /// A job on several hosts (`--launcher ssh`): placement, TCP listener, addresses; nil on one.
    let hostJob: HostJob?
    let addressBase: String
    let clockStart: Double
    let clockOffset: Double

    /// Every decision: launches and starts, failures and recoveries, the checkpoint rounds.
    var machine: SupervisorMachine
    /// The checkpoint rounds (the machine's coordinator).
    var coordinator: CheckpointCoordinator {
        get { machine.coordinator }
        _modify { yield &machine.coordinator }
    }
    var slots: [Slot]
    /// Failures so far in this supervisor run.
    var failures: Int { machine.failures }
    /// Recoveries completed.
    var recoveries: Int { machine.recoveries }
    var finishedJob = false
    /// When the injected faults fire, and which did.
    var faultSchedule: FaultSchedule
    var lastProgressAt = 0.0
    var lastProgressStep = 0
    var lastCommitBytes: UInt64 = 0
    /// When the supervisor last let time act (ticks, heartbeats, stalls, progress).
    var lastTimeActed = 0.0
    /// How long turns that bring only sender-based records may put off letting time act.
    static let recordsBatchSeconds = 0.005
    /// The committed line the running ranks descend from: the one they were all restored from,
    /// or the last one committed since. A rank that keeps its checkpoint (minimal) keeps its
    /// entry of this line.
    var lineInForce: CommittedLine?
    /// Independent checkpointing: the dependency records, the checkpoint-only line and what
    /// follows from them (the manifest keeps their files).
    var checkpoints = IndependentCheckpoints(rankCount: 0)
    /// The newest intact line a failure's log check found, for the launch that follows it, and
    /// the ranks whose snapshots that check read (nil: every rank's): a launch of other ranks
    /// reads the line again.
    var intactForLaunch: (line: CommittedLine?, problems: [String], ranks: Set<Int>?)?
    /// When the open round was requested, to measure how long a checkpoint takes.
    var roundStartedAt: Double?
    /// When each rank's `captured` arrived for a round: with each capture's own duration (in the
    /// rank's ACK), the commit says how long the round took from the first capture's start.
    var captureArrivals: (epoch: Epoch, at: [Int: Double])?
    /// Seconds the last committed round took, from request to commit.
    var lastRoundSeconds = 0.0
    /// SIGINT/SIGTERM arrive as bytes on this pipe.
    let signalFD: Int32
    /// Set when the job stopped on request (or to continue on fewer ranks); `run` returns it.
    var stoppedOutcome: JobOutcome?
    /// What a lost host left to do, performed once the rank being judged is put aside.
    var hostLossStop: HostLossStop?
    /// Under `--on-host-loss shrink`: whether the program's `Redistributable` state takes
    /// messages in flight, as it answered at the start (nil: it was not asked, or could not be).
    var shrinkTakesMessages: Bool?
    /// Processes whose exit was read while ranks may still name them (under mpirun one process
    /// holds every rank of a launch): such a pid is never signalled again, since it may name
    /// another process by now. Entries are dropped when a launch gets that pid.
    var endedLaunches: Set<pid_t> = []
    /// `--levels memory,disk`: the job's level-1 folder on this host (nil: disk alone, or ranks
    /// on other hosts, each with a folder of its own: `memoryCopies`). This supervisor made it
    /// empty: copies an earlier supervisor committed are not trusted.
    let memoryLevel: MemoryLevel?
    /// The descriptor by which this supervisor holds `memoryLevel`'s owner lock while it lives
    /// (`MemoryLevel.holdOwnerLock`): a later job on this host removes a folder whose lock it
    /// can take (`reclaimAbandonedMemory`).
    let memoryOwnerLock: Int32?
    /// Whether the job holds a memory level (`--levels memory,disk`), on this host or on the
    /// ranks' hosts.
    let holdsLevels: Bool
    /// `--levels memory,disk` with ranks on other hosts: which host's memory holds each rank's
    /// copies, as their acknowledgements said, less those of hosts lost since.
    var memoryCopies = MemoryCopies()
    /// With partner copies (`{partner}` in `--storage`): the ranks that exited
    /// `RuntimeExitStatus.logUnfit` (their log could not be replayed) since their log last restarted
    /// at a global rollback.
    var logsUnfit: Set<Int> = []
    /// The ranks whose process was launched before the last host loss: one that stops because
    /// its log's partner did not take a write (`RuntimeExitStatus.logCopyFailed`) stopped because of
    /// that loss, which was counted, and does not count toward `--max-restarts` again (a rank
    /// launched since counts: a partner that keeps failing must not relaunch it for ever).
    var launchedBeforeHostLoss: Set<Int> = []
    /// With partner copies and optimistic logging: per rank, per round of a snapshot a line
    /// may still hold, the state intervals its checkpoint depends on, as its acknowledgement
    /// said (the snapshot is on the hosts; the orphan search needs them).
    var acknowledgedDependencies: [Int: [UInt64: DependencyVector]] = [:]
    /// Per rank, the incarnation of its last launch (the newest any process knows it by): the
    /// machine's, kept here for the log search (`keptLog`), which runs while the machine decides
    /// and so cannot read it.
    var launchedIncarnations: [Int: UInt32] = [:]
    /// Per rank, the exit status its runtime said it ends its process with (`stopping`), since
    /// its last launch: on another host, statuses 4, 5 and 6 are the runtime's only when said.
    var runtimeStops: [Int: Int32] = [:]
    /// Per rank, the status its program said it exits with (`exiting`), since its last launch:
    /// on another host, status 3 is a rank that lost its link unless the program said it.
    var programExits: [Int: Int32] = [:]
    /// With a message log and every rank on this host: the page where the ranks sum their log
    /// syncs as one union (`log_sync_union_s` of `job_finished`).
    let syncTime: SharedSyncTime?
    /// A line committed in memory alone whose manifest is still to be written to disk
    /// (`recordLineHeldInMemory`), or nil.
    var lineRecordOwed: Epoch?
    /// The lines of the manifest last written to disk (or loaded from it). The one in memory
    /// differs while a line committed in memory alone waits for its record, or its write
    /// failed; collection keeps what either names, so a file the disk's manifest still names is
    /// never deleted on the word of one that never reached the disk.
    var durableLines: [CommittedLine]
    /// Whether the last collection found the chunk lock held by a write (`collectGarbage`).
    var chunkCollectionOwed = false
    /// When the last collection ran (job clock).
    var lastCollectionAt = 0.0
    /// How often an owed chunk collection is tried again, in seconds.
    static let owedCollectionPeriodSeconds = 0.5
    /// `--levels memory,disk`: what is on disk of each round, and the lines the manifest keeps
    /// for their drains.
    var drains: DrainTracker
    /// `--levels memory,disk`: the rounds up to this one were started by an earlier supervisor
    /// of the job; their copies in memory are not trusted (nor kept: the folder starts empty).
    let memoryTrustedAfter: UInt64

    /// `startedEpoch`: the newest round of which the store holds snapshots (an earlier
    /// supervisor's round that never committed): this one numbers its rounds after it.
    init(configuration: JobConfiguration, faults: [FaultSpec], manifest: Manifest, store: MirroredStore,
         incarnation: UInt32, clockOffset: Double, startedEpoch: UInt64 = 0) throws {
        self.configuration = configuration
        self.faults = faults
        self.jobID = manifest.jobID
        self.token = Self.randomHex(bytes: 16)
        self.bothMirrors = store
        self.store = store
        self.manifests = ManifestStore(store: store)
        self.manifest = manifest
        self.durableLines = manifest.committed
        self.clockStart = monotonicSeconds()
        self.clockOffset = clockOffset
        let clockStart = self.clockStart
        self.events = try EventLog(path: configuration.runDirectory + "/events.jsonl") {
            monotonicSeconds() - clockStart + clockOffset
        }
        self.launcher = try RankLauncher()
        self.output = OutputCommitter(directory: configuration.runDirectory + "/output", rankCount: configuration.rankCount)
        self.rankErrors = configuration.quietRanks == true
            ? nil : RankErrorForwarder(directory: configuration.runDirectory + "/output", rankCount: configuration.rankCount)
        self.addressBase = "lifeline.\(Self.randomHex(bytes: 6))"
        self.listener = try Socket.listen(abstractName: "\(addressBase).s")
        self.acceptor = HandshakeAcceptor(listener: listener, token: token)
        let token = self.token
        self.hostJob = configuration.launchesOnHosts ? try HostJob(configuration: configuration, token: token) : nil
        self.signalFD = try Self.routeStopSignals()
        // Independent checkpoints are the ranks' own: the coordinator never starts a round.
        let coordinator = CheckpointCoordinator(
            rankCount: configuration.rankCount,
            intervalSeconds: configuration.checkpointing == .independent ? 1e12 : configuration.intervalSeconds,
            committed: Epoch(manifest.newestLine?.epoch ?? 0), started: Epoch(startedEpoch), now: clockOffset)
        self.machine = SupervisorMachine(
            settings: SupervisorMachine.Settings(
                rankCount: configuration.rankCount, logging: LoggingMode(rawValue: configuration.logging.rawValue) ?? .none,
                independent: configuration.checkpointing == .independent, maxRestarts: configuration.maxRestarts,
                heartbeatTimeoutSeconds: Double(configuration.heartbeatTimeoutMs) / 1000,
                joinTimeoutSeconds: configuration.joinTimeoutSeconds ?? JobConfiguration.joinTimeoutSecondsDefault,
                stopTimeoutSeconds: configuration.stopTimeoutSeconds ?? JobConfiguration.stopTimeoutSecondsDefault,
                walltimeSeconds: configuration.walltimeSeconds,
                mirrorsHoldManifestOnly: StorageRoots.partnered(configuration.storageRoots)),
            coordinator: coordinator, incarnation: incarnation,
            stalls: StallDetector(
                rankCount: configuration.rankCount,
                thresholdSecondsMin: configuration.stallSeconds ?? JobConfiguration.stallSecondsDefault, now: clockOffset))
        self.slots = Array(repeating: Slot(), count: configuration.rankCount)
        self.faultSchedule = FaultSchedule(faults)
        self.memoryTrustedAfter = max(startedEpoch, manifest.newestLine?.epoch ?? 0)
        self.drains = DrainTracker(rankCount: configuration.rankCount, drainEvery: configuration.drainEvery ?? 1)
        self.holdsLevels = configuration.memoryLevel == true
        if configuration.memoryLevel == true, !configuration.launchesOnHosts {
            let root = configuration.memoryRoot ?? JobConfiguration.memoryRootDefault
            let level = MemoryLevel(folder: MemoryLevel.folder(root: root, jobID: manifest.jobID))
            let taken: MemoryLevel.TakeOver
            do {
                taken = try level.takeOver()
            } catch {
                throw LifelineError(.configuration, "--memory-root \(root): cannot make the job's level-1 folder: \(error)")
            }
            guard case .taken(let lock) = taken else {
                throw LifelineError(.configuration, "\(level.folder) is locked by another lifeline process (one removing "
                    + "the folder a killed job left, or one still running this job): wait for it to end, then start again")
            }
            self.memoryOwnerLock = lock
            self.memoryLevel = level
        } else {
            self.memoryLevel = nil
            self.memoryOwnerLock = nil
        }
        // Sender-based logging keeps no log on the ranks (its determinants go to the event
        // logger): there is nothing to sum, and a 0 would read as a free log.
        self.syncTime = [.pessimistic, .optimistic].contains(configuration.logging) && !configuration.launchesOnHosts
            ? SharedSyncTime.create(path: configuration.runDirectory + "/log-sync-time") : nil
        if configuration.checkpointing == .independent { loadIndependentRecords() }
    }

    /// The newest committed line whose snapshots all read, from memory (level 1) or disk, with
    /// the problems met on the way (`ManifestStore.newestIntactLine`).
    func newestIntactLine(ranks: Set<Int>? = nil) -> (line: CommittedLine?, problems: [String]) {
        let partnered = StorageRoots.partnered(configuration.storageRoots)
        if holdsLevels, hostJob != nil {
            // Copies on other hosts are taken unread while their host lives, where the rank runs
            // (and, with partner copies, those on disk too).
            return manifests.newestIntactLine(manifest, memorySince: memoryTrustedAfter, ranks: ranks, diskUnread: partnered) {
                rank, round in self.holdsCopy(rank: rank, round: round)
            }
        }
        if partnered { return (Self.newestUnreadLine(manifest), []) }
        return manifests.newestIntactLine(manifest, memory: memoryLevel, memorySince: memoryTrustedAfter, ranks: ranks)
    }

    /// With partner hosts, the newest line on disk, taken unread: its snapshots are on the
    /// ranks' hosts, which this process cannot read, and each was read back intact on its
    /// writer's host and on its partner before the rank acknowledged it. A rank that finds
    /// neither copy (both hosts lost at once) fails to restore.
    static func newestUnreadLine(_ manifest: Manifest) -> CommittedLine? {
        manifest.committed.last(where: \.isOnDisk)
    }

    /// Seconds since the job started (continuing across `resume`).
    var now: Double { monotonicSeconds() - clockStart + clockOffset }

    /// Runs the job to its end. Returns the outcome or throws when it cannot finish.
    func run() throws -> JobOutcome {
        signal(SIGPIPE, SIG_IGN)
        // With partner hosts the supervisor's two folders hold the manifest, on its machine by
        // design (its loss ends the job, which resumes from there).
        if store.sameDevice, !StorageRoots.partnered(configuration.storageRoots) {
            warn("both storage roots are on the same device: mirroring protects against damaged files, not a lost disk")
        }
        events.record("job_start", [
            "ranks": .int(configuration.rankCount), "program": .string(configuration.program),
            "checkpoint": .string(configuration.checkpointing.rawValue),
            "interval_s": .double(configuration.intervalSeconds), "incarnation": .int(Int(machine.nextIncarnation)),
            "transport": .string((configuration.transport ?? .sharedMemory).rawValue),
        ])
        if hostJob?.mpirun == true {
            warn("under --launcher mpirun a failure restarts every rank from the last committed line (mpirun takes the launch down with one rank)")
        }
        if let hostJob {
            events.record("listening", [
                "address": .string(hostJob.address), "port": .int(Int(hostJob.port)),
                "hosts": .string(Array(Set(hostJob.rankHosts)).sorted().joined(separator: ",")),
            ])
        }
        defer { clearMirrorFaults() }
        // The copies in memory outlive no supervisor: a resume restores from disk.
        defer { if let memoryOwnerLock { close(memoryOwnerLock) } }
        defer { memoryLevel?.removeAll() }
        reclaimAbandonedMemory()
        if let memoryLevel, !MemoryLevel.isMemoryFileSystem(memoryLevel.folder) {
            warn(MemoryLevel.notInMemory(root: configuration.memoryRoot ?? JobConfiguration.memoryRootDefault))
        }
        // Under mpirun the ranks read the token from a file in the run directory: it is of no
        // use once this supervisor ends (a resume makes a new token), so it does not stay.
        defer { if hostJob?.mpirun == true { unlink(configuration.runDirectory + "/token") } }
        defer { rankErrors?.finishAll() }
        try launchAll()
        defer { recordRefusals(final: true) }
        while !finishedJob {
            try step()
            if let stoppedOutcome { return stoppedOutcome }
        }
        return JobOutcome(
            rankCount: configuration.rankCount, epochsCommitted: manifest.commits,
            failures: failures, recoveries: recoveries, runDirectory: configuration.runDirectory)
    }

    /// One turn of the loop: wait for something, handle it, then let time act.
    private func step() throws {
        var descriptors = [
            pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
            pollfd(fd: launcher.exitFD, events: Int16(POLLIN), revents: 0),
            pollfd(fd: signalFD, events: Int16(POLLIN), revents: 0),
        ]
        for slot in slots {
            if let connection = slot.connection, !connection.isClosed {
                descriptors.append(pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0))
            }
        }
        let handshaking = acceptor.descriptors + (hostJob?.acceptor.descriptors ?? [])
        for fd in handshaking { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        if let hostJob { descriptors.append(pollfd(fd: hostJob.listener, events: Int16(POLLIN), revents: 0)) }
        _ = poll(&descriptors, nfds_t(descriptors.count), pollTimeoutMs())
        // Whether this turn brought anything at all, and only records (a timeout brings nothing).
        var onlyRecords = descriptors.contains { $0.revents != 0 }
        for descriptor in descriptors where descriptor.revents != 0 {
            if !handshaking.contains(descriptor.fd), let rank = slots.firstIndex(where: { $0.connection?.fd == descriptor.fd }) {
                onlyRecords = try readControl(from: rank) && onlyRecords
                if finishedJob || stoppedOutcome != nil { return }
                continue
            }
            onlyRecords = false
            if descriptor.fd == listener {
                for (fd, handshake) in acceptor.acceptAll(now: now) { try acceptControlConnection(fd, handshake) }
            } else if let hostJob, descriptor.fd == hostJob.listener {
                for (fd, handshake) in hostJob.acceptor.acceptAll(now: now) { try acceptControlConnection(fd, handshake) }
            } else if let hostJob, hostJob.acceptor.descriptors.contains(descriptor.fd) {
                if let (fd, handshake) = hostJob.acceptor.read(descriptor.fd) { try acceptControlConnection(fd, handshake) }
            } else if handshaking.contains(descriptor.fd) {
                if let (fd, handshake) = acceptor.read(descriptor.fd) { try acceptControlConnection(fd, handshake) }
            } else if descriptor.fd == launcher.exitFD {
                for exit in launcher.readExits() { try handleExit(exit) }
            } else if descriptor.fd == signalFD {
                try handleStopSignal()
            }
            if finishedJob || stoppedOutcome != nil { return }
        }
        // A turn that brought only sender-based records (stable once in the socket, so nobody
        // waits for them) and heartbeats: let the next ones gather for a millisecond instead of
        // waking once per record, and let time act at most every few milliseconds. The task
        // farm's master sends one record per task: thousands a second.
        if onlyRecords, now - lastTimeActed < Self.recordsBatchSeconds {
            usleep(UInt32(Self.recordsBatchSeconds * 200_000))
            return
        }
        lastTimeActed = now
        try perform(coordinator.handleTick(now: now))
        try perform(machine.checkFreeze(now: now, facts: StorageFacts(self)))
        try checkStop()
        if stoppedOutcome != nil { return }
        try fireDueFaults()
        resynchroniseIfDue()
        collectOwedGarbage()
        recordRefusals()
        rankErrors?.forward(now: now)
        try checkHeartbeats()
        if stoppedOutcome != nil { return }
        probeLostHosts()
        try checkStalls()
        showProgress()
    }

    private func pollTimeoutMs() -> Int32 {
        var deadline = now + 0.25
        if let due = coordinator.nextDeadline { deadline = min(deadline, due) }
        if let freezing = machine.freezing { deadline = min(deadline, freezing.deadline) }
        return Int32(max(1, min(250, (deadline - now) * 1000)))
    }

    // MARK: Launching

    /// Starts every rank from the newest intact committed line (or from the start).
    func launchAll() throws {
        try perform(machine.launchEveryRank())
    }

    /// Performs a launch the machine decided: every rank in it begins from its entry in the
    /// newest intact committed line (the start when it has none), or from the independent
    /// checkpoint it names (the records after it are forgotten first, and a partial rollback's
    /// line is recorded); the other ranks, if any, keep running.
    func launch(_ order: SupervisorMachine.Launch) throws {
        var entries: [Int: IndependentCheckpoint?] = [:]
        for restart in order.restart {
            guard case .checkpoint(let index) = restart.start else { continue }
            truncateRecords(rank: restart.rank, after: index)
            entries[restart.rank] = index == 0 ? .some(nil) : records[restart.rank].first { $0.index == index }
        }
        if order.recordsRecoveryLine { try commitManifestOrWarn(manifest, failing: "cannot record the recovery line") }
        let intact = intactForLaunch.flatMap { found in
            found.ranks.map { $0.isSuperset(of: order.ranks) } ?? true ? (line: found.line, problems: found.problems) : nil
        }
        intactForLaunch = nil
        let fromLine = entries.isEmpty
        let (line, problems) = fromLine ? intact ?? newestIntactLine() : (manifest.newestLine, [])
        if order.restart.count == configuration.rankCount, fromLine {
            lineInForce = line
            if independent { resetRecords(to: line) }
        }
        for problem in problems {
            warn(problem)
            events.record("storage_problem", ["detail": .string(problem)])
        }
        // Problems that were repaired from the other mirror leave the newest line in force;
        // only a line older than the newest is a fallback.
        if !problems.isEmpty, fromLine, line?.epoch != manifest.newestLine?.epoch {
            let target = line.map { "epoch \($0.epoch)" } ?? "the start of the job"
            let why = manifest.newestLine?.isOnDisk == false
                ? "a newer line was held in memory alone, and a copy there is gone" : "a newer checkpoint is damaged on both mirrors"
            warn("falling back to \(target): \(why)")
            events.record("fallback", ["epoch": .int(Int(clamping: line?.epoch ?? 0))])
            // Every rank restarting from it: the newer lines belong to the execution given up
            // here, and the next commits keep the line fallen back to, not them. (A rank that
            // restarts alone from an older line leaves the others' execution, and the line in
            // force that minimal checkpoints keep entries of, as they are.)
            var next = manifest
            if order.restart.count == configuration.rankCount, next.abandonLines(after: line?.epoch) {
                try commitManifestOrWarn(next, failing: "cannot drop the lines newer than \(target) from the manifest")
            }
        }
        let outputDirectory = configuration.runDirectory + "/output"
        // A line written by another number of ranks (the job was resized since): every rank is
        // rebuilt from the old ranks' states by the program (`Redistributable`).
        let resize = line.flatMap { line -> StartPlan.Resize? in
            let count = manifest.rankCount(of: line)
            return count == configuration.rankCount ? nil : StartPlan.Resize(
                rankCount: count, step: line.step, messagesInFlight: manifests.inFlightBytes(line).map { $0 > 0 } ?? true)
        }
        if resize != nil, let line {
            guard order.ranks.count == configuration.rankCount, entries.isEmpty else {
                throw LifelineError(.jobFailed,
                    "a partial restart from line \(line.epoch), which \(manifest.rankCount(of: line)) ranks wrote before the resize")
            }
            if let reason = manifests.resizeRefusal(line, of: manifest) {
                throw LifelineError(.storage, "cannot restore line \(line.epoch) onto \(configuration.rankCount) ranks: \(reason)")
            }
        }
        var launches: [RankLaunch] = []
        var restoredOutput: [Int: (incarnation: UInt32, offset: UInt64)] = [:]
        for rank in order.ranks {
            var member = resize == nil ? line?.members.first { $0.rank == rank } : nil
            if let entry = entries[rank] {
                member = entry.flatMap { record in
                    record.snapshot.map {
                        Member(rank: rank, snapshot: $0, step: record.step, incarnation: record.incarnation,
                               outputOffset: record.outputOffset, snapshotBytes: record.snapshotBytes)
                    }
                }
            }
            var plan = machine.startPlan(for: order)
            plan.restoreSnapshot = member?.snapshot
            plan.restoreEpoch = Epoch(member.flatMap { manifests.epoch(ofSnapshot: $0.snapshot) } ?? 0)
            if let resize, let line {
                plan.resize = resize
                plan.restoreEpoch = Epoch(line.epoch)
            }
            if let member { restoredOutput[rank] = (UInt32(clamping: member.incarnation), member.outputOffset) }
            let step = member?.step ?? resize?.step ?? -1
            // A connection still open is the old process's, whose exit was not reaped in time
            // (`awaitExits` gives up after 30 s): nothing it still sends may reach the new
            // incarnation's state (the event logger forgets the rank's records just below).
            slots[rank].connection?.close()
            slots[rank].connection = nil
            let incarnation = machine.launching(rank, plan: plan, step: step, now: now)
            launchedIncarnations[rank] = incarnation
            runtimeStops[rank] = nil
            programExits[rank] = nil
            var environment = LaunchEnvironment(
                rank: RankID(rank), rankCount: configuration.rankCount, token: token,
                addressPrefix: addressBase, incarnation: incarnation, supervisorPID: getpid(),
                storageRoots: (configuration.storageRoots[0], configuration.storageRoots[1]),
                variant: CheckpointVariant(rawValue: configuration.checkpointing.rawValue) ?? .coordinated,
                heartbeatMs: configuration.heartbeatMs, faults: faultSchedule.inRank(rank),
                logging: LoggingMode(rawValue: configuration.logging.rawValue) ?? .none,
                traceDirectory: configuration.traceDeliveries ? configuration.runDirectory + "/trace" : nil,
                clockOrigin: clockStart - clockOffset,
                retainedBytesMax: configuration.retainedBytesMax ?? 0,
                logBytesMax: configuration.keepLogs == true ? 0 : configuration.logBytesMax ?? 0,
                intervalSeconds: configuration.intervalSeconds, logFlushMs: configuration.logFlushMs ?? 20,
                logFlushBytes: configuration.logFlushBytes ?? 1 << 20,
                chunkBytes: configuration.chunkBytes ?? ChunkedSnapshots.chunkBytesDefault,
                compressionLevel: Int32(clamping: configuration.compressionLevel ?? Int(ChunkedSnapshots.levelDefault)),
                keepLogs: configuration.keepLogs == true)
            environment.ringBytes = configuration.transport == .sockets ? 0 : SharedRings.capacity(forRanks: configuration.rankCount)
            if syncTime != nil { environment.syncTimePath = configuration.runDirectory + "/log-sync-time" }
            environment.catchUpStep = machine.catchUpStep(of: rank)
            if hostJob != nil { memoryCopies.relaunched(rank: rank, restoring: plan.restoreEpoch.rawValue) }
            let copy = copyToRead(rank: rank, round: plan.restoreEpoch.rawValue)
            environment.memoryLevel = memoryFolder(of: rank).map {
                LaunchEnvironment.MemoryLevelSettings(
                    folder: $0, drainEvery: configuration.drainEvery ?? 1, bytesMax: configuration.memoryBytesMax ?? 0,
                    drainRestored: drainsRestored(rank, line: line, restoring: plan.restoreEpoch),
                    readsCopy: copy.reads, copyHost: copy.host)
            }
            launches.append(RankLaunch(rank: rank, step: step, environment: environment))
        }
        let pids = try spawnRanks(launches, outputDirectory: outputDirectory)
        endedLaunches.subtract(pids)
        for (launch, pid) in zip(launches, pids) {
            let (rank, incarnation) = (launch.rank, launch.environment.incarnation)
            slots[rank] = Slot(pid: pid, connection: nil)
            hostJob?.placement.heard(from: rank, now: now)
            // A launch that does not replay cuts the log back to its entry, or starts it anew.
            if !order.replayLog { logsUnfit.remove(rank) }
            launchedBeforeHostLoss.remove(rank)
            output.started(rank: rank, incarnation: incarnation, restored: restoredOutput[rank])
            rankErrors?.started(rank: rank, incarnation: incarnation)
            events.record("rank_launched", [
                "rank": .int(rank), "pid": .int(Int(pid)), "incarnation": .int(Int(incarnation)),
                "epoch": .int(Int(clamping: line?.epoch ?? 0)), "step": .int(launch.step),
            ])
        }
        machine.launched(order.ranks)
        try writePIDs()
    }

    private func writePIDs() throws {
        // RANK PID, and on several hosts RANK PID HOST (the pid is the launch command's here).
        let text = slots.enumerated().map { rank, slot in
            hostJob.map { "\(rank) \(slot.pid) \($0.rankHosts[rank])\n" } ?? "\(rank) \(slot.pid)\n"
        }.joined()
        let path = configuration.runDirectory + "/pids"
        let temporary = path + ".tmp"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            throw LifelineError(.configuration, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Takes a rank's control connection whose handshake carried the token, if it names a
    /// launched rank's current process; refuses it otherwise.
    private func acceptControlConnection(_ fd: Int32, _ handshake: Handshake) throws {
        let rank = handshake.rank.rawValue
        // A lost host's probe proved itself: with its exit status 0, the host is back (`HostProbe`).
        if handshake.role == .hostProbe, hostJob != nil {
            probeWelcomed(serial: handshake.incarnation)
            close(fd)
            return
        }
        // With partner hosts no folder is shared: a rank reads the manifest its host's folders
        // are collected against from here, over a connection of its own (proven like any other
        // between hosts), served by a thread, read-only.
        if handshake.role == .storage, hostJob != nil, StorageRoots.partnered(configuration.storageRoots),
           (0..<configuration.rankCount).contains(rank) {
            let lent = try? FolderService(root: store.root(store.mirrors.first ?? .a), readOnly: true)
            if let lent { _ = PartnerFolderServer.start(fd, service: lent) } else { close(fd) }
            return
        }
        // On one host the pid is the rank's own; from another host it is not this host's.
        guard handshake.role == .control, machine.isCurrent(rank, incarnation: handshake.incarnation),
              !isMoving(rank, incarnation: handshake.incarnation),
              hostJob != nil ? handshake.port != 0 : slots[rank].pid == handshake.pid
        else {
            acceptor.refuse(fd, "a handshake that names no launched rank's process")
            return
        }
        noteAddress(of: rank, handshake, fd: fd)
        let connection = Connection(fd: fd)
        slots[rank].connection = connection
        // Over TCP the acceptor welcomed it when its proof was right.
        if !HostLink.isTCP(fd) { _ = connection.write(head: WelcomeFrame.frame) { _ in } }
        try perform(machine.handleConnected(rank, now: now))
    }

    /// Sends a control message to a rank; one launched and not yet connected gets it when it
    /// connects, before START.
    func send(_ message: ControlMessage, to rank: Int) {
        try? perform(machine.send(message, to: rank))  // sends and notes only: nothing throws
    }

    /// Writes a control message on a rank's connection.
    func write(_ message: ControlMessage, to rank: Int) {
        guard let connection = slots[rank].connection, !connection.isClosed else { return }
        // On several hosts, where every rank listens goes first: the rank connects to the
        // peers START or a restart names.
        // Before START the whole table; before a restart only the restarted rank's entry (a
        // table per survivor per restart would be quadratic in the ranks).
        if let hostJob {
            switch message {
            case .start:
                _ = Socket.sendAll(connection.fd, ControlMessage.peerAddresses(hostJob.addresses).frame())
            case .peerRestarted(let peer, _):
                if let address = hostJob.addresses[peer.rawValue] {
                    _ = Socket.sendAll(connection.fd, ControlMessage.peerAddress(peer, address).frame())
                }
            default:
                break
            }
        }
        _ = Socket.sendAll(connection.fd, message.frame())
    }

    /// Closes control connections whose handshake is late, and records the refusals (at most
    /// one event every few seconds; `final`: now, as the job ends).
    func recordRefusals(final: Bool = false) {
        for acceptor in [acceptor] + (hostJob.map { [$0.acceptor] } ?? []) {
            acceptor.expire(now: now)
            guard let report = acceptor.takeReport(now: now, final: final) else { continue }
            events.record("connection_refused", [
                "count": .int(report.count), "reasons": .string(report.reasons),
                "transport": .string(acceptor === self.acceptor ? "unix" : "tcp"),
            ])
        }
    }

    func warn(_ text: String) {
        FileHandle.standardError.write(Data("lifeline: \(text)\n".utf8))
    }

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return String(byte, radix: 16).count == 1 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
        }.joined()
    }
}

/// How a job ended.
public struct JobOutcome: Sendable, Equatable {
    /// The number of ranks.
    public var rankCount: Int
    /// Committed checkpoint rounds over the whole job.
    public var epochsCommitted: Int
    /// Failures seen.
    public var failures: Int
    /// Recoveries completed.
    public var recoveries: Int
    /// Where the run's files are.
    public var runDirectory: String
    /// The signal that stopped the job before its end (it can be resumed), or nil if it finished.
    public var stoppedBySignal: Int32?
    /// Set when a lost host stopped the job to continue on fewer ranks (`--on-host-loss shrink`).
    var shrink: Shrink?

    /// Where a job stopped by a lost host continues: on `rankCount` ranks on `hosts`.
    struct Shrink: Sendable, Equatable {
        /// The ranks the hosts left have slots for.
        var rankCount: Int
        /// The hosts left, in order, with their slots.
        var hosts: [JobConfiguration.Host]
    }

    /// An outcome with every field given.
    public init(rankCount: Int, epochsCommitted: Int, failures: Int, recoveries: Int, runDirectory: String,
                stoppedBySignal: Int32? = nil) {
        self.rankCount = rankCount
        self.epochsCommitted = epochsCommitted
        self.failures = failures
        self.recoveries = recoveries
        self.runDirectory = runDirectory
        self.stoppedBySignal = stoppedBySignal
    }

    /// The last line `lifeline run` prints on standard output.
    public var summaryLine: String {
        if stoppedBySignal != nil {
            return "lifeline: stopped ranks=\(rankCount) epochs=\(epochsCommitted) failures=\(failures) recoveries=\(recoveries)"
        }
        return "lifeline: finished ranks=\(rankCount) epochs=\(epochsCommitted) failures=\(failures) recoveries=\(recoveries)"
    }
}
