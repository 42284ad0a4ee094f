#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// Failure detection and recovery: the supervisor reports exits, silences and what the ranks
/// send to its `SupervisorMachine`, and performs what the machine decides.
extension Supervisor {
    /// A rank process ended.
    func handleExit(_ exit: ProcessExit) throws {
        if probeEnded(exit) { return }
        // Under mpirun every rank of a launch has mpirun's pid: its exit ends them all, and the
        // first live one stands for the launch (the recovery restarts every rank anyway).
        guard let rank = slots.indices.first(where: { slots[$0].pid == exit.pid && machine.ranks[$0].alive }) else { return }
        if hostJob?.mpirun == true {
            endedLaunches.insert(exit.pid)
            warn("mpirun \(exit): under --launcher mpirun every rank restarts from the last committed line")
        }
        noteExitBeforeConnecting(rank, exit)
        if hostLossStop != nil {
            reaped(rank)
            try performHostLossStop()
            return
        }
        // What the rank sent before it died (a fault it fired, a last ACK) is read first; under
        // mpirun, what every rank of the launch sent (the one that fired a fault is not always
        // the first: its fault, unread, would fire again after the restart).
        let ended = hostJob?.mpirun == true ? slots.indices.filter { slots[$0].pid == exit.pid && machine.ranks[$0].alive } : [rank]
        for sender in ended where slots[sender].connection != nil && !machine.ranks[sender].exitExpected {
            try readControl(from: sender)
            if finishedJob { return }
        }
        if !machine.ranks[rank].exitExpected { try awaitStopSaid(rank, exit) }
        if finishedJob { return }
        slots[rank].connection?.close()
        slots[rank].connection = nil
        // How the program itself failed, if it did (the same again from the same line ends the
        // job), or else what ended it (`ExitJudgement`).
        var context = ExitJudgement.Context()
        context.onHosts = hostJob != nil
        context.mpirun = hostJob?.mpirun == true
        context.orderedToMove = wasOrderedToMove(rank)
        context.levels = holdsLevels
        context.partnered = StorageRoots.partnered(configuration.storageRoots)
        context.launchedBeforeHostLoss = launchedBeforeHostLoss.contains(rank)
        var programExit: String?
        var counted = true
        var cause = "\(exit)"
        switch ExitJudgement.judge(
            ExitJudgement.Exit(status: exit.exitCode, signal: exit.signal, runtimeSaid: runtimeStops[rank], programSaid: programExits[rank]),
            context) {
        case .notTheProgram(let countedThen):
            counted = countedThen
        case .moved:
            counted = false
            cause = "moved to host \(hostJob?.rankHosts[rank] ?? "?")"
        case .restoreFailed:
            // Its copy in memory, taken for held, is gone: the recovery is decided without it.
            memoryCopies.forget(rank: rank)
            intactForLaunch = nil
        case .logUnfit:
            logsUnfit.insert(rank)  // `lostPartneredLog`
        case .program(let crash):
            programExit = crash ? "\(exit) at step \(machine.ranks[rank].step)" : "\(exit)"
        }
        try perform(machine.handleExit(
            of: rank, cause: cause, programExit: programExit, cleanExit: exit.exitCode == 0, counted: counted, now: now,
            facts: StorageFacts(self)))
    }

