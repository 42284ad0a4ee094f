/// Freezing the survivors before a partial recovery (independent checkpoints, optimistic
/// logging), as a state and not a blocking loop: the supervisor sends `FREEZE` to the ranks it
/// asks, feeds this machine their answers (`frozen`), the deaths it sees and the time, and
/// plans once the freeze is complete. A survivor that is frozen stops delivering and answers
/// with its current interval and dependency vector (after flushing its log).
///
/// Ranks still starting from an earlier plan cannot answer before START: they count as failed
/// at once (they restart with the new plan). A rank that dies meanwhile joins the failed ones;
/// one that has not answered by the deadline too (said in `Outcome.unanswered`). Every
/// survivor's answer is waited for either way: under optimistic logging the ranks that failed
/// together are recovered together, and each survivor's vector says whether it is an orphan.
package struct Freeze: Sendable, Equatable {
    /// What the freeze is for, and what the planner needs from before it.
    package enum Purpose: Sendable, Equatable {
        /// Independent checkpoints without logging (`IndependentPartialRollback`).
        case independent
        /// Optimistic logging (`OptimisticOrphans`): the failed rank's states up to
        /// `recoverable` can be recovered.
        case optimistic(recoverable: UInt64)
    }

    /// How the freeze ended.
    package struct Outcome: Sendable, Equatable {
        /// The first failed rank, the ranks that were starting, died, or did not answer.
        package var failed: Set<Int>
        /// The survivors' answers.
        package var replies: [Int: IndependentPartialRollback.Frozen]
        /// The ranks that did not answer by the deadline (among `failed`), ascending.
        package var unanswered: [Int]

        /// An outcome with every field given.
        package init(failed: Set<Int>, replies: [Int: IndependentPartialRollback.Frozen], unanswered: [Int]) {
            self.failed = failed
            self.replies = replies
            self.unanswered = unanswered
        }
    }

    /// The rank whose failure began the freeze.
    package let first: RankID
    /// What the freeze is for.
    package let purpose: Purpose
    /// When the ranks that have not answered count as failed (job clock).
    package let deadline: Double
    /// The failed ranks so far.
    package private(set) var failed: Set<Int>
    /// The ranks that were still starting from an earlier plan (among `failed`).
    package let restarting: Set<Int>
    /// The asked ranks that have not answered yet.
    package private(set) var waiting: Set<Int>
    /// The answers so far.
    package private(set) var replies: [Int: IndependentPartialRollback.Frozen] = [:]

    /// The survivors to wait for: an answer within `max(5 s, heartbeat timeout)`.
    package static func timeoutSeconds(heartbeatTimeoutSeconds: Double) -> Double { max(5, heartbeatTimeoutSeconds) }

    /// A freeze after `first` failed: `asked` are the live, connected survivors the supervisor
    /// sends `FREEZE` to; `restarting` the ranks still starting from an earlier plan.
    package init(first: RankID, purpose: Purpose, asked: Set<Int>, restarting: Set<Int>, now: Double, timeoutSeconds: Double) {
        self.first = first
        self.purpose = purpose
        self.deadline = now + timeoutSeconds
        self.failed = restarting.union([first.rawValue])
        self.restarting = restarting
        self.waiting = asked.subtracting(failed)
    }

    /// The outcome when the freeze is complete: every asked rank answered or failed.
    package var outcome: Outcome? {
        guard waiting.isEmpty else { return nil }
        return Outcome(failed: failed, replies: replies, unanswered: [])
    }

    /// A survivor answered.
    package mutating func handleReply(from rank: Int, _ frozen: IndependentPartialRollback.Frozen) -> Outcome? {
        guard waiting.remove(rank) != nil else { return nil }  // late, or not asked
        replies[rank] = frozen
        return outcome
    }

    /// A rank died (or hung) during the freeze.
    package mutating func handleRankDied(_ rank: Int) -> Outcome? {
        failed.insert(rank)
        waiting.remove(rank)
        replies[rank] = nil
        return outcome
    }

    /// Time passed: past the deadline, the ranks that have not answered count as failed.
    package mutating func handleTick(now: Double) -> Outcome? {
        if let outcome { return outcome }
        guard now >= deadline else { return nil }
        let unanswered = waiting.sorted()
        failed.formUnion(unanswered)
        waiting = []
        return Outcome(failed: failed, replies: replies, unanswered: unanswered)
    }
}
