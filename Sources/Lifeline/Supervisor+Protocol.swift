import Foundation
import LifelineCore
import LifelineStorage

/// The checkpoint protocol on the supervisor's side: control messages in, coordinator actions out.
extension Supervisor {
    /// Reads what a rank sent and hands it to the coordinator. Returns whether it was only
    /// records for the event logger that wait for no acknowledgement, and heartbeats: nothing
    /// that asks the supervisor to act soon (`Supervisor.step` lets such turns batch).
    @discardableResult
    func readControl(from rank: Int) throws -> Bool {
        guard let connection = slots[rank].connection else { return false }
        var messages: [ControlMessage] = []
        var open = true
        var malformed: String?
        do {
            open = try connection.readAvailable { frame in
                if case .control(let message) = frame { messages.append(message) }
            }
        } catch {
            // The frames before it are whole and are handled (records a rank on this host
            // counts stable once written are among them); then the rank fails, not the job.
            malformed = "\(error)"
        }
        machine.heard(from: rank, now: now)
        if let hostJob, !messages.isEmpty, !isMoving(rank, incarnation: machine.ranks[rank].incarnation) {
            hostJob.placement.heard(from: rank, now: now)
        }
        var onlyRecords = open
        let incarnation = machine.ranks[rank].incarnation
        for message in messages {
            switch message {
            case .logEvents(_, _, acknowledge: false), .heartbeat: break
            default: onlyRecords = false
            }
            try handle(message, from: RankID(rank))
            if finishedJob { return false }
            // A message that relaunched the rank (a failed snapshot under independent
            // checkpoints) ends the batch: what its old process wrote after it is not the new one's.
            if machine.ranks[rank].incarnation != incarnation { return false }
        }
        if let malformed {
            try perform(machine.handleMalformed(from: rank, detail: malformed, now: now, facts: StorageFacts(self)))
            return false
        }
        if !open {  // the exit will follow through the launcher
            slots[rank].connection = nil
            machine.handleDisconnected(rank)
        }
        return onlyRecords
    }

