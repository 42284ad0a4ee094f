import Foundation
import Testing
@testable import LifelineStorage

/// A mirror kept by another process (a partner host's disk): every operation on mirror B goes
/// through a `RemoteFolder`, here one that passes each request and reply through their bytes
/// to a `FolderService` on a folder of its own, as the runtime's TCP connection does.
@Suite struct RemoteFolderTests {
    /// A `RemoteFolder` whose keeper is a `FolderService` in this process, reached through the
    /// requests' and replies' encoded bytes; `failing` makes every request fail as a partner
    /// that cannot be reached.
    final class LoopbackFolder: RemoteFolder, @unchecked Sendable {
        let service: FolderService
        let session: FolderService.Session
        var failing = false
        /// The keeper's chunk lock cannot be taken, or lapses while it is held.
        var lockRefused = false
        var lockLapses = false
        /// Releases that report a lapse once each, and what happens on the keeper before each
        /// reports it (a collection that ran while the lock had lapsed).
        var lapsesOnce = 0
        var duringLapse: () -> Void = {}
        var requests = 0
        /// The file reads asked of the keeper (each sends a whole file back).
        var reads = 0
        var location: String { "loopback partner at \(service.root)" }

        init(root: String) throws {
            service = try FolderService(root: root)
            session = FolderService.Session(service)
        }

        private func call(_ request: FolderRequest) throws(StorageError) -> FolderReply {
            requests += 1
            if case .read = request { reads += 1 }
            if failing { throw StorageError(.ioFailure, path: location, message: "the partner did not answer") }
            let decoded = FolderRequest.decode(request.encoded)!
            let reply = FolderReply.decode(session.handle(decoded).encoded)!
            if let error = reply.error { throw error }
            return reply
        }

        func write(_ files: [FileToWrite]) throws(StorageError) {
            for batch in FolderRequest.batches(files) { _ = try call(.write(batch)) }
        }

        func read(_ name: String) throws(StorageError) -> [UInt8]? {
            guard case .file(let bytes) = try call(.read(name)) else { return nil }
            return bytes
        }

        func remove(_ name: String) throws(StorageError) -> Bool {
            guard case .flag(let removed) = try call(.remove(name)) else { return false }
            return removed
        }

        func removeDirectory(_ name: String) throws(StorageError) { _ = try call(.removeDirectory(name)) }

        func entries(_ directory: String) throws(StorageError) -> [String] {
            guard case .entries(let names) = try call(.entries(directory)) else { return [] }
            return names
        }

        func isRegularFile(_ name: String) throws(StorageError) -> Bool {
            guard case .flag(let found) = try call(.isRegularFile(name)) else { return false }
            return found
        }

        func digest(_ name: String) throws(StorageError) -> ContentHash? {
            guard case .digest(let hash) = try call(.digest(name)) else { return nil }
            return hash
        }

        func append(_ name: String, at offset: Int, _ bytes: [UInt8]) throws(StorageError) {
            _ = try call(.append(name, offset: UInt64(offset), bytes: bytes))
        }

        func holdChunkLock() -> Bool { !lockRefused && (try? call(.chunkLock(true))) == .flag(true) }

        func releaseChunkLock() -> Bool {
            let released = (try? call(.chunkLock(false))) == .done && !lockLapses
            guard released, lapsesOnce > 0 else { return released }
            lapsesOnce -= 1
            duringLapse()
            return false
        }
    }

