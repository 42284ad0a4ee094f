import Foundation
import Testing
@testable import LifelineStorage

@Suite struct MirroredStoreTests {
    let name = "epochs/000003/rank-0001.snap"
    let body: [UInt8] = Array(repeating: 0, count: 5000).enumerated().map { UInt8(truncatingIfNeeded: $0.offset * 31) }

    @Test func roundTripWritesBothMirrors() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        #expect(store.sameDevice)
        try store.write(name, kind: .snapshot, generation: 7, body: body)
        let file = try store.read(name)
        #expect(file == StoredFile(kind: .snapshot, generation: 7, body: body))
        let onA = try FileFormat.decode(Disk.bytes(store.path(name, on: .a)))
        let onB = try FileFormat.decode(Disk.bytes(store.path(name, on: .b)))
        #expect(onA.body == body && onB.body == body)
        #expect(store.exists(name))
        #expect(store.list("epochs/000003") == ["rank-0001.snap"])
        #expect(store.list("epochs") == ["000003"])
    }

    @Test func deletedCopyOnAIsRepaired() throws {
        try expectRepair(of: .a) { Disk.delete($0) }
    }

    @Test func bitFlipOnBIsRepaired() throws {
        try expectRepair(of: .b) { Disk.flipBit($0, byte: FileFormat.headerByteCount + 100) }
    }

    @Test func truncatedCopyOnAIsRepaired() throws {
        try expectRepair(of: .a) { Disk.truncate($0, to: 1000) }
    }

    @Test func newerGenerationOnBWinsAndAIsRepaired() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write(name, kind: .snapshot, generation: 1, body: body)
        let newer: [UInt8] = [1, 2, 3]
        Disk.put(FileFormat.encode(kind: .snapshot, generation: 2, body: newer), at: store.path(name, on: .b))
        let file = try store.read(name)
        #expect(file.generation == 2 && file.body == newer)
        #expect(file.repaired == [.a])
        #expect(try FileFormat.decode(Disk.bytes(store.path(name, on: .a))).body == newer)
        #expect(try store.read(name).repaired.isEmpty)
    }

    @Test func equalGenerationsThatDifferPreferA() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write(name, kind: .snapshot, generation: 4, body: body)
        Disk.put(FileFormat.encode(kind: .snapshot, generation: 4, body: [9]), at: store.path(name, on: .b))
        let file = try store.read(name)
        #expect(file.body == body && file.repaired == [.b])
    }

    @Test func bothCopiesCorruptedIsLostAndNamesTheFile() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write(name, kind: .snapshot, generation: 1, body: body)
        Disk.flipBit(store.path(name, on: .a), byte: 50)
        Disk.truncate(store.path(name, on: .b), to: 10)
        let error = storageError { () throws(StorageError) in try store.read(name) }
        #expect(error?.code == .lost)
        #expect(error?.description.contains(name) == true)
        #expect(error?.description.contains("both mirrors are damaged") == true)
    }

    @Test func missingOnBothIsNotFound() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let error = storageError { () throws(StorageError) in try store.read("nothing/here") }
        #expect(error?.code == .notFound)
        #expect(!store.exists("nothing/here"))
    }

    @Test func sameFolderTwiceIsRefused() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let same = storageError { () throws(StorageError) in
            try MirroredStore(rootA: folder.path + "/x", rootB: folder.path + "/x")
        }
        #expect(same?.code == .invalidArgument)
        try FileManager.default.createSymbolicLink(atPath: folder.path + "/link", withDestinationPath: folder.path + "/x")
        let viaLink = storageError { () throws(StorageError) in
            try MirroredStore(rootA: folder.path + "/x", rootB: folder.path + "/link")
        }
        #expect(viaLink?.code == .invalidArgument)
    }

    @Test func invalidNamesAreRefused() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        for bad in ["", "/abs", "a/../b", "a//b", ".hidden", "dir/.x.tmp.1", "a/\0", "\0"] {
            let error = storageError { () throws(StorageError) in try store.write(bad, kind: .other, generation: 0, body: []) }
            #expect(error?.code == .invalidArgument, "\(bad)")
        }
    }

    @Test func removeAndListIgnoreMissingAndTemporaryFiles() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write("logs/one", kind: .log, generation: 0, body: [1])
        try store.write("logs/two", kind: .log, generation: 0, body: [2])
        Disk.put([0], at: store.path("logs/.two.tmp.99", on: .a))
        Disk.delete(store.path("logs/one", on: .b))
        #expect(store.list("logs") == ["one", "two"])
        try store.remove("logs/one")
        try store.remove("logs/one")
        #expect(!store.exists("logs/one"))
        #expect(store.list("logs") == ["two"])
        try store.removeDirectory("logs")
        #expect(store.list("logs").isEmpty)
        #expect(!FileManager.default.fileExists(atPath: store.path("logs", on: .a)))
    }

    @Test func verifyCountsAndRepairs() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        for index in 0..<4 {
            try store.write("f/\(index)", kind: .other, generation: 1, body: body)
        }
        Disk.delete(store.path("f/1", on: .a))
        Disk.flipBit(store.path("f/2", on: .b), byte: 3)
        Disk.flipBit(store.path("f/3", on: .a), byte: 60)
        Disk.flipBit(store.path("f/3", on: .b), byte: 60)
        Disk.put([0], at: store.path("f/.0.tmp.42", on: .b))

        let checked = store.verify(repair: false)
        #expect(checked.healthyCount == 1 && checked.damagedCount == 2 && checked.unrecoverableCount == 1)
        #expect(checked.temporaryCount == 1 && !checked.isClean)
        #expect(checked.problems.count == 4)
        #expect(checked.problems.contains { $0.contains("f/3") })

        let repaired = store.verify(repair: true)
        #expect(repaired.repairedCount == 2 && repaired.unrecoverableCount == 1 && repaired.temporaryCount == 1)
        let after = store.verify(repair: false)
        #expect(after.healthyCount == 3 && after.damagedCount == 0 && after.temporaryCount == 0)
    }

    @Test func errorDescriptionNamesFileAndAdvice() {
        let error = StorageError(errno: ENOSPC, operation: "write", path: "/x/y")
        #expect(error.code == .noSpace)
        #expect(error.description.contains("/x/y") && error.description.contains("free space"))
        #expect(StorageError(errno: EROFS, operation: "write", path: "p").code == .permissionDenied)
        #expect(StorageError(errno: ENOENT, operation: "open", path: "p", isRoot: true).code == .rootMissing)
        #expect(StorageError(errno: ENOENT, operation: "open", path: "p").code == .ioFailure)
        #expect(StorageError(errno: EIO, operation: "read", path: "p").message.contains("Input/output error"))
    }

    /// Writes the file, damages `mirror`'s copy, reads, and checks the copy came back.
    private func expectRepair(of mirror: Mirror, damage: (String) -> Void) throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write(name, kind: .snapshot, generation: 5, body: body)
        let damagedPath = store.path(name, on: mirror)
        let original = Disk.bytes(damagedPath)
        damage(damagedPath)
        let stillThere = FileManager.default.fileExists(atPath: damagedPath)
        let damaged = !stillThere || Disk.bytes(damagedPath) != original
        #expect(damaged)
        let file = try store.read(name)
        #expect(file.body == body && file.generation == 5)
        #expect(file.repaired == [mirror])
        #expect(file.problems.count == 1)
        let restored = Disk.bytes(damagedPath) == original
        #expect(restored, "mirror \(mirror) copy is byte-equal to the original after repair")
        #expect(try store.read(name).repaired.isEmpty)
    }
}

