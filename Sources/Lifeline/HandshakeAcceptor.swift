#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import LifelineCore

/// New connections on a listener, until each proves it belongs to the job. Nothing here
/// blocks: the owner's poll loop watches `descriptors`, and a handshake is read as far as it has
/// arrived. A peer of another user is refused before it sends a byte (SO_PEERCRED); one that
/// sends anything but a handshake with the job's token, or stays silent past its deadline, is
/// closed; and at most `pendingMax` connections wait at once, so no stranger can stall the job
/// or fill its memory. When a newcomer finds the room full, the source holding the most
/// waiting connections (an address between hosts, a process on one host) loses its least
/// advanced one, the oldest among equals: a flood from one source pushes out its own
/// connections, not a real peer's, and one that has sent its hello outlasts silent ones.
/// Refusals are counted, and said at most once per `reportSeconds` (`takeReport`).
///
/// Between hosts (`init(listener:mutual:token:)`) the token never travels: the connector sends
/// a `HostHello`, this side answers with a `HostChallenge` that proves it knows the token, and
/// takes the connection once the connector's proof is right (`HostHandshake`).
final class HandshakeAcceptor {
    /// A connection whose handshake has not fully arrived.
    private struct Pending {
        var fd: Int32
        var bytes: [UInt8]
        /// When it is closed if still incomplete (seconds, monotonic clock).
        var deadline: Double
        /// Between hosts, once the hello came: it and the challenge sent back (the proof is
        /// read next).
        var answered: (hello: HostHello, challenge: HostChallenge)?
        /// A descriptor the connector passed with its handshake (-1: none).
        var passed: Int32 = -1
        /// Where it comes from (`lifeline_peer_source`; 0: unknown).
        var source: UInt64 = 0

        /// How far its handshake got: 0 nothing yet, 1 part of its first frame, 2 its hello
        /// answered (between hosts; the proof is read next).
        var progress: Int { answered != nil ? 2 : bytes.isEmpty ? 0 : 1 }
    }

    /// Refusals since the last report.
    struct Report: Equatable {
        /// How many connections were refused.
        var count: Int
        /// Why, with how many for each reason, the most frequent first: "40 no handshake
        /// within 2.0 s, 3 bad or missing handshake token".
        var reasons: String
    }

    /// The most connections that wait for their handshake at once.
    static let pendingMax = 32
    /// How long a new connection has to send its handshake.
    static let deadlineSeconds = 2.0
    /// The longest handshake body taken.
    static let bodyBytesMax = 4096
    /// The least time between two reports of refusals.
    static let reportSeconds = 5.0

    let listener: Int32
    private let token: [UInt8]
    /// Between hosts: who this acceptor is, in the challenges it sends (nil: the same-host
    /// handshake, which carries the token).
    private let identity: HostIdentity?
    private let uid = getuid()
    /// Invariant: at most `pendingMax`, each with fewer bytes than a complete handshake frame.
    private var pending: [Pending] = []
    /// Whether connectors may pass a descriptor with their handshake (a same-host peer's rings).
    private let takesDescriptors: Bool
    /// Descriptors passed with complete handshakes, by connection, until `takePassed` takes them.
    private var passed: [Int32: Int32] = [:]
    /// Refusals since the last report, by reason. Invariant: at most one entry per reason.
    private var refused: [(reason: String, count: Int)] = []
    private var lastReportAt = -Double.infinity

    /// Accepts on `listener` the connections whose handshake carries `token`; with
    /// `takesDescriptors`, a descriptor passed with a handshake is kept for `takePassed` (else the
    /// kernel drops it).
    init(listener: Int32, token: String, takesDescriptors: Bool = false) {
        self.listener = listener
        self.token = Array(token.utf8)
        self.identity = nil
        self.takesDescriptors = takesDescriptors
    }

    /// Accepts on `listener` (TCP) the connections that pass the mutual handshake, answering as
    /// `identity`.
    init(listener: Int32, mutual identity: HostIdentity, token: String) {
        self.listener = listener
        self.token = Array(token.utf8)
        self.identity = identity
        self.takesDescriptors = false
    }

    /// The descriptor passed with the handshake of the accepted connection `fd`, once (nil:
    /// none); the caller owns it.
    func takePassed(_ fd: Int32) -> Int32? {
        passed.removeValue(forKey: fd)
    }

    /// The frame expected next on a pending connection, and the longest body taken for it.
    private func expected(_ entry: Pending) -> (kind: FrameKind, bodyBytesMax: Int) {
        guard identity != nil else { return (.handshake, Self.bodyBytesMax) }
        return entry.answered == nil ? (.hello, HostHandshake.bodyBytesMax) : (.proof, HostHandshake.macBytes)
    }

