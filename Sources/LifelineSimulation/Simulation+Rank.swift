import LifelineCore

/// The ranks' side of a simulated job: each process runs the model program on its
/// `RankMachine`, as `RankRuntime` does for a real program — safe points and captures, sends,
/// receives (live or replayed), control messages — and checks each delivery against the
/// failure-free run.
extension Simulation {
    /// Optimistic logging: how long records stay in memory before a delivery flushes them.
    static let flushSeconds = 0.02

    /// The payload hash a rank remembers deliveries by.
    static let fingerprint: @Sendable ([UInt8]) -> UInt64 = { bytes in
        bytes.reduce(UInt64(bytes.count)) { ModelProgram.mix($0, UInt64($1)) }
    }

    /// A control message reaches a rank's process.
    func rankHandles(_ message: ControlMessage, rank: Int) throws {
        if case .start(let plan) = message {
            try start(rank, plan: plan)
            return
        }
        guard processes[rank].machine != nil else {
            // Read before START: handled right after it, in order (as the runtime does).
            processes[rank].earlyControl.append(message)
            return
        }
        switch message {
        case .checkpointRequest(let epoch):
            performParticipant(rank, processes[rank].machine!.handleRequest(epoch))
        case .safePointChosen(let epoch, let step):
            performParticipant(rank, processes[rank].machine!.participant.handleSafePointChosen(epoch, step: step))
        case .checkpointDone(let epoch, let covered):
            let position = processes[rank].machine!.committed(epoch, coveredByReceiver: covered, coversSelf: true)
            if let position { trimLog(rank, before: position) }
            performParticipant(rank, processes[rank].machine!.participant.handleDone(epoch))
        case .cut(let epoch, let covered):
            writeCaptured(rank, epoch: epoch, coveredByReceiver: covered)
        case .eventsLogged(let through):
            processes[rank].eventLogClient?.handleLogged(through: through)
        case .eventRecords:
            throw Violation("rank \(rank) got its event records after START")
        case .abort(let epoch):
            if let awaiting = processes[rank].awaitingCut, awaiting.epoch == epoch {
                // No line will hold the capture: it is never written.
                processes[rank].awaitingCut = nil
                pendingSnapshots[awaiting.name] = nil
                processes[rank].writing.removeAll { $0.name == awaiting.name }
            }
            performParticipant(rank, processes[rank].machine!.participant.handleAbort(epoch))
        case .release, .peerAddresses, .peerAddress, .signal, .collectHostGarbage:
            break
        case .peerRestarted(let peer, let incarnation):
            processes[rank].machine!.peerRestarted(peer, incarnation: incarnation)
            // This rank connects to the restarted peer and sends it what it retains first.
            processes[rank].reconnected[peer.rawValue] = incarnation
            processes[rank].machine!.peerConnected(peer, incarnation: incarnation, connecting: true)
            flushResend(rank, to: peer)
        case .freeze:
            // The snapshots being written are finished first: their ACKs come before the answer
            // (the runtime drains its writer). Everything delivered so far reaches the log
            // (optimistic logging).
            for (epoch, name) in processes[rank].writing { try snapshotDurable(rank: rank, epoch: epoch, name: name) }
            if processes[rank].machine!.rules.flushesAtCheckpoints { flushLog(rank) }
            sendToSupervisor(from: rank, processes[rank].machine!.freeze())
        case .thaw:
            processes[rank].machine!.thaw()
        case .trim(let checkpoint, let covered):
            let position = processes[rank].machine!.committed(
                Epoch(UInt64(max(0, checkpoint))), coveredByReceiver: covered, coversSelf: false)
            if let position { trimLog(rank, before: position) }
        case .writeMirrors(let mirrors):
            if !mirrors.isEmpty { processes[rank].writeMirrors = mirrors }
        case .waitQuery:
            break
        case .start, .heartbeat, .stepReport, .captured, .logEvents, .ack, .snapshotFailed, .finished, .checkpointWanted, .faultFired,
             .replayComplete, .caughtUp, .frozen, .waitReport, .nondeterminism, .logMirrorFailed, .drained, .stopping, .exiting,
             .memoryReclaimed:
            throw Violation("rank \(rank) got \(message), which only ranks send")
        }
        wake(rank, after: 0)
    }

