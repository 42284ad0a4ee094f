@testable import LifelineCore

/// The protocol side of `JobSimulation`: control messages to ranks and to the coordinator, the
/// checks of every committed line and trim, the global rollback, and the final oracle check.
extension JobSimulation {
    // MARK: Ranks

    mutating func rankHandles(_ message: ControlMessage, rank: Int) throws {
        switch message {
        case .checkpointRequest(let round):
            for action in participants[rank].handleRequest(round) {
                guard case .reportStep(let reported, let step) = action else {
                    throw Violation(description: "request answered with \(action)")
                }
                sendToCoordinator(from: rank, .stepReport(reported, step: step))
            }
        case .safePointChosen(let round, let step):
            guard participants[rank].handleSafePointChosen(round, step: step).isEmpty else {
                throw Violation(description: "safePointChosen produced actions")
            }
            wake(rank, after: 0)
        case .checkpointDone(let round, let covered):
            let actions = participants[rank].handleDone(round)
            let expected: [CheckpointParticipant.Action] = variant == .blocking ? [.trimRetained(round), .releaseHeldSends] : [.trimRetained(round)]
            guard actions == expected else { throw Violation(description: "DONE(\(round.rawValue)) on rank \(rank) gave \(actions)") }
            try checkChangesAfterDone(rank: rank, round: round)
            try trim(rank: rank, round: round, covered: covered)
            if variant == .blocking { releaseHeld(rank) }
        case .abort(let round):
            let wasHolding = participants[rank].holdsSends
            let actions = participants[rank].handleAbort(round)
            guard actions == (wasHolding ? [.releaseHeldSends] : []) else {
                throw Violation(description: "ABORT(\(round.rawValue)) on rank \(rank) gave \(actions), holding \(wasHolding)")
            }
            if wasHolding { releaseHeld(rank) }
            wake(rank, after: 0)
        case .release:
            guard phases[rank] == .finished else { throw Violation(description: "rank \(rank) released at \(phases[rank])") }
            releasedRanks += 1
        default:
            throw Violation(description: "rank \(rank) got \(message)")
        }
    }

    private mutating func releaseHeld(_ rank: Int) {
        for message in held[rank] { transmit(from: rank, to: message.destination, message.header, message.payload) }
        held[rank] = []
    }

    /// After DONE(e) the participant counts the changes since its entry in line e: a capture
    /// that committed resets the count, a kept entry does not.
    private func checkChangesAfterDone(rank: Int, round: Epoch) throws {
        let entry = try entry(of: rank, inLine: round)
        let since = deliveryLog[rank].reduce(0) { $0 + $1.count } - entry.capture.deliveryCount
        guard since >= 0, participants[rank].changesSinceCheckpoint == UInt64(since) else {
            throw Violation(description: "after DONE(\(round.rawValue)) rank \(rank) counts \(participants[rank].changesSinceCheckpoint) "
                            + "changes, but delivered \(since) since its entry of round \(entry.round.rawValue)")
        }
    }

    /// Applies DONE's coverage and checks (d): what the sender keeps for r is exactly what r's
    /// entry in the line had not delivered.
    private mutating func trim(rank sender: Int, round: Epoch, covered: DeliveredSets) throws {
        guard covered.count == rankCount, let line = lines[round] else {
            throw Violation(description: "DONE(\(round.rawValue)) with \(covered.count) sets for an uncommitted round")
        }
        for receiver in 0..<rankCount {
            guard covered[receiver] == line[receiver].capture.ledger.delivered[sender] else {
                throw Violation(description: "DONE(\(round.rawValue)) to \(sender) carries a coverage for \(receiver) that is not its entry's delivered set")
            }
            ledgers[sender].trim(destination: RankID(receiver), covered: covered[receiver])
            let retained = ledgers[sender].retained[receiver].map(\.header.sequence.rawValue)
            let sent = ledgers[sender].nextSequence[receiver].rawValue
            let expected = (0..<sent).filter { !covered[receiver].contains(SequenceNumber($0)) }
            guard retained == expected else {
                throw Violation(description: "after DONE(\(round.rawValue)) rank \(sender) retains \(retained) for \(receiver), expected \(expected)")
            }
        }
        let bytes = ledgers[sender].retained.joined().reduce(0) { $0 + $1.payload.count }
        guard ledgers[sender].retainedBytes == bytes else {
            throw Violation(description: "rank \(sender) counts \(ledgers[sender].retainedBytes) retained bytes, holds \(bytes)")
        }
    }

