#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import LifelineCore

/// The coordinated protocol driven as a whole job in one process, with virtual time: one
/// coordinator, N = 2…6 participants each running an SPMD ring program of K steps, control and
/// data messages through FIFO links with random delays, snapshots that become durable after a
/// random delay, random ticks and checkpoint wishes, and (in the second test) rank failures with
/// a global rollback to the last committed line, and failed snapshot or manifest writes.
///
/// After every event it checks: (a) a committed line's captures are all at its safe point S;
/// (b) no message sent after its sender's capture in round e reaches a receiver before that
/// receiver's own capture of e, unless e was aborted (no orphan); (c) every run ends with every
/// rank past all K steps (no deadlock); (d) after each DONE, a sender retains for receiver r
/// exactly what r had not delivered at its capture; and at the end, every channel delivered
/// exactly 0..<total once. Every failure names its seed.
struct CoordinatedJobSimulationTests {
    /// 1000 schedules per test (2000 in all) by default; LIFELINE_SIM_SEEDS asks for more (or fewer) per test.
    static var seedCount: UInt64 {
        getenv("LIFELINE_SIM_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 1000
    }

    private func runSeeds(_ seeds: ClosedRange<UInt64>, _ options: JobSimulation.Options) -> (commits: Int, aborts: Int, rollbacks: Int, events: Int) {
        var totals = (commits: 0, aborts: 0, rollbacks: 0, events: 0)
        for seed in seeds {
            var simulation = JobSimulation(seed: seed, options: options)
            if let failure = simulation.run() {
                Issue.record("seed \(seed) (\(options)): \(failure)")
                return totals
            }
            totals.commits += simulation.commitCount
            totals.aborts += simulation.aborted.count
            totals.rollbacks += simulation.rollbackCount
            totals.events += simulation.eventCount
        }
        return totals
    }

    @Test func failureFreeSchedulesKeepTheInvariants() {
        let totals = runSeeds(1...Self.seedCount, .init(rankFailures: false, storageFailures: false))
        print("failure-free: \(totals)")
        // The schedules must actually exercise the protocol.
        #expect(totals.commits > Int(Self.seedCount), "only \(totals.commits) commits in \(Self.seedCount) runs")
        #expect(totals.aborts > 0, "no round was ever aborted (a rank finishing before S)")
    }

    @Test func schedulesWithFailuresAndRollbacksKeepTheInvariants() {
        let first = UInt64(1_000_000)
        let totals = runSeeds(first...(first + Self.seedCount - 1), .init(rankFailures: true, storageFailures: true))
        print("with failures: \(totals)")
        #expect(totals.rollbacks > Int(Self.seedCount) / 2, "only \(totals.rollbacks) rollbacks")
        #expect(totals.commits > Int(Self.seedCount) / 2, "only \(totals.commits) commits")
    }
}

/// One simulated job. See `CoordinatedJobSimulationTests`.
struct JobSimulation {
    struct Options: CustomStringConvertible {
        /// Kill random ranks (global rollback to the last committed line).
        var rankFailures: Bool
        /// Fail random snapshot and manifest writes.
        var storageFailures: Bool
        var description: String { "rankFailures: \(rankFailures), storageFailures: \(storageFailures)" }
    }

    /// What a rank saved at its capture: enough to restore it.
    struct Capture {
        var step: Int
        var snapshot: [UInt8]
        var ledger: MessageLedger
        var deliveryLog: [[UInt64]]
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

    enum Event {
        case rankWakes(Int)
        case dataArrives(destination: Int, header: DataHeader, payload: [UInt8])
        case controlToRank(Int, ControlMessage)
        case controlToCoordinator(Int, ControlMessage)
        case snapshotWritten(Int, Epoch, succeeded: Bool)
        case tick
        case rankFails(Int)
    }

    struct Scheduled {
        var time: Double
        var order: Int
        /// Rank-side events die with their incarnation (a global rollback); ticks and failures live on.
        var generation: Int?
        var event: Event
    }

    struct Violation: Error, CustomStringConvertible { var description: String }