/// Batches: many files made durable together, and a batch that fails on B.
@Suite struct MirroredStoreBatchTests {
    private func files(generation: UInt64, names: [String]) -> [FileToWrite] {
        names.enumerated().map { position, name in
            FileToWrite(name, kind: .manifest, generation: generation,
                        body: Array(repeating: UInt8(truncatingIfNeeded: position &+ Int(generation)), count: 100 + position))
        }
    }

    @Test func batchWritesEveryFileToBothMirrors() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let names = ["x/1", "x/2", "y/z/3", "4", "y/5"]
        let batch = files(generation: 3, names: names)
        try store.write(batch)
        for file in batch {
            #expect(Disk.bytes(store.path(file.name, on: .a)) == file.encoded)
            #expect(Disk.bytes(store.path(file.name, on: .b)) == file.encoded)
            #expect(try store.read(file.name).problems.isEmpty)
        }
        #expect(store.list("x") == ["1", "2"])
    }

    /// B cannot take one file of the second batch: A holds the new versions, B the old ones
    /// (never newer than A), and reading gives the new version and repairs B.
    @Test func batchFailingOnBLeavesANewerAndReadsRepairB() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        try store.write(files(generation: 1, names: ["x/1", "x/2"]))
        Disk.put([0], at: store.path("w", on: .b))  // "w/3" cannot be made on B
        let second = files(generation: 2, names: ["x/1", "x/2", "w/3"])
        let error = storageError { () throws(StorageError) in try store.write(second) }
        #expect(error != nil)
        for name in ["x/1", "x/2"] {
            let onB = try FileFormat.decode(Disk.bytes(store.path(name, on: .b)))
            #expect(onB.generation == 1)
            let file = try store.read(name)
            #expect(file.generation == 2 && file.repaired == [.b])
        }
    }
}
