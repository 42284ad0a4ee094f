#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Foundation
import Synchronization

/// Incremental snapshots: a snapshot is cut into chunks, each named by the XXH3-128 of its
/// (filtered) bytes and stored once, zstd-compressed and mirrored, as `chunks/ab/<hash>.chunk`;
/// the snapshot file itself is a small `SnapshotIndex` listing its chunks.
///
/// A chunk whose file already exists and reads intact (both copies checked, a bad copy
/// repaired) is referenced, not written again: so a rank writes only what changed since its
/// previous snapshot, and identical chunks of different ranks are stored once. A chunk that
/// exists but no longer reads is written again, which heals it.
///
/// Contract with garbage collection: `garbageCollect` removes every chunk no kept index
/// references, so it must not run while a snapshot is being written (the supervisor runs it
/// after a commit and before it asks for the next checkpoint). Between the two, every chunk on
/// disk is either referenced by a committed line or garbage of an aborted round, and a write
/// that references it makes it live again at its own commit.
package struct ChunkedSnapshots: Sendable {
    /// The default chunk size: 4 MiB. Measured on a noisy float64 field shuffled per chunk
    /// (zstd level 1): ratio 1.43 at 256 KiB, 1.52 at 1 MiB, 1.57 at 4 MiB; and through the
    /// whole snapshot path (64 MiB–1 GiB, same run): 4 MiB chunks wrote 10–20 % faster than
    /// 1 MiB (a quarter of the files, fsyncs and renames). The price: a local change rewrites
    /// 4 MiB (about 2.7 MB compressed) where 1 MiB chunks would rewrite 1. `--chunk-kib`
    /// chooses another size.
    package static let chunkBytesDefault = 4 << 20
    /// The smallest chunk size the runtime accepts (`--chunk-kib`).
    package static let chunkBytesMin = 4 << 10
    /// A window of the write pipeline (`ChunkPipeline`): chunks prepared at once, in parallel,
    /// and then written to each mirror as one batch; 8 MiB of them, and at least one per core.
    /// Measured from 4 to 16 MiB: 4 MiB paid one more round of fsyncs per 4 MiB; 16 MiB was no
    /// faster than 8 and held twice the memory.
    package static let windowBytesDefault = 8 << 20
    /// The default zstd level: 1 (level 3 gained 1–3% ratio at about half the speed).
    package static let levelDefault: Int32 = 1
    /// The zstd levels the runtime accepts (`--zstd-level`): zstd's fast negative levels down
    /// to −7, and up to its slowest, 19 (20–22 need more memory than a snapshot should).
    package static let levelRange: ClosedRange<Int32> = -7...19
    /// The largest chunk size accepted (the index stores lengths as UInt32).
    package static let chunkBytesMax = 1 << 30
    /// The folder of the chunks under each root.
    package static let folder = "chunks"
    /// The index type (an earlier name).
    package typealias Index = SnapshotIndex

    /// A run of a snapshot's bytes, cut into chunks on its own (so that the chunks of a large
    /// state do not shift when a small header before it changes length).
    package struct Segment: Sendable {
        /// The bytes the segment lies in: an array (shared, not copied, by segments cut from
        /// it), or a level-1 copy's program state read in place.
        package enum Bytes: Sendable {
            case array([UInt8])
            case mapped(MappedCopy)

            /// How many bytes there are.
            package var count: Int {
                switch self {
                case .array(let bytes): bytes.count
                case .mapped(let copy): copy.state.count
                }
            }

            /// `body` over the bytes.
            package func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
                switch self {
                case .array(let bytes): try bytes.withUnsafeBytes(body)
                case .mapped(let copy): try body(copy.state)
                }
            }
        }

        /// The bytes the segment lies in.
        package var bytes: Bytes
        /// The segment's part of `bytes`.
        package var range: Range<Int>
        /// The filter applied to each of its chunks.
        package var filter: ChunkFilter

        /// The whole of `bytes` as a segment, filtered with `filter`.
        package init(_ bytes: [UInt8], filter: ChunkFilter = .none) {
            self.init(.array(bytes), range: bytes.indices, filter: filter)
        }

        /// The part `range` of `bytes` as a segment, filtered with `filter`.
        package init(_ bytes: [UInt8], range: Range<Int>, filter: ChunkFilter = .none) {
            self.init(.array(bytes), range: range, filter: filter)
        }

        /// The part `range` of `bytes` as a segment, filtered with `filter`.
        package init(_ bytes: Bytes, range: Range<Int>, filter: ChunkFilter = .none) {
            precondition(range.lowerBound >= 0 && range.upperBound <= bytes.count, "a segment lies within its bytes")
            self.bytes = bytes
            self.range = range
            self.filter = filter
        }
    }

    /// What writing a snapshot did.
    package struct Written: Sendable, Equatable {
        /// The index written.
        package var index: SnapshotIndex
        /// Bytes newly stored on one mirror: the compressed chunks written and the index file.
        package var storedBytes: Int
        /// The snapshot's uncompressed length.
        package var logicalBytes: Int { index.totalBytes }
        /// Chunks referenced instead of written (already stored, or repeated in this snapshot).
        package var reusedCount: Int
    }

    /// The mirrored store the chunks and indexes live in.
    package let store: MirroredStore

    /// Chunked snapshots in `store`.
    package init(store: MirroredStore) { self.store = store }

    /// The store-relative name of a chunk: `chunks/ab/abcdef….chunk`.
    package func chunkName(_ hash: ContentHash) -> String {
        let hex = hash.description
        return "\(Self.folder)/\(hex.prefix(2))/\(hex).chunk"
    }

    /// Writes `segments`, in order, as the snapshot `name`: the new chunks, compressed in
    /// parallel and written in batches (each batch to mirror A, verified, then to mirror B; see
    /// `ChunkPipeline`), then the index. Durable and verified on both mirrors when it returns; if it
    /// throws, the index was not written (or not on both mirrors) and the snapshot must not be
    /// committed.
    ///
    /// `chunkBytes` must be in 1...`chunkBytesMax`, and a multiple of 8 when a segment is
    /// shuffled. `generation` labels the index file (the round); chunk files carry
    /// `chunkGeneration`. `windowBytes` sets the pipeline's window (at least one chunk per core),
    /// unless `windowChunks` sets it in chunks: a background write that shares the host's cores
    /// with others (a drain, beside the other ranks' drains) compresses that many at a time.
    /// `beforeWindow` is called before each window is prepared: a background write that must
    /// give way to more urgent work waits there.
    package func write(
        _ name: String, segments: [Segment], generation: UInt64,
        chunkBytes: Int = chunkBytesDefault, level: Int32 = levelDefault, windowBytes: Int = windowBytesDefault,
        windowChunks: Int? = nil, beforeWindow: () -> Void = {}
    ) throws(StorageError) -> Written {
        precondition((1...Self.chunkBytesMax).contains(chunkBytes), "chunk size in 1...\(Self.chunkBytesMax)")
        // Held shared until the index is durable: chunk collection (exclusive) waits its turn,
        // so a chunk this write references, new or reused, is never deleted under it.
        // A partner's folder (mirror B kept on another host) must be locked too, and stay
        // locked throughout: else its host's collection could remove a chunk this write reuses,
        // and the line would hold one copy of it. Then the write fails (mirror B's failure).
        let lock = ChunkLock(store: store, exclusive: false, wait: true)
        let remote = store.remote.flatMap { store.mirrors.contains($0.mirror) ? $0 : nil }
        if let remote, lock?.holdsRemote != true {
            lock?.release()
            throw StorageError(.ioFailure, path: remote.folder.location, message: "cannot take the chunk lock of the partner's folder")
                .on(remote.mirror)
        }
        let written: Written
        do throws(StorageError) {
            var pipeline = ChunkPipeline(snapshots: self, segments: segments, level: level)
            let windowChunks = windowChunks.map { max(1, $0) } ?? max(ProcessInfo.processInfo.activeProcessorCount, windowBytes / chunkBytes)
            try pipeline.run(ChunkPipeline.sources(of: segments, chunkBytes: chunkBytes), windowChunks: windowChunks, beforeWindow: beforeWindow)
            let index = SnapshotIndex(chunkBytes: chunkBytes, totalBytes: pipeline.totalBytes, chunks: pipeline.chunks)
            let body = index.encoded()
            try store.write(name, kind: .snapshot, generation: generation, body: body)
            written = Written(index: index, storedBytes: pipeline.storedBytes + FileFormat.headerByteCount + body.count,
                              reusedCount: pipeline.reusedCount)
        } catch {
            lock?.release()
            throw error
        }
        if lock?.release() == false, let remote { try healAfterLapse(written.index, remote: remote) }
        return written
    }

    /// The partner's chunk lock lapsed during a write that `index` names (the keeper the
    /// connection reached went, and another took the lock again for a new connection): a
    /// collection of the partner's folder may have run in between and removed a chunk the
    /// write reused. Once the index is on the partner, no later collection removes its chunks
    /// (a snapshot newer than the manifest is kept with them), so under the lock taken afresh
    /// (after any collection under way) every chunk it names that the partner lacks is copied
    /// there from this host's mirror. Throws, as the partner's failure, when that fails or the
    /// lock lapses again.
    private func healAfterLapse(_ index: SnapshotIndex, remote: MirroredStore.Remote) throws(StorageError) {
        let lapsed = StorageError(.ioFailure, path: remote.folder.location, message:
            "the partner's chunk lock lapsed during the write (its connection ended), and its chunks could not be checked again")
            .on(remote.mirror)
        guard let lock = ChunkLock(store: store, exclusive: false, wait: true) else { throw lapsed }
        guard lock.holdsRemote else {
            lock.release()
            throw lapsed
        }
        let local = remote.mirror == .a ? Mirror.b : Mirror.a
        do throws(StorageError) {
            for hash in Set(index.chunks.map(\.hash)) {
                let name = chunkName(hash)
                guard try !remote.folder.isRegularFile(name) else { continue }
                guard let bytes = try PosixFile.readAll(store.root(local) + "/" + name, dropCache: false) else {
                    throw StorageError(.corrupt, path: name, message: "a chunk the snapshot reused is on neither host")
                }
                try remote.folder.write([FileToWrite(name, encoded: bytes)])
            }
        } catch {
            lock.release()
            throw error.on(remote.mirror)
        }
        guard lock.release() else { throw lapsed }
    }

    /// Writes `bytes` as one segment (see `write(_:segments:generation:chunkBytes:level:)`).
    ///
    /// `reusable` is accepted for callers that track the chunks of the rank's committed
    /// snapshot; it changes nothing, since every chunk already stored and intact is reused.
    package func write(
        _ name: String, bytes: [UInt8], generation: UInt64, reusable: Set<ContentHash> = [],
        chunkBytes: Int = chunkBytesDefault, level: Int32 = levelDefault, filter: ChunkFilter = .none
    ) throws(StorageError) -> Written {
        try write(name, segments: [Segment(bytes, filter: filter)], generation: generation,
                  chunkBytes: chunkBytes, level: level)
    }

    /// Reads a snapshot's index (repairing a bad copy).
    package func index(_ name: String) throws(StorageError) -> SnapshotIndex {
        let file = try store.read(name)
        guard file.kind == .snapshot else {
            throw StorageError(.badFormat, path: name, message: "file kind is \(file.kind), not snapshot")
        }
        return try SnapshotIndex.decode(file.body, name: name)
    }

    /// Reads a whole snapshot, checking every chunk: its file (both copies, a bad copy
    /// repaired), its length and its hash.
    ///
    /// Chunks are read, checked and decompressed on every core, each into its place in the
    /// result. Throws the error of the first chunk (in snapshot order) that failed: `.lost`
    /// naming the chunk when both copies are damaged or missing, `.corrupt` when it
    /// decompresses to other bytes than its name says.
    package func read(_ name: String) throws(StorageError) -> [UInt8] {
        let index = try index(name)
        var starts: [Int] = []
        starts.reserveCapacity(index.chunks.count)
        var end = 0
        for chunk in index.chunks {
            starts.append(end)
            end += chunk.length
        }
        precondition(end == index.totalBytes, "decode checked that the chunks add up")
        let offsets = starts
        let failures = Mutex<[(position: Int, error: StorageError)]>([])
        let bytes = [UInt8](unsafeUninitializedCapacity: index.totalBytes) { buffer, initializedCount in
            let target = DisjointWrites(buffer)
            DispatchQueue.concurrentPerform(iterations: index.chunks.count) { position in
                let chunk = index.chunks[position]
                do throws(StorageError) {
                    let piece = try readChunk(chunk)
                    target.copy(piece, to: offsets[position])
                } catch {
                    target.zero(offsets[position]..<offsets[position] + chunk.length)
                    failures.withLock { $0.append((position, error)) }
                }
            }
            initializedCount = index.totalBytes
        }
        if let first = failures.withLock({ $0.min { $0.position < $1.position } }) { throw first.error }
        return bytes
    }

    /// Reads one chunk and checks it; returns its unfiltered bytes.
    package func readChunk(_ chunk: SnapshotIndex.Chunk) throws(StorageError) -> [UInt8] {
        let name = chunkName(chunk.hash)
        let file: StoredFile
        do {
            file = try store.read(name)
        } catch where error.code == .notFound {
            throw StorageError(.lost, path: name, message: "chunk listed by a snapshot index is missing on both mirrors")
        }
        guard file.kind == .snapshot else {
            throw StorageError(.badFormat, path: name, message: "file kind is \(file.kind), not snapshot")
        }
        let piece: [UInt8]
        do {
            piece = try SnapshotCodec.decompress(file.body, decompressedBytesMax: chunk.length)
        } catch {
            throw StorageError(error.code, path: name, message: error.message)
        }
        guard piece.count == chunk.length, piece.withUnsafeBytes({ ContentHash(of: $0) }) == chunk.hash else {
            throw StorageError(.corrupt, path: name, message: "chunk content does not match its name (hash)")
        }
        switch chunk.filter {
        case .none: return piece
        case .shuffle8: return SnapshotCodec.unshuffle8(piece)
        case .delta2Shuffle8: return SnapshotCodec.undelta2Unshuffle8(piece)
        }
    }

    /// Removes the chunks no index in `keptIndexes` references, and returns how many. Call
    /// only after the manifest naming the kept lines is durable, and never during a write.
    ///
    /// Snapshot writes may run in other processes (independent checkpoints): collection takes
    /// the chunk lock exclusively and, when a write holds it, collects nothing this time.
    @discardableResult
    package func garbageCollect(keptIndexes: [SnapshotIndex]) throws(StorageError) -> Int {
        try garbageCollect { keptIndexes } ?? 0
    }

    /// Removes the chunks no index that `kept` returns references, and returns how many; nil
    /// when a write held the chunk lock (nothing was collected: try again later), 0 when
    /// `kept` returns nil. `kept` is asked under the chunk lock: a snapshot whose write ended
    /// between the caller's look at the store and the lock (a rank's drain, an independent
    /// checkpoint) has its index there by then, and keeps its chunks.
    @discardableResult
    package func garbageCollect(keeping kept: () -> [SnapshotIndex]?) throws(StorageError) -> Int? {
        guard let lock = ChunkLock(store: store, exclusive: true, wait: false) else { return nil }
        defer { lock.release() }
        guard let keptIndexes = kept() else { return 0 }
        let referenced = Set(keptIndexes.flatMap { $0.chunks.map { chunkName($0.hash) } })
        var removed = 0
        for name in allChunkNames() where !referenced.contains(name) {
            try store.remove(name)
            removed += 1
        }
        return removed
    }

    /// The names of every chunk file on either mirror, sorted.
    package func allChunkNames() -> [String] {
        var names: [String] = []
        for prefix in store.list(Self.folder) {
            for file in store.list(Self.folder + "/" + prefix) where file.hasSuffix(".chunk") {
                names.append(Self.folder + "/" + prefix + "/" + file)
            }
        }
        return names
    }

    /// The stored length of chunk `name` if its file reads intact on the mirrors the store
    /// writes (a bad copy repaired), else nil: a chunk whose repair failed is held by one
    /// mirror only, and is written again rather than referenced.
    func intactStoredBytes(_ name: String, length: Int) -> Int? {
        guard store.exists(name), let file = try? store.read(name), file.kind == .snapshot,
              file.repaired.count == file.problems.count,
              SnapshotCodec.contentSize(file.body) == length else { return nil }
        return file.body.count
    }
}

