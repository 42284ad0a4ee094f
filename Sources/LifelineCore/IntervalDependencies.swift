/// The rollback-dependency records of independent checkpointing, and the recovery lines they
/// allow.
///
/// A rank's *checkpoint interval* x is its execution between its checkpoint x and x + 1
/// (checkpoint 0 is the start). Every message carries the index of the interval its sender was
/// in; for each interval a rank records, per sender, the newest sender interval it delivered a
/// message from (its *dependency vector*; -1: none). The vector of interval x is saved with
/// checkpoint x + 1; the vector of the current interval is the rank's volatile part.
///
/// A line gives each rank an entry: a checkpoint e (its intervals 0..<e are inside) or its
/// current state (every interval inside). It is consistent when no interval inside depends on a
/// sender interval outside: for every rank i, interval x inside, and sender j,
/// `dependencies[i][x][j] < inside(j)`. Consistent lines are closed under componentwise maximum,
/// so the latest one below any starting point exists; it is found by rollback propagation (the
/// marking of the rollback-dependency graph): while an inside interval depends on an outside
/// one, roll its rank back to the checkpoint that begins that interval.
///
/// The same analysis on whole message histories is `RecoveryHistory`; tests check that both agree.
package struct IntervalDependencies: Sendable, Equatable, Codable {
    /// Per rank, the dependency vector of each closed interval: `closed[i][x]` belongs to interval
    /// x, saved with checkpoint x + 1, so rank i has `closed[i].count` checkpoints after the start.
    package var closed: [[[Int]]]

    /// No checkpoint yet on `rankCount` ranks.
    package init(rankCount: Int) {
        closed = Array(repeating: [], count: rankCount)
    }

    /// The number of ranks.
    package var rankCount: Int { closed.count }

    /// The newest checkpoint index of `rank` (0: only the start).
    package func newestCheckpoint(_ rank: Int) -> Int { closed[rank].count }

    /// Records that `rank` took checkpoint `closed[rank].count + 1`, closing the interval whose
    /// dependency vector is given.
    package mutating func recordCheckpoint(rank: Int, dependencies: [Int]) {
        precondition(dependencies.count == rankCount, "a dependency vector has one entry per rank")
        closed[rank].append(dependencies)
    }

    /// The latest consistent line when the ranks in `failed` lost their volatile state and every
    /// other rank's current interval has the dependency vector in `volatile` (nil for a failed
    /// rank). Entries: a checkpoint index, or nil for "keeps its current state".
    package func latestLine(failed: Set<Int>, volatile: [[Int]?]) -> [Int?] {
        precondition(volatile.count == rankCount)
        // inside[i]: the number of rank i's intervals inside the line (current state: all of them).
        var inside = (0..<rankCount).map { failed.contains($0) ? closed[$0].count : closed[$0].count + 1 }
        propagate(&inside, volatile: volatile.enumerated().map { failed.contains($0.offset) ? nil : $0.element })
        return (0..<rankCount).map { inside[$0] == closed[$0].count + 1 ? nil : inside[$0] }
    }

    /// The latest line made of checkpoints only (every rank failed at once): no recovery line
    /// can ever be older than it, whatever fails later, so checkpoints before it, and retained
    /// messages its entries cover, are garbage.
    package func checkpointOnlyLine() -> [Int] {
        var inside = closed.map(\.count)
        propagate(&inside, volatile: Array(repeating: nil, count: rankCount))
        return inside
    }

    /// The checkpoints that no consistent line can ever contain (a Z-cycle runs through them):
    /// per rank, the indices (≥ 1) that roll back even when every other rank may keep every
    /// interval it has run or will run, and whose own current interval is taken to depend on
    /// nothing.
    /// Later checkpoints and messages only add dependencies, so a useless checkpoint stays
    /// useless.
    ///
    /// `candidates`: per rank, the indices to check (nil: all). A check from a checkpoint at or
    /// after the checkpoint-only line scans only the intervals after that line: a consistent
    /// line below the start bounds the propagation's result, so nothing before it rolls back.
    package func uselessCheckpoints(among candidates: [[Int]]? = nil) -> [[Int]] {
        let floor = checkpointOnlyLine()
        let none = Array(repeating: Array(repeating: -1, count: rankCount), count: rankCount)
        return (0..<rankCount).map { rank in
            (candidates?[rank] ?? closed[rank].indices.map { $0 + 1 }).filter { index in
                // Every other rank may keep any interval, also one not recorded yet: a checkpoint
                // can depend on an interval whose own checkpoint's record has not arrived (its
                // ACK overtaken by this one's), and must not be judged useless for it.
                var inside = Array(repeating: Int.max, count: rankCount)
                inside[rank] = index
                propagate(&inside, volatile: none, from: index >= floor[rank] ? floor : nil)
                return inside[rank] < index
            }
        }
    }

    /// Whether an interval with dependency `vector` depends on an interval outside `inside`
    /// (the innermost loop of every line search: a plain loop over the buffers).
    private static func dependsOutside(_ vector: [Int], _ inside: [Int]) -> Bool {
        vector.withUnsafeBufferPointer { vector in
            inside.withUnsafeBufferPointer { inside in
                for index in 0..<vector.count where vector[index] >= inside[index] { return true }
                return false
            }
        }
    }

    /// Rolls ranks back until no inside interval depends on an outside one. `from`: per rank,
    /// intervals known to stay inside (a consistent line below the start), not scanned.
    private func propagate(_ inside: inout [Int], volatile: [[Int]?], from floor: [Int]? = nil) {
        var changed = true
        while changed {
            changed = false
            for rank in 0..<rankCount {
                var interval = min(floor?[rank] ?? 0, inside[rank])
                // Intervals after the current one have no record yet: inside, depending on nothing.
                while interval < min(inside[rank], closed[rank].count + 1) {
                    let vector = interval < closed[rank].count ? closed[rank][interval] : volatile[rank]
                    // The current interval of a failed rank is lost: it cannot be inside.
                    guard let vector else {
                        inside[rank] = interval
                        changed = true
                        break
                    }
                    if Self.dependsOutside(vector, inside) {
                        inside[rank] = interval
                        changed = true
                        break
                    }
                    interval += 1
                }
            }
        }
    }
}
