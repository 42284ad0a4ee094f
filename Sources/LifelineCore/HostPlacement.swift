/// Where the ranks of a job on several hosts run, and where they go when a host is lost: the
/// decision behind `--on-host-loss`, apart from how ranks are launched or judged lost.
///
/// Every host has room for a number of ranks, its *slots*: the `slots=K` of a host file, or
/// else an even share of the job (⌈ranks / hosts⌉, what the first placement gives each host).
/// Hosts the first placement leaves empty, or fills below their slots, are spares. A lost host's
/// ranks go to free slots on the hosts left, the host with the most free slots first (the first
/// in order on a tie), so that a spare host takes the place of a lost one — or, with partner
/// copies (`prefersPartner`), the lost host's partner first while it has free slots, where its
/// ranks' second copies are on the local disk, or with levels in its memory. When the free slots
/// cannot take them all, the policy decides: the ranks double up over the slots of the hosts
/// left, or the job continues on fewer ranks, or it stops.
///
/// A lost host that answers again (`readmit(_:now:)`) takes ranks again: the ranks then beyond
/// their hosts' slots go back to it (`movesBack(to:)`), its own first; it is a spare otherwise.
package struct HostPlacement: Sendable, Equatable {
    /// A host and its slots.
    package struct Host: Sendable, Equatable {
        /// The host's name, as the job gives it.
        package var name: String
        /// The ranks it has room for.
        package var slots: Int

        /// A host with every field given.
        package init(name: String, slots: Int) {
            self.name = name
            self.slots = slots
        }
    }

    /// A rank moved off a lost host.
    package struct Move: Sendable, Equatable {
        /// The rank.
        package var rank: Int
        /// The host it runs on from now on.
        package var host: String

        /// A move with every field given.
        package init(rank: Int, host: String) {
            self.rank = rank
            self.host = host
        }
    }

    /// What losing a host leads to.
    package enum Loss: Sendable, Equatable {
        /// Its ranks moved to the hosts left (the host is now lost).
        case moved([Move])
        /// The free slots of the hosts left cannot take its ranks, and doubling up was not
        /// allowed: the hosts left (not lost, in order, with their slots) hold `rankCount` ranks,
        /// fewer than the job's. Nothing changed.
        case noRoom(hostsLeft: [Host], rankCount: Int)
        /// No other host is left (nothing changed: the ranks stay where they are).
        case lastHost
    }

    /// Each rank's host.
    package private(set) var rankHosts: [String]
    /// Each rank's host in the first placement.
    package let firstRankHosts: [String]
    /// Every host of the job, in order, spares among them, with its slots.
    package let hosts: [Host]
    /// The hosts lost: no rank is placed there again.
    package private(set) var lost: Set<String> = []
    /// When a rank on each host was last heard from or launched (job clock).
    private var heardAt: [String: Double] = [:]
    /// Whether a lost host's ranks go to its partner host (`partner(of:rankHosts:)`) before
    /// the roomiest host, while it has free slots: the second copies are on partner hosts.
    package var prefersPartner = false

    /// The placement `rankHosts` makes on `hosts`, whose slots are the given ones (nil: an even
    /// share of the ranks).
    package init(rankHosts: [String], hosts: [(name: String, slots: Int?)]) {
        let share = hosts.isEmpty ? 0 : (rankHosts.count + hosts.count - 1) / hosts.count
        self.rankHosts = rankHosts
        self.firstRankHosts = rankHosts
        self.hosts = hosts.map { host in
            Host(name: host.name, slots: max(host.slots ?? share, rankHosts.filter { $0 == host.name }.count))
        }
    }

    /// The ranks `host` holds now.
    package func rankCount(on host: String) -> Int { rankHosts.filter { $0 == host }.count }

    // MARK: Judging a host lost

    /// `rank` sent something now, or was launched now: its host gets a heartbeat timeout from
    /// then before it is suspected.
    package mutating func heard(from rank: Int, now: Double) { heardAt[rankHosts[rank]] = now }

    /// Seconds since a rank on `host` was last heard from or launched (since the job began,
    /// `now`, for a host no rank was launched on).
    package func silence(of host: String, now: Double) -> Double { now - (heardAt[host] ?? 0) }

    /// The silence rule: the hosts of the `silent` ranks (past their heartbeat or join timeout)
    /// none of whose ranks was heard from for half the heartbeat timeout either (a live rank
    /// beats every heartbeat period): their link was cut, or they died with their processes.
    /// A host of one rank is not judged on that rank's silence (it may only be hung): a
    /// replacement that cannot connect from there says it (`lostByExit`). Each with its cause.
    package func lostBySilence(of silent: [Int], now: Double, heartbeatTimeoutSeconds: Double) -> [(host: String, cause: String)] {
        Set(silent.map { rankHosts[$0] }).sorted().compactMap { host in
            let silence = silence(of: host, now: now)
            guard !lost.contains(host), silence > heartbeatTimeoutSeconds / 2, rankCount(on: host) > 1 else { return nil }
            return (host, "none of its ranks was heard from for \(Self.seconds(silence)) s")
        }
    }

    /// The exit rule: `rank` ended with a failing status (`exit`, in words) before its control
    /// connection was taken, and no rank of its host was heard from for the heartbeat timeout:
    /// the host is cut off (a rank that cannot reach the supervisor exits with 3; srun fails to
    /// start a step on an unreachable node). Its host and the cause, or nil.
    package func lostByExit(of rank: Int, exit: String, now: Double, heartbeatTimeoutSeconds: Double) -> (host: String, cause: String)? {
        let host = rankHosts[rank]
        let silence = silence(of: host, now: now)
        guard !lost.contains(host), silence > heartbeatTimeoutSeconds else { return nil }
        return (host, "rank \(rank) \(exit) before it connected, and no rank there was heard from for \(Self.seconds(silence)) s")
    }

    /// `value` with one decimal (no Foundation here).
    static func seconds(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)"
    }

    /// Loses `host`: its ranks go to free slots on the hosts left, and past their slots (to the
    /// hosts that hold the fewest ranks then) only when `beyondSlots`. See `Loss`.
    package mutating func lose(_ host: String, beyondSlots: Bool) -> Loss {
        let left = hosts.filter { $0.name != host && !lost.contains($0.name) }
        guard !left.isEmpty else { return .lastHost }
        let moving = rankHosts.indices.filter { rankHosts[$0] == host }
        let free = left.reduce(0) { $0 + max(0, $1.slots - rankCount(on: $1.name)) }
        if free < moving.count, !beyondSlots {
            return .noRoom(hostsLeft: left, rankCount: left.reduce(0) { $0 + $1.slots })
        }
        let partner = prefersPartner ? Self.partner(of: host, rankHosts: rankHosts).flatMap { name in
            left.first { $0.name == name }
        } : nil
        lost.insert(host)
        var moves: [Move] = []
        for rank in moving {
            // `max(by:)` and `min(by:)` keep the first of equals: the first host in order.
            let roomiest = left.max { a, b in a.slots - rankCount(on: a.name) < b.slots - rankCount(on: b.name) }!
            let target = if let partner, partner.slots > rankCount(on: partner.name) {
                partner
            } else if roomiest.slots > rankCount(on: roomiest.name) {
                roomiest
            } else {
                left.min { a, b in rankCount(on: a.name) < rankCount(on: b.name) }!
            }
            rankHosts[rank] = target.name
            moves.append(Move(rank: rank, host: target.name))
        }
        return .moved(moves)
    }
}

