#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage

/// Multi-level checkpoints (`--levels memory,disk`) on the supervisor's side: a round commits
/// once every rank's snapshot is in its host's memory (level 1); the manifest records the line
/// on disk (level 2) once every member's snapshot is (drained in that round or, for a rank that
/// kept an older checkpoint under minimal checkpoints, before). What to record and which lines to keep for a
/// drain is decided by `DrainTracker` (LifelineCore); this performs it.
extension Supervisor {
    /// Removes the level-1 folders that jobs whose supervisor was killed left in this host's
    /// memory root (`MemoryLevel.reclaimAbandoned`): nothing reads them again (a resume
    /// restarts from disk), and they would hold the host's memory until it restarts. Each is
    /// said (`memory_reclaimed`). By the supervisor of any job of one host, with levels or not;
    /// on several hosts, a rank of the job removes those of the host it starts on, the
    /// supervisor's host included when it runs ranks.
    /// Only in a memory file system, which is the host's own and whose locks are the kernel's:
    /// a folder on a network file system may be another host's, and its locks may be emulated
    /// per process or per host.
    func reclaimAbandonedMemory() {
        let root = configuration.memoryRoot ?? JobConfiguration.memoryRootDefault
        guard !configuration.launchesOnHosts, MemoryLevel.isMemoryFileSystem(root) else { return }
        for (folder, bytes) in MemoryLevel.reclaimAbandoned(
            root: root, sparingJobOf: MemoryLevel.folder(root: root, jobID: manifest.jobID)
        ) {
            events.record("memory_reclaimed", ["folder": .string(folder), "bytes": .int(bytes)])
        }
    }

    /// A rank acknowledged round `epoch`: an ACK from disk (a copy that did not fit in memory)
    /// puts its snapshot on disk at once.
    /// With ranks on other hosts, an ACK from memory puts the rank's copy in its host's memory,
    /// and in its partner host's when the ACK names one.
    func noteAcknowledged(_ epoch: Epoch, rank: Int, _ acknowledgement: Acknowledgement) {
        guard holdsLevels, !acknowledgement.kept else { return }
        if !acknowledgement.inMemory {
            drains.acknowledgedFromDisk(epoch.rawValue, rank: rank)
        } else if let host = hostJob?.addresses[rank]?.host {
            // The host of the process that sent it, as its handshake said (a late ACK of a
            // rank whose host was lost, moved since, has none: its copy went with that host).
            // A partner lost since the copy was made holds nothing.
            let partner = acknowledgement.memoryPartner.flatMap { hostJob?.placement.lost.contains($0) == true ? nil : $0 }
            memoryCopies.held(rank: rank, round: epoch.rawValue, on: host, partner: partner,
                              logPosition: acknowledgement.logPosition,
                              dependencies: DependencyVector(words: acknowledgement.logDependencies, rankCount: configuration.rankCount))
        }
    }

    /// The job's level-1 folder that `rank` writes its copies to: on this host, the
    /// supervisor's; on another, one of that host's named by the job and the host (each host's
    /// memory file system is its own; test hosts that share one keep apart). Nil without levels.
    func memoryFolder(of rank: Int) -> String? {
        guard holdsLevels else { return nil }
        guard let hostJob, rank < hostJob.rankHosts.count else { return memoryLevel?.folder }
        return MemoryLevel.folder(
            root: configuration.memoryRoot ?? JobConfiguration.memoryRootDefault, jobID: manifest.jobID, host: hostJob.rankHosts[rank])
    }

    /// Whether `rank`'s copy of round `round` is in memory: in this host's folder, or held on a
    /// host of the job (`memoryCopies`: the rank's, or its partner's) — where the rank runs, or
    /// where it fetches it from (`copyToRead(rank:round:)`).
    func holdsCopy(rank: Int, round: UInt64) -> Bool {
        if hostJob != nil { return memoryCopies.copy(of: rank, round: round) != nil }
        return memoryLevel?.has(rank: rank, epoch: round) ?? false
    }

    /// On several hosts, what `rank`, launched to restore its snapshot of round `round`, is told
    /// of its copy in memory: whether it reads one at all (none held: a copy of that rank and
    /// round on its host is another run's), and the host to fetch it from when its own host
    /// holds none (a lost host's rank placed away from the partner that holds the copy).
    func copyToRead(rank: Int, round: UInt64) -> (reads: Bool, host: String?) {
        guard let hostJob, rank < hostJob.rankHosts.count else { return (true, nil) }
        guard let copy = memoryCopies.copy(of: rank, round: round) else { return (false, nil) }
        let here = hostJob.rankHosts[rank]
        return (true, copy.host == here || copy.partner == here ? nil : copy.host)
    }

