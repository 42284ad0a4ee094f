@testable import LifelineCore

/// The ranks' side of `JobSimulation`: the program's steps (safe point, sends, receives), its
/// captures and keeps, and the checks made at each delivery and each safe point S.
extension JobSimulation {
    /// The rank's program takes its next action: decide at a safe point, send, or receive one message.
    mutating func rankActs(_ rank: Int) throws {
        switch phases[rank] {
        case .finished:
            return
        case .atSafePoint(let step):
            switch participants[rank].handleSafePoint(step: step) {
            case .wait:
                return  // woken by safePointChosen or abort
            case .proceed:
                break
            case .capture(let round):
                try checkWriteRule(rank: rank, round: round, keeps: false)
                try capture(rank: rank, round: round, step: step)
            case .keep(let round):
                try checkWriteRule(rank: rank, round: round, keeps: true)
                try keep(rank: rank, round: round, step: step)
            }
            if Int.random(in: 0..<60, using: &generator) == 0 { sendToCoordinator(from: rank, .checkpointWanted) }
            pass(rank, safePoint: step)
            wake(rank, after: 0)
        case .sending(let step):
            try send(rank, step: step)
            var missing = program.expected[step][rank]
            try consumeStash(rank, step: step, missing: &missing)
            phases[rank] = .receiving(step, missing: missing)
            wake(rank, after: Double.random(in: Self.stepComputeSeconds, using: &generator))
        case .receiving(let step, var missing):
            if missing.contains(where: { $0 > 0 }) {
                guard let index = pickDeliverable(rank, step: step, missing: missing) else { return }  // woken by an arrival or an abort
                let (header, payload) = arrived[rank].remove(at: index)
                try deliver(header, payload, to: rank)
                let source = header.source.rawValue
                if header.tag == Int64(step) {
                    missing[source] -= 1
                    states[rank].accumulator = SimulatedProgram.absorb(states[rank].accumulator, payload: payload)
                } else {
                    states[rank].stash.append(SimulatedProgram.Stashed(source: source, tag: header.tag, payload: payload))
                    eagerDeliveryCount += 1
                }
            }
            if missing.allSatisfy({ $0 == 0 }) {
                endStep(rank, step)
            } else {
                phases[rank] = .receiving(step, missing: missing)
            }
            wake(rank, after: Double.random(in: 0...0.01, using: &generator))
        }
    }

    /// The program passes safe point `step`: local computation, then its sends.
    mutating func pass(_ rank: Int, safePoint step: Int) {
        states[rank].accumulator = SimulatedProgram.mix(states[rank].accumulator, step: step)
        phases[rank] = .sending(step)
    }

    /// An arrived message the program takes now: one of this step's from a source it still
    /// waits for or, receiving eagerly, one of a later step. Nil when the epoch hold (or nothing)
    /// leaves none.
    private mutating func pickDeliverable(_ rank: Int, step: Int, missing: [Int]) -> Int? {
        var candidates: [Int] = []
        for (index, message) in arrived[rank].enumerated() {
            let header = message.header
            let wanted = header.tag == Int64(step) ? missing[header.source.rawValue] > 0 : receivesEagerly && header.tag > Int64(step)
            guard wanted else { continue }
            if participants[rank].mayDeliver(messageEpoch: header.epoch) {
                candidates.append(index)
            } else {
                heldByEpochCount += 1
            }
        }
        guard !candidates.isEmpty else { return nil }
        return candidates[Int.random(in: 0..<candidates.count, using: &generator)]
    }

    /// The program takes the messages it stashed for `step` (receiving eagerly).
    private mutating func consumeStash(_ rank: Int, step: Int, missing: inout [Int]) throws {
        var later: [SimulatedProgram.Stashed] = []
        for message in states[rank].stash {
            guard message.tag >= Int64(step), message.tag > Int64(step) || missing[message.source] > 0 else {
                throw Violation(description: "rank \(rank) at step \(step) holds a stashed message of step \(message.tag) from \(message.source) it does not need")
            }
            if message.tag == Int64(step) {
                missing[message.source] -= 1
                states[rank].accumulator = SimulatedProgram.absorb(states[rank].accumulator, payload: message.payload)
            } else {
                later.append(message)
            }
        }
        states[rank].stash = later
    }

    /// Sends step `step`'s messages, each computed from the rank's state now.
    private mutating func send(_ rank: Int, step: Int) throws {
        for (index, destination) in program.destinations[step][rank].enumerated() {
            let payload = SimulatedProgram.payload(accumulator: states[rank].accumulator, step: step, destination: destination, index: index)
            let header = ledgers[rank].send(to: RankID(destination), tag: Int64(step), epoch: participants[rank].epoch,
                                            incarnation: incarnation, payload: payload)
            if participants[rank].holdsSends {
                held[rank].append((destination, header, payload))
            } else {
                guard held[rank].isEmpty else { throw Violation(description: "rank \(rank) sends while older sends are held") }
                transmit(from: rank, to: destination, header, payload)
            }
        }
    }

    private mutating func endStep(_ rank: Int, _ step: Int) {
        if step + 1 == stepCount {
            phases[rank] = .finished
            sendToCoordinator(from: rank, .finished(step: participants[rank].stepPassed, loggedBytes: 0,
                                                    retainedBytesPeak: 0, logBytesPeak: 0, residentBytesPeak: 0))
        } else {
            phases[rank] = .atSafePoint(step + 1)
        }
    }

