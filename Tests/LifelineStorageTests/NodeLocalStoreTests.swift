import Foundation
import Testing
@testable import LifelineStorage

/// A node-local mirror (`{host}` in `--storage`): each host's folder holds what its ranks wrote,
/// the shared mirror holds everything, and a host's folder is collected by its own ranks.
@Suite struct NodeLocalStoreTests {
    /// The store a process on `host` opens: its host's folder as mirror A, the shared folder as B.
    func store(_ folder: TemporaryFolder, host: String, fills: Bool) throws -> MirroredStore {
        try MirroredStore(rootA: folder.path + "/local/" + host, rootB: folder.path + "/shared").withNodeLocal(.a, fills: fills)
    }

    /// A state that chunks into several pieces, different for each rank and epoch.
    func state(rank: Int, epoch: UInt64) -> [UInt8] {
        var generator = SeededGenerator(state: UInt64(rank) << 32 | epoch)
        return (0..<(3 * 4096)).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    func line(_ epoch: UInt64, ranks: Int, manifests: ManifestStore) -> CommittedLine {
        CommittedLine(epoch: epoch, step: Int(epoch), members: (0..<ranks).map {
            Member(rank: $0, snapshot: manifests.snapshotName(epoch: epoch, rank: $0), step: Int(epoch), incarnation: 0,
                   outputOffset: 0, snapshotBytes: 0)
        })
    }

    @Test func aSnapshotWrittenOnOneHostIsReadOnAnotherFromTheSharedCopy() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let host1 = try store(folder, host: "h1", fills: true)
        let name = "epochs/000001/rank-0000.snap"
        let bytes = state(rank: 0, epoch: 1)
        _ = try ChunkedSnapshots(store: host1).write(name, bytes: bytes, generation: 1, chunkBytes: 4096)

        // The supervisor (on its own host, filling nothing) reads it from the shared copy and
        // finds nothing wrong: a rank's file missing from its folder is expected.
        let supervisor = try store(folder, host: "sv", fills: false)
        #expect(try ChunkedSnapshots(store: supervisor).read(name) == bytes)
        #expect(try supervisor.read(name).problems.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/local/sv/epochs"))
        let report = supervisor.verify(repair: false)
        #expect(report.problems.isEmpty && report.healthyCount == 4, "\(report.problems)")

        // Host 1 and its disk are lost: a rank restarted on host 2 reads the shared copy and
        // fills its new host's folder.
        Disk.delete(folder.path + "/local/h1")
        let host2 = try store(folder, host: "h2", fills: true)
        #expect(try ChunkedSnapshots(store: host2).read(name) == bytes)
        #expect(FileManager.default.fileExists(atPath: host2.path(name, on: .a)))
        #expect(try host2.read(name).problems.isEmpty)
        // A copy that is there but damaged is damage, wherever it is read from.
        Disk.flipBit(host2.path(name, on: .a), byte: 40)
        let damaged = try supervisor.withNodeLocal(.a, fills: false).read(name)
        #expect(damaged.problems.isEmpty, "the supervisor does not see host 2's folder")
        let read = try host2.read(name)
        #expect(read.repaired == [.a] && read.problems.count == 1, "\(read.problems)")
    }

    @Test func aHostCollectsItsOwnFolderAndNothingElse() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let host1 = try store(folder, host: "h1", fills: true)
        let supervisor = try store(folder, host: "sv", fills: false)
        let manifests = ManifestStore(store: supervisor)
        let onHost = ManifestStore(store: host1)
        var manifest = Manifest(jobID: "node-local", rankCount: 2)
        for epoch: UInt64 in 1...4 {
            for rank in 0..<2 {
                _ = try ChunkedSnapshots(store: host1).write(
                    onHost.snapshotName(epoch: epoch, rank: rank), bytes: state(rank: rank, epoch: epoch), generation: epoch,
                    chunkBytes: 4096)
            }
            // Epoch 4 is written and not committed yet (the next round, in progress).
            if epoch < 4 { manifest.appendCommitted(line(epoch, ranks: 2, manifests: manifests), keep: 2) }
        }
        try manifests.commit(&manifest)
        let chunksBefore = ChunkedSnapshots(store: host1.confinedToNodeLocal!).allChunkNames()
        #expect(chunksBefore.count == 4 * 2 * 3)

