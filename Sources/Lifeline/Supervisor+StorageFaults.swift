#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage

/// Storage faults of the `--inject` grammar, at a commit (`epoch=E`) or a time (`after=`): bytes
/// flipped in one committed file on one mirror, as a failing disk would (reading the file later
/// must notice it, use the other mirror and repair this one); or every write to one mirror
/// failing as on a full disk (`fail:`, see `Supervisor+Mirrors`).
extension Supervisor {
    /// Round `epoch` committed: fires the faults waiting for it (the supervisor's own kill last).
    func fireStorageFaults(committed epoch: UInt64) {
        for index in faultSchedule.dueAtCommit(epoch) { fireStorageFault(index) }
    }

    /// Fires the storage fault at `index` (`corrupt` waits while there is no such file yet).
    func fireStorageFault(_ index: Int) {
        switch faults[index] {
        case .corrupt(let mirrorA, _, let file): corrupt(index, mirror: mirrorA ? .a : .b, file: file)
        case .failMirror(let mirrorA, _, let seconds): failMirror(index, mirror: mirrorA ? .a : .b, seconds: seconds)
        case .loseMemory: loseMemory(index)
        case .killAtCommit(let rank, _):
            faultSchedule.fired(index)
            try? injectSignal(rank.rawValue, SIGKILL, spec: faults[index])
        case .killSupervisor:
            killSelf(index)
        default: break
        }
    }

    /// Removes every copy the job holds in memory (level 1), as a lost memory would; the
    /// folder stays, so the ranks go on writing the next rounds there.
    private func loseMemory(_ index: Int) {
        faultSchedule.fired(index)
        guard let memoryLevel else { return }
        memoryLevel.removeCopies()
        events.record("fault_injected", ["spec": .string("\(faults[index])")])
    }

    /// Flips bytes in the middle of the file `file` names in the newest line, on `mirror`. Waits
    /// (fires later) while there is no such file yet: no committed line, or no log.
    private func corrupt(_ index: Int, mirror: Mirror, file: FaultSpec.StoredFile) {
        guard let name = storedFileName(file) else { return }
        faultSchedule.fired(index)
        let path = store.path(name, on: mirror)
        let flipped = Self.flipByte(path)
        events.record("fault_injected", [
            "spec": .string("\(faults[index])"), "file": .string(name), "flipped": .bool(flipped),
        ])
        if !flipped { warn("--inject \(faults[index]): cannot damage \(path)") }
    }

    /// The store-relative name of the file of kind `file` in the newest committed line, if any.
    private func storedFileName(_ file: FaultSpec.StoredFile) -> String? {
        switch file {
        case .manifest:
            return ManifestStore.manifestName
        case .index, .chunk:
            guard let snapshot = manifest.newestLine?.members.first(where: { $0.rank == 0 })?.snapshot else { return nil }
            if file == .index { return snapshot }
            let snapshots = ChunkedSnapshots(store: store)
            guard let first = (try? snapshots.index(snapshot))?.chunks.first else { return nil }
            return snapshots.chunkName(first.hash)
        case .log:
            let folder = "logs/" + MessageLog.name(ofRank: 0)
            return store.list(folder).first { $0.hasSuffix(".seg") }.map { folder + "/" + $0 }
        }
    }

    /// XORs the byte in the middle of the file at `path` with 0xFF and syncs it.
    static func flipByte(_ path: String) -> Bool {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_size > 0 else { return false }
        let offset = off_t(status.st_size / 2)
        var byte: UInt8 = 0
        guard pread(fd, &byte, 1, offset) == 1 else { return false }
        byte ^= 0xFF
        return pwrite(fd, &byte, 1, offset) == 1 && fsync(fd) == 0
    }
}