    @Test func bothCopiesAreWrittenAndADamagedPartnerCopyIsRepairedThroughTheConnection() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let store = try MirroredStore(rootA: folder.path + "/local", remoteB: partner)
        let name = "epochs/000001/rank-0000.snap"
        let bytes = (0..<(3 * 4096)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        _ = try ChunkedSnapshots(store: store).write(name, bytes: bytes, generation: 1, chunkBytes: 4096)

        // Every file of the snapshot is on the local disk and in the partner's folder, and the
        // store lists and finds them through the partner too.
        let local = PosixFile.walkFiles(root: folder.path + "/local").filter { !$0.hasPrefix(".") }.sorted()
        let kept = PosixFile.walkFiles(root: folder.path + "/partner").filter { !$0.hasPrefix(".") }.sorted()
        #expect(!local.isEmpty && local == kept)
        #expect(try ChunkedSnapshots(store: store).read(name) == bytes)
        #expect(store.exists(name))

        // The partner's copy damaged: a read takes the local one and rewrites the partner's.
        Disk.flipBit(folder.path + "/partner/" + name, byte: 40)
        let file = try store.read(name)
        #expect(file.repaired == [.b])
        #expect(Disk.bytes(folder.path + "/partner/" + name) == Disk.bytes(folder.path + "/local/" + name))

        // The local copy lost (a rank restarted on another host): the partner's is read, and
        // written back to the local disk.
        Disk.delete(folder.path + "/local/" + name)
        #expect(try store.read(name).repaired == [.a])
        #expect(Disk.bytes(folder.path + "/partner/" + name) == Disk.bytes(folder.path + "/local/" + name))

        // Removals reach the partner.
        try store.removeDirectory("epochs/000001")
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/partner/epochs/000001"))
        #expect(store.list("epochs").isEmpty)

        // `verify` checks the partner's copies of what the local mirror names.
        try store.write("manifest", kind: .manifest, generation: 2, body: Array("line".utf8))
        Disk.flipBit(folder.path + "/partner/manifest", byte: 30)
        let report = store.verify(repair: true)
        #expect(report.problems.count == 1 && report.repairedCount == 1 && report.unrecoverableCount == 0, "\(report.problems)")
        #expect(Disk.bytes(folder.path + "/partner/manifest") == Disk.bytes(folder.path + "/local/manifest"))
    }