    /// A rank on another host that exited with one of the runtime's own statuses (3, 4, 5, 6)
    /// without its runtime or its program having said so yet: its control connection is read
    /// to its end, which follows what the process sent before it exited (a second at most; for
    /// status 3 a fifth of one: a rank that lost its link sent nothing more, and a lost host's
    /// ranks are judged one after the other, while the program's word left before its process
    /// did, long before its launcher's exit reached this machine).
    private func awaitStopSaid(_ rank: Int, _ exit: ProcessExit) throws {
        guard hostJob != nil, exit.signal == nil, runtimeStops[rank] == nil, programExits[rank] == nil,
              RuntimeExitStatus.all.contains(exit.exitCode ?? 0)
        else { return }
        let deadline = now + (exit.exitCode == RuntimeExitStatus.linkLost ? 0.2 : 1)
        while runtimeStops[rank] == nil, programExits[rank] == nil, let connection = slots[rank].connection, now < deadline,
              !finishedJob {
            var descriptor = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 50) >= 0 else { return }
            if descriptor.revents != 0 { _ = try readControl(from: rank) }
        }
    }

    /// Finds ranks that stopped sending heartbeats (hung) or never connected.
    func checkHeartbeats() throws {
        // What a silent rank wrote since this turn's poll is read before it is judged: a rank
        // that wrote is not silent, and one killed as hung has no record left unread.
        for rank in machine.silentRanks(now: now) {
            guard let connection = slots[rank].connection else { continue }
            var descriptor = pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0)
            if poll(&descriptor, 1, 0) > 0 { try readControl(from: rank) }
        }
        if finishedJob { return }
        noteSilence(of: machine.silentRanks(now: now))
        if hostLossStop != nil { return try performHostLossStop() }
        try perform(machine.checkHeartbeats(now: now, facts: StorageFacts(self)))
    }

    /// Performs what the supervisor machine decided.
    func perform(_ actions: [SupervisorMachine.Action]) throws {
        for action in actions {
            switch action {
            case .send(let rank, let message):
                write(message, to: rank)
            case .round(let round):
                try perform([round])
            case .stop(let ranks):
                stop(ranks)
                try recordOwedOnDisk()  // what the stopped ranks drained, before any relaunch
            case .kill(let rank):
                signalRank(rank, SIGKILL)
                // It is recovered as failed: what its process still sends is not read (its
                // replacement's connection takes the slot), but for the drains it ended.
                readDrainsOfStopped(rank)
                slots[rank].connection?.close()
                slots[rank].connection = nil
                try recordOwedOnDisk()
            case .launch(let order):
                try launch(order)
            case .note(let note):
                report(note)
            case .fail(let failure):
                try fail(failure)
            }
        }
    }

    /// Records a note of the machine in the event log, and says it on the terminal where a
    /// user should hear it.
    private func report(_ note: SupervisorMachine.Note) {
        switch note {
        case .failure(let rank, let cause, let step, let epoch):
            drains.rankEnded(rank)
            if let epoch {
                events.record("failure", [
                    "rank": .int(rank), "cause": .string(cause), "step": .int(step), "epoch": .int(Int(clamping: epoch)),
                ])
            } else {
                events.record("failure", ["rank": .int(rank), "cause": .string(cause), "step": .int(step)])
            }
        case .hang(let rank, let silence):
            events.record("hang_detected", ["rank": .int(rank), "silence_s": .double(silence)])
        case .ranksStarted(let count):
            events.record("ranks_started", ["ranks": .int(count)])
        case .replayStart(let rank, let incarnation):
            events.record("replay_start", ["rank": .int(rank), "incarnation": .int(Int(incarnation))])
        case .rollingBack(let rank, let cause, let step, let lineEpoch):
            warn("rank \(rank) \(cause) at step \(step); rolling every rank back to epoch \(lineEpoch)")
        case .restartingAlone(let rank, let cause, let step, let checkpoint, let lineEpoch):
            let restartPoint = checkpoint.map { "its checkpoint \($0)" } ?? "epoch \(lineEpoch)"
            warn("rank \(rank) \(cause) at step \(step); it restarts alone from \(restartPoint) and replays its log")
        case .fallback(let rank, let reason, let optimistic):
            warn((optimistic ? "" : "rank \(rank): ") + "\(reason): falling back to global rollback")
            events.record("fallback_global_rollback", ["rank": .int(rank), "reason": .string(reason)])
        case .recoveryStart(let rank, let mode):
            if holdsLevels {
                // With levels, the line the launch will restore: as found for the decision, or
                // the newest whose copies are there (checked in full at the launch, once the
                // survivors of a rollback are stopped and their drains no longer share the CPU).
                let line = intactForLaunch.map(\.line) ?? likelyRestoreLine()
                events.record("recovery_start", [
                    "rank": .int(rank), "epoch": .int(Int(clamping: line?.epoch ?? 0)), "mode": .string(mode.rawValue),
                    "level": .string(restoreLevel(of: line) ?? "disk"),
                ])
            } else {
                events.record("recovery_start", [
                    "rank": .int(rank), "epoch": .int(Int(clamping: manifest.newestLine?.epoch ?? 0)), "mode": .string(mode.rawValue),
                ])
            }
        case .recoveryDone(let ranks, let seconds, let rank?):
            events.record("recovery_done", ["ranks": .int(ranks), "duration_s": .double(seconds), "rank": .int(rank)])
        case .recoveryDone(let ranks, let seconds, nil):
            events.record("recovery_done", ["ranks": .int(ranks), "duration_s": .double(seconds)])
        case .caughtUp(let rank, let step, let seconds):
            events.record("caught_up", ["rank": .int(rank), "step": .int(step), "duration_s": .double(seconds)])
        case .freezeUnanswered(let rank):
            warn("rank \(rank) did not answer the freeze: it rolls back too")
        case .orphans(let rank, let recoverable, let orphans, let others):
            let failedWith = others.keys.sorted().map { "\($0):\(others[$0]!)" }.joined(separator: ",")
            events.record("orphans", [
                "rank": .int(rank), "recoverable": .int(Int(clamping: recoverable)),
                "orphans": .string(orphans.map(String.init).joined(separator: ",")), "failed_with": .string(failedWith),
            ])
            if !orphans.isEmpty {
                let whose = others.isEmpty
                    ? "rank \(rank)'s log reaches its state \(recoverable); ranks \(orphans.map(String.init).joined(separator: ", ")) depend on later states it lost"
                    : "ranks \(([rank] + others.keys.sorted()).map(String.init).joined(separator: ", ")) failed together, their logs reaching states "
                        + "\(([recoverable] + others.keys.sorted().map { others[$0]! }).map(String.init).joined(separator: ", ")); "
                        + "ranks \(orphans.map(String.init).joined(separator: ", ")) depend on later states they lost"
                warn(whose + " and roll back too")
            }
        case .recoveryLine(_, let line):
            reportRecoveryLine(line)
        case .unsentDropped(let rank, let message):
            events.record("protocol_error", ["rank": .int(rank), "detail": .string("unsent \(message) dropped: the rank has not connected")])
        case .checkpointUnwritten(let rank, let index, let reason):
            warn("rank \(rank) could not write checkpoint \(index): \(reason); it is restarted")
        case .malformed(let rank, let detail, let recovered):
            events.record("protocol_error", ["rank": .int(rank), "detail": .string("a control frame that cannot be read: \(detail)")])
            warn("rank \(rank) sent a control frame that cannot be read (\(detail)); "
                + (recovered ? "it is killed and recovered as a failed rank" : "it was already ending"))
        case .stall(let waits, let silentSeconds):
            reportStall(waits, silentSeconds: silentSeconds)
        }
    }

    /// The job cannot go on: every rank is stopped and the job fails with the reason.
    private func fail(_ failure: SupervisorMachine.Failure) throws -> Never {
        switch failure {
        case .notJoined(let rank, let seconds):
            let what = seconds.map { "did not connect within \(String(format: "%.0f", $0)) s of its launch" }
                ?? "exited with status 0 without joining the job"
            events.record("failure", [
                "rank": .int(rank), "cause": .string(what), "step": .int(machine.ranks[rank].step),
                "epoch": .int(Int(coordinator.committedEpoch.rawValue)),
            ])
            stopSurvivors()
            throw LifelineError(.jobFailed,
                "rank \(rank) \(what): is \(configuration.program) a Lifeline program (it must call Communicator.join())? See \(stderrPath(of: rank))"
                    + (seconds == nil ? "" : "; --join-timeout gives a slow start longer"))
        case .sameErrorAgain(let rank, let exit, let epoch):
            stopSurvivors()
            throw LifelineError(.jobFailed, "rank \(rank) \(exit) on every attempt from epoch \(epoch); see \(stderrPath(of: rank))")
        case .deadlock(let waits):
            try failOnDeadlock(waits)
        case .exitedWithoutFinish(let rank, let step):
            events.record("failure", [
                "rank": .int(rank), "cause": .string("exited with status 0 without calling finish()"), "step": .int(step),
                "epoch": .int(Int(coordinator.committedEpoch.rawValue)),
            ])
            stopSurvivors()
            throw LifelineError(.jobFailed,
                "rank \(rank) exited with status 0 without calling finish() (after safe point \(step)): call comm.finish() "
                    + "last; it waits at the final barrier, so that a failure elsewhere can still be recovered")
        case .restartsExhausted(let count):
            stopSurvivors()
            throw LifelineError(.jobFailed,
                "\(count) failures exceed --max-restarts \(configuration.maxRestarts); the run directory keeps the last committed line, `lifeline resume` continues it")
        }
    }

    /// Where the standard error of `rank`'s current process goes.
    private func stderrPath(of rank: Int) -> String {
        OutputCommitter.stderrPath(
            directory: configuration.runDirectory + "/output", rank: rank, incarnation: machine.ranks[rank].incarnation)
    }

    /// What makes the message log of `rank` unfit to replay (damaged or missing on both
    /// mirrors: every rank opens its log when it starts; or ending before the position its
    /// checkpoint in `intact`, the newest intact line, was taken at), or nil.
    func lostLog(of rank: Int, intact: (line: CommittedLine?, problems: [String])?) -> String? {
        if StorageRoots.partnered(configuration.storageRoots) { return lostPartneredLog(of: rank) }
        let name = MessageLog.name(ofRank: rank)
        let position = intact.flatMap { logPositionOf(rank, line: $0.line) }
        // Mirror A alone, healthy and reaching the checkpoint's position, proves the log fit (a
        // lone recovery waits for this reading): B is read only when it does not.
        if let first = try? MessageLog.inspectFirstMirror(store: manifests.store, name: name), !first.recordsLost, !first.isMissing,
           first.kept.upperBound >= position ?? 0 {
            return nil
        }
        do {
            let inspection = try MessageLog.inspect(store: manifests.store, name: name)
            if inspection.isMissing { return "missing on both mirrors" }
            if inspection.recordsLost { return inspection.problems.joined(separator: "; ") }
            guard let position else { return nil }
            return inspection.kept.upperBound < position
                ? "it ends at record \(inspection.kept.upperBound), before its checkpoint's position \(position)"
                : nil
        } catch {
            return "\(error)"
        }
    }

    /// With partner copies the log of `rank` is on the host that wrote it and on that host's
    /// partner: a lone replay takes it for fit unread (an optimistic recovery reads it over the
    /// network, `keptLog`), and the rank checks it as it opens it (a rank moved off a lost host
    /// first copies it from where another host kept it), and says otherwise by its exit status,
    /// `RuntimeExitStatus.logUnfit`: every rank rolls back.
    private func lostPartneredLog(of rank: Int) -> String? {
        logsUnfit.contains(rank) ? "the rank found it unfit on the hosts that keep it (its stderr says why)" : nil
    }

    /// SIGKILLs every live rank and waits until all have been reaped.
    func stopSurvivors() {
        if case .stop(let ranks) = machine.stopEveryRank() { stop(ranks) }
        // What they drained before they stopped is recorded: a resume starts from the newest
        // line on disk. (The job stops either way; a failure here is said, not thrown.)
        do {
            try recordOwedOnDisk()
        } catch {
            warn("cannot record the lines the stopped ranks drained: \(error)")
        }
    }

    /// SIGKILLs the live ranks among `ranks` (the machine expects their exits) and waits until
    /// they have been reaped.
    private func stop(_ ranks: [Int]) {
        for rank in ranks where machine.ranks[rank].alive {
            machine.expectExit(of: rank)
            signalRank(rank, SIGKILL)
        }
        awaitExits(of: ranks)
    }

    /// Waits until every rank in `ranks` has been reaped (30 s at most); `ended` hears of each
    /// exit read meanwhile, with the ranks its process held (several under mpirun).
    func awaitExits(of ranks: [Int], ended: (ProcessExit, [Int]) -> Void = { _, _ in }) {
        let deadline = now + 30
        while ranks.contains(where: { machine.ranks[$0].alive }), now < deadline {
            // Ranks whose process already ended with another rank's (one mpirun for all).
            for rank in ranks where machine.ranks[rank].alive && endedLaunches.contains(slots[rank].pid) { reaped(rank) }
            guard ranks.contains(where: { machine.ranks[$0].alive }) else { break }
            var descriptor = pollfd(fd: launcher.exitFD, events: Int16(POLLIN), revents: 0)
            guard poll(&descriptor, 1, 250) > 0 else { continue }
            for exit in launcher.readExits() {
                if probeEnded(exit) { continue }
                endedLaunches.insert(exit.pid)
                let held = slots.indices.filter { slots[$0].pid == exit.pid && machine.ranks[$0].alive }
                for rank in held { reaped(rank) }
                ended(exit, held)
            }
        }
    }

    /// `rank`'s process ended as expected.
    private func reaped(_ rank: Int) {
        readDrainsOfStopped(rank)
        slots[rank].connection?.close()
        slots[rank].connection = nil
        drains.rankEnded(rank)
        machine.handleReaped(rank)
    }

    // MARK: Injected faults

    /// Fires the supervisor-side faults whose time has come.
    func fireDueFaults() throws {
        for firing in faultSchedule.due(now: now, rankCount: configuration.rankCount) {
            switch firing {
            case .signal(let index, let rank, let stop):
                try injectSignal(rank.rawValue, stop ? SIGSTOP : SIGKILL, spec: faults[index])
            case .killSupervisor(let index):
                killSelf(index)
            case .storage(let index):
                fireStorageFault(index)
            case .chaos(let rank):
                events.record("fault_injected", ["rank": .int(rank.rawValue), "spec": .string("chaos")])
                if machine.ranks[rank.rawValue].alive { signalRank(rank.rawValue, SIGKILL) }
            }
        }
        clearMirrorFaults(all: false)
    }

    /// `kill:supervisor`: the supervisor's own SIGKILL, the fault at `index` recorded first.
    func killSelf(_ index: Int) {
        events.record("fault_injected", ["spec": .string("\(faults[index])")])
        kill(getpid(), SIGKILL)
    }

    /// The job finished: every injected fault that did not fire is said (a step the rank never
    /// reached, a round that never committed, a time past the end), so a test or a user does
    /// not take a run without it for one with it.
    func sayFaultsNotFired() {
        for spec in faultSchedule.notFired {
            warn("--inject \(spec) never fired")
            events.record("fault_not_fired", ["spec": .string("\(spec)")])
        }
    }

    func injectSignal(_ rank: Int, _ signal: Int32, spec: FaultSpec) throws {
        events.record("fault_injected", ["rank": .int(rank), "spec": .string("\(spec)")])
        guard machine.ranks[rank].alive else { return }
        // A rank on another host is reached through its runtime: the pid here is its launch
        // command's (an ssh client, srun), whose signal would not reach it (a stopped ssh
        // client leaves the rank beating). It acts at its next call into the runtime.
        if let hostJob, !hostJob.mpirun, slots[rank].connection != nil {
            write(.signal(signal), to: rank)
        } else {
            signalRank(rank, signal)
        }
    }
}

