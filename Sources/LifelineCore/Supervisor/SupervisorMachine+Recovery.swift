/// What the machine asks of stable storage when it plans a recovery. The runtime reads the
/// manifest, the snapshots and the logs; a simulator answers from its model disk.
package protocol RecoveryFacts {
    /// The newest committed line's epoch (0: none).
    var lineEpoch: UInt64 { get }
    /// Pessimistic logging: what makes `rank`'s message log unfit to replay from its entry in
    /// the newest intact line (lost on both mirrors, ending before the entry's position), or nil.
    func lostLog(of rank: Int) -> String?
    /// Sender-based logging: the log position of `rank`'s entry in the newest intact line (0:
    /// it restarts from the beginning), or nil when its snapshot cannot be read.
    func entryLogPosition(of rank: Int) -> UInt64?
    /// Optimistic logging: the last state interval `rank` can recover (its entry's, plus one
    /// per record its log kept after it), or nil when they cannot be read.
    func recoverableInterval(of rank: Int) -> UInt64?
    /// Independent checkpoints: per rank, how many checkpoints are recorded.
    var checkpointCounts: [Int] { get }
    /// Independent checkpoints: `rank`'s newest checkpoint that still has a snapshot (0: none).
    func newestRestorableCheckpoint(of rank: Int) -> Int
    /// Independent checkpoints: the dependency records of every checkpoint.
    var dependencies: IntervalDependencies { get }
    /// Whether the line a recovery would restore (the newest intact one) was written by another
    /// number of ranks than the job runs on (`lifeline resume -n M` resized it since): no rank
    /// restarts alone from it.
    var lineResized: Bool { get }
}

extension RecoveryFacts {
    /// A job that was never resized.
    package var lineResized: Bool { false }
}

