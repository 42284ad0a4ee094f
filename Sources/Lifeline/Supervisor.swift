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
    /// One rank's process as the supervisor sees it.
    struct Slot {
        var pid: pid_t = 0
        var connection: Connection?
        /// When the supervisor last heard from the rank (job clock).
        var lastHeard: Double = 0
        /// The last safe point the rank reported.
        var step: Int = -1
        /// Whether the process is running (spawned and not yet reaped).
        var alive = false
        /// Whether the supervisor caused or expects its exit (killed for rollback, released).
        var exitExpected = false
        /// The incarnation of the process (unique in the job: every launch takes the next).
        var incarnation: UInt32 = 0
        /// Whether the process connected to the supervisor (joined the job).
        var joined = false
        /// Control messages sent before the process connected, sent when it does (a round can
        /// start while ranks launch: a stop or a wanted checkpoint at a resume).
        var unsent: [ControlMessage] = []
        /// What its `START` tells it: where it begins, whether it replays, the mirrors it writes.
        var plan = StartPlan()
    }

    let configuration: JobConfiguration
    let faults: [FaultSpec]
    let jobID: String
    let token: String
    /// The store on both mirrors, as configured.
    let bothMirrors: MirroredStore
    /// The store this job writes now: `bothMirrors`, or one mirror alone while the other has
    /// failed (see `Supervisor+Mirrors`).
    var store: MirroredStore
    /// The manifest on `store`.
    var manifests: ManifestStore
    /// The mirror that failed, why and when (job clock); nil while both take writes.
    var failedMirror: (mirror: Mirror, reason: String, since: Double)?
    /// When to try the next resynchronisation (job clock), while a mirror has failed or the
    /// manifest lists degraded commits.
    var nextResyncAt = 0.0
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
    let addressBase: String
    let clockStart: Double
    let clockOffset: Double

    var coordinator: CheckpointCoordinator
    /// Watches for a job that stopped passing safe points.
    var stalls: StallDetector
    var slots: [Slot]
    /// The incarnation the next launched process gets.
    var incarnation: UInt32
    /// Ranks launched and not yet all connected: when they are, they get START.
    var starting: [Int] = []
    /// The rank recovering alone by replaying its log (message logging), if any.
    var replaying: Int?
    /// Whether launches recover ranks (after the first launch of `run`, or any of `resume`).
    var restartsRanks: Bool
    /// Whether any rank ever joined: the program is a Lifeline program.
    var programJoined = false
    /// Counts failures and chooses how the job recovers from each.
    var recoveryPolicy: RecoveryPolicy
    /// Failures so far in this supervisor run.
    var failures: Int { recoveryPolicy.failures }
    var recoveries = 0
    var finishedJob = false
    /// Which faults have fired (indexed like `faults`).
    var faultFired: [Bool]
    var chaos: (generator: SplitMix64, nextAt: Double)?
    /// When the current recovery began, for its duration.
    var recoveryStartedAt: Double?
    var lastProgressAt = 0.0
    var lastProgressStep = 0
    var lastCommitBytes: UInt64 = 0
    /// The committed line the running ranks descend from: the one they were all restored from,
    /// or the last one committed since. A rank that keeps its checkpoint (minimal) keeps its
    /// entry of this line.
    var lineInForce: CommittedLine?
    /// Independent checkpointing: the dependency records of every rank's checkpoints.
    var planner = IntervalDependencies(rankCount: 0)
    /// Independent checkpointing: per rank and checkpoint index, what the rank had delivered.
    var checkpointDelivered: [[Int: [DeliveredSet]]] = []
    /// Independent checkpointing: the line of checkpoints only last committed.
    var previousCheckpointOnlyLine: [Int] = []
    /// The survivors frozen for a partial recovery (independent checkpoints, optimistic
    /// logging) until they have all answered; nil otherwise.
    var freezing: Freeze?
    /// Independent checkpointing: survivors to thaw once the restarted ranks are connected.
    var survivorsToThaw: Set<Int> = []
    /// Optimistic logging: the ranks restarted together (the failed one and its orphans).
    var restartedGroup: [Int]?
    /// When the open round was requested, to measure how long a checkpoint takes.
    var roundStartedAt: Double?
    /// Seconds the last committed round took, from request to commit.
    var lastRoundSeconds = 0.0
    /// SIGINT/SIGTERM arrive as bytes on this pipe.
    let signalFD: Int32
    /// The stop signal that asked for a checkpoint and then a stop, if any.
    var stopSignal: Int32?
    /// When the stop stops at once if its checkpoint has not committed (job clock).
    var stopDeadline: Double?
    /// Set when the job stopped on request; `run` returns it.
    var stoppedOutcome: JobOutcome?

    init(configuration: JobConfiguration, faults: [FaultSpec], manifest: Manifest, store: MirroredStore,
         incarnation: UInt32, clockOffset: Double) throws {
        self.configuration = configuration
        self.faults = faults
        self.jobID = manifest.jobID
        self.token = Self.randomHex(bytes: 16)
        self.bothMirrors = store
        self.store = store
        self.manifests = ManifestStore(store: store)
        self.manifest = manifest
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
        self.signalFD = try Self.routeStopSignals()
        // Independent checkpoints are the ranks' own: the coordinator never starts a round.
        self.coordinator = CheckpointCoordinator(
            rankCount: configuration.rankCount,
            intervalSeconds: configuration.checkpointing == .independent ? 1e12 : configuration.intervalSeconds,
            committed: Epoch(manifest.newestLine?.epoch ?? 0), now: clockOffset)
        self.stalls = StallDetector(
            rankCount: configuration.rankCount,
            thresholdSecondsMin: configuration.stallSeconds ?? JobConfiguration.stallSecondsDefault, now: clockOffset)
        self.slots = Array(repeating: Slot(), count: configuration.rankCount)
        self.incarnation = incarnation
        self.restartsRanks = incarnation > 0
        self.faultFired = Array(repeating: false, count: faults.count)
        self.recoveryPolicy = RecoveryPolicy(
            logging: LoggingMode(rawValue: configuration.logging.rawValue) ?? .none,
            independent: configuration.checkpointing == .independent, maxRestarts: configuration.maxRestarts)
        if configuration.checkpointing == .independent { loadIndependentRecords() }
        if let spec = faults.first(where: { if case .chaos = $0 { true } else { false } }),
           case .chaos(let seed, let mtbf) = spec {
            var generator = SplitMix64(seed: seed)
            let first = generator.exponential(mean: mtbf)
            chaos = (generator, first)
        }
    }

    /// Seconds since the job started (continuing across `resume`).
    var now: Double { monotonicSeconds() - clockStart + clockOffset }

    /// Runs the job to its end. Returns the outcome or throws when it cannot finish.
    func run() throws -> JobOutcome {
        signal(SIGPIPE, SIG_IGN)
        if store.sameDevice {
            warn("both storage roots are on the same device: mirroring protects against damaged files, not a lost disk")
        }
        events.record("job_start", [
            "ranks": .int(configuration.rankCount), "program": .string(configuration.program),
            "checkpoint": .string(configuration.checkpointing.rawValue),
            "interval_s": .double(configuration.intervalSeconds), "incarnation": .int(Int(incarnation)),
        ])
        defer { clearMirrorFaults() }
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
        let handshaking = acceptor.descriptors
        for fd in handshaking { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        _ = poll(&descriptors, nfds_t(descriptors.count), pollTimeoutMs())
        for descriptor in descriptors where descriptor.revents != 0 {
            if descriptor.fd == listener {
                for (fd, handshake) in acceptor.acceptAll(now: now) { acceptControlConnection(fd, handshake) }
            } else if handshaking.contains(descriptor.fd) {
                if let (fd, handshake) = acceptor.read(descriptor.fd) { acceptControlConnection(fd, handshake) }
            } else if descriptor.fd == launcher.exitFD {
                for exit in launcher.readExits() { try handleExit(exit) }
            } else if descriptor.fd == signalFD {
                try handleStopSignal()
            } else if let rank = slots.firstIndex(where: { $0.connection?.fd == descriptor.fd }) {
                try readControl(from: rank)
            }
            if finishedJob { return }
        }
        try perform(coordinator.handleTick(now: now))
        if let outcome = freezing?.handleTick(now: now) { try freezeComplete(outcome) }
        try checkWalltime()
        checkStopDeadline()
        if stoppedOutcome != nil { return }
        try fireDueFaults()
        resynchroniseIfDue()
        recordRefusals()
        rankErrors?.forward(now: now)
        try checkHeartbeats()
        try checkStalls()
        showProgress()
    }

    private func pollTimeoutMs() -> Int32 {
        var deadline = now + 0.25
        if let due = coordinator.nextDeadline { deadline = min(deadline, due) }
        if let freezing { deadline = min(deadline, freezing.deadline) }
        return Int32(max(1, min(250, (deadline - now) * 1000)))
    }

    // MARK: Launching

    /// Starts every rank from the newest intact committed line (or from the start).
    func launchAll() throws {
        try launch(Array(0..<configuration.rankCount))
    }

    /// Starts `ranks` from the newest intact committed line (or from the start), or from the
    /// independent checkpoints `plan` names (nil: the start); the others, if any, keep running.
    /// `replayLog`: the ranks restart while the others keep running, and replay their logs.
    /// `intact`: the newest intact line, when the caller has just found it.
    func launch(_ ranks: [Int], plan: [Int: IndependentCheckpoint?]? = nil,
                replayLimit: (rank: Int, recoverable: UInt64)? = nil, replayLog: Bool = false,
                intact: (line: CommittedLine?, problems: [String])? = nil) throws {
        let (line, problems) = plan == nil ? intact ?? manifests.newestIntactLine(manifest) : (manifest.newestLine, [])
        if ranks.count == configuration.rankCount, plan == nil {
            lineInForce = line
            if independent { resetRecords(to: line) }
        }
        for problem in problems {
            warn(problem)
            events.record("storage_problem", ["detail": .string(problem)])
        }
        // Problems that were repaired from the other mirror leave the newest line in force;
        // only a line older than the newest is a fallback.
        if !problems.isEmpty, plan == nil, line?.epoch != manifest.newestLine?.epoch {
            let target = line.map { "epoch \($0.epoch)" } ?? "the start of the job"
            warn("falling back to \(target): a newer checkpoint is damaged on both mirrors")
            events.record("fallback", ["epoch": .int(Int(line?.epoch ?? 0))])
        }
        let outputDirectory = configuration.runDirectory + "/output"
        for rank in ranks {
            var member = line?.members.first { $0.rank == rank }
            if let entry = plan?[rank] {
                member = entry.flatMap { record in
                    record.snapshot.map {
                        Member(rank: rank, snapshot: $0, step: record.step, incarnation: record.incarnation,
                               outputOffset: record.outputOffset, snapshotBytes: record.snapshotBytes)
                    }
                }
            }
            let pending = faults.indices.filter { !faultFired[$0] && faults[$0].firesInRank && faults[$0].rank?.rawValue == rank }
            let environment = LaunchEnvironment(
                rank: RankID(rank), rankCount: configuration.rankCount, token: token,
                addressPrefix: addressBase, incarnation: incarnation, supervisorPID: getpid(),
                storageRoots: (configuration.storageRoots[0], configuration.storageRoots[1]),
                variant: CheckpointVariant(rawValue: configuration.checkpointing.rawValue) ?? .coordinated,
                heartbeatMs: configuration.heartbeatMs, faults: pending.map { ($0, faults[$0]) },
                logging: LoggingMode(rawValue: configuration.logging.rawValue) ?? .none,
                traceDirectory: configuration.traceDeliveries ? configuration.runDirectory + "/trace" : nil,
                clockOrigin: clockStart - clockOffset,
                retainedBytesMax: configuration.retainedBytesMax ?? 0, logBytesMax: configuration.logBytesMax ?? 0,
                intervalSeconds: configuration.intervalSeconds, logFlushMs: configuration.logFlushMs ?? 20,
                logFlushBytes: configuration.logFlushBytes ?? 1 << 20,
                chunkBytes: configuration.chunkBytes ?? ChunkedSnapshots.chunkBytesDefault,
                compressionLevel: Int32(clamping: configuration.compressionLevel ?? Int(ChunkedSnapshots.levelDefault)))
            let plan = StartPlan(
                restarted: restartsRanks, restoreEpoch: Epoch(member.flatMap { manifests.epoch(ofSnapshot: $0.snapshot) } ?? 0),
                restoreSnapshot: member?.snapshot, deliverableEpoch: coordinator.lastEpoch, replayLog: replayLog,
                replayLimit: replayLimit.map { RecoveryPlan.ReplayLimit(rank: $0.rank, recoverable: $0.recoverable) },
                writeMirrors: StorageMirrors(store.mirrors))
            let pid = try launcher.spawn(
                program: configuration.program, arguments: configuration.arguments,
                environment: environment.variables,
                stdoutPath: OutputCommitter.stdoutPath(directory: outputDirectory, rank: rank, incarnation: incarnation),
                stderrPath: OutputCommitter.stderrPath(directory: outputDirectory, rank: rank, incarnation: incarnation))
            slots[rank] = Slot(
                pid: pid, connection: nil, lastHeard: now, step: member?.step ?? -1, alive: true, incarnation: incarnation,
                plan: plan)
            output.started(rank: rank, incarnation: incarnation)
            rankErrors?.started(rank: rank, incarnation: incarnation)
            events.record("rank_launched", [
                "rank": .int(rank), "pid": .int(Int(pid)), "incarnation": .int(Int(incarnation)),
                "epoch": .int(Int(line?.epoch ?? 0)), "step": .int(member?.step ?? -1),
            ])
            incarnation += 1
        }
        starting = ranks
        restartsRanks = true
        try writePIDs()
    }

    private func writePIDs() throws {
        let text = slots.enumerated().map { "\($0.offset) \($0.element.pid)\n" }.joined()
        let path = configuration.runDirectory + "/pids"
        let temporary = path + ".tmp"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            throw LifelineError(.configuration, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Takes a rank's control connection whose handshake carried the token, if it names a
    /// launched rank's current process; refuses it otherwise.
    private func acceptControlConnection(_ fd: Int32, _ handshake: Handshake) {
        guard handshake.role == .control, slots.indices.contains(handshake.rank.rawValue),
              handshake.incarnation == slots[handshake.rank.rawValue].incarnation,
              slots[handshake.rank.rawValue].pid == handshake.pid
        else {
            acceptor.refuse(fd, "a handshake that names no launched rank's process")
            return
        }
        let rank = handshake.rank.rawValue
        let connection = Connection(fd: fd)
        slots[rank].connection = connection
        slots[rank].joined = true
        programJoined = true
        slots[rank].lastHeard = now
        _ = connection.write(head: WelcomeFrame.frame) { _ in }
        for message in slots[rank].unsent { send(message, to: rank) }
        slots[rank].unsent = []
        // During a freeze the ranks of an earlier plan wait: the new plan restarts them.
        guard freezing == nil, !starting.isEmpty, starting.allSatisfy({ slots[$0].connection != nil }) else { return }
        let started = starting
        starting = []
        for rank in started {
            var plan = slots[rank].plan
            plan.writeMirrors = StorageMirrors(store.mirrors)  // a mirror may have failed since the launch
            send(.start(plan), to: rank)
        }
        events.record("ranks_started", ["ranks": .int(started.count)])
        if started.count < configuration.rankCount {
            for rank in started {
                if !independent || configuration.logging != .none {
                    events.record("replay_start", ["rank": .int(rank), "incarnation": .int(Int(slots[rank].incarnation))])
                }
                for other in slots.indices where !started.contains(other) {
                    send(.peerRestarted(RankID(rank), incarnation: slots[rank].incarnation), to: other)
                }
            }
            // A partial rollback (independent checkpoints, or optimistic logging's orphans): the
            // survivors reconnect (the messages above come first on their connections), then
            // deliver again.
            for other in survivorsToThaw { send(.thaw, to: other) }
            survivorsToThaw = []
            if independent, configuration.logging == .none { try? recoveryDone(started) }
        } else if recoveryStartedAt != nil {
            try? recoveryDone(started)
        }
    }

    /// Sends a control message to a rank; one launched and not yet connected gets it when it
    /// connects, before START.
    func send(_ message: ControlMessage, to rank: Int) {
        guard let connection = slots[rank].connection, !connection.isClosed else {
            guard slots[rank].alive, !slots[rank].joined else { return }
            // A newer trim covers an older one (independent checkpoints send one per commit).
            if case .trim = message { slots[rank].unsent.removeAll { if case .trim = $0 { true } else { false } } }
            guard slots[rank].unsent.count < Self.unsentMessagesMax else {
                events.record("protocol_error", ["rank": .int(rank), "detail": .string("unsent \(message) dropped: the rank has not connected")])
                return
            }
            slots[rank].unsent.append(message)
            return
        }
        _ = Socket.sendAll(connection.fd, message.frame())
    }

    /// The most control messages kept for a rank that has not connected yet (a round's few).
    static let unsentMessagesMax = 64

    /// Closes control connections whose handshake is late, and records the refusals (at most
    /// one event every few seconds; `final`: now, as the job ends).
    func recordRefusals(final: Bool = false) {
        acceptor.expire(now: now)
        guard let report = acceptor.takeReport(now: now, final: final) else { return }
        events.record("connection_refused", ["count": .int(report.count), "reasons": .string(report.reasons)])
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