extension HostPlacement {
    /// `host`, lost, answers again: it is not lost any more, and takes ranks again. Its ranks'
    /// silence counts from `now`.
    package mutating func readmit(_ host: String, now: Double) {
        guard lost.remove(host) != nil else { return }
        heardAt[host] = now
    }

    /// The ranks that go to `host` (a host that is not lost) now: those beyond their hosts'
    /// slots, while `host` has free slots; of each host's, those whose first host was `host`
    /// first, then the highest ranks. Moves them.
    package mutating func movesBack(to host: String) -> [Move] {
        guard !lost.contains(host), let target = hosts.first(where: { $0.name == host }) else { return [] }
        var moves: [Move] = []
        for crowded in hosts where crowded.name != host && !lost.contains(crowded.name) {
            let excess = rankCount(on: crowded.name) - crowded.slots
            guard excess > 0 else { continue }
            let candidates = rankHosts.indices.filter { rankHosts[$0] == crowded.name }
                .sorted { a, b in
                    let (homeA, homeB) = (firstRankHosts[a] == host, firstRankHosts[b] == host)
                    return homeA != homeB ? homeA : (homeA ? a < b : a > b)
                }
            for rank in candidates.prefix(excess) where rankCount(on: host) < target.slots {
                rankHosts[rank] = host
                moves.append(Move(rank: rank, host: host))
            }
        }
        return moves.sorted { $0.rank < $1.rank }
    }
}

