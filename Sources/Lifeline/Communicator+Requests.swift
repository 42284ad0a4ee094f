import LifelineCore

/// Non-blocking point to point, as MPI's `isend`/`irecv` with `wait`/`test`.
///
/// A send already returns once its bytes are in the kernel (see `send`), so `isend` sends at
/// once and returns a request that is complete. `irecv` posts a receive from a named rank:
/// requests on one (source, tag) channel are matched to its messages in the order they were
/// posted, whichever is waited for first, as in MPI. `wait()` blocks until the request's message
/// is there; `test()` returns it if it is there now, nil otherwise — an outcome that depends on
/// timing, so under message logging it is logged like a value read with `logged` (a replay after
/// a crash sees the same outcomes; under pessimistic and sender-based logging each `test()` that
/// finds its message missing or present is one synced log record, so poll sparingly). A plain
/// `receive` on a channel with requests still pending is refused: it would take a message
/// posted for one of them.
///
/// ```swift
/// let fromLeft = try comm.irecv(Double.self, from: left, tag: 1)
/// try comm.send(edge, to: right, tag: 1)
/// computeInterior()                       // overlaps the message's transfer
/// let halo = try fromLeft.wait()
/// ```
extension Communicator {
    /// Posts a receive of an array of `T` from rank `source` with `tag`; complete it with
    /// `wait()` or `test()`.
    public func irecv<T: BitwiseCopyable>(_ type: T.Type, from source: Int, tag: Int = 0) throws -> ReceiveRequest<T> {
        let channel = Channel(source: try checkedRank(source).rawValue, tag: Int(try checkedTag(tag)))
        var queue = postedReceives[channel] ?? PostedReceives()
        let position = queue.posted
        queue.posted += 1
        postedReceives[channel] = queue
        return ReceiveRequest(communicator: self, channel: channel, position: position)
    }

    /// Sends `values` to `destination` now (a send never waits for its receiver) and returns
    /// the request, already complete: for code written against MPI's `isend`.
    @discardableResult
    public func isend<T: BitwiseCopyable>(_ values: [T], to destination: Int, tag: Int = 0) throws -> SendRequest {
        try send(values, to: destination, tag: tag)
        return SendRequest()
    }

    /// The message of `request`, waiting for it: the messages of its channel are received in
    /// order, each kept for the request it was posted for.
    func complete(_ channel: Channel, position: UInt64) throws -> Message {
        guard var queue = postedReceives[channel], position < queue.posted,
              queue.taken[position] != nil || position >= queue.received else {
            throw LifelineError(.usage, "a receive request from rank \(channel.source) (tag \(channel.tag)) was completed already")
        }
        while queue.taken[position] == nil {
            queue.taken[queue.received] = try runtime.receive(from: RankID(channel.source), tag: Int64(channel.tag))
            queue.received += 1
        }
        let message = queue.taken.removeValue(forKey: position)!
        postedReceives[channel] = queue.taken.isEmpty && queue.received == queue.posted ? nil : queue
        return message
    }

    /// The message of `request` if it has arrived (with every message posted before it on its
    /// channel), nil otherwise; the outcome is logged.
    func completeIfArrived(_ channel: Channel, position: UInt64) throws -> Message? {
        guard let queue = postedReceives[channel], position < queue.posted,
              queue.taken[position] != nil || position >= queue.received else {
            throw LifelineError(.usage, "a receive request from rank \(channel.source) (tag \(channel.tag)) was completed already")
        }
        if queue.taken[position] != nil { return try complete(channel, position: position) }
        let needed = Int(position - queue.received) + 1
        let outcome = try runtime.loggedValue {
            [try runtime.deliverableCount(from: RankID(channel.source), tag: Int64(channel.tag)) >= needed ? 1 : 0]
        }
        guard outcome.count == 1, outcome[0] <= 1 else {
            throw LifelineError(.corruptState, "a logged test outcome has \(outcome.count) bytes, not one of 0 or 1")
        }
        return outcome[0] == 1 ? try complete(channel, position: position) : nil
    }

    /// Refuses a plain receive on a channel with requests pending.
    func checkNoRequestsPending(from source: Int, tag: Int) throws {
        guard let queue = postedReceives[Channel(source: source, tag: tag)], queue.posted > queue.received else { return }
        throw LifelineError(.usage,
            "receive from rank \(source) (tag \(tag)) while \(queue.posted - queue.received) irecv requests on that channel are "
            + "pending: it would take a message posted for one of them; wait for them first")
    }

    /// Refuses a receive from any source with `tag` while an `irecv` with that tag waits: the
    /// message it would take may be the one posted for the request.
    func checkNoRequestsPending(anySourceWithTag tag: Int) throws {
        guard let (channel, queue) = postedReceives.first(where: { $0.key.tag == tag && $0.value.posted > $0.value.received }) else {
            return
        }
        throw LifelineError(.usage,
            "receive from any source (tag \(tag)) while \(queue.posted - queue.received) irecv requests from rank \(channel.source) "
            + "with that tag are pending: it could take a message posted for one of them; wait for them first")
    }

    /// Refuses a safe point while an `irecv` is pending or holds a received message not yet
    /// returned: a checkpoint there counts that message delivered, but it lives in this
    /// communicator, not in the state captured, so a restore would lose it.
    func checkNoRequestsPendingAtSafePoint() throws {
        guard let (channel, queue) = postedReceives.first(where: { $0.value.posted > $0.value.received || !$0.value.taken.isEmpty }) else {
            return
        }
        throw LifelineError(.usage,
            "a safe point while \(queue.posted - queue.received + UInt64(queue.taken.count)) irecv requests from rank \(channel.source) "
            + "(tag \(channel.tag)) are not yet waited for: wait for every request before the safe point")
    }

    /// A (source, tag) channel of posted receives.
    struct Channel: Hashable {
        var source: Int
        var tag: Int
    }

    /// The receives posted on one channel: how many, how many of its messages were received,
    /// and those received and not yet returned, by position.
    struct PostedReceives {
        var posted: UInt64 = 0
        var received: UInt64 = 0
        var taken: [UInt64: Message] = [:]
    }
}

/// A receive posted with `Communicator.irecv`: complete it with `wait()` (blocks) or `test()`
/// (returns nil while its message has not arrived). It belongs to its communicator's thread.
public final class ReceiveRequest<T: BitwiseCopyable> {
    private let communicator: Communicator
    private let channel: Communicator.Channel
    private let position: UInt64
    private var result: [T]?

    init(communicator: Communicator, channel: Communicator.Channel, position: UInt64) {
        self.communicator = communicator
        self.channel = channel
        self.position = position
    }

    /// The rank it receives from.
    public var source: Int { channel.source }
    /// Its tag.
    public var tag: Int { channel.tag }

    /// The values received, waiting for them (again: the same values).
    public func wait() throws -> [T] {
        if let result { return result }
        let values = try communicator.complete(channel, position: position).values(as: T.self)
        result = values
        return values
    }

    /// The values if they have arrived, nil otherwise (a logged outcome; see `irecv`).
    public func test() throws -> [T]? {
        if let result { return result }
        guard let message = try communicator.completeIfArrived(channel, position: position) else { return nil }
        let values = try message.values(as: T.self)
        result = values
        return values
    }
}

/// A send made with `Communicator.isend`: complete when it is returned (see `isend`).
public struct SendRequest: Sendable {
    /// Returns at once: the message was handed to the kernel (and is retained for recovery).
    public func wait() {}
    /// Always true.
    public func test() -> Bool { true }
}

/// The requests are their communicator's thread's alone.
@available(*, unavailable)
extension ReceiveRequest: Sendable {}
