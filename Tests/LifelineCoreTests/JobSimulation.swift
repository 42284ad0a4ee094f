@testable import LifelineCore

/// One simulated job: a coordinator, N participants running a `SimulatedProgram`, links with
/// random delays, and snapshot writes that take random time. See `CoordinatedJobSimulationTests`
/// for what it checks. This file holds the state and the event loop; the ranks' program side is
/// in `JobSimulation+Rank.swift`, the protocol side (control messages, lines, rollback) in
/// `JobSimulation+Protocol.swift`.
struct JobSimulation {
    /// What a run injects, and which variant it runs.
    struct Options: CustomStringConvertible {
        /// Kill random ranks (global rollback to the last committed line).
        var rankFailures: Bool
        /// Fail random snapshot and manifest writes.
        var storageFailures: Bool
        /// The variant to run; nil draws it from the seed among `roundVariants`. The seed draws it
        /// either way, so a forced variant leaves the rest of the schedule unchanged.
        var variant: CheckpointVariant? = nil
        var description: String {
            "rankFailures: \(rankFailures), storageFailures: \(storageFailures), variant: \(variant?.rawValue ?? "drawn")"
        }
    }

    /// What a rank saved at a capture: the snapshot to restore it from, and what the checks
    /// compare with.
    struct Capture {
        /// The safe point captured at; -1 for the initial state (before the first safe point).
        var step: Int
        /// The snapshot's bytes: the ledger, then the program state.
        var snapshot: [UInt8]
        /// The ledger at the capture.
        var ledger: MessageLedger
        /// The sequence numbers delivered from each source, in delivery order, at the capture.
        var deliveryLog: [[UInt64]]
        /// The program's state at the capture.
        var state: SimulatedProgram.State
        /// The participant's `changesSinceCheckpoint` at the capture (what its ACK carries).
        var changes: UInt64

        /// The deliveries the rank had made at the capture.
        var deliveryCount: Int { deliveryLog.reduce(0) { $0 + $1.count } }
    }

    /// A rank's entry in a committed line: its capture of the line's round (a member), or,
    /// when it kept (minimal), its entry in the line before, down to the initial state.
    struct LineEntry {
        /// The round whose capture this is (`.start`: the initial state).
        var round: Epoch
        /// What the rank restarts from.
        var capture: Capture
    }

    /// A rank that kept its entry at a round's safe point (minimal).
    struct KeptPoint {
        /// The safe point where it kept.
        var step: Int
        /// Its next sequence number per destination there: it had sent `0..<sent[d]` to d.
        var sent: [SequenceNumber]
    }

    /// Where the program on a rank is.
    enum Phase: Equatable {
        /// Arrived at safe point `step` (not yet passed).
        case atSafePoint(Int)
        /// Passed safe point `step`; must send its step messages.
        case sending(Int)
        /// Sent step `step`'s messages; `missing[source]` messages of that step still to receive.
        case receiving(Int, missing: [Int])
        /// At the final barrier.
        case finished
    }

    /// Something that happens at a moment of virtual time.
    enum Event {
        case rankWakes(Int)
        case dataArrives(destination: Int, header: DataHeader, payload: [UInt8])
        case controlToRank(Int, ControlMessage)
        case controlToCoordinator(Int, ControlMessage)
        case snapshotWritten(Int, Epoch, succeeded: Bool)
        case tick
        case rankFails(Int)
    }

    /// An event in the queue.
    struct Scheduled {
        var time: Double
        var order: Int
        /// Rank-side events die with their incarnation (a global rollback); ticks and failures live on.
        var generation: Int?
        var event: Event
    }

    /// A broken invariant, described.
    struct Violation: Error, CustomStringConvertible { var description: String }

    /// The virtual time a step computes between its sends and its receives: long against most
    /// link delays, so that idle ranks (which wait for nothing) do not reach the end, where no
    /// round can start, long before the others.
    static let stepComputeSeconds = 0.005...0.05

    /// The variants that run in coordinated rounds, which this simulation drives.
    static let roundVariants: [CheckpointVariant] = [.coordinated, .blocking, .minimal]

