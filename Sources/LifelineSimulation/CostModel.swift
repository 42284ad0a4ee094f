import LifelineCore

/// What time costs in a simulated job, from floors measured on a real machine, so that virtual
/// time says what a round or a recovery would take there: a small message's one-way latency
/// (half the raw socket round trip), the socket bandwidth, one `fdatasync`, what handling one
/// control message costs the node that sends or receives it, and a step's computation.
///
/// With a cost model the simulator times every path from it (a little jitter keeps channels
/// overtaking each other):
/// - a data message: latency + bytes / bandwidth;
/// - a snapshot: bytes / bandwidth + one sync per mirror; a manifest commit likewise, during
///   which the supervisor handles nothing else;
/// - a launch: `launchSeconds` until the process is connected (every rank of a launch in
///   parallel; an assumption, where the other figures are floors);
/// - a delivery that must reach the log first (pessimistic records, sender-based
///   determinants): one sync, before the program goes on;
/// - the supervisor: one control message at a time, each costing `perMessageSeconds` + bytes /
///   bandwidth, whether it sends it or receives it (the coordinator is a queue);
/// - with `fanIn` k > 0, a tree of coordinators: a rank's step report and ACK go to its
///   aggregator, which waits for its k children and sends their messages on as one, level
///   after level (⌈log_k N⌉ levels), and every message from the supervisor goes down the tree
///   the same way, one message per child at each level. Other control messages go straight
///   to the supervisor.
///
/// Without one (the default, for the swarm) delays are drawn wide so that interleavings vary,
/// and the supervisor takes no time.
package struct CostModel: Sendable, Equatable {
    /// One-way latency of a small message (seconds).
    package var latencySeconds: Double
    /// Bytes per second on a link or to the disk.
    package var bytesPerSecond: Double
    /// One `fdatasync` (seconds).
    package var syncSeconds: Double
    /// What sending or receiving one control message costs its node (seconds): a system call
    /// and a decode.
    package var perMessageSeconds: Double
    /// A step's computation (seconds).
    package var stepSeconds: Double
    /// From a launch to the process connected to the supervisor (seconds): an assumption, not
    /// a measured floor.
    package var launchSeconds: Double
    /// The coordinator tree's fan-in (0: one flat coordinator).
    package var fanIn: Int

    /// A cost model with every figure given.
    package init(latencySeconds: Double, bytesPerSecond: Double, syncSeconds: Double, perMessageSeconds: Double,
                 stepSeconds: Double, launchSeconds: Double = 0.02, fanIn: Int = 0) {
        self.latencySeconds = latencySeconds
        self.bytesPerSecond = bytesPerSecond
        self.syncSeconds = syncSeconds
        self.perMessageSeconds = perMessageSeconds
        self.stepSeconds = stepSeconds
        self.launchSeconds = launchSeconds
        self.fanIn = fanIn
    }

    /// The floors of the benchmark run behind Benchmarks/RESULTS.md on this project's 2-core
    /// machine (raw Unix-socket 64 B round trip 45 µs, 1 MiB bandwidth 7.0 GB/s, a 4 KiB
    /// write + fdatasync 1.1 ms), a control message costing one one-way latency, 10 ms steps,
    /// 20 ms from a launch to the process connected.
    /// `lifeline-bench --suite scale` measures its own floors and passes them instead.
    package static let referenceMachine = CostModel(
        latencySeconds: 22.5e-6, bytesPerSecond: 7.0e9, syncSeconds: 1.1e-3, perMessageSeconds: 22.5e-6, stepSeconds: 0.01)

    /// Seconds to move `bytes`.
    func transfer(_ bytes: Int) -> Double { Double(bytes) / bytesPerSecond }

    /// The levels of the tree above the ranks for `rankCount` ranks (the supervisor is the
    /// last): the smallest L with fanIn^L ≥ rankCount, at least 1.
    func levels(rankCount: Int) -> Int {
        guard fanIn > 1 else { return 1 }
        var levels = 1
        var span = fanIn
        while span < rankCount {
            span *= fanIn
            levels += 1
        }
        return levels
    }
}

/// The control paths under a cost model: the supervisor as a queue, and the coordinator tree.
extension Simulation {
    /// A node of the coordinator tree: level 1 aggregates ranks, the top level is the supervisor.
    struct TreeNode: Hashable {
        var level: Int
        var index: Int
    }

