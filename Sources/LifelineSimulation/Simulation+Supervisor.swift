import LifelineCore

/// The supervisor's side of a simulated job: it performs what its `SupervisorMachine` decides,
/// as `Supervisor` does with real processes — sends on the control links, commits lines on the
/// model disk, stops, kills and launches processes.
extension Simulation {
    /// Performs what the supervisor machine decided.
    func perform(_ actions: [SupervisorMachine.Action]) throws {
        for action in actions {
            switch action {
            case .send(let rank, let message):
                sendToRank(rank, message)
            case .round(let round):
                try perform(round)
            case .stop(let ranks):
                for rank in ranks where processes[rank].alive {
                    stopProcess(rank)
                    supervisor.handleReaped(rank)
                }
            case .kill(let rank):
                try takeEventRecordsInFlight(of: rank)
                stopProcess(rank)
                supervisor.handleReaped(rank)
            case .launch(let order):
                try launch(order)
            case .note(let note):
                noteTrace(note)
            case .fail(let failure):
                throw Violation("the supervisor gave up: \(failure)")
            }
        }
    }

    /// Performs what the checkpoint coordinator decided.
    private func perform(_ action: CheckpointCoordinator.Action) throws {
        switch action {
        case .broadcast(let message):
            if case .checkpointRequest(let epoch) = message {
                report.roundsStarted += 1
                roundRequestedAt[epoch.rawValue] = now
                forgetGatherings(before: epoch.rawValue)
            }
            try perform(supervisor.broadcast(message))
        case .send(let rank, let message):
            try perform(supervisor.send(message, to: rank.rawValue))
        case .writeCommit(let epoch, _, let acks):
            if failsWrite() {
                report.failedWrites += 1
                try perform(supervisor.coordinator.handleCommitFailed(epoch, reason: "simulated manifest write failure", now: now)
                    .map(SupervisorMachine.Action.round))
                return
            }
            try commitManifestMirrors()
            if let model = costModel {
                // The manifest, about 64 bytes a rank, synced on both mirrors; the supervisor
                // does nothing else meanwhile (DONE leaves after it).
                supervisorBusyUntil = max(now, supervisorBusyUntil) + model.transfer(64 * settings.rankCount) + 2 * model.syncSeconds
            }
            guard try commit(epoch, acks: acks) else { return }
            if let requested = roundRequestedAt.removeValue(forKey: epoch.rawValue) {
                let seconds = max(now, supervisorBusyUntil) - requested
                report.roundSeconds += seconds
                report.roundSecondsMax = max(report.roundSecondsMax, seconds)
            }
            supervisor.lineCommitted(acks: acks)
            try perform(supervisor.coordinator.handleCommitDurable(epoch, now: now).map(SupervisorMachine.Action.round))
        case .roundAborted(let epoch, _):
            report.aborts += 1
            note(0xAB, epoch.rawValue)
        case .finishJob:
            for rank in 0..<settings.rankCount { supervisor.expectExit(of: rank) }
            finished = true
        }
    }

    /// The commit point: the line of round `epoch` is on the disk. A rank that kept its entry
    /// (minimal) keeps its entry of the line in force.
    private func commit(_ epoch: Epoch, acks: [Acknowledgement]) throws -> Bool {
        guard let (decided, onlyOn) = supervisor.lineToCommit(acks) else {
            // The snapshots share no mirror written now (some written before a degrade, on the
            // failed mirror too, some after): the round cannot commit.
            try perform(supervisor.coordinator.handleCommitFailed(epoch, reason: "the snapshots are on different mirrors", now: now)
                .map(SupervisorMachine.Action.round))
            return false
        }
        let entries = decided.enumerated().map { rank, entry in
            entry == .keeps ? lineInForce?.entries[rank] : Self.snapshotName(epoch: epoch, rank: rank)
        }
        let line = Line(epoch: epoch.rawValue, entries: entries, onlyOn: onlyOn)
        if onlyOn != nil { report.degradedCommits += 1 }
        report.keptEntriesCommitted += acks.count { $0.kept }
        try check(line)
        lines.append(line)
        lineInForce = line
        report.commits += 1
        note(0xC0, epoch.rawValue)
        return true
    }

