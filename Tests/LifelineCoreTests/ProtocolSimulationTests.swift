#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import LifelineCore

/// A whole job in one process: a coordinator and N participants running a ring-exchange SPMD
/// program of K steps, every event (a rank's next action, a message's arrival, a snapshot
/// becoming durable, a tick of virtual time) chosen by a seeded generator. Checks, for
/// thousands of schedules, that every run finishes (no deadlock), that every committed line
/// was captured at one safe point with no orphan message, and that every message in transit
/// across a committed line is retained by its sender.
struct ProtocolSimulationTests {
    /// 1000 schedules by default; LIFELINE_SIM_SEEDS asks for more.
    static var seedCount: UInt64 {
        getenv("LIFELINE_SIM_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 1000
    }

    @Test func randomSchedulesKeepTheInvariants() {
        for seed in UInt64(1)...Self.seedCount {
            var simulation = Simulation(seed: seed)
            if let failure = simulation.run() {
                Issue.record("seed \(seed): \(failure)")
                return
            }
        }
    }
}

/// One simulated job.
struct Simulation {
    struct Capture {
        var step: Int
        var delivered: [DeliveredSet]
        var nextSequence: [SequenceNumber]
        var retained: [[SequenceNumber]]
    }

    enum Phase: Equatable {
        case atSafePoint(Int)
        /// Waiting for the step's messages; `count` received so far.
        case awaiting(Int, count: Int)
        case finished
    }

    var generator: SplitMix64
    let rankCount: Int
    let stepCount: Int
    var now = 0.0
    var coordinator: CheckpointCoordinator
    var participants: [CheckpointParticipant]
    var ledgers: [MessageLedger]
    var phases: [Phase]
    /// Data in flight per (source, destination), FIFO.
    var inFlight: [[[DataHeader]]]
    /// Arrived, not yet delivered, per receiver.
    var arrived: [[DataHeader]]
    var toRank: [[ControlMessage]]
    var toCoordinator: [(RankID, ControlMessage)] = []
    /// Snapshots being written: (rank, epoch).
    var writing: [(Int, Epoch)] = []
    var captures: [Epoch: [Int: Capture]] = [:]
    var commits = 0
    var released = false
    /// The sloppy program: each step sends to both neighbours and receives any two messages
    /// from any source, so without the epoch hold it would take a message sent after its
    /// sender's capture before its own (an orphan).
    let anySource: Bool

    init(seed: UInt64) {
        generator = SplitMix64(seed: seed)
        rankCount = Int.random(in: 2...5, using: &generator)
        stepCount = Int.random(in: 5...40, using: &generator)
        let variant: CheckpointVariant = Bool.random(using: &generator) ? .coordinated : .blocking
        anySource = Bool.random(using: &generator)
        coordinator = CheckpointCoordinator(
            rankCount: rankCount, intervalSeconds: Double.random(in: 0.5...3, using: &generator), committed: .start, now: 0)
        participants = Array(repeating: CheckpointParticipant(variant: variant, epoch: .start, stepPassed: -1), count: rankCount)
        let count = rankCount
        ledgers = (0..<count).map { MessageLedger(rank: RankID($0), rankCount: count) }
        phases = Array(repeating: .atSafePoint(0), count: rankCount)
        inFlight = Array(repeating: Array(repeating: [], count: rankCount), count: rankCount)
        arrived = Array(repeating: [], count: rankCount)
        toRank = Array(repeating: [], count: rankCount)
    }

    /// Runs to the end; returns a description of the first broken invariant, if any.
    mutating func run() -> String? {
        var idleTurns = 0
        for _ in 0..<200_000 {
            if released { return phases.allSatisfy({ $0 == .finished }) ? nil : "released before every rank finished" }
            let progressed: Bool
            do {
                progressed = try turn()
            } catch {
                return "\(error)"
            }
            idleTurns = progressed ? 0 : idleTurns + 1
            if idleTurns > 5000 { return "deadlock: phases \(phases), participants \(participants.map(\.state))" }
        }
        return "did not finish: phases \(phases)"
    }

