/// The rollback-dependency records of independent checkpointing, and the recovery lines they
/// allow.
///
/// A rank's *checkpoint interval* x is its execution between its checkpoint x and x + 1
/// (checkpoint 0 is the start). Every message carries the index of the interval its sender was
/// in; for each interval a rank records, per sender, the newest sender interval it delivered a
/// message from (its *dependency vector*, sparse: only the senders it heard from). The vector of
/// interval x is saved with checkpoint x + 1; the vector of the current interval is the rank's
/// volatile part.
///
/// A line gives each rank an entry: a checkpoint e (its intervals 0..<e are inside) or its
/// current state (every interval inside). It is consistent when no interval inside depends on a
/// sender interval outside. Consistent lines are closed under componentwise maximum, so the
/// latest one below any starting point exists; it is found by rollback propagation: while an
/// inside interval depends on an outside one, roll its rank back to the checkpoint that begins
/// that interval.
///
/// The propagation runs on the *rollback graph*: a node per interval (i, x), read "interval x
/// of rank i is outside the line", with an edge (i, x) → (i, x + 1) (a rank rolls back past
/// every later interval too) and an edge (j, y) → (i, x) for each dependency of i's interval x
/// on j's interval y. The line below a set of lost intervals is what they reach; a checkpoint
/// (i, x) is useless (on a Z-cycle: no consistent line holds it) when (i, x) reaches (i, x − 1),
/// that is, when both lie in one strongly connected component. Each search costs the intervals
/// and dependencies above the newest checkpoint-only line known (`raiseFloor`): no rollback
/// ever goes below a consistent line of checkpoints, so what lies under it is never visited.
///
/// The same analysis on whole message histories is `RecoveryHistory`; tests check that both agree.
package struct IntervalDependencies: Sendable, Equatable {
    /// A dependency: an interval of a sender.
    package struct Dependency: Sendable, Equatable {
        /// The sender.
        package var rank: Int
        /// Its interval.
        package var interval: Int
    }

    /// One rank's closed intervals, flat: the dependencies of every interval in one array, and
    /// where each interval's end. A search walks every interval above the floor of every rank;
    /// an array per interval (millions at 10,000 ranks) made each a cache miss, most of the
    /// simulator's time under independent checkpoints.
    package struct ClosedIntervals: Sendable, Equatable {
        /// Every interval's dependencies, interval after interval.
        private var dependencies: [Dependency] = []
        /// `ends[x]`: where interval x's dependencies end in `dependencies`.
        private var ends: [Int] = []

        /// The number of closed intervals (the rank's checkpoints after the start).
        package var count: Int { ends.count }
        /// The closed intervals' indices.
        package var indices: Range<Int> { 0..<ends.count }

        /// Interval `interval`'s dependencies, by ascending sender.
        package subscript(interval: Int) -> ArraySlice<Dependency> {
            dependencies[(interval == 0 ? 0 : ends[interval - 1])..<ends[interval]]
        }

        /// Closes the next interval with `list`.
        mutating func append(_ list: [Dependency]) {
            dependencies += list
            ends.append(dependencies.count)
        }

        /// Keeps the first `count` intervals.
        mutating func truncate(to count: Int) {
            guard count < ends.count else { return }
            dependencies.removeSubrange((count == 0 ? 0 : ends[count - 1])...)
            ends.removeSubrange(count...)
        }
    }

    /// Per rank, the dependencies of each closed interval, by ascending sender: `closed[i][x]`
    /// belongs to interval x, saved with checkpoint x + 1, so rank i has `closed[i].count`
    /// checkpoints after the start.
    package private(set) var closed: [ClosedIntervals]
    /// A consistent line of checkpoints known (the checkpoint-only line when last raised): no
    /// line any search finds lies below it.
    package private(set) var floor: [Int]

    /// No checkpoint yet on `rankCount` ranks.
    package init(rankCount: Int) {
        closed = Array(repeating: ClosedIntervals(), count: rankCount)
        floor = Array(repeating: 0, count: rankCount)
    }

    /// The number of ranks.
    package var rankCount: Int { closed.count }

    /// The newest checkpoint index of `rank` (0: only the start).
    package func newestCheckpoint(_ rank: Int) -> Int { closed[rank].count }

    /// The dependency vector of `rank`'s closed interval `interval`.
    package func vector(rank: Int, interval: Int) -> PerPeer<Int> {
        Self.vector(closed[rank][interval], rankCount: rankCount)
    }

    /// Records that `rank` took checkpoint `closed[rank].count + 1`, closing the interval whose
    /// dependency vector is given.
    package mutating func recordCheckpoint(rank: Int, dependencies: PerPeer<Int>) {
        precondition(dependencies.rankCount == rankCount, "a dependency vector has one entry per rank")
        closed[rank].append(Self.list(dependencies))
    }

    /// Records a checkpoint with a dense vector (-1: none), as a manifest stores it.
    package mutating func recordCheckpoint(rank: Int, dependencies: [Int]) {
        recordCheckpoint(rank: rank, dependencies: PerPeer(dependencies, absent: -1))
    }

    /// Forgets `rank`'s checkpoints after `index` (its execution past them is lost).
    package mutating func truncate(rank: Int, after index: Int) {
        closed[rank].truncate(to: index)
        // The floor stays consistent: only intervals above it are forgotten.
        if index < floor[rank] { floor = Array(repeating: 0, count: rankCount) }
    }

    /// `line` is consistent (a checkpoint-only line just computed): later searches start there.
    package mutating func raiseFloor(to line: [Int]) {
        precondition(line.count == rankCount)
        floor = zip(floor, line).map { max($0, $1) }
    }

    /// The latest consistent line when the ranks in `failed` lost their volatile state and every
    /// other rank's current interval has the dependency vector in `volatile` (nil for a failed
    /// rank). Entries: a checkpoint index, or nil for "keeps its current state".
    package func latestLine(failed: Set<Int>, volatile: [PerPeer<Int>?]) -> [Int?] {
        precondition(volatile.count == rankCount)
        let graph = RollbackGraph(self, volatile: volatile.enumerated().map { failed.contains($0.offset) ? nil : $0.element })
        // A failed rank loses its current interval; any rank loses what lies beyond it (a record
        // naming a later interval of it describes an execution that is gone).
        let reached = graph.reach(from: (0..<rankCount).map { rank in
            (rank, failed.contains(rank) || volatile[rank] == nil ? closed[rank].count : closed[rank].count + 1)
        })
        return (0..<rankCount).map { reached[$0] > closed[$0].count ? nil : reached[$0] }
    }

    /// `latestLine` with dense vectors (-1: none).
    package func latestLine(failed: Set<Int>, volatile: [[Int]?]) -> [Int?] {
        latestLine(failed: failed, volatile: volatile.map { $0.map { PerPeer($0, absent: -1) } })
    }

    /// The latest line made of checkpoints only (every rank failed at once): no recovery line
    /// can ever be older than it, whatever fails later, so checkpoints before it, and retained
    /// messages its entries cover, are garbage.
    package func checkpointOnlyLine() -> [Int] {
        let graph = RollbackGraph(self, volatile: Array(repeating: nil, count: rankCount))
        return graph.reach(from: (0..<rankCount).map { ($0, closed[$0].count) })
    }

    /// The checkpoints that no consistent line can ever contain (a Z-cycle runs through them):
    /// per rank, the indices (≥ 1) that roll back even when every other rank may keep every
    /// interval it has run or will run, and whose own current interval is taken to depend on
    /// nothing. Later checkpoints and messages only add dependencies, so a useless checkpoint
    /// stays useless.
    ///
    /// `candidates`: per rank, the indices to report about (nil: all).
    package func uselessCheckpoints(among candidates: [[Int]]? = nil) -> [[Int]] {
        // Every other rank may keep any interval, also one not recorded yet: a checkpoint can
        // depend on an interval whose own checkpoint's record has not arrived (its ACK
        // overtaken by this one's), and must not be judged useless for it. Below the floor
        // nothing rolls back; a question about a checkpoint under it needs the whole graph.
        let all = candidates ?? closed.map { Array(stride(from: 1, through: $0.count, by: 1)) }
        let belowFloor = all.enumerated().contains { rank, indices in indices.contains { $0 < floor[rank] } }
        var records = self
        if belowFloor { records.floor = Array(repeating: 0, count: rankCount) }
        let graph = RollbackGraph(records, volatile: Array(repeating: nil, count: rankCount))
        return records.useless(candidates ?? closed.map { $0.indices.map { $0 + 1 } }, in: graph)
    }

    /// Raises the floor to the checkpoint-only line and says which of `candidates(line)` (per
    /// rank, indices at or after the line's entry) are useless: `checkpointOnlyLine`,
    /// `raiseFloor` and `uselessCheckpoints(among:)` on one rollback graph instead of two.
    /// The graph built above the old floor serves the second question too: what lies at or
    /// above the line is all that the line's search reached, a set closed under successors, so
    /// no cycle through a node there passes below it.
    package mutating func advanceFloor(uselessAmong candidates: ([Int]) -> [[Int]]) -> (line: [Int], useless: [[Int]]) {
        let graph = RollbackGraph(self, volatile: Array(repeating: nil, count: rankCount))
        let line = graph.reach(from: (0..<rankCount).map { ($0, closed[$0].count) })
        raiseFloor(to: line)
        let asked = candidates(line)
        precondition(asked.enumerated().allSatisfy { rank, indices in indices.allSatisfy { $0 >= floor[rank] } },
                     "candidates below the floor need uselessCheckpoints(among:)")
        return (line, useless(asked, in: graph))
    }

    /// Of `candidates` (per rank, indices at or above the floor), those whose checkpoint shares
    /// a strongly connected component of `graph` (built at or below this floor) with the
    /// interval before it: (rank, index) outside reaches (rank, index - 1).
    private func useless(_ candidates: [[Int]], in graph: RollbackGraph) -> [[Int]] {
        let component = graph.components()
        return (0..<rankCount).map { rank in
            candidates[rank].filter { index in
                guard index - 1 >= floor[rank], index <= graph.top[rank] else { return false }
                return component[graph.node(rank, index)] == component[graph.node(rank, index - 1)]
            }
        }
    }

    /// A sparse vector's dependencies by ascending sender.
    static func list(_ vector: PerPeer<Int>) -> [Dependency] {
        vector.used.compactMap { vector[$0] >= 0 ? Dependency(rank: $0, interval: vector[$0]) : nil }
    }

    /// A dependency list as a vector.
    static func vector(_ list: some Sequence<Dependency>, rankCount: Int) -> PerPeer<Int> {
        var vector = PerPeer(rankCount: rankCount, absent: -1)
        for dependency in list { vector[dependency.rank] = dependency.interval }
        return vector
    }
}

