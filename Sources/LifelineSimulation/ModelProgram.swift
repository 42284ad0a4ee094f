import LifelineCore

/// An SPMD program the simulator runs on every rank, whose state is a hash of what it
/// delivered, so the failure-free result is known without running it: step k of rank r sends
/// its state to each neighbour, receives each neighbour's state of step k − lag in a fixed
/// order, and mixes them into its state. A message therefore carries exactly what the sender's
/// failure-free state at its step was, and the simulator checks each delivery against that.
/// With a lag of one (the ring), every checkpoint line has messages in transit across it.
package struct ModelProgram: Sendable, Equatable {
    /// Who talks to whom.
    package enum Pattern: String, Sendable, CaseIterable {
        /// Halo exchange on a ring, one step behind: each step sends to the left and right
        /// neighbours and receives what they sent the step before.
        case ring
        /// Halo exchange on a 2-D grid (rows × columns as square as the rank count allows,
        /// not periodic): up to four neighbours.
        case grid
        /// Half the ranks (the odd ones) compute alone and exchange nothing.
        case idle
    }

    /// The pattern.
    package let pattern: Pattern
    /// The number of ranks.
    package let rankCount: Int
    /// The steps each rank runs.
    package let stepCount: Int
    /// Per rank, the ranks it exchanges with, in the order it receives from them.
    package let neighbours: [[Int]]
    /// How many steps behind a rank receives what its neighbours send.
    package let lag: Int

    /// A program of `pattern` on `rankCount` ranks for `stepCount` steps.
    package init(pattern: Pattern, rankCount: Int, stepCount: Int) {
        self.pattern = pattern
        self.rankCount = rankCount
        self.stepCount = stepCount
        self.lag = pattern == .ring ? 1 : 0
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
        }
    }

    /// The tag of every message (channels are FIFO, so steps stay in order).
    package static let tag: Int64 = 1

    /// A rank's state before its first step.
    package static func initialState(rank: Int) -> UInt64 {
        mix(0x6C69_6665_6C69_6E65, UInt64(rank))
    }

    /// The state after a step that delivered `received` (in receive order).
    package static func next(_ state: UInt64, step: Int, received: [UInt64]) -> UInt64 {
        received.reduce(mix(state, UInt64(step))) { mix($0, $1) }
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

    /// The ranks `rank` receives from at `step` (none while the lag has not passed).
    package func sources(of rank: Int, step: Int) -> [Int] {
        step >= lag ? neighbours[rank] : []
    }

    /// Per rank, its failure-free state before each step (index k) and at the end (index K).
    package func failureFree() -> [[UInt64]] {
        var states = (0..<rankCount).map { [Self.initialState(rank: $0)] }
        for step in 0..<stepCount {
            for rank in 0..<rankCount {
                let received = sources(of: rank, step: step).map { states[$0][step - lag] }
                states[rank].append(Self.next(states[rank][step], step: step, received: received))
            }
        }
        return states
    }

    /// SplitMix64's finaliser over two words: a well-mixed hash.
    package static func mix(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var z = a &+ 0x9E37_79B9_7F4A_7C15 &+ (b &* 0xBF58_476D_1CE4_E5B9)
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