    let seed: UInt64
    let options: Options
    var generator: SplitMix64
    let rankCount: Int
    let stepCount: Int
    let variant: CheckpointVariant
    /// The program every rank runs, with its failure-free execution.
    let program: SimulatedProgram
    /// Every rank's state before its first safe point, as a capture at step -1.
    let initialCaptures: [Capture]
    var now = 0.0
    var coordinator: CheckpointCoordinator
    var participants: [CheckpointParticipant]
    var ledgers: [MessageLedger]
    /// Half the runs take messages of later steps whenever they wait (and stash them until
    /// their step): a receive that, without the epoch hold, would deliver a message its sender
    /// sent after its own safe point S to a rank before S.
    let receivesEagerly: Bool
    /// The program's state on each rank.
    var states: [SimulatedProgram.State]
    var phases: [Phase]
    var incarnation: UInt32 = 0
    var generation = 0
    /// Arrived, not yet delivered, per receiver.
    var arrived: [[(header: DataHeader, payload: [UInt8])]]
    /// Sends held by the blocking variant, per sender, in order.
    var held: [[(destination: Int, header: DataHeader, payload: [UInt8])]]
    /// The sequence numbers each receiver delivered from each source, in delivery order.
    var deliveryLog: [[[UInt64]]]
    var wakePending: [Bool]
    /// The latest arrival time scheduled on each link, to keep links FIFO.
    var dataLinkBusyUntil: [[Double]]
    var toRankBusyUntil: [Double]
    var toCoordinatorBusyUntil: [Double]
    var queue: [Scheduled] = []
    var order = 0
    /// Every capture, by round and rank (aborted rounds included).
    var captures: [Epoch: [Int: Capture]] = [:]
    /// Every keep, by round and rank (aborted rounds included).
    var kept: [Epoch: [Int: KeptPoint]] = [:]
    /// The committed lines: each rank's entry, indexed by rank.
    var lines: [Epoch: [LineEntry]] = [:]
    var aborted: Set<Epoch> = []
    var commitCount = 0
    var rollbackCount = 0
    /// Rollbacks to a line in which some rank's entry is older than the line (kept).
    var keptRollbackCount = 0
    var captureCount = 0
    var keepCount = 0
    /// Entries of committed lines that were kept rather than captured.
    var keptEntryCount = 0
    /// Channels of committed lines on which the receiver's entry delivered messages sent after
    /// the (kept) sender's entry: messages only re-execution of the sender regenerates.
    var regeneratedChannelCount = 0
    /// The committed lines with such channels.
    var regeneratingLines: Set<Epoch> = []
    /// Rollbacks to such a line: the final state is right only if re-execution regenerates.
    var regeneratingRollbackCount = 0
    /// Messages delivered ahead of their step (eager receives).
    var eagerDeliveryCount = 0
    /// Times a message the program would have taken was withheld by the epoch hold.
    var heldByEpochCount = 0
    var failuresLeft: Int
    var jobFinished = false
    var releasedRanks = 0
    var eventCount = 0