/// The rollback graph of `IntervalDependencies` above its floor: nodes (i, x) for
/// `floor[i] ≤ x ≤ top[i]`, edges (i, x) → (i, x + 1) implicit, dependency edges stored by
/// source node (compressed rows).
struct RollbackGraph {
    /// Per rank, the lowest and highest interval with a node.
    let floor: [Int]
    private(set) var top: [Int]
    /// Per rank, the node of its floor interval.
    private var base: [Int]
    /// Compressed rows: the dependents of node n are `targets[rowStart[n]..<rowStart[n + 1]]`.
    private var rowStart: [Int]
    private var targets: [Int]
    /// The number of nodes.
    var nodeCount: Int { rowStart.count - 1 }

    /// The graph of `records` above their floor; `volatile[i]`: the dependencies of rank i's
    /// current interval (nil: none, or lost).
    init(_ records: IntervalDependencies, volatile: [PerPeer<Int>?]) {
        let rankCount = records.rankCount
        floor = records.floor
        // Every interval recorded, each rank's current one and the one after it, and every
        // interval a record names.
        var top = records.closed.map { $0.count + 1 }
        var edges: [(source: (rank: Int, interval: Int), target: (rank: Int, interval: Int))] = []
        func add(_ list: some Sequence<IntervalDependencies.Dependency>, of rank: Int, interval: Int) {
            for dependency in list where dependency.interval >= records.floor[dependency.rank] {
                top[dependency.rank] = max(top[dependency.rank], dependency.interval)
                edges.append(((dependency.rank, dependency.interval), (rank, interval)))
            }
        }
        for rank in 0..<rankCount {
            let intervals = records.closed[rank]
            for interval in records.floor[rank]..<intervals.count { add(intervals[interval], of: rank, interval: interval) }
            if let current = volatile[rank] {
                add(IntervalDependencies.list(current), of: rank, interval: intervals.count)
            }
        }
        self.top = top
        var base: [Int] = []
        base.reserveCapacity(rankCount)
        var nodes = 0
        for rank in 0..<rankCount {
            base.append(nodes)
            nodes += top[rank] - floor[rank] + 1
        }
        self.base = base
        var counts = Array(repeating: 0, count: nodes + 1)
        for edge in edges { counts[base[edge.source.rank] + edge.source.interval - floor[edge.source.rank] + 1] += 1 }
        for index in 1..<counts.count { counts[index] += counts[index - 1] }
        rowStart = counts
        var fill = counts
        targets = Array(repeating: 0, count: edges.count)
        for edge in edges {
            let source = base[edge.source.rank] + edge.source.interval - floor[edge.source.rank]
            targets[fill[source]] = base[edge.target.rank] + edge.target.interval - floor[edge.target.rank]
            fill[source] += 1
        }
    }