    /// An aggregator's gathering of one round's step reports or ACKs.
    struct Gathering {
        /// The children it waits for, and those heard.
        var expected: Int
        var heard = 0
        /// The messages gathered, with their rank and its incarnation.
        var messages: [(rank: Int, incarnation: UInt32, message: ControlMessage)] = []
        var bytes = 0
        /// When the last child's part arrived.
        var lastArrival = 0.0
    }

    /// What a gathering is keyed by: the node, the message kind and its round.
    struct GatheringKey: Hashable {
        var node: TreeNode
        var kind: UInt8
        var epoch: UInt64
    }

    /// The span of ranks under one node of `level`.
    func span(level: Int) -> Int {
        var span = 1
        for _ in 0..<level { span *= max(2, costModel!.fanIn) }
        return span
    }

    /// The children a node of the tree has (ranks or aggregators one level down).
    func childCount(of node: TreeNode) -> Int {
        let first = node.index * span(level: node.level)
        let last = min(settings.rankCount, first + span(level: node.level))
        let childSpan = span(level: node.level - 1)
        return (last - first + childSpan - 1) / childSpan
    }

    /// Sends from the supervisor gathered while an event was handled go out: one at a time
    /// from a flat coordinator; down the tree, one message per child and level, otherwise.
    func flushControlDown() {
        guard let model = costModel, !pendingDown.isEmpty else { return }
        let sends = pendingDown
        pendingDown = []
        supervisorBusyUntil = max(now, supervisorBusyUntil)
        let levels = model.levels(rankCount: settings.rankCount)
        guard model.fanIn > 1, levels > 1 else {
            report.supervisorMessages += sends.count
            for (rank, message, bytes) in sends {
                supervisorBusyUntil += model.perMessageSeconds + model.transfer(bytes)
                deliverToRank(rank, message, at: supervisorBusyUntil + model.latencySeconds)
            }
            return
        }
        // Down the tree: each node sends one message per child with a part of these (its
        // bytes), in child order, after the message reached it.
        func send(_ sends: ArraySlice<(rank: Int, message: ControlMessage, bytes: Int)>, from node: TreeNode, reachedAt: Double) {
            var busy = node.level == levels ? supervisorBusyUntil : max(reachedAt, aggregatorBusyUntil[node] ?? 0)
            let childSpan = span(level: node.level - 1)
            var start = sends.startIndex
            while start < sends.endIndex {
                let child = sends[start].rank / childSpan
                var end = start
                var bytes = 0
                while end < sends.endIndex, sends[end].rank / childSpan == child {
                    bytes += sends[end].bytes
                    end += 1
                }
                busy += model.perMessageSeconds + model.transfer(bytes)
                if node.level == levels { report.supervisorMessages += 1 }
                let arrival = busy + model.latencySeconds
                if node.level == 1 {
                    for send in sends[start..<end] { deliverToRank(send.rank, send.message, at: arrival) }
                } else {
                    send(sends[start..<end], from: TreeNode(level: node.level - 1, index: child), reachedAt: arrival)
                }
                start = end
            }
            if node.level == levels { supervisorBusyUntil = busy } else { aggregatorBusyUntil[node] = busy }
        }
        send(ArraySlice(sends.sorted { $0.rank < $1.rank }), from: TreeNode(level: levels, index: 0), reachedAt: now)
    }

    /// A control message reaches `rank` at `time` (after the ones sent to it before).
    func deliverToRank(_ rank: Int, _ message: ControlMessage, at time: Double) {
        let arrival = max(time, toRankBusyUntil[rank])
        toRankBusyUntil[rank] = arrival
        schedule(.toRank(rank: rank, incarnation: processes[rank].incarnation, message), at: arrival)
    }

    /// A control message from `rank` under a cost model: a round's step report or ACK climbs the
    /// tree (when there is one); anything else goes straight to the supervisor's queue.
    func sendUp(from rank: Int, _ message: ControlMessage, bytes: Int) {
        let model = costModel!
        let arrival = now + model.latencySeconds + model.transfer(bytes) * jitter()
        let levels = model.levels(rankCount: settings.rankCount)
        let gathered: (kind: UInt8, epoch: UInt64)? = switch message {
        case .stepReport(let epoch, _): (1, epoch.rawValue)
        case .ack(let epoch, _) where settings.variant != .independent: (2, epoch.rawValue)
        case .captured(let epoch, _): (3, epoch.rawValue)
        default: nil
        }
        guard model.fanIn > 1, levels > 1, let (kind, epoch) = gathered else {
            let time = max(arrival, toSupervisorBusyUntil[rank])
            toSupervisorBusyUntil[rank] = time
            schedule(.toSupervisor(rank: rank, incarnation: processes[rank].incarnation, message), at: time)
            return
        }
        gather([(rank, processes[rank].incarnation, message)], bytes: bytes,
               at: TreeNode(level: 1, index: rank / span(level: 1)), kind: kind, epoch: epoch, arrival: arrival)
    }