    // MARK: The coordinator

    mutating func coordinatorHandles(_ message: ControlMessage, from rank: RankID) throws {
        switch message {
        case .stepReport(let round, let step):
            try perform(coordinator.handleStepReport(from: rank, round: round, step: step))
        case .ack(let round, let ack):
            try perform(coordinator.handleAck(from: rank, round: round, ack))
        case .snapshotFailed(let round, let reason, _):
            try perform(coordinator.handleSnapshotFailed(from: rank, round: round, reason: reason, now: now))
        case .finished(let step, _, _, _, _, _):
            try perform(coordinator.handleFinished(from: rank, step: step, now: now))
        case .checkpointWanted:
            try perform(coordinator.handleCheckpointWanted(now: now))
        default:
            throw Violation(description: "coordinator got \(message)")
        }
    }

    mutating func perform(_ actions: [CheckpointCoordinator.Action]) throws {
        for action in actions {
            switch action {
            case .broadcast(let message):
                for rank in 0..<rankCount { sendToRank(rank, message) }
            case .send(let rank, let message):
                sendToRank(rank.rawValue, message)
            case .writeCommit(let round, let step, let acks):
                let (entries, regenerated) = try checkLine(round, step: step, acks: acks)
                let fails = options.storageFailures && Int.random(in: 0..<15, using: &generator) == 0
                if fails {
                    try perform(coordinator.handleCommitFailed(round, reason: "injected", now: now))
                } else {
                    lines[round] = entries
                    commitCount += 1
                    keptEntryCount += entries.filter { $0.round < round }.count
                    regeneratedChannelCount += regenerated
                    if regenerated > 0 { regeneratingLines.insert(round) }
                    try perform(coordinator.handleCommitDurable(round, now: now))
                }
            case .roundAborted(let round, _):
                guard !aborted.contains(round), lines[round] == nil else {
                    throw Violation(description: "round \(round.rawValue) aborted twice or after its commit")
                }
                aborted.insert(round)
            case .finishJob:
                guard phases.allSatisfy({ $0 == .finished }) else {
                    throw Violation(description: "job finished while phases are \(phases)")
                }
                jobFinished = true
            }
        }
    }

    /// One past the highest sequence number in `set` (0 when empty).
    private static func end(of set: DeliveredSet) -> UInt64 {
        set.above.last.map { $0.rawValue + 1 } ?? set.watermark.rawValue
    }