    /// The node of `rank`'s interval (at or above its floor, at most its top).
    func node(_ rank: Int, _ interval: Int) -> Int { base[rank] + interval - floor[rank] }

    /// The successors of `node`: the next interval of its rank, then its dependents.
    private func forEachSuccessor(of node: Int, rankOf: [Int], _ body: (Int) -> Void) {
        let rank = rankOf[node]
        if node < base[rank] + top[rank] - floor[rank] { body(node + 1) }
        for index in rowStart[node]..<rowStart[node + 1] { body(targets[index]) }
    }

    /// The rank of every node.
    private func ranksOfNodes() -> [Int] {
        var rankOf = Array(repeating: 0, count: nodeCount)
        for rank in 0..<base.count {
            for node in base[rank]...(base[rank] + top[rank] - floor[rank]) { rankOf[node] = rank }
        }
        return rankOf
    }

    /// Per rank, the lowest interval outside once the given intervals are (at least the floor;
    /// `top + 1` or more where none is).
    func reach(from starts: [(rank: Int, interval: Int)]) -> [Int] {
        let rankOf = ranksOfNodes()
        var lowest = top.map { $0 + 1 }
        var seen = Array(repeating: false, count: nodeCount)
        var stack: [Int] = []
        for start in starts {
            guard start.interval <= top[start.rank] else {
                lowest[start.rank] = min(lowest[start.rank], start.interval)
                continue
            }
            let first = node(start.rank, max(start.interval, floor[start.rank]))
            if !seen[first] {
                seen[first] = true
                stack.append(first)
            }
        }
        while let next = stack.popLast() {
            let rank = rankOf[next]
            lowest[rank] = min(lowest[rank], next - base[rank] + floor[rank])
            forEachSuccessor(of: next, rankOf: rankOf) { successor in
                if !seen[successor] {
                    seen[successor] = true
                    stack.append(successor)
                }
            }
        }
        return lowest
    }

