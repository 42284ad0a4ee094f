#if canImport(Glibc)
import Glibc
#endif
import Crypto
import Foundation
import LifelineCore
import LifelineStorage
import Synchronization

/// TCP between hosts: listeners bound to one address, connections with a deadline, dead links
/// found in bounded time, and the mutual handshake that proves knowledge of the job's token
/// without sending it (`HostHandshake`). Ranks on one host keep their Unix sockets.
enum HostLink {
    /// How long a connector waits for the acceptor's challenge. A live acceptor answers at once
    /// (the supervisor's loop and each rank's acceptor thread never compute).
    static let handshakeSeconds = 5.0
    /// Unacknowledged data older than this breaks a TCP connection (TCP_USER_TIMEOUT): a cut
    /// link surfaces as an error on the next send instead of a silent stall. Heartbeats make
    /// sure there is always something to send. A rank on another host sets it from its launch
    /// (`LaunchEnvironment.Hosts.linkTimeoutMs`), shorter than the supervisor's heartbeat
    /// timeout: it is gone before the supervisor replaces it.
    static let userTimeoutMs = Atomic<UInt32>(3000)

    /// The link timeout of a job's ranks on other hosts: a rank cut off from its supervisor
    /// finds out from a failed heartbeat and exits before the supervisor, which judges it after
    /// `heartbeatTimeoutMs` of silence, relaunches it elsewhere (a lease: the two never run at
    /// once). Half of what the timeout leaves after two heartbeat periods, at least 100 ms.
    static func linkTimeoutMs(heartbeatMs: Int, heartbeatTimeoutMs: Int) -> Int {
        max(100, (heartbeatTimeoutMs - 2 * heartbeatMs) / 2)
    }

