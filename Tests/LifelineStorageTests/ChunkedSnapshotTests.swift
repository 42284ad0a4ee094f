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
        let old = try snapshots.write("old.snap", bytes: field(4000, seed: 3), generation: 1, chunkBytes: 1000)
        let kept = try snapshots.write("new.snap", bytes: field(4000, seed: 4), generation: 2, reusable: [], chunkBytes: 1000)
        #expect(try snapshots.garbageCollect(keptIndexes: [kept.index]) == old.index.chunks.count)
        #expect(try snapshots.read("new.snap") == field(4000, seed: 4))
        #expect(throws: StorageError.self) { try snapshots.read("old.snap") }
    }

    @Test func aWriteStopsBeforeEachWindowForWhoeverItGivesWayTo() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        var windows = 0
        let bytes = field(10_000, seed: 7)
        // 10 chunks of 1,000 bytes, 4 to a window (or one per core, if more): the write stops
        // before each window and goes on when the caller returns.
        let windowChunks = max(ProcessInfo.processInfo.activeProcessorCount, 4)
        _ = try snapshots.write("paused.snap", segments: [ChunkedSnapshots.Segment(bytes)], generation: 1,
                                chunkBytes: 1000, windowBytes: 4000) { windows += 1 }
        #expect(windows == (10 + windowChunks - 1) / windowChunks)
        #expect(try snapshots.read("paused.snap") == bytes)
    }

    /// A drain's write (`windowChunks`, the host's cores shared among its ranks) prepares that
    /// many chunks at a time, whatever the core count, and stores the same snapshot as a write
    /// with a window per core: the same index, every chunk reused.
    @Test func aWriteOfOneChunkAtATimeStoresTheSameSnapshot() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        let bytes = field(10_000, seed: 8)
        var windows = 0
        let alone = try snapshots.write("alone.snap", segments: [ChunkedSnapshots.Segment(bytes)], generation: 1,
                                        chunkBytes: 1000, windowChunks: 1) { windows += 1 }
        #expect(windows == 10)
        #expect(try snapshots.read("alone.snap") == bytes)
        let wide = try snapshots.write("wide.snap", segments: [ChunkedSnapshots.Segment(bytes)], generation: 2,
                                       chunkBytes: 1000, windowBytes: 4000)
        #expect(wide.index.chunks.map(\.hash) == alone.index.chunks.map(\.hash))
        #expect(wide.reusedCount == 10)
    }

    @Test func theKeptSnapshotsAreListedUnderTheChunkLock() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let snapshots = ChunkedSnapshots(store: store)
        let old = try snapshots.write("old.snap", bytes: field(4000, seed: 5), generation: 1, chunkBytes: 1000)
        let kept = try snapshots.write("new.snap", bytes: field(4000, seed: 6), generation: 2, reusable: [], chunkBytes: 1000)
        // While a write holds the lock, the kept snapshots are not even asked for: a write that
        // ends before the lock is taken has its index listed with them.
        let write = try #require(ChunkLock(store: store, exclusive: false, wait: true))
        var asked = 0
        let whileWriting = try snapshots.garbageCollect { asked += 1; return [] }
        write.release()
        #expect(whileWriting == nil && asked == 0, "nothing collected, and said so")
        // A listing that cannot be made (an index unreadable) collects nothing.
        let unlisted = try snapshots.garbageCollect { asked += 1; return nil }
        #expect(unlisted == 0 && asked == 1)
        #expect(try snapshots.read("old.snap") == field(4000, seed: 5))
        #expect(try snapshots.garbageCollect { [kept.index] } == old.index.chunks.count)
        #expect(try snapshots.read("new.snap") == field(4000, seed: 6))
    }

    @Test func indexRoundTripsAndRefusesDamage() throws {
        let index = SnapshotIndex(chunkBytes: 1 << 20, totalBytes: 5, chunks: [
            .init(hash: ContentHash(high: 1, low: 2), length: 3, storedBytes: 9),
            .init(hash: ContentHash(high: 3, low: 4), length: 2, storedBytes: 7, filter: .shuffle8),
        ])
        let bytes = index.encoded()
        #expect(try SnapshotIndex.decode(bytes, name: "x") == index)
        #expect(storageError { () throws(StorageError) in try SnapshotIndex.decode(Array(bytes.dropLast()), name: "x") }?.code == .corrupt)
        var newer = bytes
        newer[4] = 9
        #expect(storageError { () throws(StorageError) in try SnapshotIndex.decode(newer, name: "x") }?.code == .badFormat)
        var wrongTotal = bytes
        wrongTotal[12] = 6
        #expect(storageError { () throws(StorageError) in try SnapshotIndex.decode(wrongTotal, name: "x") }?.code == .corrupt)
        #expect("abc".utf8.withContiguousStorageIfAvailable { ContentHash(of: UnsafeRawBufferPointer($0)) }?.description.count == 32)
    }

    /// Version 1 indexes (fixed-size unfiltered chunks, no lengths) still read.
    @Test func versionOneIndexReads() throws {
        var bytes: [UInt8] = []
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        put(UInt32(0x4953_4C4C)); put(UInt16(1)); put(UInt32(4)); put(UInt64(10)); put(UInt32(3))
        for low in UInt64(1)...3 { put(UInt64(0)); put(low); put(UInt32(0)) }
        let index = try SnapshotIndex.decode(bytes, name: "v1")
        #expect(index.chunks.map(\.length) == [4, 4, 2])
        #expect(index.totalBytes == 10)
    }

    /// Segments are chunked apart: a header that grows does not shift the state's chunks.
    @Test func stateChunksSurviveAHeaderThatChangesLength() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        let state = field(8 * 4096, seed: 5)
        let first = try snapshots.write("a.snap", segments: [.init([1, 2, 3]), .init(state)], generation: 1, chunkBytes: 4096)
        let second = try snapshots.write("b.snap", segments: [.init([1, 2, 3, 4, 5]), .init(state)], generation: 2, chunkBytes: 4096)
        #expect(first.reusedCount == 0)
        #expect(second.reusedCount == 8, "every state chunk is reused")
        #expect(try snapshots.read("b.snap") == [1, 2, 3, 4, 5] + state)
    }

    /// Shuffled chunks round-trip, and identical chunks across snapshots are stored once.
    @Test func shuffledSegmentsRoundTripAndChunksAreSharedAcrossRanks() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let snapshots = ChunkedSnapshots(store: try folder.store())
        var doubles: [UInt8] = []
        for index in 0..<5000 {
            withUnsafeBytes(of: (2.0 + sin(Double(index) * 0.01)).bitPattern.littleEndian) { doubles += $0 }
        }
        doubles += [7, 7, 7]  // a tail that is not a whole value
        let rank0 = try snapshots.write("r0.snap", bytes: doubles, generation: 1, chunkBytes: 8192, filter: .shuffle8)
        #expect(rank0.index.chunks.allSatisfy { $0.filter == .shuffle8 })
        #expect(try snapshots.read("r0.snap") == doubles)
        let rank1 = try snapshots.write("r1.snap", bytes: doubles, generation: 1, chunkBytes: 8192, filter: .shuffle8)
        #expect(rank1.reusedCount == rank1.index.chunks.count)
        #expect(rank1.storedBytes == FileFormat.headerByteCount + rank1.index.encoded().count, "only the index is new")
        #expect(rank1.logicalBytes == doubles.count)
        // The numeric filter programs' arrays get, beside the older one (still read).
        let predicted = try snapshots.write("r2.snap", bytes: doubles, generation: 2, chunkBytes: 8192, filter: .delta2Shuffle8)
        #expect(predicted.index.chunks.allSatisfy { $0.filter == .delta2Shuffle8 })
        #expect(try snapshots.read("r2.snap") == doubles)
        #expect(try snapshots.read("r0.snap") == doubles)
    }

    /// A chunk damaged on both mirrors is written again by the next snapshot that holds it.
    @Test func nextSnapshotHealsALostChunk() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let snapshots = ChunkedSnapshots(store: store)
        let bytes = field(3000, seed: 6)
        let first = try snapshots.write("1.snap", bytes: bytes, generation: 1, chunkBytes: 1000)
        let chunk = snapshots.chunkName(first.index.chunks[2].hash)
        Disk.flipBit(store.path(chunk, on: .a), byte: 50)
        Disk.delete(store.path(chunk, on: .b))
        let second = try snapshots.write("2.snap", bytes: bytes, generation: 2, chunkBytes: 1000)
        #expect(second.reusedCount == 2)
        #expect(try snapshots.read("1.snap") == bytes)
    }
}

