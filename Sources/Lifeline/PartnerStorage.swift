#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage
import Synchronization

/// A partner rank's storage folder on another host, reached over TCP: the `RemoteFolder` a
/// store's mirror B is when the second copy goes to a partner host (SCR's PARTNER) instead of
/// a folder every host shares.
///
/// The connection is made on first use and proves the job's token both ways, as every
/// connection between hosts does (`HostLink.connectAuthenticated`), under the role `storage`,
/// to the partner rank's listener, which hands it to `PartnerFolderServer`. The partner
/// answers as the incarnation named or a newer one: a replacement keeps the same host folder.
/// One request is in flight at a time; each is answered within a bound (`replySeconds`), and
/// a failure (the partner gone, its link cut, its disk failing) throws, so the store counts it
/// against mirror B and the next request connects afresh.
final class PartnerFolder: RemoteFolder {
    /// Where the partner is, for messages.
    let location: String
    private let address: String
    private let port: UInt16
    private let partner: HostIdentity
    private let hello: HostHello
    private let token: String
    private let connection = Mutex<State>(State())
    /// Taken around the chunk lock's first take and last release, so that the keeper's lock
    /// and the count of holders here change together (before `connection`, never after it).
    private let lockGate = Mutex<Void>(())

    /// The connection, if one is open, and how many holders the chunk lock has here: a new
    /// connection takes the lock again before its first request while any hold it.
    private struct State {
        var fd: Int32?
        var lockHolders = 0
    }

    /// The folder kept by `partner` (at least that incarnation), listening at `address`:`port`
    /// on `host`, reached by the rank `rank` of `incarnation`.
    init(
        address: String, port: UInt16, host: String, partner: HostIdentity, rank: RankID, incarnation: UInt32,
        token: String
    ) {
        self.location = "partner rank \(partner.rank.rawValue) on \(host) (\(address):\(port))"
        self.address = address
        self.port = port
        self.partner = partner
        self.hello = HostHello(role: .storage, rank: rank, incarnation: incarnation, pid: getpid(), port: 0, nonce: [])
        self.token = token
    }

    deinit {
        connection.withLock { state in
            if let fd = state.fd { close(fd) }
        }
    }

    /// How long a reply may take: a fixed allowance, and the request's bytes at 20 MB/s (a
    /// partner writing, fsyncing and reading back a window of chunks on a slow disk).
    static func replySeconds(requestBytes: Int) -> Double { 30 + Double(requestBytes) / 20e6 }

    func write(_ files: [FileToWrite]) throws(StorageError) {
        for batch in FolderRequest.batches(files) {
            try expectDone(try call(.write(batch)))
        }
    }

    func read(_ name: String) throws(StorageError) -> [UInt8]? {
        guard case .file(let bytes) = try call(.read(name)) else { throw unexpected() }
        return bytes
    }

    func remove(_ name: String) throws(StorageError) -> Bool {
        guard case .flag(let removed) = try call(.remove(name)) else { throw unexpected() }
        return removed
    }

    func removeDirectory(_ name: String) throws(StorageError) {
        try expectDone(try call(.removeDirectory(name)))
    }

    func entries(_ directory: String) throws(StorageError) -> [String] {
        guard case .entries(let names) = try call(.entries(directory)) else { throw unexpected() }
        return names
    }

    func isRegularFile(_ name: String) throws(StorageError) -> Bool {
        guard case .flag(let found) = try call(.isRegularFile(name)) else { throw unexpected() }
        return found
    }

    func holdChunkLock() -> Bool {
        lockGate.withLock { _ in
            if connection.withLock({ $0.lockHolders }) == 0 {
                guard case .flag(true)? = try? call(.chunkLock(true)) else { return false }
            }
            connection.withLock { $0.lockHolders += 1 }
            return true
        }
    }

    func releaseChunkLock() {
        lockGate.withLock { _ in
            let remaining = connection.withLock { state in
                state.lockHolders = max(0, state.lockHolders - 1)
                return state.lockHolders
            }
            if remaining == 0 { _ = try? call(.chunkLock(false)) }
        }
    }

    private func expectDone(_ reply: FolderReply) throws(StorageError) {
        guard reply == .done else { throw unexpected() }
    }

    private func unexpected() -> StorageError {
        StorageError(.ioFailure, path: location, message: "the partner answered with a reply of another kind")
    }

    /// Sends one request and returns its reply; a `.failed` reply is thrown as the partner's
    /// error. Any failure of the connection closes it and throws `.ioFailure`. A connection
    /// made for an earlier request that fails (the partner closed it while idle, or its process
    /// was replaced) is made afresh and the request sent once more: every request is safe to
    /// repeat (a write replaces the file with the same bytes).
    private func call(_ request: FolderRequest) throws(StorageError) -> FolderReply {
        let body = request.encoded
        var result = attempt(body)
        if case .failure(let error) = result, error.message == Self.staleMessage { result = attempt(body) }
        let reply = try result.get()
        if let error = reply.error { throw error }
        return reply
    }

    private static let staleMessage = "the connection made earlier had ended"

