import Testing
@testable import LifelineCore

/// The runtime's recovery-line planner (dependency vectors per checkpoint interval) against the
/// analysis of whole message histories (`RecoveryHistory`, itself checked by brute force).
struct IntervalDependenciesTests {
    /// The dependency records a runtime would keep for a history: per process, the vector of
    /// each closed interval and of the current one, and which processes failed.
    static func records(_ history: RecoveryHistory) -> (IntervalDependencies, volatile: [[Int]?], failed: Set<Int>) {
        let count = history.processes.count
        var dependencies = IntervalDependencies(rankCount: count)
        var sentIn: [String: (process: Int, interval: Int)] = [:]
        for (process, events) in history.processes.enumerated() {
            var interval = 0
            for event in events {
                if case .checkpoint = event { interval += 1 }
                if case .send(let name) = event { sentIn[name] = (process, interval) }
            }
        }
        var volatile: [[Int]?] = []
        var failed = Set<Int>()
        for (process, events) in history.processes.enumerated() {
            var vector = Array(repeating: -1, count: count)
            for event in events {
                switch event {
                case .checkpoint:
                    dependencies.recordCheckpoint(rank: process, dependencies: vector)
                    vector = Array(repeating: -1, count: count)
                case .receive(let name):
                    let sender = sentIn[name]!
                    vector[sender.process] = max(vector[sender.process], sender.interval)
                case .send:
                    break
                case .failure:
                    failed.insert(process)
                }
            }
            volatile.append(failed.contains(process) ? nil : vector)
        }
        return (dependencies, volatile, failed)
    }

    @Test func agreesWithTheHistoryAnalysisOnRandomHistories() throws {
        var rolledBack = 0
        for seed in UInt64(1)...5000 {
            var generator = SplitMix64(seed: seed)
            let history = try RecoveryHistory(RecoveryLineTests.randomHistory(&generator))
            let (dependencies, volatile, failed) = Self.records(history)
            let line = dependencies.latestLine(failed: failed, volatile: volatile)
            #expect(line == history.latestLine().checkpoints, "seed \(seed): \(history.processes)")
            rolledBack += line.compactMap { $0 }.count
            // Every rank failing at once: the line of checkpoints only.
            let all = RecoveryHistory.allFailed(history)
            #expect(dependencies.checkpointOnlyLine() == all.latestLine().checkpoints.map { $0! }, "seed \(seed): \(history.processes)")
        }
        #expect(rolledBack > 1000, "the histories hardly ever roll back (\(rolledBack))")
    }

    @Test func theTextbookCases() {
        // Domino (RecoveryLineTests.dominoEffect): each checkpoint of one rank follows a receipt
        // of a message the other sent after its own checkpoint.
        var domino = IntervalDependencies(rankCount: 2)
        domino.recordCheckpoint(rank: 0, dependencies: [-1, 1])
        domino.recordCheckpoint(rank: 1, dependencies: [0, -1])
        domino.recordCheckpoint(rank: 0, dependencies: [-1, 2])
        domino.recordCheckpoint(rank: 1, dependencies: [1, -1])
        #expect(domino.latestLine(failed: [0], volatile: [nil, [2, -1]]) == [0, 0])
        #expect(domino.checkpointOnlyLine() == [0, 0])

        // A partial rollback: rank 1's current interval depends on rank 0's lost interval 1.
        var partial = IntervalDependencies(rankCount: 3)
        partial.recordCheckpoint(rank: 0, dependencies: [-1, -1, -1])
        partial.recordCheckpoint(rank: 1, dependencies: [-1, -1, -1])
        #expect(partial.latestLine(failed: [0], volatile: [nil, [1, -1, -1], [-1, 0, -1]]) == [1, 1, nil])

        // A Z-cycle: rank 0's checkpoint 1 follows a receipt of b, sent in the interval in which
        // rank 1 received a, which rank 0 sent after checkpoint 1. Checkpoint 1 is useless.
        var zigzag = IntervalDependencies(rankCount: 2)
        zigzag.recordCheckpoint(rank: 0, dependencies: [-1, 0])
        zigzag.recordCheckpoint(rank: 1, dependencies: [1, -1])
        #expect(zigzag.uselessCheckpoints() == [[1], []])
        #expect(zigzag.latestLine(failed: [0], volatile: [nil, [-1, -1]]) == [0, 0])
    }