    /// START: the rank restores its entry (or starts afresh), opens its log (replaying what it
    /// logged after its entry when it restarts alone), reads what arrived meanwhile and sends
    /// every retained message again.
    private func start(_ rank: Int, plan: StartPlan) throws {
        let snapshot = try plan.restoreSnapshot.map { name -> Snapshot in
            guard let snapshot = snapshots[name] else { throw Violation("rank \(rank) restores \(name), which is not on the disk") }
            guard !snapshot.mirrors.intersection(workingMirrors).isEmpty else {
                throw Violation("rank \(rank) restores \(name), which is on no mirror that works")
            }
            return snapshot
        }
        processes[rank].writeMirrors = plan.writeMirrors
        var replay: ReplayQueue?
        let position = snapshot?.logPosition ?? 0
        if settings.logging == .senderBased {
            // The records come from the event logger, before START (as `RankRuntime` takes them).
            var held: (first: UInt64?, records: [[UInt8]])?
            processes[rank].earlyControl.removeAll { message in
                guard case .eventRecords(let first, let records) = message else { return false }
                held = (first, records)
                return true
            }
            processes[rank].eventLogClient = EventLogClient(position: position, stableOnWrite: !settings.ranksAway)
            if plan.restarted, plan.replayLog {
                guard let held else { throw Violation("rank \(rank) restarted to replay without its event records") }
                var records: [LogRecord] = []
                if let first = held.first {
                    let end = first + UInt64(held.records.count)
                    guard position >= first, position <= end else {
                        throw Violation("the event logger holds rank \(rank)'s records \(first)..<\(end), not its entry's position \(position)")
                    }
                    records = try held.records[Int(position - first)...].map { bytes in
                        do { return try LogRecord.decode(bytes) } catch { throw Violation("rank \(rank)'s event record: \(error)") }
                    }
                    processes[rank].eventLogClient = EventLogClient(position: end, stableOnWrite: !settings.ranksAway)
                }
                replay = ReplayQueue(records, mode: settings.logging)
            }
        } else if settings.logging != .none {
            if !plan.restarted {
                logs[rank] = Log(firstIndex: logs[rank].nextIndex)
            } else if plan.replayLog {
                let log = logs[rank]
                guard position >= log.firstIndex, position <= log.nextIndex else {
                    throw Violation("rank \(rank)'s log holds \(log.firstIndex)..<\(log.nextIndex), not its entry's position \(position)")
                }
                var records = Array(log.records[Int(position - log.firstIndex)...])
                if settings.logging == .optimistic, let limit = plan.replayLimit {
                    // Only what depends on no lost state of the failed ranks; the rest of the log
                    // describes an execution that is gone.
                    let length = OptimisticLogging.replayLength(
                        records, start: snapshot?.dependencies ?? DependencyVector(), rank: RankID(rank),
                        rankCount: settings.rankCount, limit: limit)
                    records.removeLast(records.count - length)
                    logs[rank].records.removeLast(logs[rank].records.count - Int(position - log.firstIndex) - length)
                }
                replay = ReplayQueue(records, mode: settings.logging)
            } else {
                // Cut back to the entry: what came after belongs to an execution that is gone.
                let keep = Int(max(0, Int64(position) - Int64(logs[rank].firstIndex)))
                logs[rank].records.removeLast(max(0, logs[rank].records.count - keep))
            }
        }
        var machine = RankMachine(
            settings: RankMachine.Settings(
                rank: RankID(rank), rankCount: settings.rankCount, incarnation: processes[rank].incarnation,
                variant: settings.variant, logging: settings.logging, intervalSeconds: independentInterval),
            restored: snapshot.map {
                RankMachine.Restored(epoch: $0.epoch, step: $0.step, ledger: $0.ledger, dependencies: $0.dependencies)
            },
            deliverableEpoch: plan.deliverableEpoch, replay: replay, now: now, fingerprint: Self.fingerprint)
        for (header, payload) in processes[rank].early { machine.arrive(header, payload) }
        processes[rank].early = []
        processes[rank].state = snapshot?.state ?? ModelProgram.initialState(rank: rank)
        // A restored rank resumes right at its safe point: it does not pass it again.
        processes[rank].phase = snapshot.map { .running($0.step, operation: 0) } ?? .atSafePoint(0)
        let retained = machine.retainedOutgoing
        processes[rank].machine = machine
        for message in retained { transmit(from: rank, message) }
        if plan.restarted, settings.logging != .none, replay?.remainingCount ?? 0 == 0 { finishReplay(rank) }
        let early = processes[rank].earlyControl
        processes[rank].earlyControl = []
        for message in early { try rankHandles(message, rank: rank) }
        wake(rank, after: 0)
    }