    /// Part of a gathering reaches `node`; when every child's part is in, the node sends them on
    /// as one message (to its parent, or, from the top aggregator, to the supervisor).
    private func gather(_ messages: [(rank: Int, incarnation: UInt32, message: ControlMessage)], bytes: Int, at node: TreeNode,
                        kind: UInt8, epoch: UInt64, arrival: Double) {
        let model = costModel!
        let key = GatheringKey(node: node, kind: kind, epoch: epoch)
        var gathering = gatherings.removeValue(forKey: key) ?? Gathering(expected: childCount(of: node))
        gathering.heard += 1
        gathering.messages += messages
        gathering.bytes += bytes
        gathering.lastArrival = max(gathering.lastArrival, arrival)
        // The node receives each part in turn.
        let received = max(gathering.lastArrival, aggregatorBusyUntil[node] ?? 0) + model.perMessageSeconds
        aggregatorBusyUntil[node] = received
        guard gathering.heard == gathering.expected else {
            gatherings[key] = gathering
            return
        }
        let sent = received + model.perMessageSeconds + model.transfer(gathering.bytes)
        aggregatorBusyUntil[node] = sent
        let reached = sent + model.latencySeconds
        if node.level + 1 == model.levels(rankCount: settings.rankCount) {
            schedule(.gatheredToSupervisor(gathering.messages, bytes: gathering.bytes), at: reached)
        } else {
            gather(gathering.messages, bytes: gathering.bytes,
                   at: TreeNode(level: node.level + 1, index: node.index / model.fanIn), kind: kind, epoch: epoch, arrival: reached)
        }
    }

    /// A round began: gatherings of older rounds will never complete (their round aborted).
    func forgetGatherings(before epoch: UInt64) {
        guard !gatherings.isEmpty else { return }
        gatherings = gatherings.filter { $0.key.epoch >= epoch }
    }

    /// Under a cost model, a message for the supervisor while it is busy (or others wait) joins
    /// its queue, taken in order at `supervisorReady`; true when queued. Otherwise the
    /// supervisor is busy with it from now.
    func queueForSupervisor(_ event: Event) -> Bool {
        guard costModel != nil else { return false }
        if supervisorBusyUntil > now || !supervisorQueue.isEmpty {
            supervisorQueue.append(event)
            if !supervisorReadyPending {
                supervisorReadyPending = true
                schedule(.supervisorReady, at: max(now, supervisorBusyUntil))
            }
            return true
        }
        supervisorBusyUntil = now + supervisorServiceSeconds(event)
        return false
    }

    /// What handling a message costs the supervisor.
    func supervisorServiceSeconds(_ event: Event) -> Double {
        guard let model = costModel else { return 0 }
        switch event {
        case .toSupervisor(_, _, let message): return model.perMessageSeconds + model.transfer(message.frame().count)
        case .gatheredToSupervisor(_, let bytes): return model.perMessageSeconds + model.transfer(bytes)
        default: return 0
        }
    }

    /// A small random stretch (0–10 %) so that equal paths still overtake each other.
    func jitter() -> Double { 1 + 0.1 * Double.random(in: 0..<1, using: &generator) }
}

/// A first-in first-out queue of events (the supervisor's inbox under a cost model).
struct EventQueue {
    private var events: [Simulation.Event] = []
    private var head = 0

    /// Whether nothing waits.
    var isEmpty: Bool { head == events.count }
    /// How many wait.
    var count: Int { events.count - head }

    /// Adds an event at the back.
    mutating func append(_ event: Simulation.Event) { events.append(event) }

    /// The events waiting, front first.
    var waiting: ArraySlice<Simulation.Event> { events[head...] }

    /// Takes the event at the front.
    mutating func removeFirst() -> Simulation.Event? {
        guard head < events.count else { return nil }
        let event = events[head]
        head += 1
        if head > 1024, head * 2 > events.count {
            events.removeFirst(head)
            head = 0
        }
        return event
    }
}
