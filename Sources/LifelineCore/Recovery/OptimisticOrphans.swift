/// Recovery under optimistic logging: the failed rank's log reached the disk only up to some
/// state interval (`recoverable`: its checkpoint's, plus one per record kept after it); every
/// survivor whose dependency vector names a later interval of the failed rank is an *orphan* —
/// it delivered what the lost states sent — and rolls back too. The failed rank and the orphans
/// restart from the newest intact line and replay their logs up to what depends on nothing lost;
/// the other survivors keep their processes and are thawed once the restarted ranks connect.
///
/// Ranks that fail while the survivors are frozen (a lost host's, which die together) join the
/// recovery: each restarts, replaying up to what its own log recovers, and the orphans are the
/// survivors that depend on a lost state of any of them.
///
/// Fallback to a global rollback: a failed rank's checkpoint or log cannot be read.
package enum OptimisticOrphans {
    /// What the freeze found: the survivors' dependency vectors, and the ranks that failed
    /// (the first one included) or did not answer.
    package struct Freeze: Sendable, Equatable {
        /// Per frozen survivor, its dependency vector (per rank, the newest interval of that
        /// rank it depends on; negative: none).
        package var vectors: [Int: PerPeer<Int>]
        /// The failed rank and every rank that died or did not answer meanwhile.
        package var failed: Set<Int>

        /// A freeze's findings.
        package init(vectors: [Int: PerPeer<Int>], failed: Set<Int>) {
            self.vectors = vectors
            self.failed = failed
        }
    }

    /// The survivors that depend on a state of `failed` beyond `recoverable`, ascending.
    package static func orphans(of failed: RankID, recoverable: UInt64, vectors: [Int: PerPeer<Int>], rankCount: Int) -> [Int] {
        vectors.keys.sorted().filter { survivor in
            guard let vector = vectors[survivor], vector.rankCount == rankCount, failed.rawValue < rankCount else { return false }
            return vector[failed.rawValue] >= 0 && UInt64(vector[failed.rawValue]) > recoverable
        }
    }

    /// The plan, or the reason a global rollback must replace it. `recoverable`: per rank of
    /// `freeze.failed` (the first, `failed`, among them), the last state interval its
    /// checkpoint and log recover, nil when they cannot be read. `alive`: whether a rank's
    /// process is running (a failed rank that did not answer is stopped; the survivors that are
    /// no orphans are thawed).
    package static func plan(
        failed: RankID, recoverable: (Int) -> UInt64?, freeze: Freeze, rankCount: Int, alive: (Int) -> Bool
    ) -> Result<(plan: RecoveryPlan, orphans: [Int]), Fallback> {
        var limits: [Int: UInt64] = [:]
        for rank in freeze.failed.union([failed.rawValue]).sorted() {
            guard let last = recoverable(rank) else {
                return .failure(Fallback("rank \(rank)'s checkpoint or log cannot be read"))
            }
            limits[rank] = last
        }
        let limit = RecoveryPlan.ReplayLimit(recoverable: limits)
        let orphans = freeze.vectors.keys.sorted().filter { survivor in
            guard limits[survivor] == nil, let vector = freeze.vectors[survivor], vector.rankCount == rankCount else { return false }
            return limits.contains { rank, last in rank < rankCount && vector[rank] >= 0 && UInt64(vector[rank]) > last }
        }
        let group = [failed.rawValue] + limits.keys.filter { $0 != failed.rawValue }.sorted() + orphans
        let plan = RecoveryPlan(
            mode: .replay, failed: failed, stop: group.filter { $0 != failed.rawValue && alive($0) },
            restart: group.map { RecoveryPlan.Restart($0, .newestLine) }, replayLog: true, replayLimit: limit,
            thaw: Set((0..<rankCount).filter { !group.contains($0) && alive($0) }), fallback: nil)
        return .success((plan, orphans))
    }

    /// Why an optimistic recovery gave way to a global rollback.
    package struct Fallback: Error, Sendable, Equatable, CustomStringConvertible {
        /// In words.
        package var description: String
        /// A fallback described by `description`.
        package init(_ description: String) { self.description = description }
    }
}
