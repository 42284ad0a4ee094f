/// When the faults of `--inject` fire: which are due at a time or at a commit, which a rank
/// fires itself (at a step or in a phase: its launch carries them), which fired, and which never
/// did (said at the end, so a run without its fault is not taken for one with it). The runtime's
/// `Supervisor` performs each firing — a signal, its own SIGKILL, a flipped byte, a failing
/// mirror — and reports it fired; `chaos` kills a random rank at exponentially distributed
/// times drawn from its seed.
///
/// | fault | fires |
/// |---|---|
/// | `kill:rank=R,after=T`, `hang:rank=R,after=T`, `kill:supervisor,after=T` | at job time T, by the supervisor |
/// | `kill:supervisor,epoch=E` | when round E commits, after every other fault due then |
/// | `kill:rank=R,step=S`, `kill:rank=R,phase=P` | in the rank (its launch carries it), which reports it |
/// | `corrupt:…,epoch=E`, `fail:mirror=…,epoch=E`, `kill:rank=R,epoch=E` | when round E commits |
/// | `corrupt:…,after=T`, `fail:mirror=…,after=T` | at job time T, once there is such a file |
/// | `lose:memory,epoch=E`, `lose:memory,after=T` | when round E commits, or at job time T |
/// | `chaos:seed=S,mtbf=M` | again and again, every Exp(M) seconds, on a rank drawn from S |
package struct FaultSchedule: Sendable {
    /// A fault the supervisor fires now.
    package enum Firing: Sendable, Equatable {
        /// SIGKILL (`stop`: SIGSTOP, a hang) to the rank's process; the fault at `index`.
        case signal(index: Int, rank: RankID, stop: Bool)
        /// SIGKILL to the supervisor itself.
        case killSupervisor(index: Int)
        /// A storage fault (`corrupt`, `fail`, `lose`) at `index`; it fired only when the runtime says
        /// so (`fired`): a file to damage may not exist yet.
        case storage(index: Int)
        /// `chaos`: SIGKILL to this rank.
        case chaos(rank: RankID)
    }

    /// The faults, as given.
    package let specs: [FaultSpec]
    /// Which fired (indexed like `specs`).
    package private(set) var firedFlags: [Bool]
    private var chaos: (generator: SplitMix64, nextAt: Double, mtbf: Double)?

    /// The schedule of `specs`.
    package init(_ specs: [FaultSpec]) {
        self.specs = specs
        self.firedFlags = Array(repeating: false, count: specs.count)
        for spec in specs {
            guard case .chaos(let seed, let mtbf) = spec else { continue }
            var generator = SplitMix64(seed: seed)
            let first = generator.exponential(mean: mtbf)
            chaos = (generator, first, mtbf)
            break
        }
    }

    /// The fault at `index` fired (reported by a rank, or performed by the runtime).
    package mutating func fired(_ index: Int) {
        guard specs.indices.contains(index) else { return }
        firedFlags[index] = true
    }

    /// What fires at job time `now` on a job of `rankCount` ranks. Signals and the
    /// supervisor's kill count as fired; storage faults when the runtime says they did.
    package mutating func due(now: Double, rankCount: Int) -> [Firing] {
        var firings: [Firing] = []
        for index in specs.indices where !firedFlags[index] {
            switch specs[index] {
            case .killAfter(let rank, let seconds) where now >= seconds:
                firedFlags[index] = true
                firings.append(.signal(index: index, rank: rank, stop: false))
            case .hangAfter(let rank, let seconds) where now >= seconds:
                firedFlags[index] = true
                firings.append(.signal(index: index, rank: rank, stop: true))
            case .killSupervisor(.after(let seconds)) where now >= seconds:
                firedFlags[index] = true
                firings.append(.killSupervisor(index: index))
            case .corrupt(_, .after(let seconds), _) where now >= seconds,
                 .failMirror(_, .after(let seconds), _) where now >= seconds,
                 .loseMemory(.after(let seconds)) where now >= seconds:
                firings.append(.storage(index: index))
            default:
                break
            }
        }
        if case (var generator, var nextAt, let mtbf)? = chaos, now >= nextAt, rankCount > 0 {
            let rank = Int.random(in: 0..<rankCount, using: &generator)
            nextAt = now + generator.exponential(mean: mtbf)
            chaos = (generator, nextAt, mtbf)
            firings.append(.chaos(rank: RankID(rank)))
        }
        return firings
    }

    /// The faults waiting for round `epoch` to commit, the supervisor's own kill last (the
    /// others fire before it).
    package func dueAtCommit(_ epoch: UInt64) -> [Int] {
        let due = specs.indices.filter { index in
            guard !firedFlags[index] else { return false }
            switch specs[index] {
            case .corrupt(_, .epoch(epoch), _), .failMirror(_, .epoch(epoch), _), .loseMemory(.epoch(epoch)),
                 .killAtCommit(_, epoch: epoch), .killSupervisor(.epoch(epoch)): return true
            default: return false
            }
        }
        return due.filter { specs[$0] != .killSupervisor(.epoch(epoch)) } + due.filter { specs[$0] == .killSupervisor(.epoch(epoch)) }
    }

    /// The faults `rank` fires itself that have not fired, with their indices (its launch
    /// carries them).
    package func inRank(_ rank: Int) -> [(index: Int, spec: FaultSpec)] {
        specs.indices.filter { !firedFlags[$0] && specs[$0].firesInRank && specs[$0].rank?.rawValue == rank }
            .map { ($0, specs[$0]) }
    }

    /// The faults that never fired (`chaos` never ends, so it is not among them).
    package var notFired: [FaultSpec] {
        specs.indices.filter { index in
            if case .chaos = specs[index] { return false }
            return !firedFlags[index]
        }.map { specs[$0] }
    }
}