    struct Violation: Error, CustomStringConvertible { var description: String }

    private mutating func turn() throws -> Bool {
        switch Int.random(in: 0..<6, using: &generator) {
        case 0:
            now += Double.random(in: 0...0.5, using: &generator)
            try perform(coordinator.handleTick(now: now))
            return true
        case 1:
            guard !toCoordinator.isEmpty else { return false }
            let (rank, message) = toCoordinator.removeFirst()
            try coordinatorHandles(message, from: rank)
            return true
        case 2:
            let rank = Int.random(in: 0..<rankCount, using: &generator)
            guard !toRank[rank].isEmpty else { return false }
            try rankHandles(toRank[rank].removeFirst(), rank: rank)
            return true
        case 3:
            let source = Int.random(in: 0..<rankCount, using: &generator)
            let destination = Int.random(in: 0..<rankCount, using: &generator)
            guard !inFlight[source][destination].isEmpty else { return false }
            arrived[destination].append(inFlight[source][destination].removeFirst())
            return true
        case 4:
            guard !writing.isEmpty else { return false }
            let (rank, epoch) = writing.remove(at: Int.random(in: 0..<writing.count, using: &generator))
            participants[rank].handleSnapshotDurable(epoch)
            let capture = captures[epoch]![rank]!
            toCoordinator.append((RankID(rank), .ack(epoch, Acknowledgement(
                step: capture.step, snapshotBytes: 1, outputOffset: 0, delivered: DeliveredSets(capture.delivered)))))
            return true
        default:
            return try rankActs(Int.random(in: 0..<rankCount, using: &generator))
        }
    }

    /// The program's next action on `rank`: a safe point, or the receive it waits for.
    private mutating func rankActs(_ rank: Int) throws -> Bool {
        switch phases[rank] {
        case .finished:
            return false
        case .atSafePoint(let step):
            switch participants[rank].handleSafePoint(step: step) {
            case .wait:
                return false
            case .capture(let epoch):
                captures[epoch, default: [:]][rank] = Capture(
                    step: step, delivered: ledgers[rank].delivered.dense, nextSequence: ledgers[rank].nextSequence.dense,
                    retained: ledgers[rank].retained.map { $0.map(\.header.sequence) })
                writing.append((rank, epoch))
            case .keep(let epoch):
                preconditionFailure("this simulation runs coordinated rounds only, yet rank \(rank) kept its checkpoint in \(epoch)")
            case .proceed:
                break
            }
            let neighbours = anySource ? [(rank + 1) % rankCount, (rank + rankCount - 1) % rankCount] : [(rank + 1) % rankCount]
            for neighbour in neighbours {
                let header = ledgers[rank].send(
                    to: RankID(neighbour), tag: Int64(step), epoch: participants[rank].epoch, incarnation: 0, payload: [])
                inFlight[rank][neighbour].append(header)  // held sends are modelled as slow links
            }
            phases[rank] = .awaiting(step, count: 0)
            return true
        case .awaiting(let step, let count):
            let left = (rank + rankCount - 1) % rankCount
            // FIFO per channel: only the oldest arrival of each source may be taken.
            var oldest: [Int: Int] = [:]
            for (index, header) in arrived[rank].enumerated() where oldest[header.source.rawValue] == nil {
                oldest[header.source.rawValue] = index
            }
            let candidates = anySource
                ? oldest.keys.sorted().map { oldest[$0]! }
                : arrived[rank].indices.filter { arrived[rank][$0].source.rawValue == left && arrived[rank][$0].tag == Int64(step) }.prefix(1).map { $0 }
            guard let index = candidates.first(where: { participants[rank].mayDeliver(messageEpoch: arrived[rank][$0].epoch) }) else {
                return false
            }
            let header = arrived[rank][index]
            arrived[rank].remove(at: index)
            guard ledgers[rank].recordDelivery(source: header.source, sequence: header.sequence) else {
                throw Violation(description: "rank \(rank) delivered \(header.sequence) from \(header.source) twice")
            }
            if anySource, count + 1 < 2 {
                phases[rank] = .awaiting(step, count: count + 1)
            } else if step + 1 == stepCount {
                phases[rank] = .finished
                toCoordinator.append((RankID(rank), .finished(step: participants[rank].stepPassed, loggedBytes: 0, retainedBytesPeak: 0, logBytesPeak: 0, residentBytesPeak: 0)))
            } else {
                phases[rank] = .atSafePoint(step + 1)
            }
            return true
        }
    }