    private func handle(_ message: ControlMessage, from rank: RankID) throws {
        switch message {
        case .heartbeat(let step):
            noteStep(step, of: rank)
        case .stepReport(let epoch, let step):
            noteStep(step, of: rank)
            try perform(coordinator.handleStepReport(from: rank, round: epoch, step: step))
        case .captured(let epoch, let delivered):
            if captureArrivals?.epoch != epoch { captureArrivals = (epoch, [:]) }
            captureArrivals?.at[rank.rawValue] = now
            try perform(coordinator.handleCaptured(from: rank, round: epoch, delivered: delivered, now: now))
        case .logEvents(let first, let records, let acknowledge):
            try perform(machine.handleLogEvents(from: rank.rawValue, first: first, records: records, acknowledge: acknowledge))
        case .ack(let epoch, let acknowledgement):
            events.record("ack", [
                "rank": .int(rank.rawValue), "epoch": .int(Int(epoch.rawValue)),
                "step": .int(acknowledgement.step), "bytes": .int(Int(clamping: acknowledgement.snapshotBytes)),
                "kept": .bool(acknowledgement.kept), "changes": .int(Int(clamping: acknowledgement.changes)),
            ])
            if independent {
                try handleIndependentCheckpoint(rank: rank.rawValue, index: Int(epoch.rawValue), acknowledgement)
            } else {
                noteAcknowledged(epoch, rank: rank.rawValue, acknowledgement)
                noteDependencies(epoch, rank: rank.rawValue, acknowledgement)
                try perform(coordinator.handleAck(from: rank, round: epoch, acknowledgement, now: now))
            }
        case .snapshotFailed(let epoch, let reason, let failedMirrors):
            events.record("snapshot_failed", [
                "rank": .int(rank.rawValue), "epoch": .int(Int(epoch.rawValue)), "reason": .string(reason),
            ])
            if let mirror = failedMirrors.mirrors.first { try mirrorFailed(mirror, reason: reason, byRank: true) }
            try perform(machine.handleSnapshotFailed(from: rank.rawValue, round: epoch, reason: reason, now: now, facts: StorageFacts(self)))
        case .finished(let step, let loggedBytes, let retainedBytesPeak, let logBytesPeak, let residentBytesPeak, let logSyncs,
                       let logSyncMicroseconds, let restoreMicroseconds, let restoredFrom):
            events.record("rank_finished", [
                "rank": .int(rank.rawValue), "step": .int(step), "log_bytes": .int(Int(clamping: loggedBytes)),
                "retained_bytes_peak": .int(Int(clamping: retainedBytesPeak)), "log_bytes_peak": .int(Int(clamping: logBytesPeak)),
                "resident_bytes_peak": .int(Int(clamping: residentBytesPeak)), "log_syncs": .int(Int(clamping: logSyncs)),
                "log_sync_s": .double(Double(logSyncMicroseconds) / 1e6),
                "restore_s": .double(Double(restoreMicroseconds) / 1e6),
                "restored_from": .string(restoredFrom == 2 ? "memory" : restoredFrom == 1 ? "disk" : "start"),
            ])
            try perform(coordinator.handleFinished(from: rank, step: step, now: now))
        case .checkpointWanted:
            events.record("checkpoint_wanted", ["rank": .int(rank.rawValue)])
            try perform(machine.handleCheckpointWanted(now: now))
        case .faultFired(let index):
            if faults.indices.contains(index) {
                faultSchedule.fired(index)
                events.record("fault_injected", ["rank": .int(rank.rawValue), "spec": .string("\(faults[index])")])
            }
        case .replayComplete(let deliveries):
            events.record("replay_done", ["rank": .int(rank.rawValue), "deliveries": .int(deliveries)])
            try perform(machine.handleReplayComplete(from: rank.rawValue, now: now))
        case .caughtUp(let step):
            try perform(machine.handleCaughtUp(from: rank.rawValue, step: step, now: now))
        case .frozen(let interval, let dependencies):
            let reply = IndependentPartialRollback.Frozen(interval: interval, dependencies: dependencies)
            try perform(machine.handleFrozen(from: rank.rawValue, reply, now: now, facts: StorageFacts(self)))
        case .waitReport(let serial, let wait):
            machine.handleWaitReport(from: rank.rawValue, serial: serial, wait)
        case .drained(let epoch, let storedBytes, let failure, let failedMirrors):
            try handleDrained(epoch, rank: rank.rawValue, storedBytes: storedBytes, failure: failure, failedMirrors: failedMirrors)
        case .stopping(let status):
            runtimeStops[rank.rawValue] = status
        case .exiting(let status):
            programExits[rank.rawValue] = status
        case .memoryReclaimed(let folder, let bytes):
            events.record("memory_reclaimed", [
                "folder": .string(folder), "bytes": .int(Int(clamping: bytes)), "rank": .int(rank.rawValue),
                "host": .string(hostJob?.addresses[rank.rawValue]?.host ?? ""),
            ])
        case .logMirrorFailed(let mirrors, let reason):
            events.record("log_mirror_failed", ["rank": .int(rank.rawValue), "reason": .string(reason)])
            if let mirror = mirrors.mirrors.first { try mirrorFailed(mirror, reason: reason, byRank: true) }
        case .nondeterminism(let source, let sequence):
            try nondeterminismFound(receiver: rank.rawValue, source: source.rawValue, sequence: sequence.rawValue)
        case .start, .checkpointRequest, .safePointChosen, .cut, .eventsLogged, .eventRecords, .checkpointDone, .abort, .release, .peerRestarted, .peerAddresses, .peerAddress, .collectHostGarbage, .signal, .freeze, .thaw,
             .trim, .waitQuery, .writeMirrors:
            events.record("protocol_error", ["rank": .int(rank.rawValue), "detail": .string("unexpected \(message)")])
        }
    }

