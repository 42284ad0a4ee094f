import Foundation
import Testing
@testable import LifelineStorage

/// Incremental chunked snapshots: dedup against the previous committed snapshot, verified
/// reads, repair of one damaged mirror, loss of both, and garbage collection of chunks.
struct ChunkedSnapshotTests {
    private func field(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    @Test func secondSnapshotWithTenPercentChangedWritesLittle() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        let chunkBytes = 64 << 10
        var bytes = field(40 * chunkBytes, seed: 1)
        let first = try snapshots.write("epochs/000001/rank-0000.snap", bytes: bytes, generation: 1, reusable: [],
                                        chunkBytes: chunkBytes)
        #expect(first.reusedCount == 0)
        for chunk in stride(from: 0, to: 40, by: 10) { bytes[chunk * chunkBytes + 7] ^= 0xFF }  // 4 of 40 chunks
        let second = try snapshots.write("epochs/000002/rank-0000.snap", bytes: bytes, generation: 2,
                                         reusable: Set(first.index.chunks.map(\.hash)), chunkBytes: chunkBytes)
        #expect(second.reusedCount == 36)
        #expect(Double(second.storedBytes) <= 0.15 * Double(first.storedBytes),
                "the incremental snapshot stored \(second.storedBytes) of \(first.storedBytes) bytes")
        #expect(try snapshots.read("epochs/000002/rank-0000.snap") == bytes)
        #expect(try snapshots.read("epochs/000001/rank-0000.snap") != bytes)
    }

    @Test func damagedChunkIsRepairedFromTheOtherMirrorAndLostWhenBothAre() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let snapshots = ChunkedSnapshots(store: store)
        let bytes = field(3 * 1000, seed: 2)
        let written = try snapshots.write("s.snap", bytes: bytes, generation: 1, reusable: [], chunkBytes: 1000)
        let chunk = snapshots.chunkName(written.index.chunks[1].hash)
        Disk.flipBit(store.path(chunk, on: .a), byte: 60)
        #expect(try snapshots.read("s.snap") == bytes)
        #expect(Disk.bytes(store.path(chunk, on: .a)) == Disk.bytes(store.path(chunk, on: .b)), "mirror A was not repaired")
        Disk.flipBit(store.path(chunk, on: .a), byte: 60)
        Disk.flipBit(store.path(chunk, on: .b), byte: 61)
        do {
            _ = try snapshots.read("s.snap")
            Issue.record("a chunk damaged on both mirrors was read")
        } catch {
            #expect(error.code == .lost)
            #expect(error.description.contains(chunk))
        }
    }

    @Test func garbageCollectionKeepsOnlyReferencedChunks() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        let old = try snapshots.write("old.snap", bytes: field(4000, seed: 3), generation: 1, reusable: [], chunkBytes: 1000)
        let kept = try snapshots.write("new.snap", bytes: field(4000, seed: 4), generation: 2, reusable: [], chunkBytes: 1000)
        #expect(try snapshots.garbageCollect(keptIndexes: [kept.index]) == old.index.chunks.count)
        #expect(try snapshots.read("new.snap") == field(4000, seed: 4))
        #expect(throws: StorageError.self) { try snapshots.read("old.snap") }
    }

    @Test func indexRoundTripsAndRefusesDamage() throws {
        let index = ChunkedSnapshots.Index(chunkBytes: 1 << 20, totalBytes: 5, chunks: [
            .init(hash: ContentHash(high: 1, low: 2), storedBytes: 9),
        ])
        let bytes = ChunkedSnapshots.encode(index)
        #expect(try ChunkedSnapshots.decode(bytes, name: "x") == index)
        #expect(throws: StorageError.self) { try ChunkedSnapshots.decode(Array(bytes.dropLast()), name: "x") }
        var newer = bytes
        newer[4] = 9
        #expect(throws: StorageError.self) { try ChunkedSnapshots.decode(newer, name: "x") }
        #expect("abc".utf8.withContiguousStorageIfAvailable { ContentHash(of: UnsafeRawBufferPointer($0)) }?.description.count == 32)
    }
}
