#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// Checkpoints: safe points, captures (coordinated rounds and independent checkpoints), the
/// final barrier.
extension RankRuntime {
    // MARK: Checkpoints

    /// Refuses a safe point that does not come after the last one, naming the likely mistake:
    /// a restarted rank whose program did not take its restored state starts again at its
    /// first step.
    func checkIncreasing(_ step: Int, after passed: Int) throws {
        guard step <= passed else { return }
        if let restoredStep, !restoreAsked, step <= restoredStep {
            throw LifelineError(.usage,
                "safe point \(step) comes before step \(restoredStep), where this rank was restored: the program must call "
                + "comm.restore(State.self) after join() and continue from the state it returns (nil on a fresh start)")
        }
        throw LifelineError(.usage, "safe point \(step) does not come after \(passed): steps must increase")
    }

    /// A safe point: fires step faults, waits for S when asked, captures when S is reached.
    func safePoint(step: Int, capture: () -> StateWriter) throws {
        checkProbe("safePoint")
        if let replaySession {
            if step == restoredStep, step == replaySession.step { return }  // replaying from right here
            try checkIncreasing(step, after: replaySession.step)
            try replaySession.safePoint(step: step, capture: capture)
            return
        }
        guard let launch else {
            // Alone, nothing is captured, but the program's steps are checked as under `lifeline run`.
            try checkIncreasing(step, after: standaloneStepPassed)
            standaloneStepPassed = step
            return
        }
        if step == restoredStep, step == machine.participant.stepPassed { return }  // resuming right here
        try checkIncreasing(step, after: machine.participant.stepPassed)
        if let catchUp = catchUpStep, step >= catchUp {
            catchUpStep = nil
            control?.send(.caughtUp(step: step))
        }
        if let fault = rankFaults.first(where: { $0.spec == .killAtStep(rank, step: step) }) {
            fireFault(index: fault.index, step: step, control: control)
        }
        // A rank that computes without messages reaches the runtime only here: read what the
        // supervisor sent, so a request is answered now and not at the next receive.
        try pump(timeoutMs: 0, waiting: .running)
        try serviceControl()
        trace?.flush()
        if machine.independentCheckpointDue(now: jobClock()) {
            heartbeatStep.value = step
            _ = machine.participant.handleSafePoint(step: step)
            try captureIndependent(step: step, state: capture(), launch: launch)
            return
        }
        if launch.memoryLevel != nil, writer?.takeDrainFailure() == true { machine.participant.writeAtNextRound() }
        while true {
            switch machine.participant.handleSafePoint(step: step) {
            case .proceed:
                heartbeatStep.value = step
                return
            case .wait:
                try pump(timeoutMs: Self.pollIntervalMs, waiting: .safePoint)
                try serviceControl()
            case .capture(let epoch):
                heartbeatStep.value = step
                trace?.captured(epoch: epoch, step: step)
                let started = monotonicSeconds()
                // The round's cut needs what this rank delivered, which its capture does not
                // change: said first, so that the cut comes back while the state is encoded
                // (and, with levels, hashed) rather than after.
                if store != nil {
                    roundCapturing = epoch
                    control?.send(.captured(epoch, delivered: machine.ledger.delivered))
                }
                let reported = monotonicSeconds() - started
                let deliveredBefore = machine.deliveries
                if launch.memoryLevel != nil { memoryCapture = writer?.openMemoryCapture(epoch: epoch) }
                let state = capture()
                guard machine.deliveries == deliveredBefore else {
                    throw LifelineError(.usage, "rank \(rank.rawValue) received a message while its state for safe point \(step) "
                        + "was captured: the state given to safePoint(step:state:) must not call the communicator (compute it before the call)")
                }
                let target = memoryCapture
                memoryCapture = nil
                try captureSnapshot(epoch: epoch, step: step, state: state, into: target, captureSeconds: reported, launch: launch)
                if launch.memoryLevel != nil { try awaitCut(epoch, patience: monotonicSeconds() - started) }
                return
            case .keep(let epoch):
                // Minimal checkpoints: nothing delivered since the last committed checkpoint,
                // which stays this rank's entry in the new line.
                heartbeatStep.value = step
                control?.send(.captured(epoch, delivered: machine.ledger.delivered))
                control?.send(.ack(epoch, Acknowledgement(
                    step: step, snapshotBytes: 0, outputOffset: 0, delivered: machine.ledger.delivered, kept: true)))
                return
            }
        }
    }

