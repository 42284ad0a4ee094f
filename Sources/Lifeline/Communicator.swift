import LifelineCore

/// A received message.
public struct Message: Sendable {
    /// The rank that sent it.
    public let source: Int
    /// The tag it was sent with.
    public let tag: Int
    /// Its payload.
    public let bytes: [UInt8]

    /// The payload reinterpreted as an array of a trivial type (one copy, no decoding). Throws
    /// when its length is not a whole number of `T`s: the sender sent another type.
    public func values<T: BitwiseCopyable>(as _: T.Type) throws -> [T] { try bytesToValues(bytes) }
}

/// Where a receive takes its message from.
public enum Source: Sendable, Equatable {
    /// Any rank: the first deliverable message from any source (nondeterministic).
    case any
    /// One named rank: deterministic, since channels are FIFO.
    case rank(Int)
}

/// How `reduce` and `allreduce` combine values, element by element, along a tree of fixed
/// shape (the same bits on every run with the same rank count).
public enum ReduceOperation: Sendable {
    /// The sum (for the same bits on any rank count, see `ExactSum`).
    case sum
    /// The minimum.
    case min
    /// The maximum.
    case max
}

/// A program's handle to its job, as MPI users know it: who it is, how many there are, how to
/// exchange messages, and where its state may be captured.
///
/// ```swift
/// let comm = try Communicator.join()
/// var state = try comm.restore(MyState.self) ?? MyState()
/// while state.step < 1000 {
///     try comm.safePoint(step: state.step, state: state)
///     // … compute, send, receive …
///     state.step += 1
/// }
/// try comm.finish()
/// ```
///
/// A `Communicator` belongs to the thread that joined; it is not `Sendable` and is not shared
/// between threads or tasks. Under Swift 6, keep it out of globals: join in a `@main` type's
/// `main()` and pass it to the functions that communicate (a top-level `let comm` in
/// `main.swift` is main-actor isolated, and a nonisolated helper cannot use it).
public final class Communicator {
    let runtime: RankRuntime
    /// Receives posted with `irecv`, per (source, tag) channel, until completed.
    var postedReceives: [Channel: PostedReceives] = [:]

    /// This process's rank, `0..<size`.
    public var rank: Int { runtime.rank.rawValue }
    /// The number of ranks in the job.
    public var size: Int { runtime.rankCount }
    /// The safe point the restored state was captured at, or nil on a fresh start.
    public var restoredStep: Int? { runtime.restoredStep }
    /// The number of this launch of the rank's process: unique in the job, counted over every
    /// launch of every rank (on a first run rank r has incarnation r), and larger at each
    /// restart than any before it. It is not a count of this rank's restarts: whether the rank
    /// was restarted is `restoredStep != nil` (or a restart with nothing to restore yet). 0
    /// when the program runs alone, without `lifeline run`.
    public var incarnation: Int { Int(runtime.incarnation) }

    private init(runtime: RankRuntime) { self.runtime = runtime }

    /// Joins the job this process was started in by `lifeline run`: connects to the supervisor
    /// and the other ranks, and loads the snapshot to resume from, if any.
    ///
    /// Started without `lifeline run`, the program runs alone as rank 0 of 1, with no
    /// checkpoints, which is handy for debugging.
    public static func join() throws -> Communicator {
        Communicator(runtime: try RankRuntime.join())
    }

    /// The state to resume from (nil on a fresh start). Call it once, before the first safe point.
    ///
    /// After `lifeline resume -n M` resized the job, the state comes from
    /// `Redistributable.redistribute(rank:of:from:)`, which `State` must conform to.
    public func restore<State: Checkpointable>(_ type: State.Type) throws -> State? {
        guard !runtime.restoreAsked else {
            // A second call would get nil and start the program over from its beginning.
            throw LifelineError(.usage, "restore(_:) was called twice: call it once, before the first safe point")
        }
        let redistributable = State.self as? any Redistributable.Type
        if let probe = runtime.probe {
            ResizeProbe.answer(
                redistributable.map { .redistributable(takesMessagesInFlight: $0.takesMessagesInFlight) }
                    ?? .notRedistributable(type: "\(State.self)"),
                path: probe)
        }
        if let previous = runtime.takePreviousRanks() {
            guard let redistributable else {
                throw LifelineError(.usage,
                    "the job was resized from \(previous.size) to \(size) ranks, but \(State.self) does not conform to Redistributable: resume it on \(previous.size) ranks")
            }
            // `resume -n` checked this before it changed anything; a rollback to an older line
            // after the resize meets its own messages in flight here.
            if previous.hasMessagesInFlight, !redistributable.takesMessagesInFlight {
                throw LifelineError(.usage,
                    "messages were in flight at the line this resized job restarts from, and \(State.self) does not take them (Redistributable.takesMessagesInFlight): they would be lost")
            }
            guard let state = try redistributable.redistribute(rank: rank, of: size, from: previous) as? State else {
                preconditionFailure("\(State.self).redistribute returned another type")
            }
            return state
        }
        guard let bytes = try runtime.takeRestoredState() else { return nil }
        var reader = StateReader(bytes)
        let state = try State(from: &reader)
        guard reader.isAtEnd else {
            throw LifelineError(.corruptState, "the saved state has bytes that \(State.self).init(from:) did not read")
        }
        return state
    }