/// Failure → recovery: count it, let `RecoveryPolicy` choose the planner, freeze the survivors
/// when the planner needs their answers, and turn the plan into stops and a launch. The
/// planners (`GlobalRollback`, `LoneReplay`, `OptimisticOrphans`, `IndependentPartialRollback`)
/// decide; this file sequences them.
extension SupervisorMachine {
    /// `rank` failed (`cause` in words; `programExit`: how it exited on its own, if it did;
    /// `counted`: whether it counts toward `--max-restarts`, see `RecoveryPolicy.decide`):
    /// abort any open round, then recover as the policy decides.
    package mutating func handleFailure(
        _ rank: Int, cause: String, programExit: String?, counted: Bool = true, now: Double, facts: some RecoveryFacts
    ) -> [Action] {
        let step = ranks[rank].step
        // A second failure before it is back counts from here, toward the furthest step it had
        // reached (its relaunch started its step over from its checkpoint's).
        catchingUp[rank] = (max(step, catchingUp[rank]?.step ?? step), now)
        if freezing != nil {
            // A failure while the survivors are frozen joins the recovery under way.
            if counted { policy.countFailureDuringFreeze() }
            var actions: [Action] = [.note(.failure(rank: rank, cause: cause, step: step, epoch: nil))]
            if let outcome = freezing?.handleRankDied(rank) { actions += freezeComplete(outcome, now: now, facts: facts) }
            return actions
        }
        var actions: [Action] = [.note(.failure(rank: rank, cause: cause, step: step, epoch: coordinator.committedEpoch.rawValue))]
        actions += coordinator.handleRankFailed(RankID(rank), now: now).map(Action.round)
        // A rank recovers alone unless another rank is recovering at the same time (its own
        // second failure during replay is fine: it restarts alone again). Under pessimistic and
        // sender-based logging that other may be replaying alone too (ranks that fail together,
        // as a lost host's, each replay their own log; see `LoneReplay`); any other recovery
        // under way (a global rollback still starting) is not.
        let together = (settings.logging == .pessimistic || settings.logging == .senderBased) && restartedGroup == nil
        let othersRecovering = together
            ? !starting.allSatisfy { $0 == rank || replaying.contains($0) }
            : !replaying.subtracting([rank]).isEmpty || !starting.allSatisfy { $0 == rank }
        let lineEpoch = facts.lineEpoch
        let decision = policy.decide(
            RecoveryPolicy.Failure(rank: RankID(rank), programExit: programExit, lineEpoch: lineEpoch),
            othersRecovering: othersRecovering, logUncut: uncutLogs.contains(rank), lineResized: facts.lineResized,
            counted: counted
        ) { [settings, eventLogger] in
            guard settings.logging == .senderBased else { return facts.lostLog(of: rank) }
            // Its records are in the event logger, not on the disk.
            guard let position = facts.entryLogPosition(of: rank) else { return "its checkpoint cannot be read" }
            return eventLogger.lost(rank, from: position)
        }
        switch decision {
        case .sameErrorAgain(let exit, let epoch):
            actions.append(.fail(.sameErrorAgain(rank: rank, exit: exit, epoch: epoch)))
        case .restartsExhausted(let count):
            actions.append(.fail(.restartsExhausted(failures: count)))
        case .partialRollback:
            actions += startFreeze(first: rank, purpose: .independent, now: now, facts: facts)
        case .globalRollback(let fallback):
            if let fallback { actions.append(.note(.fallback(rank: rank, reason: fallback, optimistic: false))) }
            actions.append(.note(.rollingBack(rank: rank, cause: cause, step: step, lineEpoch: lineEpoch)))
            actions += recoveryStarts(rank, mode: .globalRollback, now: now)
            actions += execute(GlobalRollback.plan(failed: RankID(rank), rankCount: settings.rankCount, fallback: fallback))
        case .loneReplay, .optimisticReplay:
            let checkpoint = settings.independent ? facts.checkpointCounts[rank] : nil
            actions.append(.note(.restartingAlone(rank: rank, cause: cause, step: step, checkpoint: checkpoint, lineEpoch: lineEpoch)))
            actions += recoveryStarts(rank, mode: .replay, now: now)
            if decision == .optimisticReplay {
                guard let recoverable = facts.recoverableInterval(of: rank) else {
                    return actions + planOptimisticRecovery(
                        failed: rank, recoverable: nil, Freeze.Outcome(failed: [rank], replies: [:], unanswered: []), facts: facts)
                }
                return actions + startFreeze(first: rank, purpose: .optimistic(recoverable: recoverable), now: now, facts: facts)
            }
            let start = settings.independent ? facts.newestRestorableCheckpoint(of: rank) : nil
            actions += execute(LoneReplay.plan(failed: RankID(rank), independentStart: start))
        }
        return actions
    }

    /// A restarted rank with a log reports `replayComplete` once its log is open: cut back to
    /// its entry (it re-executes), or replayed.
    /// After an optimistic recovery, every rank of the restarted group must have replayed
    /// before rounds resume: an orphan still replaying would capture a round with its log's end
    /// recorded and its state behind it (a restore from that snapshot would skip the rest).
    package mutating func handleReplayComplete(from rank: Int, now: Double) -> [Action] {
        uncutLogs.remove(rank)  // it opened its log: cut back to its entry, or replayed
        guard !replaying.isEmpty else { return [] }
        if let group = restartedGroup {
            guard group.contains(rank) else { return [] }
            replayedInGroup.insert(rank)
            guard replayedInGroup.isSuperset(of: group) else { return [] }
            replayedInGroup = []
            restartedGroup = nil
            return recoveryDone(group, now: now)
        }
        // Lone replays: each ends on its own; rounds start again when the last has replayed.
        guard replaying.remove(rank) != nil else { return [] }
        recoveries += 1
        let done = Action.note(.recoveryDone(ranks: 1, seconds: now - (replayFailedAt.removeValue(forKey: rank) ?? now), rank: rank))
        guard replaying.isEmpty else { return [done] }
        recoveryStartedAt = nil
        replayFailedAt = [:]
        return [done] + coordinator.handleRestarted(now: now).map(Action.round)
    }

    /// A frozen survivor answered with its interval and dependency vector.
    package mutating func handleFrozen(from rank: Int, _ reply: IndependentPartialRollback.Frozen, now: Double,
                                       facts: some RecoveryFacts) -> [Action] {
        guard let outcome = freezing?.handleReply(from: rank, reply) else { return [] }
        return freezeComplete(outcome, now: now, facts: facts)
    }

