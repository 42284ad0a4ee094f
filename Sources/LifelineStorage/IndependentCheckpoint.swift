/// `--checkpoint independent`: one checkpoint a rank took on its own schedule, as the manifest
/// records it once its snapshot is durable on both mirrors.
package struct IndependentCheckpoint: Codable, Sendable, Equatable {
    /// The checkpoint's index among the rank's checkpoints (1, 2, …; 0 is the start).
    package var index: Int
    /// Store-relative name of the snapshot, or nil once it was deleted (no recovery line can
    /// use it: it is behind every possible line, or useless).
    package var snapshot: String?
    /// The rank's safe point at the checkpoint.
    package var step: Int
    /// The incarnation that took it.
    package var incarnation: Int
    /// Bytes of the rank's output already produced at the checkpoint.
    package var outputOffset: UInt64
    /// Bytes newly stored on one mirror.
    package var snapshotBytes: UInt64
    /// The dependency vector of the interval the checkpoint closes: per sender, the newest
    /// sender interval the rank delivered a message from (-1: none).
    package var dependencies: [Int]
    /// A degraded checkpoint: the one mirror that holds its snapshot; nil when both do.
    package var onlyOn: Mirror?

    /// A record with every field given (on both mirrors unless `onlyOn` names one).
    package init(index: Int, snapshot: String?, step: Int, incarnation: Int, outputOffset: UInt64, snapshotBytes: UInt64,
                 dependencies: [Int], onlyOn: Mirror? = nil) {
        self.onlyOn = onlyOn
        self.index = index
        self.snapshot = snapshot
        self.step = step
        self.incarnation = incarnation
        self.outputOffset = outputOffset
        self.snapshotBytes = snapshotBytes
        self.dependencies = dependencies
    }
}