extension ChunkedSnapshots {
    /// The generation every chunk file carries. A chunk is named by its content and never
    /// changes, so all its copies are alike whoever writes them: two ranks writing the same
    /// chunk at once (independent checkpoints) write the same bytes, and each one's read-back
    /// holds whichever rename came last.
    package static let chunkGeneration: UInt64 = 1
}

/// A buffer that several threads fill, each its own range (`ChunkedSnapshots.read`).
private struct DisjointWrites: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<UInt8>

    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) { self.buffer = buffer }

    /// Copies `bytes` to `offset...`; the range must be this caller's alone.
    func copy(_ bytes: [UInt8], to offset: Int) {
        precondition(offset >= 0 && offset + bytes.count <= buffer.count, "a chunk lies within the snapshot")
        bytes.withUnsafeBufferPointer { source in
            _ = UnsafeMutableBufferPointer(rebasing: buffer[offset..<offset + bytes.count]).initialize(from: source)
        }
    }

    /// Fills `range` with zeros; the range must be this caller's alone.
    func zero(_ range: Range<Int>) {
        UnsafeMutableBufferPointer(rebasing: buffer[range]).initialize(repeating: 0)
    }
}

/// An advisory lock (`flock`) on the file `.chunks.lock` in root A: snapshot writes hold it
/// shared, chunk collection exclusive. Only an ordering between processes on one host; the
/// lock file itself holds nothing, is hidden from listings, and `verify` leaves it alone.
struct ChunkLock {
    /// The lock file's name in each root it is taken in.
    static let fileName = ".chunks.lock"
    private let fds: [Int32]
    /// A partner's folder whose lock this holder took (shared), released with the rest.
    private let remote: (any RemoteFolder)?
    /// Whether the lock of a partner's folder is held.
    var holdsRemote: Bool { remote != nil }

