/// The one place a rank's code switches over the logging modes (and the checkpoint scheme where
/// it changes what a message carries): what goes to the log and when, what a message carries,
/// and which messages a peer's restart makes obsolete. The rank asks it; each answer is the
/// rule of one mode, stated once.
///
/// | mode | a delivery | a logged value | messages carry | obsolete after a peer's restart |
/// |---|---|---|---|---|
/// | none | nothing | nothing | — | under independent checkpoints |
/// | pessimistic | the message, synced first | synced first | — | under independent checkpoints |
/// | sender-based | from any source: its determinant, synced first | synced first | — | under independent checkpoints |
/// | optimistic | the message, buffered | buffered | the sender's dependency vector | always |
package struct RankLogging: Sendable, Equatable {
    /// The job's logging mode.
    package let mode: LoggingMode
    /// Whether the job takes independent checkpoints.
    package let independent: Bool

    /// The rules of `mode` under that checkpoint scheme.
    package init(mode: LoggingMode, independent: Bool) {
        self.mode = mode
        self.independent = independent
    }

    /// What a record is.
    package enum Record: Sendable, Equatable {
        /// The whole message, header and payload.
        case delivery
        /// Which message a receive returned (its header only).
        case determinant
        /// A value read from outside the messages.
        case value
    }

    /// How a record reaches the log.
    package enum Write: Sendable, Equatable {
        /// Appended and synced before the program sees the message or value.
        case synchronously(Record)
        /// Kept in memory and written in batches (flushed at captures, freezes and the end).
        case buffered(Record)
    }

    /// What the log gets when the rank delivers a message received from a named source
    /// (`anySource` false) or from any source; nil: nothing.
    package func delivery(anySource: Bool) -> Write? {
        switch mode {
        case .none: nil
        case .pessimistic: .synchronously(.delivery)
        case .senderBased: anySource ? .synchronously(.determinant) : nil
        case .optimistic: .buffered(.delivery)
        }
    }

    /// What the log gets for a value read from outside the messages (`comm.logged`); nil:
    /// nothing, and a replay cannot return it.
    package var value: Write? {
        switch mode {
        case .none: nil
        case .pessimistic, .senderBased: .synchronously(.value)
        case .optimistic: .buffered(.value)
        }
    }

    /// Whether messages carry their sender's dependency vector in front of the payload, and a
    /// delivery or a logged value starts a new state interval (optimistic logging).
    package var tracksDependencies: Bool { mode == .optimistic }

    /// Whether the log is flushed before a capture, at a freeze and at the final barrier: the
    /// snapshot's log position, a frozen survivor and a finished rank count every delivery.
    package var flushesAtCheckpoints: Bool { mode == .optimistic }

    /// Whether buffered records are due to reach the log (optimistic logging): `bufferedBytes`
    /// of them, the last flush `sinceFlush` seconds ago. They go once `flushBytes` are buffered
    /// (0: no size limit) or `flushSeconds` have passed — the bound on what a crash loses, and
    /// so on how far an optimistic recovery can bring the failed rank.
    package static func flushDue(bufferedBytes: Int, sinceFlush: Double, flushBytes: Int, flushSeconds: Double) -> Bool {
        bufferedBytes > 0 && ((flushBytes > 0 && bufferedBytes >= flushBytes) || sinceFlush >= flushSeconds)
    }

    /// Whether what a restarted peer's earlier incarnations sent, and this rank has not
    /// delivered, is obsolete: the peer rolled back and re-executes, perhaps sending something
    /// else under the same sequence numbers (independent checkpoints, optimistic orphans). After
    /// a lone replay (pessimistic, sender-based) the peer sends the same again: duplicates.
    package var peerRestartMakesObsolete: Bool { independent || mode == .optimistic }
}