    private func finishReplay(_ rank: Int) {
        let deliveries = processes[rank].machine!.replay?.deliveriesReplayed ?? 0
        processes[rank].machine!.endReplay()
        sendToSupervisor(from: rank, .replayComplete(deliveries: deliveries))
    }

    private func performParticipant(_ rank: Int, _ actions: [CheckpointParticipant.Action]) {
        for action in actions {
            switch action {
            case .reportStep(let epoch, let step):
                sendToSupervisor(from: rank, .stepReport(epoch, step: step))
            case .releaseHeldSends:
                for message in processes[rank].machine!.takeHeldSends() { transmit(from: rank, message) }
            case .capture, .trimRetained:
                break
            }
        }
    }

    func flushResend(_ rank: Int, to peer: RankID) {
        guard let messages = processes[rank].machine!.takeResend(to: peer) else { return }
        for message in messages { transmit(from: rank, message) }
    }

    /// Optimistic logging: the records kept in memory reach the disk.
    private func flushLog(_ rank: Int) {
        logs[rank].records += processes[rank].unflushed
        processes[rank].unflushed = []
        processes[rank].flushedAt = now
    }

    /// The index of the rank's next log record: a snapshot's log position.
    private func logPosition(_ rank: Int) -> UInt64 {
        processes[rank].eventLogClient?.nextIndex ?? logs[rank].nextIndex
    }

    private func trimLog(_ rank: Int, before position: UInt64) {
        processes[rank].eventLogClient?.committed(before: position)
        let drop = Int(min(UInt64(logs[rank].records.count), position > logs[rank].firstIndex ? position - logs[rank].firstIndex : 0))
        logs[rank].records.removeFirst(drop)
        logs[rank].firstIndex += UInt64(drop)
    }

