#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// Failure detection and recovery by global rollback.
extension Supervisor {
    /// A rank process ended.
    func handleExit(_ exit: ProcessExit) throws {
        guard let rank = slots.firstIndex(where: { $0.pid == exit.pid && $0.alive }) else { return }
        // What the rank sent before it died (a fault it fired, a last ACK) is read first.
        if slots[rank].connection != nil, !slots[rank].exitExpected { try readControl(from: rank) }
        if finishedJob { return }
        slots[rank].alive = false
        slots[rank].connection?.close()
        slots[rank].connection = nil
        guard !slots[rank].exitExpected else { return }
        if !slots[rank].joined, !programJoined, exit.exitCode == 0 { try notJoined(rank) }
        try rankFailed(rank, cause: "\(exit)", programExit: exit.signal == nil ? "\(exit)" : nil)
    }

    /// Finds ranks that stopped sending heartbeats (hung) or never connected.
    func checkHeartbeats() throws {
        let timeout = Double(configuration.heartbeatTimeoutMs) / 1000
        for rank in slots.indices where slots[rank].alive && !slots[rank].exitExpected {
            let silence = now - slots[rank].lastHeard
            // Heartbeats begin at START: a rank that connected waits for the others of its
            // launch under the join timeout.
            let joined = slots[rank].joined
            let beating = joined && !starting.contains(rank)
            guard silence > (beating ? timeout : joinTimeoutSeconds) else { continue }
            // A program that never joined would not join on a restart either.
            if !joined, !programJoined { try notJoined(rank, after: silence) }
            kill(slots[rank].pid, SIGKILL)
            slots[rank].exitExpected = true
            events.record("hang_detected", ["rank": .int(rank), "silence_s": .double(silence)])
            let what = joined ? "stopped answering (hung)" : "did not connect"
            try rankFailed(rank, cause: "\(what) for \(String(format: "%.1f", silence)) s", programExit: nil)
            return
        }
    }

    /// `--join-timeout`: how long a launched rank has to connect.
    var joinTimeoutSeconds: Double { configuration.joinTimeoutSeconds ?? JobConfiguration.joinTimeoutSecondsDefault }

    /// A rank did not join the job in time, or ended cleanly without joining: the program is
    /// not a Lifeline program (or cannot reach the supervisor), and would do the same again.
    /// Every rank is stopped and the job fails with the explanation.
    func notJoined(_ rank: Int, after seconds: Double? = nil) throws -> Never {
        let what = seconds.map { "did not connect within \(String(format: "%.0f", $0)) s of its launch" }
            ?? "exited with status 0 without joining the job"
        events.record("failure", [
            "rank": .int(rank), "cause": .string(what), "step": .int(slots[rank].step),
            "epoch": .int(Int(coordinator.committedEpoch.rawValue)),
        ])
        stopSurvivors()
        let errPath = OutputCommitter.stderrPath(
            directory: configuration.runDirectory + "/output", rank: rank, incarnation: slots[rank].incarnation)
        throw LifelineError(.jobFailed,
            "rank \(rank) \(what): is \(configuration.program) a Lifeline program (it must call Communicator.join())? See \(errPath)"
                + (seconds == nil ? "" : "; --join-timeout gives a slow start longer"))
    }