        // While a rank of the host writes a snapshot (the chunk lock held shared), the old
        // round's index files go, and no chunk: the write may be reusing any of them.
        let writing = try #require(ChunkLock(store: host1, exclusive: false, wait: true))
        let confined = try #require(host1.confinedToNodeLocal)
        #expect(try ManifestStore(store: confined).garbageCollect(keeping: manifest) == ["epochs/000001"])
        #expect(ChunkedSnapshots(store: confined).allChunkNames() == chunksBefore)
        writing.release()

        let removed = try ManifestStore(store: confined).garbageCollect(keeping: manifest)
        #expect(removed == ["chunks: 6 chunks"], "\(removed)")
        // Host 1's folder keeps the kept lines (2, 3) and the round in progress (4)...
        #expect(confined.list("epochs") == ["000002", "000003", "000004"])
        #expect(ChunkedSnapshots(store: confined).allChunkNames().count == 3 * 2 * 3)
        for epoch: UInt64 in 2...4 {
            #expect(try ChunkedSnapshots(store: confined).read(onHost.snapshotName(epoch: epoch, rank: 1)) == state(rank: 1, epoch: epoch))
        }
        // ...and the shared folder is the supervisor's to collect: untouched.
        #expect(PosixFile.entries(folder.path + "/shared/epochs").sorted() == ["000001", "000002", "000003", "000004"])
        #expect(try ChunkedSnapshots(store: supervisor).read(onHost.snapshotName(epoch: 1, rank: 0)) == state(rank: 0, epoch: 1))
    }

    /// A host's folder may keep a round's snapshot from before a resume reused the round (it ran
    /// elsewhere since): of two copies of one generation, the shared one is taken, and the
    /// host's is rewritten from it — never the other way.
    @Test func theSharedCopyWinsATieWithAHostsLeftover() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let host1 = try store(folder, host: "h1", fills: true)
        let host2 = try store(folder, host: "h2", fills: true)
        let name = "epochs/000003/rank-0001.snap"
        try host1.write(name, kind: .snapshot, generation: 3, body: [1, 1, 1])  // the earlier run, on h1
        try host2.write(name, kind: .snapshot, generation: 3, body: [2, 2, 2])  // round 3 again, the rank on h2
        let read = try host1.read(name)
        #expect(read.body == [2, 2, 2] && read.repaired == [.a], "\(read.problems)")
        #expect(try host1.read(name).problems.isEmpty)
        let supervisorOnH1 = try store(folder, host: "h1", fills: false)
        #expect(try supervisorOnH1.read(name).body == [2, 2, 2])
    }

    /// A snapshot write keeps its host's folder locked even when the shared root's lock cannot
    /// be taken (a failing disk, a file system without `flock`): the host's collection waits.
    @Test func aWriteHoldsItsHostsLockWhenTheSharedOneFails() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let host1 = try store(folder, host: "h1", fills: true)
        try FileManager.default.createDirectory(atPath: folder.path + "/shared/" + ChunkLock.fileName, withIntermediateDirectories: true)
        let writing = try #require(ChunkLock(store: host1, exclusive: false, wait: true))
        #expect(ChunkLock(store: try #require(host1.confinedToNodeLocal), exclusive: true, wait: false) == nil)
        writing.release()
        let collecting = ChunkLock(store: try #require(host1.confinedToNodeLocal), exclusive: true, wait: false)
        #expect(collecting != nil)
        collecting?.release()
        #expect(ChunkLock(store: host1, exclusive: true, wait: false) == nil, "collecting the shared root needs its lock")
    }

    /// A tool reading a run on a machine where no rank ran makes no folder for it there.
    @Test func aToolMakesNoFolderForAHostWhereNoRankRan() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let host1 = try store(folder, host: "h1", fills: true)
        try host1.write("manifest", kind: .manifest, generation: 1, body: [7])
        let tool = try MirroredStore(rootA: folder.path + "/local/login", rootB: folder.path + "/shared", missingAllowed: .a)
            .withNodeLocal(.a, fills: false)
        #expect(try tool.readingOnly.read("manifest").body == [7])
        #expect(tool.verify(repair: false).problems.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: folder.path + "/local/login"))
    }
}
