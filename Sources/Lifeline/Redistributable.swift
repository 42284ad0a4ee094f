import LifelineCore
import LifelineStorage

/// A program state that can be restored onto another number of ranks: `lifeline resume RUN_DIR
/// -n M` continues a job of N ranks on M, from its newest committed line.
///
/// Each new rank's `Communicator.restore(_:)` calls `redistribute(rank:of:from:)` instead of
/// decoding a snapshot of its own: the function builds the state of new rank `rank` of `size`
/// from the states the N old ranks saved at the line (`PreviousRanks`), reading only the ranks
/// it needs. Every new rank then continues from the line's step, so a program whose result does
/// not depend on the rank count (heat2d's field, the task farm's results) gives the same bits
/// as a run that never stopped.
///
/// ```swift
/// extension Solver: Redistributable {
///     static func redistribute(rank: Int, of size: Int, from previous: PreviousRanks) throws -> Solver {
///         let rows = Strip(rank: rank, ranks: size, rows: n)       // what new rank `rank` owns
///         var state = Solver(step: previous.step, rows: rows)
///         for old in 0..<previous.size where Strip(rank: old, ranks: previous.size, rows: n).overlaps(rows) {
///             state.copyRows(from: try previous.state(of: old, as: Solver.self))
///         }
///         return state
///     }
/// }
/// ```
///
/// A program whose state does not conform is not resized: `lifeline resume -n M` says so in one
/// line and leaves the run directory as it was. Messages in flight across the line (sent before
/// their sender's capture, delivered after their receiver's) are the program's to place: a
/// state that does not declare `takesMessagesInFlight` is resized only from a line without any.
public protocol Redistributable: Checkpointable {
    /// Builds the state of rank `rank` of a job of `size` ranks from what the ranks of the job
    /// before the resize saved at the line. Called once per new rank, in its own process.
    static func redistribute(rank: Int, of size: Int, from previous: PreviousRanks) throws -> Self

    /// Whether `redistribute` places the messages that were in flight at the line
    /// (`PreviousRanks.messagesInFlight(sentBy:)`) in the new states. When false (the default),
    /// a resize from a line with messages in flight is refused: they would be lost.
    static var takesMessagesInFlight: Bool { get }
}

extension Redistributable {
    /// By default a state does not take messages in flight.
    public static var takesMessagesInFlight: Bool { false }
}

/// A message that was in flight across the line a resized job starts from: sent by `source`
/// before its capture, and not delivered to `destination` before the destination's (ranks of
/// the job before the resize).
public struct MessageInFlight: Sendable, Equatable {
    /// The old rank that sent it.
    public let source: Int
    /// The old rank it was sent to.
    public let destination: Int
    /// Its tag (negative: a collective's).
    public let tag: Int
    /// Its payload.
    public let bytes: [UInt8]

    /// The payload as values of a trivial type; throws when it is not a whole number of them.
    public func values<T: BitwiseCopyable>(as _: T.Type) throws -> [T] { try bytesToValues(bytes) }
}

/// What a resized job starts from: the states that the `size` ranks of the job before the
/// resize saved at its newest committed line, at `step`. Each rank's snapshot is read (checked
/// and decompressed) only when asked for.
public final class PreviousRanks {
    /// The number of ranks before the resize.
    public let size: Int
    /// The step of the line: where every rank of the resized job begins.
    public let step: Int
    /// Whether the line's snapshots store messages in flight (or may: a line committed before
    /// they were counted).
    public let hasMessagesInFlight: Bool
    /// The round of the line.
    let epoch: Epoch
    private let store: MirroredStore

    init(size: Int, step: Int, epoch: Epoch, store: MirroredStore, hasMessagesInFlight: Bool = false) {
        self.size = size
        self.step = step
        self.epoch = epoch
        self.store = store
        self.hasMessagesInFlight = hasMessagesInFlight
    }

    /// The state old rank `rank` saved at the line, decoded as `type`. Each call reads its
    /// snapshot from storage again: keep what you need.
    public func state<State: Checkpointable>(of rank: Int, as type: State.Type = State.self) throws -> State {
        let snapshot = try read(rank)
        var reader = StateReader(snapshot.programState)
        let state = try State(from: &reader)
        guard reader.isAtEnd else {
            throw LifelineError(.corruptState, "old rank \(rank)'s saved state has bytes that \(State.self).init(from:) did not read")
        }
        return state
    }

    /// The messages old rank `rank` had sent before its capture that their receivers had not
    /// delivered before theirs, in the order it sent them to each destination (destinations
    /// ascending).
    public func messagesInFlight(sentBy rank: Int) throws -> [MessageInFlight] {
        let ledger = try read(rank).ledger
        return ledger.retained.used.flatMap { destination in
            ledger.retained[destination].map {
                MessageInFlight(source: rank, destination: destination, tag: Int($0.header.tag), bytes: $0.payload)
            }
        }
    }

    private func read(_ rank: Int) throws -> RankSnapshot {
        guard (0..<size).contains(rank) else {
            throw LifelineError(.usage, "there is no old rank \(rank): the job had \(size) ranks before the resize")
        }
        let name = ManifestStore(store: store).snapshotName(epoch: epoch.rawValue, rank: rank)
        let bytes: [UInt8]
        do {
            bytes = try ChunkedSnapshots(store: store).read(name)
        } catch {
            throw LifelineError(.storage, "cannot read old rank \(rank)'s snapshot to resize from: \(error)")
        }
        return try RankSnapshot.decode(bytes, rank: RankID(rank), rankCount: size, epoch: epoch)
    }
}