    /// Per node, its strongly connected component (Tarjan's algorithm, iterative: the path
    /// holds each node with the next of its edges to try, -1 being the edge to its next
    /// interval, then its dependents' rows).
    func components() -> [Int] {
        let rankOf = ranksOfNodes()
        let unvisited = -1
        var index = Array(repeating: unvisited, count: nodeCount)
        var low = Array(repeating: 0, count: nodeCount)
        var onStack = Array(repeating: false, count: nodeCount)
        var component = Array(repeating: -1, count: nodeCount)
        var stack: [Int] = []
        var counter = 0
        var components = 0
        var path: [(node: Int, edge: Int)] = []
        func visit(_ node: Int) {
            index[node] = counter
            low[node] = counter
            counter += 1
            stack.append(node)
            onStack[node] = true
            path.append((node, -1))
        }
        for root in 0..<nodeCount where index[root] == unvisited {
            visit(root)
            while let top = path.last {
                let node = top.node
                var successor: Int?
                if top.edge == -1 {
                    path[path.count - 1].edge = rowStart[node]
                    let rank = rankOf[node]
                    if node < base[rank] + self.top[rank] - floor[rank] { successor = node + 1 }
                } else if top.edge < rowStart[node + 1] {
                    path[path.count - 1].edge += 1
                    successor = targets[top.edge]
                } else {
                    path.removeLast()
                    if let parent = path.last { low[parent.node] = min(low[parent.node], low[node]) }
                    if low[node] == index[node] {
                        while let member = stack.popLast() {
                            onStack[member] = false
                            component[member] = components
                            if member == node { break }
                        }
                        components += 1
                    }
                    continue
                }
                guard let successor else { continue }
                if index[successor] == unvisited {
                    visit(successor)
                } else if onStack[successor] {
                    low[node] = min(low[node], index[successor])
                }
            }
        }
        return component
    }
}
