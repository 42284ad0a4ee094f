/// Recovery by global rollback: every rank stops and restarts from the newest committed line
/// that reads intact (an older one when the newest is damaged on both mirrors, the beginning
/// when none reads). It needs nothing from the failed rank and is always possible, so every
/// other planner falls back to it.
package enum GlobalRollback {
    /// The plan after `failed` died: stop every live rank, restart all of them. `fallback`:
    /// why a lone restart was not possible, when one was wanted.
    package static func plan(failed: RankID, rankCount: Int, fallback: String? = nil) -> RecoveryPlan {
        RecoveryPlan(
            mode: .globalRollback, failed: failed, stop: Array(0..<rankCount),
            restart: (0..<rankCount).map { RecoveryPlan.Restart($0, .newestLine) }, replayLog: false, replayLimit: nil, thaw: [],
            fallback: fallback)
    }
}
