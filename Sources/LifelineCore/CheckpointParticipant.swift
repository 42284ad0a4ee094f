/// Which variant of the coordinated protocol a job runs.
package enum CheckpointVariant: String, Sendable, CaseIterable {
    /// Non-blocking: ranks go on computing and sending while snapshots are written.
    case coordinated
    /// The textbook's: after capture a rank holds every new send until `CHECKPOINT_DONE`.
    case blocking
    /// Incremental: at S, a rank that delivered nothing since its last committed checkpoint
    /// keeps that checkpoint as its entry in the new line and writes nothing (docs/protocol.md,
    /// "Minimal checkpoints", gives the rule and why the line stays consistent).
    case minimal
    /// Uncoordinated: each rank checkpoints on its own schedule and records the dependencies
    /// between checkpoint intervals; there are no rounds, and no message is held.
    case independent
}

/// A rank's side of the coordinated checkpoint protocol.
///
/// Transitions (event → actions):
///
/// | state | event | next | actions |
/// |---|---|---|---|
/// | idle | request(e) | reported(e) | report(e, stepPassed) |
/// | reported(e) | safePointChosen(e, S) | scheduled(e, S) | — |
/// | reported(e) | safe point s | reported(e) | wait |
/// | scheduled(e, S) | safe point s < S | scheduled | proceed |
/// | scheduled(e, S) | safe point s ≥ S | writing(e) | capture(e) |
/// | scheduled(e, S) | safe point s ≥ S, minimal, nothing delivered since the last committed checkpoint | acknowledged(e) | keep(e) |
/// | writing(e) | snapshotDurable(e) | acknowledged(e) | — (the writer sent ACK(e)) |
/// | writing(e), acknowledged(e) | done(e) | idle | trim, release held sends |
/// | any | abort(e) | idle | release held sends |
///
/// A rank never waits on a timer: it waits only between answering a request and hearing S, and
/// the coordinator chooses S as soon as every rank has answered.
package struct CheckpointParticipant: Sendable, Equatable {
    /// Where the rank is in a round.
    package enum State: Sendable, Equatable {
        /// No round under way.
        case idle
        /// Answered `CHECKPOINT_REQUEST(e)`; must not pass its next safe point until S is known.
        case reported(Epoch)
        /// S is known; capture at the first safe point at or after it.
        case scheduled(Epoch, step: Int)
        /// Captured; the snapshot is being written.
        case writing(Epoch)
        /// Acknowledged; waiting for `CHECKPOINT_DONE` or `ABORT`.
        case acknowledged(Epoch)
    }

    /// What the runtime must do after an event.
    package enum Action: Sendable, Equatable {
        /// Send `stepReport(e, step)` to the supervisor.
        case reportStep(Epoch, step: Int)
        /// Capture the state now (at this safe point) for round e and write it in the background.
        case capture(Epoch)
        /// The round committed: trim retained messages with the coverage carried by DONE.
        case trimRetained(Epoch)
        /// Transmit the sends held since the capture (blocking variant).
        case releaseHeldSends
    }

    /// What the program must do at a safe point.
    package enum SafePointDecision: Sendable, Equatable {
        /// Go on.
        case proceed
        /// Wait here (serving messages) until the supervisor announces S.
        case wait
        /// Capture here, then go on.
        case capture(Epoch)
        /// `--checkpoint minimal`: nothing changed since the last committed checkpoint; enter
        /// round e without writing, acknowledge it as kept, and go on.
        case keep(Epoch)
    }

    /// The protocol variant.
    package let variant: CheckpointVariant
    /// The current round state.
    package private(set) var state: State
    /// The last safe point the program passed (captured or not); -1 before the first.
    /// Invariant: never decreases.
    package private(set) var stepPassed: Int
    /// The last round this rank captured (or restored from): the epoch its messages carry.
    package private(set) var epoch: Epoch
    /// The round of this rank's own checkpoint in the newest line it knows committed: the round
    /// it restored (or the start), then each round whose capture of it committed. Under minimal
    /// checkpoints it stays while the rank keeps its checkpoint (its entry in later lines).
    package private(set) var committedRound: Epoch
    /// Messages whose epoch is at most this may be delivered: the rank's own epoch, or a later
    /// round that was aborted (no line will exist there, so nothing needs to wait for it).
    /// Invariant: `deliverableEpoch >= epoch`.
    package private(set) var deliverableEpoch: Epoch
    /// Deliveries and logged values in this incarnation (the program's inputs).
    package private(set) var changeCount: UInt64 = 0
    /// `changeCount` at the last committed capture (0 when restored or fresh).
    /// Invariant: `committedChangeCount <= changeCount`.
    private var committedChangeCount: UInt64 = 0
    /// The open round this rank captured, with `changeCount` at that moment.
    private var openCapture: OpenCapture?
    /// Whether the rank holds a checkpoint of its own (or the start) that minimal checkpoints
    /// may keep; false for a rank rebuilt by a resize (the line it began from belongs to other
    /// ranks), or whose checkpoint may not reach disk (`writeAtNextRound`), until a capture of
    /// its own commits.
    private var hasOwnCheckpoint: Bool

    /// A capture of a round not yet committed or aborted.
    private struct OpenCapture: Sendable, Equatable {
        var round: Epoch
        var changeCount: UInt64
    }

    /// A participant starting at `epoch` having passed `stepPassed` (restored or fresh: -1).
    /// A rank restarted alone is told the newest round started so far (`deliverableEpoch`):
    /// the others may carry the epoch of a round aborted since its checkpoint.
    /// `hasOwnCheckpoint` false: the rank was rebuilt from other ranks' states (a resize), so
    /// it writes a checkpoint in its first round even under minimal checkpoints.
    package init(variant: CheckpointVariant, epoch: Epoch, stepPassed: Int, deliverableEpoch: Epoch? = nil,
                 hasOwnCheckpoint: Bool = true) {
        self.variant = variant
        self.hasOwnCheckpoint = hasOwnCheckpoint
        self.state = .idle
        self.stepPassed = stepPassed
        self.epoch = epoch
        self.committedRound = epoch
        self.deliverableEpoch = max(epoch, deliverableEpoch ?? epoch)
    }

    /// Whether new sends must be held back (blocking variant, between capture and DONE/ABORT).
    package var holdsSends: Bool {
        guard variant == .blocking else { return false }
        switch state {
        case .writing, .acknowledged: return true
        case .idle, .reported, .scheduled: return false
        }
    }

    /// Deliveries and logged values since the last committed checkpoint (or the restore): a
    /// rank with none is, by piecewise determinism, reproduced by re-running from that checkpoint.
    package var changesSinceCheckpoint: UInt64 { changeCount - committedChangeCount }

    /// The program delivered a message or read a logged value.
    package mutating func noteChange() { changeCount += 1 }

    /// The rank's last checkpoint may never reach disk (`--levels memory,disk`: its drain
    /// failed): under minimal checkpoints it writes one at its next round rather than keep it,
    /// which would hold every later line off disk.
    package mutating func writeAtNextRound() { hasOwnCheckpoint = false }

    /// Whether a message carrying `messageEpoch` may be delivered now.
    package func mayDeliver(messageEpoch: Epoch) -> Bool {
        // Under independent checkpointing the field carries the sender's checkpoint interval.
        variant == .independent || messageEpoch <= deliverableEpoch
    }

    /// The supervisor asks for a checkpoint.
    package mutating func handleRequest(_ round: Epoch) -> [Action] {
        defer { checkInvariants() }
        guard round > epoch, round > deliverableEpoch else { return [] }  // stale
        switch state {
        case .idle:
            state = .reported(round)
            return [.reportStep(round, step: stepPassed)]
        case .reported, .scheduled, .writing, .acknowledged:
            // A new round begins only after the previous one ended for everyone: a request
            // overtaking our DONE/ABORT cannot happen on one FIFO control connection.
            preconditionFailure("request for \(round) while \(state)")
        }
    }

    /// The supervisor announces the common safe point of a round.
    package mutating func handleSafePointChosen(_ round: Epoch, step: Int) -> [Action] {
        defer { checkInvariants() }
        guard case .reported(let pending) = state, pending == round else { return [] }
        precondition(step > stepPassed, "S=\(step) is not ahead of step \(stepPassed) this rank reported")
        state = .scheduled(round, step: step)
        return []
    }

    /// The program reached the safe point `step`.
    package mutating func handleSafePoint(step: Int) -> SafePointDecision {
        defer { checkInvariants() }
        precondition(step > stepPassed, "safe point \(step) does not increase past \(stepPassed)")
        switch state {
        case .reported:
            return .wait
        case .scheduled(let round, let chosen) where step >= chosen:
            stepPassed = step
            epoch = round
            deliverableEpoch = max(deliverableEpoch, round)
            if variant == .minimal, changesSinceCheckpoint == 0, hasOwnCheckpoint {
                // Messages sent from here on carry round e, so a member that has not captured
                // e holds them: only what this rank sent before S can be in the line.
                state = .acknowledged(round)
                return .keep(round)
            }
            openCapture = OpenCapture(round: round, changeCount: changeCount)
            state = .writing(round)
            return .capture(round)
        case .idle, .scheduled, .writing, .acknowledged:
            stepPassed = step
            return .proceed
        }
    }

    /// The rank's snapshot for `round` is durable on both mirrors and the snapshot writer has
    /// sent `ACK(round)` (it does so itself, so a rank deep in computation acknowledges at once).
    package mutating func handleSnapshotDurable(_ round: Epoch) {
        defer { checkInvariants() }
        guard case .writing(let writing) = state, writing == round else { return }  // aborted meanwhile
        state = .acknowledged(round)
    }

    /// `CHECKPOINT_DONE(round)`.
    package mutating func handleDone(_ round: Epoch) -> [Action] {
        defer { checkInvariants() }
        switch state {
        case .writing(let open), .acknowledged(let open):
            // DONE follows every ACK, so it may overtake the writer's report to this thread.
            precondition(open == round, "DONE(\(round)) while \(state)")
        case .idle, .reported, .scheduled:
            preconditionFailure("DONE(\(round)) while \(state)")
        }
        let held = holdsSends
        state = .idle
        if let capture = openCapture, capture.round == round {
            committedChangeCount = capture.changeCount
            committedRound = round
            hasOwnCheckpoint = true
        }
        openCapture = nil
        return held ? [.trimRetained(round), .releaseHeldSends] : [.trimRetained(round)]
    }

    /// `ABORT(round)`: the round will not commit.
    package mutating func handleAbort(_ round: Epoch) -> [Action] {
        defer { checkInvariants() }
        deliverableEpoch = max(deliverableEpoch, round)
        let held = holdsSends
        switch state {
        case .reported(let open), .scheduled(let open, _), .writing(let open), .acknowledged(let open):
            if open == round { state = .idle }
        case .idle:
            break
        }
        if openCapture?.round == round { openCapture = nil }
        return held && !holdsSends ? [.releaseHeldSends] : []
    }

    private func checkInvariants() {
        precondition(deliverableEpoch >= epoch)
        precondition(stepPassed >= -1)
        precondition(committedChangeCount <= changeCount)
    }
}