    /// Time passed during a freeze: past its deadline the silent survivors count as failed.
    package mutating func checkFreeze(now: Double, facts: some RecoveryFacts) -> [Action] {
        guard let outcome = freezing?.handleTick(now: now) else { return [] }
        return freezeComplete(outcome, now: now, facts: facts)
    }

    /// Records that the recovery of `rank` begins, and how.
    private mutating func recoveryStarts(_ rank: Int, mode: RecoveryPlan.Mode, now: Double) -> [Action] {
        // A rank that joins lone replays under way (pessimistic or sender-based logging): the
        // recovery as a whole began with the first of them; its own, now.
        let lone = mode == .replay && restartedGroup == nil
            && (settings.logging == .pessimistic || settings.logging == .senderBased)
        if lone { replayFailedAt[rank] = now }
        if !lone || replaying.isEmpty || recoveryStartedAt == nil { recoveryStartedAt = now }
        return [.note(.recoveryStart(rank: rank, mode: mode))]
    }

    /// The restarted ranks are back: after a global rollback, once all are connected; after a
    /// lone restart, once the rank has replayed its log.
    mutating func recoveryDone(_ restarted: [Int], now: Double) -> [Action] {
        recoveries += 1
        let seconds = now - (recoveryStartedAt ?? now)
        recoveryStartedAt = nil
        replaying = []
        replayFailedAt = [:]
        return [.note(.recoveryDone(ranks: restarted.count, seconds: seconds))]
            + coordinator.handleRestarted(now: now).map(Action.round)
    }

    /// Turns a plan into actions: stop the ranks it names, then launch the restarted ones.
    /// Survivors it names are thawed once the restarted ranks are connected.
    mutating func execute(_ plan: RecoveryPlan) -> [Action] {
        if plan.restartsEveryRank(rankCount: settings.rankCount), plan.mode == .globalRollback,
           plan.restart.allSatisfy({ $0.start == .newestLine }) {
            replaying = []
            replayFailedAt = [:]
            restartedGroup = nil
            replayedInGroup = []
            survivorsToThaw = []
            return [stopEveryRank()] + launchEveryRank()
        }
        let stop = stop(plan.stop)
        let recordsLine = plan.mode != .replay && plan.restart.contains { if case .checkpoint = $0.start { true } else { false } }
        survivorsToThaw = plan.thaw
        if plan.mode == .replay, plan.replayLimit == nil, restartedGroup == nil {
            replaying.insert(plan.failed.rawValue)  // lone replays run side by side
        } else {
            replaying = plan.mode == .replay ? [plan.failed.rawValue] : []
            replayFailedAt = replayFailedAt.filter { replaying.contains($0.key) }
        }
        restartedGroup = plan.replayLimit != nil ? plan.restartedRanks : nil
        replayedInGroup = []
        return [stop, .launch(Launch(
            restart: plan.restart, replayLog: plan.replayLog, replayLimit: plan.replayLimit, recordsRecoveryLine: recordsLine))]
    }

    /// Freezes every live, connected rank but `first` (`FREEZE`); their answers, the deaths
    /// and the time then drive the `Freeze` machine, and `freezeComplete` goes on with the plan.
    /// Ranks still starting from an earlier plan are not asked: they restart with the new one.
    private mutating func startFreeze(first: Int, purpose: Freeze.Purpose, now: Double, facts: some RecoveryFacts) -> [Action] {
        // A new recovery: a group of an earlier one still replaying no longer ends anything (its
        // last `replayComplete` must not end this one; the swarm found a supervisor crashing
        // there: `--ranks 17 --seed 9009806 --checkpoint minimal --logging optimistic --steps 7
        // --program idle`, the failed rank failing again while its orphan still replayed).
        earlierGroupUnreplayed = Set(restartedGroup ?? []).subtracting(replayedInGroup)
        restartedGroup = nil
        replayedInGroup = []
        let restarting = Set(starting.filter { $0 != first && ranks[$0].alive })
        let asked = Set(ranks.indices.filter {
            $0 != first && ranks[$0].alive && ranks[$0].connected && !restarting.contains($0)
        })
        survivorsToThaw = []
        freezing = Freeze(
            first: RankID(first), purpose: purpose, asked: asked, restarting: restarting, now: now,
            timeoutSeconds: Freeze.timeoutSeconds(heartbeatTimeoutSeconds: settings.heartbeatTimeoutSeconds))
        var actions = asked.sorted().flatMap { send(.freeze, to: $0) }
        if let outcome = freezing?.outcome { actions += freezeComplete(outcome, now: now, facts: facts) }
        return actions
    }

