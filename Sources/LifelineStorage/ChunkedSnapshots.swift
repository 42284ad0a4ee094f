/// Incremental snapshots: a snapshot is cut into chunks, each named by the XXH3-128 of its bytes
/// and stored once (zstd-compressed, mirrored) under `chunks/ab/<hash>.chunk`; the snapshot
/// itself is a small index listing its chunks. A chunk the rank's previous committed snapshot
/// already holds is referenced, not written again.
///
/// Index body (little-endian): magic `LLSI`, version UInt16 (1), chunk size UInt32, total
/// length UInt64, chunk count UInt32, then per chunk its hash (high UInt64, low UInt64) and its
/// stored (compressed) length UInt32.
package struct ChunkedSnapshots: Sendable {
    /// The default chunk size: 1 MiB (small enough that a local change rewrites little, large
    /// enough that zstd compresses well and the index stays small).
    package static let chunkBytesDefault = 1 << 20
    private static let magic: UInt32 = 0x4953_4C4C  // "LLSI"
    private static let version: UInt16 = 1
    /// The folder of the chunks under each root.
    package static let folder = "chunks"

    /// One chunk of an index.
    package struct Chunk: Sendable, Equatable {
        /// The hash of its uncompressed bytes.
        package var hash: ContentHash
        /// Its compressed length as stored.
        package var storedBytes: UInt32
    }

    /// What a snapshot's index says.
    package struct Index: Sendable, Equatable {
        /// The chunk size used.
        package var chunkBytes: Int
        /// The snapshot's length.
        package var totalBytes: Int
        /// Its chunks, in order.
        package var chunks: [Chunk]
    }

    /// What writing a snapshot did.
    package struct Written: Sendable, Equatable {
        /// The index written.
        package var index: Index
        /// Bytes newly stored on one mirror (new compressed chunks and the index).
        package var storedBytes: Int
        /// Chunks referenced from an earlier snapshot instead of written.
        package var reusedCount: Int
    }

    /// The mirrored store the chunks and indexes live in.
    package let store: MirroredStore

    /// Chunked snapshots in `store`.
    package init(store: MirroredStore) { self.store = store }

    /// The store-relative name of a chunk.
    package func chunkName(_ hash: ContentHash) -> String {
        let hex = hash.description
        return "\(Self.folder)/\(hex.prefix(2))/\(hex).chunk"
    }

    /// Writes `bytes` as the snapshot `name`: chunks not in `reusable` (the chunks of the
    /// rank's previous committed snapshot, which no garbage collection removes while that line
    /// is kept) are compressed and written, then the index. Durable on both mirrors on return.
    package func write(
        _ name: String, bytes: [UInt8], generation: UInt64, reusable: Set<ContentHash>,
        chunkBytes: Int = chunkBytesDefault, level: Int32 = 1
    ) throws(StorageError) -> Written {
        precondition(chunkBytes > 0)
        var chunks: [Chunk] = []
        var storedBytes = 0
        var reusedCount = 0
        var written = Set<ContentHash>()
        var start = 0
        while start < bytes.count || (bytes.isEmpty && chunks.isEmpty && start == 0) {
            let end = min(bytes.count, start + chunkBytes)
            let piece = Array(bytes[start..<end])
            let hash = piece.withUnsafeBytes { ContentHash(of: $0) }
            if reusable.contains(hash) || written.contains(hash) {
                let stored = reusable.contains(hash) ? UInt32(0) : chunks.first { $0.hash == hash }!.storedBytes
                chunks.append(Chunk(hash: hash, storedBytes: stored))
                reusedCount += 1
            } else {
                let compressed = try SnapshotCodec.compress(piece, level: level)
                try store.write(chunkName(hash), kind: .snapshot, generation: generation, body: compressed)
                chunks.append(Chunk(hash: hash, storedBytes: UInt32(compressed.count)))
                storedBytes += compressed.count
                written.insert(hash)
            }
            start = end
            if bytes.isEmpty { break }
        }
        let index = Index(chunkBytes: chunkBytes, totalBytes: bytes.count, chunks: chunks)
        let body = Self.encode(index)
        try store.write(name, kind: .snapshot, generation: generation, body: body)
        return Written(index: index, storedBytes: storedBytes + body.count, reusedCount: reusedCount)
    }

    /// Reads a snapshot's index.
    package func index(_ name: String) throws(StorageError) -> Index {
        let file = try store.read(name)
        return try Self.decode(file.body, name: name)
    }

    /// Reads a whole snapshot, checking every chunk's hash (a chunk damaged on one mirror is
    /// repaired from the other by the store; one damaged on both is an error naming it).
    package func read(_ name: String) throws(StorageError) -> [UInt8] {
        let index = try index(name)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(index.totalBytes)
        for chunk in index.chunks {
            let chunkFile = chunkName(chunk.hash)
            let piece = try SnapshotCodec.decompress(try store.read(chunkFile).body)
            guard piece.withUnsafeBytes({ ContentHash(of: $0) }) == chunk.hash else {
                throw StorageError(.corrupt, path: chunkFile, message: "chunk content does not match its hash")
            }
            bytes += piece
        }
        guard bytes.count == index.totalBytes else {
            throw StorageError(.corrupt, path: name, message: "snapshot is \(bytes.count) bytes, its index says \(index.totalBytes)")
        }
        return bytes
    }

    /// Removes the chunks no index in `keptIndexes` references. Call only after the manifest
    /// naming the kept lines is durable.
    @discardableResult
    package func garbageCollect(keptIndexes: [Index]) throws(StorageError) -> Int {
        let referenced = Set(keptIndexes.flatMap { $0.chunks.map { chunkName($0.hash) } })
        var removed = 0
        for prefix in store.list(Self.folder) {
            for file in store.list(Self.folder + "/" + prefix) where file.hasSuffix(".chunk") {
                let name = Self.folder + "/" + prefix + "/" + file
                if !referenced.contains(name) {
                    try store.remove(name)
                    removed += 1
                }
            }
        }
        return removed
    }

    static func encode(_ index: Index) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(22 + 20 * index.chunks.count)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        put(magic)
        put(version)
        put(UInt32(index.chunkBytes))
        put(UInt64(index.totalBytes))
        put(UInt32(index.chunks.count))
        for chunk in index.chunks {
            put(chunk.hash.high)
            put(chunk.hash.low)
            put(chunk.storedBytes)
        }
        return bytes
    }

    static func decode(_ bytes: [UInt8], name: String) throws(StorageError) -> Index {
        var offset = 0
        func take<T: FixedWidthInteger>(_: T.Type) throws(StorageError) -> T {
            let size = MemoryLayout<T>.size
            guard bytes.count - offset >= size else {
                throw StorageError(.badFormat, path: name, message: "snapshot index ends early")
            }
            defer { offset += size }
            return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        guard try take(UInt32.self) == magic else { throw StorageError(.badFormat, path: name, message: "not a snapshot index") }
        let version = try take(UInt16.self)
        guard version == Self.version else {
            throw StorageError(.badFormat, path: name, message: "snapshot index format \(version) is not \(Self.version): a newer Lifeline wrote it")
        }
        let chunkBytes = Int(try take(UInt32.self))
        let totalBytes = Int(try take(UInt64.self))
        let count = Int(try take(UInt32.self))
        guard count <= (bytes.count - offset) / 20 else { throw StorageError(.badFormat, path: name, message: "snapshot index claims \(count) chunks") }
        var chunks: [Chunk] = []
        chunks.reserveCapacity(count)
        for _ in 0..<count {
            let high = try take(UInt64.self)
            let low = try take(UInt64.self)
            chunks.append(Chunk(hash: ContentHash(high: high, low: low), storedBytes: try take(UInt32.self)))
        }
        guard offset == bytes.count else { throw StorageError(.badFormat, path: name, message: "stray bytes after the snapshot index") }
        return Index(chunkBytes: chunkBytes, totalBytes: totalBytes, chunks: chunks)
    }
}
