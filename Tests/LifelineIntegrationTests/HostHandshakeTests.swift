#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Lifeline
import LifelineCore
import LifelineStorage
import Synchronization
import Testing

/// The mutual handshake between hosts, over real TCP sockets on loopback: each side proves it
/// knows the token without sending it, a stranger's proof is refused, a connector finds out an
/// acceptor that does not know the token, and an older incarnation is not taken for a newer one.
struct HostHandshakeTests {
    private let token = "0123456789abcdef0123456789abcdef"

    private func hello(rank: Int = 1, incarnation: UInt32 = 3) -> HostHello {
        HostHello(role: .peer, rank: RankID(rank), incarnation: incarnation, pid: getpid(), port: 0, nonce: HostLink.nonce())
    }

    /// Waits until the listener's thread hands over a proven connection (5 s at most).
    private func taken(_ listener: HostListener) -> [(fd: Int32, handshake: Handshake)] {
        let deadline = monotonicSeconds() + 5
        var result: [(fd: Int32, handshake: Handshake)] = []
        while result.isEmpty, monotonicSeconds() < deadline {
            var descriptor = pollfd(fd: listener.wakeFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 100)
            result += listener.take()
        }
        return result
    }

    @Test func bothSidesProveTheTokenAndTheTokenNeverTravels() throws {
        let identity = HostIdentity(role: .peer, rank: RankID(2), incarnation: 5)
        let listener = try HostListener(address: "127.0.0.1", identity: identity, token: token)
        // The connection goes through a relay that records every byte both ways.
        let relay = try Relay(to: listener.port)
        let fd = try #require(try HostLink.connectAuthenticated(
            address: "127.0.0.1", port: relay.port, hello: hello(), expected: identity, token: token))
        let accepted = taken(listener)
        #expect(accepted.count == 1)
        #expect(accepted.first?.handshake.rank == RankID(1) && accepted.first?.handshake.incarnation == 3)
        close(fd)
        accepted.forEach { close($0.fd) }
        let wire = relay.recorded()
        // hello, challenge, proof and welcome crossed (each side's nonce and MAC among them),
        // and not one run of the token's bytes.
        #expect(wire.count >= 4 * FramePrefix.byteCount + 2 * HostHandshake.nonceBytes + 2 * HostHandshake.macBytes)
        let tokenBytes = Array(token.utf8)
        let carried = wire.count >= tokenBytes.count
            && (0...(wire.count - tokenBytes.count)).contains { Array(wire[$0..<$0 + tokenBytes.count]) == tokenBytes }
        #expect(!carried)
    }

    /// A connection the acceptor closes before its challenge (a waiting room full of strangers'
    /// connections closes its oldest) is tried again, after a pause, instead of the acceptor
    /// being taken for gone.
    @Test func aConnectionDroppedBeforeTheChallengeIsTriedAgain() throws {
        let identity = HostIdentity(role: .peer, rank: RankID(2), incarnation: 5)
        let listener = try HostListener(address: "127.0.0.1", identity: identity, token: token)
        let relay = try Relay(to: listener.port, dropping: 2)
        let fd = try #require(try HostLink.connectAuthenticated(
            address: "127.0.0.1", port: relay.port, hello: hello(), expected: identity, token: token))
        let accepted = taken(listener)
        #expect(accepted.count == 1)
        close(fd)
        accepted.forEach { close($0.fd) }
        _ = relay.recorded()
    }

    /// A TCP connection to `port` on 127.0.0.1 made from `source` (another loopback address:
    /// another source to the acceptor).
    private func connect(from source: String, to port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        func address(_ text: String, _ port: UInt16) -> sockaddr_in {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            _ = inet_pton(AF_INET, text, &address.sin_addr)
            return address
        }
        var local = address(source, 0), remote = address("127.0.0.1", port)
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
        let failure = errno
        if bound != 0 || connected != 0 { close(fd) }
        try #require(bound == 0 && connected == 0, "connect from \(source): errno \(failure)")
        return fd
    }

    /// A flood of connections from one address fills the waiting room, and goes on: each
    /// newcomer pushes out one of the flood's own, never the real peer's connection from
    /// another address, which then completes its handshake. (Before, the oldest went first:
    /// the real one.)
    @Test func aFloodFromOneAddressPushesOutItsOwnConnections() throws {
        let (listenFD, port) = try HostLink.listen(address: "127.0.0.1")
        defer { close(listenFD) }
        let acceptor = HandshakeAcceptor(listener: listenFD, mutual: .supervisor, token: token)
        // The real peer connects first and has sent nothing yet when the flood comes.
        let real = try connect(from: "127.0.0.1", to: port)
        defer { close(real) }
        let deadline = monotonicSeconds() + 5
        while acceptor.descriptors.isEmpty, monotonicSeconds() < deadline { _ = acceptor.acceptAll(now: 0) }
        let realAccepted = try #require(acceptor.descriptors.first)
        var flood: [Int32] = []
        defer { flood.forEach { close($0) } }
        for _ in 0..<(2 * HandshakeAcceptor.pendingMax) { flood.append(try connect(from: "127.0.0.2", to: port)) }
        while acceptor.descriptors.count < HandshakeAcceptor.pendingMax || acceptor.takeReport(now: 0, final: true) == nil,
              monotonicSeconds() < deadline {
            _ = acceptor.acceptAll(now: 0)
        }
        _ = acceptor.acceptAll(now: 0)
        #expect(acceptor.descriptors.count == HandshakeAcceptor.pendingMax)
        #expect(acceptor.descriptors.contains(realAccepted), "the real peer's connection was pushed out by the flood")
        // A descriptor number may be reused: the connector's end tells whether its own was closed.
        var end = pollfd(fd: real, events: Int16(POLLIN), revents: 0)
        #expect(poll(&end, 1, 0) == 0, "the acceptor closed the real connection")
        // It completes the mutual handshake.
        let sent = hello()
        try #require(Socket.sendAll(real, sent.frame()))
        #expect(acceptor.read(realAccepted) == nil, "taken before its proof")
        let body = try #require(HostLink.readFrame(real, kind: .challenge, bodyBytesMax: 256, seconds: 2))
        let challenge = try HostChallenge.decode(body)
        try #require(Socket.sendAll(real, HostHandshake.frame(.proof, HostLink.mac(token: token, HostHandshakeTranscript.connector(sent, challenge)))))
        var taken: (fd: Int32, handshake: Handshake)?
        while taken == nil, monotonicSeconds() < deadline {
            var descriptor = pollfd(fd: realAccepted, events: Int16(POLLIN), revents: 0)
            _ = poll(&descriptor, 1, 100)
            taken = acceptor.read(realAccepted)
        }
        #expect(taken?.handshake.rank == RankID(1))
        if let taken { close(taken.fd) }
    }

    @Test func aConnectorFindsOutAnAcceptorThatDoesNotKnowTheToken() throws {
        let identity = HostIdentity(role: .peer, rank: RankID(2), incarnation: 5)
        let listener = try HostListener(address: "127.0.0.1", identity: identity, token: "another job's token")
        #expect(throws: LifelineError.self) {
            _ = try HostLink.connectAuthenticated(
                address: "127.0.0.1", port: listener.port, hello: hello(), expected: identity, token: token)
        }
    }

    @Test func anOlderIncarnationIsNotTakenForItsReplacement() throws {
        let old = HostIdentity(role: .peer, rank: RankID(2), incarnation: 5)
        let listener = try HostListener(address: "127.0.0.1", identity: old, token: token)
        let newer = HostIdentity(role: .peer, rank: RankID(2), incarnation: 6)
        #expect(try HostLink.connectAuthenticated(
            address: "127.0.0.1", port: listener.port, hello: hello(), expected: newer, token: token) == nil)
        // A connector that knows only a lower bound takes the incarnation named or a newer one.
        let older = HostIdentity(role: .peer, rank: RankID(2), incarnation: 4)
        let fd = try #require(try HostLink.connectAuthenticated(
            address: "127.0.0.1", port: listener.port, hello: hello(), expected: older, acceptIncarnationAbove: true,
            token: token))
        close(fd)
        taken(listener).forEach { close($0.fd) }
    }

    /// The acceptor's half, driven by hand: a stranger that sends a hello but cannot prove the
    /// token is refused and counted; the right proof is taken.
    @Test(arguments: [false, true])
    func aStrangersProofIsRefused(knowsToken: Bool) throws {
        let (listenFD, port) = try HostLink.listen(address: "127.0.0.1")
        defer { close(listenFD) }
        let acceptor = HandshakeAcceptor(listener: listenFD, mutual: .supervisor, token: token)
        let client = try #require(try HostLink.connect(address: "127.0.0.1", port: port, seconds: 2))
        defer { close(client) }
        let sent = hello()
        try #require(Socket.sendAll(client, sent.frame()))
        var taken: [(fd: Int32, handshake: Handshake)] = []
        let deadline = monotonicSeconds() + 5
        while acceptor.descriptors.isEmpty, monotonicSeconds() < deadline { taken += acceptor.acceptAll(now: monotonicSeconds()) }
        let body = try #require(HostLink.readFrame(client, kind: .challenge, bodyBytesMax: 256, seconds: 2))
        let challenge = try HostChallenge.decode(body)
        #expect(challenge.role == .supervisor)
        #expect(challenge.mac == HostLink.mac(token: token, HostHandshakeTranscript.acceptor(sent, challenge)))
        let proof = knowsToken
            ? HostLink.mac(token: token, HostHandshakeTranscript.connector(sent, challenge))
            : HostLink.mac(token: "a guess", HostHandshakeTranscript.connector(sent, challenge))
        try #require(Socket.sendAll(client, HostHandshake.frame(.proof, proof)))
        while taken.isEmpty, !acceptor.isIdle, monotonicSeconds() < deadline {
            for fd in acceptor.descriptors { if let done = acceptor.read(fd) { taken.append(done) } }
            if let report = acceptor.takeReport(now: monotonicSeconds(), final: true) {
                #expect(!knowsToken)
                #expect(report.reasons.contains("wrong handshake proof"))
                break
            }
        }
        #expect(taken.count == (knowsToken ? 1 : 0))
        if knowsToken { #expect(taken.first?.handshake.rank == RankID(1)) }
        taken.forEach { close($0.fd) }
    }

    /// The command line that starts a rank on another host names its environment but not the
    /// token (a command line is readable by every user of that host).
    @Test func theLaunchCommandLineHoldsNoToken() throws {
        var configuration = JobConfiguration(program: "/bin/true", rankCount: 2, runDirectory: "/tmp/x")
        configuration.launcher = .ssh
        configuration.hosts = [.init(name: "127.0.0.1"), .init(name: "127.0.0.2")]
        let job = try HostJob(configuration: configuration, token: token)
        var environment = LaunchEnvironment(
            rank: RankID(1), rankCount: 2, token: token, addressPrefix: "p", incarnation: 0, supervisorPID: 0,
            storageRoots: ("/a", "/b"), variant: .coordinated, heartbeatMs: 250, faults: [], logging: .none,
            traceDirectory: nil, clockOrigin: 0)
        environment.hosts = job.hosts(of: 1)
        let line = job.commandLine(
            rank: 1, incarnation: 4, program: "/bin/prog", arguments: ["a b", "it's"], environment: environment.variables)
        #expect(!line.contains(token))
        #expect(line.hasPrefix("exec ssh 127.0.0.2 'exec env "))
        #expect(line.contains("LIFELINE_TOKEN_STDIN=1"))
        // Run by two shells (this host's, then the remote one), the arguments come out whole.
        let inner = try #require(line.split(separator: " ", maxSplits: 3).last.map(String.init))
        let echoed = try shell(
            "eval \"set -- $INNER\"; eval \"set -- $1\"; for a; do case \"$a\" in LIFELINE_*) ;; *) printf '%s|' \"$a\";; esac; done",
            environment: ["INNER": inner])
        #expect(echoed.hasSuffix("/bin/prog|a b|it's|"))
    }

    /// Hosts share the ranks evenly, in blocks, or by their slots; too few slots is one line.
    @Test func ranksAreSpreadOverTheHostsInOrder() throws {
        var configuration = JobConfiguration(program: "/bin/true", rankCount: 5, runDirectory: "/tmp/x")
        configuration.launcher = .ssh
        configuration.hosts = [.init(name: "a"), .init(name: "b")]
        #expect(try configuration.rankHosts() == ["a", "a", "a", "b", "b"])
        configuration.hosts = try JobConfiguration.parseHostfile("# cluster\na slots=1\n\nb slots=4 # big\n", path: "f")
        #expect(try configuration.rankHosts() == ["a", "b", "b", "b", "b"])
        configuration.rankCount = 6
        #expect(throws: LifelineError.self) { try configuration.rankHosts() }
        #expect(throws: LifelineError.self) { try JobConfiguration.parseHostfile("a slots=x\n", path: "f") }
    }

    /// A TCP relay on loopback to `port` for one connection, recording what passes both ways
    /// until either side closes (5 s at most).
    private final class Relay: Sendable {
        let port: UInt16
        private let bytes = Mutex<[UInt8]>([])
        private let done = DispatchSemaphore(value: 0)

        /// A relay to `upstream`'s port that closes the first `dropping` connections it takes
        /// at once, as a full waiting room does, and relays the next.
        init(to upstream: UInt16, dropping: Int = 0) throws {
            let (listener, port) = try HostLink.listen(address: "127.0.0.1")
            self.port = port
            Thread.detachNewThread { [self] in
                defer { close(listener); done.signal() }
                let deadline = monotonicSeconds() + 5
                var accepting = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                for _ in 0..<dropping {
                    guard poll(&accepting, 1, 5000) == 1, let dropped = Socket.accept(listener) else { return }
                    close(dropped)
                }
                guard poll(&accepting, 1, 5000) == 1, let downstream = Socket.accept(listener) else { return }
                defer { close(downstream) }
                guard let upstream = try? HostLink.connect(address: "127.0.0.1", port: upstream, seconds: 2) else { return }
                defer { close(upstream) }
                var buffer = [UInt8](repeating: 0, count: 4096)
                while monotonicSeconds() < deadline {
                    var ends = [pollfd(fd: downstream, events: Int16(POLLIN), revents: 0),
                                pollfd(fd: upstream, events: Int16(POLLIN), revents: 0)]
                    guard poll(&ends, 2, 100) >= 0 else { return }
                    for (index, end) in ends.enumerated() where end.revents != 0 {
                        let count = read(end.fd, &buffer, buffer.count)
                        guard count > 0 else { return }
                        bytes.withLock { $0 += buffer[..<count] }
                        guard Socket.sendAll(ends[1 - index].fd, Array(buffer[..<count])) else { return }
                    }
                }
            }
        }

        /// What passed, once the relay ended.
        func recorded() -> [UInt8] {
            done.wait()
            return bytes.withLock { $0 }
        }
    }

    private func shell(_ script: String, environment: [String: String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }
}
