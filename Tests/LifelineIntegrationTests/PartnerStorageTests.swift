#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Lifeline
import LifelineCore
import LifelineStorage
import Testing

/// Mirror B kept by a partner rank on another host, over a real TCP connection on loopback:
/// the partner's listener takes the storage connection only from a connector that proves the
/// job's token, writes what it is sent into its own folder, and a partner that cannot be
/// reached is a failure of mirror B in bounded time.
struct PartnerStorageTests {
    private let token = "0123456789abcdef0123456789abcdef"
    private let keeper = HostIdentity(role: .peer, rank: RankID(3), incarnation: 2)

    private func folder(port: UInt16, token: String, incarnation: UInt32 = 2) -> PartnerFolder {
        PartnerFolder(
            address: "127.0.0.1", port: port, host: "n2",
            partner: HostIdentity(role: .peer, rank: RankID(3), incarnation: incarnation), rank: RankID(1),
            incarnation: 0, token: token)
    }

    /// The files under `root`, relative to it, without temporary and lock files.
    private func files(_ root: String) -> [String] {
        let found = FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []
        return found.filter { path in
            var isFolder: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isFolder)
            return !isFolder.boolValue && !path.split(separator: "/").contains { $0.hasPrefix(".") }
        }.sorted()
    }

    /// The table of three hosts h1–h3, one rank each: h1's a port nothing answers on (this
    /// process's host), h2's and h3's keeping `root/kept/h2` and `root/kept/h3` (their listeners,
    /// to keep alive while they are used).
    private func threeHosts(_ root: String) throws -> ([RankAddress?], [HostListener]) {
        let listeners = try ["h2", "h3"].enumerated().map { index, host in
            try HostListener(address: "127.0.0.1", identity: HostIdentity(role: .peer, rank: RankID(index + 1), incarnation: 0),
                             token: token, storage: try FolderService(root: root + "/kept/" + host))
        }
        return ([RankAddress(host: "h1", address: "127.0.0.1", port: 1, incarnation: 0)]
            + zip(["h2", "h3"], listeners).map { RankAddress(host: $0, address: "127.0.0.1", port: $1.port, incarnation: 0) },
            listeners)
    }

    private func temporary() -> String {
        let path = NSTemporaryDirectory() + "lifeline-partner-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func aSnapshotIsWrittenToThePartnersFolderAndReadBackThroughIt() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/partner"))
        // The connector knows an older incarnation: the partner's replacement keeps its host's folder.
        let store = try MirroredStore(rootA: root + "/local", remoteB: folder(port: listener.port, token: token, incarnation: 1))
        let name = "epochs/000004/rank-0001.snap"
        let bytes = (0..<(5 * 4096 + 17)).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        _ = try ChunkedSnapshots(store: store).write(name, bytes: bytes, generation: 4, chunkBytes: 4096)
        let local = files(root + "/local")
        let kept = files(root + "/partner")
        #expect(!local.isEmpty && local == kept)
        for file in local {
            #expect(FileManager.default.contents(atPath: root + "/partner/" + file)
                == FileManager.default.contents(atPath: root + "/local/" + file))
        }
        // This host's disk lost: the snapshot is read from the partner's copy alone.
        try FileManager.default.removeItem(atPath: root + "/local")
        let restarted = try MirroredStore(rootA: root + "/local", remoteB: folder(port: listener.port, token: token))
        #expect(try ChunkedSnapshots(store: restarted).read(name) == bytes)
        #expect(restarted.list("epochs") == ["000004"])
    }

    /// A write on the partner's folder holds the keeper's chunk lock, as a write on a local
    /// folder does: the collection of that folder waits until it is released, or until the
    /// writer's connection ends.
    @Test func aPartnersWriteHoldsOffTheCollectionOfItsFolder() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/partner"))
        // The keeper host's own view of the folder, as its collection opens it.
        let collector = ChunkedSnapshots(store: try MirroredStore(rootA: root + "/partner", rootB: root + "/unused"))
        var writer: PartnerFolder? = folder(port: listener.port, token: token)
        #expect(writer?.holdChunkLock() == true)
        #expect(writer?.holdChunkLock() == true)
        #expect(try collector.garbageCollect { [] } == nil)
        #expect(writer?.releaseChunkLock() == true)
        #expect(try collector.garbageCollect { [] } == nil)  // one holder left
        #expect(writer?.releaseChunkLock() == true)
        #expect(try collector.garbageCollect { [] } == 0)
        #expect(writer?.holdChunkLock() == true)
        #expect(try collector.garbageCollect { [] } == nil)
        // The writer gone with its lock held: the keeper's session ends and releases it.
        writer = nil
        let deadline = monotonicSeconds() + 5
        var collected: Int?
        while collected == nil, monotonicSeconds() < deadline {
            collected = try collector.garbageCollect { [] }
            if collected == nil { usleep(20_000) }
        }
        #expect(collected == 0)
    }

    /// Hosts pair up in the order of their lowest rank, the last with the first; a host alone
    /// has no partner.
    @Test func eachHostsPartnerIsTheNextHostOfTheJob() {
        func table(_ hosts: [String]) -> [RankAddress?] {
            hosts.map { RankAddress(host: $0, address: "127.0.0.1", port: 1, incarnation: 0) }
        }
        let hosts = table(["n1", "n1", "n3", "n2", "n3", "n2"])
        #expect(PartnerDirectory.hostOrder(hosts) == ["n1", "n3", "n2"])
        #expect(PartnerDirectory.partner(of: "n1", in: hosts) == "n3")
        #expect(PartnerDirectory.partner(of: "n3", in: hosts) == "n2")
        #expect(PartnerDirectory.partner(of: "n2", in: hosts) == "n1")
        #expect(PartnerDirectory.partner(of: "n4", in: hosts) == nil)
        #expect(PartnerDirectory.partner(of: "n1", in: table(["n1", "n1"])) == nil)
        // A rank not placed yet is skipped.
        #expect(PartnerDirectory.partner(of: "n1", in: [nil] + table(["n1", "n2"])) == "n2")
    }

    /// A rank restarted on a host that is neither the one it wrote on nor that host's partner
    /// finds its file with the host that kept it, over that host's ranks' listeners, after its
    /// own host's kept folder; a file kept nowhere is not found.
    @Test func aFileIsFoundWithTheHostThatKeptIt() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (table, listeners) = try threeHosts(root)
        defer { withExtendedLifetime(listeners) {} }
        // h1's partner is h2; h3 kept the file (it was h4's partner, say).
        let written = FileFormat.encode(kind: .manifest, generation: 1, body: [4, 5, 6])
        try FileManager.default.createDirectory(atPath: root + "/kept/h3/epochs", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/kept/h3/epochs/x", contents: Data(written))
        let directory = PartnerDirectory(
            host: "h1", rootB: root + "/kept/{partner}", table: table, rank: RankID(0), incarnation: 0, token: token)
        #expect(directory.find("epochs/x") == written)
        #expect(directory.find("epochs/y") == nil)
        // In this host's own kept folder it is found without a connection.
        try FileManager.default.createDirectory(atPath: root + "/kept/h1", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/kept/h1/z", contents: Data([7]))
        #expect(directory.find("z") == [7])
        // The store reads it as if a mirror held it, and fills both its mirrors.
        let store = try MirroredStore(rootA: root + "/local/h1", remoteB: directory.partnerFolder())
            .withNodeLocal(.a, fills: true, partnerHeld: true).withFallback { directory.find($0) }
        let file = try store.read("epochs/x")
        #expect(file.body == [4, 5, 6] && Set(file.repaired) == [.a, .b], "\(file.problems)")
        #expect(FileManager.default.contents(atPath: root + "/kept/h2/epochs/x") == Data(written))
    }

    /// A search of other hosts keeps one connection open, to the host that held the last file
    /// found (asked first next time), and closes those to hosts that did not have it.
    @Test func aSearchOfOtherHostsKeepsOneConnectionOpen() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        var table = [RankAddress(host: "h1", address: "127.0.0.1", port: 1, incarnation: 0)]
        var listeners: [HostListener] = []
        for host in ["h2", "h3", "h4"] {
            let listener = try HostListener(
                address: "127.0.0.1", identity: HostIdentity(role: .peer, rank: RankID(table.count), incarnation: 0), token: token,
                storage: try FolderService(root: root + "/kept/" + host))
            listeners.append(listener)
            table.append(RankAddress(host: host, address: "127.0.0.1", port: listener.port, incarnation: 0))
        }
        // h1's partner is h2, asked as mirror B: a search asks h3 and h4.
        for (host, names) in [("h3", ["b"]), ("h4", ["a"])] {
            try FileManager.default.createDirectory(atPath: root + "/kept/" + host + "/epochs", withIntermediateDirectories: true)
            for name in names {
                _ = FileManager.default.createFile(atPath: root + "/kept/" + host + "/epochs/" + name,
                                                   contents: Data(FileFormat.encode(kind: .manifest, generation: 1, body: Array(name.utf8))))
            }
        }
        let directory = PartnerDirectory(
            host: "h1", rootB: root + "/kept/{partner}", table: table, rank: RankID(0), incarnation: 0, token: token)
        #expect(directory.find("epochs/a") != nil)
        #expect(directory.hostsConnected == ["h4"], "h3 did not have it: its connection is closed")
        #expect(directory.find("epochs/a") != nil)
        #expect(directory.hostsConnected == ["h4"])
        #expect(directory.find("epochs/b") != nil)
        #expect(directory.hostsConnected == ["h3"], "h4, asked first, did not have it")
        #expect(directory.find("epochs/c") == nil)
        #expect(directory.hostsConnected.isEmpty)
        withExtendedLifetime(listeners) {}
    }

    /// A process of an older incarnation than the keeper last heard of (left running on a host
    /// that was cut off) writes nothing to the folder its replacement writes to, whether it
    /// connects after the keeper heard of its replacement or was connected before.
    @Test func anOlderIncarnationOfTheWriterIsFencedOff() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/partner"))
        listener.fence([nil, RankAddress(host: "n1", address: "127.0.0.1", port: 1, incarnation: 3)])
        func writer(incarnation: UInt32) -> PartnerFolder {
            PartnerFolder(
                address: "127.0.0.1", port: listener.port, host: "n2", partner: keeper, rank: RankID(1),
                incarnation: incarnation, token: token)
        }
        let file = FileToWrite("manifest", kind: .manifest, generation: 1, body: [1])
        #expect(throws: StorageError.self) { try writer(incarnation: 2).write([file]) }
        #expect(files(root + "/partner").isEmpty)
        try writer(incarnation: 3).write([file])
        #expect(files(root + "/partner") == ["manifest"])

        // Connected before its replacement was heard of: its next request closes the connection.
        let earlier = writer(incarnation: 3)
        try earlier.write([FileToWrite("a", kind: .manifest, generation: 1, body: [2])])
        listener.fence([nil, RankAddress(host: "n1", address: "127.0.0.1", port: 1, incarnation: 4)])
        #expect(throws: StorageError.self) { try earlier.write([FileToWrite("b", kind: .manifest, generation: 1, body: [3])]) }
        #expect(files(root + "/partner") == ["a", "manifest"])
    }

    @Test func aConnectorWithoutTheTokenWritesNothing() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/partner"))
        let store = try MirroredStore(rootA: root + "/local", remoteB: folder(port: listener.port, token: "not the job's token"))
        do {
            try store.write("manifest", kind: .manifest, generation: 1, body: [1, 2, 3])
            Issue.record("a write without the token reached the partner")
        } catch {
            #expect(error.mirror == .b && error.isMirrorFailure, "\(error)")
        }
        #expect(files(root + "/partner").isEmpty)
    }

    /// A message log whose second copy a partner keeps (pessimistic logging with `{partner}`):
    /// each append is on both hosts, byte for byte. When the partner's copy fails (its file cut
    /// short there, as a failing disk leaves it), the append fails rather than go on on this
    /// host alone, as a local mirror's failure would: a log is on two hosts or the rank fails.
    /// An optimistic log (`goesOnAlone`) goes on on this host instead, the partner's copy left
    /// as it was (a prefix of the log, which an orphan search may read).
    @Test(arguments: [false, true])
    func aLogWhosePartnerCopyFailsFailsItsAppendRatherThanGoOnAlone(optimistic: Bool) throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/partner"))
        let store = try MirroredStore(rootA: root + "/local", remoteB: folder(port: listener.port, token: token))
        let log = try MessageLog(store: store, name: MessageLog.name(ofRank: 1), incarnation: 0)
        log.goesOnAlone = optimistic
        try log.append([[1, 2, 3], [4, 5]])
        try log.append([[6]])
        let segments = files(root + "/partner").filter { $0.hasSuffix(".seg") }
        #expect(!segments.isEmpty && segments == files(root + "/local").filter { $0.hasSuffix(".seg") })
        for segment in segments {
            #expect(FileManager.default.contents(atPath: root + "/partner/" + segment)
                == FileManager.default.contents(atPath: root + "/local/" + segment))
            #expect(truncate(root + "/partner/" + segment, 10) == 0)
        }
        guard optimistic else {
            #expect(throws: StorageError.self) { try log.append([[7, 8]]) }
            #expect(log.failedMirror == nil)
            #expect(throws: StorageError.self) { try log.append([[9]]) }
            return
        }
        try log.append([[7, 8]])
        try log.append([[9]])
        #expect(log.failedMirror?.mirror == .b)
        #expect(log.records == [[1, 2, 3], [4, 5], [6], [7, 8], [9]])
        for segment in segments { #expect(FileManager.default.contents(atPath: root + "/partner/" + segment)?.count == 10) }
    }

    /// The supervisor's search for a failed rank's log (no host of its own): of the copies the
    /// hosts keep, the one written by the newest incarnation, over the ranking's other terms; a
    /// log kept nowhere is not found. Its connections close when it is done.
    @Test func theNewestCopyAnyHostKeepsIsFound() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (table, listeners) = try threeHosts(root)
        defer { withExtendedLifetime(listeners) {} }
        // h2 kept three segments of incarnation 4 (the rank's older host's copy); h3 one segment
        // of incarnation 7, the newer process's. The search ranks them by name alone.
        for (host, incarnation, starts) in [("h2", 4, [0, 10, 20]), ("h3", 7, [15])] {
            let folder = root + "/kept/\(host)/" + MessageLog.folder + "/rank-0"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for start in starts {
                let name = String(repeating: "0", count: 20 - String(start).count) + String(start)
                    + "-" + String(repeating: "0", count: 10 - String(incarnation).count) + String(incarnation) + ".seg"
                _ = FileManager.default.createFile(atPath: folder + "/" + name, contents: Data([0]))
            }
        }
        let directory = PartnerDirectory(
            host: "", rootB: root + "/kept/{partner}", table: table, rank: RankID(0), incarnation: 9, token: token)
        let found = try #require(directory.keptCopy(MessageLog.folder + "/rank-0", rank: MessageLog.newness(ofFiles:)))
        #expect(found.names == ["00000000000000000015-0000000007.seg"])
        #expect(directory.keptCopy(MessageLog.folder + "/rank-5", rank: MessageLog.newness(ofFiles:)) == nil)
        directory.closeKeptFolders()
        #expect(directory.hostsConnected.isEmpty)
    }

    /// A file whose only copy left is in another host's own folder (that host's partner was
    /// lost with the copies it kept): the search of the folders the hosts keep finds nothing,
    /// and the one of each host's own folder, lent for reading, finds it (a shrink's new rank
    /// reading an old rank's snapshot). A file nowhere is not found, and no connection stays.
    @Test func aFileLeftInAnotherHostsOwnFolderAloneIsFound() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listeners = try ["h2", "h3"].enumerated().map { index, host in
            try HostListener(address: "127.0.0.1", identity: HostIdentity(role: .peer, rank: RankID(index + 1), incarnation: 0),
                             token: token, storage: try FolderService(root: root + "/kept/" + host),
                             lent: try FolderService(root: root + "/own/" + host, readOnly: true))
        }
        defer { withExtendedLifetime(listeners) {} }
        let table = [RankAddress(host: "h1", address: "127.0.0.1", port: 1, incarnation: 0)]
            + zip(["h2", "h3"], listeners).map { RankAddress(host: $0, address: "127.0.0.1", port: $1.port, incarnation: 0) }
        let name = "epochs/000003/rank-0002.snap"
        try FileManager.default.createDirectory(atPath: root + "/own/h3/epochs/000003", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: root + "/own/h3/" + name, contents: Data([7, 8, 9]))
        let directory = PartnerDirectory(
            host: "h1", rootB: root + "/kept/{partner}", table: table, rank: RankID(0), incarnation: 0, token: token)
        #expect(directory.find(name) == [7, 8, 9])
        #expect(directory.find("epochs/000003/rank-0005.snap") == nil)
        directory.closeKeptFolders()
        #expect(directory.hostsConnected.isEmpty)
    }

    /// A host's own folder lent for reading (the supervisor's search for a failed rank's log,
    /// optimistic logging with partner copies): a connection under the role `hostFolder` reads
    /// that folder, not the one the host keeps for its partner, reads a message log there as
    /// it is, and every change it asks for is refused.
    @Test func aHostsOwnFolderIsLentForReadingOnly() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let listener = try HostListener(
            address: "127.0.0.1", identity: keeper, token: token, storage: try FolderService(root: root + "/kept"),
            lent: try FolderService(root: root + "/own-a", readOnly: true))
        let log = try MessageLog(store: try MirroredStore(rootA: root + "/own-a", rootB: root + "/own-b"), name: "rank-1")
        try log.append([[1, 2], [3], [4, 5, 6]])
        let keepers = [PartnerFolder.Keeper(host: "n2", address: "127.0.0.1", port: listener.port, identity: keeper)]
        let lent = PartnerFolder(location: "n2's own folder", rank: RankID(1), incarnation: 0, token: token,
                                 role: .hostFolder) { keepers }
        let read = try MessageLog.inspect(keptBy: lent, name: "rank-1")
        #expect(read.kept == 0..<3 && !read.recordsLost && !read.isMissing, "\(read.problems)")
        let segments = try lent.entries(MessageLog.folder + "/rank-1")
        #expect(!segments.isEmpty)
        let before = files(root + "/own-a")
        #expect(throws: StorageError.self) {
            try lent.write([FileToWrite(MessageLog.folder + "/rank-1/x", kind: .snapshot, generation: 1, body: [1])])
        }
        #expect(throws: StorageError.self) { _ = try lent.remove(MessageLog.folder + "/rank-1/" + segments[0]) }
        #expect(throws: StorageError.self) { try lent.removeDirectory(MessageLog.folder + "/rank-1") }
        #expect(files(root + "/own-a") == before)
        // The partner's role reaches the folder kept for the partner, where this log is not.
        let kept = PartnerFolder(location: "the folder n2 keeps", rank: RankID(1), incarnation: 0, token: token) { keepers }
        #expect(try kept.entries(MessageLog.folder + "/rank-1").isEmpty)
    }

    @Test func aPartnerThatIsGoneFailsMirrorBInBoundedTime() throws {
        let root = temporary()
        defer { try? FileManager.default.removeItem(atPath: root) }
        // A port nothing listens on: take one and close it.
        let (fd, port) = try HostLink.listen(address: "127.0.0.1")
        close(fd)
        let store = try MirroredStore(rootA: root + "/local", remoteB: folder(port: port, token: token))
        let started = monotonicSeconds()
        #expect(throws: StorageError.self) { try store.probe(.b) }
        #expect(monotonicSeconds() - started < 10)
        #expect(throws: Never.self) { try store.probe(.a) }
    }
}
