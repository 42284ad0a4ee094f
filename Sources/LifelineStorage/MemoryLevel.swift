#if canImport(Glibc)
import Glibc
#endif
import CXXHash
import Foundation

/// Level 1 of multi-level checkpoints (`--levels memory,disk`): each rank's snapshot of a
/// round, uncompressed, in a folder of the host's memory (a tmpfs such as `/dev/shm`). A copy
/// there outlives the process that wrote it, so a rank killed on this host restores from memory
/// with no disk read; it does not outlive the host, a wiped tmpfs, or (by the job's rule) the
/// supervisor that committed it, after which recovery reads level 2, the mirrored disks.
///
/// One file per rank and round, `RRRRRR-EEEEEEEEEEEEEEEEEEEE.l1`, written under a temporary
/// name and renamed: no fsync, since memory holds it either way. It begins with a 48-byte
/// header (magic `LLM1`, version 1, the rank, the round, the body's length and its XXH3-128),
/// so a copy that was cut short, changed or belongs to another rank or round is refused.
package struct MemoryLevel: Sendable {
    /// The folder that holds the job's level-1 copies on this host.
    package let folder: String

    static let magic: [UInt8] = Array("LLM1".utf8)
    static let version: UInt16 = 1
    /// The header's size in bytes.
    package static let headerByteCount = 48

    /// The store in `folder` (created by `create()`, or by the job's supervisor).
    package init(folder: String) {
        self.folder = folder
    }

    /// The job's level-1 folder under `root` (a memory file system): one per job, named by
    /// the job's ID, so a later supervisor of the same job finds it.
    package static func folder(root: String, jobID: String) -> String {
        (root.hasSuffix("/") ? String(root.dropLast()) : root) + "/lifeline-" + jobID
    }

    /// Whether `path` is on a memory file system (tmpfs or ramfs): what level 1 is meant for.
    /// Read from `/proc/self/mounts`: the file system of the longest mount point `path` is under.
    package static func isMemoryFileSystem(_ path: String) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1]), type = String(fields[2])
            let under = point == "/" || resolved == point || resolved.hasPrefix(point + "/")
            if under, point.count >= (best?.point.count ?? -1) { best = (point, type) }
        }
        return best.map { $0.type == "tmpfs" || $0.type == "ramfs" } ?? false
    }

    /// Makes the folder (and its parents) if it is not there.
    package func create() throws(StorageError) {
        try PosixFile.makeRoot(folder)
    }

    /// Removes the folder and everything in it.
    package func removeAll() {
        try? PosixFile.removeTree(folder)
    }

    /// Removes every copy in the folder, which stays.
    package func removeCopies() {
        for name in PosixFile.entries(folder) { unlink(folder + "/" + name) }
    }

    /// The file name of `rank`'s copy of round `epoch`.
    package static func fileName(rank: Int, epoch: UInt64) -> String {
        ManifestStore.zeroPadded(UInt64(rank), digits: 6) + "-" + ManifestStore.zeroPadded(epoch, digits: 20) + ".l1"
    }

    /// The rank and round a file name names, or nil for any other name.
    package static func parse(_ name: String) -> (rank: Int, epoch: UInt64)? {
        guard name.hasSuffix(".l1") else { return nil }
        let parts = name.dropLast(3).split(separator: "-")
        guard parts.count == 2, parts[0].count == 6, parts[1].count == 20,
              let rank = Int(parts[0]), let epoch = UInt64(parts[1]) else { return nil }
        return (rank, epoch)
    }

    /// Writes `rank`'s copy of round `epoch`: the segments' bytes in order, behind the header.
    /// Returns the bytes written. Throws when the memory file system is full or gone (the
    /// temporary file is removed).
    @discardableResult
    package func write(rank: Int, epoch: UInt64, segments: [ChunkedSnapshots.Segment]) throws(StorageError) -> Int {
        let name = Self.fileName(rank: rank, epoch: epoch)
        let path = folder + "/" + name
        let temporary = folder + "/" + PosixFile.temporaryName(for: name)
        let length = segments.reduce(0) { $0 + $1.range.count }
        let hash = Self.hash(segments)
        var header: [UInt8] = Self.magic
        FileFormat.appendLittleEndian(Self.version, to: &header)
        FileFormat.appendLittleEndian(UInt16(0), to: &header)
        FileFormat.appendLittleEndian(UInt32(rank), to: &header)
        FileFormat.appendLittleEndian(UInt32(0), to: &header)
        FileFormat.appendLittleEndian(epoch, to: &header)
        FileFormat.appendLittleEndian(UInt64(length), to: &header)
        FileFormat.appendLittleEndian(hash.high, to: &header)
        FileFormat.appendLittleEndian(hash.low, to: &header)
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError(errno: errno, operation: "create", path: temporary) }
        do throws(StorageError) {
            try PosixFile.writeAll(fd, header, path: temporary)
            for segment in segments where !segment.range.isEmpty {
                let failure = segment.bytes.withUnsafeBytes { raw -> StorageError? in
                    do throws(StorageError) {
                        try PosixFile.writeAll(fd, UnsafeRawBufferPointer(rebasing: raw[segment.range]), path: temporary)
                        return nil
                    } catch {
                        return error
                    }
                }
                if let failure { throw failure }
            }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let error = StorageError(errno: errno, operation: "rename", path: path)
            unlink(temporary)
            throw error
        }
        return Self.headerByteCount + length
    }

    /// Whether `rank`'s copy of round `epoch` is there (not read).
    package func has(rank: Int, epoch: UInt64) -> Bool {
        PosixFile.isRegularFile(folder + "/" + Self.fileName(rank: rank, epoch: epoch))
    }

    /// `rank`'s copy of round `epoch`, checked against its header: nil when there is none;
    /// throws when it is there but cut short, changed, or not this rank's copy of this round.
    /// The body is read straight into the array returned (one copy).
    package func read(rank: Int, epoch: UInt64) throws(StorageError) -> [UInt8]? {
        try withMapped(rank: rank, epoch: epoch) { body in
            [UInt8](unsafeUninitializedCapacity: body.count) { buffer, count in
                if let base = buffer.baseAddress, let source = body.baseAddress { memcpy(base, source, body.count) }
                count = body.count
            }
        }
    }

    /// Checks `rank`'s copy of round `epoch` as `read` does without copying it (the file is
    /// mapped): false when there is none; throws when it does not check.
    package func verify(rank: Int, epoch: UInt64) throws(StorageError) -> Bool {
        try withMapped(rank: rank, epoch: epoch) { _ in true } ?? false
    }

    /// Maps `rank`'s copy of round `epoch`, checks its header and hash, and gives `body` its
    /// body; nil when there is no copy.
    private func withMapped<T>(rank: Int, epoch: UInt64, _ body: (UnsafeRawBufferPointer) -> T) throws(StorageError) -> T? {
        let path = folder + "/" + Self.fileName(rank: rank, epoch: epoch)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StorageError(errno: errno, operation: "open", path: path)
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw StorageError(errno: errno, operation: "fstat", path: path) }
        let size = Int(status.st_size)
        guard size >= Self.headerByteCount else {
            throw StorageError(.corrupt, path: path, message: "\(size) bytes, shorter than the level-1 header")
        }
        // Populated at once: one call maps every page, instead of a fault per page.
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0), mapped != MAP_FAILED else {
            throw StorageError(errno: errno, operation: "mmap", path: path)
        }
        defer { munmap(mapped, size) }
        let file = UnsafeRawBufferPointer(start: mapped, count: size)
        let header = Array(file[0..<Self.headerByteCount])
        guard Array(header[0..<4]) == Self.magic else {
            throw StorageError(.corrupt, path: path, message: "not a level-1 snapshot copy")
        }
        let version: UInt16 = FileFormat.readLittleEndian(header, at: 4)
        guard version == Self.version else {
            throw StorageError(.badFormat, path: path, message: "level-1 format version \(version), this build reads \(Self.version)")
        }
        let storedRank: UInt32 = FileFormat.readLittleEndian(header, at: 8)
        let storedEpoch: UInt64 = FileFormat.readLittleEndian(header, at: 16)
        let length: UInt64 = FileFormat.readLittleEndian(header, at: 24)
        let high: UInt64 = FileFormat.readLittleEndian(header, at: 32)
        let low: UInt64 = FileFormat.readLittleEndian(header, at: 40)
        guard storedRank == UInt32(rank), storedEpoch == epoch else {
            throw StorageError(.corrupt, path: path, message: "holds rank \(storedRank)'s round \(storedEpoch), not rank \(rank)'s round \(epoch)")
        }
        guard UInt64(size - Self.headerByteCount) == length else {
            throw StorageError(.corrupt, path: path, message: "body is \(size - Self.headerByteCount) bytes, header says \(length)")
        }
        let content = UnsafeRawBufferPointer(rebasing: file[Self.headerByteCount...])
        let hash = ContentHash(of: content)
        guard hash.high == high, hash.low == low else {
            throw StorageError(.corrupt, path: path, message: "body hash mismatch")
        }
        return body(content)
    }

    /// Removes `rank`'s copies of rounds before `epoch` (the line `epoch` committed), and its
    /// temporary files: a write that died with its process leaves one, and the caller (the
    /// rank's only writer, between writes) has none under way.
    package func removeOlder(rank: Int, than epoch: UInt64) {
        for name in PosixFile.entries(folder) {
            if let (owner, round) = Self.parse(name) {
                if owner == rank, round < epoch { unlink(folder + "/" + name) }
            } else if PosixFile.isHidden(name), let inner = name.dropFirst().components(separatedBy: ".tmp.").first,
                      Self.parse(inner)?.rank == rank {
                unlink(folder + "/" + name)
            }
        }
    }

    /// The bytes of `rank`'s copies here, but for its copy of round `epoch`.
    package func bytesHeld(rank: Int, except epoch: UInt64) -> Int {
        PosixFile.entries(folder).reduce(0) { total, name in
            guard let (owner, round) = Self.parse(name), owner == rank, round != epoch else { return total }
            var info = stat()
            return stat(folder + "/" + name, &info) == 0 ? total + Int(info.st_size) : total
        }
    }

    /// The rounds of which `rank` holds a copy here.
    package func rounds(of rank: Int) -> [UInt64] {
        PosixFile.entries(folder).compactMap(Self.parse).filter { $0.rank == rank }.map(\.epoch).sorted()
    }

    /// XXH3-128 of the segments' bytes in order, as one stream.
    static func hash(_ segments: [ChunkedSnapshots.Segment]) -> ContentHash {
        guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        defer { XXH3_freeState(state) }
        XXH3_128bits_reset(state)
        for segment in segments where !segment.range.isEmpty {
            segment.bytes.withUnsafeBytes { raw in
                let part = UnsafeRawBufferPointer(rebasing: raw[segment.range])
                _ = XXH3_128bits_update(state, part.baseAddress, part.count)
            }
        }
        let digest = XXH3_128bits_digest(state)
        return ContentHash(high: digest.high64, low: digest.low64)
    }
}
