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
/// to a listener of the partner host's ranks (the writers of a host spread over them), which
/// hands it to `PartnerFolderServer`. The partner
/// answers as the incarnation named or a newer one: a replacement keeps the same host folder.
/// One request is in flight at a time; each is answered within a bound (`replySeconds`), and
/// a failure (the partner gone, its link cut, its disk failing) throws, so the store counts it
/// against mirror B and the next request connects afresh.
final class PartnerFolder: RemoteFolder {
    /// Where the partner is, for messages.
    let location: String
    /// The processes that keep the folder, in the order to try them, as they are now (the
    /// ranks of the partner host, or the supervisor); asked before each request.
    private let keepers: @Sendable () -> [Keeper]
    private let hello: HostHello
    private let token: String
    /// Whether each request has a connection of its own (the supervisor's lent manifest, read
    /// now and then by every rank: an idle connection per rank would fill its server).
    private let connectionPerRequest: Bool
    /// How long a connection to one keeper may take to be made and proven.
    private let connectSeconds: Double
    /// The fixed allowance of a reply (`replySeconds`).
    private let replyFloorSeconds: Double
    private let connection = Mutex<State>(State())
    /// Taken around the chunk lock's first take and last release, so that the keeper's lock
    /// and the count of holders here change together (before `connection`, never after it).
    private let lockGate = Mutex<Void>(())

    /// The connection, if one is open, the host it reaches, and how many holders the chunk
    /// lock has here: a new connection takes the lock again before its first request while any
    /// hold it.
    private struct State {
        var fd: Int32?
        var host = ""
        var lockHolders = 0
        /// After no keeper could be reached: until when requests fail at once, and the keepers
        /// tried then (others, named since, are tried at once). A restore reads hundreds of
        /// chunks, and a host that is gone would make each wait out its connection attempts.
        var unreachableUntil = 0.0
        var unreachable: [Keeper] = []
        /// Whether a connection ended while the chunk lock had holders here (the keeper let
        /// it go; a collection may have run before it was taken again).
        var lockLapsed = false

        /// Closes the connection.
        mutating func drop() {
            guard let open = fd else { return }
            close(open)
            fd = nil
            if lockHolders > 0 { lockLapsed = true }
        }
    }

    /// How long a partner no keeper of which answered is taken for gone before it is tried
    /// again.
    static let unreachableSeconds = 5.0

    /// A process that keeps a partner's folder: where it listens and who it is.
    struct Keeper: Sendable, Equatable {
        /// The host it runs on (whose folder it keeps).
        var host: String
        /// Its IPv4 address.
        var address: String
        /// Its TCP port.
        var port: UInt16
        /// Who answers there (a rank, at least that incarnation; or the supervisor).
        var identity: HostIdentity
    }

    /// The folder `location` names, kept by whichever of `keepers()` answers first, reached by
    /// the rank `rank` of `incarnation`.
    /// `role`: `.hostFolder` for the folder a host's ranks lend for reading (their own mirror A).
    /// `connectSeconds`: how long a connection to one keeper may take to be made and proven;
    /// `replyFloorSeconds`: the fixed allowance of `replySeconds`.
    init(
        location: String, rank: RankID, incarnation: UInt32, token: String, connectionPerRequest: Bool = false,
        role: Handshake.Role = .storage, connectSeconds: Double = HostLink.handshakeSeconds, replyFloorSeconds: Double = 30,
        keepers: @escaping @Sendable () -> [Keeper]
    ) {
        self.location = location
        self.connectSeconds = connectSeconds
        self.replyFloorSeconds = replyFloorSeconds
        self.keepers = keepers
        self.connectionPerRequest = connectionPerRequest
        self.hello = HostHello(role: role, rank: rank, incarnation: incarnation, pid: getpid(), port: 0, nonce: [])
        self.token = token
    }

    /// The folder kept by `partner` (at least that incarnation), listening at `address`:`port`
    /// on `host`, reached by the rank `rank` of `incarnation`.
    convenience init(
        address: String, port: UInt16, host: String, partner: HostIdentity, rank: RankID, incarnation: UInt32,
        token: String
    ) {
        let keeper = Keeper(host: host, address: address, port: port, identity: partner)
        self.init(location: "partner rank \(partner.rank.rawValue) on \(host) (\(address):\(port))", rank: rank,
                  incarnation: incarnation, token: token, keepers: { [keeper] })
    }