    /// HMAC-SHA256 of `transcript` keyed by the job's token.
    static func mac(token: String, _ transcript: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: transcript, using: SymmetricKey(data: Array(token.utf8))))
    }

    /// `HostHandshake.nonceBytes` bytes from the system's random source.
    static func nonce() -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<HostHandshake.nonceBytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// The acceptor's side: the challenge that answers `hello`, for an acceptor of `identity`.
    static func challenge(answering hello: HostHello, identity: HostIdentity, token: String) -> HostChallenge {
        var challenge = HostChallenge(
            role: identity.role, rank: identity.rank, incarnation: identity.incarnation, nonce: nonce(), mac: [])
        challenge.mac = mac(token: token, HostHandshakeTranscript.acceptor(hello, challenge))
        return challenge
    }

    // MARK: Sockets

    /// The IPv4 address of `host` as the system's resolver gives it (a dotted address is taken
    /// as it is); nil when it has none.
    static func resolve(_ host: String) -> String? {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(result) }
        guard let address = first.pointee.ai_addr else { return nil }
        return address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { text(of: $0.pointee.sin_addr) }
    }

    /// The local address this machine would use to reach `address` (no packet is sent: a UDP
    /// socket is only connected and asked its name).
    static func sourceAddress(toReach address: String) -> String? {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard var target = try? socketAddress(address, port: 9) else { return nil }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0, let local = boundAddress(fd) else { return nil }
        return local.address
    }

    /// A listening TCP socket on `address` (port 0: any free port), non-blocking, and the port
    /// it got.
    static func listen(address: String, port: UInt16 = 0, backlog: Int32 = 128) throws -> (fd: Int32, port: UInt16) {
        var local = try socketAddress(address, port: port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw error("socket") }
        var reuse: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, backlog) == 0, let name = boundAddress(fd) else {
            let failure = error("listen on \(address):\(port)")
            close(fd)
            throw failure
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return (fd, name.port)
    }

    /// Connects to `address:port` within `seconds`; nil when nothing listens there, the host
    /// cannot be reached, or the time passes (the caller treats each as the peer being gone).
    /// The socket is blocking, with TCP_NODELAY and TCP_USER_TIMEOUT set.
    static func connect(address: String, port: UInt16, seconds: Double) throws -> Int32? {
        var remote = try socketAddress(address, port: port)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw error("socket") }
        let started = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if started != 0 {
            guard errno == EINPROGRESS || errno == EINTR else {
                close(fd)
                return nil
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            var failure: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard poll(&descriptor, 1, Int32(seconds * 1000)) == 1,
                  getsockopt(fd, SOL_SOCKET, SO_ERROR, &failure, &length) == 0, failure == 0
            else {
                close(fd)
                return nil
            }
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        tune(fd)
        return fd
    }

    /// Sets TCP_NODELAY (small control messages go at once) and TCP_USER_TIMEOUT (a cut link
    /// breaks the connection in bounded time).
    static func tune(_ fd: Int32) {
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        var timeout = userTimeoutMs.load(ordering: .relaxed)
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_USER_TIMEOUT, &timeout, socklen_t(MemoryLayout<UInt32>.size))
    }

    /// The IPv4 address at the other end of a TCP connection.
    static func peerAddress(_ fd: Int32) -> String? {
        var remote = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        return named == 0 && Int32(remote.sin_family) == AF_INET ? text(of: remote.sin_addr) : nil
    }

    /// Whether `fd` is a TCP socket (connections between hosts get `tune`d).
    static func isTCP(_ fd: Int32) -> Bool {
        var address = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return named == 0 && Int32(address.ss_family) == AF_INET
    }

    /// How many times a connector tries before it takes the acceptor for gone: a flood of
    /// strangers' connections may push a real one out of the acceptor's waiting room.
    static let connectAttempts = 5

    /// `connectAuthenticatedOnce`, tried `connectAttempts` times while the acceptor takes the
    /// connection but drops it before its welcome — before its challenge too: a full waiting
    /// room closes its oldest connection whatever it had sent. Between tries the connector
    /// pauses, 20 ms doubling with each, plus as much again at random, so that a burst of
    /// strangers' connections passes and connectors that were dropped together do not come
    /// back together.
    /// `seconds`: how long the connection and each step of the handshake may take.
    static func connectAuthenticated(
        address: String, port: UInt16, hello: HostHello, expected: HostIdentity, acceptIncarnationAbove: Bool = false,
        token: String, seconds: Double = handshakeSeconds
    ) throws -> Int32? {
        for attempt in 0..<connectAttempts {
            if attempt > 0 {
                let pause = UInt32(20_000) << UInt32(attempt - 1)
                usleep(pause + UInt32.random(in: 0...pause))
            }
            var fresh = hello
            fresh.nonce = nonce()
            switch try connectAuthenticatedOnce(
                address: address, port: port, hello: fresh, expected: expected, acceptIncarnationAbove: acceptIncarnationAbove,
                token: token, seconds: seconds) {
            case .connected(let fd): return fd
            case .unreachable: return nil
            case .dropped: continue
            }
        }
        return nil
    }

    /// What one attempt at a connection came to.
    enum Attempt {
        /// Proven both ways and welcomed: the socket.
        case connected(Int32)
        /// Nothing answered (or an older incarnation did): the acceptor is gone.
        case unreachable
        /// The acceptor took the connection, then closed it before its welcome.
        case dropped
    }

    /// Connects to an acceptor of `expected` identity and runs the connector's half of the
    /// mutual handshake: `hello` out, the challenge in (its MAC checked in constant time, its
    /// identity against `expected`), the proof out, the acceptor's welcome in. Throws when the
    /// acceptor answers but cannot prove the token: then something else listens there.
    /// `seconds`: how long the connection and each step of the handshake may take.
    static func connectAuthenticatedOnce(
        address: String, port: UInt16, hello: HostHello, expected: HostIdentity, acceptIncarnationAbove: Bool,
        token: String, seconds: Double = handshakeSeconds
    ) throws -> Attempt {
        guard let fd = try connect(address: address, port: port, seconds: seconds) else { return .unreachable }
        guard Socket.sendAll(fd, hello.frame()),
              let body = readFrame(fd, kind: .challenge, bodyBytesMax: HostHandshake.bodyBytesMax, seconds: seconds)
        else {
            // Closed by the acceptor (the end of the stream, or a reset): dropped, to try again;
            // no challenge within the time: nothing answers there.
            var byte: UInt8 = 0
            let peeked = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
            let closedByPeer = peeked == 0 || (peeked < 0 && (errno == ECONNRESET || errno == EPIPE))
            close(fd)
            return closedByPeer ? .dropped : .unreachable
        }
        let challenge: HostChallenge
        do {
            challenge = try HostChallenge.decode(body)
        } catch {
            close(fd)
            throw LifelineError(.transport, "\(address):\(port) answered the handshake with a malformed challenge: \(error)")
        }
        let expectedMAC = mac(token: token, HostHandshakeTranscript.acceptor(hello, challenge))
        guard HandshakeAcceptor.constantTimeEqual(challenge.mac, expectedMAC) else {
            close(fd)
            throw LifelineError(.transport, "\(address):\(port) does not know the job's token: not this job's \(expected)")
        }
        let incarnationFits = acceptIncarnationAbove
            ? challenge.incarnation >= expected.incarnation : challenge.incarnation == expected.incarnation
        guard challenge.role == expected.role, challenge.rank == expected.rank, incarnationFits else {
            close(fd)
            // An older process of that rank still listens (its host was cut off): not the one
            // to talk to. The caller goes on as if it were gone.
            return .unreachable
        }
        let proof = mac(token: token, HostHandshakeTranscript.connector(hello, challenge))
        guard Socket.sendAll(fd, HostHandshake.frame(.proof, proof)),
              readFrame(fd, kind: .welcome, bodyBytesMax: 0, seconds: seconds) != nil
        else {
            close(fd)
            return .dropped
        }
        return .connected(fd)
    }

    /// Reads one whole frame of `kind` (blocking, within `seconds`), and nothing past it; nil
    /// on another kind, a body over `bodyBytesMax`, an end of stream or the time passing.
    static func readFrame(_ fd: Int32, kind: FrameKind, bodyBytesMax: Int, seconds: Double) -> [UInt8]? {
        let deadline = monotonicSeconds() + seconds
        guard let prefixBytes = receive(fd, count: FramePrefix.byteCount, deadline: deadline),
              let prefix = try? prefixBytes.withUnsafeBytes({ raw throws(WireError) in try FramePrefix.decode(raw) }),
              prefix.kind == kind, prefix.bodyLength <= UInt64(bodyBytesMax)
        else { return nil }
        return receive(fd, count: Int(prefix.bodyLength), deadline: deadline)
    }

    /// Reads exactly `count` bytes (blocking, until the monotonic `deadline`); nil on an end of
    /// stream, an error or the time passing. The array is not zeroed first: the pages of a
    /// length a peer claims are taken only as its bytes come.
    static func receive(_ fd: Int32, count: Int, deadline: Double) -> [UInt8]? {
        var complete = false
        let bytes = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            var filled = 0
            defer { initialized = filled }
            while filled < count {
                let left = deadline - monotonicSeconds()
                var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard left > 0, poll(&descriptor, 1, Int32(min(max(1, left * 1000), Double(Int32.max)))) >= 0 else {
                    if errno == EINTR, left > 0 { continue }
                    return
                }
                guard descriptor.revents != 0 else { continue }
                let received = recv(fd, buffer.baseAddress! + filled, count - filled, Int32(MSG_DONTWAIT))
                if received < 0, errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK { continue }
                guard received > 0 else { return }
                filled += received
            }
            complete = true
        }
        return complete ? bytes : nil
    }

    // MARK: Addresses

    private static func socketAddress(_ address: String, port: UInt16) throws -> sockaddr_in {
        var result = sockaddr_in()
        result.sin_family = sa_family_t(AF_INET)
        result.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &result.sin_addr) == 1 else {
            throw LifelineError(.configuration, "'\(address)' is not an IPv4 address")
        }
        return result
    }

    private static func boundAddress(_ fd: Int32) -> (address: String, port: UInt16)? {
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0, let text = text(of: local.sin_addr) else { return nil }
        return (text, UInt16(bigEndian: local.sin_port))
    }

    private static func text(of address: in_addr) -> String? {
        var address = address
        var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func error(_ what: String) -> LifelineError {
        LifelineError(.transport, "\(what) failed: \(String(cString: strerror(errno)))")
    }
}

