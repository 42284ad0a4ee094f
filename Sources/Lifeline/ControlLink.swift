#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage
import Synchronization

/// A rank's connection to its supervisor. Three threads write to it (the program's, the
/// heartbeat thread and the snapshot writer), so writes are whole frames under a lock; only
/// the program's thread reads it.
final class ControlLink: Sendable {
    /// The socket.
    let fd: Int32
    private let writeLock = Mutex(())
    private let released = Atomic<Bool>(false)

    /// Wraps a connected, handshaken socket.
    init(fd: Int32) { self.fd = fd }

    /// Sends one message. A rank whose supervisor is gone has nothing left to do: it exits
    /// (unless the job was released: then the supervisor may close first, and the rank is
    /// on its way out anyway).
    func send(_ message: ControlMessage) {
        let frame = message.frame()
        let sent = writeLock.withLock { _ in Socket.sendAll(fd, frame) }
        if !sent, !released.load(ordering: .acquiring) { supervisorGone() }
    }

    /// The supervisor released the job: a send that fails from now on is not a lost supervisor.
    func markReleased() { released.store(true, ordering: .releasing) }
}

/// A rank on another host under `--levels memory,disk`: its folder in memory there and its rank,
/// whose copies it removes as it ends (`supervisorGone`, `RankRuntime.finish`).
let copiesRemovedAtExit = Mutex<(folder: String, rank: Int)?>(nil)

/// Ends a rank whose supervisor has gone: no orphaned processes. A rank on another host first
/// removes its copies in memory there: they outlive no supervisor (a resume restores from
/// disk), and no process of the job is left on that host to remove them.
func supervisorGone() -> Never {
    if let (folder, rank) = copiesRemovedAtExit.withLock({ $0 }) { MemoryLevel(folder: folder).removeCopies(of: rank) }
    _exit(3)
}