    /// A line about to be committed restores: each entry's snapshot is on the disk; no entry
    /// records a delivery its sender's entry had not sent (no orphan); every message in transit
    /// across it (sent before the sender's entry, not delivered before the receiver's) is
    /// retained in the sender's snapshot, to be sent again after a rollback to it.
    func check(_ line: Line) throws {
        var ledgers: [MessageLedger?] = []
        ledgers.reserveCapacity(line.entries.count)
        for (rank, entry) in line.entries.enumerated() {
            guard let entry else {
                ledgers.append(nil)  // the start: nothing sent or delivered
                continue
            }
            guard let snapshot = snapshots[entry] else {
                throw Violation("line \(line.epoch) names \(entry) for rank \(rank), which is not on the disk")
            }
            guard snapshot.mirrors.isSuperset(of: line.onlyOn ?? .both) else {
                throw Violation("line \(line.epoch) is committed on \(Self.mirrorNames(line.onlyOn ?? .both)) but names \(entry), "
                    + "which is on \(Self.mirrorNames(snapshot.mirrors))")
            }
            ledgers.append(snapshot.ledger)
        }
        // Under independent checkpoints with logging a rank that replayed alone may checkpoint
        // before its re-execution reaches where its lost execution had sent from: a receiver's
        // entry then holds a delivery its entry has not sent yet, which the deterministic
        // re-execution sends again (a duplicate, dropped) — not an orphan a rollback could lose
        // (`lifeline simulate --ranks 21 --seed 12003546 --checkpoint independent --logging
        // pessimistic --steps 10`). Every other line must hold none.
        let orphansPossible = settings.variant == .independent && settings.logging != .none
        for receiver in ledgers.indices where !orphansPossible {
            guard let ledger = ledgers[receiver] else { continue }
            for sender in ledger.delivered.used where sender != receiver {
                let sent = ledgers[sender]?.nextSequence[receiver].rawValue ?? 0
                let set = ledger.delivered[sender]
                let highest = max(Int64(set.watermark.rawValue) - 1, Int64(set.above.last?.rawValue ?? 0))
                guard highest < Int64(sent) else {
                    throw Violation("line \(line.epoch) holds an orphan: rank \(receiver)'s entry delivered message \(highest) "
                        + "from rank \(sender), whose entry had sent \(sent)")
                }
            }
        }
        for sender in ledgers.indices {
            guard let ledger = ledgers[sender] else { continue }
            for receiver in ledger.nextSequence.used where receiver != sender {
                let sent = ledger.nextSequence[receiver].rawValue
                let delivered = ledgers[receiver]?.delivered[sender] ?? DeliveredSet()
                var retained = Set(ledger.retained[receiver].map(\.header.sequence.rawValue))
                for sequence in delivered.watermark.rawValue..<max(sent, delivered.watermark.rawValue)
                where !delivered.contains(SequenceNumber(sequence)) && retained.remove(sequence) == nil {
                    throw Violation("line \(line.epoch) loses message \(sequence) from rank \(sender) to rank \(receiver): "
                        + "in transit across it, and not retained in the sender's entry")
                }
            }
        }
    }

    /// "A and B", "A", "B" or "no mirror".
    static func mirrorNames(_ mirrors: StorageMirrors) -> String {
        switch mirrors {
        case .both: "A and B"
        case .a: "A"
        case .b: "B"
        default: "no mirror"
        }
    }

    static func snapshotName(epoch: Epoch, rank: Int) -> String { "e\(epoch.rawValue)-r\(rank)" }
    static func checkpointName(_ index: Int, rank: Int) -> String { "i\(index)-r\(rank)" }