/// Who answers a host handshake: the supervisor (rank 0, incarnation 0) or one incarnation of
/// a rank.
struct HostIdentity: Sendable, Equatable, CustomStringConvertible {
    /// `supervisor` or `peer`.
    var role: Handshake.Role
    /// The rank (0 for the supervisor).
    var rank: RankID
    /// The incarnation (0 for the supervisor).
    var incarnation: UInt32

    /// The supervisor's identity.
    static let supervisor = HostIdentity(role: .supervisor, rank: RankID(0), incarnation: 0)

    var description: String {
        role == .supervisor ? "supervisor" : "rank \(rank.rawValue) (incarnation \(incarnation))"
    }
}

/// A rank's TCP listener for peers on other hosts, served by a thread of its own: a connector
/// waits for the challenge, and the rank's program may be computing for minutes between two
/// calls of the runtime. The thread runs each handshake (`HandshakeAcceptor`, mutual) and hands
/// the proven connections to the program's thread, which polls `wakeFD`; a storage connection
/// (a partner rank's mirror B, `PartnerFolder`) goes to a thread of its own instead, which
/// serves `storage` whatever the program does.
final class HostListener: Sendable {
    /// The port the listener got.
    let port: UInt16
    /// Readable when proven connections wait in `take()`.
    let wakeFD: Int32
    private let wakeWriteFD: Int32
    private let ready = Mutex<[(fd: Int32, handshake: Handshake)]>([])
    /// The incarnation each rank runs as, as far as this rank heard (`fence(_:)`): a new
    /// storage connection from an older one (a process left running on a host that was cut
    /// off) is closed, so it cannot overwrite what its replacement writes to the folder kept
    /// here; one it opened before it was replaced is closed at its next request.
    private let incarnations = Mutex<[UInt32]>([])