    private mutating func rankHandles(_ message: ControlMessage, rank: Int) throws {
        switch message {
        case .checkpointRequest(let epoch):
            for action in participants[rank].handleRequest(epoch) {
                if case .reportStep(let round, let step) = action {
                    toCoordinator.append((RankID(rank), .stepReport(round, step: step)))
                }
            }
        case .safePointChosen(let epoch, let step):
            _ = participants[rank].handleSafePointChosen(epoch, step: step)
        case .checkpointDone(let epoch, let covered):
            for (receiver, set) in covered.enumerated() { ledgers[rank].trim(destination: RankID(receiver), covered: set) }
            _ = participants[rank].handleDone(epoch)
        case .abort(let epoch):
            _ = participants[rank].handleAbort(epoch)
        case .release:
            released = true
        default:
            throw Violation(description: "rank \(rank) got \(message)")
        }
    }

    private mutating func coordinatorHandles(_ message: ControlMessage, from rank: RankID) throws {
        switch message {
        case .stepReport(let epoch, let step):
            try perform(coordinator.handleStepReport(from: rank, round: epoch, step: step))
        case .ack(let epoch, let ack):
            try perform(coordinator.handleAck(from: rank, round: epoch, ack))
        case .finished(let step, _, _, _, _, _):
            try perform(coordinator.handleFinished(from: rank, step: step, now: now))
        default:
            throw Violation(description: "coordinator got \(message)")
        }
    }

    private mutating func perform(_ actions: [CheckpointCoordinator.Action]) throws {
        for action in actions {
            switch action {
            case .broadcast(let message):
                for rank in 0..<rankCount { toRank[rank].append(message) }
            case .send(let rank, let message):
                toRank[rank.rawValue].append(message)
            case .writeCommit(let epoch, let step, _):
                try checkLine(epoch, step: step)
                commits += 1
                try perform(coordinator.handleCommitDurable(epoch, now: now))
            case .roundAborted, .finishJob:
                break
            }
        }
    }

    /// A committed line: every capture at the first safe point ≥ S, no orphan, and every
    /// message in transit across it retained by its sender.
    private func checkLine(_ epoch: Epoch, step: Int) throws {
        guard let line = captures[epoch], line.count == rankCount else {
            throw Violation(description: "\(epoch) committed without a capture from every rank")
        }
        let steps = Set(line.values.map(\.step))
        guard steps.count == 1, steps.first! >= step else {
            throw Violation(description: "\(epoch) captured at steps \(steps.sorted()), S = \(step)")
        }
        for receiver in 0..<rankCount {
            for sender in 0..<rankCount where sender != receiver {
                let sent = line[sender]!.nextSequence[receiver].rawValue
                let delivered = line[receiver]!.delivered[sender]
                for sequence in 0..<sent + 64 where delivered.contains(SequenceNumber(sequence)) && sequence >= sent {
                    throw Violation(description: "orphan in \(epoch): \(receiver) delivered \(sequence) from \(sender), sent after its capture")
                }
                for sequence in 0..<sent where !delivered.contains(SequenceNumber(sequence)) {
                    guard line[sender]!.retained[receiver].contains(SequenceNumber(sequence)) else {
                        throw Violation(description: "message \(sequence) from \(sender) to \(receiver) in transit across \(epoch) is not retained")
                    }
                }
            }
        }
    }
}
