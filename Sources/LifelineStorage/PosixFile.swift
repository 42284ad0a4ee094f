import Foundation
import CLifelineSupport
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Thin POSIX wrappers that retry on EINTR, finish short writes and throw `StorageError`.
enum PosixFile {
    /// Largest file `readAll` will load, a guard against a mistaken path to a huge file.
    static let readBytesMax = 1 << 40

    /// A file written under its temporary name and open, not yet durable nor renamed. Either
    /// `commit` or `abandon` it.
    struct StagedFile {
        /// The open temporary file.
        let fd: Int32
        /// Where it is being written: `.fileName.tmp.PID.N` beside the final name.
        let temporaryPath: String
        /// The name it takes when committed.
        let finalPath: String
    }

    /// Writes `bytes` to a temporary file beside `directory/fileName` and starts its write-back
    /// to the device without waiting for it, so that the fsyncs of many staged files overlap.
    /// Nothing replaces the final name until `commit`.
    static func stage(_ bytes: [UInt8], directory: String, fileName: String) throws(StorageError) -> StagedFile {
        let temporaryPath = directory + "/" + temporaryName(for: fileName)
        let fd = try openRetrying(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, operation: "create")
        let staged = StagedFile(fd: fd, temporaryPath: temporaryPath, finalPath: directory + "/" + fileName)
        do throws(StorageError) {
            try writeAll(fd, bytes, path: temporaryPath)
        } catch {
            abandon(staged)
            throw error
        }
        _ = lifeline_start_writeback(fd)  // only a hint: the fsync in `commit` is what counts
        return staged
    }

    /// Makes a staged file durable (fsync) and renames it over its final name. The rename is
    /// durable only once the folder is fsynced (`fsyncDirectory`). On failure the temporary
    /// file is removed and the final name is untouched.
    static func commit(_ staged: StagedFile) throws(StorageError) {
        if fsync(staged.fd) != 0 {
            let code = errno
            abandon(staged)
            throw StorageError(errno: code, operation: "fsync", path: staged.temporaryPath)
        }
        close(staged.fd)
        if rename(staged.temporaryPath, staged.finalPath) != 0 {
            let code = errno
            unlink(staged.temporaryPath)
            throw StorageError(errno: code, operation: "rename", path: staged.finalPath)
        }
    }

    /// Closes and removes a staged file that will not be committed.
    static func abandon(_ staged: StagedFile) {
        close(staged.fd)
        unlink(staged.temporaryPath)
    }

    /// Writes `bytes` to `directory/fileName` so that a crash leaves either the old file or the
    /// new one: staged under a temporary name, fsynced, renamed over the name, and the folder
    /// fsynced.
    static func writeAtomically(_ bytes: [UInt8], directory: String, fileName: String) throws(StorageError) {
        try commit(try stage(bytes, directory: directory, fileName: fileName))
        try fsyncDirectory(directory)
    }

    /// The temporary name used while writing `fileName`; hidden, so listings skip it. The
    /// process id and a counter make it unique, so two threads writing (or repairing) the same
    /// name at once each write a file of their own and the last rename wins.
    static func temporaryName(for fileName: String) -> String {
        ".\(fileName).tmp.\(getpid()).\(temporaryCounter.add(1, ordering: .relaxed).newValue)"
    }

    /// Numbers the temporary files of this process.
    private static let temporaryCounter = Atomic<UInt64>(0)

    /// Whether `fileName` is a temporary (or other hidden) file that listings ignore.
    static func isHidden(_ fileName: String) -> Bool {
        fileName.hasPrefix(".")
    }