    /// Listens on `address` and starts the thread that accepts peers for the rank of `identity`,
    /// partners' storage connections for the folder `storage` keeps, the supervisor's for the
    /// host's own folder `lent`, and partners' for the host's folder in memory `memory`, where
    /// their level-1 copies are kept (none taken when nil).
    init(
        address: String, identity: HostIdentity, token: String, storage: FolderService? = nil, lent: FolderService? = nil,
        memory: FolderService? = nil
    ) throws {
        let (listener, port) = try HostLink.listen(address: address)
        self.port = port
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw LifelineError(.environment, "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        wakeFD = fds[0]
        wakeWriteFD = fds[1]
        let services: [Handshake.Role: FolderService] = [.storage: storage, .hostFolder: lent, .partnerMemory: memory]
            .compactMapValues { $0 }
        Thread.detachNewThread { [self] in serve(listener: listener, identity: identity, token: token, services: services) }
    }

    /// Takes the incarnations of the supervisor's newest table of where the ranks listen.
    func fence(_ table: [RankAddress?]) {
        incarnations.withLock { known in
            known = table.map { $0?.incarnation ?? 0 }
        }
    }

    /// Whether a storage connection from `handshake`'s rank and incarnation is taken.
    private func admitsStorage(_ handshake: Handshake) -> Bool {
        incarnations.withLock { known in
            let rank = handshake.rank.rawValue
            return rank >= known.count || handshake.incarnation >= known[rank]
        }
    }

    /// The connections whose handshake proved the token since the last call (the caller owns
    /// their sockets).
    func take() -> [(fd: Int32, handshake: Handshake)] {
        var drain = [UInt8](repeating: 0, count: 64)
        while read(wakeFD, &drain, drain.count) > 0 {}
        return ready.withLock { taken in
            defer { taken = [] }
            return taken
        }
    }

    /// The roles of the connections handed to a folder service rather than to the rank.
    private static let folderRoles: Set<Handshake.Role> = [.storage, .hostFolder, .partnerMemory]

    private func serve(listener: Int32, identity: HostIdentity, token: String, services: [Handshake.Role: FolderService]) {
        let acceptor = HandshakeAcceptor(listener: listener, mutual: identity, token: token)
        let rank = identity.rank
        while true {
            var descriptors = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            for fd in acceptor.descriptors { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            _ = poll(&descriptors, nfds_t(descriptors.count), 250)
            var proven: [(fd: Int32, handshake: Handshake)] = []
            for descriptor in descriptors where descriptor.revents != 0 {
                if descriptor.fd == listener {
                    proven += acceptor.acceptAll(now: monotonicSeconds())
                } else if let done = acceptor.read(descriptor.fd) {
                    proven.append(done)
                }
            }
            acceptor.expire(now: monotonicSeconds())
            if let report = acceptor.takeReport(now: monotonicSeconds()) {
                FileHandle.standardError.write(Data(
                    "lifeline: \(rank) refused \(report.count) connection(s) from other hosts: \(report.reasons)\n".utf8))
            }
            for connection in proven where Self.folderRoles.contains(connection.handshake.role) {
                // Over its limit of connections the server closes the new one.
                if let service = services[connection.handshake.role], admitsStorage(connection.handshake) {
                    let handshake = connection.handshake
                    _ = PartnerFolderServer.start(connection.fd, service: service) { [self] in admitsStorage(handshake) }
                } else {
                    close(connection.fd)
                }
            }
            proven.removeAll { Self.folderRoles.contains($0.handshake.role) }
            guard !proven.isEmpty else { continue }
            ready.withLock { $0 += proven }
            var byte: UInt8 = 1
            _ = write(wakeWriteFD, &byte, 1)
        }
    }
}
