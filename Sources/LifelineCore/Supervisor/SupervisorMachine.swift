/// The supervisor's decisions, apart from its I/O: which ranks are launched and when each is
/// told to START, what a connection, an exit or a silence means, and what a failure leads to.
/// The runtime's `Supervisor` feeds it what happened (a launch done, a handshake, an exit,
/// a control message, the time) and performs the actions it returns: sending on a rank's
/// control connection, spawning and killing processes, writing the manifest, recording events.
/// A simulator can drive the same machine with virtual processes and a virtual clock.
///
/// | event | actions |
/// |---|---|
/// | every rank of a launch connected | START to each (its plan); after a partial restart, `peerRestarted` to the others, then THAW to the frozen survivors |
/// | a rank's exit the machine did not cause | a failure (`SupervisorMachine+Recovery`) |
/// | a connected rank silent past the heartbeat timeout, or one not connected within the join timeout | kill it; a failure |
/// | the program never joined (a clean exit or a silence before any rank connected) | the job fails: it is not a Lifeline program |
/// | a message for a rank not connected yet | held until it connects (at most `unsentMessagesMax`) |
///
/// What a failure leads to is in `SupervisorMachine+Recovery` and the planners of
/// LifelineCore/Recovery; the checkpoint rounds are the `CheckpointCoordinator` it holds.
/// Time is an argument (seconds on the job's clock).
package struct SupervisorMachine: Sendable {
    /// What the job is, as far as the decisions go.
    package struct Settings: Sendable, Equatable {
        /// The number of ranks.
        package var rankCount: Int
        /// The job's logging mode.
        package var logging: LoggingMode
        /// Whether ranks checkpoint independently (no coordinated rounds).
        package var independent: Bool
        /// `--max-restarts`.
        package var maxRestarts: Int
        /// A connected rank silent this long (seconds) is hung.
        package var heartbeatTimeoutSeconds: Double
        /// A launched rank that has not connected within this (seconds) failed to start.
        package var joinTimeoutSeconds: Double
        /// `--stop-timeout`: a stop's checkpoint that has not committed within this (seconds)
        /// is given up, and the job stops at once.
        package var stopTimeoutSeconds: Double
        /// `--walltime` (seconds from this supervisor's start; nil: none).
        package var walltimeSeconds: Double?
        /// Seconds between two tries of a failed mirror.
        package var resyncPeriodSeconds: Double
        /// Whether the supervisor's two mirrors hold the manifest alone: partner hosts keep
        /// the ranks' copies (`MirrorPolicy.holdsManifestOnly`).
        package var mirrorsHoldManifestOnly: Bool

        /// Settings with every field given (by default a stop timeout of 30 s, no walltime, and
        /// a failed mirror tried every second, the ranks' snapshots on the mirrors).
        package init(rankCount: Int, logging: LoggingMode, independent: Bool, maxRestarts: Int,
                     heartbeatTimeoutSeconds: Double, joinTimeoutSeconds: Double, stopTimeoutSeconds: Double = 30,
                     walltimeSeconds: Double? = nil, resyncPeriodSeconds: Double = 1, mirrorsHoldManifestOnly: Bool = false) {
            self.rankCount = rankCount
            self.logging = logging
            self.independent = independent
            self.maxRestarts = maxRestarts
            self.heartbeatTimeoutSeconds = heartbeatTimeoutSeconds
            self.joinTimeoutSeconds = joinTimeoutSeconds
            self.stopTimeoutSeconds = stopTimeoutSeconds
            self.walltimeSeconds = walltimeSeconds
            self.resyncPeriodSeconds = resyncPeriodSeconds
            self.mirrorsHoldManifestOnly = mirrorsHoldManifestOnly
        }
    }

    /// One rank's process as the supervisor's decisions see it.
    package struct Rank: Sendable, Equatable {
        /// The incarnation of its process (unique in the job: every launch takes the next).
        package var incarnation: UInt32 = 0
        /// Whether the process runs (launched and not yet reaped).
        package var alive = false
        /// Whether the supervisor caused or expects its exit (stopped for a recovery, released).
        package var exitExpected = false
        /// Whether the process connected (joined the job).
        package var joined = false
        /// Whether its control connection is open now.
        package var connected = false
        /// When the supervisor last heard from it (job clock).
        package var lastHeard = 0.0
        /// The last safe point it reported (-1: none).
        package var step = -1
        /// What its START tells it.
        package var plan = StartPlan()
        /// Control messages for it before it connected, sent when it does.
        fileprivate(set) var unsent: [ControlMessage] = []
    }

    /// A launch to perform: spawn each rank's new process, beginning where `restart` says,
    /// then report each (`launching`) and the whole (`launched`).
    package struct Launch: Sendable, Equatable {
        /// The ranks, in order, and where each begins.
        package var restart: [RecoveryPlan.Restart]
        /// Whether the ranks replay their message logs.
        package var replayLog: Bool
        /// Optimistic logging: how far the failed rank's states can be recovered.
        package var replayLimit: RecoveryPlan.ReplayLimit?
        /// Independent checkpoints: record the recovery line in the manifest before the launch
        /// (a partial rollback; the records after each restart's checkpoint are forgotten).
        package var recordsRecoveryLine: Bool

        /// The ranks launched.
        package var ranks: [Int] { restart.map(\.rank) }
    }

    /// Why the job cannot go on.
    package enum Failure: Sendable, Equatable {
        /// A rank exited cleanly without joining, or did not connect within `seconds`: the
        /// program is not a Lifeline program.
        case notJoined(rank: Int, seconds: Double?)
        /// The program failed the same way from the same line again.
        case sameErrorAgain(rank: Int, exit: String, epoch: UInt64)
        /// More failures than `--max-restarts`.
        case restartsExhausted(failures: Int)
        /// Every rank waits for a message no rank will send, and nothing is in flight.
        case deadlock(waits: [RankWait])
        /// A rank that had joined exited with status 0 before calling `finish()`: a restart
        /// would do the same.
        case exitedWithoutFinish(rank: Int, step: Int)
    }

    /// What happened, for the event log and the terminal (the runtime words it).
    package enum Note: Sendable, Equatable {
        /// A rank failed; `epoch`: the newest committed round (nil: during a freeze, where the
        /// failure joins the recovery under way).
        case failure(rank: Int, cause: String, step: Int, epoch: UInt64?)
        /// A rank stopped answering (or never connected) and was killed.
        case hang(rank: Int, silenceSeconds: Double)
        /// Every rank of a launch connected and got START.
        case ranksStarted(count: Int)
        /// A rank restarted alone (or with its orphans) begins replaying.
        case replayStart(rank: Int, incarnation: UInt32)
        /// Every rank rolls back to the newest line.
        case rollingBack(rank: Int, cause: String, step: Int, lineEpoch: UInt64)
        /// The failed rank restarts alone from `checkpoint` (independent checkpoints) or the
        /// newest line, and replays its log.
        case restartingAlone(rank: Int, cause: String, step: Int, checkpoint: Int?, lineEpoch: UInt64)
        /// The recovery a logging mode wanted was not possible: every rank rolls back.
        /// `optimistic`: it was optimistic logging's plan (found after the freeze).
        case fallback(rank: Int, reason: String, optimistic: Bool)
        /// A recovery begins.
        case recoveryStart(rank: Int, mode: RecoveryPlan.Mode)
        /// The restarted ranks are back, `seconds` after the failure; `rank`: the one rank of a
        /// lone replay (several replaying side by side each end on their own).
        case recoveryDone(ranks: Int, seconds: Double, rank: Int? = nil)
        /// `rank`, relaunched after it failed, passed again the safe point `step` it had reached,
        /// `seconds` after the failure: the job is back where the failure found it.
        case caughtUp(rank: Int, step: Int, seconds: Double)
        /// A survivor did not answer the freeze in time and rolls back too.
        case freezeUnanswered(rank: Int)
        /// Optimistic logging: the failed rank recovers up to `recoverable`; `orphans` roll back.
        /// `others`: the ranks that failed with it, each with the state it recovers up to.
        case orphans(rank: Int, recoverable: UInt64, orphans: [Int], others: [Int: UInt64] = [:])
        /// Independent checkpoints: the recovery line found after `first` failed.
        case recoveryLine(first: Int, IndependentPartialRollback.Line)
        /// A message for a rank that has not connected was dropped (too many held).
        case unsentDropped(rank: Int, message: ControlMessage)
        /// Independent checkpoints: a rank could not write its checkpoint `index`; it is
        /// restarted from its last durable one.
        case checkpointUnwritten(rank: Int, index: UInt64, reason: String)
        /// `rank` sent a control frame that cannot be read: it is killed and recovered
        /// (`recovered`), or it was already ending (its exit expected, or gone) and nothing more
        /// is done.
        case malformed(rank: Int, detail: String, recovered: Bool)
        /// No rank passed a new safe point for `silentSeconds`; where each waits (nil: it
        /// computes, or did not answer).
        case stall(waits: [RankWait?], silentSeconds: Double)
    }

    /// What the runtime must do.
    package enum Action: Sendable, Equatable {
        /// Write a control message on a rank's (open) control connection.
        case send(Int, ControlMessage)
        /// Perform what the checkpoint coordinator decided.
        case round(CheckpointCoordinator.Action)
        /// SIGKILL the live ranks among these and wait until they are reaped (their exits are
        /// expected; report them with `handleExit`).
        case stop([Int])
        /// SIGKILL a rank without waiting (a hang); its exit is expected.
        case kill(Int)
        /// Spawn processes.
        case launch(Launch)
        /// Record or say something.
        case note(Note)
        /// Stop every rank; the job ends with this failure.
        case fail(Failure)
    }

    /// The job.
    package let settings: Settings
    /// The checkpoint rounds (independent checkpoints: never starts one).
    package var coordinator: CheckpointCoordinator
    /// Each rank's process.
    package private(set) var ranks: [Rank]
    /// The incarnation the next launched process gets.
    package private(set) var nextIncarnation: UInt32
    /// Whether launches recover ranks (after the first launch of `run`, or any of `resume`).
    package private(set) var restartsRanks: Bool
    /// The ranks of the last launch, until every one has connected and got START.
    package private(set) var starting: [Int] = [] {
        didSet {
            startingSet = Set(starting)
            startingConnected = startingSet.filter { ranks[$0].connected }
        }
    }
    /// `starting` as a set, and those of its ranks that connected (a launch of N ranks costs
    /// O(N) connections, not a scan of the launch per connection).
    private var startingSet: Set<Int> = []
    private var startingConnected: Set<Int> = []
    /// Whether any rank ever joined: the program is a Lifeline program.
    package private(set) var programJoined = false
    /// The mirrors written, and what a failed write leads to (`MirrorPolicy`).
    package private(set) var mirrors: MirrorPolicy
    /// The mirrors ranks write (both, unless one failed and the mirrors hold more than the
    /// manifest); START carries it.
    package var writeMirrors: StorageMirrors { mirrors.ranksWrite }
    /// Stopping on request (SIGINT, SIGTERM, the walltime).
    package private(set) var stopControl: StopControl
    /// Watches for a job that stopped passing safe points (nil: not watched).
    package private(set) var stalls: StallDetector?

    // Recovery (see `SupervisorMachine+Recovery`).

    /// Counts failures and chooses the planner for each.
    package internal(set) var policy: RecoveryPolicy
    /// Recoveries completed.
    package internal(set) var recoveries = 0
    /// When the recovery under way began (nil: none).
    package internal(set) var recoveryStartedAt: Double?
    /// The ranks recovering alone by replaying their logs. Under pessimistic and sender-based
    /// logging ranks that fail together (a lost host's) each replay alone, at the same time;
    /// the recovery ends when the last has replayed.
    package internal(set) var replaying: Set<Int> = []
    /// When each rank replaying alone failed (its recovery's own duration counts from there).
    package internal(set) var replayFailedAt: [Int: Double] = [:]
    /// Per rank that failed and is not back yet: the safe point it had reached and when it
    /// failed, the start its recovery counts from. Its relaunch carries the step
    /// (`catchUpStep`); its `caughtUp` is noted with the time since (`handleCaughtUp`).
    package internal(set) var catchingUp: [Int: (step: Int, since: Double)] = [:]
    /// Optimistic logging: the ranks restarted together (the failed one and its orphans).
    package internal(set) var restartedGroup: [Int]?
    /// Optimistic logging: the ranks of the group an earlier plan restarted that had not yet
    /// replayed when a new freeze began (their logs may still reach into the execution that
    /// plan discarded: they cannot join the new recovery).
    package internal(set) var earlierGroupUnreplayed: Set<Int> = []
    /// Optimistic logging: the ranks of `restartedGroup` that have replayed their logs. The
    /// recovery ends when all have: a rank still replaying must not capture a round (its
    /// snapshot would record the log's end while its state is behind it).
    package internal(set) var replayedInGroup: Set<Int> = []
    /// The survivors frozen for a partial recovery until they have all answered; nil otherwise.
    package internal(set) var freezing: Freeze?
    /// Survivors to thaw once the restarted ranks are connected.
    package internal(set) var survivorsToThaw: Set<Int> = []
    /// Ranks launched to re-execute from their entry (a rollback, a resume) that have not yet
    /// reported their log open (`replayComplete`): until they do, their log may still hold
    /// deliveries the rollback undid, and they cannot recover alone.
    package internal(set) var uncutLogs: Set<Int> = []

    /// Sender-based logging: the ranks' determinants and logged values, in memory.
    package private(set) var eventLogger: EventLogger

    /// The most control messages held for a rank that has not connected yet (a round's few).
    package static let unsentMessagesMax = 64

    /// A machine for a job whose next process takes `incarnation` (0 for a new job: its first
    /// launch starts the ranks afresh; later ones recover them), with `coordinator` for its
    /// rounds and `stalls` to watch for a job that stopped passing safe points.
    package init(settings: Settings, coordinator: CheckpointCoordinator, incarnation: UInt32, stalls: StallDetector? = nil) {
        self.stalls = stalls
        self.settings = settings
        self.coordinator = coordinator
        self.ranks = Array(repeating: Rank(), count: settings.rankCount)
        self.eventLogger = EventLogger(rankCount: settings.logging == .senderBased ? settings.rankCount : 0)
        self.nextIncarnation = incarnation
        self.restartsRanks = incarnation > 0
        self.policy = RecoveryPolicy(logging: settings.logging, independent: settings.independent, maxRestarts: settings.maxRestarts)
        self.stopControl = StopControl(stopTimeoutSeconds: settings.stopTimeoutSeconds, walltimeSeconds: settings.walltimeSeconds)
        self.mirrors = MirrorPolicy(resyncPeriodSeconds: settings.resyncPeriodSeconds,
                                    holdsManifestOnly: settings.mirrorsHoldManifestOnly)
    }

    /// Failures so far in this supervisor run.
    package var failures: Int { policy.failures }

    /// Whether a recovery is under way in any of its phases (no stall is reported meanwhile,
    /// and a failed mirror is not resynchronised).
    package var isRecovering: Bool {
        recoveryStartedAt != nil || !replaying.isEmpty || !starting.isEmpty || !survivorsToThaw.isEmpty || freezing != nil
            || restartedGroup != nil || coordinator.state == .recovering || coordinator.state == .released
    }

    // MARK: Stopping on request

    /// Whether a checkpoint round can start now: not under independent checkpoints (there are
    /// none), not once a rank reached the final barrier, not while a rank replays alone.
    package var roundPossible: Bool {
        !settings.independent && !coordinator.finished.contains(true) && replaying.isEmpty
    }

    /// A stop was requested (`reason` names it: "SIGINT"): a checkpoint, then the stop; or the
    /// stop at once. The runtime performs `.round` and stops on `StopControl.Decision.stopNow`.
    package mutating func requestStop(signal: Int32, reason: String, now: Double) -> (StopControl.Decision, [Action]) {
        decided(stopControl.request(signal: signal, reason: reason, now: now, roundPossible: roundPossible), now: now)
    }

    /// Time passed: the stop's round overdue, or the walltime near (`elapsed`: seconds since this
    /// supervisor started; `lastRoundSeconds`: what the last round took). SIGTERM is what a
    /// walltime stop counts as.
    package mutating func checkStop(now: Double, elapsed: Double, lastRoundSeconds: Double, stopSignal: Int32)
        -> (StopControl.Decision, [Action])?
    {
        stopControl.tick(now: now, elapsed: elapsed, lastRoundSeconds: lastRoundSeconds, roundPossible: roundPossible,
                         stopSignal: stopSignal).map { decided($0, now: now) }
    }

    /// A round committed: when a stop awaited it, the job stops now.
    package mutating func stopAfterCommit() -> StopControl.Decision? {
        stopControl.committed()
    }

    private mutating func decided(_ decision: StopControl.Decision, now: Double) -> (StopControl.Decision, [Action]) {
        guard case .checkpointThenStop = decision else { return (decision, []) }
        return (decision, coordinator.handleCheckpointWanted(now: now).map(Action.round))
    }

    // MARK: Requests and failures of the ranks' checkpoints

    /// A rank asked for a checkpoint (its retained messages or its log near their maximum): a
    /// round, unless the ranks checkpoint independently.
    package mutating func handleCheckpointWanted(now: Double) -> [Action] {
        settings.independent ? [] : coordinator.handleCheckpointWanted(now: now).map(Action.round)
    }

    /// A rank could not write its snapshot for `round` (the mirror it failed on, if any, went to
    /// `writeFailed` first). The round aborts; under independent checkpoints, where there is no
    /// round, the rank's interval numbering now runs ahead of the records, so it is killed and
    /// restarted from its last durable checkpoint like a failed rank.
    package mutating func handleSnapshotFailed(
        from rank: Int, round: Epoch, reason: String, now: Double, facts: some RecoveryFacts
    ) -> [Action] {
        guard settings.independent else {
            return coordinator.handleSnapshotFailed(from: RankID(rank), round: round, reason: reason, now: now).map(Action.round)
        }
        guard ranks[rank].alive, !ranks[rank].exitExpected else { return [] }
        return killAsFailed(rank, .checkpointUnwritten(rank: rank, index: round.rawValue, reason: reason),
                            cause: "could not write checkpoint \(round.rawValue): \(reason)", now: now, facts: facts)
    }

    /// `rank` sent a control frame that cannot be read (`detail` says how): its stream can no
    /// longer be trusted, nor followed (where the next frame starts is unknown), so the rank is
    /// killed and recovered as a failed rank — the job goes on. What it sent before that frame
    /// was handled as usual. A rank already ended is recovered through its exit.
    package mutating func handleMalformed(from rank: Int, detail: String, now: Double, facts: some RecoveryFacts) -> [Action] {
        guard ranks.indices.contains(rank) else { return [] }
        guard ranks[rank].alive, !ranks[rank].exitExpected else { return [.note(.malformed(rank: rank, detail: detail, recovered: false))] }
        return killAsFailed(rank, .malformed(rank: rank, detail: detail, recovered: true),
                            cause: "sent a control frame that cannot be read (\(detail))", now: now, facts: facts)
    }

    /// Kills `rank` (its exit is then expected) and recovers it as a failed rank, saying why.
    private mutating func killAsFailed(_ rank: Int, _ note: Note, cause: String, now: Double, facts: some RecoveryFacts) -> [Action] {
        ranks[rank].exitExpected = true
        return [.kill(rank), .note(note)] + handleFailure(rank, cause: cause, programExit: nil, now: now, facts: facts)
    }

    // MARK: Committing a line

    /// A rank's entry in a line about to be committed.
    package enum LineEntry: Sendable, Equatable {
        /// The snapshot it wrote for the round, by its current process.
        case wrote(incarnation: UInt32)
        /// Its entry in the line in force (minimal checkpoints: it changed nothing since); none
        /// when that line has none for it (it restarts from the start).
        case keeps
    }

    /// What round `acks` commit: each rank's entry, and the one mirror the new snapshots are
    /// all on (nil: both). Nil when they share no mirror written now: the round cannot commit
    /// (`CheckpointCoordinator.handleCommitFailed`).
    package func lineToCommit(_ acks: [Acknowledgement]) -> (entries: [LineEntry], onlyOn: StorageMirrors?)? {
        let (onlyOn, shared) = mirrors.commitMirror(acks.filter { !$0.kept }.map(\.mirrors))
        guard shared else { return nil }
        let entries = acks.indices.map { rank in
            acks[rank].kept ? LineEntry.keeps : .wrote(incarnation: ranks[rank].incarnation)
        }
        return (entries, onlyOn)
    }

    // MARK: Failing mirrors

    /// A write to `mirror` (`.a` or `.b`) failed with `reason`: degrade to the other mirror
    /// (every rank is told to write it alone, unless the mirrors hold the manifest alone), stop
    /// when it was the last, or nothing when the mirror is not written now. `newestLine`: the
    /// newest committed line when the write was the supervisor's; `byRank`: a rank's write
    /// (`MirrorPolicy.writeFailed`).
    package mutating func writeFailed(
        _ mirror: StorageMirrors, reason: String, now: Double, newestLine: UInt64? = nil, byRank: Bool = false
    ) -> (MirrorPolicy.Decision, [Action]) {
        let decision = mirrors.writeFailed(mirror, reason: reason, now: now, newestLine: newestLine, byRank: byRank)
        guard case .degrade(let writing) = decision, !mirrors.holdsManifestOnly else { return (decision, []) }
        return (decision, broadcast(.writeMirrors(writing)))
    }

    /// Whether to try resynchronising the failed mirror (or an earlier run's `degradedCommits`)
    /// now: only between rounds (no snapshot is being written), outside recoveries, and not
    /// once stopped.
    package mutating func resyncDue(now: Double, degradedCommits: Bool) -> Bool {
        var betweenRounds = settings.independent
        if case .idle = coordinator.state { betweenRounds = true }
        let quiet = betweenRounds && !stopControl.stopped && recoveryStartedAt == nil && replaying.isEmpty && starting.isEmpty
            && freezing == nil
        return mirrors.resyncDue(now: now, degradedCommits: degradedCommits, quiet: quiet)
    }

    /// The failed mirror holds what the kept lines reference again: every rank writes both.
    /// Returns the failure it ended (nil: an earlier run's degraded commits were copied).
    package mutating func resynchronised() -> (MirrorPolicy.Failure?, [Action]) {
        let ended = mirrors.resynchronised()
        return (ended, mirrors.holdsManifestOnly ? [] : broadcast(.writeMirrors(.both)))
    }

    /// A resynchronisation (or a try) took `seconds`, in which the supervisor read nothing: the
    /// ranks' silence was not theirs (heartbeats are judged from now on), and a long try that
    /// failed is not made again at once.
    package mutating func resyncTook(_ seconds: Double, now: Double) {
        guard seconds > MirrorPolicy.longResyncSeconds else { return }
        for rank in ranks.indices where ranks[rank].alive { ranks[rank].lastHeard = now }
        mirrors.resyncTook(seconds, now: now)
    }

    // MARK: Launching and starting

    /// The first launch: every rank begins from the newest committed line (or the start).
    package func launchEveryRank() -> [Action] {
        [.launch(Launch(
            restart: (0..<settings.rankCount).map { RecoveryPlan.Restart($0, .newestLine) }, replayLog: false,
            replayLimit: nil, recordsRecoveryLine: false))]
    }

    /// The START plan of a rank in `launch`, but for where it restores from, which the runtime
    /// reads from the manifest (`restoreEpoch`, `restoreSnapshot`).
    package func startPlan(for launch: Launch) -> StartPlan {
        StartPlan(
            restarted: restartsRanks, deliverableEpoch: coordinator.lastEpoch, replayLog: launch.replayLog,
            replayLimit: launch.replayLimit, writeMirrors: writeMirrors)
    }

    /// `rank`'s new process is about to be spawned with `plan`, beginning at safe point `step`
    /// (-1: the start). Returns its incarnation.
    package mutating func launching(_ rank: Int, plan: StartPlan, step: Int, now: Double) -> UInt32 {
        let incarnation = nextIncarnation
        nextIncarnation += 1
        // A rank relaunched at or past the step it failed at has nothing to catch up.
        if let failed = catchingUp[rank], failed.step <= step { catchingUp[rank] = nil }
        ranks[rank] = Rank(incarnation: incarnation, alive: true, lastHeard: now, step: step, plan: plan)
        coordinator.handleLaunched(RankID(rank))
        if settings.logging == .senderBased {
            // The event logger's records are cut here: a rank relaunched without replay
            // continues from its entry, and its next append says where.
            if !plan.replayLog { eventLogger.forget(rank) }
        } else if plan.restarted, !plan.replayLog, settings.logging != .none {
            uncutLogs.insert(rank)
        } else {
            uncutLogs.remove(rank)
        }
        startingConnected.remove(rank)
        return incarnation
    }

    /// The safe point `rank`, being launched after it failed, had reached then (nil: none to
    /// catch up): it says when it passes it again (`LaunchEnvironment.catchUpStep`).
    package func catchUpStep(of rank: Int) -> Int? { catchingUp[rank]?.step }

    /// `rank` passed again the safe point it had reached when it failed (`caughtUp`).
    package mutating func handleCaughtUp(from rank: Int, step: Int, now: Double) -> [Action] {
        guard let failed = catchingUp.removeValue(forKey: rank) else { return [] }
        return [.note(.caughtUp(rank: rank, step: step, seconds: now - failed.since))]
    }

    // MARK: The event logger (sender-based logging)

    /// `rank` sent log records for the event logger: they are held, and acknowledged when the
    /// rank waits for it.
    package mutating func handleLogEvents(from rank: Int, first: UInt64, records: [[UInt8]], acknowledge: Bool) -> [Action] {
        guard settings.logging == .senderBased, ranks.indices.contains(rank) else { return [] }
        let through = eventLogger.append(rank, first: first, records: records)
        return acknowledge ? send(.eventsLogged(through: through), to: rank) : []
    }

    /// A line committed with `acks` (indexed by rank): the event logger drops the records its
    /// entries cover. (Kept entries keep theirs: the rank delivered nothing since.)
    package mutating func lineCommitted(acks: [Acknowledgement]) {
        guard settings.logging == .senderBased else { return }
        for (rank, ack) in acks.enumerated() where !ack.kept && rank < settings.rankCount {
            eventLogger.trim(rank, before: ack.logPosition)
        }
    }

    /// Every process of a launch was spawned: they get START once all have connected. A lone
    /// restart while others restart alone joins their launch (they start together).
    package mutating func launched(_ ranks: [Int]) {
        if !starting.isEmpty, (starting + ranks).allSatisfy(replaying.contains) {
            starting += ranks.filter { !starting.contains($0) }
            // A rank already connected waits for the joined ones: its join timeout runs anew.
            let launchedAt = ranks.map { self.ranks[$0].lastHeard }.max() ?? 0
            for rank in starting where self.ranks[rank].connected {
                self.ranks[rank].lastHeard = max(self.ranks[rank].lastHeard, launchedAt)
            }
        } else {
            starting = ranks
        }
        restartsRanks = true
    }

    /// Whether a control connection's handshake names `rank`'s current process.
    package func isCurrent(_ rank: Int, incarnation: UInt32) -> Bool {
        ranks.indices.contains(rank) && ranks[rank].alive && ranks[rank].incarnation == incarnation
    }

    /// `rank`'s current process connected (its handshake checked with `isCurrent`). When it is
    /// the last of its launch, every rank of the launch gets START; after a partial restart the
    /// others learn of the restarted ranks and the frozen survivors are thawed.
    package mutating func handleConnected(_ rank: Int, now: Double) -> [Action] {
        ranks[rank].connected = true
        ranks[rank].joined = true
        ranks[rank].lastHeard = now
        programJoined = true
        var actions = ranks[rank].unsent.map { Action.send(rank, $0) }
        ranks[rank].unsent = []
        // During a freeze the ranks of an earlier plan wait: the new plan restarts them.
        if startingSet.contains(rank) { startingConnected.insert(rank) }
        guard freezing == nil, !starting.isEmpty, startingConnected.count == starting.count,
              starting.allSatisfy({ ranks[$0].connected }) else { return actions }
        let started = starting
        starting = []
        for rank in started {
            var plan = ranks[rank].plan
            plan.writeMirrors = writeMirrors  // a mirror may have failed since the launch
            ranks[rank].plan = plan
            if settings.logging == .senderBased, plan.replayLog {
                let replay = eventLogger.replay(of: rank)
                actions.append(.send(rank, .eventRecords(first: replay?.first, records: replay?.records ?? [])))
            }
            actions.append(.send(rank, .start(plan)))
        }
        actions.append(.note(.ranksStarted(count: started.count)))
        // A partial launch, or lone replays that happen to restart every rank (a job of two
        // whose ranks failed together).
        if started.count < settings.rankCount || !replaying.isDisjoint(with: started) {
            for rank in started {
                if !settings.independent || settings.logging != .none {
                    actions.append(.note(.replayStart(rank: rank, incarnation: ranks[rank].incarnation)))
                }
                for other in ranks.indices where !started.contains(other) {
                    actions += send(.peerRestarted(RankID(rank), incarnation: ranks[rank].incarnation), to: other)
                }
            }
            // A partial rollback (independent checkpoints, or optimistic logging's orphans): the
            // survivors reconnect (the messages above come first on their connections), then
            // deliver again.
            for other in survivorsToThaw.sorted() { actions += send(.thaw, to: other) }
            survivorsToThaw = []
            if settings.independent, settings.logging == .none { actions += recoveryDone(started, now: now) }
        } else if recoveryStartedAt != nil, replaying.isEmpty {
            // A global rollback is back once every rank is connected. When every rank was
            // restarted to replay its log (optimistic logging, the failed rank and every other
            // as an orphan), the recovery ends when all have replayed (`handleReplayComplete`):
            // a rank still replaying must not capture a round (its snapshot would record the
            // log's end while its state is behind it).
            actions += recoveryDone(started, now: now)
        }
        return actions
    }

    /// A message for `rank`: sent now when it is connected, held until it connects when it was
    /// launched and has not yet, dropped otherwise (a dead rank's restart gets its own).
    package mutating func send(_ message: ControlMessage, to rank: Int) -> [Action] {
        if ranks[rank].connected { return [.send(rank, message)] }
        guard ranks[rank].alive, !ranks[rank].joined else { return [] }
        // A newer trim covers an older one (independent checkpoints send one per commit).
        if case .trim = message { ranks[rank].unsent.removeAll { if case .trim = $0 { true } else { false } } }
        guard ranks[rank].unsent.count < Self.unsentMessagesMax else {
            return [.note(.unsentDropped(rank: rank, message: message))]
        }
        ranks[rank].unsent.append(message)
        return []
    }

    /// A message for every rank.
    package mutating func broadcast(_ message: ControlMessage) -> [Action] {
        ranks.indices.flatMap { send(message, to: $0) }
    }

    /// The supervisor heard from `rank` (any control message).
    package mutating func heard(from rank: Int, now: Double) {
        ranks[rank].lastHeard = now
    }

    /// `rank` reported passing safe point `step`; true when that is progress (the stall
    /// detector hears of it).
    @discardableResult
    package mutating func handleStep(_ step: Int, of rank: Int, now: Double) -> Bool {
        guard step > ranks[rank].step else { return false }
        ranks[rank].step = step
        stalls?.handleProgress(now: now)
        return true
    }

    // MARK: Stalls and deadlocks

    /// Time passed: the stall detector asks the ranks that joined where they wait, says the
    /// job is stalled, or ends it on a deadlock (never during a recovery).
    package mutating func checkStalls(now: Double) -> [Action] {
        guard var detector = stalls else { return [] }
        let decided = detector.handleTick(now: now, recovering: isRecovering)
        stalls = detector
        var actions: [Action] = []
        for action in decided {
            switch action {
            case .query(let serial):
                for rank in ranks.indices where ranks[rank].joined { actions += send(.waitQuery(serial: serial), to: rank) }
            case .stall(let waits, let silentSeconds):
                actions.append(.note(.stall(waits: waits, silentSeconds: silentSeconds)))
            case .deadlock(let waits):
                actions.append(.fail(.deadlock(waits: waits)))
            }
        }
        return actions
    }

    /// `rank` answered the stall detector's question `serial`: it waits so.
    package mutating func handleWaitReport(from rank: Int, serial: UInt32, _ wait: RankWait) {
        stalls?.handleAnswer(from: RankID(rank), serial: serial, wait)
    }

    /// `rank`'s control connection closed (its exit follows).
    package mutating func handleDisconnected(_ rank: Int) {
        ranks[rank].connected = false
        startingConnected.remove(rank)
    }

    /// The supervisor is about to cause the exit of `rank` (released at the end).
    package mutating func expectExit(of rank: Int) {
        ranks[rank].exitExpected = true
    }

    /// `rank`'s process ended. `programExit`: how it ended when it exited on its own with a
    /// status (not a signal); `cleanExit`: with status 0. Its failure, when the machine did not
    /// cause it, goes to `handleFailure`.
    package mutating func handleExit(
        of rank: Int, cause: String, programExit: String?, cleanExit: Bool, counted: Bool = true, now: Double,
        facts: some RecoveryFacts
    ) -> [Action] {
        ranks[rank].alive = false
        ranks[rank].connected = false
        startingConnected.remove(rank)
        guard !ranks[rank].exitExpected else { return [] }
        if !ranks[rank].joined, !programJoined, cleanExit { return [.fail(.notJoined(rank: rank, seconds: nil))] }
        if ranks[rank].joined, cleanExit, !coordinator.finished[rank] {
            return [.fail(.exitedWithoutFinish(rank: rank, step: ranks[rank].step))]
        }
        return handleFailure(rank, cause: cause, programExit: programExit, counted: counted, now: now, facts: facts)
    }

    /// `rank`'s process ended as the supervisor expected (stopped, or released at the end).
    package mutating func handleReaped(_ rank: Int) {
        ranks[rank].alive = false
        ranks[rank].connected = false
        startingConnected.remove(rank)
    }

    /// Time passed: a rank silent past its timeout is killed and has failed (the first one
    /// found; the next turn finds the next). Heartbeats begin at START: a rank that connected
    /// waits for the others of its launch under the join timeout.
    package mutating func checkHeartbeats(now: Double, facts: some RecoveryFacts) -> [Action] {
        for rank in silentRanks(now: now) {
            let silence = now - ranks[rank].lastHeard
            let joined = ranks[rank].joined
            // A program that never joined would not join on a restart either.
            if !joined, !programJoined { return [.fail(.notJoined(rank: rank, seconds: silence))] }
            let what = joined ? "stopped answering (hung)" : "did not connect"
            return killAsFailed(rank, .hang(rank: rank, silenceSeconds: silence), cause: "\(what) for \(Self.seconds(silence)) s",
                                now: now, facts: facts)
        }
        return []
    }

    /// The live ranks silent past their timeout (the heartbeat's once joined, else the join
    /// timeout): those `checkHeartbeats` fails. A driver reads what they sent last first, so
    /// that a rank is judged on everything it wrote (sender-based logging's records among it).
    package func silentRanks(now: Double) -> [Int] {
        ranks.indices.filter { rank in
            guard ranks[rank].alive, !ranks[rank].exitExpected else { return false }
            let beating = ranks[rank].joined && !startingSet.contains(rank)
            return now - ranks[rank].lastHeard > (beating ? settings.heartbeatTimeoutSeconds : settings.joinTimeoutSeconds)
        }
    }

    /// Marks the live ranks among `stopped` as stopping (their exits are expected) and says to stop them.
    mutating func stop(_ stopped: [Int]) -> Action {
        for rank in stopped where ranks[rank].alive { ranks[rank].exitExpected = true }
        return .stop(stopped)
    }

    /// Stops every live rank.
    package mutating func stopEveryRank() -> Action {
        stop(ranks.indices.filter { ranks[$0].alive })
    }

    /// `seconds` with one decimal, as the runtime's messages write durations (no Foundation here).
    static func seconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }
}
