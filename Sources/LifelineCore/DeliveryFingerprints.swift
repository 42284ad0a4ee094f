/// What a rank delivered, by content: a 64-bit hash of each delivered payload, kept until a
/// committed checkpoint makes its message impossible to send again with other bytes. A
/// duplicate (a message sent again after its sender restarted) whose hash differs from the
/// delivered original means the sender did not re-execute the same way: the program is not
/// piecewise deterministic (it read a clock or a random source without `logged`), and the
/// states the job now holds are inconsistent.
///
/// A delivery is recorded with the receiver's epoch (its checkpoint interval) at the time.
/// When the round `e` commits, every sender restarts from its checkpoint of `e` or later, and a
/// receiver's deliveries before its own capture of `e` came from before those checkpoints (a
/// recovery line has no orphans): they can only be sent again as the retained copies they are.
/// So `trim(before: e)` forgets them. At most `entriesMax` deliveries are kept; past it new ones
/// go unchecked until a commit makes room (the check is a detector, never a source of errors).
package struct DeliveryFingerprints: Sendable {
    /// The most deliveries remembered at once.
    package static let entriesMax = 1 << 20

    /// A delivered message: its source and sequence number.
    private struct Key: Hashable {
        var source: Int
        var sequence: UInt64
    }

    /// Per delivered message, its payload hash and the epoch of the delivery (one table for
    /// every source: it costs the deliveries remembered, not the ranks of the job).
    private var entries: [Key: (hash: UInt64, epoch: UInt64)] = [:]
    /// Entries remembered. Invariant: ≤ `entriesMax`.
    package var count: Int { entries.count }
    /// Deliveries not recorded because `entriesMax` was reached.
    package private(set) var unchecked: UInt64 = 0

    /// No delivery recorded, for `rankCount` sources.
    package init(rankCount: Int) {}

    /// Records the delivery of message `sequence` from `source` with payload hash `hash`, in
    /// the receiver's epoch `epoch`.
    package mutating func record(source: RankID, sequence: SequenceNumber, hash: UInt64, epoch: UInt64) {
        guard count < Self.entriesMax else {
            unchecked += 1
            return
        }
        entries[Key(source: source.rawValue, sequence: sequence.rawValue)] = (hash, epoch)
    }

    /// Whether the delivery of message `sequence` from `source` is remembered (a duplicate of it
    /// is worth hashing).
    package func remembers(source: RankID, sequence: SequenceNumber) -> Bool {
        entries[Key(source: source.rawValue, sequence: sequence.rawValue)] != nil
    }

    /// Whether a duplicate of message `sequence` from `source` with payload hash `hash` differs
    /// from the delivered original (false when the original is not remembered).
    package func differs(source: RankID, sequence: SequenceNumber, hash: UInt64) -> Bool {
        guard let original = entries[Key(source: source.rawValue, sequence: sequence.rawValue)] else { return false }
        return original.hash != hash
    }

    /// Forgets the deliveries made in epochs before `epoch` (round `epoch` committed).
    package mutating func trim(before epoch: UInt64) {
        guard entries.values.contains(where: { $0.epoch < epoch }) else { return }
        entries = entries.filter { $0.value.epoch >= epoch }
    }
}