    deinit {
        connection.withLock { state in
            if let fd = state.fd { close(fd) }
        }
    }

    /// Closes the connection, if one is open: the next request connects afresh. What is known
    /// of keepers that did not answer stays.
    func closeConnection() {
        connection.withLock { $0.drop() }
    }

    /// Whether a connection is open now.
    var isConnected: Bool { connection.withLock { $0.fd != nil } }

    /// Whether any process keeps the folder now (a partner host without ranks left keeps none).
    var hasKeepers: Bool { !keepers().isEmpty }

    /// The host of the keeper the open connection reaches; nil when none is open.
    var connectedHost: String? { connection.withLock { $0.fd != nil ? $0.host : nil } }

    /// How long a reply may take: a fixed allowance (`floor`), and the request's bytes at
    /// 20 MB/s (a partner writing, fsyncing and reading back a window of chunks on a slow disk).
    static func replySeconds(requestBytes: Int, floor: Double = 30) -> Double { floor + Double(requestBytes) / 20e6 }

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

    func digest(_ name: String) throws(StorageError) -> ContentHash? {
        guard case .digest(let hash) = try call(.digest(name)) else { throw unexpected() }
        return hash
    }

    func append(_ name: String, at offset: Int, _ bytes: [UInt8]) throws(StorageError) {
        // Requests stay far below the keeper's limit: a large batch of records goes in parts.
        var start = 0
        repeat {
            let end = min(bytes.count, start + FolderRequest.bytesMax / 2)
            try expectDone(try call(.append(name, offset: UInt64(offset + start), bytes: Array(bytes[start..<end]))))
            start = end
        } while start < bytes.count
    }

    /// Renames `name` to `newName` on the keeper (in place of any file of that name).
    func rename(_ name: String, to newName: String) throws(StorageError) {
        try expectDone(try call(.rename(name, to: newName)))
    }

    /// At most `count` bytes (`FolderRequest.partBytesMax` at most) of `name` from `offset`,
    /// fewer at its end; nil when it is missing.
    func read(_ name: String, offset: Int, count: Int) throws(StorageError) -> [UInt8]? {
        guard case .file(let bytes) = try call(.readPart(name, offset: UInt64(offset), count: UInt32(min(count, FolderRequest.partBytesMax))))
        else { throw unexpected() }
        return bytes
    }

    func holdChunkLock() -> Bool {
        lockGate.withLock { _ in
            if connection.withLock({ $0.lockHolders }) == 0 {
                guard case .flag(true)? = try? call(.chunkLock(true)) else { return false }
                connection.withLock { $0.lockLapsed = false }
            }
            connection.withLock { $0.lockHolders += 1 }
            return true
        }
    }