    /// The levels of the line of round `epoch` about to commit with `acks` and `members` (the
    /// round of each one's snapshot in `snapshots`): in memory when any member's snapshot is there
    /// (one written in this round, or one a rank kept from a line held in memory, while its copy
    /// is there or it is not on disk); on disk once
    /// every member's is. A kept snapshot that a line recorded on disk holds is on disk (a later
    /// supervisor learns it so).
    func levels(ofCommitting epoch: Epoch, acks: [Acknowledgement], members: [Member], snapshots: [Int: UInt64])
        -> (inMemory: Bool?, onDisk: Bool?)
    {
        guard holdsLevels else { return (nil, nil) }
        var keptInMemory = false
        for member in members where member.rank < acks.count && acks[member.rank].kept {
            let round = snapshots[member.rank] ?? epoch.rawValue
            let holders = manifest.committed.filter { $0.members.contains { $0.snapshot == member.snapshot } }
            let onDisk = holders.contains(where: \.isOnDisk)
            if onDisk { drains.acknowledgedFromDisk(round, rank: member.rank) }
            // In memory while its copy is there (none is after a resume, or once removed); one
            // not on disk is counted in memory whatever, so the line is never taken for on disk.
            if holders.contains(where: \.isInMemory), !onDisk || holdsCopy(rank: member.rank, round: round) { keptInMemory = true }
        }
        return drains.levels(ofCommitting: epoch.rawValue, members: snapshots,
                             anyInMemory: keptInMemory || acks.contains(where: \.inMemory))
    }

    /// Per member of a line of round `epoch`, the round of its snapshot.
    func snapshotRounds(_ members: [Member], epoch: Epoch) -> [Int: UInt64] {
        Dictionary(members.map { ($0.rank, manifests.epoch(ofSnapshot: $0.snapshot) ?? epoch.rawValue) }, uniquingKeysWith: { $1 })
    }

    /// A rank's drain of round `epoch` ended: its snapshot is on disk, or could not be written
    /// there (the line stays in memory alone, and the next drained round tries again). A drain
    /// that failed on a mirror as a failing disk does degrades the job to the other mirror, as a
    /// failed snapshot write does, so the next drains go there.
    func handleDrained(_ epoch: Epoch, rank: Int, storedBytes: UInt64, failure: String?, failedMirrors: StorageMirrors) throws {
        guard holdsLevels else { return }
        if let failure {
            noteDrainFailed(epoch, rank: rank, failure: failure)
            if let mirror = failedMirrors.mirrors.first {
                try mirrorFailed(mirror, reason: failure, byRank: true)
            } else {
                // A drain may begin before its round commits: one of a round not committed (yet,
                // or ever: it aborted) concerns no line so far.
                let held = manifest.committed.contains { line in
                    line.members.contains { $0.rank == rank && manifests.epoch(ofSnapshot: $0.snapshot) == epoch.rawValue }
                }
                warn("rank \(rank) could not drain round \(epoch.rawValue) to disk: \(failure); "
                    + (held ? "the lines holding that snapshot stay in memory alone" : "no committed line holds it yet (one that does will stay in memory alone)"))
            }
            return
        }
        try recordOwedOnDisk()  // first: what an earlier write left owed is older
        for record in drains.drained(epoch.rawValue, rank: rank, storedBytes: storedBytes, now: now) {
            try recordOnDisk(record)
        }
    }

    /// A rank's drain of round `epoch` failed: the tracker and the event log hear of it.
    private func noteDrainFailed(_ epoch: Epoch, rank: Int, failure: String) {
        drains.drainFailed(epoch.rawValue, rank: rank)
        events.record("drain_failed", ["rank": .int(rank), "epoch": .int(Int(epoch.rawValue)), "reason": .string(failure)])
    }

    /// `rank`, stopped by the supervisor (a rollback) or killed as failed (hung), is let go:
    /// the drains it ended before, still unread in its connection, count — a line whose last
    /// drain was its own is on disk, and a relaunch need not drain it again. Nothing else it
    /// sent is acted on. The records are written at the next chance (`recordOwedOnDisk`): this
    /// runs where the supervisor cannot stop for a manifest write that fails.
    func readDrainsOfStopped(_ rank: Int) {
        guard holdsLevels, let connection = slots[rank].connection else { return }
        _ = try? connection.readAvailable { frame in
            guard case .control(.drained(let epoch, let storedBytes, let failure, _)) = frame else { return }
            if let failure {
                noteDrainFailed(epoch, rank: rank, failure: failure)
                return
            }
            for record in drains.drained(epoch.rawValue, rank: rank, storedBytes: storedBytes, now: now) { drains.owe(record) }
        }
    }

