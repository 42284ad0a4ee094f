/// Recovery under independent checkpoints without logging: the survivors are frozen and report
/// their current interval and its dependency vector; the recovery line is the latest consistent
/// one that keeps every survivor's current state where it can (`IntervalDependencies.latestLine`).
/// Exactly the ranks whose entry is a checkpoint roll back to it (0: the beginning of the job);
/// the others keep their processes and are thawed once the restarted ranks connect. When every
/// rank that rolls back goes back to the beginning although it had checkpoints, that is the
/// domino effect, and it is said.
package enum IndependentPartialRollback {
    /// A survivor's answer to the freeze.
    package struct Frozen: Sendable, Equatable {
        /// The rank's current interval (its checkpoints so far).
        package var interval: Int
        /// The dependency vector of that interval (sparse: -1 where none).
        package var dependencies: PerPeer<Int>

        /// An answer.
        package init(interval: Int, dependencies: PerPeer<Int>) {
            self.interval = interval
            self.dependencies = dependencies
        }
    }

    /// The recovery line and what follows from it.
    package struct Line: Sendable, Equatable {
        /// Per rank, the checkpoint it rolls back to (0: the beginning), or nil: it keeps its state.
        package var entries: [Int?]
        /// The ranks that roll back, ascending.
        package var rolledBack: [Int]
        /// Every rank that rolls back goes back to the beginning though one had checkpoints.
        package var domino: Bool
        /// What the supervisor does.
        package var plan: RecoveryPlan
    }

    /// The line after `failed` (with the ranks that died or did not answer the freeze) failed.
    /// `frozen`: the survivors' answers; `recordCounts`: per rank, the checkpoints the
    /// supervisor has recorded (a survivor whose interval differs — a checkpoint that failed —
    /// cannot be placed in the line and rolls back too); `first`: the rank whose failure began it.
    package static func line(
        first: RankID, failed: Set<Int>, frozen: [Int: Frozen], recordCounts: [Int], dependencies: IntervalDependencies
    ) -> Line {
        let rankCount = recordCounts.count
        var failed = failed
        for (rank, reply) in frozen where reply.interval != recordCounts[rank] { failed.insert(rank) }
        let volatile = (0..<rankCount).map { failed.contains($0) ? nil : frozen[$0]?.dependencies }
        let entries = dependencies.latestLine(
            failed: failed.union((0..<rankCount).filter { volatile[$0] == nil }), volatile: volatile)
        let rolledBack = entries.indices.filter { entries[$0] != nil }
        let domino = !rolledBack.isEmpty && rolledBack.allSatisfy { entries[$0] == 0 }
            && rolledBack.contains { recordCounts[$0] > 0 }
        let plan = RecoveryPlan(
            mode: rolledBack.count == rankCount ? .globalRollback : .partialRollback, failed: first, stop: rolledBack,
            restart: rolledBack.map { RecoveryPlan.Restart($0, .checkpoint(entries[$0]!)) }, replayLog: false,
            replayLimit: nil, thaw: Set(entries.indices.filter { entries[$0] == nil }), fallback: nil)
        return Line(entries: entries, rolledBack: rolledBack, domino: domino, plan: plan)
    }
}
