import LifelineCore

/// One job run on the protocol core with a virtual clock: a `SupervisorMachine` and one
/// `RankMachine` per live rank, a network that delays messages (FIFO on each channel, in any
/// order across channels), a disk modelled at the level of the actions the machines take
/// (snapshots durable after a write, a manifest committed atomically, message logs synced
/// before a delivery), model programs whose failure-free result is known (`ModelProgram`), and
/// rank crashes at virtual times drawn from the seed — also inside checkpoint rounds and
/// recoveries.
///
/// After every event it checks what can be checked then: every delivered message is the one the
/// failure-free run delivers there (so nothing is delivered twice, no orphan survives, and a
/// replay delivers in the logged order); at the end, every rank's state is the failure-free
/// one. A run is a function of its settings: the same seed gives the same trace.
///
/// One thread runs it, and its stored variables skip Swift's dynamic exclusivity checks
/// (`@exclusivity(unchecked)`): every event reads and writes several of them, and the checks
/// took a quarter of a 10,000-rank run's time (independent checkpoints, 60 steps: 45 s → 34 s
/// here, the same trace).
package final class Simulation {
    /// What to run.
    package struct Settings: Sendable, Equatable {
        /// The number of ranks.
        package var rankCount: Int
        /// The seed every draw comes from.
        package var seed: UInt64
        /// The checkpoint scheme.
        package var variant: CheckpointVariant
        /// The logging mode.
        package var logging: LoggingMode
        /// Which faults are injected.
        package var faults: FaultProfile
        /// The steps each rank runs.
        package var stepCount: Int
        /// The model program.
        package var pattern: ModelProgram.Pattern
        /// How many events at most before the run counts as stuck.
        package var eventsMax: Int
        /// What time costs (nil: delays drawn wide, the supervisor takes no time).
        package var costModel: CostModel?
        /// The checkpoint interval in virtual seconds (nil: drawn from the seed); under
        /// independent checkpoints each rank's mean period.
        package var intervalSeconds: Double?
        /// The program is not piecewise deterministic on purpose: a rank launched again sends
        /// other bytes than its first execution did (as one that reads a clock would). The run
        /// then expects the runtime's nondeterminism check to catch it, and stops there as
        /// `lifeline run` does; deliveries are not held to the failure-free run.
        package var nondeterministic = false
        /// Sender-based logging: whether the ranks are on other hosts than the supervisor. Then
        /// what a crashed process had in flight to the supervisor is lost with it, and a rank
        /// waits for the event logger's acknowledgement before it sends. By default they share
        /// its host, as under `lifeline run`: a record is stable once sent, and the supervisor
        /// takes a crashed or killed rank's records still on their way before it plans the
        /// recovery (as `Supervisor.handleExit` reads a dead rank's connection to its end).
        package var ranksOnOtherHosts = false
        /// The hosts the ranks run on, in contiguous blocks (rank r on host r·H/N); 1: one host.
        /// With crashes and more than one host, a host may be lost: all its ranks crash at the
        /// same instant, and what they had in flight to the supervisor is lost with them (so
        /// the ranks are on other hosts than the supervisor: `ranksAway`).
        package var hostCount = 1

        /// Whether the ranks are on other hosts than the supervisor (`ranksOnOtherHosts`, or more
        /// than one host): a dead process's frames in flight are lost, and sender-based ranks
        /// wait for the event logger's acknowledgement.
        package var ranksAway: Bool { ranksOnOtherHosts || hostCount > 1 }

        /// The `lifeline simulate` options that run these settings again (a cost model's own
        /// options aside).
        package var replayArguments: String {
            "--ranks \(rankCount) --seed \(seed) --checkpoint \(variant.rawValue) --logging \(logging.rawValue) --steps \(stepCount) "
                + "--program \(pattern.rawValue) --faults \(faults.rawValue)" + (nondeterministic ? " --nondeterministic" : "")
                + (ranksOnOtherHosts && logging == .senderBased ? " --ranks-on-other-hosts" : "")
                + (hostCount > 1 ? " --hosts \(hostCount)" : "")
                + (intervalSeconds.map { " --interval \($0)" } ?? "")
                + (costModel.map { " --fan-in \($0.fanIn)" } ?? "")
        }

        /// The settings a swarm's seed draws: ranks 2–64, a scheme, a logging mode, a program
        /// and its steps, crashes four times in five; one seed in four timed on the reference
        /// machine with a tree of coordinators (fan-in 2–4) and a short interval, so that the
        /// tree's gatherings meet aborted rounds, crashes and a supervisor's restart.
        package static func drawn(seed: UInt64) -> Settings {
            var generator = SplitMix64(seed: seed ^ 0x5357_4152_4D00_0000)
            let rankCount = Int.random(in: 2...64, using: &generator)
            let variant = Simulation.simulatedVariants.randomElement(using: &generator)!
            let logging = Simulation.simulatedLoggings.filter { Simulation.allows(variant, $0) }.randomElement(using: &generator)!
            var settings = Settings(
                rankCount: rankCount, seed: seed, variant: variant, logging: logging,
                faults: [FaultProfile.none, .crashes, .crashes, .storage, .network, .all].randomElement(using: &generator)!,
                stepCount: Int.random(in: 3...40, using: &generator),
                pattern: ModelProgram.Pattern.allCases.randomElement(using: &generator)!, eventsMax: 1_000_000)
            settings.ranksOnOtherHosts = Bool.random(using: &generator)
            settings.hostCount = min(rankCount, [1, 1, 2, 3, 4].randomElement(using: &generator)!)
            if Int.random(in: 0..<4, using: &generator) == 0 {
                var model = CostModel.referenceMachine
                model.fanIn = Int.random(in: 2...4, using: &generator)
                settings.costModel = model
                settings.intervalSeconds = [0.02, 0.03, 0.05].randomElement(using: &generator)!
            }
            return settings
        }

        /// Settings with every field given.
        package init(rankCount: Int, seed: UInt64, variant: CheckpointVariant = .coordinated, logging: LoggingMode = .none,
                     faults: FaultProfile = .crashes, stepCount: Int = 20, pattern: ModelProgram.Pattern = .ring,
                     eventsMax: Int = 20_000_000, costModel: CostModel? = nil, intervalSeconds: Double? = nil,
                     nondeterministic: Bool = false, ranksOnOtherHosts: Bool = false, hostCount: Int = 1) {
            self.ranksOnOtherHosts = ranksOnOtherHosts
            self.hostCount = max(1, min(hostCount, rankCount))
            self.rankCount = rankCount
            self.seed = seed
            self.variant = variant
            self.logging = logging
            self.faults = faults
            self.stepCount = stepCount
            self.pattern = pattern
            self.eventsMax = eventsMax
            self.costModel = costModel
            self.intervalSeconds = intervalSeconds
            self.nondeterministic = nondeterministic
        }
    }

    /// The checkpoint schemes and logging modes simulated so far.
    package static let simulatedVariants: [CheckpointVariant] = [.coordinated, .blocking, .minimal, .independent]
    package static let simulatedLoggings: [LoggingMode] = [.none, .pessimistic, .senderBased, .optimistic]

    /// Whether a scheme and a logging mode go together (as `lifeline run` allows them: a rank
    /// restarted alone from an independent checkpoint replays a log of whole messages).
    package static func allows(_ variant: CheckpointVariant, _ logging: LoggingMode) -> Bool {
        variant != .independent || logging == .none || logging == .pessimistic
    }

    /// Which faults a run injects.
    package enum FaultProfile: String, Sendable, CaseIterable {
        /// None: the failure-free run.
        case none
        /// Rank crashes (SIGKILL) at times drawn from the seed, also inside rounds and
        /// recoveries, and in one run of three the supervisor's (every rank dies with it; the
        /// job resumes from the disk).
        case crashes
        /// Storage failing: one snapshot write in eight fails (the rank says so; under
        /// independent checkpoints it restarts), one manifest commit of a round in eight fails,
        /// and in one run of two a mirror fails every write for a while or for good (the job
        /// degrades to the other mirror and resynchronises when it can).
        case storage
        /// The network failing: connections between ranks drop (what was in flight on them is
        /// lost; both ends reconnect and the sender sends what it retains again), and in one
        /// run of two a rank falls silent (hung: no heartbeat, no progress) until the
        /// supervisor's heartbeat timeout kills it.
        case network
        /// All of them.
        case all

        /// Whether ranks and the supervisor crash.
        var crashes: Bool { self == .crashes || self == .all }
        /// Whether writes fail.
        var storage: Bool { self == .storage || self == .all }
        /// Whether connections drop and ranks hang.
        var network: Bool { self == .network || self == .all }
    }

    /// How a run went.
    package struct Report: Sendable, Equatable {
        /// The settings.
        package var settings: Settings
        /// Events handled.
        package var events = 0
        /// Rounds committed, and rounds aborted.
        package var commits = 0
        package var aborts = 0
        /// Rank crashes injected (of live ranks).
        package var crashes = 0
        /// Supervisor crashes injected (each followed by a resume).
        package var supervisorCrashes = 0
        /// Connections between ranks dropped, and ranks that hung (killed on their silence).
        package var connectionDrops = 0
        package var hangs = 0
        /// Hosts lost (each: every rank on it crashed at once).
        package var hostsLost = 0
        /// Snapshot writes and manifest commits that failed.
        package var failedWrites = 0
        /// Degrades to one mirror, lines committed on one mirror, and resynchronisations.
        package var degrades = 0
        package var degradedCommits = 0
        package var resyncs = 0
        /// Recoveries by mode: lone replays (and optimistic replays), global rollbacks; ranks
        /// rolled back as orphans; recoveries that fell back to a global rollback.
        package var replays = 0
        package var rollbacks = 0
        package var orphans = 0
        package var fallbacks = 0
        /// Recoveries completed.
        package var recoveries = 0
        /// Control messages and their bytes, both directions.
        package var controlMessages = 0
        package var controlBytes = 0
        /// Rounds requested, and the messages and bytes of the rounds' own traffic (requests,
        /// step reports, S, ACKs, DONEs, aborts, trims).
        package var roundsStarted = 0
        package var roundMessages = 0
        package var roundBytes = 0
        /// Data messages transmitted (retransmissions included).
        package var dataMessages = 0
        /// Records appended to message logs, and their payload bytes.
        package var logRecords = 0
        package var logBytes = 0
        /// Control messages the supervisor itself sent or handled (with a coordinator tree,
        /// a gathered step report or ACK batch counts once).
        package var supervisorMessages = 0
        /// Virtual seconds from each committed round's request to its commit, summed, and the
        /// longest.
        package var roundSeconds = 0.0
        package var roundSecondsMax = 0.0
        /// Virtual seconds from each failure to the end of its recovery, summed, the longest,
        /// and how many were timed.
        package var recoverySeconds = 0.0
        package var recoverySecondsMax = 0.0
        package var recoveriesTimed = 0
        /// Virtual seconds from each failure to its relaunched rank back at the safe point it
        /// had reached (`caughtUp`), summed, the longest, and how many were timed: after a lone
        /// replay that ends when its log does, the steps re-executed live still follow.
        package var caughtUpSeconds = 0.0
        package var caughtUpSecondsMax = 0.0
        package var caughtUpTimed = 0
        /// Virtual seconds the job took.
        package var virtualSeconds = 0.0
        /// Minimal checkpoints: ranks that kept their entry in a round (their ACK said so),
        /// such entries in committed lines, and global rollbacks to a line with one.
        package var keeps = 0
        package var keptEntriesCommitted = 0
        package var rollbacksToKeptEntries = 0
        /// Rounds' captures: the payload bytes retained at each capture, and of them those in
        /// flight across the line (what the snapshots stored), summed.
        package var retainedAtCaptureBytes = 0
        package var inFlightBytes = 0
        /// Nondeterminism the ranks reported (a duplicate whose bytes differ from the delivered copy).
        package var nondeterminismDetected = 0
        /// A hash of the ordered trace of events.
        package var trace: UInt64 = 0xCBF2_9CE4_8422_2325
        /// What was violated, if anything.
        package var violation: String?

        /// Rounds: started by a request (committed or aborted), or under independent
        /// checkpoints the moves of the checkpoint-only line.
        package var rounds: Int { settings.variant == .independent ? commits : roundsStarted }

        /// The control bytes of the rounds per round: requests, step reports, S, ACKs, DONEs,
        /// aborts and trims.
        package var controlBytesPerRound: Int { roundBytes / max(1, rounds) }
        /// The control messages of the rounds per round.
        package var controlMessagesPerRound: Int { roundMessages / max(1, rounds) }
        /// The mean virtual seconds of a committed round (0: none).
        package var meanRoundSeconds: Double { commits == 0 ? 0 : roundSeconds / Double(commits) }
        /// The mean virtual seconds of a recovery (0: none).
        package var meanRecoverySeconds: Double { recoveriesTimed == 0 ? 0 : recoverySeconds / Double(recoveriesTimed) }
        /// The mean virtual seconds from a failure to its rank back at its step (0: none).
        package var meanCaughtUpSeconds: Double { caughtUpTimed == 0 ? 0 : caughtUpSeconds / Double(caughtUpTimed) }

        /// The figures of the run on one line (`lifeline simulate` prints it before the last).
        package var figuresLine: String {
            func milliseconds(_ seconds: Double) -> String { String(Double(Int((seconds * 1e5).rounded())) / 100) }
            return "simulate: figures commits=\(commits) rounds=\(rounds) control_messages=\(controlMessages) control_messages_per_round=\(controlMessagesPerRound) "
                + "supervisor_messages=\(supervisorMessages) round_ms=\(milliseconds(meanRoundSeconds)) "
                + "round_ms_max=\(milliseconds(roundSecondsMax)) crashes=\(crashes) hosts_lost=\(hostsLost) hangs=\(hangs) connection_drops=\(connectionDrops) failed_writes=\(failedWrites) degrades=\(degrades) degraded_commits=\(degradedCommits) resyncs=\(resyncs) recoveries=\(recoveriesTimed) "
                + "recovery_ms=\(milliseconds(meanRecoverySeconds)) recovery_ms_max=\(milliseconds(recoverySecondsMax)) "
                + "caught_up=\(caughtUpTimed) caught_up_ms=\(milliseconds(meanCaughtUpSeconds)) caught_up_ms_max=\(milliseconds(caughtUpSecondsMax)) "
                + "retained_at_capture_bytes=\(retainedAtCaptureBytes) in_flight_bytes=\(inFlightBytes) "
                + "nondeterminism_detected=\(nondeterminismDetected) log_records=\(logRecords) log_bytes=\(logBytes) virtual_s=\(String(Double(Int((virtualSeconds * 1e3).rounded())) / 1e3))"
        }

        /// The last line `lifeline simulate` prints.
        package var summaryLine: String {
            if let violation { return "simulate: violation seed=\(settings.seed): \(violation)" }
            return "simulate: ok ranks=\(settings.rankCount) seed=\(settings.seed) events=\(events) "
                + "control_bytes_per_round=\(controlBytesPerRound) trace=\(String(trace, radix: 16))"
        }
    }

    /// A broken invariant, described.
    struct Violation: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// Something that happens at a moment of virtual time.
    enum Event {
        /// The rank's program goes on (after computing).
        case wake(rank: Int, incarnation: UInt32)
        /// A data message reaches a rank's process, unless the connection it travelled on
        /// (`link`: the channel's generation) dropped meanwhile.
        case data(rank: Int, incarnation: UInt32, link: UInt32, DataHeader, [UInt8])
        /// A control message reaches a rank's process.
        case toRank(rank: Int, incarnation: UInt32, ControlMessage)
        /// A control message from a rank's process reaches the supervisor.
        case toSupervisor(rank: Int, incarnation: UInt32, ControlMessage)
        /// A launched process connected to the supervisor.
        case connected(rank: Int, incarnation: UInt32)
        /// A snapshot write finished.
        case snapshotDurable(rank: Int, incarnation: UInt32, Epoch, name: String)
        /// The supervisor's clock ticks.
        case tick
        /// A rank crashes (whichever process is there).
        case crash(rank: Int)
        /// The supervisor crashes; its ranks die with it, and the job is resumed.
        case crashSupervisor
        /// A coordinator tree's top aggregator delivers a round's gathered step reports or ACKs.
        case gatheredToSupervisor([(rank: Int, incarnation: UInt32, message: ControlMessage)], bytes: Int)
        /// Under a cost model: the supervisor is done with what it was doing, and takes the next
        /// message of its queue.
        case supervisorReady
        /// The connection between two ranks drops (whichever processes are there).
        case dropConnection(Int, Int)
        /// Two ranks whose connection dropped are connected again.
        case reconnect(Int, Int)
        /// A rank's process falls silent: it neither computes nor answers nor beats.
        case hang(rank: Int)
        /// A host is lost: every rank on it crashes at this instant.
        case loseHost(Int)

        /// A small code for the trace.
        var code: UInt64 {
            switch self {
            case .wake: 1
            case .data: 2
            case .toRank: 3
            case .toSupervisor: 4
            case .connected: 5
            case .snapshotDurable: 6
            case .tick: 7
            case .crash: 8
            case .crashSupervisor: 9
            case .gatheredToSupervisor: 10
            case .supervisorReady: 11
            case .dropConnection: 12
            case .reconnect: 13
            case .hang: 14
            case .loseHost: 15
            }
        }

        /// The rank it concerns (-1: none).
        var rank: Int {
            switch self {
            case .wake(let rank, _), .data(let rank, _, _, _, _), .toRank(let rank, _, _), .toSupervisor(let rank, _, _),
                 .connected(let rank, _), .snapshotDurable(let rank, _, _, _), .crash(let rank), .hang(let rank),
                 .dropConnection(let rank, _), .reconnect(let rank, _):
                rank
            case .tick, .crashSupervisor, .gatheredToSupervisor, .supervisorReady, .loseHost:
                -1
            }
        }
    }

    /// An event's place in the queue: earliest time first, then scheduling order. The event
    /// itself waits in `slots`, so that the heap moves three words, not a message.
    struct Scheduled {
        var time: Double
        var order: Int
        var slot: Int

        func precedes(_ other: Scheduled) -> Bool { time < other.time || (time == other.time && order < other.order) }
    }

    /// Where a rank's program is.
    enum Phase: Equatable {
        /// Launched, waiting for START.
        case starting
        /// Before safe point `step` (`step == stepCount`: before the final barrier).
        case atSafePoint(Int)
        /// Passed safe point `step`: runs the step's operations, the next being `operation`.
        case running(Int, operation: Int)
        /// At the final barrier.
        case finished
    }

    /// A rank's process.
    struct Process {
        var incarnation: UInt32
        var alive = true
        var machine: RankMachine?
        var phase = Phase.starting
        var state: UInt64
        /// Data that arrived before START (read once the runtime exists).
        var early: [(DataHeader, [UInt8])] = []
        /// Control messages that arrived before START (handled right after it, in order).
        var earlyControl: [ControlMessage] = []
        /// During a replay, the logged message a receive waits for (sender-based logging).
        var awaiting: DataHeader?
        /// Snapshots this process is writing, oldest first: (round or checkpoint, name).
        var writing: [(epoch: Epoch, name: String)] = []
        /// A round's capture whose cut has not arrived: its snapshot is written once it has.
        var awaitingCut: (epoch: Epoch, name: String)?
        /// Sender-based logging: the rank's side of the supervisor's event logger.
        var eventLogClient: EventLogClient?
        /// Relaunched after it failed: the safe point it had reached then, which it reports
        /// passing again (`caughtUp`), as `lifeline run`'s ranks do.
        var catchUpStep: Int?
        /// Under a cost model: the syncs its deliveries waited for since its last step ended
        /// (added to the next step's time).
        var syncDebt = 0.0
        /// Optimistic logging: records not yet on the disk (lost with the process), and when
        /// the log was last flushed.
        var unflushed: [LogRecord] = []
        var flushedAt = 0.0
        var wakePending = false
        /// Hung: it neither computes, reads nor writes, and sends no heartbeat, until it is killed.
        var hung = false
        /// The mirrors it writes its snapshots to (START, then `writeMirrors`).
        var writeMirrors: StorageMirrors = .both
        /// The launch this process belongs to: it connected to every peer as they were then.
        var launch = 0
        /// Per peer, the incarnation this process's connection reaches, where it reconnected
        /// since its launch (to a restarted peer).
        var reconnected: [Int: UInt32] = [:]
    }

    /// A snapshot on the disk.
    struct Snapshot {
        var epoch: Epoch
        var step: Int
        var ledger: MessageLedger
        var state: UInt64
        var logPosition: UInt64
        var dependencies: DependencyVector
        /// The participant's changes since the last committed checkpoint, at the capture.
        var changes: UInt64
        /// Independent checkpoints: the dependency vector of the interval it closed.
        var intervalDependencies = PerPeer<Int>(rankCount: 0, absent: -1)
        /// The mirrors it is on.
        var mirrors: StorageMirrors = .both
    }

    /// A committed line on the disk: per rank, the snapshot of its entry (nil: the start), and
    /// under independent checkpoints the checkpoint index of each entry.
    struct Line {
        var epoch: UInt64
        var entries: [String?]
        var checkpoints: [Int]? = nil
        /// The one mirror it is committed on (nil: both).
        var onlyOn: StorageMirrors? = nil
    }

    /// A rank's message log on the disk (every record synced: the log rules sync before delivery).
    struct Log {
        var firstIndex: UInt64 = 0
        var records: [LogRecord] = []
        var nextIndex: UInt64 { firstIndex + UInt64(records.count) }
    }

    /// What it runs.
    package let settings: Settings
    @exclusivity(unchecked) var generator: SplitMix64
    let program: ModelProgram
    /// The failure-free run: each rank's states, each channel's messages.
    let oracle: ModelProgram.Run
    @exclusivity(unchecked) var report: Report
    /// Independent checkpoints: the mean virtual seconds between two of a rank's checkpoints.
    let independentInterval: Double
    @exclusivity(unchecked) var now = 0.0
    @exclusivity(unchecked) var queue: [Scheduled] = []
    /// The events in the queue, by slot; free slots are reused.
    @exclusivity(unchecked) var slots: [Event?] = []
    @exclusivity(unchecked) var freeSlots: [Int] = []
    @exclusivity(unchecked) var order = 0
    @exclusivity(unchecked) var supervisor: SupervisorMachine
    @exclusivity(unchecked) var processes: [Process]
    /// The disk: snapshots by name, committed lines (newest last), logs.
    @exclusivity(unchecked) var snapshots: [String: Snapshot] = [:]
    /// Snapshots being written (durable at their `snapshotDurable` event, lost with their process).
    @exclusivity(unchecked) var pendingSnapshots: [String: Snapshot] = [:]
    @exclusivity(unchecked) var lines: [Line] = []
    @exclusivity(unchecked) var logs: [Log]
    /// The line the running ranks descend from (a kept entry of `minimal` stays this one's).
    @exclusivity(unchecked) var lineInForce: Line?
    /// Independent checkpoints: the supervisor's records (on the disk with the manifest).
    @exclusivity(unchecked) var checkpoints: IndependentCheckpoints
    /// Independent checkpoints: records refused (a checkpoint out of order).
    @exclusivity(unchecked) var refusedCheckpoints = 0
    /// FIFO links: when the last message scheduled on each arrives.
    @exclusivity(unchecked) var dataBusyUntil: [Int: Double] = [:]
    /// Per channel (source × N + destination), how often its connection dropped: a message in
    /// flight on an older connection is lost. And until when a dropped one is down.
    @exclusivity(unchecked) var linkGeneration: [Int: UInt32] = [:]
    @exclusivity(unchecked) var linkDownUntil: [Int: Double] = [:]
    @exclusivity(unchecked) var toRankBusyUntil: [Double]
    @exclusivity(unchecked) var toSupervisorBusyUntil: [Double]
    @exclusivity(unchecked) var finished = false
    /// Per rank, each incarnation launched and the launch it belonged to, oldest first.
    @exclusivity(unchecked) var incarnations: [[(launch: Int, incarnation: UInt32)]]
    /// The launches so far.
    @exclusivity(unchecked) var launches = 0
    /// Crashes still to inject.
    @exclusivity(unchecked) var crashesLeft = 0
    /// The mirror that fails, under a storage profile (drawn in one run of two).
    @exclusivity(unchecked) var mirrorFailure: MirrorFailure?
    /// What time costs (`settings.costModel`).
    let costModel: CostModel?
    /// Under a cost model: sends from the supervisor while the current event is handled.
    @exclusivity(unchecked) var pendingDown: [(rank: Int, message: ControlMessage, bytes: Int)] = []
    /// Under a cost model: until when the supervisor, and each aggregator, is busy.
    @exclusivity(unchecked) var supervisorBusyUntil = 0.0
    @exclusivity(unchecked) var aggregatorBusyUntil: [TreeNode: Double] = [:]
    /// Under a cost model: what waits for the supervisor, in arrival order, and whether its
    /// `supervisorReady` is scheduled.
    @exclusivity(unchecked) var supervisorQueue = EventQueue()
    @exclusivity(unchecked) var supervisorReadyPending = false
    /// Under a coordinator tree: the step reports and ACKs each aggregator is gathering.
    @exclusivity(unchecked) var gatherings: [GatheringKey: Gathering] = [:]
    /// When each open round was requested, and when the recovery under way began.
    @exclusivity(unchecked) var roundRequestedAt: [UInt64: Double] = [:]
    @exclusivity(unchecked) var recoveryBeganAt: Double?
    /// Receives a line for every event handled, when set (`lifeline simulate --trace`).
    @exclusivity(unchecked) package var eventLog: ((String) -> Void)?

    /// The virtual seconds a step computes, and the network's delays.
    static let stepSeconds = 0.002...0.02
    static let snapshotSeconds = 0.005...0.05
    static let launchSeconds = 0.02...0.1
    /// Under network faults: the supervisor's heartbeat and join timeouts (virtual seconds; no
    /// timeout otherwise), and how long a dropped connection stays down.
    static let heartbeatTimeoutSeconds = 0.5
    static let joinTimeoutSeconds = 2.0
    static let reconnectSeconds = 0.001...0.05
    /// How often the supervisor tries a failed mirror (virtual seconds; a run lasts about one).
    static let resyncPeriodSeconds = 0.05

    /// A simulation of `settings`, ready to run.
    package init(_ settings: Settings) {
        precondition(settings.rankCount > 0 && settings.stepCount > 0)
        self.settings = settings
        self.costModel = settings.costModel
        generator = SplitMix64(seed: settings.seed)
        program = ModelProgram(pattern: settings.pattern, rankCount: settings.rankCount, stepCount: settings.stepCount)
        oracle = program.failureFree()
        report = Report(settings: settings)
        let drawnInterval = Double.random(in: 0.03...0.3, using: &generator)
        let drawnIndependentInterval = Double.random(in: 0.02...0.2, using: &generator)
        let interval = settings.intervalSeconds ?? drawnInterval
        independentInterval = settings.intervalSeconds ?? drawnIndependentInterval
        supervisor = SupervisorMachine(
            settings: SupervisorMachine.Settings(
                rankCount: settings.rankCount, logging: settings.logging, independent: settings.variant == .independent,
                maxRestarts: 1_000,
                heartbeatTimeoutSeconds: settings.faults.network ? Self.heartbeatTimeoutSeconds : 1e9,
                joinTimeoutSeconds: settings.faults.network ? Self.joinTimeoutSeconds : 1e9,
                resyncPeriodSeconds: Self.resyncPeriodSeconds),
            coordinator: CheckpointCoordinator(
                rankCount: settings.rankCount, intervalSeconds: settings.variant == .independent ? 1e12 : interval,
                committed: .start, now: 0),
            incarnation: 0)
        processes = (0..<settings.rankCount).map { Process(incarnation: 0, alive: false, state: ModelProgram.initialState(rank: $0)) }
        logs = Array(repeating: Log(), count: settings.rankCount)
        checkpoints = IndependentCheckpoints(rankCount: settings.rankCount)
        toRankBusyUntil = Array(repeating: 0, count: settings.rankCount)
        incarnations = Array(repeating: [], count: settings.rankCount)
        toSupervisorBusyUntil = Array(repeating: 0, count: settings.rankCount)
    }

    /// Runs the job to its end, or to the first violation.
    package func run() -> Report {
        do {
            try perform(supervisor.launchEveryRank())
            schedule(.tick, after: 0.01)
            if settings.faults.crashes {
                crashesLeft = Int.random(in: 1...3, using: &generator)
                scheduleCrash()
                if Int.random(in: 0..<3, using: &generator) == 0 {
                    schedule(.crashSupervisor, after: Double.random(in: 0.01...horizon, using: &generator))
                }
            }
            if settings.faults.network { scheduleNetworkFaults() }
            if settings.faults.storage { mirrorFailure = Self.drawMirrorFailure(seed: settings.seed, horizon: horizon) }
            if settings.faults.crashes, settings.hostCount > 1, Bool.random(using: &generator) {
                schedule(.loseHost(Int.random(in: 0..<settings.hostCount, using: &generator)),
                         after: Double.random(in: 0.01...horizon, using: &generator))
            }
            while !finished {
                guard let (time, event) = popNext() else { throw Violation("nothing left to happen: \(describe())") }
                report.events += 1
                guard report.events <= settings.eventsMax else { throw Violation("no end after \(settings.eventsMax) events: \(describe())") }
                now = time
                note(event.code, UInt64(bitPattern: Int64(event.rank)), now.bitPattern)
                if let eventLog { eventLog(String(describing: time) + " " + describe(event)) }
                try handle(event)
                flushControlDown()
            }
            if report.nondeterminismDetected == 0 && !settings.nondeterministic { try checkFinalStates() }
        } catch {
            report.violation = "\(error) (t=\(now), event \(report.events))"
        }
        report.virtualSeconds = now
        report.recoveries += supervisor.recoveries
        return report
    }

    /// Folds words into the trace hash (FNV-1a over their bytes).
    func note(_ words: UInt64...) {
        for word in words {
            for shift in stride(from: 0, to: 64, by: 8) {
                report.trace = (report.trace ^ (word >> UInt64(shift) & 0xFF)) &* 0x100_0000_01B3
            }
        }
    }

    private func handle(_ event: Event) throws {
        switch event {
        case .wake(let rank, let incarnation):
            guard isResponsive(rank, incarnation) else { return }
            processes[rank].wakePending = false
            try act(rank)
            reportNondeterminism(rank)
        case .data(let rank, let incarnation, let link, let header, let payload):
            guard isResponsive(rank, incarnation),
                  link == linkGeneration[header.source.rawValue * settings.rankCount + rank, default: 0]
            else { return }
            if processes[rank].machine == nil {
                processes[rank].early.append((header, payload))
                return
            }
            processes[rank].machine!.arrive(header, payload)
            reportNondeterminism(rank)
            wake(rank, after: 0)
        case .toRank(let rank, let incarnation, let message):
            guard isResponsive(rank, incarnation) else { return }
            try rankHandles(message, rank: rank)
        case .toSupervisor(let rank, let incarnation, let message):
            guard isCurrent(rank, incarnation) else { return }
            guard !queueForSupervisor(event) else { return }
            report.supervisorMessages += 1
            try supervisorHandles(message, from: rank)
        case .gatheredToSupervisor(let messages, _):
            guard !queueForSupervisor(event) else { return }
            report.supervisorMessages += 1
            for (rank, incarnation, message) in messages where isCurrent(rank, incarnation) {
                try supervisorHandles(message, from: rank)
            }
        case .supervisorReady:
            supervisorReadyPending = false
            guard !supervisorQueue.isEmpty else { return }
            let next = supervisorQueue.removeFirst()!
            supervisorBusyUntil = now + supervisorServiceSeconds(next)
            if !supervisorQueue.isEmpty {
                supervisorReadyPending = true
                schedule(.supervisorReady, at: supervisorBusyUntil)
            }
            report.supervisorMessages += 1
            switch next {
            case .toSupervisor(let rank, let incarnation, let message) where isCurrent(rank, incarnation):
                try supervisorHandles(message, from: rank)
            case .gatheredToSupervisor(let messages, _):
                for (rank, incarnation, message) in messages where isCurrent(rank, incarnation) {
                    try supervisorHandles(message, from: rank)
                }
            default:
                break
            }
        case .connected(let rank, let incarnation):
            guard isResponsive(rank, incarnation) else { return }
            try perform(supervisor.handleConnected(rank, now: now))
        case .snapshotDurable(let rank, let incarnation, let epoch, let name):
            guard isResponsive(rank, incarnation) else { return }
            try snapshotDurable(rank: rank, epoch: epoch, name: name)
        case .tick:
            try perform(supervisor.coordinator.handleTick(now: now).map(SupervisorMachine.Action.round))
            try perform(supervisor.checkFreeze(now: now, facts: DiskFacts(self)))
            if settings.faults.network { try checkHeartbeats() }
            if settings.faults.storage { try resynchroniseIfDue() }
            schedule(.tick, after: Double.random(in: 0.005...0.05, using: &generator))
        case .crash(let rank):
            try crash(rank)
            crashesLeft -= 1
            if crashesLeft > 0 { scheduleCrash() }
        case .crashSupervisor:
            try crashSupervisor()
        case .dropConnection(let first, let second):
            dropConnection(first, second)
        case .reconnect(let first, let second):
            reconnect(first, second)
        case .hang(let rank):
            // Only a rank that runs (started): one that never connects is another failure.
            guard processes[rank].alive, processes[rank].machine != nil, !processes[rank].hung else { return }
            processes[rank].hung = true
            report.hangs += 1
        case .loseHost(let host):
            report.hostsLost += 1
            // The processes on the host now all die; the supervisor hears of them one by one, and
            // a recovery it plans meanwhile may already have replaced some (those live on).
            let lost = (0..<settings.rankCount).filter { $0 * settings.hostCount / settings.rankCount == host }
                .map { (rank: $0, incarnation: processes[$0].incarnation) }
            for (rank, incarnation) in lost where processes[rank].incarnation == incarnation {
                try crash(rank)
            }
        }
    }

    /// A duplicate whose bytes differ from the delivered copy was found: the rank tells the
    /// supervisor, as `RankRuntime` does.
    func reportNondeterminism(_ rank: Int) {
        guard processes[rank].alive, let found = processes[rank].machine?.takeNondeterminism() else { return }
        sendToSupervisor(from: rank, .nondeterminism(source: found.source, sequence: found.sequence))
    }

    func isCurrent(_ rank: Int, _ incarnation: UInt32) -> Bool {
        processes[rank].alive && processes[rank].incarnation == incarnation
    }

    /// Whether the current process of `rank` is `incarnation` and not hung (a hung one reads
    /// nothing; what it sent before is still on its way).
    func isResponsive(_ rank: Int, _ incarnation: UInt32) -> Bool {
        isCurrent(rank, incarnation) && !processes[rank].hung
    }

    /// About the run's length: crashes drawn within it fall in rounds, recoveries and plain
    /// steps; no fault is injected after it.
    var horizon: Double {
        Double(settings.stepCount) * (costModel.map { 1.2 * $0.stepSeconds } ?? (Self.stepSeconds.upperBound + 0.01))
    }

    /// Whether a write fails now: one in eight under a storage profile, until the horizon
    /// (after it no fault is injected, and the job must finish).
    func failsWrite() -> Bool {
        settings.faults.storage && now < horizon && Int.random(in: 0..<8, using: &generator) == 0
    }

    private func scheduleCrash() {
        schedule(.crash(rank: Int.random(in: 0..<settings.rankCount, using: &generator)),
                 after: Double.random(in: 0.01...horizon, using: &generator))
    }

    // MARK: The queue

    func schedule(_ event: Event, after delay: Double) {
        schedule(event, at: now + delay)
    }

    func schedule(_ event: Event, at time: Double) {
        order += 1
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
            slots[slot] = event
        } else {
            slot = slots.count
            slots.append(event)
        }
        queue.append(Scheduled(time: time, order: order, slot: slot))
        var child = queue.count - 1
        while child > 0, queue[child].precedes(queue[(child - 1) / 2]) {
            queue.swapAt(child, (child - 1) / 2)
            child = (child - 1) / 2
        }
    }

    private func popNext() -> (time: Double, event: Event)? {
        guard !queue.isEmpty else { return nil }
        queue.swapAt(0, queue.count - 1)
        let next = queue.removeLast()
        let event = slots[next.slot].take()!
        freeSlots.append(next.slot)
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < queue.count else { break }
            let right = left + 1
            let child = right < queue.count && queue[right].precedes(queue[left]) ? right : left
            guard queue[child].precedes(queue[parent]) else { break }
            queue.swapAt(child, parent)
            parent = child
        }
        return (next.time, event)
    }

    /// A link's delay: mostly short, sometimes long (a busy link), so channels overtake each other.
    func linkDelay() -> Double {
        Int.random(in: 0..<10, using: &generator) == 0
            ? Double.random(in: 0.01...0.08, using: &generator)
            : Double.random(in: 0.0001...0.004, using: &generator)
    }

    /// The process of `rank` computes for a while, then goes on.
    func wake(_ rank: Int, after delay: Double) {
        guard !processes[rank].wakePending else { return }
        processes[rank].wakePending = true
        schedule(.wake(rank: rank, incarnation: processes[rank].incarnation), after: delay)
    }

    // MARK: Links

    /// A control message from the supervisor to the current process of `rank`.
    func sendToRank(_ rank: Int, _ message: ControlMessage) {
        let bytes = countControl(message)
        if costModel != nil {
            pendingDown.append((rank, message, bytes))  // timed when the event's handling ends
            return
        }
        let arrival = max(now + linkDelay(), toRankBusyUntil[rank])
        toRankBusyUntil[rank] = arrival
        schedule(.toRank(rank: rank, incarnation: processes[rank].incarnation, message), at: arrival)
    }

    /// A control message from the current process of `rank` to the supervisor.
    func sendToSupervisor(from rank: Int, _ message: ControlMessage) {
        let bytes = countControl(message)
        if costModel != nil {
            sendUp(from: rank, message, bytes: bytes)
            return
        }
        let arrival = max(now + linkDelay(), toSupervisorBusyUntil[rank])
        toSupervisorBusyUntil[rank] = arrival
        schedule(.toSupervisor(rank: rank, incarnation: processes[rank].incarnation, message), at: arrival)
    }

    @discardableResult
    private func countControl(_ message: ControlMessage) -> Int {
        let bytes = message.frame().count
        report.controlMessages += 1
        report.controlBytes += bytes
        switch message {
        case .checkpointRequest, .stepReport, .safePointChosen, .captured, .cut, .ack, .checkpointDone, .abort, .trim:
            report.roundMessages += 1
            report.roundBytes += bytes
        default:
            break
        }
        return bytes
    }

    /// The incarnation of `destination` that `source`'s process reaches: the one it reconnected
    /// to, else the newest launched up to the source's own launch (ranks of one launch connect
    /// to each other and to every peer already running).
    func reach(from source: Int, to destination: Int) -> UInt32? {
        if let incarnation = processes[source].reconnected[destination] { return incarnation }
        let launch = processes[source].launch
        return incarnations[destination].last { $0.launch <= launch }?.incarnation
    }

    /// A data message from `source`'s process: lost when its connection no longer reaches the
    /// destination's current process (it is retained, and sent again when they reconnect).
    func transmit(from source: Int, _ message: RankMachine.Outgoing) {
        let destination = message.destination.rawValue
        report.dataMessages += 1
        guard processes[destination].alive, reach(from: source, to: destination) == processes[destination].incarnation
        else { return }
        let key = source * settings.rankCount + destination
        let delay = costModel.map { ($0.latencySeconds + $0.transfer(message.payload.count + DataHeader.byteCount)) * jitter() }
        // A connection that dropped carries nothing until it is back.
        let arrival = max(max(now, linkDownUntil[key] ?? 0) + (delay ?? linkDelay()), dataBusyUntil[key] ?? 0)
        dataBusyUntil[key] = arrival
        schedule(.data(rank: destination, incarnation: processes[destination].incarnation, link: linkGeneration[key, default: 0],
                       message.header, message.payload),
                 at: arrival)
    }

    // MARK: Checks

    /// Every rank's final state is its failure-free one.
    private func checkFinalStates() throws {
        for rank in 0..<settings.rankCount where processes[rank].state != oracle.states[rank][settings.stepCount] {
            throw Violation("rank \(rank) ended with state \(hex(processes[rank].state)), the failure-free run with "
                + hex(oracle.states[rank][settings.stepCount]))
        }
    }

    func hex(_ value: UInt64) -> String { String(value, radix: 16) }

    /// An event in words, for `--trace`.
    func describe(_ event: Event) -> String {
        switch event {
        case .wake(let rank, let incarnation): "wake r\(rank).\(incarnation) \(processes[rank].phase)"
        case .data(let rank, let incarnation, _, let header, let payload):
            "data r\(header.source.rawValue).\(header.incarnation)->r\(rank).\(incarnation) #\(header.sequence.rawValue) e\(header.epoch.rawValue) "
                + (ModelProgram.state(of: payload).map(hex) ?? "\(payload.count)B")
        case .toRank(let rank, let incarnation, let message): "control ->r\(rank).\(incarnation) \(message)"
        case .toSupervisor(let rank, let incarnation, let message): "control r\(rank).\(incarnation)-> \(message)"
        case .connected(let rank, let incarnation): "connected r\(rank).\(incarnation)"
        case .snapshotDurable(let rank, let incarnation, let epoch, let name): "durable r\(rank).\(incarnation) \(epoch) \(name)"
        case .tick: "tick \(supervisor.coordinator.state)"
        case .crash(let rank): "crash r\(rank)"
        case .crashSupervisor: "crash supervisor"
        case .supervisorReady: "supervisor ready (\(supervisorQueue.count) queued)"
        case .dropConnection(let first, let second): "connection r\(first)-r\(second) drops"
        case .reconnect(let first, let second): "connection r\(first)-r\(second) back"
        case .hang(let rank): "hang r\(rank)"
        case .loseHost(let host): "host \(host) lost"
        case .gatheredToSupervisor(let messages, let bytes):
            "gathered -> \(messages.count) messages, \(bytes) B: " + messages.map { "r\($0.rank).\($0.incarnation) \($0.message)" }.joined(separator: "; ")
        }
    }

    /// Where the job stands, for a violation: the coordinator, and the ranks not at the final
    /// barrier (the first 32 of them).
    func describe() -> String {
        let round = switch supervisor.coordinator.state {
        case .idle(let due): "idle until \(due)"
        case .collecting(let epoch, let reports): "collecting \(epoch) (\(reports.count { $0 != nil }) reports)"
        case .capturing(let epoch, let step, let acks): "capturing \(epoch) at step \(step) (\(acks.count { $0 != nil }) ACKs)"
        case .committing(let epoch, _, _): "committing \(epoch)"
        case .recovering: "recovering"
        case .released: "released"
        }
        let waiting = processes.indices.filter { !processes[$0].alive || processes[$0].phase != .finished }
        return "coordinator \(round); ranks not at the barrier: \(waiting.count) of \(processes.count): "
            + waiting.prefix(32).map { "\($0):\(processes[$0].alive ? "\(processes[$0].phase)" : "dead")" }.joined(separator: " ")
            + (waiting.count > 32 ? " …" : "")
    }
}

extension Simulation {
    /// The smallest settings found that still violate, when `settings` did: the same seed,
    /// schemes, program and faults on fewer ranks and fewer steps, tried greedily (halving,
    /// then one less) for at most `attempts` runs. A different size draws a different run, so
    /// this is a search, not a proof of minimality; what it returns always violates.
    package static func shrink(_ settings: Settings, attempts: Int = 60,
                               violates: (Settings) -> Bool = { Simulation($0).run().violation != nil }) -> Settings {
        var best = settings
        var left = attempts
        var improved = true
        while improved && left > 0 {
            improved = false
            var candidates: [Settings] = []
            for ranks in Set([best.rankCount / 2, best.rankCount - 1]).sorted() where ranks >= 1 && ranks < best.rankCount {
                var smaller = best
                smaller.rankCount = ranks
                candidates.append(smaller)
            }
            for steps in Set([best.stepCount / 2, best.stepCount - 1]).sorted() where steps >= 1 && steps < best.stepCount {
                var shorter = best
                shorter.stepCount = steps
                candidates.append(shorter)
            }
            for candidate in candidates where left > 0 {
                left -= 1
                if violates(candidate) {
                    best = candidate
                    improved = true
                    break
                }
            }
        }
        return best
    }
}
