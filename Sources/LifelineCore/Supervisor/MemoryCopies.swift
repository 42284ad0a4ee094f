/// Multi-level checkpoints on several hosts: where each rank's level-1 copies are, as the
/// supervisor knows it without reading them.
///
/// On one host the supervisor reads the job's folder in memory itself. When the ranks run on
/// other hosts (`--launcher ssh|slurm`), each rank's copies are in its own host's memory, and a
/// second copy in its partner host's memory, which the supervisor cannot read: it takes a copy
/// for held from the rank's acknowledgement (the copy was hashed when written and is checked
/// again when the rank maps it) until that host is lost. A rank restores from it where it is —
/// on its host, or on the partner host, where a lost host's ranks are placed first — or, placed
/// on a host that holds none, fetches it from a host that does.
///
/// | event | decision |
/// |---|---|
/// | a rank acknowledges round R from memory on host H, its partner P holding the second copy | its copy of R is held on H and on P |
/// | host H is lost (`host_lost`, even when its ranks must stay) | every copy held on H is gone from H: its memory went with it; one also held on a partner is held there alone |
/// | a rank is to restore round R on host H | from memory when its copy of R is held on a live host: on H in place, else fetched from there; when none is, from disk (and it reads no copy it finds on H: another run's) |
/// | a rank is launched to restore round R | its other copies are gone: it removes them as it starts |
/// | a rank could not read the snapshot it was to restore (exit status 4) | its copies are gone |
/// | a line commits | forget the copies of rounds before it but the snapshots it holds: each rank removes the others at `DONE` |
package struct MemoryCopies: Sendable, Equatable {
    /// A copy held: where, and what its checkpoint says of its log (as its ACK said: the
    /// supervisor reads no copy on another host, and optimistic logging's orphan search needs it).
    package struct Copy: Sendable, Equatable {
        /// The host whose memory holds it.
        package var host: String
        /// The partner host whose memory holds the second copy, if one does.
        package var partner: String?
        /// Where the checkpoint starts its log.
        package var logPosition: UInt64
        /// The state intervals the checkpoint depends on (optimistic logging; nil: not said).
        package var dependencies: DependencyVector?
    }

    /// Per rank, its copy of each round held.
    private var hosts: [Int: [UInt64: Copy]] = [:]

    /// No copies held.
    package init() {}

    /// `rank`'s copy of round `round` is in the memory of `host`, and of `partner` when a
    /// partner host holds the second copy; its checkpoint starts its log at `logPosition` and
    /// depends on `dependencies`.
    package mutating func held(
        rank: Int, round: UInt64, on host: String, partner: String? = nil, logPosition: UInt64 = 0,
        dependencies: DependencyVector? = nil
    ) {
        hosts[rank, default: [:]][round] = Copy(
            host: host, partner: partner == host ? nil : partner, logPosition: logPosition, dependencies: dependencies)
    }

    /// `host` is lost: the copies in its memory went with it. A copy its partner holds too is
    /// held there alone.
    package mutating func lose(host: String) {
        for rank in hosts.keys {
            hosts[rank] = hosts[rank]?.compactMapValues { copy in
                var copy = copy
                if copy.partner == host { copy.partner = nil }
                guard copy.host == host else { return copy }
                guard let partner = copy.partner else { return nil }
                copy.host = partner
                copy.partner = nil
                return copy
            }
        }
    }

    /// Whether `rank`, launched on `host`, finds its copy of round `round` there: on the host
    /// that wrote it, or on its partner.
    package func has(rank: Int, round: UInt64, on host: String) -> Bool {
        guard let copy = hosts[rank]?[round] else { return false }
        return copy.host == host || copy.partner == host
    }

    /// `rank`'s copy of round `round`, if one is held.
    package func copy(of rank: Int, round: UInt64) -> Copy? {
        hosts[rank]?[round]
    }

    /// The line of round `epoch` committed, with per rank the round of its snapshot in it
    /// (`members`): forgets every copy of a round before it but those, as each rank removes its
    /// older copies at the line's `DONE` but its entry in the line.
    package mutating func committed(_ epoch: UInt64, members: [Int: UInt64]) {
        for rank in hosts.keys {
            hosts[rank] = hosts[rank]?.filter { $0.key >= epoch || members[rank] == $0.key }
        }
    }

    /// `rank` is launched to restore its snapshot of round `round` (0: none): it removes every
    /// other copy of its own as it starts.
    package mutating func relaunched(rank: Int, restoring round: UInt64) {
        hosts[rank] = hosts[rank]?.filter { $0.key == round }
    }

    /// `rank`'s copies are gone (it could not read the one it was to restore).
    package mutating func forget(rank: Int) {
        hosts[rank] = nil
    }
}