    /// (a) and the line about to be committed; returns its entries. Members captured at S and
    /// their ACKs carry their capture's delivered sets and changes; a kept rank's ACK carries
    /// its previous entry's delivered sets. No receiver's entry delivered what its sender had
    /// not sent at S; what it delivered beyond the sender's entry is allowed only when that entry
    /// is older (kept: re-running the sender regenerates it, which the final oracle check
    /// proves); every message sent before the sender's entry and not delivered at the
    /// receiver's entry is retained in the sender's entry. Also returns how many channels rely
    /// on re-executing a kept sender.
    private func checkLine(_ round: Epoch, step: Int, acks: [Acknowledgement]) throws -> (entries: [LineEntry], regenerated: Int) {
        guard acks.count == rankCount else { throw Violation(description: "\(round) committed with \(acks.count) ACKs") }
        var entries: [LineEntry] = []
        var sentAtSafePoint: [[SequenceNumber]] = []
        for rank in 0..<rankCount {
            let ack = acks[rank]
            if let capture = captures[round]?[rank] {
                guard capture.step == step, ack.step == step, !ack.kept else {
                    throw Violation(description: "\(round) committed with S=\(step) but rank \(rank) captured at \(capture.step) (ack: step \(ack.step), kept \(ack.kept))")
                }
                guard ack.delivered == capture.ledger.delivered, ack.changes == capture.changes,
                      ack.snapshotBytes == UInt64(capture.snapshot.count) else {
                    throw Violation(description: "\(round): rank \(rank)'s ACK does not describe its capture")
                }
                entries.append(LineEntry(round: round, capture: capture))
                sentAtSafePoint.append(capture.ledger.nextSequence.dense)
            } else if let point = kept[round]?[rank] {
                let entry = try entry(of: rank, inLine: coordinator.committedEpoch)
                guard point.step == step, ack.step == step, ack.kept, ack.changes == 0, ack.snapshotBytes == 0 else {
                    throw Violation(description: "\(round) committed with S=\(step) but rank \(rank) kept at \(point.step) (ack: \(ack))")
                }
                guard ack.delivered == entry.capture.ledger.delivered else {
                    throw Violation(description: "\(round): rank \(rank) kept its entry of round \(entry.round.rawValue) but its ACK's delivered sets differ from it")
                }
                entries.append(entry)
                sentAtSafePoint.append(point.sent)
            } else {
                throw Violation(description: "\(round) committed without a capture or a keep of rank \(rank)")
            }
        }
        var regenerated = 0
        for receiver in 0..<rankCount {
            for sender in 0..<rankCount {
                let needsReexecution = try checkChannel(
                    round, from: sender, to: receiver, entries: entries, sentAtSafePoint: sentAtSafePoint[sender][receiver].rawValue)
                if needsReexecution { regenerated += 1 }
            }
        }
        return (entries, regenerated)
    }

    /// One channel of `checkLine`; returns whether the receiver's entry delivered a message only
    /// re-executing the (kept) sender regenerates.
    private func checkChannel(_ round: Epoch, from sender: Int, to receiver: Int, entries: [LineEntry], sentAtSafePoint: UInt64) throws -> Bool {
        let delivered = entries[receiver].capture.ledger.delivered[sender]
        let senderLedger = entries[sender].capture.ledger
        let sentAtEntry = senderLedger.nextSequence[receiver].rawValue
        guard Self.end(of: delivered) <= sentAtSafePoint else {
            throw Violation(description: "orphan in line \(round.rawValue): rank \(receiver)'s entry delivered from \(sender) "
                            + "beyond the \(sentAtSafePoint) it had sent at S")
        }
        let needsReexecution = Self.end(of: delivered) > sentAtEntry
        guard !needsReexecution || entries[sender].round < round else {
            throw Violation(description: "orphan in line \(round.rawValue): rank \(receiver)'s entry delivered from \(sender) "
                            + "beyond the \(sentAtEntry) sent at its capture")
        }
        let retained = Set(senderLedger.retained[receiver].map(\.header.sequence.rawValue))
        for sequence in 0..<sentAtEntry where !delivered.contains(SequenceNumber(sequence)) && !retained.contains(sequence) {
            throw Violation(description: "#\(sequence) from \(sender) to \(receiver), in transit across line \(round.rawValue), "
                            + "is not retained in \(sender)'s entry of round \(entries[sender].round.rawValue)")
        }
        return needsReexecution
    }

    // MARK: Failures

