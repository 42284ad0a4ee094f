/// Where the ranks of a job on several hosts run, and where they go when a host is lost: the
/// decision behind `--on-host-loss`, apart from how ranks are launched or judged lost.
///
/// Every host has room for a number of ranks, its *slots*: the `slots=K` of a host file, or
/// else an even share of the job (⌈ranks / hosts⌉, what the first placement gives each host).
/// Hosts the first placement leaves empty, or fills below their slots, are spares. A lost host's
/// ranks go to free slots on the hosts left, the host with the most free slots first (the first
/// in order on a tie), so that a spare host takes the place of a lost one. When the free slots
/// cannot take them all, the policy decides: the ranks double up over the slots of the hosts
/// left, or the job continues on fewer ranks, or it stops.
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
    /// Every host of the job, in order, spares among them, with its slots.
    package let hosts: [Host]
    /// The hosts lost: no rank is placed there again.
    package private(set) var lost: Set<String> = []

    /// The placement `rankHosts` makes on `hosts`, whose slots are the given ones (nil: an even
    /// share of the ranks).
    package init(rankHosts: [String], hosts: [(name: String, slots: Int?)]) {
        let share = hosts.isEmpty ? 0 : (rankHosts.count + hosts.count - 1) / hosts.count
        self.rankHosts = rankHosts
        self.hosts = hosts.map { host in
            Host(name: host.name, slots: max(host.slots ?? share, rankHosts.filter { $0 == host.name }.count))
        }
    }

    /// The ranks `host` holds now.
    package func rankCount(on host: String) -> Int { rankHosts.filter { $0 == host }.count }

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
        lost.insert(host)
        var moves: [Move] = []
        for rank in moving {
            // `max(by:)` and `min(by:)` keep the first of equals: the first host in order.
            let roomiest = left.max { a, b in a.slots - rankCount(on: a.name) < b.slots - rankCount(on: b.name) }!
            let target = roomiest.slots > rankCount(on: roomiest.name)
                ? roomiest
                : left.min { a, b in rankCount(on: a.name) < rankCount(on: b.name) }!
            rankHosts[rank] = target.name
            moves.append(Move(rank: rank, host: target.name))
        }
        return .moved(moves)
    }
}