/// The write pipeline: many windows, chunks repeated within and across windows, chunks already
/// stored, and a mirror failing in the middle.
struct ChunkPipelineTests {
    private let chunkBytes = 1000

    /// `count` random bytes from a seeded generator.
    private func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(state: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// 25 chunks in windows of 3: chunk 20 repeats chunk 3 (an earlier window), chunk 22
    /// repeats chunk 21 (the same window), and chunks 5...9 were stored by an earlier snapshot.
    @Test func manyWindowsReuseWhatIsStoredAndReadBack() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let snapshots = ChunkedSnapshots(store: store)
        var bytes = randomBytes(25 * chunkBytes, seed: 11)
        bytes.replaceSubrange(20 * chunkBytes..<21 * chunkBytes, with: bytes[3 * chunkBytes..<4 * chunkBytes])
        bytes.replaceSubrange(22 * chunkBytes..<23 * chunkBytes, with: bytes[21 * chunkBytes..<22 * chunkBytes])
        let earlier = Array(bytes[5 * chunkBytes..<10 * chunkBytes])
        let stored = try snapshots.write("earlier.snap", bytes: earlier, generation: 1, chunkBytes: chunkBytes)

        let written = try snapshots.write("0.snap", segments: [.init(bytes)], generation: 2,
                                          chunkBytes: chunkBytes, windowBytes: 3 * chunkBytes)
        #expect(written.index.chunks.count == 25)
        #expect(written.reusedCount == 7, "5 stored before, 2 repeated")
        let storedBefore = Set(stored.index.chunks.map(\.hash))
        var counted = Set<ContentHash>()
        var expectedBytes = FileFormat.headerByteCount + written.index.encoded().count
        for chunk in written.index.chunks where !storedBefore.contains(chunk.hash) && counted.insert(chunk.hash).inserted {
            expectedBytes += FileFormat.headerByteCount + chunk.storedBytes
        }
        #expect(counted.count == 18)
        #expect(written.storedBytes == expectedBytes, "each new chunk and the index counted once")
        #expect(try snapshots.read("0.snap") == bytes)
        let names = snapshots.allChunkNames()
        #expect(names.count == 23)
        for name in names {
            #expect(Disk.bytes(store.path(name, on: .a)) == Disk.bytes(store.path(name, on: .b)), "\(name) differs")
        }
        #expect(temporaryFiles(in: folder.path).isEmpty)
    }