    /// A rank failed: abort any open round, let the recovery policy decide, and carry out the
    /// plan of the planner it chose (see `RecoveryPolicy` and the planners beside it in
    /// LifelineCore/Recovery).
    func rankFailed(_ rank: Int, cause: String, programExit: String?) throws {
        if freezing != nil {
            // A failure while the survivors are frozen joins the recovery under way.
            recoveryPolicy.countFailureDuringFreeze()
            events.record("failure", ["rank": .int(rank), "cause": .string(cause), "step": .int(slots[rank].step)])
            if let outcome = freezing?.handleRankDied(rank) { try freezeComplete(outcome) }
            return
        }
        let lineEpoch = manifest.newestLine?.epoch ?? 0
        events.record("failure", [
            "rank": .int(rank), "cause": .string(cause), "step": .int(slots[rank].step),
            "epoch": .int(Int(coordinator.committedEpoch.rawValue)),
        ])
        try perform(coordinator.handleRankFailed(RankID(rank), now: now))
        // A rank recovers alone unless another rank is recovering at the same time (its own
        // second failure during replay is fine: it restarts alone again).
        let othersRecovering = (replaying ?? rank) != rank || !starting.allSatisfy { $0 == rank }
        // The line a lone restart begins from, read once: the log check and the launch share it.
        var intact: (line: CommittedLine?, problems: [String])?
        let decision = recoveryPolicy.decide(
            RecoveryPolicy.Failure(rank: RankID(rank), programExit: programExit, lineEpoch: lineEpoch),
            othersRecovering: othersRecovering
        ) {
            if !independent { intact = manifests.newestIntactLine(manifest) }
            return lostLog(of: rank, intact: intact)
        }
        switch decision {
        case .sameErrorAgain(let exit, let epoch):
            stopSurvivors()
            let errPath = OutputCommitter.stderrPath(
                directory: configuration.runDirectory + "/output", rank: rank, incarnation: slots[rank].incarnation)
            throw LifelineError(.jobFailed, "rank \(rank) \(exit) on every attempt from epoch \(epoch); see \(errPath)")
        case .restartsExhausted(let count):
            stopSurvivors()
            throw LifelineError(.jobFailed,
                "\(count) failures exceed --max-restarts \(configuration.maxRestarts); the run directory keeps the last committed line, `lifeline resume` continues it")
        case .partialRollback:
            try recoverIndependently(failed: rank)
            return
        case .globalRollback(let fallback):
            if let fallback {
                warn("rank \(rank): \(fallback): falling back to global rollback")
                events.record("fallback_global_rollback", ["rank": .int(rank), "reason": .string(fallback)])
            }
            warn("rank \(rank) \(cause) at step \(slots[rank].step); rolling every rank back to epoch \(lineEpoch)")
            recoveryStarts(rank, mode: .globalRollback)
            try execute(GlobalRollback.plan(failed: RankID(rank), rankCount: configuration.rankCount, fallback: fallback))
        case .loneReplay, .optimisticReplay:
            let restartPoint = independent ? "its checkpoint \(records[rank].last?.index ?? 0)" : "epoch \(lineEpoch)"
            warn("rank \(rank) \(cause) at step \(slots[rank].step); it restarts alone from \(restartPoint) and replays its log")
            recoveryStarts(rank, mode: .replay)
            if decision == .optimisticReplay {
                try recoverOptimistically(failed: rank)
                return
            }
            let start = independent ? records[rank].last { $0.snapshot != nil }?.index ?? 0 : nil
            try execute(LoneReplay.plan(failed: RankID(rank), independentStart: start), intact: intact)
        }
    }

    /// Records that the recovery of `rank` begins, and how.
    func recoveryStarts(_ rank: Int, mode: RecoveryPlan.Mode) {
        recoveryStartedAt = now
        events.record("recovery_start", [
            "rank": .int(rank), "epoch": .int(Int(manifest.newestLine?.epoch ?? 0)), "mode": .string(mode.rawValue),
        ])
    }

    /// Carries out a recovery plan: stops the ranks it names, forgets the independent records
    /// after the checkpoints it restarts from (and records that, after a partial rollback),
    /// and launches the restarted ranks. `intact`: the newest intact line, when the caller has
    /// just found it.
    func execute(_ plan: RecoveryPlan, intact: (line: CommittedLine?, problems: [String])? = nil) throws {
        if plan.restartsEveryRank(rankCount: configuration.rankCount), plan.mode == .globalRollback,
           plan.restart.allSatisfy({ $0.start == .newestLine }) {
            replaying = nil
            restartedGroup = nil
            survivorsToThaw = []
            stopSurvivors()
            try launchAll()
            return
        }
        stop(plan.stop)
        var entries: [Int: IndependentCheckpoint?] = [:]
        for restart in plan.restart {
            guard case .checkpoint(let index) = restart.start else { continue }
            truncateRecords(rank: restart.rank, after: index)
            entries[restart.rank] = index == 0 ? .some(nil) : records[restart.rank].first { $0.index == index }
        }
        if !entries.isEmpty, plan.mode != .replay {
            var next = manifest
            do {
                try commitManifest(&next)
                manifest = next
            } catch let error as LifelineError {
                throw error  // both mirrors failed: the job stops
            } catch {
                warn("cannot record the recovery line: \(error)")
            }
        }
        survivorsToThaw = plan.thaw
        replaying = plan.mode == .replay ? plan.failed.rawValue : nil
        restartedGroup = plan.replayLimit != nil ? plan.restartedRanks : nil
        try launch(plan.restartedRanks, plan: entries.isEmpty ? nil : entries,
                   replayLimit: plan.replayLimit.map { ($0.rank, $0.recoverable) }, replayLog: plan.replayLog,
                   intact: intact)
    }