    /// Takes the lock; nil when `wait` is false and another holder excludes it, or when a lock
    /// file cannot be opened or locked (then collection is skipped).
    ///
    /// The lock lives in root A; with a node-local mirror, in both roots (each host's folder,
    /// and the shared one that every host's writers reach), always A first so that two takers
    /// never wait on each other crosswise; a store confined to its host's folder locks that one;
    /// a partner's folder (mirror B on another host) is locked by its keeper, over the connection.
    /// Collection (exclusive) takes every one or none. A write (shared) takes every one it can:
    /// a root whose lock cannot be taken (a failed disk, a file system without `flock`) leaves
    /// the others locked, so that a host's collection still waits for the write.
    init?(store: MirroredStore, exclusive: Bool, wait: Bool) {
        var mirrors: [Mirror] = store.nodeLocal == nil ? [.a] : store.visibleMirrors
        if let remote = store.remote, !mirrors.contains(remote.mirror), store.visibleMirrors.contains(remote.mirror) {
            mirrors.append(remote.mirror)
        }
        var fds: [Int32] = []
        var lockedRemote: (any RemoteFolder)?
        for mirror in mirrors {
            // A partner's folder: its keeper takes the lock for this connection. Collection
            // happens where the folder is, never through a connection.
            if let remote = store.remote, remote.mirror == mirror {
                if !exclusive, remote.folder.holdChunkLock() { lockedRemote = remote.folder }
                continue
            }
            let fd = open(store.root(mirror) + "/" + Self.fileName, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            if fd >= 0, Self.lock(fd, exclusive: exclusive, wait: wait) {
                fds.append(fd)
                continue
            }
            if fd >= 0 { close(fd) }
            if exclusive {
                Self.release(fds)
                return nil
            }
        }
        guard !fds.isEmpty || lockedRemote != nil else { return nil }
        self.fds = fds
        self.remote = lockedRemote
    }

    private static func lock(_ fd: Int32, exclusive: Bool, wait: Bool) -> Bool {
        var operation = exclusive ? LOCK_EX : LOCK_SH
        if !wait { operation |= LOCK_NB }
        while flock(fd, operation) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }

    private static func release(_ fds: [Int32]) {
        for fd in fds {
            flock(fd, LOCK_UN)
            close(fd)
        }
    }

    /// Releases the lock; false when a partner's lock lapsed while it was held.
    @discardableResult
    func release() -> Bool {
        Self.release(fds)
        return remote?.releaseChunkLock() ?? true
    }
}
