#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import LifelineCore
import CLifelineSupport
import LifelineStorage

/// Thin wrappers over the POSIX socket calls the runtime uses: Unix-domain stream sockets in
/// Linux's abstract namespace (no file, no 108-byte path problem, gone with the process).
enum Socket {
    /// Makes a listening socket bound to the abstract name `name`.
    static func listen(abstractName name: String, backlog: Int32 = 128) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw transportError("socket") }
        var (address, length) = try abstractAddress(name)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0 else {
            let error = transportError("bind \(name)")
            close(fd)
            throw error
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)  // accept until none is pending
        return fd
    }

    /// Connects to the abstract name `name`.
    static func connect(abstractName name: String) throws -> Int32 {
        guard let fd = try connectUnlessRefused(abstractName: name) else {
            throw LifelineError(.transport, "connect to \(name) failed: \(String(cString: strerror(ECONNREFUSED)))")
        }
        return fd
    }

    /// Connects to the abstract name `name`; nil when nothing listens there (ECONNREFUSED: the
    /// process that did is gone). Any other failure is thrown.
    static func connectUnlessRefused(abstractName name: String) throws -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw transportError("socket") }
        var (address, length) = try abstractAddress(name)
        while true {
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
            }
            if connected == 0 { return fd }
            if errno == EINTR { continue }
            let refused = errno == ECONNREFUSED
            let error = transportError("connect to \(name)")
            close(fd)
            if refused { return nil }
            throw error
        }
    }

    /// Accepts one connection, or returns nil when none is pending.
    static func accept(_ listener: Int32) -> Int32? {
        let fd = lifeline_accept(listener)
        return fd >= 0 ? fd : nil
    }

    /// Sets large socket buffers, which matter for bandwidth with big messages.
    static func tune(_ fd: Int32) {
        var size: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Writes all of `bytes`, blocking, with the descriptor `passing` attached to the first byte
    /// (SCM_RIGHTS; the caller still owns and closes it); false when the peer is gone.
    @discardableResult
    static func sendAll(_ fd: Int32, _ bytes: [UInt8], passing descriptor: Int32? = nil) -> Bool {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let sent = offset == 0 && descriptor != nil
                    ? lifeline_send_with_descriptor(fd, buffer.baseAddress!, buffer.count, descriptor!)
                    : send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                if sent < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += sent
            }
            return true
        }
    }

    /// The user id of the process at the other end of a Unix-domain socket, where the platform
    /// says (SO_PEERCRED).
    static func peerUID(_ fd: Int32) -> uid_t? {
        var uid: uid_t = 0
        return lifeline_peer_uid(fd, &uid) == 0 ? uid : nil
    }

    private static func abstractAddress(_ name: String) throws -> (sockaddr_un, socklen_t) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count + 1 <= capacity else {
            throw LifelineError(.transport, "socket name '\(name)' is longer than \(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0  // abstract namespace
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        let length = MemoryLayout<sa_family_t>.size + 1 + bytes.count
        return (address, socklen_t(length))
    }

    private static func transportError(_ what: String) -> LifelineError {
        LifelineError(.transport, "\(what) failed: \(String(cString: strerror(errno)))")
    }
}