    /// At most `count` bytes of the file at `path` from `offset` (fewer at its end, none past
    /// it); nil when it does not exist.
    static func readPart(of path: String, offset: Int, count: Int) throws(StorageError) -> [UInt8]? {
        let fd = openIgnoringInterrupts(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw StorageError(errno: errno, operation: "open", path: path)
        }
        defer { close(fd) }
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let read = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + filled, count - filled, off_t(offset + filled)) }
            if read < 0, errno == EINTR { continue }
            guard read >= 0 else { throw StorageError(errno: errno, operation: "pread", path: path) }
            if read == 0 { break }
            filled += read
        }
        bytes.removeLast(count - filled)
        return bytes
    }

    /// Reads the whole file, or returns nil if it does not exist.
    ///
    /// With `dropCache`, asks the kernel to drop the file's clean cached pages first
    /// (`posix_fadvise(DONTNEED)`), so that after an fsync the read comes from the device where
    /// the file system honours the advice (not on tmpfs; a drive's own cache may still answer).
    static func readAll(_ path: String, dropCache: Bool) throws(StorageError) -> [UInt8]? {
        let fd = openIgnoringInterrupts(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let code = errno
            if code == ENOENT { return nil }
            throw StorageError(errno: code, operation: "open", path: path)
        }
        defer { close(fd) }
        #if canImport(Glibc)
        if dropCache { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
        #endif
        var status = stat()
        if fstat(fd, &status) != 0 {
            throw StorageError(errno: errno, operation: "fstat", path: path)
        }
        let size = Int(status.st_size)
        if size > readBytesMax {
            throw StorageError(.ioFailure, path: path, message: "file is \(size) bytes, over the \(readBytesMax)-byte read limit")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        var total = 0
        while total < size {
            let count = bytes.withUnsafeMutableBytes { buffer in
                read(fd, buffer.baseAddress! + total, size - total)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw StorageError(errno: errno, operation: "read", path: path)
            }
            if count == 0 { break }  // the file shrank while we read it
            total += count
        }
        if total < size { bytes.removeLast(size - total) }
        return bytes
    }

    /// Creates `root/relative` and any missing folders in between, fsyncing each parent that
    /// gained a folder. `root` itself must exist.
    static func makeDirectories(root: String, relative: String) throws(StorageError) {
        var current = root
        for component in relative.split(separator: "/") {
            let next = current + "/" + component
            if mkdir(next, 0o755) == 0 {
                try fsyncDirectory(current)
            } else if errno != EEXIST {
                throw StorageError(errno: errno, operation: "mkdir", path: next)
            }
            current = next
        }
    }

    /// Creates the folder `path` and its parents (like `mkdir -p`).
    static func makeRoot(_ path: String) throws(StorageError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw StorageError(errno: errno, operation: "create storage root", path: path, isRoot: true)
            }
        }
        var status = stat()
        if stat(path, &status) != 0 {
            throw StorageError(errno: errno, operation: "stat storage root", path: path, isRoot: true)
        }
        if (status.st_mode & S_IFMT) != S_IFDIR {
            throw StorageError(.rootMissing, path: path, message: "storage root exists but is not a folder")
        }
    }

    /// Flushes a folder's entries (a rename or create inside it) to the device.
    static func fsyncDirectory(_ path: String) throws(StorageError) {
        let fd = try openRetrying(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, operation: "open folder")
        defer { close(fd) }
        if fsync(fd) != 0 && errno != EINVAL {  // EINVAL: the file system cannot sync folders
            throw StorageError(errno: errno, operation: "fsync folder", path: path)
        }
    }

    /// Removes a file; a missing file is fine. Returns whether a file was removed.
    @discardableResult
    static func removeFile(_ path: String) throws(StorageError) -> Bool {
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw StorageError(errno: errno, operation: "unlink", path: path)
    }

    /// Removes a folder and everything in it; a missing folder is fine.
    static func removeTree(_ path: String) throws(StorageError) {
        guard FileManager.default.fileExists(atPath: path) else { return }
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            throw StorageError(.ioFailure, path: path, message: "removing folder failed: \(error)")
        }
    }

    /// Names in a folder (files and folders, hidden ones included), sorted; empty if the folder
    /// is missing or unreadable.
    static func entries(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Whether `path` is a folder (not following a final symlink).
    static func isDirectory(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFDIR
    }

    /// Whether `path` is a regular file (not following a final symlink).
    static func isRegularFile(_ path: String) -> Bool {
        var status = stat()
        return lstat(path, &status) == 0 && (status.st_mode & S_IFMT) == S_IFREG
    }

    /// Store-relative paths of every regular file under `root/relative`, hidden files included,
    /// sorted.
    static func walkFiles(root: String, relative: String = "") -> [String] {
        var found: [String] = []
        let folder = relative.isEmpty ? root : root + "/" + relative
        for name in entries(folder) {
            let child = relative.isEmpty ? name : relative + "/" + name
            let full = root + "/" + child
            if isDirectory(full) {
                found += walkFiles(root: root, relative: child)
            } else if isRegularFile(full) {
                found.append(child)
            }
        }
        return found
    }

    /// `open`, retried on EINTR; returns -1 with `errno` set on failure.
    private static func openIgnoringInterrupts(_ path: String, _ flags: Int32) -> Int32 {
        while true {
            let fd = open(path, flags, 0o644)
            if fd >= 0 || errno != EINTR { return fd }
        }
    }

    private static func openRetrying(_ path: String, _ flags: Int32, operation: String) throws(StorageError) -> Int32 {
        let fd = openIgnoringInterrupts(path, flags)
        if fd < 0 { throw StorageError(errno: errno, operation: operation, path: path) }
        return fd
    }

    /// Writes all of `bytes` to `fd`, finishing short writes and retrying on EINTR.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(StorageError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw StorageError(errno: errno, operation: "write", path: path)
            }
            written += count
        }
    }

    /// Writes all of `bytes` to `fd`, finishing short writes and retrying on EINTR.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String) throws(StorageError) {
        var written = 0
        while written < bytes.count {
            let count = write(fd, bytes.baseAddress! + written, bytes.count - written)
            if count < 0 {
                if errno == EINTR { continue }
                throw StorageError(errno: errno, operation: "write", path: path)
            }
            written += count
        }
    }
}

/// Seconds on the monotonic clock: the one clock for waits, deadlines and measured durations in
/// the storage layer and the runtime above it.
@inlinable
package func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}