extension HostPlacement {
    /// With partner copies (`{partner}` in `--storage`): the host that keeps `host`'s second
    /// copies, the next host in the order of their lowest rank (the last one's, the first), of
    /// `rankHosts` (each rank's host; nil: not placed). Nil when `host` holds no rank or is the
    /// only host that does.
    package static func partner(of host: String, rankHosts: [String?]) -> String? {
        var order: [String] = []
        for case let name? in rankHosts where !order.contains(name) { order.append(name) }
        guard order.count > 1, let position = order.firstIndex(of: host) else { return nil }
        return order[(position + 1) % order.count]
    }
}

extension HostPlacement {
    /// `--on-host-loss`: what the job does when the free slots of the hosts left cannot take a
    /// lost host's ranks.
    package enum Policy: String, Sendable {
        /// The ranks double up past the slots of the hosts left.
        case wait
        /// Every rank stops at the newest line and the job continues on the ranks the hosts
        /// left have slots for.
        case shrink
        /// Every rank stops at the newest line and the job ends, saying how to resume.
        case fail
    }

    /// What the job does about a lost host.
    package enum Decision: Sendable, Equatable {
        /// No other host is left: nothing changes (the ranks' own failures end the job).
        case lastHost
        /// The lost host's ranks moved: to free slots, or doubled up under `wait`, or doubled
        /// up because the job could not shrink (`shrinkRefused` says why).
        case moved([Move], shrinkRefused: String?)
        /// Stop every rank at the newest line and continue on `rankCount` ranks on `hosts`.
        case shrink(rankCount: Int, hosts: [Host])
        /// Stop every rank at the newest line and end the job; it can resume on `rankCount`
        /// ranks on `hosts`, or on a replacement host.
        case fail(rankCount: Int, hosts: [Host])
    }

    /// Loses `host` under `policy`. Free slots take its ranks first, under every policy; when
    /// they cannot, `wait` doubles them up, `fail` stops, and `shrink` continues on fewer ranks
    /// unless `shrinkRefusal` (asked only then) says why the job cannot — then they double up.
    package mutating func lose(_ host: String, policy: Policy, shrinkRefusal: () -> String?) -> Decision {
        switch lose(host, beyondSlots: policy == .wait) {
        case .lastHost:
            return .lastHost
        case .moved(let moves):
            return .moved(moves, shrinkRefused: nil)
        case .noRoom(let left, let rankCount):
            if policy == .fail { return .fail(rankCount: rankCount, hosts: left) }
            guard let refusal = shrinkRefusal() else { return .shrink(rankCount: rankCount, hosts: left) }
            guard case .moved(let moves) = lose(host, beyondSlots: true) else { return .lastHost }
            return .moved(moves, shrinkRefused: refusal)
        }
    }
}