    /// Independent checkpoints: `rank`'s records after checkpoint `index` go, with their snapshots.
    private func forgetCheckpoints(of rank: Int, after index: Int) {
        if let eventLog, checkpoints.dependencies.newestCheckpoint(rank) > index {
            eventLog("  records: r\(rank) forgets checkpoints \(index + 1)...\(checkpoints.dependencies.newestCheckpoint(rank))")
        }
        for later in stride(from: index + 1, through: checkpoints.dependencies.newestCheckpoint(rank), by: 1) {
            snapshots[Self.checkpointName(later, rank: rank)] = nil
        }
        checkpoints.truncate(rank: rank, after: index)
    }

    /// Independent checkpoints: a rank's checkpoint is durable. Recorded, the checkpoint-only
    /// line advanced (committed when it moved), snapshots no line can use deleted, trims sent.
    private func independentCheckpoint(rank: Int, index: Int, _ ack: Acknowledgement) throws {
        if checkpoints.record(rank: rank, index: index, dependencies: ack.dependencies, delivered: ack.delivered) != nil {
            refusedCheckpoints += 1
            return
        }
        guard checkpoints.advanceDue else { return }
        let advance = checkpoints.advance(collecting: true, keepNewest: settings.logging != .none)
        if let eventLog, !advance.collected.isEmpty || advance.moved {
            eventLog("  records: r\(rank) checkpoint \(index); line \(advance.line)\(advance.moved ? " (moved)" : ""); collected "
                + advance.collected.map { "r\($0.rank):\($0.index)" }.joined(separator: ","))
        }
        for collected in advance.collected { snapshots[Self.checkpointName(collected.index, rank: collected.rank)] = nil }
        guard advance.moved else { return }
        let entries = advance.line.enumerated().map { rank, index in index == 0 ? nil : Self.checkpointName(index, rank: rank) }
        // On the mirrors all its checkpoints are on (as the manifest marks records written
        // while a mirror had failed).
        let common = entries.compactMap { $0.flatMap { snapshots[$0]?.mirrors } }.reduce(StorageMirrors.both) { $0.intersection($1) }
        let line = Line(epoch: (lines.last?.epoch ?? 0) + 1, entries: entries, checkpoints: advance.line,
                        onlyOn: common == .both ? nil : common)
        try check(line)
        lines.append(line)
        lineInForce = line
        checkpoints.lineCommitted(advance.line)
        report.commits += 1
        note(0xC1, line.epoch)
        for (sender, trim) in advance.trims.enumerated() {
            try perform(supervisor.send(.trim(checkpoint: trim.checkpoint, coveredByReceiver: trim.coveredByReceiver), to: sender))
        }
    }

    /// Launches the ranks of `order`, each from its entry in the newest line (or the start),
    /// or from the independent checkpoint it names (whose later records are forgotten).
    private func launch(_ order: SupervisorMachine.Launch) throws {
        launches += 1
        let line = lines.last
        let fromLine = order.restart.allSatisfy { $0.start == .newestLine }
        if order.restart.count == settings.rankCount, fromLine {
            if let line, line.checkpoints == nil,
               line.entries.contains(where: { $0.flatMap { snapshots[$0]?.epoch.rawValue }.map { $0 < line.epoch } ?? true }) {
                report.rollbacksToKeptEntries += 1  // an entry kept from an earlier round, or from the start
            }
            lineInForce = line
            if settings.variant == .independent {
                for rank in 0..<settings.rankCount { forgetCheckpoints(of: rank, after: line?.checkpoints?[rank] ?? 0) }
            }
        }
        for restart in order.restart {
            let rank = restart.rank
            var plan = supervisor.startPlan(for: order)
            var entry = fromLine ? line?.entries[rank] : nil
            if case .checkpoint(let index) = restart.start {
                forgetCheckpoints(of: rank, after: index)
                entry = index == 0 ? nil : Self.checkpointName(index, rank: rank)
            }
            plan.restoreSnapshot = entry
            plan.restoreEpoch = entry.flatMap { snapshots[$0]?.epoch } ?? .start
            let step = entry.flatMap { snapshots[$0]?.step } ?? -1
            let incarnation = supervisor.launching(rank, plan: plan, step: step, now: now)
            processes[rank] = Process(incarnation: incarnation, state: ModelProgram.initialState(rank: rank), launch: launches)
            processes[rank].catchUpStep = supervisor.catchUpStep(of: rank)
            // A launched rank connects to every peer; the survivors connect to it when they
            // learn of its restart (`peerRestarted`).
            incarnations[rank].append((launches, incarnation))
            schedule(.connected(rank: rank, incarnation: incarnation),
                     after: costModel.map { $0.launchSeconds * jitter() } ?? Double.random(in: Self.launchSeconds, using: &generator))
        }
        supervisor.launched(order.ranks)
        // A lone restart that joined another still starting (ranks failing together): the
        // ranks of one START connect to each other, whichever launch started them (each listens
        // before START and connects to the lower ones at it, as `RankRuntime` does).
        for rank in supervisor.starting where !order.ranks.contains(rank) && processes[rank].alive {
            processes[rank].launch = launches
            if let last = incarnations[rank].popLast() { incarnations[rank].append((launches, last.incarnation)) }
        }
    }