/// The supervisor's stable storage as its machine's recovery planning asks of it: the
/// manifest, the ranks' snapshots and message logs.
struct StorageFacts: RecoveryFacts {
    unowned let supervisor: Supervisor

    init(_ supervisor: Supervisor) {
        self.supervisor = supervisor
    }

    var lineEpoch: UInt64 { supervisor.manifest.newestLine?.epoch ?? 0 }

    /// Whether the line a recovery would restore (the newest intact one) was written by another
    /// number of ranks. Read from storage only when some kept line was; the launch that
    /// follows uses the same reading.
    var lineResized: Bool {
        let manifest = supervisor.manifest
        guard manifest.committed.contains(where: { $0.rankCount != nil }) else { return false }
        let cached = supervisor.intactForLaunch.flatMap { $0.ranks == nil ? (line: $0.line, problems: $0.problems) : nil }
        let intact = cached ?? supervisor.newestIntactLine()
        supervisor.intactForLaunch = (intact.line, intact.problems, nil)
        return intact.line.map { manifest.rankCount(of: $0) != manifest.rankCount } ?? false
    }

    /// Reads the newest intact line once: the launch that follows the answer uses it too. A
    /// rank recovers alone only from the newest committed line: the survivors' retention and the
    /// logs were trimmed to it, so an older line (the newest damaged on both mirrors, or held in
    /// a memory that is lost) needs every rank to roll back.
    func lostLog(of rank: Int) -> String? {
        // Only its own snapshot: the others keep running, and a rollback reads them all anew.
        let intact = supervisor.independent ? nil : supervisor.newestIntactLine(ranks: [rank])
        supervisor.intactForLaunch = intact.map { ($0.line, $0.problems, [rank]) }
        if let intact, let reason = notNewest(intact.line) { return reason }
        return supervisor.lostLog(of: rank, intact: intact)
    }

