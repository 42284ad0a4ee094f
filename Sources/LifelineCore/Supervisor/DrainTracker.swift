/// Multi-level checkpoints (`--levels memory,disk`) on the supervisor's side: which rounds are
/// on level 2, the mirrored disks, and which lines the manifest keeps for a drain under way.
///
/// A round commits once every rank's snapshot is in its host's memory (level 1). Each rank then
/// drains its snapshot of every `drainEvery`-th round to disk in the background, and the line is
/// recorded on disk once every rank's drain is in: from then on it outlives the supervisor, and
/// the output up to it is the user's. The runtime's `Supervisor` performs the decisions (the
/// manifest writes, the output released, the collection).
///
/// | event | decision |
/// |---|---|
/// | a rank's ACK from disk (its copy did not fit in memory) | its snapshot of the round is on disk |
/// | a round commits with some snapshot in memory | the line is in memory, and on disk when every rank's snapshot is |
/// | that line is not on disk and its round is drained | pin it: the manifest keeps it beyond `--keep` until its drains end |
/// | a rank's drain ended | its snapshot is on disk; once every rank's is, and the line committed in memory alone: record it on disk and unpin it |
/// | a rank's drain failed | unpin the line: it stays in memory alone (the next drained round tries again) |
/// | a rank ended (failed or stopped) | unpin the lines it had not drained: its drain ended with it |
/// | a rank is relaunched from a line in memory alone that it had not drained, in a drained round no drain of which failed | it drains that line first; pin it again |
/// | the oldest kept line moved on | forget the rounds before it |
package struct DrainTracker: Sendable, Equatable {
    /// What is on disk of one round: its ranks whose snapshot is there, and the bytes their
    /// drains stored.
    package struct OnDisk: Sendable, Equatable {
        /// The ranks whose snapshot of the round is on disk.
        package var ranks: Set<Int> = []
        /// The bytes their drains stored (new chunks and indexes, on one mirror).
        package var storedBytes: UInt64 = 0
    }

    /// A line to record on disk now: every rank's drain of its round is in.
    package struct Record: Sendable, Equatable {
        /// The line's round.
        package var epoch: UInt64
        /// The bytes the round's drains stored.
        package var storedBytes: UInt64
        /// Seconds from the line's commit in memory to now.
        package var afterCommitSeconds: Double
    }

    /// The job's ranks.
    package let rankCount: Int
    /// Every `drainEvery`-th round is drained (`--drain-every`).
    package let drainEvery: UInt64
    /// The committed lines in memory alone whose drains are under way: the manifest keeps them
    /// beyond `--keep` (`Manifest.appendCommitted(_:keep:pinned:)`).
    package private(set) var pinned: Set<UInt64> = []
    /// Per round, what is on disk of it so far (until its line is recorded or forgotten).
    package private(set) var onDisk: [UInt64: OnDisk] = [:]
    /// When each line committed in memory alone was committed (job clock), until it is
    /// recorded on disk or forgotten.
    private var committedInMemoryAt: [UInt64: Double] = [:]
    /// The rounds a rank's drain of failed: no relaunch pins them again.
    private var failedDrains: Set<UInt64> = []

    /// A tracker for a job of `rankCount` ranks draining every `drainEvery`-th round (at least 1).
    package init(rankCount: Int, drainEvery: Int) {
        self.rankCount = rankCount
        self.drainEvery = UInt64(max(1, drainEvery))
    }

    /// Whether round `epoch` is drained to disk.
    package func drains(_ epoch: UInt64) -> Bool { Self.drains(epoch, every: drainEvery) }

    /// Whether round `epoch` is drained to disk when every `drainEvery`-th round is (at least 1):
    /// the rule the ranks drain by (`LaunchEnvironment.MemoryLevelSettings`) and this tracker
    /// pins by.
    package static func drains(_ epoch: UInt64, every drainEvery: UInt64) -> Bool { epoch % max(1, drainEvery) == 0 }

    /// Rank `rank` acknowledged round `epoch` from disk: its copy did not fit in memory and was
    /// written to the mirrors before the ACK.
    package mutating func acknowledgedFromDisk(_ epoch: UInt64, rank: Int) {
        onDisk[epoch, default: OnDisk()].ranks.insert(rank)
    }

    /// The levels of the line of round `epoch` about to commit: nil for both when no rank's
    /// snapshot is in memory (a line on disk alone, as without levels); else in memory, and on
    /// disk once every rank's snapshot is.
    package func levels(ofCommitting epoch: UInt64, anyInMemory: Bool) -> (inMemory: Bool?, onDisk: Bool?) {
        guard anyInMemory else { return (nil, nil) }
        return (true, onDisk[epoch]?.ranks.count == rankCount)
    }

    /// The line of round `epoch` committed at `now`, held in memory alone or not: one in memory
    /// alone waits for its drains, pinned when its round is drained.
    package mutating func committed(_ epoch: UInt64, inMemoryAlone: Bool, now: Double) {
        guard inMemoryAlone else {
            onDisk[epoch] = nil
            return
        }
        committedInMemoryAt[epoch] = now
        if drains(epoch) { pinned.insert(epoch) }
    }

    /// Rank `rank`'s drain of round `epoch` ended with `storedBytes` written: the line to record
    /// on disk, when this was the last drain of a line committed in memory alone.
    package mutating func drained(_ epoch: UInt64, rank: Int, storedBytes: UInt64, now: Double) -> Record? {
        onDisk[epoch, default: OnDisk()].ranks.insert(rank)
        onDisk[epoch, default: OnDisk()].storedBytes += storedBytes
        guard let round = onDisk[epoch], round.ranks.count == rankCount, let committedAt = committedInMemoryAt[epoch] else {
            return nil
        }
        onDisk[epoch] = nil
        committedInMemoryAt[epoch] = nil
        pinned.remove(epoch)
        return Record(epoch: epoch, storedBytes: round.storedBytes, afterCommitSeconds: now - committedAt)
    }

    /// A rank's drain of round `epoch` failed: its line will not reach disk.
    package mutating func drainFailed(_ epoch: UInt64) {
        pinned.remove(epoch)
        failedDrains.insert(epoch)
    }

    /// Rank `rank` ended (it failed, or was stopped for a rollback): the lines it had not
    /// drained will not reach disk (its writer ended with it), unless a rank relaunched from
    /// one drains it again (`relaunching`).
    package mutating func rankEnded(_ rank: Int) {
        pinned = pinned.filter { onDisk[$0]?.ranks.contains(rank) == true }
    }

    /// Rank `rank` is relaunched from the line of round `epoch`: whether it must drain that
    /// line (held in memory alone, its round drained, and its predecessor's drain of it not in),
    /// in which case the line is pinned again until the drain ends.
    package mutating func relaunching(_ rank: Int, restoring epoch: UInt64, inMemoryAlone: Bool) -> Bool {
        guard inMemoryAlone, drains(epoch), committedInMemoryAt[epoch] != nil, !failedDrains.contains(epoch),
              onDisk[epoch]?.ranks.contains(rank) != true else { return false }
        pinned.insert(epoch)
        return true
    }

    /// Forgets the rounds before `epoch` (the oldest kept line): none of them can be recorded.
    package mutating func forget(before epoch: UInt64) {
        onDisk = onDisk.filter { $0.key >= epoch }
        pinned = pinned.filter { $0 >= epoch }
        failedDrains = failedDrains.filter { $0 >= epoch }
        committedInMemoryAt = committedInMemoryAt.filter { $0.key >= epoch }
    }
}
