import Testing
@testable import LifelineCore

/// The recovery-line analysis: the textbook cases, malformed histories, and a brute-force
/// cross-check over thousands of seeded random histories.
struct RecoveryLineTests {
    @Test func theIssuesExample() throws {
        let history = try RecoveryHistory([
            ["S:u", "C", "S:v", "F"],
            ["R:u", "C", "R:v", "C", "S:w"],
            ["R:y", "R:w"],
            ["S:y"],
        ])
        #expect(history.latestLine() == RecoveryLine(checkpoints: [1, 1, 0, nil], inTransit: ["y"]))
    }

    @Test func dominoEffect() throws {
        // Each checkpoint is followed by a receipt of a message sent after the other's
        // checkpoint: a failure rolls both back to the start.
        let history = try RecoveryHistory([
            ["S:a1", "R:b1", "C", "S:a2", "R:b2", "C", "S:a3", "F"],
            ["R:a1", "C", "S:b1", "R:a2", "C", "S:b2", "R:a3"],
        ])
        let line = history.latestLine()
        #expect(line.checkpoints == [0, 0])
        #expect(line.isDomino)
    }

    @Test func partialRollbackWithAMessageInTransit() throws {
        let history = try RecoveryHistory([
            ["S:m", "C", "S:k", "F"],
            ["S:n", "C", "R:m", "R:k"],
            ["R:n"],
        ])
        let line = history.latestLine()
        #expect(line.checkpoints == [1, 1, nil])
        #expect(line.inTransit == ["m"])
        #expect(!line.isDomino)
    }

    @Test func zCycleMakesACheckpointUseless() throws {
        // a is sent after P0's checkpoint 1 and received by P1 in the interval in which P1 sent b,
        // which P0 received before checkpoint 1: a Z-cycle. No consistent line contains P0's
        // checkpoint 1, so a failure of P0 goes past it, to the start.
        let history = try RecoveryHistory([
            ["R:b", "C", "S:a", "F"],
            ["S:b", "R:a", "C"],
        ])
        #expect(!history.isConsistent([1, 2]) && !history.isConsistent([1, 3]) && !history.isConsistent([1, 0]))
        #expect(history.latestLine().checkpoints == [0, 0])
    }

    @Test func malformedHistoriesNameTheProcessAndEvent() {
        let cases: [([[String]], Int, Int, String)] = [
            ([["C", "X"]], 0, 1, "unknown event"),
            ([["R:m"], []], 0, 0, "never sent"),
            ([["S:m", "S:m"]], 0, 1, "sent twice"),
            ([["S:m"], ["R:m", "R:m"]], 1, 1, "received twice"),
            ([["F", "C"]], 0, 0, "last"),
            ([["R:a", "S:b"], ["R:b", "S:a"]], 0, 0, "causally impossible"),
        ]
        for (texts, process, index, reason) in cases {
            do {
                _ = try RecoveryHistory(texts)
                Issue.record("\(texts) was accepted")
            } catch {
                #expect(error.process == process && error.index == index, "\(texts): \(error)")
                #expect(error.reason.contains(reason), "\(texts): \(error)")
            }
        }
    }

    @Test func agreesWithBruteForceOnRandomHistories() throws {
        for seed in UInt64(1)...3000 {
            var generator = SplitMix64(seed: seed)
            let history = try RecoveryHistory(Self.randomHistory(&generator))
            let candidates = history.processes.map { events -> [Int] in
                let positions = history.checkpointPositions(events)
                return events.last == .failure ? positions : positions + [events.count]
            }
            var best = candidates.map { $0[0] }
            var consistentCount = 0
            var cut = best
            func visit(_ process: Int) {
                if process == candidates.count {
                    if history.isConsistent(cut) {
                        consistentCount += 1
                        best = zip(best, cut).map { max($0, $1) }
                    }
                    return
                }
                for position in candidates[process] {
                    cut[process] = position
                    visit(process + 1)
                }
            }
            visit(0)
            #expect(history.isConsistent(best), "seed \(seed): the maximum of consistent cuts is not consistent")
            #expect(history.latestLine() == history.line(for: best), "seed \(seed): \(history.processes)")
            #expect(consistentCount > 0, "seed \(seed)")
        }
    }

    /// A causally possible history: processes act in a random interleaving; a receipt takes a
    /// message already sent to that process; some processes fail at the end.
    static func randomHistory(_ generator: inout SplitMix64) -> [[String]] {
        let processCount = Int.random(in: 2...4, using: &generator)
        var events = Array(repeating: [String](), count: processCount)
        var pending = Array(repeating: [String](), count: processCount)
        var next = 0
        for _ in 0..<Int.random(in: 3...18, using: &generator) {
            let process = Int.random(in: 0..<processCount, using: &generator)
            switch Int.random(in: 0..<3, using: &generator) {
            case 0:
                events[process].append("C")
            case 1:
                let destination = Int.random(in: 0..<processCount, using: &generator)
                guard destination != process else { continue }
                let name = "m\(next)"
                next += 1
                events[process].append("S:\(name)")
                pending[destination].append(name)
            default:
                guard !pending[process].isEmpty else { continue }
                let name = pending[process].remove(at: Int.random(in: 0..<pending[process].count, using: &generator))
                events[process].append("R:\(name)")
            }
        }
        for process in 0..<processCount where Int.random(in: 0..<3, using: &generator) == 0 {
            events[process].append("F")
        }
        return events
    }
}