    /// Every frozen survivor answered (or failed, or the deadline passed): plan the recovery.
    private mutating func freezeComplete(_ outcome: Freeze.Outcome, now: Double, facts: some RecoveryFacts) -> [Action] {
        guard let freeze = freezing else { return [] }
        freezing = nil
        let unanswered = outcome.unanswered.map { Action.note(.freezeUnanswered(rank: $0)) }
        switch freeze.purpose {
        case .independent:
            let line = IndependentPartialRollback.line(
                first: freeze.first, failed: outcome.failed, frozen: outcome.replies,
                recordCounts: facts.checkpointCounts, dependencies: facts.dependencies)
            return unanswered + [.note(.recoveryLine(first: freeze.first.rawValue, line))]
                + recoveryStarts(freeze.first.rawValue, mode: line.plan.mode, now: now) + execute(line.plan)
        case .optimistic(let recoverable):
            return unanswered + planOptimisticRecovery(
                failed: freeze.first.rawValue, recoverable: recoverable, outcome, restarting: freeze.restarting, facts: facts)
        }
    }

    /// `OptimisticOrphans` plans the rest from what the freeze found, or says why every rank
    /// must roll back instead.
    /// The ranks that failed during the freeze are recovered with `rank`, each replaying what
    /// its own log recovers; not when one of them had not yet cut its log to an earlier plan —
    /// it was `restarting` (no START yet), or had START but had not said its log is cut
    /// (`uncutLogs`, or an earlier group's rank that had not replayed): its log may still hold
    /// an execution that plan discarded. Then every rank rolls back instead.
    private mutating func planOptimisticRecovery(
        failed rank: Int, recoverable: UInt64?, _ outcome: Freeze.Outcome, restarting: Set<Int> = [], facts: some RecoveryFacts
    ) -> [Action] {
        let freeze = OptimisticOrphans.Freeze(vectors: outcome.replies.mapValues(\.dependencies), failed: outcome.failed)
        let alive = ranks.map(\.alive)
        let result: Result<(plan: RecoveryPlan, orphans: [Int]), OptimisticOrphans.Fallback>
        let unsettled = restarting.union(outcome.failed.subtracting([rank]).intersection(uncutLogs.union(earlierGroupUnreplayed)))
        if !unsettled.isEmpty {
            let list = unsettled.sorted().map(String.init).joined(separator: ",")
            result = .failure(OptimisticOrphans.Fallback(unsettled.count == 1
                ? "rank \(list) failed before its log was cut to an earlier recovery"
                : "ranks \(list) failed before their logs were cut to an earlier recovery"))
        } else {
            result = OptimisticOrphans.plan(
                failed: RankID(rank), recoverable: { $0 == rank ? recoverable : facts.recoverableInterval(of: $0) },
                freeze: freeze, rankCount: settings.rankCount, alive: { alive[$0] })
        }
        switch result {
        case .failure(let fallback):
            return [.note(.fallback(rank: rank, reason: "\(fallback)", optimistic: true))]
                + execute(GlobalRollback.plan(failed: RankID(rank), rankCount: settings.rankCount, fallback: "\(fallback)"))
        case .success(let (plan, orphans)):
            var others = plan.replayLimit?.recoverable ?? [:]
            let recoverable = others.removeValue(forKey: rank) ?? 0
            return [.note(.orphans(rank: rank, recoverable: recoverable, orphans: orphans, others: others))] + execute(plan)
        }
    }
}
