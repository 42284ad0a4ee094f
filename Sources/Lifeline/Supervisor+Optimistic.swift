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
    /// With partner copies the log is read where the hosts keep it (`keptLog`); one its rank
    /// found unfit since (`logsUnfit`: it held less than was read) is not read again, and
    /// the recovery falls back to a rollback.
    func recoverableInterval(of rank: Int, line: CommittedLine?) -> UInt64? {
        let partnered = StorageRoots.partnered(configuration.storageRoots)
        if partnered, logsUnfit.contains(rank) { return nil }
        guard let checkpoint = checkpointOf(rank, line: line),
              let log = partnered
                ? keptLog(of: rank, checkpointIncarnation: line?.members.first { $0.rank == rank }.map { UInt32(clamping: $0.incarnation) } ?? 0)
                : try? MessageLog.inspect(store: store, name: MessageLog.name(ofRank: rank)),
              checkpoint.logPosition >= log.kept.lowerBound
        else { return nil }
        // Read only: the log's valid prefix (what opening keeps), whatever it lost after it.
        let start = checkpoint.dependencies[rank]
        return start + (log.kept.upperBound > checkpoint.logPosition ? log.kept.upperBound - checkpoint.logPosition : 0)
    }

    /// With partner copies (`{partner}` in `--storage`), `rank`'s log as its relaunch will open
    /// it, read over the network. A log is written on its rank's host and then, each append once
    /// that copy is durable, on that host's partner (an optimistic log whose partner fails goes
    /// on on its host alone, the partner's copy left a prefix of it). A rank relaunched on its
    /// host opens the copy there when one holds a segment of its checkpoint's incarnation
    /// `checkpointIncarnation` or a later one: the host's other ranks lend that folder.
    /// Otherwise (the rank moved off a lost host, or no other rank of its host answers) the
    /// copy read is the newest any host keeps for its partner, the one a rank that finds none of
    /// its own copies takes (`PartnerDirectory.findFolder`). Either is never ahead of what the
    /// relaunched rank opens, which replays as far as this says (the plan's replay limit) and
    /// checks that it holds that much. Nil when no host answers with a copy in time.
    func keptLog(of rank: Int, checkpointIncarnation: UInt32) -> MessageLog.Inspection? {
        guard let hostJob else { return nil }
        // As the failed process, its last launch (the keepers fence by the incarnations of the
        // table they last had, never newer than that). This process waits meanwhile: a keeper
        // that does not answer within a second (its host cut off, as yet unknown), or whose
        // reply takes over 5 s, is passed over, and a copy not read leaves more orphans (or,
        // none read, a rollback), never fewer.
        let directory = PartnerDirectory(
            host: "", rootB: configuration.storageRoots[1], table: hostJob.addresses, rank: RankID(rank),
            incarnation: launchedIncarnations[rank] ?? 0, token: token, connectSeconds: 1, replyFloorSeconds: 5)
        let name = MessageLog.name(ofRank: rank)
        let path = MessageLog.folder + "/" + name
        if let host = hostJob.addresses[rank]?.host {
            let own = directory.ownFolder(of: host, unless: rank)  // not the failed process
            defer { own.closeConnection() }
            if let names = try? own.entries(path), !names.isEmpty,
               MessageLog.newness(ofFiles: names)[0] >= UInt64(checkpointIncarnation),
               let log = try? MessageLog.inspect(keptBy: own, name: name) {
                return log
            }
        }
        defer { directory.closeKeptFolders() }
        guard let kept = directory.keptCopy(path, rank: MessageLog.newness(ofFiles:)) else { return nil }
        return try? MessageLog.inspect(keptBy: kept.folder, name: name)
    }

    /// With partner copies and optimistic logging, keeps what `rank`'s checkpoint of round
    /// `epoch` depends on, as its acknowledgement says (`acknowledgedDependencies`).
    func noteDependencies(_ epoch: Epoch, rank: Int, _ acknowledgement: Acknowledgement) {
        guard configuration.logging == .optimistic, !acknowledgement.kept, StorageRoots.partnered(configuration.storageRoots)
        else { return }
        acknowledgedDependencies[rank, default: [:]][epoch.rawValue] =
            DependencyVector(words: acknowledgement.logDependencies, rankCount: configuration.rankCount)
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
        if StorageRoots.partnered(configuration.storageRoots) {
            // On the hosts' disks: what its ACK said (a line from before this supervisor began
            // is not known, and an optimistic recovery from it falls back to a rollback).
            guard let logPosition = member.logPosition, let dependencies = acknowledgedDependencies[rank]?[epoch] else { return nil }
            return (logPosition, dependencies)
        }
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
