#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation
import LifelineCore
import LifelineStorage

/// What `lifeline replay` asks of the program it starts (`LIFELINE_REPLAY` names this plan as a
/// JSON file): run rank `rank` of `rankCount` alone from its snapshot in line `epoch`, deliver
/// what its message log holds in the logged order, send nothing, and compare its state at
/// each later checkpoint's step with what that checkpoint stored.
struct ReplayPlan: Codable, Equatable {
    /// A later checkpoint of the rank: its state at `step` is what `snapshot` stored.
    struct Checkpoint: Codable, Equatable {
        var epoch: UInt64
        var step: Int
        var snapshot: String
    }

    /// The environment variable naming the plan file.
    static let variable = "LIFELINE_REPLAY"

    var rank: Int
    var rankCount: Int
    var storageRoots: [String]
    /// The logging mode's raw value (pessimistic or optimistic: their logs hold the payloads).
    var logging: String
    /// The line the replay starts from (0: the start of the job).
    var epoch: UInt64
    /// The rank's snapshot in that line (nil: the start of the job).
    var snapshot: String?
    /// The round `snapshot` was captured for (a kept entry's is older than `epoch`).
    var snapshotEpoch: UInt64
    /// The checkpoints to compare against, ascending by step.
    var checkpoints: [Checkpoint]
    /// Stop at the first safe point at or past this step (nil: at the end of the log).
    var untilStep: Int?
    /// Where the program writes how the replay ended (`ReplaySession.Outcome`).
    var resultPath: String
}

/// The rank's side of `lifeline replay`: a plan, the checkpoints compared so far, and the end.
/// The runtime calls it at every safe point and when the log runs out; it ends the process.
final class ReplaySession {
    /// How a replay ended, as the result file says it (one line).
    enum Outcome: Equatable {
        /// Every checkpoint reached (`compared` of them) matched; the replay ended at `step`
        /// because of `reason`.
        case ended(step: Int, compared: Int, reason: String)
        /// The state at `step` is not what the checkpoint stored there, or the program asked for
        /// another message than the log holds after `step`.
        case diverged(step: Int, reason: String)

        var line: String {
            switch self {
            case .ended(let step, let compared, let reason): "ended \(step) \(compared) \(reason)"
            case .diverged(let step, let reason): "diverged \(step) \(reason)"
            }
        }

        init?(line: String) {
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            guard parts.count >= 3, let step = Int(parts[1]) else { return nil }
            switch parts[0] {
            case "ended" where parts.count == 4:
                guard let compared = Int(parts[2]) else { return nil }
                self = .ended(step: step, compared: compared, reason: parts[3])
            case "diverged":
                self = .diverged(step: step, reason: parts.dropFirst(2).joined(separator: " "))
            default:
                return nil
            }
        }
    }

    let plan: ReplayPlan
    private let store: MirroredStore
    /// The last safe point the program passed.
    private(set) var step: Int
    private var compared = 0
    /// The sequence number of the rank's next message to each destination: from its snapshot,
    /// then one more per send, as the ledger counts them.
    private var nextSequence: [Int: UInt64] = [:]
    private let startSequence: (Int) -> UInt64
    /// Pessimistic logging: per destination, what it delivered from this rank from the
    /// replay's start on (tag and payload), by sequence number (read from its log at the first
    /// send to it).
    private var deliveredBy: [Int: [UInt64: (tag: Int64, payload: [UInt8])]] = [:]

    /// `startSequence`: the restored ledger's next sequence number to a destination.
    init(plan: ReplayPlan, store: MirroredStore, startStep: Int, startSequence: @escaping (Int) -> UInt64) {
        self.plan = plan
        self.store = store
        self.step = startStep
        self.startSequence = startSequence
    }

    /// The program sent `payload` to `destination`. Nothing leaves; under pessimistic logging
    /// it is compared with what the destination delivered as this message (its log holds the
    /// payloads), so a rank whose sends drift is found at the step it first sends otherwise.
    func sent(_ payload: [UInt8], tag: Int64, to destination: Int) {
        let sequence = nextSequence[destination] ?? startSequence(destination)
        nextSequence[destination] = sequence + 1
        guard plan.logging == LoggingMode.pessimistic.rawValue else { return }
        let delivered = deliveredBy[destination] ?? deliveries(of: destination)
        deliveredBy[destination] = delivered
        if let expected = delivered[sequence], expected.tag != tag || expected.payload != payload {
            diverged("its message \(sequence) to rank \(destination) differs from what rank \(destination) delivered"
                     + (expected.tag != tag ? " (tag \(tag), not \(expected.tag))" : ""))
        }
    }

    /// What `destination`'s log holds of this rank's messages from the replay's start on (none
    /// when it cannot be read).
    private func deliveries(of destination: Int) -> [UInt64: (tag: Int64, payload: [UInt8])] {
        guard let held = try? MessageLog.readRecords(store: store, name: MessageLog.name(ofRank: destination)) else { return [:] }
        let first = startSequence(destination)
        var delivered: [UInt64: (tag: Int64, payload: [UInt8])] = [:]
        for bytes in held.records {
            if case .delivery(let header, let payload)? = try? LogRecord.decode(bytes), header.source.rawValue == plan.rank,
               header.sequence.rawValue >= first {
                delivered[header.sequence.rawValue] = (header.tag, payload)
            }
        }
        return delivered
    }

    /// The plan of this process, or nil when it was not started by `lifeline replay`.
    static func currentPlan() throws -> ReplayPlan? {
        guard let path = getenv(ReplayPlan.variable).map({ String(cString: $0) }), !path.isEmpty else { return nil }
        do {
            return try JSONDecoder().decode(ReplayPlan.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw LifelineError(.environment, "\(ReplayPlan.variable)=\(path) is not a replay plan: \(error)")
        }
    }

    /// The program passed safe point `step`: compare its state with a checkpoint taken there,
    /// and stop at `--until`.
    func safePoint(step: Int, capture: () -> StateWriter) throws {
        self.step = step
        if let checkpoint = plan.checkpoints.first(where: { $0.step == step }) {
            let stored: [UInt8]
            do {
                stored = try RankSnapshot.decode(
                    try ChunkedSnapshots(store: store).read(checkpoint.snapshot), rank: RankID(plan.rank),
                    rankCount: plan.rankCount, epoch: Epoch(checkpoint.epoch)).programState
            } catch {
                throw LifelineError(.storage, "cannot read the checkpoint of epoch \(checkpoint.epoch) to compare with: \(error)")
            }
            guard capture().bytes == stored else {
                end(.diverged(step: step, reason: "its state differs from what the checkpoint of epoch \(checkpoint.epoch) stored"))
            }
            compared += 1
        }
        if let until = plan.untilStep, step >= until { end(.ended(step: step, compared: compared, reason: "it reached --until \(until)")) }
    }

    /// The log has nothing more for the program's next receive or logged value.
    func logEnded() -> Never {
        end(.ended(step: step, compared: compared, reason: "its message log ends here"))
    }

    /// The program reached `finish()`.
    func programFinished() -> Never {
        end(.ended(step: step, compared: compared, reason: "the program finished"))
    }

    /// The program asked for another message than the log holds next.
    func diverged(_ reason: String) -> Never {
        end(.diverged(step: step, reason: reason))
    }

    /// Writes the outcome and ends the process (exit 0: `lifeline replay` reads the outcome).
    func end(_ outcome: Outcome) -> Never {
        lifeline_flush_stdio()
        try? Data((outcome.line + "\n").utf8).write(to: URL(fileURLWithPath: plan.resultPath))
        exit(0)
    }
}
