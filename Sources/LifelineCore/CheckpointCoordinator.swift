/// The supervisor's side of the coordinated checkpoint protocol: a two-phase commit whose
/// participants are the ranks and whose commit point is the manifest write.
///
/// | state | event | next | actions |
/// |---|---|---|---|
/// | idle | tick ≥ due, or wanted | collecting(e) | broadcast request(e) |
/// | collecting(e) | last stepReport | capturing(e, S = max + 1) | broadcast safePointChosen(e, S) |
/// | capturing(e, S) | last captured | capturing(e, S) | cut(e) to each rank |
/// | capturing(e, S) | last ack | committing(e) | writeCommit(e) |
/// | committing(e) | commitDurable(e) | idle | done(e) to each rank |
/// | collecting, capturing | rank finished before S, snapshot failed | idle | abort(e) |
/// | any | rank failed | recovering | abort(e) if a round was open |
/// | recovering | restarted | idle | release if all others wait at the final barrier |
///
/// Time is an argument (seconds on the job's clock); nothing here reads a clock.
package struct CheckpointCoordinator: Sendable {
    /// Where the current round is.
    package enum State: Sendable, Equatable {
        /// No round; the next is due at `dueAt` seconds.
        case idle(dueAt: Double)
        /// Request sent; waiting for every rank's last passed step.
        case collecting(Epoch, reports: [Int?])
        /// S announced; waiting for every ACK.
        case capturing(Epoch, step: Int, acks: [Acknowledgement?])
        /// Every ACK is in; the manifest is being written (the commit point).
        case committing(Epoch, step: Int, acks: [Acknowledgement])
        /// A rank failed; no round until the ranks are restarted.
        case recovering
        /// Every rank reached the final barrier and was released.
        case released
    }

    /// What the runtime must do.
    package enum Action: Sendable, Equatable {
        /// Send a message to every rank.
        case broadcast(ControlMessage)
        /// Send a message to one rank.
        case send(RankID, ControlMessage)
        /// Write `COMMIT(e)` to the manifest on both mirrors, then report `commitDurable` or
        /// `commitFailed`.
        case writeCommit(Epoch, step: Int, acks: [Acknowledgement])
        /// A round ended without a commit (the ABORT has been broadcast with it).
        case roundAborted(Epoch, reason: String)
        /// Every rank is at the final barrier: release them and finish the job.
        case finishJob
    }

    /// The number of ranks.
    package let rankCount: Int
    /// Seconds between the end of one round and the start of the next.
    package var intervalSeconds: Double
    /// The round state.
    package private(set) var state: State
    /// The highest round number ever started (or restored). Invariant: never decreases.
    package private(set) var lastEpoch: Epoch
    /// The newest committed round. Invariant: `committedEpoch <= lastEpoch`.
    package private(set) var committedEpoch: Epoch
    /// Which ranks wait at the final barrier, indexed by rank.
    package private(set) var finished: [Bool]
    /// The program asked for a checkpoint that has not started yet.
    private var wanted = false
    /// The ranks whose step report (collecting) or ACK (capturing) has not arrived.
    private var awaiting = 0
    /// Capturing: what each rank had delivered at its capture (its `captured` report), until
    /// every rank's is in and the cut is sent.
    private var capturedDelivered: [DeliveredSets?] = []
    /// Capturing: the ranks whose `captured` report has not arrived.
    private var awaitingCaptured = 0

    /// A coordinator whose newest committed round is `committed` (`.start` for a new job), and
    /// whose rounds are numbered after `started` too: a round an earlier supervisor of the job
    /// started and did not commit (ranks may have written for it) is never numbered again, so
    /// a round's number names one round in the whole job.
    package init(rankCount: Int, intervalSeconds: Double, committed: Epoch, started: Epoch = .start, now: Double) {
        precondition(rankCount > 0 && intervalSeconds > 0)
        self.rankCount = rankCount
        self.intervalSeconds = intervalSeconds
        self.state = .idle(dueAt: now + intervalSeconds)
        self.lastEpoch = max(committed, started)
        self.committedEpoch = committed
        self.finished = Array(repeating: false, count: rankCount)
    }

    /// When the runtime should next call `handleTick`, if a round is waiting on time.
    package var nextDeadline: Double? {
        if case .idle(let dueAt) = state { return dueAt }
        return nil
    }

    /// The clock advanced.
    package mutating func handleTick(now: Double) -> [Action] {
        defer { checkInvariants() }
        guard case .idle(let dueAt) = state, now >= dueAt || wanted else { return [] }
        guard !finished.contains(true) else { return [] }  // no round at a step a rank will never reach
        wanted = false
        lastEpoch = lastEpoch.next
        state = .collecting(lastEpoch, reports: Array(repeating: nil, count: rankCount))
        awaiting = rankCount
        return [.broadcast(.checkpointRequest(lastEpoch))]
    }

    /// The program on some rank asked for a checkpoint.
    package mutating func handleCheckpointWanted(now: Double) -> [Action] {
        wanted = true
        return handleTick(now: now)
    }

    /// A rank answered the request with the last safe point it passed.
    package mutating func handleStepReport(from rank: RankID, round: Epoch, step: Int) -> [Action] {
        defer { checkInvariants() }
        guard case .collecting(let open, var reports) = state, open == round else { return [] }
        state = .recovering  // the payload moves out: one report changes it in place, not a copy of it
        if reports[rank.rawValue] == nil { awaiting -= 1 }
        reports[rank.rawValue] = step
        guard awaiting == 0 else {
            state = .collecting(open, reports: reports)
            return []
        }
        let chosen = reports.lazy.compactMap { $0 }.max()! + 1
        state = .capturing(open, step: chosen, acks: Array(repeating: nil, count: rankCount))
        awaiting = rankCount
        capturedDelivered = Array(repeating: nil, count: rankCount)
        awaitingCaptured = rankCount
        return [.broadcast(.safePointChosen(open, step: chosen))]
    }

    /// A rank captured (or kept its checkpoint) for `round` having delivered `delivered`. With
    /// every rank's report in, each sender gets the round's cut: what each receiver had
    /// delivered from it at its capture, so its snapshot stores only the messages in flight
    /// across the line. No rank writes before it has its cut, so no ACK can overtake it.
    package mutating func handleCaptured(from rank: RankID, round: Epoch, delivered: DeliveredSets, now: Double) -> [Action] {
        defer { checkInvariants() }
        guard case .capturing(let open, _, _) = state, open == round, awaitingCaptured > 0 else { return [] }
        guard delivered.rankCount == rankCount else {
            return abort(open, reason: "\(rank) reported delivered sets for \(delivered.rankCount) ranks, not \(rankCount)",
                         now: now) + finishIfAllFinished()
        }
        if capturedDelivered[rank.rawValue] == nil { awaitingCaptured -= 1 }
        capturedDelivered[rank.rawValue] = delivered
        guard awaitingCaptured == 0 else { return [] }
        let covered = Self.coveredByReceiver(capturedDelivered.lazy.map { $0! }, rankCount: rankCount)
        capturedDelivered = []
        return covered.enumerated().map { sender, sets in Action.send(RankID(sender), .cut(round, coveredByReceiver: sets)) }
    }

    /// Per sender, what each receiver delivered from it: the receivers' delivered sets
    /// (indexed by receiver) turned around, going once over each, so it costs the channels used.
    package static func coveredByReceiver(_ delivered: some Collection<DeliveredSets>, rankCount: Int) -> [DeliveredSets] {
        var covered = Array(repeating: DeliveredSets(rankCount: rankCount), count: rankCount)
        for (receiver, sets) in delivered.enumerated() {
            for sender in sets.used { covered[sender][receiver] = sets[sender] }
        }
        return covered
    }

    /// A rank's snapshot for `round` is durable.
    package mutating func handleAck(from rank: RankID, round: Epoch, _ ack: Acknowledgement, now: Double) -> [Action] {
        defer { checkInvariants() }
        guard case .capturing(let open, let chosen, var acks) = state, open == round else { return [] }
        guard ack.delivered.rankCount == rankCount else {
            // A rank that sends delivered sets for another job size is broken: the round cannot
            // commit on it, and the previous line stands (the supervisor is not taken down with it).
            return abort(open, reason: "\(rank) sent an ACK with delivered sets for \(ack.delivered.rankCount) ranks, not \(rankCount)",
                         now: now) + finishIfAllFinished()
        }
        state = .recovering  // the payload moves out: one ACK changes it in place, not a copy of it
        if acks[rank.rawValue] == nil { awaiting -= 1 }
        acks[rank.rawValue] = ack
        guard awaiting == 0 else {
            state = .capturing(open, step: chosen, acks: acks)
            return []
        }
        let received = acks.compactMap { $0 }
        state = .committing(open, step: chosen, acks: received)
        return [.writeCommit(open, step: chosen, acks: received)]
    }

    /// The manifest with `COMMIT(round)` is on both mirrors: tell every rank, with what each
    /// receiver had delivered from it, so senders can trim what they retain.
    package mutating func handleCommitDurable(_ round: Epoch, now: Double) -> [Action] {
        defer { checkInvariants() }
        guard case .committing(let open, _, let acks) = state, open == round else {
            preconditionFailure("commit of \(round) while \(state)")
        }
        committedEpoch = round
        state = .idle(dueAt: now + intervalSeconds)
        // Each sender's DONE names the receivers that delivered from it.
        let covered = Self.coveredByReceiver(acks.lazy.map(\.delivered), rankCount: rankCount)
        let actions = covered.enumerated().map { sender, sets in
            Action.send(RankID(sender), .checkpointDone(round, coveredByReceiver: sets))
        }
        return actions + finishIfAllFinished()
    }

    /// The manifest could not be written: the round aborts and the previous line stands.
    package mutating func handleCommitFailed(_ round: Epoch, reason: String, now: Double) -> [Action] {
        defer { checkInvariants() }
        guard case .committing(let open, _, _) = state, open == round else { return [] }
        return abort(open, reason: reason, now: now) + finishIfAllFinished()
    }

    /// A rank could not write its snapshot.
    package mutating func handleSnapshotFailed(from rank: RankID, round: Epoch, reason: String, now: Double) -> [Action] {
        defer { checkInvariants() }
        switch state {
        case .collecting(let open, _), .capturing(let open, _, _):
            guard open == round else { return [] }
            return abort(open, reason: "\(rank) could not write its snapshot: \(reason)", now: now) + finishIfAllFinished()
        case .idle, .committing, .recovering, .released:
            return []
        }
    }

    /// A rank reached the final barrier after passing safe point `step`.
    package mutating func handleFinished(from rank: RankID, step: Int, now: Double) -> [Action] {
        defer { checkInvariants() }
        finished[rank.rawValue] = true
        var actions: [Action] = []
        switch state {
        case .collecting(let open, _):
            actions = abort(open, reason: "\(rank) finished at step \(step) before the round's safe point", now: now)
        case .capturing(let open, let chosen, _) where step < chosen:
            actions = abort(open, reason: "\(rank) finished at step \(step), before safe point \(chosen)", now: now)
        case .idle, .capturing, .committing, .recovering, .released:
            break
        }
        return actions + finishIfAllFinished()
    }

    /// A rank failed (exited, was killed, or stopped answering). An open round cannot commit.
    package mutating func handleRankFailed(_ rank: RankID, now: Double) -> [Action] {
        defer { checkInvariants() }
        var actions: [Action] = []
        switch state {
        case .collecting(let open, _), .capturing(let open, _, _), .committing(let open, _, _):
            actions = abort(open, reason: "\(rank) failed", now: now)
        case .idle, .recovering, .released:
            break
        }
        state = .recovering
        return actions
    }

    /// The failed ranks were restarted and have caught up: all of them after a global
    /// rollback, or those that replayed their logs while the others kept running (which keep
    /// their place at the final barrier). Rounds can start again.
    /// Restarted ranks that reached the final barrier again meanwhile keep their place there: a rank's
    /// place is taken back when its new process is launched (`handleLaunched`), not here — a
    /// restarted rank that replayed and finished before the last of its group caught up would
    /// otherwise never be released (the simulator found it: `lifeline simulate --ranks 12
    /// --seed 7010038 --checkpoint coordinated --logging optimistic --steps 30 --program grid`).
    package mutating func handleRestarted(now: Double) -> [Action] {
        defer { checkInvariants() }
        precondition(state == .recovering, "restart while \(state)")
        state = .idle(dueAt: now + intervalSeconds)
        return finishIfAllFinished()
    }

    /// A new process of `rank` is launched: it runs again, so it is not at the final barrier.
    package mutating func handleLaunched(_ rank: RankID) {
        finished[rank.rawValue] = false
    }

    private mutating func abort(_ round: Epoch, reason: String, now: Double) -> [Action] {
        state = .idle(dueAt: now + intervalSeconds)
        capturedDelivered = []
        awaitingCaptured = 0
        return [.broadcast(.abort(round)), .roundAborted(round, reason: reason)]
    }

    private mutating func finishIfAllFinished() -> [Action] {
        guard !finished.contains(false), case .idle = state else { return [] }
        state = .released
        return [.broadcast(.release), .finishJob]
    }

    private func checkInvariants() {
        precondition(committedEpoch <= lastEpoch)
        precondition(finished.count == rankCount)
    }
}