    func releaseChunkLock() -> Bool {
        lockGate.withLock { _ in
            let (remaining, lapsed) = connection.withLock { state in
                state.lockHolders = max(0, state.lockHolders - 1)
                return (state.lockHolders, state.lockLapsed)
            }
            if remaining == 0 { _ = try? call(.chunkLock(false)) }
            return !lapsed
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
    /// made for an earlier request that ends before its reply (the partner closed it while
    /// idle, or its process was replaced) is made afresh and the request sent once more: every
    /// request is safe to repeat (a write replaces the file with the same bytes). A reply that
    /// does not come in time is not asked for again: the partner may still be writing.
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
        let candidates = keepers()
        return connection.withLock { state in
            // The partner moved to another host (a host was lost, the ranks placed anew).
            if state.fd != nil, let wanted = candidates.first?.host, wanted != state.host {
                state.drop()
            }
            let reused = state.fd != nil
            if state.fd == nil {
                if candidates == state.unreachable, monotonicSeconds() < state.unreachableUntil {
                    return .failure(StorageError(.ioFailure, path: location, message:
                        "no process that keeps it answered a moment ago (tried again after \(Int(Self.unreachableSeconds)) s)"))
                }
                let connected: (fd: Int32, host: String)
                switch connect(candidates) {
                case .success(let made): connected = made
                case .failure(let error):
                    state.unreachable = candidates
                    state.unreachableUntil = monotonicSeconds() + Self.unreachableSeconds
                    return .failure(error)
                }
                PartnerFolderServer.makeBlocking(connected.fd)
                state.fd = connected.fd
                state.host = connected.host
                // The lock of the connection that ended went with it: take it again first.
                if state.lockHolders > 0, !body.elementsEqual(FolderRequest.chunkLock(true).encoded),
                   exchange(connected.fd, FolderRequest.chunkLock(true).encoded) != .flag(true) {
                    state.drop()
                    return .failure(StorageError(.ioFailure, path: location, message: "cannot take the partner's chunk lock again"))
                }
            }
            let started = monotonicSeconds()
            guard let decoded = exchange(state.fd!, body) else {
                state.drop()
                let timedOut = monotonicSeconds() - started >= Self.replySeconds(requestBytes: body.count, floor: replyFloorSeconds)
                return .failure(StorageError(.ioFailure, path: location, message: reused && !timedOut ? Self.staleMessage
                    : "the partner did not answer (its process or its host is gone, or its link was cut)"))
            }
            if connectionPerRequest { state.drop() }
            return .success(decoded)
        }
    }

    /// A connection to the first of `candidates` that answers and proves the token.
    private func connect(_ candidates: [Keeper]) -> Result<(fd: Int32, host: String), StorageError> {
        var reasons: [String] = []
        for keeper in candidates {
            var fresh = hello
            fresh.nonce = HostLink.nonce()
            do {
                if let fd = try HostLink.connectAuthenticated(
                    address: keeper.address, port: keeper.port, hello: fresh, expected: keeper.identity,
                    acceptIncarnationAbove: true, token: token, seconds: connectSeconds) {
                    return .success((fd, keeper.host))
                }
                reasons.append("\(keeper.identity) at \(keeper.address):\(keeper.port) does not answer")
            } catch {
                reasons.append("\(error)")
            }
        }
        return .failure(StorageError(.ioFailure, path: location, message:
            candidates.isEmpty ? "no process keeps it now" : "cannot reach it: " + reasons.joined(separator: "; ")))
    }

    /// Sends one request on `socket` and reads its reply within `replySeconds`; nil when
    /// either fails.
    private func exchange(_ socket: Int32, _ body: [UInt8]) -> FolderReply? {
        let deadline = monotonicSeconds() + Self.replySeconds(requestBytes: body.count, floor: replyFloorSeconds)
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
    /// Storage connections served at once by one process; more are closed at once. Each
    /// writer of a host connects to one rank of its partner host (spread by rank), and each
    /// rank to the supervisor now and then to read the manifest.
    static let connectionsMax = 64
    /// How long the rest of a request may take once its length has arrived.
    static let requestSeconds = 120.0
    /// How long a connection may stay idle before the keeper closes it (its connector may be
    /// gone with its host); the connector makes a new one when it next needs it.
    static let idleSeconds: Int32 = 300
    private static let active = Atomic<Int>(0)

    /// Serves `fd` on a thread of its own until the connector closes it, or until `admitted`
    /// (asked before each request) says its connector was replaced; false (and `fd` closed)
    /// when `connectionsMax` are served already.
    static func start(_ fd: Int32, service: FolderService, admitted: @escaping @Sendable () -> Bool = { true }) -> Bool {
        guard active.add(1, ordering: .relaxed).newValue <= connectionsMax else {
            active.subtract(1, ordering: .relaxed)
            close(fd)
            return false
        }
        makeBlocking(fd)
        Thread.detachNewThread {
            serve(fd, service: service, admitted: admitted)
            close(fd)
            active.subtract(1, ordering: .relaxed)
        }
        return true
    }

    /// Reads and answers requests until the stream ends or breaks, or `admitted` turns false.
    static func serve(_ fd: Int32, service: FolderService, admitted: @Sendable () -> Bool = { true }) {
        let session = FolderService.Session(service)
        defer { session.end() }
        while true {
            // Between requests the connector may be idle for as long as it likes.
            guard waitReadable(fd, seconds: idleSeconds),
                  let body = readMessage(fd, bytesMax: FolderRequest.bytesMax, deadline: monotonicSeconds() + requestSeconds),
                  let request = FolderRequest.decode(body),
                  admitted()
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

/// Where the ranks of a job on several hosts listen, as the supervisor last said, shared with
/// the threads that write and read snapshots: the second copy of what a host's ranks write
/// goes to its partner host, the next host of the job (hosts in the order of their lowest
/// rank, the last one's partner the first), kept by whichever of that host's ranks answers;
/// and a rank restarted on another host than the one it wrote on finds its files with that
/// host's partner (`find(_:)`). The partner follows the table: after a host is lost and its
/// ranks placed anew, the hosts left pair up again, and what is missing on a new partner is
/// written there as it is read.
final class PartnerDirectory: Sendable {
    /// This rank's host.
    let host: String
    /// The folder this host keeps for its partner host (`{partner}` standing for `host`).
    let keptRoot: String
    private let rank: RankID
    private let incarnation: UInt32
    private let token: String
    private let table: Mutex<[RankAddress?]>
    /// A folder per other host, for `find(_:)`, and the host that held the last file found:
    /// searched first, and the only one whose connection stays open.
    private let others = Mutex<(folders: [String: PartnerFolder], lastFound: String?)>(([:], nil))

    /// How long a connection to one keeper of another host's folder may take.
    private let connectSeconds: Double
    /// The fixed allowance of a reply from another host's folder (`PartnerFolder.replySeconds`).
    private let replyFloorSeconds: Double

    /// The directory of rank `rank` (`incarnation`) on `host`, whose job's second root is
    /// `rootB`, from the supervisor's `table` of where every rank listens. `connectSeconds` and
    /// `replyFloorSeconds`: how long a connection to one keeper of another host's folder may
    /// take, and the fixed allowance of a reply from it.
    init(
        host: String, rootB: String, table: [RankAddress?], rank: RankID, incarnation: UInt32, token: String,
        connectSeconds: Double = HostLink.handshakeSeconds, replyFloorSeconds: Double = 30
    ) {
        self.host = host
        self.connectSeconds = connectSeconds
        self.replyFloorSeconds = replyFloorSeconds
        self.keptRoot = StorageRoots.expand(rootB, host: host)
        self.rank = rank
        self.incarnation = incarnation
        self.token = token
        self.table = Mutex(table)
    }

    /// Takes the supervisor's newer table (whole, or one rank's entry changed).
    func update(_ table: [RankAddress?]) {
        self.table.withLock { $0 = table }
    }

    /// The hosts of `table` in the job's order: by their lowest rank.
    static func hostOrder(_ table: [RankAddress?]) -> [String] {
        var seen = Set<String>()
        return table.compactMap { address in
            guard let host = address?.host, seen.insert(host).inserted else { return nil }
            return host
        }
    }

    /// The partner of `host` in `table` (`HostPlacement.partner(of:rankHosts:)`, where the
    /// supervisor places a lost host's ranks first).
    static func partner(of host: String, in table: [RankAddress?]) -> String? {
        HostPlacement.partner(of: host, rankHosts: table.map { $0?.host })
    }

    /// The ranks on `host` that keep its folder, lowest first.
    private func keepers(on host: String, in table: [RankAddress?]) -> [PartnerFolder.Keeper] {
        table.enumerated().compactMap { rank, address in
            guard let address, address.host == host else { return nil }
            return PartnerFolder.Keeper(host: host, address: address.address, port: address.port,
                                        identity: HostIdentity(role: .peer, rank: RankID(rank), incarnation: address.incarnation))
        }
    }

    /// This host's partner's folder: the store's mirror B. The writers of a host start with
    /// different ranks of the partner host (by their own rank), so that no one keeper serves
    /// them all.
    /// `pinned` (a message log's copy): the partner this host has now, for good — when the
    /// ranks are placed anew and this host gets another partner, requests fail (a pessimistic
    /// rank stops and is relaunched to write its log to the new one; an optimistic log goes on
    /// on its host alone until its rank restarts) rather than go to a host that holds only the
    /// segments written since, beside an older partner's stale copy.
    /// `role`: `.partnerMemory` for the folder in the partner host's memory where its ranks keep
    /// this host's ranks' level-1 copies. `connectSeconds`, `replyFloorSeconds`: as
    /// `PartnerFolder` takes them.
    func partnerFolder(
        pinned: Bool = false, role: Handshake.Role = .storage, connectSeconds: Double = HostLink.handshakeSeconds,
        replyFloorSeconds: Double = 30
    ) -> PartnerFolder {
        let pinnedPartner = pinned ? Self.partner(of: host, in: table.withLock { $0 }) : nil
        let location = role == .partnerMemory ? "the partner host's memory" : "the partner host's folder"
        return PartnerFolder(location: location, rank: rank, incarnation: incarnation, token: token, role: role,
                             connectSeconds: connectSeconds, replyFloorSeconds: replyFloorSeconds) { [self] in
            let table = self.table.withLock { $0 }
            guard let partner = Self.partner(of: host, in: table), !pinned || partner == pinnedPartner else { return [] }
            return spread(keepers(on: partner, in: table))
        }
    }

    /// `keepers` in the order this rank tries them: from one chosen by its rank, so that the
    /// ranks of a host do not all ask the same process.
    private func spread(_ keepers: [PartnerFolder.Keeper]) -> [PartnerFolder.Keeper] {
        guard !keepers.isEmpty else { return [] }
        let first = rank.rawValue % keepers.count
        return Array(keepers[first...] + keepers[..<first])
    }

    /// A folder `host`'s ranks keep, reached under `role` (described as `location`), its
    /// keepers as the table has them now, `order`ed.
    private func folder(
        on host: String, role: Handshake.Role, location: String,
        order: @escaping @Sendable ([PartnerFolder.Keeper]) -> [PartnerFolder.Keeper] = { $0 }
    ) -> PartnerFolder {
        PartnerFolder(location: location, rank: rank, incarnation: incarnation, token: token, role: role,
                      connectSeconds: connectSeconds, replyFloorSeconds: replyFloorSeconds) { [self] in
            order(keepers(on: host, in: self.table.withLock { $0 }))
        }
    }

    /// The copy of `name` kept anywhere but this rank's two mirrors: in the folder this host
    /// keeps for its partner (a rank restarted on the partner of the host it wrote on), else
    /// with the ranks of each other host but this host's partner (already asked as mirror B),
    /// the host that held the last file found first. A rank restarted away from its files
    /// finds them all on one host: the connection to it stays open, and one to a host that did
    /// not have the file (or that left the job) is closed, so that a search of many hosts does
    /// not leave one idle connection per host (searches on several threads at once may each
    /// keep one open).
    ///
    /// Else, in each other host's own folder, lent for reading by its ranks: the only copy left
    /// of a file whose host's partner was lost (a shrink's new rank reads old ranks' snapshots
    /// from every host). A connection to a host that did not have the file is closed.
    func find(_ name: String) -> [UInt8]? {
        if let data = FileManager.default.contents(atPath: keptRoot + "/" + name) { return [UInt8](data) }
        if let bytes = findKept(name) { return bytes }
        for other in Self.hostOrder(table.withLock { $0 }) where other != host {
            let folder = lentFolder(of: other)
            if let bytes = try? folder.read(name) { return bytes }
            folder.closeConnection()
        }
        return nil
    }

    /// `host`'s own folder as `find(_:)` reads it, made once and kept (so that a host that did
    /// not answer is passed over for a while, as `PartnerFolder` remembers), its keepers tried
    /// from one chosen by this rank, so that the new ranks of a shrink do not all ask the same
    /// process. Its connection stays open after a file was found there, until
    /// `closeKeptFolders()`.
    private func lentFolder(of host: String) -> PartnerFolder {
        others.withLock { others in
            if let folder = others.folders["own:" + host] { return folder }
            let made = folder(on: host, role: .hostFolder, location: "\(host)'s own folder") { [self] in spread($0) }
            others.folders["own:" + host] = made
            return made
        }
    }

    /// `find(_:)` in the folders the other hosts keep for their partners.
    private func findKept(_ name: String) -> [UInt8]? {
        let table = self.table.withLock { $0 }
        let partner = Self.partner(of: host, in: table)
        var hosts = Self.hostOrder(table).filter { $0 != host && $0 != partner }
        let (lastFound, gone) = others.withLock { others in
            (others.lastFound, others.folders.filter { !hosts.contains($0.key) && !$0.key.hasPrefix("own:") }.map(\.value))
        }
        for folder in gone { folder.closeConnection() }  // a host no longer in the job
        if let lastFound, let index = hosts.firstIndex(of: lastFound) { hosts.insert(hosts.remove(at: index), at: 0) }
        for other in hosts {
            let folder = keptFolder(on: other)
            if let bytes = try? folder.read(name) {
                others.withLock { $0.lastFound = other }
                return bytes
            }
            folder.closeConnection()
        }
        return nil
    }

    /// The folder `host` keeps (its ranks serve it), made once and kept for later searches.
    private func keptFolder(on host: String) -> PartnerFolder {
        others.withLock { others in
            if let folder = others.folders[host] { return folder }
            let made = folder(on: host, role: .storage, location: "the folder \(host) keeps")
            others.folders[host] = made
            return made
        }
    }

    /// The files of the folder `path` (a rank's message log) kept anywhere but this host's own
    /// folder: in the folder this host keeps, and in the folder each other host keeps (its
    /// partner's too: a log is not read as mirror B first). Of the copies found, the one whose
    /// file names `rank` ranks highest (the newest writer's: a rank that ran on several hosts
    /// left a copy on each); nil when no host holds a file of it (a host that does not answer
    /// holds none, as far as this search knows). Each file as it was read:
    /// the caller checks what it holds.
    func findFolder(_ path: String, rank: ([String]) -> [UInt64]) -> [(name: String, bytes: [UInt8])]? {
        var best: (score: [UInt64], read: (String) -> [UInt8]?, names: [String])?
        func consider(_ names: [String], _ read: @escaping (String) -> [UInt8]?) {
            guard !names.isEmpty, best.map({ $0.score.lexicographicallyPrecedes(rank(names)) }) ?? true else { return }
            best = (rank(names), read, names)
        }
        let local = keptRoot + "/" + path
        consider(((try? FileManager.default.contentsOfDirectory(atPath: local)) ?? []).filter { !$0.hasPrefix(".") }) {
            FileManager.default.contents(atPath: local + "/" + $0).map { [UInt8]($0) }
        }
        // A search at a restart: its connections are not kept (each keeper bounds how many it
        // serves).
        defer { closeKeptFolders() }
        if let kept = keptCopy(path, rank: rank) {
            consider(kept.names) { try? kept.folder.read(path + "/" + $0) ?? nil }
        }
        guard let best else { return nil }
        var files: [(name: String, bytes: [UInt8])] = []
        for name in best.names.sorted() {
            guard let bytes = best.read(name) else { return nil }
            files.append((name, bytes))
        }
        return files
    }

    /// Of the copies of the folder `path` that the other hosts keep (each host's ranks serve the
    /// folder it keeps for its partner), the one whose file names `rank` ranks highest, with
    /// those names; nil when no host answers with a file of it. The connections stay open until
    /// `closeKeptFolders()`.
    func keptCopy(_ path: String, rank: ([String]) -> [UInt64]) -> (folder: PartnerFolder, names: [String])? {
        var best: (score: [UInt64], folder: PartnerFolder, names: [String])?
        for other in Self.hostOrder(table.withLock { $0 }) where other != host {
            let folder = keptFolder(on: other)
            let names = ((try? folder.entries(path)) ?? []).filter { !$0.hasPrefix(".") }
            guard !names.isEmpty, best.map({ $0.score.lexicographicallyPrecedes(rank(names)) }) ?? true else { continue }
            best = (rank(names), folder, names)
        }
        return best.map { ($0.folder, $0.names) }
    }

    /// The folder `host`'s ranks write as their own (mirror A), lent by them for reading, but
    /// by `unless` (the caller closes its connection).
    func ownFolder(of host: String, unless: Int? = nil) -> PartnerFolder {
        folder(on: host, role: .hostFolder, location: "\(host)'s own folder") { $0.filter { $0.identity.rank.rawValue != unless } }
    }

    /// The folder in `host`'s memory where its ranks keep their level-1 copies and those of
    /// their partner host's ranks (`.partnerMemory`): where a rank placed away from the host
    /// that holds its copy fetches it.
    func memoryFolder(on host: String) -> PartnerFolder {
        folder(on: host, role: .partnerMemory, location: "\(host)'s memory")
    }

    /// Closes the connections to the folders other hosts keep (`keptCopy`, `find(_:)`).
    func closeKeptFolders() {
        for folder in others.withLock({ Array($0.folders.values) }) { folder.closeConnection() }
    }

    /// The hosts whose folders `find(_:)` holds a connection to now.
    var hostsConnected: [String] {
        others.withLock { others in others.folders.filter { $0.value.isConnected }.map(\.key).sorted() }
    }

    /// The supervisor's folder, lent for reading: where the manifest the ranks collect their
    /// hosts' folders against is read.
    func supervisorFolder(address: String, port: UInt16) -> PartnerFolder {
        let keeper = PartnerFolder.Keeper(host: "", address: address, port: port, identity: .supervisor)
        return PartnerFolder(location: "the supervisor's folder (\(address):\(port))", rank: rank, incarnation: incarnation,
                             token: token, connectionPerRequest: true) { [keeper] }
    }
}