    private func attempt(_ body: [UInt8]) -> Result<FolderReply, StorageError> {
        connection.withLock { state in
            let reused = state.fd != nil
            if state.fd == nil {
                var fresh = hello
                fresh.nonce = HostLink.nonce()
                let connected: Int32?
                do {
                    connected = try HostLink.connectAuthenticated(
                        address: address, port: port, hello: fresh, expected: partner, acceptIncarnationAbove: true, token: token)
                } catch {
                    return .failure(StorageError(.ioFailure, path: location, message: "\(error)"))
                }
                guard let connected else {
                    return .failure(StorageError(.ioFailure, path: location, message: "cannot reach the partner"))
                }
                PartnerFolderServer.makeBlocking(connected)
                state.fd = connected
                // The lock of the connection that ended went with it: take it again first.
                if state.lockHolders > 0, !body.elementsEqual(FolderRequest.chunkLock(true).encoded),
                   exchange(connected, FolderRequest.chunkLock(true).encoded) != .flag(true) {
                    close(connected)
                    state.fd = nil
                    return .failure(StorageError(.ioFailure, path: location, message: "cannot take the partner's chunk lock again"))
                }
            }
            let socket = state.fd!
            guard let decoded = exchange(socket, body) else {
                close(socket)
                state.fd = nil
                return .failure(StorageError(.ioFailure, path: location, message: reused ? Self.staleMessage
                    : "the partner did not answer (its process or its host is gone, or its link was cut)"))
            }
            return .success(decoded)
        }
    }

    /// Sends one request on `socket` and reads its reply within `replySeconds`; nil when
    /// either fails.
    private func exchange(_ socket: Int32, _ body: [UInt8]) -> FolderReply? {
        let deadline = monotonicSeconds() + Self.replySeconds(requestBytes: body.count)
        guard Socket.sendAll(socket, PartnerFolderServer.frame(body)),
              let reply = PartnerFolderServer.readMessage(socket, bytesMax: FolderRequest.bytesMax, deadline: deadline)
        else { return nil }
        return FolderReply.decode(reply)
    }
}

/// The keeper's side of `PartnerFolder`: a thread per storage connection (at most
/// `connectionsMax` at once) that reads requests and carries each out on its host's folder
/// (`FolderService`). A malformed request or one longer than `FolderRequest.bytesMax` closes
/// the connection; a request begun must arrive whole within `requestSeconds`.
enum PartnerFolderServer {
    /// Storage connections served at once by one rank; more are closed at once.
    static let connectionsMax = 16
    /// How long the rest of a request may take once its length has arrived.
    static let requestSeconds = 120.0
    /// How long a connection may stay idle before the keeper closes it (its connector may be
    /// gone with its host); the connector makes a new one when it next needs it.
    static let idleSeconds: Int32 = 300
    private static let active = Atomic<Int>(0)

    /// Serves `fd` on a thread of its own until the connector closes it; false (and `fd`
    /// closed) when `connectionsMax` are served already.
    static func start(_ fd: Int32, service: FolderService) -> Bool {
        guard active.add(1, ordering: .relaxed).newValue <= connectionsMax else {
            active.subtract(1, ordering: .relaxed)
            close(fd)
            return false
        }
        makeBlocking(fd)
        Thread.detachNewThread {
            serve(fd, service: service)
            close(fd)
            active.subtract(1, ordering: .relaxed)
        }
        return true
    }

    /// Reads and answers requests until the stream ends or breaks.
    static func serve(_ fd: Int32, service: FolderService) {
        let session = FolderService.Session(service)
        defer { session.end() }
        while true {
            // Between requests the connector may be idle for as long as it likes.
            guard waitReadable(fd, seconds: idleSeconds),
                  let body = readMessage(fd, bytesMax: FolderRequest.bytesMax, deadline: monotonicSeconds() + requestSeconds),
                  let request = FolderRequest.decode(body)
            else { return }
            guard Socket.sendAll(fd, frame(session.handle(request).encoded)) else { return }
        }
    }

    /// A message's bytes on the wire: its length (8 bytes, little-endian), then the body.
    static func frame(_ body: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(8 + body.count)
        withUnsafeBytes(of: UInt64(body.count).littleEndian) { bytes += $0 }
        bytes += body
        return bytes
    }

    /// Reads one message framed by `frame(_:)` by `deadline`; nil when the stream ends or
    /// breaks, the time passes, or the length is over `bytesMax`.
    static func readMessage(_ fd: Int32, bytesMax: Int, deadline: Double) -> [UInt8]? {
        guard let prefix = HostLink.receive(fd, count: 8, deadline: deadline) else { return nil }
        let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= UInt64(bytesMax) else { return nil }
        return HostLink.receive(fd, count: Int(length), deadline: deadline)
    }

    /// Blocks until `fd` is readable (or has ended), at most `seconds`; false on an error or
    /// the time passing.
    private static func waitReadable(_ fd: Int32, seconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&descriptor, 1, seconds * 1000)
            if ready < 0, errno == EINTR { continue }
            return ready > 0
        }
    }

    /// Makes `fd` blocking, with sends that give up after `requestSeconds` without progress (a
    /// peer that stops reading cannot hold a thread for ever).
    static func makeBlocking(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        var limit = timeval(tv_sec: Int(requestSeconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }
}