    /// Ends the process of `rank` (its machine and in-flight events die with it).
    func stopProcess(_ rank: Int) {
        processes[rank].alive = false
        processes[rank].machine = nil
    }

    /// A rank crashes: its process ends; the supervisor sees the exit at once.
    func crash(_ rank: Int) throws {
        guard processes[rank].alive else { return }
        report.crashes += 1
        try takeEventRecordsInFlight(of: rank)
        // The safe point it had passed, which a rank's heartbeats tell the supervisor (here
        // without their lag): its relaunch catches up to it and says when (`caughtUp`).
        switch processes[rank].phase {
        case .atSafePoint(let step): supervisor.handleStep(step - 1, of: rank, now: now)
        case .running(let step, _): supervisor.handleStep(step, of: rank, now: now)
        case .starting, .finished: break
        }
        stopProcess(rank)
        try perform(supervisor.handleExit(
            of: rank, cause: "killed by signal 9", programExit: nil, cleanExit: false, now: now, facts: DiskFacts(self)))
    }

    /// Sender-based logging, ranks on the supervisor's host: the records `rank`'s process sent
    /// and the supervisor has not handled yet reach the event logger before the process is
    /// gone (what it wrote to its socket outlives it, and the supervisor reads that to its end
    /// before it plans a recovery). Across hosts they are lost with it.
    func takeEventRecordsInFlight(of rank: Int) throws {
        guard settings.logging == .senderBased, !settings.ranksAway, processes[rank].alive else { return }
        let incarnation = processes[rank].incarnation
        func records(_ event: Event) -> (UInt64, [[UInt8]])? {
            guard case .toSupervisor(rank, incarnation, .logEvents(let first, let records, _)) = event else { return nil }
            return (first, records)
        }
        // Those waiting in the supervisor's inbox came first, then those still on their way,
        // in the order they will arrive (each rank's messages to the supervisor are FIFO).
        var pending = supervisorQueue.waiting.compactMap(records)
        pending += queue.sorted { $0.precedes($1) }.compactMap { slots[$0.slot].flatMap(records) }
        for (first, batch) in pending {
            try perform(supervisor.handleLogEvents(from: rank, first: first, records: batch, acknowledge: false))
        }
    }