    func entryLogPosition(of rank: Int) -> UInt64? {
        let intact = supervisor.newestIntactLine(ranks: [rank])
        supervisor.intactForLaunch = (intact.line, intact.problems, [rank])
        guard notNewest(intact.line) == nil else { return nil }
        return supervisor.logPositionOf(rank, line: intact.line)
    }

    /// Why `line`, the newest that reads, is not the newest committed one; nil when it is.
    private func notNewest(_ line: CommittedLine?) -> String? {
        guard let newest = supervisor.manifest.newestLine, line?.epoch != newest.epoch else { return nil }
        return "the newest line (epoch \(newest.epoch)) cannot be read"
            + (newest.isOnDisk ? "" : " (it was held in memory alone)") + ", and a lone recovery needs it"
    }

    func recoverableInterval(of rank: Int) -> UInt64? {
        let intact = supervisor.newestIntactLine()
        guard notNewest(intact.line) == nil else { return nil }
        return supervisor.recoverableInterval(of: rank, line: intact.line)
    }

    var checkpointCounts: [Int] { supervisor.checkpoints.counts }

    func newestRestorableCheckpoint(of rank: Int) -> Int { supervisor.checkpoints.newestRestorable(rank) }

    var dependencies: IntervalDependencies { supervisor.checkpoints.dependencies }
}
