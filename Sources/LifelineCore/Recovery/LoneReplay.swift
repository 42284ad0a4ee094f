/// Recovery by lone replay (pessimistic and sender-based logging): the failed rank restarts from
/// its checkpoint and replays its message log, delivering what it delivered before in the same
/// order; the other ranks keep their processes and send it again what it needs. Optimistic
/// logging starts the same way and adds its orphans (`OptimisticOrphans`).
///
/// Ranks that fail together (a lost host's) each replay alone, side by side: a pessimistic log
/// holds every delivery of its rank, so a replay needs nothing from the others; under
/// sender-based logging a replaying rank waits for the payloads its determinants name, which a
/// failed sender's own re-execution sends again — it sent them, in the original run, before
/// the receiver delivered them, so every wait is for something the other re-executes first.
///
/// Fallbacks to a global rollback: another recovery is under way (one other than these lone
/// replays: a global rollback still starting, optimistic logging's group), the rank died after
/// a rollback before it cut its log back (the log still holds the undone execution), the newest
/// line was written by another number of ranks (the job was resized since: the rank has no
/// entry of its own to restart from), or its log cannot be replayed (pessimistic: lost on both
/// mirrors, or ending before its checkpoint's position; sender-based: the event logger does not
/// hold its records from its entry's position).
package enum LoneReplay {
    /// Whether `failed` can restart alone: nil when it can, else why not.
    ///
    /// `othersRecovering`: a recovery that `failed` cannot join is under way.
    /// `logLost` (pessimistic and sender-based logging): what makes the rank's log unfit to
    /// replay, or nil; called only when the answer depends on it, since it may read the disk.
    /// `lineResized`: the newest line was written by another number of ranks.
    /// `logUncut`: the rank's process re-executed from its entry (a global rollback, a resume)
    /// and died before it cut its log back to that entry: the log still holds deliveries the
    /// rollback undid, which a replay would deliver again.
    package static func fallbackReason(
        failed: RankID, logging: LoggingMode, othersRecovering: Bool, logUncut: Bool = false, lineResized: Bool = false,
        logLost: () -> String?
    ) -> String? {
        if othersRecovering { return "it failed while another rank recovers" }
        if logUncut { return "it failed before it cut its log back to its checkpoint" }
        if lineResized { return "the newest line was written before the job was resized, so it has no entry of its own" }
        if logging == .pessimistic || logging == .senderBased, let lost = logLost() {
            return "its message log cannot be replayed (\(lost))"
        }
        return nil
    }

    /// The plan: `failed` restarts alone and replays its log; under independent checkpoints it
    /// begins from its newest checkpoint that still has a snapshot (`independentStart`, 0 for
    /// the beginning), otherwise from the newest intact line.
    package static func plan(failed: RankID, independentStart: Int?) -> RecoveryPlan {
        RecoveryPlan(
            mode: .replay, failed: failed, stop: [],
            restart: [RecoveryPlan.Restart(failed.rawValue, independentStart.map { .checkpoint($0) } ?? .newestLine)],
            replayLog: true, replayLimit: nil, thaw: [], fallback: nil)
    }
}
