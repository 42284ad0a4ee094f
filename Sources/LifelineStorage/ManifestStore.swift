import Foundation

/// Loads and commits the job manifest on a mirrored store, and names snapshot files.
package struct ManifestStore: Sendable {
    /// The store-relative name of the manifest file.
    package static let manifestName = "manifest"
    /// The folder holding one subfolder per epoch.
    package static let epochsFolder = "epochs"

    /// The mirrored store holding the manifest and the snapshots.
    package let store: MirroredStore

    /// Wraps `store`.
    package init(store: MirroredStore) {
        self.store = store
    }

    /// Loads the manifest, repairing a damaged mirror; nil when no manifest was ever committed.
    ///
    /// Throws `.lost` when both copies are damaged, or both are missing although snapshot files
    /// exist (a job commits a manifest before its first snapshot, so it was lost); `.badFormat`
    /// if the file is not a manifest this build reads; `.corrupt` if its JSON does not decode or
    /// breaks an invariant.
    package func load() throws(StorageError) -> Manifest? {
        try load(repair: true)
    }

    /// `load()`, repairing a damaged copy only when `repair` (`verify` reads without writing).
    package func load(repair: Bool) throws(StorageError) -> Manifest? {
        let file: StoredFile
        do throws(StorageError) {
            file = try store.inspect(Self.manifestName, repair: repair)
        } catch where error.code == .notFound {
            let snapshotFolders = store.list(Self.epochsFolder).count + store.list(ChunkedSnapshots.folder).count
            if snapshotFolders == 0 { return nil }
            throw StorageError(.lost, path: Self.manifestName, message:
                "missing on both mirrors (\(store.rootA), \(store.rootB)) although snapshots were written")
        }
        let path = Self.manifestName
        if file.kind != .manifest {
            throw StorageError(.badFormat, path: path, message: "file kind is \(file.kind), not manifest")
        }
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: Data(file.body))
        } catch {
            throw StorageError(.corrupt, path: path, message: "manifest JSON does not decode: \(error)")
        }
        if manifest.formatVersion != Manifest.currentFormatVersion {
            throw StorageError(.badFormat, path: path, message:
                "manifest format \(manifest.formatVersion), this build reads \(Manifest.currentFormatVersion)")
        }
        if manifest.generation != file.generation {
            throw StorageError(.corrupt, path: path, message:
                "manifest generation \(manifest.generation) differs from its file header's \(file.generation)")
        }
        if let violation = manifest.invariantViolation {
            throw StorageError(.corrupt, path: path, message: "inconsistent manifest: \(violation)")
        }
        return manifest
    }

    /// Bumps `manifest.generation` and writes the manifest to A, then B: the commit point.
    ///
    /// When this returns, what `manifest` lists is committed. If it throws after A's copy was
    /// written, a later `load` returns the new manifest (A's generation is higher) and repairs B.
    package func commit(_ manifest: inout Manifest) throws(StorageError) {
        if let violation = manifest.invariantViolation {
            preconditionFailure("committing an inconsistent manifest: \(violation)")
        }
        manifest.generation += 1
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let body: Data
        do {
            body = try encoder.encode(manifest)
        } catch {
            preconditionFailure("a manifest always encodes: \(error)")
        }
        try store.write(Self.manifestName, kind: .manifest, generation: manifest.generation, body: [UInt8](body))
    }

    /// The store-relative folder of `epoch`: `epochs/000003`.
    package func epochFolderName(epoch: UInt64) -> String {
        Self.epochsFolder + "/" + Self.zeroPadded(epoch, digits: 6)
    }

    /// The round a snapshot named by `snapshotName` was written in (or the checkpoint index of
    /// one named by `independentSnapshotName`), or nil for another name.
    package func epoch(ofSnapshot name: String) -> UInt64? {
        let parts = name.split(separator: "/")
        guard parts.count == 3 else { return nil }
        if parts[0] == Self.epochsFolder { return UInt64(parts[1]) }
        if parts[0] == Self.checkpointsFolder, parts[2].hasSuffix(".snap") {
            return UInt64(parts[2].dropLast(5).prefix { $0 != "-" })
        }
        return nil
    }

    /// The folder of independent checkpoints, one subfolder per rank.
    package static let checkpointsFolder = "checkpoints"

    /// The store-relative name of a rank's independent checkpoint written by the rank's
    /// process `incarnation`: `checkpoints/rank-0001/000005.snap` for incarnation 0,
    /// `checkpoints/rank-0001/000005-0000000003.snap` for 3. A rank restarted from checkpoint 4
    /// writes its own 5 under its own name, so the earlier process, if still running somewhere
    /// (cut off, stopped), cannot overwrite it (fencing).
    package func independentSnapshotName(rank: Int, checkpoint: Int, incarnation: UInt32) -> String {
        precondition(rank >= 0 && checkpoint > 0)
        let name = Self.checkpointsFolder + "/rank-" + Self.zeroPadded(UInt64(rank), digits: 4) + "/"
            + Self.zeroPadded(UInt64(checkpoint), digits: 6)
        return name + (incarnation == 0 ? "" : "-" + Self.zeroPadded(UInt64(incarnation), digits: 10)) + ".snap"
    }

    /// The incarnation whose process wrote the independent checkpoint `name`
    /// (`independentSnapshotName`): 0 when the name carries none; nil for another name.
    package static func incarnation(ofIndependent name: String) -> Int? {
        guard name.hasPrefix(checkpointsFolder + "/"), name.hasSuffix(".snap"),
              let file = name.split(separator: "/").last else { return nil }
        let parts = file.dropLast(5).split(separator: "-")
        return parts.count == 2 ? Int(parts[1]) : parts.count == 1 ? 0 : nil
    }

    /// The store-relative name of a rank's snapshot: `epochs/000003/rank-0001.snap`.
    package func snapshotName(epoch: UInt64, rank: Int) -> String {
        precondition(rank >= 0, "rank index is not negative")
        return epochFolderName(epoch: epoch) + "/rank-" + Self.zeroPadded(UInt64(rank), digits: 4) + ".snap"
    }

    static func zeroPadded(_ value: UInt64, digits: Int) -> String {
        let text = String(value)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