    init(seed: UInt64, options: Options) {
        precondition(options.variant.map { Self.roundVariants.contains($0) } ?? true, "\(options) is not a variant with rounds")
        self.seed = seed
        self.options = options
        generator = SplitMix64(seed: seed)
        rankCount = Int.random(in: 2...6, using: &generator)
        stepCount = Int.random(in: 3...30, using: &generator)
        let drawn = Self.roundVariants[Int.random(in: 0..<Self.roundVariants.count, using: &generator)]
        variant = options.variant ?? drawn
        coordinator = CheckpointCoordinator(
            rankCount: rankCount, intervalSeconds: Double.random(in: 0.05...0.5, using: &generator), committed: .start, now: 0)
        program = SimulatedProgram(rankCount: rankCount, stepCount: stepCount, using: &generator)
        receivesEagerly = Bool.random(using: &generator)
        participants = Array(repeating: CheckpointParticipant(variant: variant, epoch: .start, stepPassed: -1), count: rankCount)
        let count = rankCount
        ledgers = (0..<count).map { MessageLedger(rank: RankID($0), rankCount: count) }
        states = (0..<count).map { SimulatedProgram.State(accumulator: SimulatedProgram.initialAccumulator(rank: $0)) }
        initialCaptures = (0..<count).map { rank in
            let ledger = MessageLedger(rank: RankID(rank), rankCount: count)
            let state = SimulatedProgram.State(accumulator: SimulatedProgram.initialAccumulator(rank: rank))
            return Capture(step: -1, snapshot: Self.snapshot(ledger, state), ledger: ledger,
                           deliveryLog: Array(repeating: [], count: count), state: state, changes: 0)
        }
        phases = Array(repeating: .atSafePoint(0), count: rankCount)
        arrived = Array(repeating: [], count: rankCount)
        held = Array(repeating: [], count: rankCount)
        deliveryLog = Array(repeating: Array(repeating: [], count: rankCount), count: rankCount)
        wakePending = Array(repeating: false, count: rankCount)
        dataLinkBusyUntil = Array(repeating: Array(repeating: 0, count: rankCount), count: rankCount)
        toRankBusyUntil = Array(repeating: 0, count: rankCount)
        toCoordinatorBusyUntil = Array(repeating: 0, count: rankCount)
        failuresLeft = options.rankFailures ? Int.random(in: 1...3, using: &generator) : 0
    }

    /// A rank's snapshot: its ledger, then its program state.
    static func snapshot(_ ledger: MessageLedger, _ state: SimulatedProgram.State) -> [UInt8] {
        var writer = ByteWriter()
        ledger.encode(into: &writer)
        state.encode(into: &writer)
        return writer.bytes
    }

    // MARK: Running

    /// Runs the job to its end; returns what went wrong, or nil.
    mutating func run() -> String? {
        do {
            for rank in 0..<rankCount { wake(rank, after: 0) }
            schedule(.tick, after: Double.random(in: 0...0.2, using: &generator), generation: nil)
            if failuresLeft > 0 { scheduleFailure() }
            var ticksOnly = 0
            var events = 0
            while !jobFinished {
                guard let next = popNext() else { return "nothing left to happen: \(stateDescription)" }
                events += 1
                guard events < 2_000_000 else { return "did not finish after \(events) events: \(stateDescription)" }
                now = next.time
                if case .tick = next.event { ticksOnly += 1 } else { ticksOnly = 0 }
                guard ticksOnly < 500 else { return "deadlock (only ticks for 500 ticks): \(stateDescription)" }
                if let generation = next.generation, generation != self.generation { continue }
                eventCount += 1
                try handle(next.event)
                // Every rank at the final barrier and the coordinator idle: nothing will ever
                // release the job (found: a round aborted by a failed write once all had finished).
                if case .idle = coordinator.state, coordinator.finished.allSatisfy({ $0 }) {
                    throw Violation(description: "every rank finished and the coordinator is idle: the job is never released")
                }
            }
            try checkFinalState()
            return nil
        } catch {
            return "\(error) at t=\(now); \(stateDescription)"
        }
    }

    var stateDescription: String {
        "N=\(rankCount) K=\(stepCount) \(variant) \(program.pattern)\(receivesEagerly ? " eager" : ""), coordinator \(coordinator.state), "
            + "committed \(coordinator.committedEpoch.rawValue), phases \(phases), "
            + "participants \(participants.map { "\($0.state) epoch \($0.epoch.rawValue)/\($0.deliverableEpoch.rawValue) changes \($0.changesSinceCheckpoint)" }), "
            + "arrived \(arrived.map { $0.map { "\($0.header.source.rawValue)#\($0.header.sequence.rawValue)@e\($0.header.epoch.rawValue)" } })"
    }

    private static func precedes(_ lhs: Scheduled, _ rhs: Scheduled) -> Bool {
        lhs.time < rhs.time || (lhs.time == rhs.time && lhs.order < rhs.order)
    }

