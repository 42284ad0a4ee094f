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

    /// Per source, sequence number → (payload hash, epoch of the delivery).
    private var bySource: [[UInt64: (hash: UInt64, epoch: UInt64)]]
    /// Entries over all sources. Invariant: the sum of the dictionaries' counts, ≤ `entriesMax`.
    package private(set) var count = 0
    /// Deliveries not recorded because `entriesMax` was reached.
    package private(set) var unchecked: UInt64 = 0

    /// No delivery recorded, for `rankCount` sources.
    package init(rankCount: Int) {
        bySource = Array(repeating: [:], count: rankCount)
    }

    /// Records the delivery of message `sequence` from `source` with payload hash `hash`, in
    /// the receiver's epoch `epoch`.
    package mutating func record(source: RankID, sequence: SequenceNumber, hash: UInt64, epoch: UInt64) {
        guard count < Self.entriesMax else {
            unchecked += 1
            return
        }
        if bySource[source.rawValue].updateValue((hash, epoch), forKey: sequence.rawValue) == nil { count += 1 }
    }

    /// Whether a duplicate of message `sequence` from `source` with payload hash `hash` differs
    /// from the delivered original (false when the original is not remembered).
    package func differs(source: RankID, sequence: SequenceNumber, hash: UInt64) -> Bool {
        guard let original = bySource[source.rawValue][sequence.rawValue] else { return false }
        return original.hash != hash
    }

    /// Forgets the deliveries made in epochs before `epoch` (round `epoch` committed).
    package mutating func trim(before epoch: UInt64) {
        count = 0
        for source in bySource.indices {
            bySource[source] = bySource[source].filter { $0.value.epoch >= epoch }
            count += bySource[source].count
        }
    }
}