    /// The sockets whose handshakes are under way: poll them for input.
    var descriptors: [Int32] { pending.map(\.fd) }

    /// Whether nothing waits and nothing is left to report: the poll loop's per-call check can
    /// stop here without reading the clock.
    var isIdle: Bool { pending.isEmpty && refused.isEmpty }

    /// The most connections taken from the listener per call: a flood of connections goes
    /// back to the owner's poll loop between batches instead of holding it.
    static let acceptsPerCallMax = 64

    /// The listener is readable: takes the pending connections (at most `acceptsPerCallMax`)
    /// and reads each handshake that is already there. A peer of another user is refused at
    /// once; past `pendingMax`, a waiting connection is closed (`evictionIndex`). Returns the
    /// connections whose handshake is complete and carries the token (the caller owns their
    /// sockets).
    func acceptAll(now: Double) -> [(fd: Int32, handshake: Handshake)] {
        var complete: [(fd: Int32, handshake: Handshake)] = []
        for _ in 0..<Self.acceptsPerCallMax {
            guard let fd = Socket.accept(listener) else { break }
            // Between hosts no kernel vouches for the peer's user: the handshake proves the job.
            if identity == nil, let peer = Socket.peerUID(fd), peer != uid {
                refuse(fd, "a process of another user (uid \(peer))")
                continue
            }
            let source = lifeline_peer_source(fd)
            if pending.count >= Self.pendingMax {
                let evicted = pending.remove(at: evictionIndex(newcomerFrom: source))
                closePassed(evicted)
                refuse(evicted.fd, "more than \(Self.pendingMax) connections waiting for their handshake")
            }
            if identity != nil { HostLink.tune(fd) }
            pending.append(Pending(fd: fd, bytes: [], deadline: now + Self.deadlineSeconds, source: source))
            if let done = read(fd) { complete.append(done) }
        }
        return complete
    }

    /// The waiting connection to close for a newcomer from `source` when the room is full: one
    /// of the source with the most connections waiting, the newcomer counted (ties: the one
    /// whose connections made the least progress), its least advanced, oldest first. `pending`
    /// is in arrival order, so the first of the least progress is the oldest.
    private func evictionIndex(newcomerFrom source: UInt64) -> Int {
        var counts: [UInt64: Int] = [source: 1]
        for entry in pending { counts[entry.source, default: 0] += 1 }
        var chosen = 0
        for index in pending.indices.dropFirst() {
            let (candidate, best) = (pending[index], pending[chosen])
            let (candidateCount, bestCount) = (counts[candidate.source]!, counts[best.source]!)
            if candidateCount > bestCount || (candidateCount == bestCount && candidate.progress < best.progress) {
                chosen = index
            }
        }
        return chosen
    }

    /// `fd` (one of `descriptors`) is readable: reads what arrived of its handshake, never past
    /// its end (what follows belongs to the connection). Returns the socket and the handshake
    /// once it is complete and carries the token (the caller owns the socket from then on); nil
    /// while it is incomplete, or when it was refused and closed.
    func read(_ fd: Int32) -> (fd: Int32, handshake: Handshake)? {
        guard let index = pending.firstIndex(where: { $0.fd == fd }) else { return nil }
        while true {
            let bytes = pending[index].bytes
            let body = bodyBytes(bytes, expected(pending[index]))
            if bytes.count >= FramePrefix.byteCount {
                guard let body else { return dropRefused(at: index, "no valid handshake") }
                if bytes.count == FramePrefix.byteCount + body {
                    guard identity != nil, pending[index].answered == nil else { return complete(at: index) }
                    guard answer(at: index) else { return nil }
                    continue
                }
            }
            let wanted = bytes.count < FramePrefix.byteCount ? FramePrefix.byteCount - bytes.count
                : FramePrefix.byteCount + body! - bytes.count
            var chunk = [UInt8](repeating: 0, count: wanted)
            let received = chunk.withUnsafeMutableBytes { buffer in
                guard takesDescriptors else { return recv(fd, buffer.baseAddress!, buffer.count, Int32(MSG_DONTWAIT)) }
                return lifeline_receive_with_descriptor(fd, buffer.baseAddress!, buffer.count, &pending[index].passed)
            }
            if received < 0, errno == EINTR { continue }
            if received < 0, errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            guard received > 0 else {
                return dropRefused(at: index, received == 0 ? "closed before its handshake" : "no valid handshake")
            }
            pending[index].bytes += chunk[..<received]
        }
    }

