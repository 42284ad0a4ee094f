/// A recovery line that was committed: a consistent set of snapshots, one per member rank.
package struct CommittedLine: Codable, Sendable, Equatable {
    /// The checkpoint epoch that produced the line; strictly increasing along `Manifest.committed`.
    package var epoch: UInt64
    /// The job's step at the line (for a coordinated checkpoint, every rank's step).
    package var step: Int
    /// One entry per rank in the line, each rank at most once.
    package var members: [Member]
    /// A degraded commit: the one mirror that holds the line's snapshots (the other had
    /// failed); nil when both do. Absent from manifests written before degraded commits existed.
    package var onlyOn: Mirror?
    /// The number of ranks that wrote the line, when it is not the manifest's: a line committed
    /// before the job was resized (`lifeline resume -n M`). Nil: `Manifest.rankCount`.
    package var rankCount: Int?
    /// `--levels memory,disk`: the line's snapshots are held in the hosts' memory (level 1,
    /// `MemoryLevel`), where it was committed. Nil: false (a line of a job on disk alone).
    package var inMemory: Bool?
    /// `--levels memory,disk`: whether every member's snapshot is on the mirrored disks
    /// (level 2) yet; false until the last rank's drain is recorded, and for ever for a round
    /// that is not drained (`--drain-every`). Nil: true (a line of a job on disk alone).
    package var onDisk: Bool?

    /// Creates a committed line, on both mirrors unless `onlyOn` names one.
    package init(epoch: UInt64, step: Int, members: [Member], onlyOn: Mirror? = nil, rankCount: Int? = nil) {
        self.epoch = epoch
        self.step = step
        self.members = members
        self.onlyOn = onlyOn
        self.rankCount = rankCount
    }

    /// Whether the line's snapshots are on the mirrored disks (level 2).
    package var isOnDisk: Bool { onDisk ?? true }
    /// Whether the line was committed with its snapshots in memory (level 1).
    package var isInMemory: Bool { inMemory ?? false }
    /// Whether the line is held in memory alone: its drains to disk are not all in yet, or its
    /// round is not drained.
    package var isInMemoryAlone: Bool { isInMemory && !isOnDisk }
    /// The levels that hold the line, as events and tools name them: "memory", "disk",
    /// "memory,disk".
    package var levels: String {
        [isInMemory ? "memory" : nil, isOnDisk ? "disk" : nil].compactMap { $0 }.joined(separator: ",")
    }
}