    /// The supervisor crashes: every rank dies with it (their parent-death signal), and a
    /// new supervisor resumes the job from the disk, as `lifeline resume` does: its rounds
    /// continue from the newest committed line, its launches take the next incarnations.
    func crashSupervisor() throws {
        report.supervisorCrashes += 1
        report.recoveries += supervisor.recoveries
        for rank in 0..<settings.rankCount where processes[rank].alive { stopProcess(rank) }
        // The coordinator tree goes with it: what its aggregators had gathered is lost. (Once
        // the new supervisor numbered its rounds from the newest committed line, an uncommitted
        // round's number came again, and a part gathered for it by the dead tree counted as a
        // child's answer to the new round: the child's real answer then waited for ever in a
        // gathering that could not complete — `lifeline simulate --ranks 10000 --seed 1 --logging
        // optimistic --steps 40 --interval 0.05 --fan-in 16 ...`: no ACK, every rank at the
        // barrier. Rounds are now numbered after every round started, as the runtime numbers
        // them after every round its store holds snapshots of; this model takes the rounds the
        // dead supervisor requested.)
        gatherings = [:]
        // What the manifest keeps of the records; what each rank had delivered is gone.
        let records = checkpoints.dependencies
        checkpoints = IndependentCheckpoints(records: (0..<settings.rankCount).map { rank in
            (0..<records.newestCheckpoint(rank)).map {
                (records.vector(rank: rank, interval: $0), checkpoints.restorable[rank].contains($0 + 1))
            }
        })
        supervisor = SupervisorMachine(
            settings: supervisor.settings,
            coordinator: CheckpointCoordinator(
                rankCount: settings.rankCount, intervalSeconds: supervisor.coordinator.intervalSeconds,
                committed: Epoch(lines.last?.epoch ?? 0), started: supervisor.coordinator.lastEpoch, now: now),
            incarnation: supervisor.nextIncarnation)
        try perform(supervisor.launchEveryRank())
    }

    /// A control message from a rank.
    func supervisorHandles(_ message: ControlMessage, from rank: Int) throws {
        supervisor.heard(from: rank, now: now)
        let id = RankID(rank)
        switch message {
        case .heartbeat(let step):
            supervisor.handleStep(step, of: rank, now: now)
        case .stepReport(let epoch, let step):
            supervisor.handleStep(step, of: rank, now: now)
            try perform(supervisor.coordinator.handleStepReport(from: id, round: epoch, step: step).map(SupervisorMachine.Action.round))
        case .captured(let epoch, let delivered):
            try perform(supervisor.coordinator.handleCaptured(from: id, round: epoch, delivered: delivered, now: now)
                .map(SupervisorMachine.Action.round))
        case .logEvents(let first, let records, let acknowledge):
            try perform(supervisor.handleLogEvents(from: rank, first: first, records: records, acknowledge: acknowledge))
        case .ack(let epoch, let ack):
            if settings.variant == .independent {
                try independentCheckpoint(rank: rank, index: Int(epoch.rawValue), ack)
            } else {
                try perform(supervisor.coordinator.handleAck(from: id, round: epoch, ack, now: now).map(SupervisorMachine.Action.round))
            }
        case .snapshotFailed(let epoch, let reason, let failedMirrors):
            if let mirror = [StorageMirrors.a, .b].first(where: failedMirrors.contains) { try mirrorWriteFailed(mirror, reason: reason) }
            try perform(supervisor.handleSnapshotFailed(from: rank, round: epoch, reason: reason, now: now, facts: DiskFacts(self)))
        case .finished(let step, _, _, _, _, _, _, _, _):
            try perform(supervisor.coordinator.handleFinished(from: id, step: step, now: now).map(SupervisorMachine.Action.round))
        case .checkpointWanted:
            try perform(supervisor.handleCheckpointWanted(now: now))
        case .replayComplete:
            try perform(supervisor.handleReplayComplete(from: rank, now: now))
        case .caughtUp(let step):
            try perform(supervisor.handleCaughtUp(from: rank, step: step, now: now))
        case .frozen(let interval, let dependencies):
            try perform(supervisor.handleFrozen(
                from: rank, IndependentPartialRollback.Frozen(interval: interval, dependencies: dependencies), now: now,
                facts: DiskFacts(self)))
        case .nondeterminism(let source, let sequence):
            guard settings.nondeterministic else {
                throw Violation("rank \(rank) reported nondeterminism: message \(sequence.rawValue) from \(source) with other bytes")
            }
            // Caught, as it should be: the job stops (`lifeline run` without --on-nondeterminism warn).
            report.nondeterminismDetected += 1
            eventLog?("  rank \(rank) caught nondeterminism: message \(sequence.rawValue) from \(source); the job stops")
            finished = true
        case .faultFired, .waitReport, .logMirrorFailed, .drained, .stopping, .exiting, .memoryReclaimed:
            break  // storage faults and levels are not modelled (no simulated rank sends a drain)
        case .start, .checkpointRequest, .safePointChosen, .cut, .eventsLogged, .eventRecords, .checkpointDone, .abort, .release, .peerRestarted, .peerAddresses, .peerAddress, .collectHostGarbage, .signal, .freeze, .thaw,
             .trim, .waitQuery, .writeMirrors:
            throw Violation("rank \(rank) sent \(message), which only the supervisor sends")
        }
    }