    /// A rank dies: the coordinator aborts any open round, and every rank restarts from its
    /// entry in the last committed line (or the start), resending what that entry retains.
    mutating func rollBack(failed rank: Int) throws {
        guard !jobFinished else { return }
        let wasOpen: Bool
        switch coordinator.state {
        case .collecting, .capturing, .committing: wasOpen = true
        case .idle, .recovering, .released: wasOpen = false
        }
        let round = coordinator.lastEpoch
        let actions = coordinator.handleRankFailed(RankID(rank), now: now)
        let expected: [CheckpointCoordinator.Action] = wasOpen
            ? [.broadcast(.abort(round)), .roundAborted(round, reason: "rank \(rank) failed")] : []
        guard actions == expected else { throw Violation(description: "rank \(rank) failed: coordinator did \(actions)") }
        try perform(actions)  // the ABORT goes to ranks about to be killed: dropped with their generation
        rollbackCount += 1
        generation += 1
        incarnation += 1
        let line = coordinator.committedEpoch
        var keptEntries = 0
        for rank in 0..<rankCount {
            arrived[rank] = []
            held[rank] = []
            wakePending[rank] = false
            let entry = try entry(of: rank, inLine: line)
            if entry.round < line { keptEntries += 1 }
            try restore(rank, from: entry, line: line)
        }
        if keptEntries > 0 { keptRollbackCount += 1 }
        if regeneratingLines.contains(line) { regeneratingRollbackCount += 1 }
        guard coordinator.handleRestarted((0..<rankCount).map { RankID($0) }, now: now).isEmpty else {
            throw Violation(description: "restart released the job")
        }
        for rank in 0..<rankCount {
            for destination in 0..<rankCount {
                for message in ledgers[rank].retained[destination] {
                    transmit(from: rank, to: destination, message.header, message.payload)
                }
            }
            wake(rank, after: Double.random(in: 0...0.05, using: &generator))
        }
    }

    /// Restarts a rank from its entry: decodes the snapshot (ledger and program state) and
    /// resumes just past the entry's safe point (at the first one for the initial state).
    private mutating func restore(_ rank: Int, from entry: LineEntry, line: Epoch) throws {
        var reader = ByteReader(entry.capture.snapshot)
        let ledger = try MessageLedger.decode(from: &reader, rank: RankID(rank), rankCount: rankCount)
        let state = try SimulatedProgram.State.decode(from: &reader)
        guard reader.isAtEnd, ledger == entry.capture.ledger, state == entry.capture.state else {
            throw Violation(description: "rank \(rank)'s state changed through its snapshot of round \(entry.round.rawValue)")
        }
        ledgers[rank] = ledger
        states[rank] = state
        deliveryLog[rank] = entry.capture.deliveryLog
        participants[rank] = CheckpointParticipant(variant: variant, epoch: line, stepPassed: entry.capture.step,
                                                   deliverableEpoch: coordinator.lastEpoch)
        if entry.capture.step < 0 {
            phases[rank] = .atSafePoint(0)
        } else {
            pass(rank, safePoint: entry.capture.step)
        }
    }

    // MARK: The end

    /// (c), exactly-once (every channel delivered 0..<total once, total from the oracle), and
    /// every rank's state equal to the failure-free run's.
    func checkFinalState() throws {
        for receiver in 0..<rankCount {
            for source in 0..<rankCount {
                let total = UInt64(program.channels[source][receiver].count)
                let log = deliveryLog[receiver][source]
                guard log.count == Int(total), log.sorted() == Array(0..<total) else {
                    throw Violation(description: "channel \(source)→\(receiver) delivered \(log), expected 0..<\(total)")
                }
                guard ledgers[receiver].delivered[source] == DeliveredSet(watermark: SequenceNumber(total), above: []) else {
                    throw Violation(description: "channel \(source)→\(receiver): delivered set \(ledgers[receiver].delivered[source])")
                }
            }
        }
        for rank in 0..<rankCount where states[rank] != SimulatedProgram.State(accumulator: program.finalAccumulators[rank]) {
            throw Violation(description: "rank \(rank) ends with state \(states[rank]), the failure-free run with \(program.finalAccumulators[rank])")
        }
    }
}
