/// The analysis behind independent checkpointing: given what each process did (checkpoints,
/// sends, receipts, a failure), find the latest consistent recovery line — one checkpoint per
/// process, or its current state, with no orphan message — and the messages in transit across it.
///
/// History: per process, events in order; `C` a checkpoint (numbered 1, 2, … after the implicit
/// checkpoint 0 at the start), `S:NAME` a send, `R:NAME` its receipt, `F` (last only) a failure
/// that loses the volatile state. A line cuts each process after some prefix of its events; it is
/// consistent when no receipt inside the cut has its send outside. Consistent cuts are closed
/// under componentwise maximum, so the latest one exists; it is found by rollback propagation —
/// start from every process's current state (a failed one from its last checkpoint), and while
/// some receipt inside the line has its send outside, roll the receiver back to its last
/// checkpoint before that receipt. This is the marking of the rollback-dependency graph from the
/// failed processes' volatile states.
package struct RecoveryHistory: Sendable, Equatable {
    /// One event of a process.
    package enum Event: Sendable, Equatable {
        case checkpoint
        case send(String)
        case receive(String)
        case failure
    }

    /// A history that is not well formed, naming the process and event index (from 0).
    package struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        package var process: Int
        package var index: Int
        package var reason: String
        package var description: String { "process \(process), event \(index): \(reason)" }
    }

    /// Events per process.
    package let processes: [[Event]]

    /// Parses and checks a history given as event strings per process.
    package init(_ texts: [[String]]) throws(Malformed) {
        var processes: [[Event]] = []
        var sends: [String: (Int, Int)] = [:]
        var receives: [String: (Int, Int)] = [:]
        for (process, events) in texts.enumerated() {
            var parsed: [Event] = []
            for (index, text) in events.enumerated() {
                let event: Event
                if text == "C" {
                    event = .checkpoint
                } else if text == "F" {
                    guard index == events.count - 1 else { throw Malformed(process: process, index: index, reason: "F must be the last event") }
                    event = .failure
                } else if text.hasPrefix("S:"), text.count > 2 {
                    let name = String(text.dropFirst(2))
                    guard sends[name] == nil else { throw Malformed(process: process, index: index, reason: "message \(name) is sent twice") }
                    sends[name] = (process, index)
                    event = .send(name)
                } else if text.hasPrefix("R:"), text.count > 2 {
                    let name = String(text.dropFirst(2))
                    guard receives[name] == nil else { throw Malformed(process: process, index: index, reason: "message \(name) is received twice") }
                    receives[name] = (process, index)
                    event = .receive(name)
                } else {
                    throw Malformed(process: process, index: index, reason: "unknown event '\(text)' (expected C, S:NAME, R:NAME or F)")
                }
                parsed.append(event)
            }
            processes.append(parsed)
        }
        for (name, place) in receives.sorted(by: { $0.value < $1.value }) where sends[name] == nil {
            throw Malformed(process: place.0, index: place.1, reason: "message \(name) is received but never sent")
        }
        self.processes = processes
        try checkCausality(sends: sends, receives: receives)
    }

    /// Refuses a history whose happened-before relation has a cycle (a receipt that must come
    /// before its own send).
    private func checkCausality(sends: [String: (Int, Int)], receives: [String: (Int, Int)]) throws(Malformed) {
        var position = Array(repeating: 0, count: processes.count)
        var remaining = processes.reduce(0) { $0 + $1.count }
        var done = Set<String>()
        while remaining > 0 {
            var progressed = false
            for process in processes.indices {
                while position[process] < processes[process].count {
                    if case .receive(let name) = processes[process][position[process]], !done.contains(name) { break }
                    if case .send(let name) = processes[process][position[process]] { done.insert(name) }
                    position[process] += 1
                    remaining -= 1
                    progressed = true
                }
            }
            if !progressed {
                let stuck = processes.indices.first { position[$0] < processes[$0].count }!
                throw Malformed(process: stuck, index: position[stuck], reason: "the history is causally impossible: this receipt waits on a send that waits on it")
            }
        }
    }

    /// The latest consistent recovery line.
    package func latestLine() -> RecoveryLine {
        var cut = processes.map { events in
            events.last == .failure ? checkpointPositions(events).last! : events.count
        }
        var changed = true
        while changed {
            changed = false
            let sendIndex = sendIndices()
            for (process, events) in processes.enumerated() {
                for index in 0..<cut[process] {
                    guard case .receive(let name) = events[index], let (sender, at) = sendIndex[name], at >= cut[sender] else { continue }
                    cut[process] = checkpointPositions(events).last { $0 <= index }!
                    changed = true
                    break
                }
            }
        }
        return line(for: cut)
    }

    /// The line described by a cut (events included per process).
    package func line(for cut: [Int]) -> RecoveryLine {
        let sendIndex = sendIndices()
        var receiveIndex: [String: (Int, Int)] = [:]
        for (process, events) in processes.enumerated() {
            for (index, event) in events.enumerated() { if case .receive(let name) = event { receiveIndex[name] = (process, index) } }
        }
        let entries: [Int?] = processes.indices.map { process in
            let events = processes[process]
            let current = events.last == .failure ? -1 : events.count
            if cut[process] == current { return nil }
            return checkpointPositions(events).lastIndex(of: cut[process])  // the newest of equal states
        }
        let inTransit = sendIndex.filter { name, place in
            guard place.1 < cut[place.0] else { return false }
            guard let received = receiveIndex[name] else { return true }
            return received.1 >= cut[received.0]
        }.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return RecoveryLine(checkpoints: entries, inTransit: inTransit)
    }

    /// Whether a cut has no orphan (a receipt inside whose send is outside).
    package func isConsistent(_ cut: [Int]) -> Bool {
        let sendIndex = sendIndices()
        for (process, events) in processes.enumerated() {
            for index in 0..<cut[process] {
                if case .receive(let name) = events[index], let (sender, at) = sendIndex[name], at >= cut[sender] { return false }
            }
        }
        return true
    }

    /// Event counts at which each checkpoint of a process sits: 0 for the implicit one, then
    /// the index of each `C` (the events before it are inside).
    package func checkpointPositions(_ events: [Event]) -> [Int] {
        [0] + events.indices.filter { events[$0] == .checkpoint }
    }

    private func sendIndices() -> [String: (Int, Int)] {
        var result: [String: (Int, Int)] = [:]
        for (process, events) in processes.enumerated() {
            for (index, event) in events.enumerated() { if case .send(let name) = event { result[name] = (process, index) } }
        }
        return result
    }
}

/// A recovery line: per process, the checkpoint to restore (nil: it keeps its current state),
/// and the messages whose send is inside the line and whose receipt is not.
package struct RecoveryLine: Sendable, Equatable {
    /// Per process, the checkpoint number (0 the start), or nil to keep the current state.
    package var checkpoints: [Int?]
    /// The in-transit messages, in byte order of their names.
    package var inTransit: [String]

    /// Every process that rolls back ends at checkpoint 0 (and at least one rolls back): the
    /// domino effect took the line back to the start.
    package var isDomino: Bool {
        let rolledBack = checkpoints.compactMap { $0 }
        return !rolledBack.isEmpty && rolledBack.allSatisfy { $0 == 0 }
    }
}