    /// The rank's program goes as far as it can: through safe points, sends and receives, until
    /// it waits (for a message, the round's safe point, a computation) or reaches the barrier.
    func act(_ rank: Int) throws {
        while processes[rank].machine != nil {
            switch processes[rank].phase {
            case .starting, .finished:
                return
            case .atSafePoint(let step):
                if let catchUp = processes[rank].catchUpStep, step >= catchUp {
                    processes[rank].catchUpStep = nil
                    sendToSupervisor(from: rank, .caughtUp(step: step))
                }
                if step == settings.stepCount {
                    finish(rank)
                    return
                }
                if inPlace(&processes[rank].machine!, { $0.independentCheckpointDue(now: now) }) {
                    _ = processes[rank].machine!.participant.handleSafePoint(step: step)
                    captureIndependent(rank, step: step)
                    processes[rank].phase = .running(step, operation: 0)
                    continue
                }
                switch processes[rank].machine!.participant.handleSafePoint(step: step) {
                case .proceed:
                    break
                case .wait:
                    return
                case .capture(let epoch):
                    capture(rank, epoch: epoch, step: step)
                case .keep(let epoch):
                    report.keeps += 1
                    sendToSupervisor(from: rank, .captured(epoch, delivered: processes[rank].machine!.ledger.delivered))
                    sendToSupervisor(from: rank, .ack(epoch, Acknowledgement(
                        step: step, snapshotBytes: 0, outputOffset: 0, delivered: processes[rank].machine!.ledger.delivered,
                        kept: true)))
                }
                processes[rank].phase = .running(step, operation: 0)
            case .running(let step, let index):
                guard let operation = program.operation(of: rank, step: step, at: index) else {
                    processes[rank].phase = .atSafePoint(step + 1)
                    wake(rank, after: stepDuration(rank))
                    return
                }
                switch operation {
                case .send(let peer):
                    // Sender-based logging: nothing leaves before the event logger holds every
                    // record appended (the no-orphan rule); `eventsLogged` wakes the rank.
                    if let client = processes[rank].eventLogClient, !client.sendsMayGo { return }
                    let (message, route, askCheckpoint) = processes[rank].machine!.send(
                        ModelProgram.payload(sentState(rank)), to: RankID(peer), tag: ModelProgram.tag)
                    if askCheckpoint { sendToSupervisor(from: rank, .checkpointWanted) }
                    switch route {
                    case .now: transmit(from: rank, message)
                    case .held: break
                    case .afterResend: flushResend(rank, to: RankID(peer))
                    }
                case .mixStep:
                    processes[rank].state = ModelProgram.mix(processes[rank].state, UInt64(step))
                case .receive(let from, let adds):
                    guard let (header, payload) = try receive(rank, from: from) else { return }
                    let source = header.source.rawValue
                    if let eventLog {
                        eventLog("  r\(rank) step \(step) delivers r\(source) #\(header.sequence.rawValue) "
                            + (ModelProgram.state(of: payload).map(hex) ?? "\(payload.count)B")
                            + (processes[rank].machine!.replay != nil ? " (replayed)" : ""))
                    }
                    let sent = oracle.channels[source * settings.rankCount + rank] ?? []
                    let sequence = Int(header.sequence.rawValue)
                    guard sequence < sent.count, let value = ModelProgram.state(of: payload),
                          value == sent[sequence] || settings.nondeterministic
                    else {
                        let got = ModelProgram.state(of: payload).map { "state \(hex($0))" } ?? "\(payload.count) bytes"
                        let expected = sequence < sent.count ? "state \(hex(sent[sequence]))" : "no such message"
                        throw Violation("rank \(rank) at step \(step) delivered message \(sequence) from rank \(source) with \(got), "
                            + "where the failure-free run has \(expected)")
                    }
                    processes[rank].state = ModelProgram.fold(processes[rank].state, value, from: source, adds: adds)
                }
                processes[rank].phase = .running(step, operation: index + 1)
            }
        }
    }

    /// The next message from `source` (nil: any): replayed from the log, or live; nil while it
    /// has not arrived. The header says where it came from.
    private func receive(_ rank: Int, from source: Int?) throws -> (DataHeader, [UInt8])? {
        let peer = source.map { RankID($0) }
        if let header = processes[rank].awaiting {
            guard let arrival = processes[rank].machine!.takeReplayed(header) else { return nil }
            processes[rank].awaiting = nil
            if processes[rank].machine!.replayExhausted { finishReplay(rank) }
            return (arrival.header, try deliver(rank, arrival.header, arrival.payload))
        }
        if processes[rank].machine!.replay != nil {
            defer {
                if processes[rank].awaiting == nil, processes[rank].machine?.replay != nil, processes[rank].machine!.replayExhausted {
                    finishReplay(rank)
                }
            }
            switch processes[rank].machine!.replayReceive(source: peer, tag: ModelProgram.tag) {
            case .deliver(let header, let payload):
                return (header, try deliver(rank, header, payload))
            case .await(let header):
                processes[rank].awaiting = header
                return try receive(rank, from: source)
            case .live:
                break
            case .exhausted:
                finishReplay(rank)
            case .diverged(let expected):
                throw Violation("rank \(rank)'s replay diverged: it receives from \(source.map { "rank \($0)" } ?? "any rank") "
                    + "where it made \(expected)")
            }
        }
        guard let arrival = processes[rank].machine!.take(from: peer, tag: ModelProgram.tag) else { return nil }
        let record = { (kind: RankLogging.Record) -> LogRecord in
            kind == .determinant ? .determinant(arrival.header) : .delivery(arrival.header, payload: arrival.payload)
        }
        switch processes[rank].machine!.rules.delivery(anySource: source == nil) {
        case .synchronously(let kind)? where processes[rank].eventLogClient != nil:
            // To the supervisor's event logger: no sync; the next send waits for its ack.
            let message = processes[rank].eventLogClient!.append([record(kind).encoded()])
            sendToSupervisor(from: rank, message)
            report.logRecords += 1
            report.logBytes += DataHeader.byteCount
        case .synchronously(let kind)?:
            logs[rank].records.append(record(kind))
            report.logRecords += 1
            report.logBytes += DataHeader.byteCount + (kind == .determinant ? 0 : arrival.payload.count)
            processes[rank].syncDebt += costModel?.syncSeconds ?? 0
        case .buffered(let kind)?:
            processes[rank].unflushed.append(record(kind))
            report.logRecords += 1
            report.logBytes += DataHeader.byteCount + (kind == .determinant ? 0 : arrival.payload.count)
            if RankLogging.flushDue(bufferedBytes: processes[rank].unflushed.count, sinceFlush: now - processes[rank].flushedAt,
                                    flushBytes: 0, flushSeconds: Self.flushSeconds) {
                flushLog(rank)
            }
        case nil:
            break
        }
        return (arrival.header, try deliver(rank, arrival.header, arrival.payload))
    }