    let seed: UInt64
    let options: Options
    var generator: SplitMix64
    let rankCount: Int
    let stepCount: Int
    let variant: CheckpointVariant
    var now = 0.0
    var coordinator: CheckpointCoordinator
    var participants: [CheckpointParticipant]
    var ledgers: [MessageLedger]
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
    var captures: [Epoch: [Int: Capture]] = [:]
    var committed: [Epoch: [Int: Capture]] = [:]
    var aborted: Set<Epoch> = []
    var commitCount = 0
    var rollbackCount = 0
    var failuresLeft: Int
    var jobFinished = false
    var releasedRanks = 0
    var eventCount = 0

    init(seed: UInt64, options: Options) {
        self.seed = seed
        self.options = options
        generator = SplitMix64(seed: seed)
        rankCount = Int.random(in: 2...6, using: &generator)
        stepCount = Int.random(in: 3...25, using: &generator)
        variant = Bool.random(using: &generator) ? .coordinated : .blocking
        coordinator = CheckpointCoordinator(
            rankCount: rankCount, intervalSeconds: Double.random(in: 0.05...0.8, using: &generator), committed: .start, now: 0)
        participants = Array(repeating: CheckpointParticipant(variant: variant, epoch: .start, stepPassed: -1), count: rankCount)
        let count = rankCount
        ledgers = (0..<count).map { MessageLedger(rank: RankID($0), rankCount: count) }
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

    // MARK: The program

    /// The ring neighbours a rank sends to and receives from (twice the same rank when N = 2).
    func neighbours(_ rank: Int) -> [Int] { [(rank + 1) % rankCount, (rank + rankCount - 1) % rankCount] }

    /// Messages per step on the channel `source` → `destination`.
    func multiplicity(_ source: Int, _ destination: Int) -> Int { neighbours(source).filter { $0 == destination }.count }

    /// The payload of a message, a function of its channel and position, so a resend or a
    /// re-execution after a rollback must produce the same bytes.
    static func payload(source: Int, destination: Int, sequence: UInt64) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(source), UInt8(destination)]
        for index in 0..<Int(sequence % 9) { bytes.append(UInt8(truncatingIfNeeded: sequence >> (8 * UInt64(index)))) }
        return bytes
    }

