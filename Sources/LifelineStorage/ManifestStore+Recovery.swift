#if canImport(Glibc)
import Glibc
#endif

extension ManifestStore {
    /// How many times `newestIntactLine` reads a snapshot whose read failed without finding it
    /// damaged, and the pause before the second try (doubling after).
    static let readAttempts = 3
    static let retryPauseMicroseconds = 50_000

    /// Removes the snapshots that no committed line references, and returns what it removed.
    ///
    /// An epoch folder older than the newest committed line on disk goes when no kept line
    /// references a snapshot in it; in a folder that is still referenced (a rank that kept an
    /// old checkpoint under `--checkpoint minimal`), the snapshots no line references go.
    /// Folders from the newest line on disk on (a checkpoint in progress, a line in memory
    /// being drained) and names that are not numbers are left alone. Call only after
    /// `manifest` is durable (`commit` returned).
    ///
    /// On a store confined to a host's node-local folder (`MirroredStore.confinedToNodeLocal`)
    /// it collects that folder alone, by the same rules, with any manifest no older than the
    /// snapshots being written there: a stale one only keeps more.
    @discardableResult
    package func garbageCollect(keeping manifest: Manifest) throws(StorageError) -> [String] {
        try collect(keeping: manifest).removed
    }

    /// `garbageCollect(keeping:)`, and whether the chunks were collected too: false when a
    /// write held the chunk lock (a rank's drain under way), so their collection is owed.
    package func collect(keeping manifest: Manifest) throws(StorageError) -> (removed: [String], chunksCollected: Bool) {
        let independent = (manifest.independent ?? []).flatMap { $0 }
        let referenced = Set(manifest.committed.flatMap(\.members).map(\.snapshot) + independent.compactMap(\.snapshot))
        // Under `--levels memory,disk` the lines newer than the newest on disk may be drained
        // now: their folders stay until a newer line is on disk, by when every rank's drain of
        // them has ended (a rank drains its rounds in order).
        let newestEpoch = manifest.committed.last(where: \.isOnDisk)?.epoch
        var removed: [String] = []
        for entry in store.list(Self.epochsFolder) {
            guard let epoch = UInt64(entry), let newestEpoch, epoch < newestEpoch else { continue }
            let folder = Self.epochsFolder + "/" + entry
            let files = store.list(folder)
            let unreferenced = files.filter { !referenced.contains(folder + "/" + $0) }
            if unreferenced.count == files.count {
                try store.removeDirectory(folder)
                removed.append(folder)
            } else {
                for file in unreferenced {
                    try store.remove(folder + "/" + file)
                    removed.append(folder + "/" + file)
                }
            }
        }
        // Independent checkpoints: a rank's snapshots up to its newest recorded one that no
        // record or line references (newer ones may be in progress, and so may those of a newer
        // process of the rank than the newest record's: after a partial rollback it numbers its
        // checkpoints from the one it restored, below records a manifest read before the
        // rollback still holds). None while some are degraded commits: which line a second
        // failure would fall back to is not known.
        for (rank, records) in (manifest.hasDegradedCommits ? [] : manifest.independent ?? []).enumerated() {
            let newest = records.last?.index ?? 0
            let newestIncarnation = records.last?.incarnation ?? 0
            let folder = Self.checkpointsFolder + "/rank-" + Self.zeroPadded(UInt64(rank), digits: 4)
            for file in store.list(folder) {
                let name = folder + "/" + file
                guard let index = epoch(ofSnapshot: name), index <= newest, !referenced.contains(name),
                      (Self.incarnation(ofIndependent: name) ?? 0) <= newestIncarnation else { continue }
                try store.remove(name)
                removed.append(name)
            }
        }
        // Chunks no kept snapshot references go too; if an index cannot be read, keep them all.
        // A store confined to a host's own folder holds the indexes its host's ranks wrote, and
        // only their chunks: it reads those it has.
        let chunked = ChunkedSnapshots(store: store)
        let confined = store.nodeLocal?.confined == true
        // A line held in memory alone (`--levels memory,disk`) has on disk only the snapshots
        // its ranks drained so far, or none (a round not drained).
        // The kept snapshots are listed under the chunk lock, so that one whose write ended
        // in the meantime is among them.
        let count = try chunked.garbageCollect { () -> [SnapshotIndex]? in
            let names = Set(manifest.committed.flatMap { line in
                line.members.map(\.snapshot).filter { line.isOnDisk || store.exists($0) }
            } + independent.compactMap(\.snapshot))
                .union(inProgress(manifest)).filter { !confined || store.exists($0) }
            let indexes = names.compactMap { try? chunked.index($0) }
            return indexes.count == names.count ? indexes : nil
        }
        if let count, count > 0 { removed.append("\(ChunkedSnapshots.folder): \(count) chunks") }
        return (removed, count != nil)
    }

