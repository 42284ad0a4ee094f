@testable import LifelineCore

/// The SPMD program a `JobSimulation` runs, fixed by the seed before the run: at step s a rank
/// passes safe point s, sends to its destinations of step s (tag s), then receives exactly the
/// messages sent to it at step s, in any order.
///
/// Each rank has state, an accumulator: passing safe point s mixes s into it (a change without a
/// receive), every message carries a payload computed from the sender's accumulator and
/// (step, destination, index), and every delivery adds a hash of the payload (commutative, so
/// any delivery order within a step gives the same state). `init` also computes the
/// failure-free execution directly, the oracle the simulation is checked against.
struct SimulatedProgram {
    /// Who talks to whom.
    enum Pattern: String, CaseIterable {
        /// Every rank sends to both ring neighbours at every step (twice the same rank when N = 2).
        case ring
        /// Ranks active with a per-rank probability in {0, 0.1, 0.5, 1}, idle through random
        /// windows, some sending without receiving; each active rank sends 0…3 messages to
        /// other ranks that receive at the step.
        case sparse
        /// Rank 0 hands work to the workers that receive at the step; the workers active at the
        /// step report to rank 0.
        case farm
    }

    /// A message of the failure-free execution.
    struct Message: Equatable {
        /// The step it is sent in.
        var tag: Int64
        /// Its bytes.
        var payload: [UInt8]
    }

    /// The number of ranks.
    let rankCount: Int
    /// The number of steps (safe points 0..<stepCount).
    let stepCount: Int
    /// The pattern drawn.
    let pattern: Pattern
    /// `destinations[step][rank]`: where `rank` sends at `step`, in order (never itself; a
    /// destination listed twice gets two messages).
    let destinations: [[[Int]]]
    /// `expected[step][rank][source]`: how many messages `rank` receives from `source` at `step`.
    let expected: [[[Int]]]
    /// The oracle: `channels[source][destination]` lists the channel's messages by sequence number.
    let channels: [[[Message]]]
    /// The oracle: every rank's accumulator after the last step.
    let finalAccumulators: [UInt64]

    /// Draws a pattern of `stepCount` steps for `rankCount` ranks and runs it without failures.
    init(rankCount: Int, stepCount: Int, using generator: inout SplitMix64) {
        precondition(rankCount >= 2 && stepCount >= 1)
        self.rankCount = rankCount
        self.stepCount = stepCount
        let drawn = Int.random(in: 0..<4, using: &generator)
        pattern = drawn == 0 ? .ring : drawn == 3 ? .farm : .sparse
        switch pattern {
        case .ring:
            let ring = (0..<rankCount).map { [($0 + 1) % rankCount, ($0 + rankCount - 1) % rankCount] }
            destinations = Array(repeating: ring, count: stepCount)
        case .sparse:
            destinations = Self.sparseDestinations(rankCount: rankCount, stepCount: stepCount, using: &generator)
        case .farm:
            destinations = Self.farmDestinations(rankCount: rankCount, stepCount: stepCount, using: &generator)
        }
        var expected = Array(repeating: Array(repeating: Array(repeating: 0, count: rankCount), count: rankCount), count: stepCount)
        for step in 0..<stepCount {
            for source in 0..<rankCount {
                for destination in destinations[step][source] {
                    precondition(destination != source && (0..<rankCount).contains(destination))
                    expected[step][destination][source] += 1
                }
            }
        }
        self.expected = expected
        (channels, finalAccumulators) = Self.execute(destinations, rankCount: rankCount)
    }

    // MARK: The program's state

    /// A message the program took ahead of its step (eager receives): held in the program's
    /// state until the step whose tag it carries.
    struct Stashed: Equatable {
        var source: Int
        var tag: Int64
        var payload: [UInt8]
    }

    /// A rank's program state: what a capture saves and a restore brings back.
    struct State: Equatable {
        /// The accumulator.
        var accumulator: UInt64
        /// Messages delivered ahead of their step, in delivery order.
        var stash: [Stashed] = []

        /// Appends the state to a snapshot.
        func encode(into writer: inout ByteWriter) {
            writer.write(accumulator)
            writer.write(UInt32(stash.count))
            for message in stash {
                writer.write(UInt32(message.source))
                writer.write(message.tag)
                writer.writeCounted(message.payload)
            }
        }

        /// Reads a state written by `encode(into:)`.
        static func decode(from reader: inout ByteReader) throws(WireError) -> State {
            var state = State(accumulator: try reader.read(UInt64.self))
            let count = Int(try reader.read(UInt32.self))
            guard count <= reader.remainingCount / 20 else { throw WireError("state claims \(count) stashed messages") }
            for _ in 0..<count {
                let source = Int(try reader.read(UInt32.self))
                state.stash.append(Stashed(source: source, tag: try reader.read(Int64.self), payload: try reader.readCounted()))
            }
            return state
        }
    }

    /// A rank's accumulator before its first safe point.
    static func initialAccumulator(rank: Int) -> UInt64 { scramble(0xA5A5_0000 &+ UInt64(rank)) }

    /// Passing safe point `step`: local computation.
    static func mix(_ accumulator: UInt64, step: Int) -> UInt64 {
        scramble(accumulator ^ (UInt64(step) &* 0x9E37_79B9_7F4A_7C15))
    }