    @Test func aReusedChunkIsCheckedOnThePartnerByItsDigestNotSentBack() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let store = try MirroredStore(rootA: folder.path + "/local", remoteB: partner)
        let snapshots = ChunkedSnapshots(store: store)
        var bytes = (0..<(4 * 4096)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 11) }
        _ = try snapshots.write("epochs/000001/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)

        // The next round changes one chunk of four: the three others are reused, each checked
        // on the partner by its digest, and no file comes back over the connection.
        bytes[5000] ^= 0xFF
        partner.reads = 0
        let second = try snapshots.write("epochs/000002/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)
        #expect(second.reusedCount == 3)
        #expect(partner.reads == 0)

        // The partner's copies of every chunk damaged: the digests of the three a round reuses
        // differ, so those copies alone are read, found bad, and written again from the local
        // ones; the round goes on, and the partner's copies alone restore it.
        for chunk in PosixFile.walkFiles(root: folder.path + "/partner") where chunk.hasSuffix(".chunk") {
            Disk.flipBit(folder.path + "/partner/" + chunk, byte: 40)
        }
        partner.reads = 0
        bytes[9000] ^= 0xFF
        let third = try snapshots.write("epochs/000003/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)
        #expect(third.reusedCount == 3)
        #expect(partner.reads == 3)
        try FileManager.default.removeItem(atPath: folder.path + "/local")
        #expect(try ChunkedSnapshots(store: try MirroredStore(rootA: folder.path + "/local", remoteB: partner))
            .read("epochs/000003/rank-0000.snap") == bytes)
    }

    /// The files of folder `path` (segment names to bytes), hidden ones left out.
    private static func files(_ path: String) -> [String: [UInt8]] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return Dictionary(uniqueKeysWithValues: names.filter { !$0.hasPrefix(".") }.map { ($0, Disk.bytes(path + "/" + $0)) })
    }

    @Test func aMessageLogsSecondCopyIsKeptByThePartnerBatchByBatch() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let store = try MirroredStore(rootA: folder.path + "/local", remoteB: partner)
        let local = folder.path + "/local/logs/rank-2", kept = folder.path + "/partner/logs/rank-2"
        let records: [[UInt8]] = (0..<12).map { index in (0..<(9 + 31 * index)).map { UInt8(truncatingIfNeeded: $0 ^ index) } }
        var log = try MessageLog(store: store, name: "rank-2", incarnation: 1, segmentBytesMax: 600)

        // Each batch is durable in both copies when the append returns; small segments make the
        // log span several files.
        for batch in stride(from: 0, to: records.count, by: 3) {
            try log.append(Array(records[batch..<batch + 3]))
            #expect(!Self.files(local).isEmpty && Self.files(local) == Self.files(kept))
        }
        #expect(Self.files(local).count > 2)

        // Trimming and cutting reach the partner's copy too.
        try log.trim(before: 5)
        try log.truncate(from: 10)
        #expect(Self.files(local) == Self.files(kept))
        log = try MessageLog(store: store, name: "rank-2", incarnation: 1, segmentBytesMax: 600)
        #expect(log.records == Array(records[Int(log.firstIndex)..<10]) && log.firstIndex <= 5)

        // The local copy lost (the rank restarted on a host whose disk does not hold it): the
        // log opens from the partner's copy and writes it to the local disk again.
        try FileManager.default.removeItem(atPath: folder.path + "/local")
        log = try MessageLog(store: try MirroredStore(rootA: folder.path + "/local", remoteB: partner), name: "rank-2",
                             incarnation: 2, segmentBytesMax: 600)
        #expect(log.records == Array(records[Int(log.firstIndex)..<10]))
        try log.append([[1, 2, 3]])
        #expect(Self.files(local) == Self.files(kept))

        // The partner's copy of the newest segment torn: reopening repairs it from the local one.
        let newest = Self.files(kept).keys.sorted().last!
        Disk.truncate(kept + "/" + newest, to: Disk.bytes(kept + "/" + newest).count - 2)
        log = try MessageLog(store: try MirroredStore(rootA: folder.path + "/local", remoteB: partner), name: "rank-2",
                             incarnation: 2, segmentBytesMax: 600)
        #expect(log.records.last == [1, 2, 3] && log.problems.count == 1, "\(log.problems)")
        #expect(Self.files(local) == Self.files(kept))

        // The keeper takes an append only where its copy ends; the same append sent again
        // (its reply lost with a connection) changes nothing.
        let name = "logs/rank-2/" + newest
        let end = UInt64(Disk.bytes(kept + "/" + newest).count)
        #expect(partner.service.handle(.append(name, offset: end + 1, bytes: [9])).error?.code == .corrupt)
        #expect(partner.service.handle(.append(name, offset: end, bytes: [9, 9])) == .done)
        #expect(partner.service.handle(.append(name, offset: end, bytes: [9, 9])) == .done)
        #expect(Disk.bytes(kept + "/" + newest).count == Int(end) + 2)
        #expect(partner.service.handle(.append("../escape", offset: 0, bytes: [9])).error?.code == .invalidArgument)
    }

    @Test func aPartnerThatCannotBeReachedIsAFailureOfMirrorB() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let store = try MirroredStore(rootA: folder.path + "/local", remoteB: partner)
        partner.failing = true
        do {
            try store.write("manifest", kind: .manifest, generation: 1, body: [1, 2, 3])
            Issue.record("a write whose partner is unreachable succeeded")
        } catch {
            #expect(error.mirror == .b && error.isMirrorFailure, "\(error)")
        }
        // A was written first and holds the file; a read of it needs no partner.
        #expect(try store.read("manifest").body == [1, 2, 3])
        #expect(throws: StorageError.self) { try store.probe(.b) }
        partner.failing = false
        try store.probe(.b)
    }

    /// A snapshot is written only under the partner's chunk lock, held throughout: a write
    /// that cannot take it, or whose lock lapsed (its connection ended), fails as mirror B's.
    @Test func aSnapshotWriteNeedsThePartnersChunkLockThroughout() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let snapshots = ChunkedSnapshots(store: try MirroredStore(rootA: folder.path + "/local", remoteB: partner))
        let bytes = [UInt8](repeating: 3, count: 3 * 4096)
        for (refused, lapses) in [(true, false), (false, true)] {
            partner.lockRefused = refused
            partner.lockLapses = lapses
            do {
                _ = try snapshots.write("epochs/000001/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)
                Issue.record("a write without the partner's lock held throughout succeeded (refused \(refused))")
            } catch {
                #expect(error.mirror == .b && error.message.contains("chunk lock"), "\(error)")
            }
        }
        partner.lockRefused = false
        partner.lockLapses = false
        _ = try snapshots.write("epochs/000001/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)
        #expect(try snapshots.read("epochs/000001/rank-0000.snap") == bytes)
    }

    /// A lock that lapsed once during a write, while a collection of the partner's folder
    /// removed a chunk the write reused: the write checks the partner's chunks again under the
    /// lock taken afresh, copies the missing one there from this host, and succeeds; the
    /// partner's copy alone then reads.
    @Test func aLapsedLockIsHealedByCopyingWhatTheCollectionRemoved() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let partner = try LoopbackFolder(root: folder.path + "/partner")
        let store = try MirroredStore(rootA: folder.path + "/local", remoteB: partner)
        let snapshots = ChunkedSnapshots(store: store)
        let bytes = (0..<3 * 4096).map { UInt8(truncatingIfNeeded: $0 / 4096 &* 37 &+ $0 % 251) }
        _ = try snapshots.write("epochs/000001/rank-0000.snap", bytes: bytes, generation: 1, chunkBytes: 4096)
        let index = try snapshots.index("epochs/000001/rank-0000.snap")
        let reused = snapshots.chunkName(index.chunks[1].hash)
        partner.lapsesOnce = 1
        partner.duringLapse = { _ = try? partner.remove(reused) }
        let written = try snapshots.write("epochs/000002/rank-0000.snap", bytes: bytes, generation: 2, chunkBytes: 4096)
        #expect(written.reusedCount == 3 && partner.lapsesOnce == 0)
        #expect(try partner.isRegularFile(reused), "the chunk the collection removed is on the partner again")
        let partnerOnly = ChunkedSnapshots(store: try MirroredStore(
            rootA: folder.path + "/empty", remoteB: LoopbackFolder(root: folder.path + "/partner")))
        #expect(try partnerOnly.read("epochs/000002/rank-0000.snap") == bytes)
    }

    @Test func theKeeperRefusesNamesOutsideItsFolder() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let service = try FolderService(root: folder.path + "/partner")
        let outside = folder.path + "/outside"
        // A NUL ends the name for the C library: "\0" would be the keeper's folder itself.
        for name in ["../outside", "/etc/passwd", "a/../../outside", ".hidden", "a/.tmp-1", "", "a//b", "\0", "a/\0"] {
            let file = FileToWrite(name, encoded: [1, 2, 3])
            for request in [FolderRequest.write([file]), .read(name), .remove(name), .removeDirectory(name), .isRegularFile(name),
                        .rename(name, to: "x"), .rename("x", to: name), .readPart(name, offset: 0, count: 1)] {
                guard case .failed(let code, _, _) = service.handle(request) else {
                    Issue.record("\(request) with the name '\(name)' was carried out")
                    continue
                }
                #expect(code == .invalidArgument)
            }
        }
        #expect(!FileManager.default.fileExists(atPath: outside))
        // A batch that names a file twice is refused whole.
        let twice = FileToWrite("x", encoded: [1])
        #expect(service.handle(.write([twice, twice])).error?.code == .invalidArgument)
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/partner/x"))
    }

    /// Requests and replies that are not whole (cut short, a byte changed, random bytes) decode
    /// to nil or to some request, never to a crash; every proper one comes back as it went.
    @Test func malformedRequestsAndRepliesAreRefusedNotTrusted() throws {
        let seed = ProcessInfo.processInfo.environment["LIFELINE_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1...UInt64(1 << 48))
        print("malformedRequestsAndRepliesAreRefusedNotTrusted: seed \(seed) (replay with LIFELINE_TEST_SEED=\(seed))")
        var generator = SeededGenerator(state: seed)
        let requests: [FolderRequest] = [
            .write([FileToWrite("a/b", encoded: [1, 2, 3]), FileToWrite("c", encoded: [])]), .read("a/b"), .remove("c"),
            .removeDirectory("a"), .entries(""), .isRegularFile("a/b"), .chunkLock(true), .digest("a/b"),
            .append("logs/r/x.seg", offset: 24, bytes: [7, 7]), .rename("a/b.part", to: "a/b"),
            .readPart("a/b", offset: 1 << 33, count: 4096),
        ]
        let replies: [FolderReply] = [
            .done, .flag(true), .file(nil), .file([9, 8]), .entries(["x", "y"]),
            .failed(code: .noSpace, path: "/p", message: "full"), .digest(nil), .digest(ContentHash(high: 1, low: 2)),
        ]
        for request in requests {
            let bytes = request.encoded
            #expect(FolderRequest.decode(bytes)?.encoded == bytes)
            for cut in 0..<bytes.count { #expect(FolderRequest.decode(Array(bytes.prefix(cut))) == nil) }
            #expect(FolderRequest.decode(bytes + [0]) == nil)
        }
        for reply in replies {
            let bytes = reply.encoded
            #expect(FolderReply.decode(bytes) == reply)
            for cut in 0..<bytes.count { #expect(FolderReply.decode(Array(bytes.prefix(cut))) == nil) }
        }
        for _ in 0..<2000 {
            let count = Int.random(in: 0...64, using: &generator)
            var bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            if !bytes.isEmpty { bytes[0] = UInt8.random(in: 0...7, using: &generator) }
            _ = FolderRequest.decode(bytes)
            _ = FolderReply.decode(bytes)
        }
        // A count far past what the bytes hold is refused before anything is reserved for it.
        #expect(FolderRequest.decode([1, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
        #expect(FolderReply.decode([3, 0xFF, 0xFF, 0xFF, 0xFF]) == nil)
    }

    /// A file written in parts under a name of its own (a first write, then appends) takes its
    /// final name at once, in place of any older file of that name; read back in parts, it is
    /// whole, the last part short and a part past its end empty. A rename sent again is done; a
    /// folder lent for reading takes no rename; a part of a missing file is nil; a part longer
    /// than `partBytesMax`, or past the largest file offset, is refused.
    @Test func aFileWrittenAndReadInPartsIsWholeUnderItsName() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let service = try FolderService(root: folder.path + "/partner")
        let bytes = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        #expect(service.handle(.write([FileToWrite("copy", encoded: [1, 2])])) == .done)
        #expect(service.handle(.write([FileToWrite("copy.part", encoded: Array(bytes[..<4096]))])) == .done)
        #expect(service.handle(.append("copy.part", offset: 4096, bytes: Array(bytes[4096..<8192]))) == .done)
        #expect(service.handle(.append("copy.part", offset: 8192, bytes: Array(bytes[8192...]))) == .done)
        #expect(service.handle(.rename("copy.part", to: "copy")) == .done)
        #expect(service.handle(.isRegularFile("copy.part")) == .flag(false))
        var read: [UInt8] = []
        var offset: UInt64 = 0
        while case .file(let part?) = service.handle(.readPart("copy", offset: offset, count: 4096)), !part.isEmpty {
            read += part
            offset += UInt64(part.count)
            #expect(part.count == 4096 || read.count == bytes.count)
        }
        #expect(read == bytes)
        #expect(service.handle(.readPart("copy", offset: 1 << 40, count: 16)) == .file([]))
        #expect(service.handle(.readPart("gone", offset: 0, count: 16)) == .file(nil))
        #expect(service.handle(.rename("copy.part", to: "copy")) == .done, "sent again after a lost reply")
        #expect(service.handle(.rename("gone", to: "elsewhere")).error?.code == .notFound)
        let lent = try FolderService(root: folder.path + "/partner", readOnly: true)
        #expect(lent.handle(.rename("copy", to: "other")).error?.code == .permissionDenied)
        #expect(service.handle(.readPart("copy", offset: UInt64.max - 2, count: 16)).error?.code == .invalidArgument)
        #expect(service.handle(.append("copy", offset: UInt64.max, bytes: [1])).error?.code == .invalidArgument)
        var tooLong = FolderRequest.readPart("copy", offset: 0, count: 1).encoded
        tooLong.replaceSubrange((tooLong.count - 4)..., with: [0xFF, 0xFF, 0xFF, 0x7F])
        #expect(FolderRequest.decode(tooLong) == nil)
    }

    @Test func aLargeWriteGoesInBatchesOfBoundedSize() {
        let big = [UInt8](repeating: 7, count: FolderRequest.bytesMax / 3)
        let files = (0..<7).map { FileToWrite("f\($0)", encoded: big) }
        let batches = FolderRequest.batches(files)
        #expect(batches.map(\.count).reduce(0, +) == 7)
        #expect(batches.count >= 3)
        for batch in batches { #expect(FolderRequest.write(batch).encoded.count <= FolderRequest.bytesMax) }
        #expect(batches.flatMap { $0.map(\.name) } == files.map(\.name))
    }
}
