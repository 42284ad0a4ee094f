/// What the supervisor does about a failure, as a recovery planner decided it: which ranks
/// stop, which restart and from where, whether they replay their logs, and which survivors go
/// on. `SupervisorMachine.execute(_:)` turns it into stops and a launch, which the runtime
/// performs without deciding anything itself.
///
/// The planners, one file each: `GlobalRollback`, `LoneReplay`, `OptimisticOrphans`,
/// `IndependentPartialRollback`; `RecoveryPolicy` chooses among them.
package struct RecoveryPlan: Sendable, Equatable {
    /// How the job recovers, as events and messages name it.
    package enum Mode: String, Sendable {
        /// Every rank restarts from the newest committed line.
        case globalRollback = "global-rollback"
        /// The failed rank (with optimistic logging, and its orphans) restarts and replays its
        /// log; every other rank keeps its process.
        case replay
        /// Independent checkpoints: the ranks whose entry in the recovery line is a checkpoint
        /// restart from it; the others keep their processes.
        case partialRollback = "partial-rollback"
    }

    /// Where a restarted rank begins.
    package enum Start: Sendable, Equatable {
        /// Its entry in the newest intact committed line (the beginning when it has none).
        case newestLine
        /// Independent checkpoints: its checkpoint of this index (0: the beginning of the job);
        /// the records of its later checkpoints are forgotten.
        case checkpoint(Int)
    }

    /// One rank to launch and where it begins.
    package struct Restart: Sendable, Equatable {
        /// The rank.
        package var rank: Int
        /// Where it begins.
        package var start: Start
        /// `rank` beginning at `start`.
        package init(_ rank: Int, _ start: Start) {
            self.rank = rank
            self.start = start
        }
    }

    /// Optimistic logging: how far the failed ranks' states can be recovered.
    package struct ReplayLimit: Sendable, Equatable {
        /// Per failed rank (several when they failed together, as a lost host's), the last of
        /// its state intervals that its checkpoint and log recover.
        package var recoverable: [Int: UInt64]

        /// `rank` recoverable up to its state `recoverable`.
        package init(rank: Int, recoverable: UInt64) {
            self.recoverable = [rank: recoverable]
        }

        /// Each failed rank recoverable up to its state given.
        package init(recoverable: [Int: UInt64]) {
            self.recoverable = recoverable
        }

        /// Whether a rank with `vector` depends on a state of a failed rank beyond what its
        /// checkpoint and log recover.
        package func orphans(_ vector: DependencyVector) -> Bool {
            recoverable.contains { rank, last in vector.dependsBeyond(last, of: RankID(rank)) }
        }
    }

    /// How the job recovers.
    package var mode: Mode
    /// The rank whose failure this plan answers.
    package var failed: RankID
    /// The live ranks to stop (SIGKILL) before the restarts, besides the failed one.
    package var stop: [Int]
    /// The ranks to launch, in order, each with where it begins.
    package var restart: [Restart]
    /// Whether the restarted ranks replay their message logs.
    package var replayLog: Bool
    /// Optimistic logging: the failed rank and the last state interval it can recover; a rank
    /// restarted with it replays only what depends on no later state of that rank.
    package var replayLimit: ReplayLimit?
    /// Survivors frozen for the plan, thawed once the restarted ranks are connected.
    package var thaw: Set<Int>
    /// Why a lone restart was not possible (a global rollback in its place), if it was wanted.
    package var fallback: String?

    /// The ranks the plan launches.
    package var restartedRanks: [Int] { restart.map(\.rank) }

    /// Whether every rank restarts.
    package func restartsEveryRank(rankCount: Int) -> Bool { Set(restartedRanks).count == rankCount }
}