    // MARK: Running

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
            try checkFinalDeliveries()
            return nil
        } catch {
            return "\(error) at t=\(now); \(stateDescription)"
        }
    }

    var stateDescription: String {
        "N=\(rankCount) K=\(stepCount) \(variant), coordinator \(coordinator.state), committed \(coordinator.committedEpoch.rawValue), "
            + "phases \(phases), participants \(participants.map { "\($0.state) epoch \($0.epoch.rawValue)/\($0.deliverableEpoch.rawValue)" }), "
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

    private mutating func schedule(_ event: Event, after delay: Double, generation: Int?) {
        schedule(event, at: now + delay, generation: generation)
    }

    private mutating func linkDelay() -> Double {
        Int.random(in: 0..<10, using: &generator) == 0
            ? Double.random(in: 0.05...0.3, using: &generator)
            : Double.random(in: 0.0005...0.02, using: &generator)
    }

    private mutating func wake(_ rank: Int, after delay: Double) {
        guard !wakePending[rank] else { return }
        wakePending[rank] = true
        schedule(.rankWakes(rank), after: delay, generation: generation)
    }

    private mutating func scheduleFailure() {
        schedule(.rankFails(Int.random(in: 0..<rankCount, using: &generator)),
                 after: Double.random(in: 0.01...1.5, using: &generator), generation: nil)
    }

    private mutating func sendToRank(_ rank: Int, _ message: ControlMessage) {
        let arrival = max(now + linkDelay(), toRankBusyUntil[rank])
        toRankBusyUntil[rank] = arrival
        schedule(.controlToRank(rank, message), at: arrival, generation: generation)
    }

    private mutating func sendToCoordinator(from rank: Int, _ message: ControlMessage) {
        let arrival = max(now + linkDelay(), toCoordinatorBusyUntil[rank])
        toCoordinatorBusyUntil[rank] = arrival
        schedule(.controlToCoordinator(rank, message), at: arrival, generation: generation)
    }

    private mutating func transmit(from source: Int, to destination: Int, _ header: DataHeader, _ payload: [UInt8]) {
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

    // MARK: Ranks

    private mutating func rankActs(_ rank: Int) throws {
        switch phases[rank] {
        case .finished:
            return
        case .atSafePoint(let step):
            switch participants[rank].handleSafePoint(step: step) {
            case .wait:
                return  // woken by safePointChosen or abort
            case .capture(let round):
                try capture(rank: rank, round: round, step: step)
            case .proceed:
                break
            }
            if Int.random(in: 0..<60, using: &generator) == 0 { sendToCoordinator(from: rank, .checkpointWanted) }
            phases[rank] = .sending(step)
            wake(rank, after: 0)
        case .sending(let step):
            for neighbour in neighbours(rank) {
                let sequence = ledgers[rank].nextSequence[neighbour].rawValue
                let payload = Self.payload(source: rank, destination: neighbour, sequence: sequence)
                let header = ledgers[rank].send(to: RankID(neighbour), tag: Int64(step), epoch: participants[rank].epoch,
                                                incarnation: incarnation, payload: payload)
                if participants[rank].holdsSends {
                    held[rank].append((neighbour, header, payload))
                } else {
                    guard held[rank].isEmpty else { throw Violation(description: "rank \(rank) sends while older sends are held") }
                    transmit(from: rank, to: neighbour, header, payload)
                }
            }
            var missing = Array(repeating: 0, count: rankCount)
            for neighbour in neighbours(rank) { missing[neighbour] += 1 }
            phases[rank] = .receiving(step, missing: missing)
            wake(rank, after: Double.random(in: 0.001...0.03, using: &generator))
        case .receiving(let step, var missing):
            let candidates = arrived[rank].indices.filter { index in
                let header = arrived[rank][index].header
                return missing[header.source.rawValue] > 0 && header.tag == Int64(step)
                    && participants[rank].mayDeliver(messageEpoch: header.epoch)
            }
            guard !candidates.isEmpty else { return }  // woken by an arrival or an abort
            let index = candidates[Int.random(in: 0..<candidates.count, using: &generator)]
            let (header, payload) = arrived[rank].remove(at: index)
            try deliver(header, payload, to: rank)
            missing[header.source.rawValue] -= 1
            if missing.allSatisfy({ $0 == 0 }) {
                if step + 1 == stepCount {
                    phases[rank] = .finished
                    sendToCoordinator(from: rank, .finished(step: participants[rank].stepPassed, loggedBytes: 0,
                                                            retainedBytesPeak: 0, logBytesPeak: 0, residentBytesPeak: 0))
                } else {
                    phases[rank] = .atSafePoint(step + 1)
                }
            } else {
                phases[rank] = .receiving(step, missing: missing)
            }
            wake(rank, after: Double.random(in: 0...0.01, using: &generator))
        }
    }

    /// Delivers a message to the program, checking (b): no orphan.
    private mutating func deliver(_ header: DataHeader, _ payload: [UInt8], to rank: Int) throws {
        let source = header.source.rawValue
        let sequence = header.sequence.rawValue
        guard payload == Self.payload(source: source, destination: rank, sequence: sequence),
              header.tag == Int64(sequence) / Int64(multiplicity(source, rank))
        else {
            throw Violation(description: "rank \(rank) got #\(sequence) from \(source) with tag \(header.tag) and the wrong payload")
        }
        let own = participants[rank].epoch
        if header.epoch > own {
            for round in (own.rawValue + 1)...header.epoch.rawValue where !aborted.contains(Epoch(round)) {
                throw Violation(description: "orphan: rank \(rank) (epoch \(own.rawValue)) delivered #\(sequence) from \(source) "
                                + "sent after its capture of round \(round), which was not aborted")
            }
        }
        guard ledgers[rank].recordDelivery(source: header.source, sequence: header.sequence) else {
            throw Violation(description: "rank \(rank) delivered #\(sequence) from \(source) twice")
        }
        deliveryLog[rank][source].append(sequence)
    }

    private mutating func capture(rank: Int, round: Epoch, step: Int) throws {
        guard captures[round]?[rank] == nil else { throw Violation(description: "rank \(rank) captured \(round) twice") }
        var writer = ByteWriter()
        ledgers[rank].encode(into: &writer)
        captures[round, default: [:]][rank] = Capture(step: step, snapshot: writer.bytes, ledger: ledgers[rank],
                                                       deliveryLog: deliveryLog[rank])
        let fails = options.storageFailures && Int.random(in: 0..<25, using: &generator) == 0
        schedule(.snapshotWritten(rank, round, succeeded: !fails), after: Double.random(in: 0.001...0.2, using: &generator),
                 generation: generation)
    }

    private mutating func snapshotWritten(rank: Int, round: Epoch, succeeded: Bool) throws {
        if succeeded {
            participants[rank].handleSnapshotDurable(round)
            let capture = captures[round]![rank]!
            sendToCoordinator(from: rank, .ack(round, Acknowledgement(
                step: capture.step, snapshotBytes: UInt64(capture.snapshot.count), outputOffset: 0, delivered: capture.ledger.delivered)))
        } else {
            sendToCoordinator(from: rank, .snapshotFailed(round, reason: "injected"))
        }
    }

    private mutating func rankHandles(_ message: ControlMessage, rank: Int) throws {
        switch message {
        case .checkpointRequest(let round):
            for action in participants[rank].handleRequest(round) {
                guard case .reportStep(let reported, let step) = action else {
                    throw Violation(description: "request answered with \(action)")
                }
                sendToCoordinator(from: rank, .stepReport(reported, step: step))
            }
        case .safePointChosen(let round, let step):
            guard participants[rank].handleSafePointChosen(round, step: step).isEmpty else {
                throw Violation(description: "safePointChosen produced actions")
            }
            wake(rank, after: 0)
        case .checkpointDone(let round, let covered):
            let actions = participants[rank].handleDone(round)
            let expected: [CheckpointParticipant.Action] = variant == .blocking ? [.trimRetained(round), .releaseHeldSends] : [.trimRetained(round)]
            guard actions == expected else { throw Violation(description: "DONE(\(round.rawValue)) on rank \(rank) gave \(actions)") }
            try trim(rank: rank, round: round, covered: covered)
            if variant == .blocking { releaseHeld(rank) }
        case .abort(let round):
            let wasHolding = participants[rank].holdsSends
            let actions = participants[rank].handleAbort(round)
            guard actions == (wasHolding ? [.releaseHeldSends] : []) else {
                throw Violation(description: "ABORT(\(round.rawValue)) on rank \(rank) gave \(actions), holding \(wasHolding)")
            }
            if wasHolding { releaseHeld(rank) }
            wake(rank, after: 0)
        case .release:
            guard phases[rank] == .finished else { throw Violation(description: "rank \(rank) released at \(phases[rank])") }
            releasedRanks += 1
        default:
            throw Violation(description: "rank \(rank) got \(message)")
        }
    }

    private mutating func releaseHeld(_ rank: Int) {
        for message in held[rank] { transmit(from: rank, to: message.destination, message.header, message.payload) }
        held[rank] = []
    }

    /// Applies DONE's coverage and checks (d): what the sender keeps for r is exactly what r had
    /// not delivered at its capture.
    private mutating func trim(rank sender: Int, round: Epoch, covered: [DeliveredSet]) throws {
        guard covered.count == rankCount, let line = committed[round] else {
            throw Violation(description: "DONE(\(round.rawValue)) with \(covered.count) sets for an uncommitted round")
        }
        for receiver in 0..<rankCount {
            guard covered[receiver] == line[receiver]!.ledger.delivered[sender] else {
                throw Violation(description: "DONE(\(round.rawValue)) to \(sender) carries a coverage for \(receiver) that is not its delivered set at capture")
            }
            ledgers[sender].trim(destination: RankID(receiver), covered: covered[receiver])
            let kept = ledgers[sender].retained[receiver].map(\.header.sequence.rawValue)
            let sent = ledgers[sender].nextSequence[receiver].rawValue
            let expected = (0..<sent).filter { !covered[receiver].contains(SequenceNumber($0)) }
            guard kept == expected else {
                throw Violation(description: "after DONE(\(round.rawValue)) rank \(sender) retains \(kept) for \(receiver), expected \(expected)")
            }
        }
        let bytes = ledgers[sender].retained.joined().reduce(0) { $0 + $1.payload.count }
        guard ledgers[sender].retainedBytes == bytes else {
            throw Violation(description: "rank \(sender) counts \(ledgers[sender].retainedBytes) retained bytes, holds \(bytes)")
        }
    }

    // MARK: The coordinator

    private mutating func coordinatorHandles(_ message: ControlMessage, from rank: RankID) throws {
        switch message {
        case .stepReport(let round, let step):
            try perform(coordinator.handleStepReport(from: rank, round: round, step: step))
        case .ack(let round, let ack):
            try perform(coordinator.handleAck(from: rank, round: round, ack))
        case .snapshotFailed(let round, let reason):
            try perform(coordinator.handleSnapshotFailed(from: rank, round: round, reason: reason, now: now))
        case .finished(let step, _, _, _, _):
            try perform(coordinator.handleFinished(from: rank, step: step, now: now))
        case .checkpointWanted:
            try perform(coordinator.handleCheckpointWanted(now: now))
        default:
            throw Violation(description: "coordinator got \(message)")
        }
    }

    private mutating func perform(_ actions: [CheckpointCoordinator.Action]) throws {
        for action in actions {
            switch action {
            case .broadcast(let message):
                for rank in 0..<rankCount { sendToRank(rank, message) }
            case .send(let rank, let message):
                sendToRank(rank.rawValue, message)
            case .writeCommit(let round, let step, let acks):
                try checkLine(round, step: step, acks: acks)
                let fails = options.storageFailures && Int.random(in: 0..<15, using: &generator) == 0
                if fails {
                    try perform(coordinator.handleCommitFailed(round, reason: "injected", now: now))
                } else {
                    committed[round] = captures[round]
                    commitCount += 1
                    try perform(coordinator.handleCommitDurable(round, now: now))
                }
            case .roundAborted(let round, _):
                guard !aborted.contains(round), committed[round] == nil else {
                    throw Violation(description: "round \(round.rawValue) aborted twice or after its commit")
                }
                aborted.insert(round)
            case .finishJob:
                guard phases.allSatisfy({ $0 == .finished }) else {
                    throw Violation(description: "job finished while phases are \(phases)")
                }
                jobFinished = true
            }
        }
    }

    /// (a) one safe point per line, and the line itself: no orphan, in-transit messages retained.
    private func checkLine(_ round: Epoch, step: Int, acks: [Acknowledgement]) throws {
        guard let line = captures[round], line.count == rankCount else {
            throw Violation(description: "\(round) committed without a capture from every rank")
        }
        for rank in 0..<rankCount {
            guard line[rank]!.step == step, acks[rank].step == step else {
                throw Violation(description: "\(round) committed with S=\(step) but rank \(rank) captured at \(line[rank]!.step) (ack says \(acks[rank].step))")
            }
            guard acks[rank].delivered == line[rank]!.ledger.delivered else {
                throw Violation(description: "\(round): rank \(rank)'s ACK does not carry its delivered sets at capture")
            }
        }
        for receiver in 0..<rankCount {
            for sender in 0..<rankCount {
                let sent = line[sender]!.ledger.nextSequence[receiver].rawValue
                let delivered = line[receiver]!.ledger.delivered[sender]
                guard delivered.count == 0 || (delivered.above.last.map { $0.rawValue < sent } ?? (delivered.watermark.rawValue <= sent)) else {
                    throw Violation(description: "orphan in line \(round.rawValue): rank \(receiver) delivered from \(sender) beyond the \(sent) sent at its capture")
                }
                let retained = Set(line[sender]!.ledger.retained[receiver].map(\.header.sequence.rawValue))
                for sequence in 0..<sent where !delivered.contains(SequenceNumber(sequence)) && !retained.contains(sequence) {
                    throw Violation(description: "#\(sequence) from \(sender) to \(receiver), in transit across line \(round.rawValue), is not retained")
                }
            }
        }
    }

    // MARK: Failures

    /// A rank dies: the coordinator aborts any open round, and every rank restarts from the
    /// last committed line (or the start), resending what it retains.
    private mutating func rollBack(failed rank: Int) throws {
        guard !jobFinished else { return }
        let wasOpen: Bool
        switch coordinator.state {
        case .collecting, .capturing, .committing: wasOpen = true
        case .idle, .recovering, .released: wasOpen = false
        }
        let round = coordinator.lastEpoch
        let actions = coordinator.handleRankFailed(RankID(rank), now: now)
        let expected: [CheckpointCoordinator.Action] = wasOpen
            ? [.broadcast(.abort(round)), .roundAborted(round, reason: "rank \(rank) failed")] : []
        guard actions == expected else { throw Violation(description: "rank \(rank) failed: coordinator did \(actions)") }
        try perform(actions)  // the ABORT goes to ranks about to be killed: dropped with their generation
        rollbackCount += 1
        generation += 1
        incarnation += 1
        let line = coordinator.committedEpoch
        for rank in 0..<rankCount {
            arrived[rank] = []
            held[rank] = []
            wakePending[rank] = false
            if line == .start {
                participants[rank] = CheckpointParticipant(variant: variant, epoch: .start, stepPassed: -1,
                                                           deliverableEpoch: coordinator.lastEpoch)
                ledgers[rank] = MessageLedger(rank: RankID(rank), rankCount: rankCount)
                deliveryLog[rank] = Array(repeating: [], count: rankCount)
                phases[rank] = .atSafePoint(0)
            } else {
                guard let capture = committed[line]?[rank] else { throw Violation(description: "line \(line) has no capture of rank \(rank)") }
                var reader = ByteReader(capture.snapshot)
                ledgers[rank] = try MessageLedger.decode(from: &reader, rank: RankID(rank), rankCount: rankCount)
                guard ledgers[rank] == capture.ledger else { throw Violation(description: "rank \(rank)'s ledger changed through its snapshot") }
                participants[rank] = CheckpointParticipant(variant: variant, epoch: line, stepPassed: capture.step,
                                                           deliverableEpoch: coordinator.lastEpoch)
                deliveryLog[rank] = capture.deliveryLog
                phases[rank] = .sending(capture.step)
            }
        }
        guard coordinator.handleRestarted((0..<rankCount).map { RankID($0) }, now: now).isEmpty else {
            throw Violation(description: "restart released the job")
        }
        for rank in 0..<rankCount {
            for destination in 0..<rankCount {
                for message in ledgers[rank].retained[destination] {
                    transmit(from: rank, to: destination, message.header, message.payload)
                }
            }
            wake(rank, after: Double.random(in: 0...0.05, using: &generator))
        }
    }

    /// (c) and exactly-once: every channel delivered 0..<total, no gap, no duplicate.
    private func checkFinalDeliveries() throws {
        for receiver in 0..<rankCount {
            for source in 0..<rankCount {
                let total = UInt64(stepCount * multiplicity(source, receiver))
                let log = deliveryLog[receiver][source]
                guard log.count == Int(total), log.sorted() == Array(0..<total) else {
                    throw Violation(description: "channel \(source)→\(receiver) delivered \(log), expected 0..<\(total)")
                }
                guard ledgers[receiver].delivered[source] == DeliveredSet(watermark: SequenceNumber(total), above: []) else {
                    throw Violation(description: "channel \(source)→\(receiver): delivered set \(ledgers[receiver].delivered[source])")
                }
            }
        }
    }
}
