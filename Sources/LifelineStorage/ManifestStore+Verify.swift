extension ManifestStore {
    /// Checks every file on both mirrors (`MirroredStore.verify(repair:)`), then what the
    /// manifest references: every committed line's snapshot indexes and the chunks they list
    /// must exist, and each chunk must decompress to the bytes its name (hash) says.
    ///
    /// A referenced file missing on both mirrors is never seen by walking the folders; it is
    /// counted here as lost, with one line naming the epoch, the rank and the file. With
    /// `repair`, damaged copies were already rewritten by the walk; nothing here writes.
    ///
    /// Chunks that no committed line lists (garbage of an aborted round, or of one under way)
    /// are neither checked nor copied: a copy missing from one mirror is no damage there. When
    /// the manifest or an index cannot be read, every chunk is checked. With partner hosts,
    /// the supervisor's view holds the manifest and no rank's file: the references are not
    /// looked for (`holdsRanksFiles`).
    package func verify(repair: Bool) -> VerifyReport {
        let referenced = referencedChunks()
        var report = store.verify(repair: repair) { name in
            guard let referenced, name.hasPrefix(ChunkedSnapshots.folder + "/") else { return false }
            return !referenced.contains(name) && !PosixFile.isHidden(String(name.split(separator: "/").last ?? ""))
        }
        let manifest: Manifest
        do {
            guard let loaded = try load(repair: false) else { return report }
            manifest = loaded
        } catch {
            // A copy damaged on both mirrors was already counted by the walk; a manifest missing
            // on both mirrors (see `load`) or one that does not decode was not.
            if error.code != .lost || !store.exists(Self.manifestName) {
                report.unrecoverableCount += 1
            }
            report.problems.append("\(Self.manifestName): cannot be loaded: \(error)")
            return report
        }
        guard holdsRanksFiles else { return report }
        var checked = Set<String>()
        let chunked = ChunkedSnapshots(store: store)
        // A line in memory alone (`--levels memory,disk`, not yet drained) is not on disk to check.
        for line in manifest.committed where line.isOnDisk {
            for member in line.members {
                let label = "epoch \(line.epoch) rank \(member.rank)"
                let index: SnapshotIndex
                do {
                    index = try SnapshotIndex.decode(try store.inspect(member.snapshot, repair: false).body, name: member.snapshot)
                } catch {
                    if checked.insert(member.snapshot).inserted { countReferenceProblem(error, label: label, into: &report) }
                    continue
                }
                for chunk in index.chunks where checked.insert(chunked.chunkName(chunk.hash)).inserted {
                    do {
                        _ = try chunked.checkChunk(chunk)
                    } catch {
                        countReferenceProblem(error, label: label, into: &report)
                    }
                }
            }
        }
        return report
    }

    /// Whether this store's mirrors hold the ranks' files: not the view of a process that
    /// fills no host's folder when the second copies are on partner hosts (its two folders
    /// hold the manifest alone; the ranks' files are on their hosts).
    package var holdsRanksFiles: Bool {
        !(store.nodeLocal?.partnerHeld == true && store.nodeLocal?.fills == false)
    }

    /// The names of the chunks the committed lines list, or nil when the manifest or one of
    /// their snapshot indexes cannot be read (then nothing can be called unreferenced).
    private func referencedChunks() -> Set<String>? {
        guard let manifest = (try? load(repair: false)) ?? nil else { return nil }
        let chunked = ChunkedSnapshots(store: store)
        var names = Set<String>()
        let snapshots = Set(manifest.committed.flatMap { line in
            line.members.map(\.snapshot).filter { line.isOnDisk || store.exists($0) }
        } + (manifest.independent ?? []).flatMap { $0 }.compactMap(\.snapshot))
        for snapshot in snapshots {
            guard let file = try? store.inspect(snapshot, repair: false),
                  let index = try? SnapshotIndex.decode(file.body, name: snapshot)
            else { return nil }
            for chunk in index.chunks { names.insert(chunked.chunkName(chunk.hash)) }
        }
        return names
    }

    private func countReferenceProblem(_ error: StorageError, label: String, into report: inout VerifyReport) {
        switch error.code {
        case .lost:
            break  // both copies damaged: the walk counted and reported it already
        case .notFound:
            report.unrecoverableCount += 1
            report.problems.append("\(error.path): missing on both mirrors, needed by \(label): that line cannot be restored")
        default:
            report.unrecoverableCount += 1
            report.problems.append("\(error.path): needed by \(label): \(error)")
        }
    }
}

extension ChunkedSnapshots {
    /// Checks one chunk without repairing anything: a good copy exists, decompresses to the
    /// listed length and hashes to its name.
    func checkChunk(_ chunk: SnapshotIndex.Chunk) throws(StorageError) {
        let name = chunkName(chunk.hash)
        let file = try store.inspect(name, repair: false)
        let piece: [UInt8]
        do {
            piece = try SnapshotCodec.decompress(file.body, decompressedBytesMax: chunk.length)
        } catch {
            throw StorageError(.corrupt, path: name, message: "chunk does not decompress: \(error.message)")
        }
        guard piece.count == chunk.length, piece.withUnsafeBytes({ ContentHash(of: $0) }) == chunk.hash else {
            throw StorageError(.corrupt, path: name, message: "chunk content does not match its name (hash)")
        }
    }
}
