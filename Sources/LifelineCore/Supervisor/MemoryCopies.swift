/// Multi-level checkpoints on several hosts: where each rank's level-1 copies are, as the
/// supervisor knows it without reading them.
///
/// On one host the supervisor reads the job's folder in memory itself. When the ranks run on
/// other hosts (`--launcher ssh|slurm`), each rank's copies are in its own host's memory, which
/// the supervisor cannot read: it takes a copy for held from the rank's acknowledgement (the
/// copy was hashed when written and is checked again when the rank maps it) until that host is
/// lost, and a rank can restore from it only where it is, on that host.
///
/// | event | decision |
/// |---|---|
/// | a rank acknowledges round R from memory on host H | its copy of R is held on H |
/// | host H is lost (`host_lost`, even when its ranks must stay) | every copy held on H is gone: its memory went with it |
/// | a rank is to restore round R on host H | from memory only when its copy of R is held on H; elsewhere (a rank moved) from disk |
/// | the kept lines move on | forget the copies of rounds no kept line holds |
package struct MemoryCopies: Sendable, Equatable {
    /// Per rank, the host holding its copy of each round.
    private var hosts: [Int: [UInt64: String]] = [:]

    /// No copies held.
    package init() {}

    /// `rank`'s copy of round `round` is in the memory of `host`.
    package mutating func held(rank: Int, round: UInt64, on host: String) {
        hosts[rank, default: [:]][round] = host
    }

    /// `host` is lost: the copies in its memory went with it.
    package mutating func lose(host: String) {
        for rank in hosts.keys { hosts[rank] = hosts[rank]?.filter { $0.value != host } }
    }

    /// Whether `rank`, launched on `host`, finds its copy of round `round` there.
    package func has(rank: Int, round: UInt64, on host: String) -> Bool {
        hosts[rank]?[round] == host
    }

    /// The host holding `rank`'s copy of round `round`, if any is held.
    package func host(of rank: Int, round: UInt64) -> String? {
        hosts[rank]?[round]
    }

    /// Forgets every copy but those of `held` (per round, the ranks whose snapshot of it a kept
    /// line holds) and of rounds from `epoch` on (a round in progress).
    package mutating func forget(before epoch: UInt64, held: [UInt64: Set<Int>]) {
        for rank in hosts.keys {
            hosts[rank] = hosts[rank]?.filter { $0.key >= epoch || held[$0.key]?.contains(rank) == true }
        }
    }
}