    /// The rank machine delivers a message; one it cannot read is a violation (the model
    /// programs' messages are all well formed).
    private func deliver(_ rank: Int, _ header: DataHeader, _ payload: [UInt8]) throws -> [UInt8] {
        do {
            return try processes[rank].machine!.deliver(header, payload)
        } catch {
            throw Violation("rank \(rank) cannot deliver: \(error)")
        }
    }


    /// A capture at a round's safe point: the rank reports what it delivered, and once the
    /// round's cut arrives its snapshot is written in the background (`writeCaptured`); its ACK
    /// follows once it is durable.
    private func capture(_ rank: Int, epoch: Epoch, step: Int) {
        if processes[rank].machine!.rules.flushesAtCheckpoints { flushLog(rank) }  // the position counts every delivery
        let machine = processes[rank].machine!
        let snapshot = Snapshot(
            epoch: epoch, step: step, ledger: machine.ledger, state: processes[rank].state, logPosition: logPosition(rank),
            dependencies: machine.dependencyVector,
            changes: machine.participant.changesSinceCheckpoint, mirrors: processes[rank].writeMirrors)
        processes[rank].machine!.noteCapture(epoch, logPosition: logPosition(rank))
        let name = Self.snapshotName(epoch: epoch, rank: rank)
        pendingSnapshots[name] = snapshot
        processes[rank].writing.append((snapshot.epoch, name))
        processes[rank].awaitingCut = (epoch, name)
        sendToSupervisor(from: rank, .captured(epoch, delivered: machine.ledger.delivered))
    }

    /// The round's cut reached the rank: its capture keeps only the messages in flight across
    /// the line (`MessageLedger.inFlight`), as `RankRuntime` writes it, and is written.
    private func writeCaptured(_ rank: Int, epoch: Epoch, coveredByReceiver covered: DeliveredSets) {
        guard let awaiting = processes[rank].awaitingCut, awaiting.epoch == epoch,
              var snapshot = pendingSnapshots[awaiting.name] else { return }
        processes[rank].awaitingCut = nil
        report.retainedAtCaptureBytes += snapshot.ledger.retainedBytes
        snapshot.ledger = snapshot.ledger.inFlight(coveredByReceiver: covered)
        report.inFlightBytes += snapshot.ledger.retainedBytes
        pendingSnapshots[awaiting.name] = snapshot
        schedule(.snapshotDurable(rank: rank, incarnation: processes[rank].incarnation, epoch, name: awaiting.name),
                 after: snapshotDuration(snapshot))
    }

    /// Independent checkpoints: the rank closes its interval with a checkpoint of its own.
    private func captureIndependent(_ rank: Int, step: Int) {
        let (index, dependencies) = processes[rank].machine!.closeInterval(now: now)
        // The fields read one by one: a copy of the whole machine costs a retain per field.
        let snapshot = Snapshot(
            epoch: Epoch(UInt64(index)), step: step, ledger: processes[rank].machine!.ledger, state: processes[rank].state,
            logPosition: logPosition(rank), dependencies: DependencyVector(),
            changes: processes[rank].machine!.participant.changesSinceCheckpoint,
            intervalDependencies: dependencies, mirrors: processes[rank].writeMirrors)
        processes[rank].machine!.noteCapture(Epoch(UInt64(index)), logPosition: logPosition(rank))
        let name = Self.checkpointName(index, rank: rank)
        pendingSnapshots[name] = snapshot
        processes[rank].writing.append((snapshot.epoch, name))
        schedule(.snapshotDurable(rank: rank, incarnation: processes[rank].incarnation, Epoch(UInt64(index)), name: name),
                 after: snapshotDuration(snapshot))
    }

