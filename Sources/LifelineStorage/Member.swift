/// One rank's part of a committed recovery line: which snapshot to restore it from.
package struct Member: Codable, Sendable, Equatable {
    /// The rank index, in `0..<Manifest.rankCount`.
    package var rank: Int
    /// Store-relative name of the snapshot, e.g. `epochs/000003/rank-0001.snap`.
    package var snapshot: String
    /// The rank's step count when it took the snapshot.
    package var step: Int
    /// How many times the rank had been restarted when it took the snapshot.
    package var incarnation: Int
    /// Bytes of the rank's output already produced at the snapshot; output after it is redone.
    package var outputOffset: UInt64
    /// Size of the snapshot in bytes, for reports (not checked on read).
    package var snapshotBytes: UInt64
    /// Bytes of messages in flight across the line that the snapshot stores (sent before the
    /// rank's capture, delivered after the receiver's); a resize hands them to the program.
    /// Absent from manifests written before it was recorded (nil: not known).
    package var inFlightBytes: UInt64?
    /// The position in the rank's log (or the event logger's records) its snapshot starts
    /// replay from, as its acknowledgement said; nil in a manifest an older Lifeline wrote
    /// (then read from the snapshot itself).
    package var logPosition: UInt64?

    /// Creates a member.
    package init(rank: Int, snapshot: String, step: Int, incarnation: Int, outputOffset: UInt64, snapshotBytes: UInt64,
                 inFlightBytes: UInt64? = nil, logPosition: UInt64? = nil) {
        self.rank = rank
        self.snapshot = snapshot
        self.step = step
        self.incarnation = incarnation
        self.outputOffset = outputOffset
        self.snapshotBytes = snapshotBytes
        self.inFlightBytes = inFlightBytes
        self.logPosition = logPosition
    }
}