    /// Between hosts, the hello of the connection at `index` has fully arrived: sends the
    /// challenge back and waits for the proof. False when it was refused and closed.
    private func answer(at index: Int) -> Bool {
        guard let identity, let hello = try? HostHello.decode(Array(pending[index].bytes[FramePrefix.byteCount...])) else {
            _ = dropRefused(at: index, "no valid handshake")
            return false
        }
        let challenge = HostLink.challenge(answering: hello, identity: identity, token: String(decoding: token, as: UTF8.self))
        let frame = challenge.frame()
        // A new connection's send buffer takes a hundred bytes at once, or the peer is gone.
        let sent = frame.withUnsafeBytes { send(pending[index].fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
        guard sent == frame.count else {
            _ = dropRefused(at: index, "closed before its handshake")
            return false
        }
        pending[index].answered = (hello, challenge)
        pending[index].bytes = []
        return true
    }

    /// The handshake of the connection at `index` has fully arrived: takes it if its token is
    /// the job's (between hosts: if its proof is right).
    private func complete(at index: Int) -> (fd: Int32, handshake: Handshake)? {
        let bytes = pending[index].bytes
        if let (hello, challenge) = pending[index].answered {
            let proof = HostLink.mac(token: String(decoding: token, as: UTF8.self), HostHandshakeTranscript.connector(hello, challenge))
            guard Self.constantTimeEqual(Array(bytes[FramePrefix.byteCount...]), proof) else {
                return dropRefused(at: index, "a wrong handshake proof (not the job's token)")
            }
            // The connector waits for this welcome before it counts on the connection.
            let welcome = WelcomeFrame.frame
            let sent = welcome.withUnsafeBytes { send(pending[index].fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
            guard sent == welcome.count else { return dropRefused(at: index, "closed before its handshake") }
            let fd = pending.remove(at: index).fd
            return (fd, hello.handshake)
        }
        guard let handshake = try? Handshake.decode(Array(bytes[FramePrefix.byteCount...])),
              Self.constantTimeEqual(Array(handshake.token.utf8), token)
        else { return dropRefused(at: index, "bad or missing handshake token") }
        let entry = pending.remove(at: index)
        if entry.passed >= 0 { passed[entry.fd] = entry.passed }
        return (entry.fd, handshake)
    }

    /// Closes the connections whose deadline passed (call it after reading the readable ones, so
    /// a handshake that arrived in time is never refused because its owner was busy).
    func expire(now: Double) {
        while let index = pending.firstIndex(where: { $0.deadline <= now }) {
            let late = pending.remove(at: index)
            closePassed(late)
            refuse(late.fd, "no handshake within \(Self.deadlineSeconds) s")
        }
    }

    /// Refuses a connection that completed a handshake the caller does not accept (a wrong role,
    /// rank or incarnation).
    func refuse(_ fd: Int32, _ reason: String) {
        close(fd)
        if let index = refused.firstIndex(where: { $0.reason == reason }) {
            refused[index].count += 1
        } else {
            refused.append((reason, 1))
        }
    }

    /// The refusals since the last report, at most once per `reportSeconds` (`final`: now, as
    /// the job ends); nil when there were none or the last report is too recent.
    func takeReport(now: Double, final: Bool = false) -> Report? {
        guard !refused.isEmpty, final || now - lastReportAt >= Self.reportSeconds else { return nil }
        defer {
            refused = []
            lastReportAt = now
        }
        let reasons = refused.sorted { $0.count > $1.count }.map { "\($0.count) \($0.reason)" }
        return Report(count: refused.reduce(0) { $0 + $1.count }, reasons: reasons.joined(separator: ", "))
    }

    /// The body length a frame prefix announces, when it is the expected frame's, of an
    /// acceptable size.
    private func bodyBytes(_ bytes: [UInt8], _ expected: (kind: FrameKind, bodyBytesMax: Int)) -> Int? {
        guard bytes.count >= FramePrefix.byteCount,
              let prefix = try? bytes.withUnsafeBytes({ raw throws(WireError) in
                  try FramePrefix.decode(UnsafeRawBufferPointer(rebasing: raw[..<FramePrefix.byteCount]))
              }),
              prefix.kind == expected.kind, prefix.bodyLength <= UInt64(expected.bodyBytesMax)
        else { return nil }
        return Int(prefix.bodyLength)
    }

    private func dropRefused(at index: Int, _ reason: String) -> (fd: Int32, handshake: Handshake)? {
        let entry = pending.remove(at: index)
        closePassed(entry)
        refuse(entry.fd, reason)
        return nil
    }

    /// Closes what a refused connection passed.
    private func closePassed(_ entry: Pending) {
        if entry.passed >= 0 { close(entry.passed) }
    }

    /// Compares two byte strings in time that depends only on their lengths.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    deinit {
        for entry in pending {
            closePassed(entry)
            close(entry.fd)
        }
        for descriptor in passed.values { close(descriptor) }
    }
}