    /// A snapshot is on the disk: the participant knows, the supervisor gets the ACK.
    func snapshotDurable(rank: Int, epoch: Epoch, name: String) throws {
        guard let snapshot = pendingSnapshots.removeValue(forKey: name) else { return }
        processes[rank].writing.removeAll { $0.name == name }
        processes[rank].machine!.independentCheckpointEnded(Int(epoch.rawValue), now: now)
        if failsWrite() {
            // The write failed on both mirrors: no ACK; the supervisor aborts the round (or,
            // under independent checkpoints, restarts the rank).
            report.failedWrites += 1
            sendToSupervisor(from: rank, .snapshotFailed(epoch, reason: "simulated write failure"))
            return
        }
        let failing = snapshot.mirrors.subtracting(workingMirrors)
        if !failing.isEmpty {
            // A mirror fails every write: the rank says which (the supervisor degrades).
            report.failedWrites += 1
            sendToSupervisor(from: rank, .snapshotFailed(epoch, reason: "simulated failing mirror", failedMirrors: failing))
            return
        }
        snapshots[name] = snapshot
        processes[rank].machine!.participant.handleSnapshotDurable(epoch)
        sendToSupervisor(from: rank, .ack(epoch, Acknowledgement(
            step: snapshot.step, snapshotBytes: UInt64(16 + snapshot.ledger.retainedBytes), outputOffset: 0,
            delivered: snapshot.ledger.delivered, changes: snapshot.changes, logPosition: snapshot.logPosition, stateBytes: 8,
            inFlightBytes: UInt64(snapshot.ledger.storedMessageBytes), dependencies: snapshot.intervalDependencies,
            mirrors: snapshot.mirrors)))
    }

    /// What a send of `rank` says: its state, or, when the program is nondeterministic on
    /// purpose and this is not the rank's first launch, something else.
    private func sentState(_ rank: Int) -> UInt64 {
        let launches = incarnations[rank].count
        guard settings.nondeterministic, launches > 1 else { return processes[rank].state }
        return processes[rank].state ^ (UInt64(launches) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// How long a step computes: drawn, or under a cost model its step time and the syncs its
    /// deliveries waited for.
    private func stepDuration(_ rank: Int) -> Double {
        guard let model = costModel else { return Double.random(in: Self.stepSeconds, using: &generator) }
        defer { processes[rank].syncDebt = 0 }
        return model.stepSeconds * jitter() + processes[rank].syncDebt
    }

    /// How long a snapshot takes to become durable: drawn, or under a cost model its bytes
    /// and one sync per mirror.
    private func snapshotDuration(_ snapshot: Snapshot) -> Double {
        guard let model = costModel else { return Double.random(in: Self.snapshotSeconds, using: &generator) }
        return (model.transfer(64 + snapshot.ledger.retainedBytes) + 2 * model.syncSeconds) * jitter()
    }

    /// The final barrier: the rank reports and waits for the release.
    private func finish(_ rank: Int) {
        if processes[rank].machine!.rules.flushesAtCheckpoints { flushLog(rank) }
        processes[rank].phase = .finished
        sendToSupervisor(from: rank, .finished(
            step: settings.stepCount - 1, loggedBytes: 0, retainedBytesPeak: UInt64(processes[rank].machine!.retainedBytesPeak),
            logBytesPeak: 0, residentBytesPeak: 0, logSyncs: 0))
    }

    /// `body` on a machine borrowed in place. A non-mutating call into LifelineCore on
    /// `processes[rank].machine!` copies the whole machine first (a retain per field, dozens),
    /// which at every safe point of 10,000 ranks showed in the simulator's profile.
    private func inPlace<T>(_ machine: inout RankMachine, _ body: (inout RankMachine) -> T) -> T {
        body(&machine)
    }
}