    /// Pops the earliest event (a binary min-heap on time, then scheduling order).
    private mutating func popNext() -> Scheduled? {
        guard !queue.isEmpty else { return nil }
        queue.swapAt(0, queue.count - 1)
        let next = queue.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            guard left < queue.count else { break }
            let right = left + 1
            let child = right < queue.count && Self.precedes(queue[right], queue[left]) ? right : left
            guard Self.precedes(queue[child], queue[parent]) else { break }
            queue.swapAt(child, parent)
            parent = child
        }
        return next
    }

    private mutating func schedule(_ event: Event, at time: Double, generation: Int?) {
        order += 1
        queue.append(Scheduled(time: time, order: order, generation: generation, event: event))
        var child = queue.count - 1
        while child > 0, Self.precedes(queue[child], queue[(child - 1) / 2]) {
            queue.swapAt(child, (child - 1) / 2)
            child = (child - 1) / 2
        }
    }

    mutating func schedule(_ event: Event, after delay: Double, generation: Int?) {
        schedule(event, at: now + delay, generation: generation)
    }

    private mutating func linkDelay() -> Double {
        Int.random(in: 0..<10, using: &generator) == 0
            ? Double.random(in: 0.05...0.3, using: &generator)
            : Double.random(in: 0.0005...0.02, using: &generator)
    }

    mutating func wake(_ rank: Int, after delay: Double) {
        guard !wakePending[rank] else { return }
        wakePending[rank] = true
        schedule(.rankWakes(rank), after: delay, generation: generation)
    }

    private mutating func scheduleFailure() {
        schedule(.rankFails(Int.random(in: 0..<rankCount, using: &generator)),
                 after: Double.random(in: 0.01...1.5, using: &generator), generation: nil)
    }

    mutating func sendToRank(_ rank: Int, _ message: ControlMessage) {
        let arrival = max(now + linkDelay(), toRankBusyUntil[rank])
        toRankBusyUntil[rank] = arrival
        schedule(.controlToRank(rank, message), at: arrival, generation: generation)
    }

    mutating func sendToCoordinator(from rank: Int, _ message: ControlMessage) {
        let arrival = max(now + linkDelay(), toCoordinatorBusyUntil[rank])
        toCoordinatorBusyUntil[rank] = arrival
        schedule(.controlToCoordinator(rank, message), at: arrival, generation: generation)
    }

    mutating func transmit(from source: Int, to destination: Int, _ header: DataHeader, _ payload: [UInt8]) {
        let arrival = max(now + linkDelay(), dataLinkBusyUntil[source][destination])
        dataLinkBusyUntil[source][destination] = arrival
        schedule(.dataArrives(destination: destination, header: header, payload: payload), at: arrival, generation: generation)
    }

    private mutating func handle(_ event: Event) throws {
        switch event {
        case .rankWakes(let rank):
            wakePending[rank] = false
            try rankActs(rank)
        case .dataArrives(let destination, let header, let payload):
            // Duplicate suppression on arrival (resent after a rollback, already delivered).
            guard !ledgers[destination].isDuplicate(source: header.source, sequence: header.sequence) else { return }
            guard !arrived[destination].contains(where: { $0.header.source == header.source && $0.header.sequence == header.sequence }) else {
                throw Violation(description: "\(header.source) #\(header.sequence.rawValue) arrived twice at rank \(destination) in one incarnation")
            }
            arrived[destination].append((header, payload))
            wake(destination, after: 0)
        case .controlToRank(let rank, let message):
            try rankHandles(message, rank: rank)
        case .controlToCoordinator(let rank, let message):
            try coordinatorHandles(message, from: RankID(rank))
        case .snapshotWritten(let rank, let round, let succeeded):
            try snapshotWritten(rank: rank, round: round, succeeded: succeeded)
        case .tick:
            try perform(coordinator.handleTick(now: now))
            schedule(.tick, after: Double.random(in: 0.005...0.3, using: &generator), generation: nil)
        case .rankFails(let rank):
            try rollBack(failed: rank)
            failuresLeft -= 1
            if failuresLeft > 0 { scheduleFailure() }
        }
    }
}