    /// Folds a supervisor note into the trace.
    private func noteTrace(_ note: SupervisorMachine.Note) {
        switch note {
        case .failure(let rank, _, let step, _):
            self.note(0xF0, UInt64(rank), UInt64(bitPattern: Int64(step)))
            if recoveryBeganAt == nil { recoveryBeganAt = now }
        case .recoveryStart(let rank, let mode):
            self.note(0xF1, UInt64(rank))
            if mode == .replay { report.replays += 1 } else { report.rollbacks += 1 }
        case .recoveryDone(let ranks, _, _):
            self.note(0xF2, UInt64(ranks))
            if let began = recoveryBeganAt {
                report.recoverySeconds += now - began
                report.recoverySecondsMax = max(report.recoverySecondsMax, now - began)
                report.recoveriesTimed += 1
                recoveryBeganAt = nil
            }
        case .caughtUp(_, _, let seconds):
            report.caughtUpSeconds += seconds
            report.caughtUpSecondsMax = max(report.caughtUpSecondsMax, seconds)
            report.caughtUpTimed += 1
        case .fallback(let rank, _, _):
            self.note(0xF3, UInt64(rank))
            report.fallbacks += 1
        case .ranksStarted(let count): self.note(0xF4, UInt64(count))
        case .orphans(_, _, let orphans, _):
            self.note(0xF5, UInt64(orphans.count))
            report.orphans += orphans.count
        default: break
        }
    }
}

/// What the simulated disk says to the supervisor machine's recovery planning.
struct DiskFacts: RecoveryFacts {
    unowned let simulation: Simulation

    init(_ simulation: Simulation) {
        self.simulation = simulation
    }

    var lineEpoch: UInt64 { simulation.lines.last?.epoch ?? 0 }

    func lostLog(of rank: Int) -> String? {
        let position = simulation.lines.last?.entries[rank].flatMap { simulation.snapshots[$0]?.logPosition } ?? 0
        let log = simulation.logs[rank]
        guard log.firstIndex <= position, position <= log.nextIndex else {
            return "it holds records \(log.firstIndex)..<\(log.nextIndex), not the checkpoint's position \(position)"
        }
        return nil
    }

    func entryLogPosition(of rank: Int) -> UInt64? {
        simulation.lines.last?.entries[rank].flatMap { simulation.snapshots[$0]?.logPosition } ?? 0
    }

    func recoverableInterval(of rank: Int) -> UInt64? {
        let snapshot = simulation.lines.last?.entries[rank].flatMap { simulation.snapshots[$0] }
        let position = snapshot?.logPosition ?? 0
        let start = snapshot?.dependencies[rank] ?? 0
        let log = simulation.logs[rank]
        guard position >= log.firstIndex else { return nil }
        return start + (log.nextIndex > position ? log.nextIndex - position : 0)
    }

    var checkpointCounts: [Int] { simulation.checkpoints.counts }

    func newestRestorableCheckpoint(of rank: Int) -> Int { simulation.checkpoints.newestRestorable(rank) }

    var dependencies: IntervalDependencies { simulation.checkpoints.dependencies }
}