    @Test func uselessCheckpointsAreInNoConsistentLine() throws {
        var found = 0
        for seed in UInt64(1)...10000 {
            var generator = SplitMix64(seed: seed)
            let texts = RecoveryLineTests.randomHistory(&generator).map { $0.filter { $0 != "F" } }
            let history = try RecoveryHistory(texts)
            let (dependencies, _, _) = Self.records(history)
            let useless = dependencies.uselessCheckpoints()
            for (process, events) in history.processes.enumerated() {
                let positions = history.checkpointPositions(events)
                for index in 1..<positions.count {
                    // Is there a consistent cut through this checkpoint, the others at one of
                    // their checkpoints or their current state (a later checkpoint is never
                    // better for this one than the current state)?
                    var candidates = history.processes.map { history.checkpointPositions($0) + [$0.count] }
                    candidates[process] = [positions[index]]
                    let reachable = Self.anyConsistent(history, candidates)
                    // A checkpoint at the same position as a later one is the same state.
                    let sameAsLater = positions.dropFirst(index + 1).contains(positions[index])
                    // The planner does not know the ranks' current intervals, so it takes them to
                    // depend on nothing: it may miss a useless checkpoint, never call a useful
                    // one useless (that would delete a checkpoint a line needs).
                    if useless[process].contains(index) {
                        found += 1
                        #expect(!reachable || sameAsLater, "seed \(seed): P\(process) C\(index) called useless: \(texts)")
                    }
                }
            }
        }
        #expect(found > 10, "only \(found) useless checkpoints in the random histories")
    }

    /// Searching from the checkpoint-only line (the floor) finds what searching the whole
    /// history finds: the same lines, the same useless checkpoints above the floor.
    @Test func searchesAboveTheFloorAgreeWithWholeHistorySearches() throws {
        var raised = 0
        for seed in UInt64(1)...3000 {
            var generator = SplitMix64(seed: seed)
            let history = try RecoveryHistory(RecoveryLineTests.randomHistory(&generator))
            let (whole, volatile, failed) = Self.records(history)
            var floored = whole
            let floor = whole.checkpointOnlyLine()
            floored.raiseFloor(to: floor)
            if floor.contains(where: { $0 > 0 }) { raised += 1 }
            #expect(floored.latestLine(failed: failed, volatile: volatile) == whole.latestLine(failed: failed, volatile: volatile),
                    "seed \(seed)")
            #expect(floored.checkpointOnlyLine() == floor, "seed \(seed)")
            let above = (0..<whole.rankCount).map { rank in
                Array(stride(from: floor[rank], through: whole.newestCheckpoint(rank), by: 1)).filter { $0 > 0 }
            }
            #expect(floored.uselessCheckpoints(among: above) == whole.uselessCheckpoints(among: above), "seed \(seed)")
            #expect(floored.uselessCheckpoints() == whole.uselessCheckpoints(), "seed \(seed): below the floor too")
        }
        #expect(raised > 300, "the floor hardly ever rises (\(raised))")
    }

    private static func anyConsistent(_ history: RecoveryHistory, _ candidates: [[Int]]) -> Bool {
        var cut = candidates.map { $0[0] }
        func visit(_ process: Int) -> Bool {
            if process == candidates.count { return history.isConsistent(cut) }
            for position in candidates[process] {
                cut[process] = position
                if visit(process + 1) { return true }
            }
            return false
        }
        return visit(0)
    }
}

extension RecoveryHistory {
    /// The same history with every process failing at its end.
    static func allFailed(_ history: RecoveryHistory) -> RecoveryHistory {
        let texts = history.processes.map { events in
            events.map { event -> String in
                switch event {
                case .checkpoint: "C"
                case .send(let name): "S:" + name
                case .receive(let name): "R:" + name
                case .failure: "F"
                }
            } .filter { $0 != "F" } + ["F"]
        }
        return try! RecoveryHistory(texts)
    }
}
