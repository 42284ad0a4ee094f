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

    /// Recovers `failed` under optimistic logging: find how far its log reaches, freeze the
    /// others (they flush their logs) and take their dependency vectors; every rank that depends
    /// on a lost state of `failed` is an orphan. The failed rank and the orphans restart from
    /// their checkpoints and replay their logs up to what depends on nothing lost; the others
    /// keep their processes, drop what the restarted incarnations sent, and are thawed.
    /// Returns false when that is not possible (the caller rolls everyone back).
    func recoverOptimistically(failed rank: Int) throws -> Bool {
        let (line, _) = manifests.newestIntactLine(manifest)
        guard let recoverable = recoverableInterval(of: rank, line: line) else {
            warn("rank \(rank)'s checkpoint or log cannot be read: falling back to global rollback")
            return false
        }
        let failed = try freezeSurvivors(failed: rank, stopAtSecondFailure: true)
        guard failed == [rank] else {
            warn("another rank failed while rank \(rank) recovers: falling back to global rollback")
            return false
        }
        let orphans = frozenReplies.keys.sorted().filter { survivor in
            let vector = (frozenReplies[survivor]?.dependencies ?? []).map { UInt64(max(0, $0)) }
            return vector.count == configuration.rankCount
                && OptimisticLogging.isOrphan(vector, failed: RankID(rank), recoverable: recoverable)
        }
        events.record("orphans", [
            "rank": .int(rank), "recoverable": .int(Int(recoverable)),
            "orphans": .string(orphans.map(String.init).joined(separator: ",")),
        ])
        if !orphans.isEmpty {
            warn("rank \(rank)'s log reaches its state \(recoverable); ranks \(orphans.map(String.init).joined(separator: ", ")) depend on later states it lost and roll back too")
        }
        stop(orphans)
        survivorsToThaw = Set(slots.indices.filter { $0 != rank && !orphans.contains($0) && slots[$0].alive })
        replaying = rank
        restartedGroup = [rank] + orphans
        try launch([rank] + orphans, replayLimit: (rank, recoverable), replayLog: true)
        return true
    }
}
