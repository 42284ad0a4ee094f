/// The supervisor's answer to a rank's failure: whether the job goes on at all, and which
/// planner recovers it. The one place that switches over checkpoint scheme × logging mode when
/// a rank dies:
///
/// | scheme × logging | planner |
/// |---|---|
/// | any, no logging | `GlobalRollback` (`IndependentPartialRollback` under independent checkpoints) |
/// | pessimistic, sender-based | `LoneReplay`, falling back to `GlobalRollback` |
/// | optimistic | `LoneReplay`'s checks, then `OptimisticOrphans`, falling back to `GlobalRollback` |
///
/// The job gives up when failures exceed `--max-restarts`, or when the program exits with the
/// same error again from the same committed line (it would do so on every attempt).
package struct RecoveryPolicy: Sendable {
    /// The job's logging mode.
    package let logging: LoggingMode
    /// Whether the job takes independent checkpoints.
    package let independent: Bool
    /// `--max-restarts`: failures beyond it end the job.
    package let maxRestarts: Int
    /// Failures so far in this supervisor run.
    package private(set) var failures = 0
    /// The last failure that was the program's own exit (not a signal): the rank, how it
    /// exited, and the line it had started from.
    private var lastProgramError: (rank: Int, exit: String, epoch: UInt64)?

    /// A policy for a job of this scheme and logging mode.
    package init(logging: LoggingMode, independent: Bool, maxRestarts: Int) {
        self.logging = logging
        self.independent = independent
        self.maxRestarts = maxRestarts
    }

    /// A rank died.
    package struct Failure: Sendable, Equatable {
        /// The rank.
        package var rank: RankID
        /// How the program ended when it exited on its own (a status, not a signal or a hang):
        /// the same error again from the same line ends the job.
        package var programExit: String?
        /// The newest committed line's epoch (0: none).
        package var lineEpoch: UInt64

        /// A failure report.
        package init(rank: RankID, programExit: String?, lineEpoch: UInt64) {
            self.rank = rank
            self.programExit = programExit
            self.lineEpoch = lineEpoch
        }
    }

    /// What to do.
    package enum Decision: Sendable, Equatable {
        /// The job stops: the program failed the same way from the same line again.
        case sameErrorAgain(exit: String, epoch: UInt64)
        /// The job stops: more failures than `--max-restarts`.
        case restartsExhausted(failures: Int)
        /// Freeze the survivors and plan the line (`IndependentPartialRollback`).
        case partialRollback
        /// The failed rank restarts alone and replays its log (`LoneReplay`).
        case loneReplay
        /// Optimistic logging: freeze the survivors, restart the failed rank with its orphans
        /// (`OptimisticOrphans`), or roll everyone back when that is not possible.
        case optimisticReplay
        /// Every rank restarts from the newest line (`GlobalRollback`); `fallback`: why the lone
        /// restart a logging mode wanted was not possible.
        case globalRollback(fallback: String?)
    }

    /// Counts a failure and decides. `othersRecovering`: another rank is replaying or still
    /// restarting; `logUncut`: the rank died before cutting its log back after a rollback;
    /// `lineResized`: the newest line was written by another number of ranks (a resize since);
    /// `counted`: whether it counts toward `maxRestarts` (not a rank that stopped because
    /// another failure took its partner host: that failure was counted);
    /// `logLost`: what makes the rank's log unfit to replay (read from disk, so called only
    /// when the decision depends on it).
    package mutating func decide(
        _ failure: Failure, othersRecovering: Bool, logUncut: Bool = false, lineResized: Bool = false,
        counted: Bool = true, logLost: () -> String?
    ) -> Decision {
        if counted { failures += 1 }
        if let programExit = failure.programExit {
            if let last = lastProgramError, last.exit == programExit, last.epoch == failure.lineEpoch {
                return .sameErrorAgain(exit: programExit, epoch: failure.lineEpoch)
            }
            lastProgramError = (failure.rank.rawValue, programExit, failure.lineEpoch)
        } else {
            lastProgramError = nil
        }
        guard failures <= maxRestarts else { return .restartsExhausted(failures: failures) }
        if logging == .none { return independent ? .partialRollback : .globalRollback(fallback: nil) }
        if let reason = LoneReplay.fallbackReason(
            failed: failure.rank, logging: logging, othersRecovering: othersRecovering, logUncut: logUncut,
            lineResized: lineResized, logLost: logLost) {
            return .globalRollback(fallback: reason)
        }
        return logging == .optimistic ? .optimisticReplay : .loneReplay
    }

    /// Counts a failure found while the survivors were frozen for another recovery (it joins
    /// that recovery's plan).
    package mutating func countFailureDuringFreeze() {
        failures += 1
    }
}
