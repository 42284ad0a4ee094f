/// The supervisor's records of independent checkpoints (`--checkpoint independent`) and what
/// follows from them: each rank's checkpoints with the dependency vector of the interval each
/// closed and what the rank had delivered; the line of checkpoints only (no recovery line can
/// ever be older: it is committed, and bounds retention, logs and garbage); which snapshots no
/// line can use any more; and what each sender may drop of what it retains.
///
/// The runtime keeps the manifest's copy (snapshot names, output offsets) in step with it; a
/// simulator keeps its model disk.
package struct IndependentCheckpoints: Sendable, Equatable {
    /// The number of ranks.
    package let rankCount: Int
    /// The dependency records, and the recovery lines they allow.
    package private(set) var dependencies: IntervalDependencies
    /// Per rank, the checkpoints whose snapshot is kept (restorable).
    package private(set) var restorable: [Set<Int>]
    /// Per rank and checkpoint, what the rank had delivered from each sender at it (unknown for
    /// checkpoints recorded before a resume: those trim nothing).
    private var delivered: [[Int: DeliveredSets]]
    /// The checkpoint-only line last committed (empty: none since the records were loaded).
    package private(set) var committedLine: [Int]

    /// No checkpoint yet on `rankCount` ranks.
    package init(rankCount: Int) {
        self.rankCount = rankCount
        self.dependencies = IntervalDependencies(rankCount: rankCount)
        self.restorable = Array(repeating: [], count: rankCount)
        self.delivered = Array(repeating: [:], count: rankCount)
        self.committedLine = []  // none yet: the first advance commits
    }

    /// The records of a manifest: per rank, each checkpoint's dependency vector (in index order,
    /// from 1) and whether its snapshot is kept.
    package init(records: [[(dependencies: PerPeer<Int>, restorable: Bool)]]) {
        self.init(rankCount: records.count)
        for (rank, list) in records.enumerated() {
            for (position, record) in list.enumerated() {
                dependencies.recordCheckpoint(rank: rank, dependencies: record.dependencies)
                if record.restorable { restorable[rank].insert(position + 1) }
            }
        }
    }

    /// Per rank, how many checkpoints are recorded.
    package var counts: [Int] { dependencies.closed.map(\.count) }

    /// `rank`'s newest checkpoint that still has its snapshot (0: none, the start).
    package func newestRestorable(_ rank: Int) -> Int { restorable[rank].max() ?? 0 }

    /// `rank`'s checkpoint `index` is durable: recorded when it is the next one and its vector
    /// fits the job; otherwise why not.
    package mutating func record(rank: Int, index: Int, dependencies vector: PerPeer<Int>, delivered sets: DeliveredSets) -> String? {
        guard index == dependencies.closed[rank].count + 1 else {
            return "checkpoint \(index) after \(dependencies.closed[rank].count) recorded"
        }
        guard vector.rankCount == rankCount else {
            return "checkpoint \(index) with \(vector.rankCount) dependencies for \(rankCount) ranks"
        }
        // A sender's interval is its checkpoints so far, recorded or still being written: one
        // far beyond its records is corrupt, and would make the rollback graph allocate for it.
        for sender in vector.used where vector[sender] > dependencies.closed[sender].count + Self.unrecordedIntervalsMax {
            return "checkpoint \(index) depends on interval \(vector[sender]) of rank \(sender), which has recorded "
                + "\(dependencies.closed[sender].count) checkpoints"
        }
        dependencies.recordCheckpoint(rank: rank, dependencies: vector)
        restorable[rank].insert(index)
        delivered[rank][index] = sets
        recordedSinceAdvance += 1
        return nil
    }

    /// How far a sender's interval named in a record may run ahead of the sender's recorded
    /// checkpoints (those it is still writing); a record naming one further is refused.
    package static let unrecordedIntervalsMax = 1_024

    /// Checkpoints recorded since the last advance.
    package private(set) var recordedSinceAdvance = 0

    /// Whether an advance is due: after every record up to 8 ranks, after one record per 8
    /// ranks beyond (each advance costs the records above the checkpoint-only line, so at
    /// 10,000 ranks one per record would cost their square; the line and the garbage wait a
    /// little longer instead, never a decision a recovery depends on).
    package var advanceDue: Bool { recordedSinceAdvance >= max(1, rankCount / 8) }

    /// What advancing after a recorded checkpoint decided.
    package struct Advance: Sendable, Equatable {
        /// The line of checkpoints only, per rank.
        package var line: [Int]
        /// Whether it moved since it was last committed (then the caller commits it, and says so
        /// with `lineCommitted`).
        package var moved: Bool
        /// Snapshots no line can use any more, to delete: (rank, checkpoint), by rank.
        package var collected: [Collected]
        /// Per sender, when the line moved: what each receiver's checkpoint in it covers of
        /// what the sender retains (the sender's `TRIM`), with the sender's own entry.
        package var trims: [(checkpoint: Int, coveredByReceiver: DeliveredSets)]

        /// A snapshot to delete.
        package struct Collected: Sendable, Equatable {
            /// The rank.
            package var rank: Int
            /// Its checkpoint's index.
            package var index: Int
        }

        /// Equal when every field is.
        package static func == (lhs: Advance, rhs: Advance) -> Bool {
            lhs.line == rhs.line && lhs.moved == rhs.moved && lhs.collected == rhs.collected
                && lhs.trims.map(\.checkpoint) == rhs.trims.map(\.checkpoint)
                && lhs.trims.map(\.coveredByReceiver) == rhs.trims.map(\.coveredByReceiver)
        }
    }

    /// Recomputes the checkpoint-only line and the useless checkpoints. `collecting`: whether
    /// snapshots may be deleted now (not while some commits sit on one mirror: which line a
    /// second failure falls back to is not known). `keepNewest`: with logging, each rank's
    /// newest checkpoint stays whatever the lines say (a lone restart begins there and replays
    /// its log). The caller records the collected snapshots as gone, commits the line when it
    /// moved, and then deletes them and sends the trims.
    package mutating func advance(collecting: Bool, keepNewest: Bool) -> Advance {
        // Only kept snapshots after the line can be found useless here: those before it go anyway.
        let line: [Int], useless: [[Int]]
        do {  // the closure's copy is gone before the removals below, which then copy nothing
            let kept = restorable
            (line, useless) = dependencies.advanceFloor { line in
                kept.enumerated().map { rank, indices in indices.filter { $0 >= line[rank] }.sorted() }
            }
        }
        recordedSinceAdvance = 0
        var collected: [Advance.Collected] = []
        for rank in 0..<rankCount where collecting {
            let restartPoint = keepNewest ? dependencies.closed[rank].count : nil
            for index in restorable[rank].sorted() where index != restartPoint && (index < line[rank] || useless[rank].contains(index)) {
                collected.append(.init(rank: rank, index: index))
                restorable[rank].remove(index)
            }
        }
        let moved = line != committedLine
        var trims: [(checkpoint: Int, coveredByReceiver: DeliveredSets)] = []
        if moved {
            // Each sender drops what each receiver's checkpoint in the line covers: built by going
            // once over what each receiver had delivered, so it costs the channels used.
            var covered = Array(repeating: DeliveredSets(rankCount: rankCount), count: rankCount)
            for receiver in 0..<rankCount where line[receiver] > 0 {
                guard let sets = delivered[receiver][line[receiver]] else { continue }
                for sender in sets.used where sender < rankCount { covered[sender][receiver] = sets[sender] }
            }
            trims = (0..<rankCount).map { (line[$0], covered[$0]) }
        }
        return Advance(line: line, moved: moved, collected: collected, trims: trims)
    }

    /// The caller committed `line` (an advance's that moved).
    package mutating func lineCommitted(_ line: [Int]) {
        committedLine = line
    }

    /// Forgets `rank`'s checkpoints after `index` (its execution past them is lost).
    package mutating func truncate(rank: Int, after index: Int) {
        dependencies.truncate(rank: rank, after: index)
        restorable[rank] = restorable[rank].filter { $0 <= index }
        delivered[rank] = delivered[rank].filter { $0.key <= index }
    }
}
