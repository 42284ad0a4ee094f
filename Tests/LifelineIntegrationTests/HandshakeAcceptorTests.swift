#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Lifeline
import LifelineCore
import Testing

/// The acceptor of new connections, in-process over a real listener: a handshake already in
/// the socket is taken at once (a rank busy for longer than the deadline between two polls once
/// refused its peers), a silent one is closed at its deadline, a wrong token is refused, the
/// refusals are reported by reason, and a full waiting room closes the least advanced
/// connection of its busiest source.
struct HandshakeAcceptorTests {
    private let token = "the-job-token"

    private func listener() throws -> (Int32, String) {
        let name = "lifeline-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        return (try Socket.listen(abstractName: name), name)
    }

    private func handshake(_ token: String) -> [UInt8] {
        Handshake(token: token, role: .peer, rank: RankID(1), incarnation: 3, pid: getpid()).frame()
    }

    @Test func aHandshakeAlreadyThereIsTakenWhenAccepted() throws {
        let (fd, name) = try listener()
        defer { close(fd) }
        let acceptor = HandshakeAcceptor(listener: fd, token: token)
        let client = try Socket.connect(abstractName: name)
        defer { close(client) }
        try #require(Socket.sendAll(client, handshake(token)))
        let taken = acceptor.acceptAll(now: 0)
        #expect(taken.count == 1 && taken.first?.handshake.rank == RankID(1) && taken.first?.handshake.incarnation == 3)
        #expect(acceptor.descriptors.isEmpty)
        taken.forEach { close($0.fd) }
    }

    @Test func aSilentConnectionIsClosedAtItsDeadlineAndAWrongTokenAtOnce() throws {
        let (fd, name) = try listener()
        defer { close(fd) }
        let acceptor = HandshakeAcceptor(listener: fd, token: token)
        let silent = try Socket.connect(abstractName: name)
        defer { close(silent) }
        try #require(Socket.sendAll(silent, Array(handshake(token).prefix(5))))
        let impostor = try Socket.connect(abstractName: name)
        defer { close(impostor) }
        try #require(Socket.sendAll(impostor, handshake("not-the-token")))
        #expect(acceptor.acceptAll(now: 10).isEmpty)
        #expect(acceptor.descriptors.count == 1, "the impostor was not refused at once, or the silent one was")
        acceptor.expire(now: 10 + HandshakeAcceptor.deadlineSeconds - 0.1)
        #expect(acceptor.descriptors.count == 1, "closed before its deadline")
        acceptor.expire(now: 10 + HandshakeAcceptor.deadlineSeconds)
        #expect(acceptor.descriptors.isEmpty)
        let report = acceptor.takeReport(now: 20)
        #expect(report?.count == 2)
        #expect(report?.reasons.contains("1 bad or missing handshake token") == true, "\(String(describing: report))")
        #expect(report?.reasons.contains("1 no handshake within") == true, "\(String(describing: report))")
        #expect(acceptor.takeReport(now: 21) == nil, "a report with nothing new")
    }

    /// From one source, a connection whose handshake has begun outlasts any number of silent
    /// ones that come after it (before, the oldest went first, whatever it had sent).
    @Test func aHandshakeUnderWayOutlastsAFloodOfSilentConnections() throws {
        let (fd, name) = try listener()
        defer { close(fd) }
        let acceptor = HandshakeAcceptor(listener: fd, token: token)
        let real = try Socket.connect(abstractName: name)
        defer { close(real) }
        let frame = handshake(token)
        try #require(Socket.sendAll(real, Array(frame.prefix(5))))
        _ = acceptor.acceptAll(now: 0)
        let realAccepted = try #require(acceptor.descriptors.first)
        var silent: [Int32] = []
        defer { silent.forEach { close($0) } }
        for _ in 0..<(2 * HandshakeAcceptor.pendingMax) {
            silent.append(try Socket.connect(abstractName: name))
            _ = acceptor.acceptAll(now: 0)
        }
        #expect(acceptor.descriptors.count == HandshakeAcceptor.pendingMax)
        #expect(acceptor.descriptors.contains(realAccepted), "the handshake under way was pushed out by silent connections")
        // A descriptor number may be reused: the connector's end tells whether its own was closed.
        var end = pollfd(fd: real, events: Int16(POLLIN), revents: 0)
        #expect(poll(&end, 1, 0) == 0, "the acceptor closed the real connection")
        try #require(Socket.sendAll(real, Array(frame.dropFirst(5))))
        let taken = acceptor.read(realAccepted)
        #expect(taken?.handshake.rank == RankID(1))
        if let taken { close(taken.fd) }
    }

    @Test func atMostThePendingMaximumWaitAndTheOldestGoesFirst() throws {
        let (fd, name) = try listener()
        defer { close(fd) }
        let acceptor = HandshakeAcceptor(listener: fd, token: token)
        var clients: [Int32] = []
        defer { clients.forEach { close($0) } }
        for _ in 0..<(HandshakeAcceptor.pendingMax + 3) { clients.append(try Socket.connect(abstractName: name)) }
        _ = acceptor.acceptAll(now: 0)
        #expect(acceptor.descriptors.count == HandshakeAcceptor.pendingMax)
        #expect(acceptor.takeReport(now: 1)?.reasons == "3 more than \(HandshakeAcceptor.pendingMax) connections waiting for their handshake")
        // The newest still waits: it completes its handshake and is taken.
        let newest = try #require(acceptor.descriptors.last)
        try #require(Socket.sendAll(clients.last!, handshake(token)))
        let taken = try #require(acceptor.read(newest))
        close(taken.fd)
    }
}