    /// Delivers a message to the program (the caller uses or stashes it), checking it against
    /// the failure-free run and (b): no orphan.
    private mutating func deliver(_ header: DataHeader, _ payload: [UInt8], to rank: Int) throws {
        let source = header.source.rawValue
        let sequence = header.sequence.rawValue
        let channel = program.channels[source][rank]
        guard sequence < UInt64(channel.count), channel[Int(sequence)] == SimulatedProgram.Message(tag: header.tag, payload: payload) else {
            let expected = sequence < UInt64(channel.count) ? "tag \(channel[Int(sequence)].tag), \(channel[Int(sequence)].payload)" : "nothing"
            throw Violation(description: "rank \(rank) got #\(sequence) from \(source) with tag \(header.tag), \(payload); "
                            + "the failure-free run sent \(expected)")
        }
        let own = participants[rank].epoch
        if header.epoch > own {
            for round in (own.rawValue + 1)...header.epoch.rawValue where !aborted.contains(Epoch(round)) {
                throw Violation(description: "orphan: rank \(rank) (epoch \(own.rawValue)) delivered #\(sequence) from \(source) "
                                + "sent after its capture of round \(round), which was not aborted")
            }
        }
        guard ledgers[rank].recordDelivery(source: header.source, sequence: header.sequence) else {
            throw Violation(description: "rank \(rank) delivered #\(sequence) from \(source) twice")
        }
        participants[rank].noteChange()
        deliveryLog[rank][source].append(sequence)
    }

    /// The ranks the rule leaves out write nothing: in minimal mode a rank captures round e iff
    /// it delivered something since its entry in the newest committed line (DONE of that line
    /// reached it before the request for e); in the other variants every rank captures.
    private func checkWriteRule(rank: Int, round: Epoch, keeps: Bool) throws {
        let entry = try entry(of: rank, inLine: coordinator.committedEpoch)
        let since = deliveryLog[rank].reduce(0) { $0 + $1.count } - entry.capture.deliveryCount
        guard since >= 0, participants[rank].changesSinceCheckpoint == UInt64(since) else {
            throw Violation(description: "rank \(rank) at S of round \(round.rawValue) counts \(participants[rank].changesSinceCheckpoint) "
                            + "changes, but delivered \(since) since its entry of round \(entry.round.rawValue)")
        }
        let shouldKeep = variant == .minimal && since == 0
        guard keeps == shouldKeep else {
            throw Violation(description: keeps
                ? "rank \(rank) kept its entry of round \(entry.round.rawValue) in round \(round.rawValue) (\(variant)) with \(since) deliveries since"
                : "rank \(rank) wrote a snapshot in round \(round.rawValue) though it delivered nothing since its entry of round \(entry.round.rawValue)")
        }
    }

    private mutating func capture(rank: Int, round: Epoch, step: Int) throws {
        guard captures[round]?[rank] == nil, kept[round]?[rank] == nil else {
            throw Violation(description: "rank \(rank) reached the safe point of round \(round.rawValue) twice")
        }
        captures[round, default: [:]][rank] = Capture(
            step: step, snapshot: Self.snapshot(ledgers[rank], states[rank]), ledger: ledgers[rank],
            deliveryLog: deliveryLog[rank], state: states[rank], changes: participants[rank].changesSinceCheckpoint)
        captureCount += 1
        let fails = options.storageFailures && Int.random(in: 0..<25, using: &generator) == 0
        schedule(.snapshotWritten(rank, round, succeeded: !fails), after: Double.random(in: 0.001...0.2, using: &generator),
                 generation: generation)
    }

    /// Minimal: the rank enters round e without writing and acknowledges at once, as kept.
    private mutating func keep(rank: Int, round: Epoch, step: Int) throws {
        guard captures[round]?[rank] == nil, kept[round]?[rank] == nil else {
            throw Violation(description: "rank \(rank) reached the safe point of round \(round.rawValue) twice")
        }
        let participant = participants[rank]
        guard participant.state == .acknowledged(round), participant.epoch == round, !participant.holdsSends else {
            throw Violation(description: "rank \(rank) kept round \(round.rawValue) but is \(participant.state) at epoch \(participant.epoch.rawValue)")
        }
        kept[round, default: [:]][rank] = KeptPoint(step: step, sent: ledgers[rank].nextSequence.dense)
        keepCount += 1
        sendToCoordinator(from: rank, .ack(round, Acknowledgement(
            step: step, snapshotBytes: 0, outputOffset: 0, delivered: ledgers[rank].delivered, kept: true, changes: 0)))
    }

    /// The snapshot writer finished (or failed) rank's snapshot of `round`: ACK or snapshotFailed.
    mutating func snapshotWritten(rank: Int, round: Epoch, succeeded: Bool) throws {
        guard let capture = captures[round]?[rank] else {
            throw Violation(description: "rank \(rank) wrote a snapshot of round \(round.rawValue) it never captured")
        }
        if succeeded {
            participants[rank].handleSnapshotDurable(round)
            sendToCoordinator(from: rank, .ack(round, Acknowledgement(
                step: capture.step, snapshotBytes: UInt64(capture.snapshot.count), outputOffset: 0, delivered: capture.ledger.delivered,
                kept: false, changes: capture.changes)))
        } else {
            sendToCoordinator(from: rank, .snapshotFailed(round, reason: "injected"))
        }
    }

    /// A rank's entry in the committed line of `line` (its initial state in the start line).
    func entry(of rank: Int, inLine line: Epoch) throws -> LineEntry {
        if line == .start { return LineEntry(round: .start, capture: initialCaptures[rank]) }
        guard let entries = lines[line], entries.count == rankCount else {
            throw Violation(description: "line \(line.rawValue) is not committed")
        }
        return entries[rank]
    }
}