    /// Mirror B cannot take chunks: the write throws a typed error naming the file, writes no
    /// index, leaves no temporary file, and the earlier snapshot still reads.
    @Test func mirrorFailingMidwayWritesNoIndexAndKeepsTheEarlierSnapshot() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let snapshots = ChunkedSnapshots(store: store)
        let first = randomBytes(12 * chunkBytes, seed: 12)
        _ = try snapshots.write("1.snap", bytes: first, generation: 1, chunkBytes: chunkBytes)
        var second = first
        for index in stride(from: 0, to: second.count, by: 7) { second[index] ^= 0x5A }

        let chunksOnB = store.path(ChunkedSnapshots.folder, on: .b)
        let saved = folder.path + "/saved-chunks"
        try FileManager.default.moveItem(atPath: chunksOnB, toPath: saved)
        Disk.put([1], at: chunksOnB)  // a file where the folder should be
        let error = storageError { () throws(StorageError) in
            try snapshots.write("2.snap", segments: [.init(second)], generation: 2,
                                chunkBytes: chunkBytes, windowBytes: 3 * chunkBytes)
        }
        #expect(error != nil)
        #expect(error?.path.hasPrefix(chunksOnB) == true, "\(String(describing: error))")
        #expect(!store.exists("2.snap"))
        #expect(temporaryFiles(in: folder.path).isEmpty)

        try FileManager.default.removeItem(atPath: chunksOnB)
        try FileManager.default.moveItem(atPath: saved, toPath: chunksOnB)
        #expect(try snapshots.read("1.snap") == first)
    }

    private func temporaryFiles(in root: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: root)
        return (enumerator?.allObjects as? [String] ?? []).filter { path in
            path.split(separator: "/").last.map { $0.hasPrefix(".") && $0 != ChunkLock.fileName } ?? false
        }
    }
}
