#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport

/// The union of a host's ranks' message-log sync intervals (`lifeline_sync_time.h`): a page in
/// the run directory that the supervisor makes and its local ranks map. It is what a job spent
/// making its logs durable, the floor that pessimistic logging's overhead is set beside: the
/// slowest rank's own sync time misses syncs of ranks that take turns (a master and a worker
/// each wait for the other's), and the sum over ranks counts twice syncs that overlap.
///
/// Sendable: the page is only touched through the atomic operations of the header, by any
/// thread or process.
final class SharedSyncTime: @unchecked Sendable {
    private let page: UnsafeMutableRawPointer
    private static let bytes = 4096

    private init(page: UnsafeMutableRawPointer) {
        self.page = page
    }

    deinit {
        munmap(page, Self.bytes)
    }

    /// Makes the page at `path` (zeroed, readable by the user only) and maps it; nil when it
    /// cannot (the run then reports no union). A link planted at `path` is not followed, and an
    /// existing file that is not the supervisor's own regular file is left alone.
    static func create(path: String) -> SharedSyncTime? {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, status.st_uid == geteuid(),
              fchmod(fd, 0o600) == 0, ftruncate(fd, 0) == 0, ftruncate(fd, off_t(bytes)) == 0 else { return nil }
        return map(fd)
    }

    /// Maps the page a supervisor made at `path`; nil when it is not one.
    static func open(path: String) -> SharedSyncTime? {
        let fd = Glibc.open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, Int(status.st_size) == bytes
        else { return nil }
        return map(fd)
    }

    private static func map(_ fd: Int32) -> SharedSyncTime? {
        let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != MAP_FAILED else { return nil }
        return SharedSyncTime(page: base)
    }

    /// Runs `sync` (a log append that returns once its records are durable) as one interval,
    /// its ends stamped beside the atomic updates that count it.
    func measure<T>(_ sync: () throws -> T) rethrows -> T {
        lifeline_sync_time_enter(page)
        defer { lifeline_sync_time_leave(page) }
        return try sync()
    }

    /// The union's seconds so far; nil while a sync is under way, or when a rank was killed
    /// inside one (its interval never ends).
    var seconds: Double? {
        let total = lifeline_sync_time_total(page)
        return total < 0 ? nil : Double(total) / 1e9
    }
}