    /// A rank got a message again with other bytes than it delivered: the program is not
    /// deterministic, and the states the ranks hold may not fit together. Said on the terminal
    /// and in the event log; the job stops unless `--on-nondeterminism warn`.
    private func nondeterminismFound(receiver: Int, source: Int, sequence: UInt64) throws {
        events.record("nondeterminism", ["rank": .int(receiver), "source": .int(source), "sequence": .int(Int(clamping: sequence))])
        let what = "rank \(receiver) got message \(sequence) from rank \(source) again with other bytes than the first time: "
            + "the program is not deterministic (read clocks, random numbers and other outside values through comm.logged { })"
        guard configuration.onNondeterminism != .warn else {
            warn(what + "; going on (--on-nondeterminism warn): the result may be wrong")
            return
        }
        stopSurvivors()
        throw LifelineError(.jobFailed, what + "; the job stops (--on-nondeterminism warn goes on)")
    }

    /// A rank reported the last safe point it passed: a new one is progress.
    private func noteStep(_ step: Int, of rank: RankID) {
        machine.handleStep(step, of: rank.rawValue, now: now)
    }

    /// Performs what the coordinator decided.
    func perform(_ actions: [CheckpointCoordinator.Action]) throws {
        for action in actions {
            switch action {
            case .broadcast(let message):
                record(message)
                for rank in slots.indices { send(message, to: rank) }
            case .send(let rank, let message):
                send(message, to: rank.rawValue)
            case .writeCommit(let epoch, let step, let acks):
                try perform(commit(epoch, step: step, acks: acks))
                try recordLineHeldInMemory()
            case .roundAborted(let epoch, let reason):
                events.record("abort", ["epoch": .int(Int(epoch.rawValue)), "reason": .string(reason)])
                // The chunks only the aborted round wrote go now (those a rank still writes
                // stay, under the chunk lock, until the next commit collects them).
                collectGarbage()
            case .finishJob:
                try finishJob()
            }
        }
    }

    private func record(_ message: ControlMessage) {
        switch message {
        case .checkpointRequest(let epoch):
            roundStartedAt = now
            events.record("checkpoint_request", ["epoch": .int(Int(epoch.rawValue))])
        case .safePointChosen(let epoch, let step):
            events.record("safe_point", ["epoch": .int(Int(epoch.rawValue)), "step": .int(step)])
        default:
            break
        }
    }

    /// When the first and the last capture of round `epoch` began: a rank's `captured` arrival
    /// less its capture's duration, the earliest and the latest of them.
    private func captureStarts(_ epoch: Epoch, acks: [Acknowledgement]) -> (first: Double, last: Double)? {
        guard let arrivals = captureArrivals, arrivals.epoch == epoch else { return nil }
        let starts = acks.indices.compactMap { rank in
            arrivals.at[rank].map { $0 - Double(acks[rank].captureMicroseconds) / 1e6 }
        }
        guard let first = starts.min(), let last = starts.max() else { return nil }
        return (first, last)
    }

    /// Deletes the snapshots and chunks no kept line references. When a rank's write held the
    /// chunk lock (a drain, under `--levels memory,disk`, may run for a second or more, and
    /// the next right behind it), the chunks' collection is owed: the loop tries it again
    /// (`collectOwedGarbage`), so unreferenced chunks do not pile up while drains follow each
    /// other.
    func collectGarbage() {
        lastCollectionAt = now
        var keeping = manifest
        if durableLines != manifest.committed {
            // The manifest on disk still names lines the one in memory dropped: both are kept.
            let epochs = Set(manifest.committed.map(\.epoch))
            keeping.committed = (manifest.committed + durableLines.filter { !epochs.contains($0.epoch) }).sorted { $0.epoch < $1.epoch }
        }
        do {
            chunkCollectionOwed = try !manifests.collect(keeping: keeping).chunksCollected
        } catch {
            chunkCollectionOwed = false
            warn("cannot delete old checkpoints: \(error)")
        }
    }

    /// Tries an owed chunk collection again, twice a second at most.
    func collectOwedGarbage() {
        guard chunkCollectionOwed, now - lastCollectionAt >= Self.owedCollectionPeriodSeconds else { return }
        collectGarbage()
    }

