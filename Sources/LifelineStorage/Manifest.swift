/// The job manifest: the only source of truth for what is committed.
///
/// A recovery line is committed when a manifest that lists it is durable on both mirrors
/// (`ManifestStore.commit`). Stored as JSON in the file `manifest`, of kind `.manifest`, whose
/// header generation equals `generation`.
package struct Manifest: Codable, Sendable, Equatable {
    /// The manifest format this build writes and reads.
    package static let currentFormatVersion = 1
    /// How many committed lines are kept by default: the newest, and one to fall back to.
    package static let keepDefault = 2

    /// Format of this manifest; equals `currentFormatVersion` for a manifest this build reads.
    package var formatVersion: Int
    /// The job this manifest belongs to.
    package var jobID: String
    /// Number of ranks in the job; every member rank of a line is in `0..<rankCount`, or in
    /// `0..<line.rankCount` for a line committed before a resize.
    package var rankCount: Int
    /// Incremented by each commit; equals the generation in the stored file's header.
    package var generation: UInt64
    /// Number of rounds ever committed (`committed` keeps only the newest few).
    package var commits: Int
    /// Committed lines, oldest first, epochs strictly increasing, at most the `keep` given to
    /// `appendCommitted`.
    package var committed: [CommittedLine]
    /// Whether the job ran to completion.
    package var finished: Bool
    /// `--checkpoint independent`: per rank, its checkpoints in order (index 1, 2, …), with the
    /// dependency records the recovery-line planner needs; nil for the other schemes. Each
    /// committed line is then the line of checkpoints only (no line can be older).
    package var independent: [[IndependentCheckpoint]]?
    /// The epoch of the line the job was last restored from onto another number of ranks
    /// (`lifeline resume -n M`); nil when it never was, or was resized before any line
    /// committed. Nothing at or before it is an execution of the ranks as they are now.
    package var resizedFrom: UInt64?

    /// A manifest for a new job, with nothing committed.
    package init(jobID: String, rankCount: Int) {
        self.formatVersion = Self.currentFormatVersion
        self.jobID = jobID
        self.rankCount = rankCount
        self.generation = 0
        self.commits = 0
        self.committed = []
        self.finished = false
    }

    /// The newest committed line, if any.
    package var newestLine: CommittedLine? { committed.last }

    /// Appends a newly committed line, counts it, and drops the oldest lines beyond `keep`,
    /// except two anchors: the newest line on both mirrors (while newer lines are degraded
    /// commits, on one mirror) and the newest line on disk (while newer lines are held in memory
    /// alone, `--levels memory,disk`). An anchor older than the newest `keep` lines stays in
    /// place of the oldest of them (beside the newest line when `keep` is 1), so a second
    /// failure, a lost host or a dead supervisor cannot leave the job without a line, and the
    /// kept lines take no more room than usual.
    ///
    /// The lines of the epochs in `pinned` (under `--levels memory,disk`, those whose drain to
    /// disk is under way) stay too, beside the lines and anchors kept without them, so that a
    /// drain that ends is recorded rather than wasted; the supervisor unpins a line once it is
    /// on disk or can no longer get there.
    ///
    /// The line's epoch must be newer than every committed one, and `keep` at least 1.
    package mutating func appendCommitted(_ line: CommittedLine, keep: Int = keepDefault, pinned: Set<UInt64> = []) {
        precondition(keep >= 1, "keep at least the newest line")
        precondition(committed.last.map { $0.epoch < line.epoch } ?? true, "epochs increase")
        committed.append(line)
        commits += 1
        guard committed.count > keep else { return }
        let anchors = Set([
            committed.lastIndex { $0.onlyOn == nil },
            committed.lastIndex { $0.isOnDisk },
        ].compactMap { $0 }.filter { $0 < committed.count - keep })
        // Pins come on top: they never push a line out of the window or an anchor out.
        let pins = committed.indices.filter { pinned.contains(committed[$0].epoch) }
        let window = committed.indices.suffix(max(1, keep - anchors.count))
        committed = anchors.union(window).union(pins).sorted().map { committed[$0] }
    }

    /// Drops the committed lines newer than `epoch` (nil: every line): the job fell back to that
    /// line (or to its start) because a newer one cannot be restored, and runs on from there,
    /// so they belong to an execution that is gone. Kept, they would take the places of the
    /// line in force and of the lines it commits next (`appendCommitted` keeps the newest), and
    /// `replay` would start from them against a log the new execution rewrote. Returns whether
    /// one was dropped.
    @discardableResult
    package mutating func abandonLines(after epoch: UInt64?) -> Bool {
        let count = committed.count
        committed.removeAll { line in epoch.map { line.epoch > $0 } ?? true }
        return committed.count < count
    }

    /// Records that every member of the line of `epoch` is on disk (level 2) now. False when
    /// no kept line has that epoch (a newer commit dropped it).
    @discardableResult
    package mutating func recordOnDisk(epoch: UInt64) -> Bool {
        guard let index = committed.firstIndex(where: { $0.epoch == epoch }) else { return false }
        committed[index].onDisk = true
        return true
    }

    /// Whether a kept line or independent checkpoint is a degraded commit (on one mirror).
    package var hasDegradedCommits: Bool {
        committed.contains { $0.onlyOn != nil } || (independent ?? []).joined().contains { $0.onlyOn != nil }
    }

    /// The first broken invariant, described, or nil if the manifest is consistent.
    package var invariantViolation: String? {
        if rankCount < 0 { return "negative rank count \(rankCount)" }
        if commits < committed.count { return "\(commits) commits but \(committed.count) lines kept" }
        for (older, newer) in zip(committed, committed.dropFirst()) where older.epoch >= newer.epoch {
            return "epoch \(newer.epoch) follows epoch \(older.epoch)"
        }
        for line in committed {
            let ranks = line.members.map(\.rank)
            if Set(ranks).count != ranks.count { return "epoch \(line.epoch) lists a rank twice" }
            if !line.isOnDisk, !line.isInMemory { return "epoch \(line.epoch) is held on no level (neither memory nor disk)" }
            let count = line.rankCount ?? rankCount
            if count < 1 { return "epoch \(line.epoch) was written by \(count) ranks" }
            if let rank = ranks.first(where: { !(0..<count).contains($0) }) {
                return "epoch \(line.epoch) lists rank \(rank), outside 0..<\(count)"
            }
        }
        return nil
    }
}