    /// With a memory level, after this rank's capture of round `epoch` and its copy in memory:
    /// waits for the round's cut, for `patience` seconds at most (as long as the capture and the
    /// copy took, up to 50 ms), so that the copy is completed and acknowledged as soon as the cut
    /// comes rather than at the program's next call into the runtime, a step of its computation
    /// later (heat2d's rounds committed up to 20 ms later that way on 2 cores). The cut comes
    /// once every rank has captured, which ranks at the same safe point do within about as long;
    /// while this rank waits, the others have its core.
    func awaitCut(_ epoch: Epoch, patience: Double) throws {
        let deadline = monotonicSeconds() + min(max(patience, 0.001), 0.05)
        var timeoutMs: Int32 = 0
        repeat {
            try pump(timeoutMs: timeoutMs, waiting: .running)
            try serviceControl()
            timeoutMs = Int32(max(1, min(50, (deadline - monotonicSeconds()) * 1000)))
        } while awaitingCut?.snapshot.epoch == epoch && monotonicSeconds() < deadline
    }

    /// A capture at a round's safe point, whose `captured` (what the rank delivered) went as it
    /// began, `captureSeconds` after its start: the rank keeps the capture until the round's
    /// cut arrives (`writeCaptured`), or takes the cut that came during it. With a memory
    /// level the state is in memory twice before the cut: captured straight into the round's
    /// copy (`target`, when the rank has a spare), or copied there from the capture.
    func captureSnapshot(epoch: Epoch, step: Int, state: StateWriter, into target: MemoryLevel.CaptureTarget? = nil,
                         captureSeconds: Double, launch: LaunchEnvironment) throws {
        defer {
            roundCapturing = nil
            if let early = earlyCut {
                earlyCut = nil
                if early.epoch == epoch { writeCaptured(epoch, coveredByReceiver: early.covered) }
            }
        }
        guard let store else {
            if let target { writer?.cancelMemoryCapture(target) }
            return
        }
        // A restored state still mapped from its copy in memory (the program has not taken it)
        // is copied out: once this round commits, that copy may be written over.
        if case .mapped(let copy) = restoredState { restoredState = .array(Array(copy.state)) }
        if rules.flushesAtCheckpoints { try flushLog() }  // the log position below counts every delivery
        lifeline_flush_stdio()
        let outputOffset = UInt64(max(0, lseek(STDOUT_FILENO, 0, SEEK_CUR)))
        var snapshot = RankSnapshot(
            epoch: epoch, step: step, incarnation: incarnation, logPosition: logPosition,
            dependencies: machine.dependencyVector, ledger: machine.ledger,
            programState: state.writesExternally ? [] : state.array, numericRanges: state.numericRanges)
        snapshot.stateInMemoryCopy = state.writesExternally ? state.count : nil
        machine.noteCapture(epoch, logPosition: logPosition)
        let fault = rankFaults.first { $0.spec == .killInPhase(rank, .checkpoint) }
        var job = SnapshotWriter.Job(
            epoch: epoch, step: step,
            name: ManifestStore(store: store).snapshotName(epoch: epoch.rawValue, rank: rank.rawValue),
            uncompressed: [], delivered: machine.ledger.delivered, outputOffset: outputOffset,
            changes: machine.participant.changesSinceCheckpoint, dependencies: PerPeer(rankCount: 0, absent: -1),
            faultIndex: fault?.index, mirrors: writeMirrors, logPosition: logPosition, stateBytes: UInt64(state.count),
            captureMicroseconds: UInt32(clamping: Int(captureSeconds * 1e6)))
        // Said in the ACK where the supervisor cannot read the snapshot for its orphan search:
        // a copy in another host's memory, or one on the hosts' disks (partner copies).
        if launch.logging == .optimistic, launch.memoryLevel != nil || partners != nil {
            job.logDependencies = snapshot.dependencies.words
        }
        // The round's cut is on its way (`captured` went as the capture began) while the copy
        // is made, or (captured straight into it) its hash taken as it was written is kept.
        if let target {
            if state.writesExternally,
               writer?.beginMemoryCopy(epoch: epoch, captured: target, stateLength: state.count, stateHash: state.takeExternalHash()) == true {
                job.stateInMemoryCopy = true
                job.numericRanges = state.numericRanges
                letGoOfCaptureBuffers()
            } else {
                // It outgrew the spare (the writer moved it into a buffer), or does not fit
                // `--memory-max`: the copy, if any, is made from the capture as without a spare.
                if state.writesExternally {
                    snapshot.programState = state.bytes  // out of the spare before it is given back
                    snapshot.stateInMemoryCopy = nil
                }
                writer?.cancelMemoryCapture(target)
                if !state.writesExternally { writer?.beginMemoryCopy(epoch: epoch, state: snapshot.programState) }
            }
        } else if launch.memoryLevel != nil {
            writer?.beginMemoryCopy(epoch: epoch, state: snapshot.programState)
        }
        awaitingCut = (snapshot, job)
    }

