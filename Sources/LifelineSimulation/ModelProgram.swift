import LifelineCore

/// An SPMD program the simulator runs on every rank, whose result is known without the
/// runtime: a rank's state is a hash of what it delivered. Each step is a list of operations —
/// send the state to a rank, fold in a message from a rank (or from any rank), fold in the step
/// number — and a safe point comes before every step. `failureFree()` runs the program once,
/// in order, with no runtime; what it records per channel is the oracle every delivery of a
/// simulated run is checked against (by channel and sequence number), and its final states the
/// oracle of the end.
package struct ModelProgram: Sendable, Equatable {
    /// Who talks to whom.
    package enum Pattern: String, Sendable, CaseIterable {
        /// Halo exchange on a ring, one step behind: each step sends to the left and right
        /// neighbours and receives what they sent the step before (so every checkpoint line
        /// has messages in transit across it).
        case ring
        /// Halo exchange on a 2-D grid (rows × columns as square as the rank count allows,
        /// not periodic): up to four neighbours.
        case grid
        /// Half the ranks (the odd ones) compute alone and exchange nothing.
        case idle
        /// A task farm: rank 0 sends each worker a task and receives the results from any
        /// source, in whatever order they arrive (it adds them up, so its result does not
        /// depend on the order); each worker receives its task and answers.
        case farm
    }

    /// One operation of a step.
    package enum Operation: Sendable, Equatable {
        /// Send the state to a rank.
        case send(to: Int)
        /// Receive from a rank (nil: any rank) and fold the message into the state: mixed in
        /// (order matters), or added (the farm's master: order does not).
        case receive(from: Int?, adds: Bool)
        /// Mix the step number into the state.
        case mixStep
    }

    /// The pattern.
    package let pattern: Pattern
    /// The number of ranks.
    package let rankCount: Int
    /// The steps each rank runs.
    package let stepCount: Int
    /// Per rank, the ranks it exchanges with (halo patterns).
    package let neighbours: [[Int]]

    /// A program of `pattern` on `rankCount` ranks for `stepCount` steps.
    package init(pattern: Pattern, rankCount: Int, stepCount: Int) {
        self.pattern = pattern
        self.rankCount = rankCount
        self.stepCount = stepCount
        switch pattern {
        case .ring:
            neighbours = (0..<rankCount).map { rank in
                rankCount == 1 ? [] : Array(Set([(rank + rankCount - 1) % rankCount, (rank + 1) % rankCount])).sorted()
            }
        case .grid:
            var columns = 1
            while (columns + 1) * (columns + 1) <= rankCount { columns += 1 }
            neighbours = (0..<rankCount).map { rank in
                let (row, column) = (rank / columns, rank % columns)
                return [(row - 1, column), (row, column - 1), (row, column + 1), (row + 1, column)].compactMap { row, column in
                    let other = row * columns + column
                    return row >= 0 && column >= 0 && column < columns && other < rankCount ? other : nil
                }
            }
        case .idle:
            neighbours = (0..<rankCount).map { rank in
                guard rank % 2 == 0 else { return [] }
                return [rank - 2, rank + 2].filter { $0 >= 0 && $0 < rankCount }
            }
        case .farm:
            neighbours = (0..<rankCount).map { $0 == 0 ? Array(1..<rankCount) : [0] }
        }
    }

    /// The tag of every message (channels are FIFO, so steps stay in order).
    package static let tag: Int64 = 1

    /// The operations of `rank`'s step `step`.
    package func operations(of rank: Int, step: Int) -> [Operation] {
        var operations: [Operation] = []
        while let operation = operation(of: rank, step: step, at: operations.count) { operations.append(operation) }
        return operations
    }

    /// Operation `index` of `rank`'s step `step` (nil: the step has no more), without building
    /// the step's list: a simulated rank asks for one operation at a time, millions of times.
    package func operation(of rank: Int, step: Int, at index: Int) -> Operation? {
        if pattern == .farm, rank != 0 {
            return index < Self.workerStep.count ? Self.workerStep[index] : nil
        }
        let peers = neighbours[rank]
        // Sends to every neighbour, the step's own work, then a receive from each neighbour
        // (under `ring` one step behind: step k receives what the neighbours sent at step k - 1).
        if index < peers.count { return .send(to: peers[index]) }
        if index == peers.count { return .mixStep }
        let receive = index - peers.count - 1
        guard receive < peers.count else { return nil }
        switch pattern {
        case .ring: return step >= 1 ? .receive(from: peers[receive], adds: false) : nil
        case .grid, .idle: return .receive(from: peers[receive], adds: false)
        case .farm: return .receive(from: nil, adds: true)
        }
    }

    /// A farm worker's step: a task from the master, the work, the result back.
    private static let workerStep: [Operation] = [.receive(from: 0, adds: false), .mixStep, .send(to: 0)]

    /// A rank's state before its first step.
    package static func initialState(rank: Int) -> UInt64 {
        mix(0x6C69_6665_6C69_6E65, UInt64(rank))
    }

    /// The state after folding in a message of `value` from `source`.
    package static func fold(_ state: UInt64, _ value: UInt64, from source: Int, adds: Bool) -> UInt64 {
        adds ? state &+ mix(value, UInt64(source)) : mix(state, value)
    }

    /// What a message of a state says.
    package static func payload(_ state: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: state >> (8 * $0)) }
    }

    /// The state a message says (nil: not 8 bytes).
    package static func state(of payload: [UInt8]) -> UInt64? {
        guard payload.count == 8 else { return nil }
        return payload.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
    }

    /// The failure-free run: per rank, its state at each safe point (index k, before step k)
    /// and at the end (index K); per channel (`sender * rankCount + receiver`), the value of
    /// each message in sequence order.
    package struct Run: Sendable {
        /// Per rank, its state at each safe point and at the end.
        package var states: [[UInt64]]
        /// Per channel (`sender * rankCount + receiver`), each message's value in sequence order.
        package var channels: [Int: [UInt64]]
    }

    /// Runs the program once with no runtime: each step, the ranks take turns running their
    /// operations until each waits for a message; an any-source receive takes the lowest
    /// source that has one.
    package func failureFree() -> Run {
        var run = Run(states: (0..<rankCount).map { [Self.initialState(rank: $0)] }, channels: [:])
        var inbox: [Int: [UInt64]] = [:]  // per channel, sent and not yet received
        var current = (0..<rankCount).map { Self.initialState(rank: $0) }
        for step in 0..<stepCount {
            var position = Array(repeating: 0, count: rankCount)
            let operations = (0..<rankCount).map { self.operations(of: $0, step: step) }
            var progressed = true
            while progressed {
                progressed = false
                for rank in 0..<rankCount {
                    running: while position[rank] < operations[rank].count {
                        switch operations[rank][position[rank]] {
                        case .send(let destination):
                            let channel = rank * rankCount + destination
                            run.channels[channel, default: []].append(current[rank])
                            inbox[channel, default: []].append(current[rank])
                        case .mixStep:
                            current[rank] = Self.mix(current[rank], UInt64(step))
                        case .receive(let from, let adds):
                            let source = from ?? (0..<rankCount).first { !(inbox[$0 * rankCount + rank] ?? []).isEmpty }
                            guard let source, let value = inbox[source * rankCount + rank]?.first else { break running }
                            inbox[source * rankCount + rank]!.removeFirst()
                            current[rank] = Self.fold(current[rank], value, from: source, adds: adds)
                        }
                        position[rank] += 1
                        progressed = true
                    }
                }
            }
            precondition(position.indices.allSatisfy { position[$0] == operations[$0].count }, "\(pattern) deadlocks at step \(step)")
            for rank in 0..<rankCount { run.states[rank].append(current[rank]) }
        }
        return run
    }

    /// SplitMix64's finaliser over two words: a well-mixed hash.
    package static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a &+ 0x9E37_79B9_7F4A_7C15 &+ (b &* 0xBF58_476D_1CE4_E5B9)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