    /// Marks a safe point: the place in the loop where this rank's state may be captured. Every
    /// rank calls it at the same increasing steps. `state` is evaluated only when a checkpoint
    /// is taken here; it must be the state from which the run continues after this call.
    public func safePoint<State: Checkpointable>(step: Int, state: @autoclosure () -> State) throws {
        try checkNoRequestsPendingAtSafePoint()
        try runtime.safePoint(step: step) {
            var writer = runtime.makeCaptureWriter()
            state().encode(to: &writer)
            runtime.keepCaptureWriter(writer)
            return writer
        }
    }

    /// Asks the supervisor for a checkpoint at the next common safe point.
    public func requestCheckpoint() throws { try runtime.requestCheckpoint() }

    /// Sends bytes to a rank. `tag` must be ≥ 0 (negative tags belong to collectives).
    public func send(_ bytes: [UInt8], to destination: Int, tag: Int = 0) throws {
        try runtime.send(bytes, to: try checkedRank(destination), tag: try checkedTag(tag))
    }

    /// Sends an array of a trivial type to a rank, copied as bytes without encoding.
    public func send<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws {
        try send(valuesToBytes(values), to: destination, tag: tag)
    }

    /// Receives the next message with `tag` from `source`, waiting for it.
    public func receive(from source: Source, tag: Int = 0) throws -> Message {
        let from: RankID?
        switch source {
        case .any:
            from = nil
            try checkNoRequestsPending(anySourceWithTag: tag)
        case .rank(let index):
            from = try checkedRank(index)
            try checkNoRequestsPending(from: index, tag: tag)
        }
        return try runtime.receive(from: from, tag: try checkedTag(tag))
    }

    /// Receives the next message with `tag` from rank `source`.
    public func receive(from source: Int, tag: Int = 0) throws -> Message {
        try receive(from: .rank(source), tag: tag)
    }

    /// Receives one message for each `(source, tag)`, in the order given, waiting for all of
    /// them. Use it for messages that do not depend on one another, such as the ghost rows of a
    /// halo exchange: with `--logging pessimistic` they share one log write and fsync before any
    /// is delivered, instead of one each.
    public func receive(all requests: [(source: Int, tag: Int)]) throws -> [Message] {
        for request in requests { try checkNoRequestsPending(from: request.source, tag: request.tag) }
        return try runtime.receive(all: requests.map { (try checkedRank($0.source), try checkedTag($0.tag)) })
    }

    /// Receives an array of a trivial type from rank `source`.
    public func receive<T: BitwiseCopyable>(_ type: T.Type, from source: Int, tag: Int = 0) throws -> [T] {
        try receive(from: .rank(source), tag: tag).values(as: type)
    }

    /// Reads a value from outside the program's messages (a clock, a random draw) so that a
    /// replay after a crash gets the same value: with message logging the value is logged like
    /// a determinant; without, it is simply read.
    ///
    /// ```swift
    /// let seed = try comm.logged { UInt64.random(in: 0...UInt64.max) }
    /// ```
    public func logged<T: BitwiseCopyable>(_ read: () -> T) throws -> T {
        let bytes = try runtime.loggedValue { withUnsafeBytes(of: read()) { Array($0) } }
        guard bytes.count == MemoryLayout<T>.size else {
            throw LifelineError(.corruptState, "a logged value has \(bytes.count) bytes, not the \(MemoryLayout<T>.size) of \(T.self)")
        }
        return bytes.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
    }

    /// Ends the program's part of the job: waits at the final barrier until every rank has
    /// finished, so that a late failure anywhere can still be recovered. Call it last.
    public func finish() throws { try runtime.finish() }

    func checkedRank(_ index: Int) throws -> RankID {
        guard (0..<size).contains(index) else {
            throw LifelineError(.usage, "rank \(index) is not in 0..<\(size)")
        }
        return RankID(index)
    }

    func checkedTag(_ tag: Int) throws -> Int64 {
        guard tag >= 0 else { throw LifelineError(.usage, "tag \(tag) is negative; negative tags are reserved") }
        return Int64(tag)
    }
}

// Bytes pass through as they are, told by comparing metatypes: an `as? [UInt8]` cast would look
// up the array's generic metadata at run time on every call from unspecialized code, which in a
// scalar allreduce cost more than the messages.
func valuesToBytes<T: BitwiseCopyable>(_ values: [T]) -> [UInt8] {
    if T.self == UInt8.self { return unsafeBitCast(values, to: [UInt8].self) }
    return values.withUnsafeBytes { Array($0) }
}

/// `bytes` as values of `T`; throws when they are not a whole number of them (a sender and a
/// receiver that disagree on the type), instead of dropping what is left over.
func bytesToValues<T: BitwiseCopyable>(_ bytes: [UInt8]) throws -> [T] {
    if T.self == UInt8.self { return unsafeBitCast(bytes, to: [T].self) }
    let stride = MemoryLayout<T>.stride
    guard stride > 0, bytes.count % stride == 0 else {
        throw LifelineError(.usage,
            "a message of \(bytes.count) bytes is not a whole number of \(T.self) (\(stride) bytes each): the sender sent another type")
    }
    let count = bytes.count / stride
    return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        bytes.withUnsafeBytes { source in
            UnsafeMutableRawBufferPointer(buffer).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: source[0..<count * stride]))
        }
        initialized = count
    }
}

/// The communicator is the joining thread's alone (see `Communicator`).
@available(*, unavailable)
extension Communicator: Sendable {}