    /// The commit point: the manifest naming the new line is written to both mirrors. Then
    /// output up to the line is released, and files no line references are deleted.
    ///
    /// A line held in memory alone (`--levels memory,disk`, a round not drained yet) commits
    /// without that write: such a line serves recoveries under this supervisor only — copies in
    /// memory do not outlive it, and a new one (`resume`) starts from the newest line on disk —
    /// and this supervisor holds the manifest in its memory. So the ranks are told at once, and
    /// the manifest naming the line is written right after (`recordLineHeldInMemory`), with the
    /// collection and the commit's injected faults: its two synced writes took 5–16 ms here, as
    /// long as the rest of the commit. A supervisor that dies between the two leaves the
    /// manifest on disk one line behind, which only names lines a resume could not use anyway.
    private func commit(_ epoch: Epoch, step: Int, acks: [Acknowledgement]) throws -> [CheckpointCoordinator.Action] {
        guard let (entries, onlyOn) = machine.lineToCommit(acks) else {
            return coordinator.handleCommitFailed(epoch, reason: "the snapshots are on different mirrors", now: now)
        }
        let members = entries.enumerated().compactMap { rank, entry -> Member? in
            switch entry {
            case .keeps:
                return lineInForce?.members.first { $0.rank == rank }
            case .wrote(let incarnation):
                return Member(
                    rank: rank, snapshot: manifests.snapshotName(epoch: epoch.rawValue, rank: rank), step: acks[rank].step,
                    incarnation: Int(incarnation), outputOffset: acks[rank].outputOffset, snapshotBytes: acks[rank].snapshotBytes,
                    inFlightBytes: acks[rank].inFlightBytes, logPosition: acks[rank].logPosition)
            }
        }
        var next = manifest
        var line = CommittedLine(epoch: epoch.rawValue, step: step, members: members, onlyOn: onlyOn?.mirrors.first)
        let snapshots = snapshotRounds(members, epoch: epoch)
        (line.inMemory, line.onDisk) = levels(ofCommitting: epoch, acks: acks, members: members, snapshots: snapshots)
        next.appendCommitted(line, keep: configuration.keep ?? Manifest.keepDefault,
                             pinned: drains.pinned.union(machine.mirrors.pinnedLine.map { [$0] } ?? []))
        let recordLater = line.isInMemoryAlone
        do {
            if !recordLater { try commitManifest(&next) }
        } catch let error as LifelineError {
            throw error
        } catch {
            warn("cannot commit epoch \(epoch.rawValue): \(error); the previous line stands")
            events.record("commit_failed", ["epoch": .int(Int(epoch.rawValue)), "reason": .string("\(error)")])
            return coordinator.handleCommitFailed(epoch, reason: "\(error)", now: now)
        }
        manifest = next
        let previous = lineInForce
        lineInForce = next.newestLine
        lastCommitBytes = acks.saturatedSum(\.snapshotBytes)
        let wrote = acks.indices.filter { !acks[$0].kept }
        let kept = acks.indices.filter { acks[$0].kept }
        let keptFrom = kept.map { rank in
            previous?.members.first { $0.rank == rank }.flatMap { manifests.epoch(ofSnapshot: $0.snapshot) }
                .map { "\($0)" } ?? "start"
        }
        let captures = captureStarts(epoch, acks: acks)
        events.record("commit", [
            "epoch": .int(Int(epoch.rawValue)), "step": .int(step), "bytes": .int(Int(clamping: lastCommitBytes)),
            "logical": .int(Int(clamping: acks.saturatedSum(\.logicalBytes))),
            "state": .int(Int(clamping: acks.saturatedSum(\.stateBytes))),
            "in_flight": .int(Int(clamping: acks.saturatedSum(\.inFlightBytes))),
            "chunks": .int(Int(clamping: acks.saturatedSum(\.chunks))),
            "reused": .int(Int(clamping: acks.saturatedSum(\.chunksReused))),
            "wrote": .string(wrote.map { "\($0)" }.joined(separator: ",")),
            "changes": .string(wrote.map { "\(acks[$0].changes)" }.joined(separator: ",")),
            "kept": .string(kept.map { "\($0)" }.joined(separator: ",")),
            "kept_from": .string(keptFrom.joined(separator: ",")),
            "commits": .int(manifest.commits), "mirrors": .string(manifest.newestLine?.onlyOn?.rawValue ?? "ab"),
            "level": .string(line.levels),
            "from_capture_s": .double(captures.map { now - $0.first } ?? 0),
            "from_last_capture_s": .double(captures.map { now - $0.last } ?? 0),
        ])
        if holdsLevels {
            drains.committed(epoch.rawValue, members: snapshots, inMemoryAlone: line.isInMemoryAlone, now: now)
            var held: [UInt64: Set<Int>] = [:]
            for member in manifest.committed.flatMap(\.members) {
                if let round = manifests.epoch(ofSnapshot: member.snapshot) { held[round, default: []].insert(member.rank) }
            }
            drains.forget(before: manifest.committed.first?.epoch ?? 0, held: held)
            memoryCopies.committed(epoch.rawValue, members: snapshots)
            try recordOwedOnDisk()  // a line on disk whose record a failed write left owed
        }
        for (rank, rounds) in acknowledgedDependencies {
            acknowledgedDependencies[rank] = rounds.filter { $0.key >= epoch.rawValue || snapshots[rank] == $0.key }
        }
        // Output is released by the line that every failure can fall back to: with levels,
        // once it is on disk (`handleDrained`).
        if line.isOnDisk {
            for (rank, ack) in acks.enumerated() where !ack.kept { output.release(rank: rank, upTo: ack.outputOffset) }
        }
        if recordLater {
            lineRecordOwed = epoch
        } else {
            collectGarbage()
            fireStorageFaults(committed: epoch.rawValue)
        }
        machine.lineCommitted(acks: acks)
        let actions = coordinator.handleCommitDurable(epoch, now: now)
        events.record("checkpoint_done", ["epoch": .int(Int(epoch.rawValue))])
        if let started = roundStartedAt {
            lastRoundSeconds = now - started
            adaptInterval()
        }
        return stopIfRequestedAfterCommit() ? [] : actions
    }

