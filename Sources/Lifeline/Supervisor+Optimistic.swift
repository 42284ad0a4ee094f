#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// `--logging optimistic`: a crashed rank replays the part of its log that reached the disk;
/// the ranks that depend on what it lost (orphans) roll back too.
extension Supervisor {
    /// The last state interval `rank` can recover: its checkpoint's (in the newest intact line)
    /// plus every record of its log after that checkpoint, or nil when they cannot be read.
    func recoverableInterval(of rank: Int, line: CommittedLine?) -> UInt64? {
        guard let checkpoint = checkpointOf(rank, line: line), checkpoint.dependencies.count == configuration.rankCount,
              let log = try? MessageLog.inspect(store: store, name: MessageLog.name(ofRank: rank)),
              checkpoint.logPosition >= log.kept.lowerBound
        else { return nil }
        // Read only: the log's valid prefix (what opening keeps), whatever it lost after it.
        let start = checkpoint.dependencies[rank]
        return start + (log.kept.upperBound > checkpoint.logPosition ? log.kept.upperBound - checkpoint.logPosition : 0)
    }

    /// What `rank`'s checkpoint in `line` says of its log and dependencies (a rank with no
    /// entry starts from scratch: position 0, no dependencies), or nil when it cannot be read.
    func checkpointOf(_ rank: Int, line: CommittedLine?) -> (logPosition: UInt64, dependencies: [UInt64])? {
        guard let member = line?.members.first(where: { $0.rank == rank }) else {
            return (0, Array(repeating: 0, count: configuration.rankCount))
        }
        guard let bytes = try? ChunkedSnapshots(store: store).read(member.snapshot),
              let snapshot = try? RankSnapshot.decode(
                  bytes, rank: RankID(rank), rankCount: configuration.rankCount,
                  epoch: Epoch(manifests.epoch(ofSnapshot: member.snapshot) ?? 0))
        else { return nil }
        return (snapshot.logPosition, snapshot.dependencies)
    }

    /// Recovers `failed` under optimistic logging: find how far its log reaches, then freeze
    /// the others (they flush their logs and answer with their dependency vectors);
    /// `planOptimisticRecovery` goes on once they have answered. When the log or checkpoint
    /// cannot be read, every rank rolls back at once.
    func recoverOptimistically(failed rank: Int) throws {
        let (line, _) = manifests.newestIntactLine(manifest)
        guard let recoverable = recoverableInterval(of: rank, line: line) else {
            try planOptimisticRecovery(failed: rank, recoverable: nil, Freeze.Outcome(failed: [rank], replies: [:], unanswered: []))
            return
        }
        try startFreeze(first: rank, purpose: .optimistic(recoverable: recoverable))
    }

    /// `OptimisticOrphans` plans the rest from what the freeze found, or says why every rank
    /// must roll back instead.
    func planOptimisticRecovery(failed rank: Int, recoverable: UInt64?, _ outcome: Freeze.Outcome) throws {
        let freeze = OptimisticOrphans.Freeze(vectors: outcome.replies.mapValues(\.dependencies), failed: outcome.failed)
        switch OptimisticOrphans.plan(
            failed: RankID(rank), recoverable: recoverable, freeze: freeze, rankCount: configuration.rankCount,
            alive: { self.slots[$0].alive })
        {
        case .failure(let fallback):
            warn("\(fallback): falling back to global rollback")
            events.record("fallback_global_rollback", ["rank": .int(rank), "reason": .string("\(fallback)")])
            try execute(GlobalRollback.plan(failed: RankID(rank), rankCount: configuration.rankCount, fallback: "\(fallback)"))
        case .success(let (plan, orphans)):
            events.record("orphans", [
                "rank": .int(rank), "recoverable": .int(Int(plan.replayLimit?.recoverable ?? 0)),
                "orphans": .string(orphans.map(String.init).joined(separator: ",")),
            ])
            if !orphans.isEmpty {
                warn("rank \(rank)'s log reaches its state \(plan.replayLimit?.recoverable ?? 0); ranks \(orphans.map(String.init).joined(separator: ", ")) depend on later states it lost and roll back too")
            }
            try execute(plan)
        }
    }
}
