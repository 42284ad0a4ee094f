#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
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

    /// From now on, when the program ends the process with a status other than 0 (`exit`, or
    /// a return from its main function), the process's exit handler says it (`exiting`) before
    /// the process goes: on another host the supervisor cannot tell a program's own status 3
    /// from a rank that lost its link otherwise. The runtime's own exits (`_exit`) skip it.
    func sayProgramExits() {
        programExitLink.withLock { $0 = (self, getpid()) }
        on_exit(sayProgramExit, nil)
    }

    /// Sends one message if it can, and nothing else: from an exit handler, a link that is gone
    /// must not change the status the process exits with.
    fileprivate func trySend(_ message: ControlMessage) {
        let frame = message.frame()
        _ = writeLock.withLock { _ in Socket.sendAll(fd, frame) }
    }
}

/// The link the exit handler says the program's status on (`ControlLink.sayProgramExits`), and
/// the process that registered it.
private let programExitLink = Mutex<(link: ControlLink, pid: pid_t)?>(nil)

/// The process's exit handler: says a status other than 0 on the rank's control link (not in a
/// child the program forked, whose exit is not the rank's).
private func sayProgramExit(_ status: Int32, _: UnsafeMutableRawPointer?) {
    guard status != 0, let registered = programExitLink.withLock({ $0 }), registered.pid == getpid() else { return }
    registered.link.trySend(.exiting(status: status))
}

/// A rank on another host under `--levels memory,disk`: its folder in memory there, its rank,
/// whose copies it removes once the job is released (`RankRuntime.finish`), and the folder's
/// ranks' lock it holds (`MemoryLevel.holdRanksLock`; nil if it could not), let go then.
let copiesRemovedAtExit = Mutex<(folder: String, rank: Int, lock: Int32?)?>(nil)

/// Ends a rank whose supervisor has gone: no orphaned processes. (A rank on another host leaves
/// its copies in memory there: its link may have dropped while the supervisor lives, which then
/// relaunches it on that host to restore from them. A later rank of it on that host removes
/// what it does not restore, `MemoryLevel.removeCopies(of:except:)`; once no rank of the job
/// lives on the host, a rank of the next job there removes the folder, `MemoryLevel.reclaimAbandoned`.)
func supervisorGone() -> Never {
    _exit(RuntimeExitStatus.linkLost)
}

/// Ends rank `rank` with `status`, one of the runtime's own (`RuntimeExitStatus`), after saying
/// `what` on its standard error and the status to its supervisor (`control`, `stopping`): the
/// supervisor reads the status, not the program's failure, and decides its recovery.
func stopForSupervisor(_ status: Int32, rank: Int, _ what: String, control: ControlLink?) -> Never {
    FileHandle.standardError.write(Data("lifeline: rank \(rank): \(what)\n".utf8))
    control?.send(.stopping(status: status))
    _exit(status)
}