    /// After a line committed in memory alone was announced: the manifest naming it is written
    /// to disk, then the collection and the commit's injected faults run (see `commit`). A write
    /// that fails leaves the line in force in memory, said in one line; the next write of the
    /// manifest records it.
    func recordLineHeldInMemory() throws {
        guard let epoch = lineRecordOwed else { return }
        lineRecordOwed = nil
        var next = manifest
        do {
            try commitManifest(&next)
        } catch let error as LifelineError {
            throw error
        } catch {
            warn("cannot record line \(epoch.rawValue) in the manifest on disk: \(error); it stands in memory, and the next write of the manifest records it")
            return
        }
        manifest = next
        collectGarbage()
        fireStorageFaults(committed: epoch.rawValue)
    }

    /// Every rank is at the final barrier: release them, wait for their exits, release all
    /// output, and record the job as finished.
    private func finishJob() throws {
        for rank in slots.indices { machine.expectExit(of: rank) }
        try readFinalDrains()
        awaitExits(of: Array(slots.indices)) { exit, ranks in
            // Under mpirun one process holds every rank.
            if let rank = ranks.first, exit.exitCode != 0 {
                warn("\(ranks.count > 1 ? "mpirun" : "rank \(rank)") \(exit) after the final barrier")
            }
        }
        // Every rank's writes have ended: a chunk collection a drain kept off runs now.
        if chunkCollectionOwed { collectGarbage() }
        output.releaseAll()
        sayFaultsNotFired()
        var next = manifest
        next.finished = true
        do {
            try commitManifest(&next)
            manifest = next
        } catch {
            warn("cannot record the job as finished: \(error)")
        }
        if let syncSeconds = syncTime?.seconds {
            events.record("job_finished", [
                "epochs": .int(manifest.commits), "failures": .int(failures), "recoveries": .int(recoveries),
                "log_sync_union_s": .double(syncSeconds),
            ])
        } else {
            events.record("job_finished", [
                "epochs": .int(manifest.commits), "failures": .int(failures), "recoveries": .int(recoveries),
            ])
        }
        finishedJob = true
    }
}