    /// Snapshots newer than the manifest (being written now, or written and not yet committed):
    /// their chunks stay. Independent snapshots newer than every record of their rank, and the
    /// snapshots in epoch folders newer than the newest line (a host collecting its folder
    /// while the next round is written, or with a manifest older than the newest commit).
    private func inProgress(_ manifest: Manifest) -> [String] {
        let independent = (manifest.independent ?? []).enumerated().flatMap { rank, records -> [String] in
            let folder = Self.checkpointsFolder + "/rank-" + Self.zeroPadded(UInt64(rank), digits: 4)
            return store.list(folder).map { folder + "/" + $0 }.filter {
                (epoch(ofSnapshot: $0) ?? 0) > UInt64(records.last?.index ?? 0)
                    || (Self.incarnation(ofIndependent: $0) ?? 0) > records.last?.incarnation ?? 0
            }
        }
        let newest = manifest.newestLine?.epoch ?? 0
        let rounds = store.list(Self.epochsFolder).filter { (UInt64($0) ?? 0) > newest }.flatMap { entry in
            store.list(Self.epochsFolder + "/" + entry).map { Self.epochsFolder + "/" + entry + "/" + $0 }
        }
        return independent + rounds
    }

    /// The newest committed line whose every snapshot reads (repairing one bad copy as needed),
    /// or nil if none does (restart from the beginning), with one line per problem met: each
    /// lost or unreadable snapshot and each repair.
    ///
    /// Reads every snapshot of the lines it tries in full (index and chunks), to check their
    /// checksums and hashes. Under `--levels memory,disk` a line held in memory is read from
    /// `memory` (level 1) first, member by member, and from disk where its copy there is gone;
    /// a line in memory alone is restorable only while every member's copy there is intact,
    /// and never without `memory`, nor when it is not newer than `memorySince` (a line an
    /// earlier supervisor committed: a new supervisor does not trust level 1). With `ranks`,
    /// only those ranks' snapshots are read (a rank that recovers alone restores its own alone).
    ///
    /// When the copies in memory are on other hosts, which this process cannot read,
    /// `heldElsewhere` says in place of `memory` whether a rank's copy of a round is held where
    /// the rank will run (`MemoryCopies`): such a copy is taken unread (it was hashed when
    /// written, and the rank checks it when it maps it), and one that is not is read from disk.
    /// `diskUnread`: a copy on disk is taken unread too (partner copies: on the ranks' hosts,
    /// each read back intact there and on the partner before its rank acknowledged it).
    package func newestIntactLine(
        _ manifest: Manifest, memory: MemoryLevel? = nil, memorySince: UInt64 = 0, ranks: Set<Int>? = nil,
        diskUnread: Bool = false, heldElsewhere: ((_ rank: Int, _ round: UInt64) -> Bool)? = nil
    ) -> (line: CommittedLine?, problems: [String]) {
        var problems: [String] = []
        for line in manifest.committed.reversed() {
            var intact = true
            let memory = line.epoch > memorySince ? memory : nil
            let heldElsewhere = line.epoch > memorySince ? heldElsewhere : nil
            if !line.isOnDisk, memory == nil, heldElsewhere == nil {
                problems.append("epoch \(line.epoch) was held in memory alone (level 1), which does not outlive its supervisor; trying an older recovery line")
                continue
            }
            for member in line.members where ranks?.contains(member.rank) ?? true {
                if line.isInMemory, let heldElsewhere {
                    if heldElsewhere(member.rank, epoch(ofSnapshot: member.snapshot) ?? line.epoch) { continue }
                    guard line.isOnDisk else {
                        problems.append("epoch \(line.epoch) rank \(member.rank): its copy in memory is not held on the host it runs on (that host's memory was lost, or the rank moved)")
                        intact = false
                        continue
                    }
                }
                if line.isInMemory, let memory {
                    do {
                        let epoch = epoch(ofSnapshot: member.snapshot) ?? line.epoch
                        if try memory.verify(rank: member.rank, epoch: epoch) { continue }
                        if !line.isOnDisk { problems.append("epoch \(line.epoch) rank \(member.rank): its copy in memory is gone") }
                    } catch {
                        problems.append("epoch \(line.epoch) rank \(member.rank): its copy in memory: \(error)")
                    }
                    guard line.isOnDisk else {
                        intact = false
                        continue
                    }
                }
                if diskUnread { continue }
                // A line given up here is given up for good (the job runs on from an older one),
                // so a read that failed without finding damage (an I/O error, a refusal) is
                // tried again before it counts.
                for attempt in 1...Self.readAttempts {
                    var found: [String] = []  // said once, from the attempt that counts
                    do {
                        let file = try store.read(member.snapshot)
                        found = file.problems
                        if file.kind != .snapshot {
                            intact = false
                            found.append("\(member.snapshot): file kind is \(file.kind), not snapshot")
                        } else {
                            _ = try ChunkedSnapshots(store: store).read(member.snapshot)
                        }
                    } catch where attempt < Self.readAttempts && !error.isDamage {
                        usleep(useconds_t(Self.retryPauseMicroseconds << (attempt - 1)))
                        continue
                    } catch {
                        intact = false
                        found.append("epoch \(line.epoch) rank \(member.rank): \(error)")
                    }
                    problems += found
                    break
                }
            }
            if intact { return (line, problems) }
            problems.append("epoch \(line.epoch) is not restorable; trying an older recovery line")
        }
        return (nil, problems)
    }
}
