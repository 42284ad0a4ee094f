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
        guard let checkpoint = checkpointOf(rank, line: line),
              let log = try? MessageLog.inspect(store: store, name: MessageLog.name(ofRank: rank)),
              checkpoint.logPosition >= log.kept.lowerBound
        else { return nil }
        // Read only: the log's valid prefix (what opening keeps), whatever it lost after it.
        let start = checkpoint.dependencies[rank]
        return start + (log.kept.upperBound > checkpoint.logPosition ? log.kept.upperBound - checkpoint.logPosition : 0)
    }

    /// Where `rank`'s checkpoint in `line` starts its log (0 for a rank with no entry), or nil
    /// when it cannot be read: from the snapshot's first chunk alone when the line is read from
    /// disk (the header leads it), not the whole snapshot `checkpointOf` decodes.
    func logPositionOf(_ rank: Int, line: CommittedLine?) -> UInt64? {
        guard let line, let member = line.members.first(where: { $0.rank == rank }) else { return 0 }
        // As the rank's acknowledgement said: nothing read (with partner hosts, nothing this
        // process could read).
        if let position = member.logPosition { return position }
        if line.isInMemory, manifests.epoch(ofSnapshot: member.snapshot) ?? 0 > memoryTrustedAfter {
            return checkpointOf(rank, line: line)?.logPosition  // mapped, nothing decompressed
        }
        return try? RankSnapshot.logPosition(of: member.snapshot, store: store)
    }

    /// What `rank`'s checkpoint in `line` says of its log and dependencies (a rank with no
    /// entry starts from scratch: position 0, no dependencies), or nil when it cannot be read.
    func checkpointOf(_ rank: Int, line: CommittedLine?) -> (logPosition: UInt64, dependencies: DependencyVector)? {
        guard let member = line?.members.first(where: { $0.rank == rank }) else { return (0, DependencyVector()) }
        let epoch = manifests.epoch(ofSnapshot: member.snapshot) ?? 0
        // With levels on other hosts, what the copy's ACK said while it is held where the rank
        // runs (a copy there is out of this process's reach).
        if hostJob != nil, line?.isInMemory == true, epoch > memoryTrustedAfter, holdsCopy(rank: rank, round: epoch),
           let copy = memoryCopies.copy(of: rank, round: epoch), let dependencies = copy.dependencies {
            return (copy.logPosition, dependencies)
        }
        // With levels, the copy in memory first (a line there may not be on disk yet): mapped
        // and checked, its metadata decoded, nothing copied.
        let inMemory = line?.isInMemory == true && epoch > memoryTrustedAfter
            ? ((try? memoryLevel?.map(rank: rank, epoch: epoch)) ?? nil).flatMap {
                try? RankSnapshot.decode(metadata: $0.metadata, stateCount: $0.state.count, rank: RankID(rank),
                                         rankCount: configuration.rankCount, epoch: Epoch(epoch))
            } : nil
        let snapshot = inMemory ?? (try? ChunkedSnapshots(store: store).read(member.snapshot)).flatMap {
            try? RankSnapshot.decode($0, rank: RankID(rank), rankCount: configuration.rankCount, epoch: Epoch(epoch))
        }
        guard let snapshot else { return nil }
        return (snapshot.logPosition, snapshot.dependencies)
    }
}