    /// Writes the records of lines on disk that are owed (`DrainTracker.owe`): one the manifest
    /// did not take before, or one read from a stopped rank.
    func recordOwedOnDisk() throws {
        guard holdsLevels else { return }
        for record in drains.takeOwed() { try recordOnDisk(record) }
    }

    /// Every member's snapshot of a committed line held in memory is on disk: the manifest says
    /// so (the line outlives this supervisor now), and `drained` is recorded. A write that
    /// fails short of stopping the job leaves the record owed: the line stays pinned, and the
    /// next drain, commit or rollback records it.
    private func recordOnDisk(_ record: DrainTracker.Record) throws {
        let round = record.epoch
        guard let line = manifest.committed.first(where: { $0.epoch == round }), !line.isOnDisk else { return }
        var next = manifest
        next.recordOnDisk(epoch: round)
        do {
            try commitManifest(&next)
        } catch let error as LifelineError {
            throw error  // both mirrors failed: the job stops
        } catch {
            warn("cannot record round \(round) on disk now: \(error); it stays in memory alone until the next manifest write records it")
            drains.owe(record)
            return
        }
        manifest = next
        if lineInForce?.epoch == round { lineInForce = next.committed.first { $0.epoch == round } }
        // The line outlives any failure now: the output up to it is the user's.
        for member in line.members {
            output.release(rank: member.rank, incarnation: UInt32(clamping: member.incarnation), upTo: member.outputOffset)
        }
        events.record("drained", [
            "epoch": .int(Int(clamping: round)), "bytes": .int(Int(clamping: record.storedBytes)), "after_commit_s": .double(record.afterCommitSeconds),
        ])
        // Every drain of the round has ended: its chunks are referenced now, and what older
        // lines alone held goes (the collection at the commit met the drains under way).
        collectGarbage()
    }

    /// The job is released: each rank ends its drains under way before it exits (a round may
    /// have committed after some rank's `finished`), so their `drained` are read until every
    /// rank's connection closes (30 s at most), and the job ends with its lines on disk.
    func readFinalDrains() throws {
        guard holdsLevels else { return }
        let deadline = now + 30
        while now < deadline {
            let open = slots.indices.filter { slots[$0].connection != nil }
            guard !open.isEmpty else { return }
            var descriptors = open.map { pollfd(fd: slots[$0].connection!.fd, events: Int16(POLLIN), revents: 0) }
            guard poll(&descriptors, nfds_t(descriptors.count), 250) > 0 else { continue }
            for (rank, descriptor) in zip(open, descriptors) where descriptor.revents != 0 {
                guard let connection = slots[rank].connection else { continue }
                var drained: [(Epoch, UInt64, String?, StorageMirrors)] = []
                let stillOpen = try connection.readAvailable { frame in
                    if case .control(.drained(let epoch, let storedBytes, let failure, let failedMirrors)) = frame {
                        drained.append((epoch, storedBytes, failure, failedMirrors))
                    }
                }
                for (epoch, storedBytes, failure, failedMirrors) in drained {
                    try handleDrained(epoch, rank: rank, storedBytes: storedBytes, failure: failure, failedMirrors: failedMirrors)
                }
                if !stillOpen { slots[rank].connection = nil }
            }
        }
    }

    /// Whether `rank`, relaunched from its snapshot of round `epoch` in `line` (the line's own
    /// round, or an older one the rank kept under minimal checkpoints), drains that snapshot to
    /// disk first (`DrainTracker.relaunching`).
    func drainsRestored(_ rank: Int, line: CommittedLine?, restoring epoch: Epoch) -> Bool {
        guard holdsLevels, let line, epoch > .start else { return false }
        return drains.relaunching(rank, restoring: epoch.rawValue, line: line.epoch, inMemoryAlone: line.isInMemoryAlone)
    }

    /// The newest line a restart would read, judged without reading: held in memory by this
    /// supervisor with every member's copy there, or on disk.
    func likelyRestoreLine() -> CommittedLine? {
        manifest.committed.last { line in
            line.isOnDisk || (line.epoch > memoryTrustedAfter && restoreLevel(of: line) == "memory")
        }
    }

    /// The level a restart from `line` reads (for `recovery_start`): memory when the line is
    /// held there and every member's copy is, disk otherwise; nil without levels.
    func restoreLevel(of line: CommittedLine?) -> String? {
        guard holdsLevels else { return nil }
        guard let line else { return "start" }
        let inMemory = line.isInMemory && line.epoch > memoryTrustedAfter && line.members.allSatisfy {
            holdsCopy(rank: $0.rank, round: manifests.epoch(ofSnapshot: $0.snapshot) ?? line.epoch)
        }
        return inMemory ? "memory" : "disk"
    }
}
