/// Multi-level checkpoints (`--levels memory,disk`) on the supervisor's side: which rounds are
/// on level 2, the mirrored disks, and which lines the manifest keeps for a drain under way.
///
/// A round commits once every rank's snapshot is in its host's memory (level 1). Each rank then
/// drains its snapshot of every `drainEvery`-th round to disk in the background, and the line is
/// recorded on disk once every rank's drain is in: from then on it outlives the supervisor, and
/// the output up to it is the user's. The runtime's `Supervisor` performs the decisions (the
/// manifest writes, the output released, the collection).
///
/// Under minimal checkpoints a line's member may be a snapshot of an older round (a rank that
/// kept its checkpoint): the line is on disk once every member's snapshot is, whichever round's
/// drain put it there, and a drain may complete several lines at once.
///
/// | event | decision |
/// |---|---|
/// | a rank's ACK from disk (its copy did not fit in memory) | its snapshot of the round is on disk |
/// | a kept member's snapshot is in a line recorded on disk | it is on disk |
/// | a round commits with some member's snapshot in memory | the line is in memory, and on disk when every member's snapshot is |
/// | that line is not on disk and its round is drained | pin it: the manifest keeps it beyond `--keep` until its drains end |
/// | a rank's drain ended | its snapshot is on disk; each line committed in memory alone whose members are all on disk now: record it on disk and unpin it |
/// | that record could not be written now (a manifest write failed, or the drain was read from a rank being stopped) | it is owed: the line stays pinned, and the next chance records it |
/// | a rank's drain failed | unpin the lines that hold that snapshot: they stay in memory alone (the next drained round tries again; under minimal checkpoints the rank writes anew at its next round rather than keep that snapshot) |
/// | a drain of a snapshot whose earlier drain failed ended | it is on disk after all |
/// | a rank ended (failed or stopped) | unpin the lines whose snapshot of it was not on disk: its drain ended with it |
/// | a rank is relaunched from a line in memory alone whose snapshot of it is not on disk, in a drained round no drain of which failed | it drains that snapshot first; pin the line again |
/// | the oldest kept line moved on | forget the lines before it, and the snapshots of rounds before it that no kept line holds |
package struct DrainTracker: Sendable, Equatable {
    /// What is on disk of one round: its ranks whose snapshot is there, and the bytes their
    /// drains stored.
    package struct OnDisk: Sendable, Equatable {
        /// The ranks whose snapshot of the round is on disk.
        package var ranks: Set<Int> = []
        /// The bytes their drains stored (new chunks and indexes, on one mirror).
        package var storedBytes: UInt64 = 0
    }

    /// A line to record on disk now: every member's snapshot is there.
    package struct Record: Sendable, Equatable {
        /// The line's round.
        package var epoch: UInt64
        /// The bytes the round's drains stored.
        package var storedBytes: UInt64
        /// Seconds from the line's commit in memory to now.
        package var afterCommitSeconds: Double
    }

    /// A line committed in memory alone, until it is recorded on disk or forgotten.
    private struct Waiting: Sendable, Equatable {
        /// Per member rank, the round of its snapshot in the line.
        var members: [Int: UInt64]
        /// When the line committed (job clock).
        var committedAt: Double
        /// Whether a drain it needs failed: no relaunch pins it again.
        var failed = false
    }

    /// The job's ranks.
    package let rankCount: Int
    /// Every `drainEvery`-th round is drained (`--drain-every`).
    package let drainEvery: UInt64
    /// The committed lines in memory alone whose drains are under way: the manifest keeps them
    /// beyond `--keep` (`Manifest.appendCommitted(_:keep:pinned:)`).
    package private(set) var pinned: Set<UInt64> = []
    /// Per round, what is on disk of its snapshots so far (until no kept line holds them).
    package private(set) var onDisk: [UInt64: OnDisk] = [:]
    /// The lines committed in memory alone, by round.
    private var waiting: [UInt64: Waiting] = [:]
    /// Per round, the ranks whose drain of their snapshot of it failed.
    private var failedDrains: [UInt64: Set<Int>] = [:]
    /// Lines whose drains are all in but whose record on disk is still to be written, by round
    /// (`owe`): pinned until `takeOwed` hands them back.
    private var owed: [UInt64: Record] = [:]

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

    /// Rank `rank`'s snapshot of round `epoch` is on disk without a drain: its copy did not
    /// fit in memory and was written to the mirrors before the ACK, or a line recorded on disk
    /// holds it.
    package mutating func acknowledgedFromDisk(_ epoch: UInt64, rank: Int) {
        onDisk[epoch, default: OnDisk()].ranks.insert(rank)
    }

    /// Whether rank `rank`'s snapshot of round `epoch` is known to be on disk.
    package func isOnDisk(rank: Int, epoch: UInt64) -> Bool {
        onDisk[epoch]?.ranks.contains(rank) == true
    }

    /// The members of a line of round `epoch` in which every rank wrote its snapshot.
    private func everyRank(_ epoch: UInt64) -> [Int: UInt64] {
        Dictionary(uniqueKeysWithValues: (0..<rankCount).map { ($0, epoch) })
    }

    /// The levels of the line of round `epoch` about to commit, whose `members` (per rank, the
    /// round of its snapshot; nil: every rank wrote one in this round; a rank absent starts from
    /// the beginning) are in memory when `anyInMemory`: nil for both when none is (every
    /// snapshot was written to disk before its ACK: a line on disk alone, as without levels);
    /// else in memory, and on disk once every member's snapshot is.
    package func levels(ofCommitting epoch: UInt64, members: [Int: UInt64]? = nil, anyInMemory: Bool)
        -> (inMemory: Bool?, onDisk: Bool?)
    {
        guard anyInMemory else { return (nil, nil) }
        return (true, (members ?? everyRank(epoch)).allSatisfy { isOnDisk(rank: $0.key, epoch: $0.value) })
    }

    /// The line of round `epoch` (its `members` as in `levels`) committed at `now`, held in
    /// memory alone or not: one in memory alone waits for its drains, pinned when its round is
    /// drained.
    package mutating func committed(_ epoch: UInt64, members: [Int: UInt64]? = nil, inMemoryAlone: Bool, now: Double) {
        guard inMemoryAlone else { return }
        let members = members ?? everyRank(epoch)
        let failed = members.contains { failedDrains[$0.value]?.contains($0.key) == true }
        waiting[epoch] = Waiting(members: members, committedAt: now, failed: failed)
        if drains(epoch), !failed { pinned.insert(epoch) }
    }

    /// Rank `rank`'s drain of its snapshot of round `epoch` ended with `storedBytes` written:
    /// the lines to record on disk, oldest first — each committed in memory alone whose
    /// members' snapshots are all on disk now.
    package mutating func drained(_ epoch: UInt64, rank: Int, storedBytes: UInt64, now: Double) -> [Record] {
        onDisk[epoch, default: OnDisk()].ranks.insert(rank)
        onDisk[epoch, default: OnDisk()].storedBytes += storedBytes
        failedDrains[epoch]?.remove(rank)
        var records: [Record] = []
        for (line, entry) in waiting.sorted(by: { $0.key < $1.key }) where entry.members[rank] == epoch {
            guard entry.members.allSatisfy({ isOnDisk(rank: $0.key, epoch: $0.value) }) else { continue }
            waiting[line] = nil
            pinned.remove(line)
            records.append(Record(epoch: line, storedBytes: onDisk[line]?.storedBytes ?? 0, afterCommitSeconds: now - entry.committedAt))
        }
        return records
    }

    /// `record` (a line `drained` returned) is not written yet: the manifest write failed, or
    /// the supervisor cannot write now. The line stays pinned, so the manifest keeps it, until
    /// `takeOwed` hands it back.
    package mutating func owe(_ record: Record) {
        owed[record.epoch] = record
        pinned.insert(record.epoch)
    }

    /// The owed records, oldest first, to write now; they are unpinned (one that fails again is
    /// owed again).
    package mutating func takeOwed() -> [Record] {
        let records = owed.values.sorted { $0.epoch < $1.epoch }
        owed = [:]
        for record in records { pinned.remove(record.epoch) }
        return records
    }

    /// Rank `rank`'s drain of its snapshot of round `epoch` failed: the lines that hold that
    /// snapshot will not reach disk.
    package mutating func drainFailed(_ epoch: UInt64, rank: Int) {
        failedDrains[epoch, default: []].insert(rank)
        for (line, entry) in waiting where entry.members[rank] == epoch {
            pinned.remove(line)
            waiting[line]?.failed = true
        }
    }

    /// Rank `rank` ended (it failed, or was stopped for a rollback): the lines whose snapshot
    /// of it was not on disk will not get there (its writer ended with it), unless a rank
    /// relaunched from one drains it again (`relaunching`).
    package mutating func rankEnded(_ rank: Int) {
        pinned = pinned.filter { line in
            guard let snapshot = waiting[line]?.members[rank] else { return true }
            return isOnDisk(rank: rank, epoch: snapshot)
        }
    }

    /// Rank `rank` is relaunched from its snapshot of round `snapshot` in the line of round
    /// `line`: whether it must drain that snapshot (the line held in memory alone, its round
    /// drained, no drain it needs failed, and the snapshot not on disk), in which case the line
    /// is pinned again until the drain ends.
    package mutating func relaunching(_ rank: Int, restoring snapshot: UInt64, line: UInt64, inMemoryAlone: Bool) -> Bool {
        guard inMemoryAlone, drains(line), let entry = waiting[line], !entry.failed, entry.members[rank] == snapshot,
              !isOnDisk(rank: rank, epoch: snapshot) else { return false }
        pinned.insert(line)
        return true
    }

    /// Forgets the lines before `epoch` (the oldest kept line), and of the rounds before it
    /// every snapshot but those `held` names (per round, the ranks whose snapshot of it a kept
    /// line holds: under minimal checkpoints, ranks that kept an older checkpoint): none of the
    /// rest can be recorded or held again. So what is tracked stays within what the kept lines
    /// hold, however long a rank keeps its checkpoint.
    package mutating func forget(before epoch: UInt64, held: [UInt64: Set<Int>] = [:]) {
        func keep(_ round: UInt64, _ ranks: Set<Int>) -> Set<Int> {
            round >= epoch ? ranks : ranks.intersection(held[round] ?? [])
        }
        for (round, entry) in onDisk {
            let ranks = keep(round, entry.ranks)
            if ranks.isEmpty { onDisk[round] = nil } else if ranks != entry.ranks { onDisk[round]?.ranks = ranks }
        }
        for (round, ranks) in failedDrains {
            let kept = keep(round, ranks)
            failedDrains[round] = kept.isEmpty ? nil : kept
        }
        pinned = pinned.filter { $0 >= epoch }
        waiting = waiting.filter { $0.key >= epoch }
        owed = owed.filter { $0.key >= epoch }
    }
}