    /// The round's cut arrived: the capture keeps only the messages in flight across the line
    /// (`MessageLedger.inFlight`) and goes to the writer.
    func writeCaptured(_ epoch: Epoch, coveredByReceiver covered: DeliveredSets) {
        guard let writer, let (captured, pending) = awaitingCut, captured.epoch == epoch else {
            if roundCapturing == epoch { earlyCut = (epoch, covered) }
            return
        }
        awaitingCut = nil
        var snapshot = captured
        snapshot.ledger = captured.ledger.inFlight(coveredByReceiver: covered)
        var job = pending
        job.metadata = snapshot.metadata()
        if !job.stateInMemoryCopy {
            job.state = snapshot.programState
            job.uncompressed = snapshot.encoded(metadata: job.metadata)
        }
        job.inFlightBytes = UInt64(snapshot.ledger.storedMessageBytes)
        writer.submit(job)
    }

    /// Independent checkpointing: closes the current interval with a checkpoint of its own,
    /// written in the background; its ACK carries the interval's dependency vector.
    func captureIndependent(step: Int, state: StateWriter, launch: LaunchEnvironment) throws {
        guard let writer, let store else { return }
        let (interval, dependencies) = machine.closeInterval(now: jobClock())
        let index = Epoch(UInt64(interval))
        trace?.captured(epoch: index, step: step)
        lifeline_flush_stdio()
        let outputOffset = UInt64(max(0, lseek(STDOUT_FILENO, 0, SEEK_CUR)))
        let snapshot = RankSnapshot(
            epoch: index, step: step, incarnation: incarnation, logPosition: logPosition, ledger: machine.ledger,
            programState: state.bytes, numericRanges: state.numericRanges)
        machine.noteCapture(index, logPosition: logPosition)
        let fault = rankFaults.first { $0.spec == .killInPhase(rank, .checkpoint) }
        writer.submit(SnapshotWriter.Job(
            epoch: index, step: step,
            name: ManifestStore(store: store).independentSnapshotName(
                rank: rank.rawValue, checkpoint: interval, incarnation: incarnation),
            uncompressed: snapshot.encoded(), delivered: machine.ledger.delivered, outputOffset: outputOffset,
            changes: machine.participant.changesSinceCheckpoint, dependencies: dependencies, faultIndex: fault?.index,
            mirrors: writeMirrors, stateBytes: UInt64(state.bytes.count), inFlightBytes: UInt64(machine.ledger.storedMessageBytes)))
    }

    /// The index of the rank's next log record: what a snapshot stores as its log position.
    var logPosition: UInt64 { log?.nextIndex ?? eventLog?.nextIndex ?? 0 }

    /// Asks the supervisor for a checkpoint at the next common safe point.
    func requestCheckpoint() throws {
        checkProbe("requestCheckpoint")
        control?.send(.checkpointWanted)
    }

    /// The final barrier: report, then serve the protocol until the supervisor releases the job.
    func finish() throws {
        checkProbe("finish")
        replaySession?.programFinished()
        guard !finished else { return }
        finished = true
        guard isLaunched else { return }  // alone: nothing to wait for
        if rules.flushesAtCheckpoints { try flushLog() }
        trace?.flush()
        lifeline_flush_stdio()
        if let fault = rankFaults.first(where: { $0.spec == .killInPhase(rank, .finish) }) {
            fireFault(index: fault.index, control: control)
        }
        control?.send(.finished(
            step: machine.participant.stepPassed, loggedBytes: log?.appendedBytes ?? eventLog?.appendedBytes ?? 0,
            retainedBytesPeak: UInt64(machine.retainedBytesPeak), logBytesPeak: UInt64(logBytesPeak),
            residentBytesPeak: Self.residentBytesPeak(), logSyncs: log?.syncCount ?? 0,
            logSyncMicroseconds: UInt64(max(0, (log?.syncSeconds ?? 0) * 1e6)),
            restoreMicroseconds: UInt64(max(0, restoreTiming.seconds * 1e6)), restoredFrom: restoreTiming.source))
        while !released {
            try serviceControl()
            if !released { try pump(timeoutMs: Self.pollIntervalMs, waiting: .barrier) }
        }
        if let acceptor { reportRefusals(acceptor, final: true) }
        writer?.drain()
        // The job is released and its lines are on disk: on another host nothing else removes
        // this rank's copies in memory, nor those the host kept for its partner's ranks.
        // Taken out, so that the heartbeat no longer touches the lock about to be let go.
        if let (folder, rank, lock) = copiesRemovedAtExit.withLock({ held in defer { held = nil }; return held }) {
            let level = MemoryLevel(folder: folder)
            if let host = launch?.hosts?.host {
                level.removeCopies(ofRanksOtherThan: Set(peerAddresses.indices.filter { peerAddresses[$0]?.host == host }))
            }
            level.removeCopies(of: rank)
            // The last of the job's ranks on the host to let go removes the folder.
            if let lock { level.releaseRanksLock(lock) }
        }
    }
}