    /// The payload of the `index`-th message a rank sends at `step`, to `destination`: 8 to 15 bytes.
    static func payload(accumulator: UInt64, step: Int, destination: Int, index: Int) -> [UInt8] {
        let bits = scramble(accumulator ^ scramble(UInt64(step) << 32 | UInt64(destination) << 16 | UInt64(index)))
        var bytes = (0..<8).map { UInt8(truncatingIfNeeded: bits >> (8 * UInt64($0))) }
        for extra in 0..<Int(bits % 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(extra))) }
        return bytes
    }

    /// A delivery: adds a hash of the payload (commutative within a step).
    static func absorb(_ accumulator: UInt64, payload: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for byte in payload { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return accumulator &+ scramble(hash)
    }

    /// SplitMix64's finaliser.
    private static func scramble(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    // MARK: Patterns

    /// Which ranks act at each step: per-rank activity probabilities from {0, 0.1, 0.5, 1} and
    /// 0…2 idle windows of up to half the run each (neither sending nor receiving), and ranks
    /// that send without receiving: a third are producers (never receive) and the others have
    /// 0…1 deaf windows (send, receive nothing). So some ranks deliver nothing for long
    /// stretches, some of them while sending: what minimal mode keeps and re-execution regenerates.
    private struct Activity {
        /// `sends[step][rank]`: the rank may send at the step.
        var sends: [[Bool]]
        /// `receives[step][rank]`: the rank may be sent to at the step.
        var receives: [[Bool]]

        init(rankCount: Int, stepCount: Int, using generator: inout SplitMix64) {
            sends = Array(repeating: Array(repeating: false, count: rankCount), count: stepCount)
            receives = sends
            for rank in 0..<rankCount {
                let probability = [0, 0.1, 0.5, 1.0][Int.random(in: 0..<4, using: &generator)]
                let producer = Int.random(in: 0..<3, using: &generator) == 0
                let idle = Self.windows(Int.random(in: 0...2, using: &generator), stepCount: stepCount, using: &generator)
                let deaf = Self.windows(Int.random(in: 0...1, using: &generator), stepCount: stepCount, using: &generator)
                for step in 0..<stepCount {
                    let active = !idle[step] && Double.random(in: 0..<1, using: &generator) < probability
                    sends[step][rank] = active
                    receives[step][rank] = active && !producer && !deaf[step]
                }
            }
        }

        /// `count` random windows of up to half the run each, as a mask over the steps.
        private static func windows(_ count: Int, stepCount: Int, using generator: inout SplitMix64) -> [Bool] {
            var mask = Array(repeating: false, count: stepCount)
            for _ in 0..<count {
                let start = Int.random(in: 0..<stepCount, using: &generator)
                let length = Int.random(in: 1...max(1, stepCount / 2), using: &generator)
                for step in start..<min(stepCount, start + length) { mask[step] = true }
            }
            return mask
        }
    }

    private static func sparseDestinations(rankCount: Int, stepCount: Int, using generator: inout SplitMix64) -> [[[Int]]] {
        let activity = Activity(rankCount: rankCount, stepCount: stepCount, using: &generator)
        return (0..<stepCount).map { step in
            (0..<rankCount).map { rank in
                let peers = (0..<rankCount).filter { $0 != rank && activity.receives[step][$0] }
                guard activity.sends[step][rank], !peers.isEmpty else { return [] }
                return (0..<Int.random(in: 0...3, using: &generator)).map { _ in
                    peers[Int.random(in: 0..<peers.count, using: &generator)]
                }
            }
        }
    }

    /// Rank 0 sends to every worker that receives at the step; every worker that sends at the
    /// step answers rank 0 (rank 0 itself receives throughout).
    private static func farmDestinations(rankCount: Int, stepCount: Int, using generator: inout SplitMix64) -> [[[Int]]] {
        let activity = Activity(rankCount: rankCount, stepCount: stepCount, using: &generator)
        return (0..<stepCount).map { step in
            let workers = (1..<rankCount).filter { activity.receives[step][$0] }
            return (0..<rankCount).map { rank in rank == 0 ? workers : activity.sends[step][rank] ? [0] : [] }
        }
    }

    // MARK: The oracle

    /// Runs the program sequentially, without a runtime: the failure-free execution.
    private static func execute(_ destinations: [[[Int]]], rankCount: Int) -> (channels: [[[Message]]], accumulators: [UInt64]) {
        var accumulators = (0..<rankCount).map { initialAccumulator(rank: $0) }
        var channels = Array(repeating: Array(repeating: [Message](), count: rankCount), count: rankCount)
        for (step, sends) in destinations.enumerated() {
            for rank in 0..<rankCount { accumulators[rank] = mix(accumulators[rank], step: step) }
            var inboxes = Array(repeating: [[UInt8]](), count: rankCount)
            for source in 0..<rankCount {
                for (index, destination) in sends[source].enumerated() {
                    let bytes = payload(accumulator: accumulators[source], step: step, destination: destination, index: index)
                    channels[source][destination].append(Message(tag: Int64(step), payload: bytes))
                    inboxes[destination].append(bytes)
                }
            }
            for rank in 0..<rankCount {
                for bytes in inboxes[rank] { accumulators[rank] = absorb(accumulators[rank], payload: bytes) }
            }
        }
        return (channels, accumulators)
    }
}
