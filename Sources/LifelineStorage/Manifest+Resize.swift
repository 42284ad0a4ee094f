/// Restoring a committed line onto another number of ranks (`lifeline resume RUN_DIR -n M`):
/// which lines can be, and the manifest of the resized job.
///
/// A resize starts only from a line where every rank wrote its snapshot for the line's own
/// round at the line's one step: the program rebuilds each new rank's state from the old
/// ranks' states at that step, and nothing else of the old execution (logs, kept entries of
/// earlier rounds) survives it.
extension Manifest {
    /// The number of ranks that wrote `line`.
    package func rankCount(of line: CommittedLine) -> Int { line.rankCount ?? rankCount }

    /// The manifest of the job on `newCount` ranks, restored from `line` (nil: none was
    /// committed): every line keeps the count that wrote it, so a rollback to one of them after
    /// the resize restores it onto `newCount` ranks again.
    package func resized(to newCount: Int, from line: CommittedLine?) -> Manifest {
        precondition(newCount >= 1, "a job runs on at least one rank")
        var resized = self
        if let line { resized.resizedFrom = line.epoch }
        for index in resized.committed.indices where resized.committed[index].rankCount == nil {
            resized.committed[index].rankCount = rankCount
        }
        resized.rankCount = newCount
        for index in resized.committed.indices where resized.committed[index].rankCount == newCount {
            resized.committed[index].rankCount = nil
        }
        return resized
    }
}

extension ManifestStore {
    /// Why `line` of `manifest` cannot be restored onto another number of ranks, in words that
    /// say what to do instead; nil when it can (its messages in flight, `inFlightBytes`, are then
    /// known; whether the program takes them is its own to say).
    package func resizeRefusal(_ line: CommittedLine, of manifest: Manifest) -> String? {
        if manifest.independent != nil {
            return "its checkpoints are independent, so no line is at one step; resume it on \(manifest.rankCount(of: line)) ranks"
        }
        let count = manifest.rankCount(of: line)
        if line.members.count != count || Set(line.members.map(\.rank)) != Set(0..<count) {
            return "line \(line.epoch) does not hold an entry for each of its \(count) ranks"
        }
        if let member = line.members.first(where: { epoch(ofSnapshot: $0.snapshot) != line.epoch }) {
            return "rank \(member.rank) keeps an earlier checkpoint in line \(line.epoch) (minimal checkpoints): a resize starts only from a line that every rank wrote; resume on \(count) ranks until one is committed"
        }
        if let member = line.members.first(where: { $0.step != line.step }) {
            return "line \(line.epoch) is not at one step (rank \(member.rank) is at step \(member.step), the line at \(line.step))"
        }
        if inFlightBytes(line) == nil {
            return "line \(line.epoch) was committed by an older Lifeline that did not record its messages in flight; resume it on \(count) ranks until a new line commits"
        }
        return nil
    }

    /// Bytes of messages in flight across `line` that its snapshots store, or nil when a member
    /// was committed before they were recorded.
    package func inFlightBytes(_ line: CommittedLine) -> UInt64? {
        var total: UInt64 = 0
        for member in line.members {
            guard let bytes = member.inFlightBytes else { return nil }
            total += bytes
        }
        return total
    }
}