    /// What makes the message log of `rank` unfit to replay (damaged or missing on both
    /// mirrors: every rank opens its log when it starts; or ending before the position its
    /// checkpoint in `intact`, the newest intact line, was taken at), or nil.
    func lostLog(of rank: Int, intact: (line: CommittedLine?, problems: [String])?) -> String? {
        do {
            let inspection = try MessageLog.inspect(store: manifests.store, name: MessageLog.name(ofRank: rank))
            if inspection.isMissing { return "missing on both mirrors" }
            if inspection.recordsLost { return inspection.problems.joined(separator: "; ") }
            guard let intact, let checkpoint = checkpointOf(rank, line: intact.line) else {
                return nil
            }
            return inspection.kept.upperBound < checkpoint.logPosition
                ? "it ends at record \(inspection.kept.upperBound), before its checkpoint's position \(checkpoint.logPosition)"
                : nil
        } catch {
            return "\(error)"
        }
    }

    /// The restarted ranks are back: after a global rollback, once all are connected; after a
    /// lone restart, once the rank has replayed its log.
    func recoveryDone(_ ranks: [Int]) throws {
        recoveries += 1
        events.record("recovery_done", [
            "ranks": .int(ranks.count), "duration_s": .double(now - (recoveryStartedAt ?? now)),
        ])
        recoveryStartedAt = nil
        replaying = nil
        try perform(coordinator.handleRestarted(ranks.map { RankID($0) }, now: now))
    }

    /// SIGKILLs every live rank and waits until all have been reaped.
    func stopSurvivors() {
        stop(slots.indices.filter { slots[$0].alive })
    }

    /// SIGKILLs the live ranks among `ranks` (their exits are expected) and waits until they
    /// have been reaped.
    func stop(_ ranks: [Int]) {
        for rank in ranks where slots[rank].alive {
            slots[rank].exitExpected = true
            kill(slots[rank].pid, SIGKILL)
        }
        awaitExits(of: ranks)
    }

    /// Waits until every rank in `ranks` has been reaped.
    func awaitExits(of ranks: [Int]) {
        let deadline = now + 30
        while ranks.contains(where: { slots[$0].alive }), now < deadline {
            var descriptor = pollfd(fd: launcher.exitFD, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 250) > 0 else { continue }
            for exit in launcher.readExits() {
                if let rank = slots.firstIndex(where: { $0.pid == exit.pid }) {
                    slots[rank].alive = false
                    slots[rank].connection?.close()
                    slots[rank].connection = nil
                }
            }
        }
    }

    // MARK: Injected faults

    /// Fires the supervisor-side faults whose time has come.
    func fireDueFaults() throws {
        fireTimedStorageFaults()
        let time = now
        for index in faults.indices where !faultFired[index] {
            switch faults[index] {
            case .killAfter(let rank, let seconds) where time >= seconds:
                faultFired[index] = true
                try signalRank(rank.rawValue, SIGKILL, spec: faults[index])
            case .hangAfter(let rank, let seconds) where time >= seconds:
                faultFired[index] = true
                try signalRank(rank.rawValue, SIGSTOP, spec: faults[index])
            case .killSupervisor(let seconds) where time >= seconds:
                faultFired[index] = true
                events.record("fault_injected", ["spec": .string("\(faults[index])")])
                kill(getpid(), SIGKILL)
            default:
                break
            }
        }
        if var (generator, nextAt) = chaos, time >= nextAt {
            let rank = Int.random(in: 0..<configuration.rankCount, using: &generator)
            if case .chaos(_, let mtbf) = faults.first(where: { if case .chaos = $0 { true } else { false } }) {
                nextAt = time + generator.exponential(mean: mtbf)
            }
            chaos = (generator, nextAt)
            events.record("fault_injected", ["rank": .int(rank), "spec": .string("chaos")])
            if slots[rank].alive { kill(slots[rank].pid, SIGKILL) }
        }
    }

    /// The job finished: every injected fault that did not fire is said (a step the rank never
    /// reached, a round that never committed, a time past the end), so a test or a user does
    /// not take a run without it for one with it.
    func sayFaultsNotFired() {
        for index in faults.indices where !faultFired[index] {
            if case .chaos = faults[index] { continue }
            warn("--inject \(faults[index]) never fired")
            events.record("fault_not_fired", ["spec": .string("\(faults[index])")])
        }
    }

    private func signalRank(_ rank: Int, _ signal: Int32, spec: FaultSpec) throws {
        events.record("fault_injected", ["rank": .int(rank), "spec": .string("\(spec)")])
        if slots[rank].alive { kill(slots[rank].pid, signal) }
    }
}
