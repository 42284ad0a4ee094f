/// What a snapshot file holds: the list of chunks that, decompressed, unfiltered and put
/// together in order, make the snapshot's bytes.
///
/// Body layout (little-endian), version 2:
///
/// | field | type |
/// |---|---|
/// | magic `LLSI` | UInt32 |
/// | version (2) | UInt16 |
/// | reserved, 0 | UInt16 |
/// | nominal chunk size | UInt32 |
/// | total length | UInt64 |
/// | chunk count | UInt32 |
/// | per chunk: hash high, hash low, length, stored length, filter | UInt64, UInt64, UInt32, UInt32, UInt32 |
///
/// Version 1 (read, no longer written) had no reserved field and per chunk only the hash and
/// the stored length (0 when referenced); every chunk but the last was `chunk size` long and
/// unfiltered.
package struct SnapshotIndex: Sendable, Equatable {
    /// One chunk, in snapshot order.
    package struct Chunk: Sendable, Equatable {
        /// XXH3-128 of the chunk's bytes after its filter (what is compressed); names its file.
        package var hash: ContentHash
        /// Its length before compression, > 0.
        package var length: Int
        /// Its compressed length as stored (the file's body), or 0 if unknown (version 1).
        package var storedBytes: Int
        /// The filter applied before hashing and compressing.
        package var filter: ChunkFilter

        /// Creates a chunk entry.
        package init(hash: ContentHash, length: Int, storedBytes: Int, filter: ChunkFilter = .none) {
            self.hash = hash
            self.length = length
            self.storedBytes = storedBytes
            self.filter = filter
        }
    }

    static let magic: UInt32 = 0x4953_4C4C  // "LLSI"
    static let version: UInt16 = 2
    static let chunkEntryBytes = 28

    /// The nominal chunk size the writer used (a segment's last chunk may be shorter).
    package var chunkBytes: Int
    /// The snapshot's length: the sum of the chunks' lengths.
    package var totalBytes: Int
    /// Its chunks, in order.
    package var chunks: [Chunk]

    /// Creates an index.
    package init(chunkBytes: Int, totalBytes: Int, chunks: [Chunk]) {
        self.chunkBytes = chunkBytes
        self.totalBytes = totalBytes
        self.chunks = chunks
    }

    /// The body of the index file.
    package func encoded() -> [UInt8] {
        precondition(totalBytes == chunks.reduce(0) { $0 + $1.length }, "the chunks make up the snapshot")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24 + Self.chunkEntryBytes * chunks.count)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        put(Self.magic)
        put(Self.version)
        put(UInt16(0))
        put(UInt32(chunkBytes))
        put(UInt64(totalBytes))
        put(UInt32(chunks.count))
        for chunk in chunks {
            put(chunk.hash.high)
            put(chunk.hash.low)
            put(UInt32(chunk.length))
            put(UInt32(chunk.storedBytes))
            put(chunk.filter.rawValue)
        }
        return bytes
    }

    /// Decodes an index body (version 1 or 2); `name` labels errors.
    ///
    /// Throws `.badFormat` for another magic or version, `.corrupt` for a body that ends early,
    /// has stray bytes, an unknown filter, an empty chunk, or chunks that do not add up to the
    /// total length.
    package static func decode(_ bytes: [UInt8], name: String) throws(StorageError) -> SnapshotIndex {
        var reader = IndexReader(bytes: bytes, name: name)
        guard try reader.take(UInt32.self) == magic else {
            throw StorageError(.badFormat, path: name, message: "not a snapshot index (wrong magic)")
        }
        let version = try reader.take(UInt16.self)
        guard version == 1 || version == Self.version else {
            throw StorageError(.badFormat, path: name, message:
                "snapshot index format \(version), this build reads 1 and \(Self.version): a newer Lifeline wrote it")
        }
        if version == Self.version { _ = try reader.take(UInt16.self) }
        let chunkBytes = Int(try reader.take(UInt32.self))
        let totalBytes = Int(try reader.take(UInt64.self))
        let count = Int(try reader.take(UInt32.self))
        let entryBytes = version == 1 ? 20 : chunkEntryBytes
        guard count <= reader.remaining / entryBytes else {
            throw StorageError(.corrupt, path: name, message: "snapshot index claims \(count) chunks but ends early")
        }
        var chunks: [Chunk] = []
        chunks.reserveCapacity(count)
        for position in 0..<count {
            let hash = ContentHash(high: try reader.take(UInt64.self), low: try reader.take(UInt64.self))
            if version == 1 {
                let length = min(chunkBytes, totalBytes - position * chunkBytes)
                let stored = Int(try reader.take(UInt32.self))
                if length <= 0 { continue }  // version 1 wrote one empty chunk for an empty snapshot
                chunks.append(Chunk(hash: hash, length: length, storedBytes: stored))
                continue
            }
            let length = Int(try reader.take(UInt32.self))
            let stored = Int(try reader.take(UInt32.self))
            let filterRaw = try reader.take(UInt32.self)
            guard let filter = ChunkFilter(rawValue: filterRaw) else {
                throw StorageError(.corrupt, path: name, message: "chunk \(position) has unknown filter \(filterRaw)")
            }
            chunks.append(Chunk(hash: hash, length: length, storedBytes: stored, filter: filter))
        }
        guard reader.remaining == 0 else {
            throw StorageError(.corrupt, path: name, message: "\(reader.remaining) stray bytes after the snapshot index")
        }
        guard chunks.allSatisfy({ $0.length > 0 }), chunks.reduce(0, { $0 + $1.length }) == totalBytes else {
            throw StorageError(.corrupt, path: name, message: "chunk lengths do not add up to the total \(totalBytes)")
        }
        return SnapshotIndex(chunkBytes: chunkBytes, totalBytes: totalBytes, chunks: chunks)
    }
}

/// A byte filter applied to a chunk before hashing and compressing, undone after reading.
package enum ChunkFilter: UInt32, Sendable {
    /// The bytes as they are.
    case none = 0
    /// `SnapshotCodec.shuffle8`: byte planes of 8-byte values (what numeric arrays were
    /// written with before `delta2Shuffle8`; still read).
    case shuffle8 = 1
    /// `SnapshotCodec.delta2Shuffle8`: each 8-byte value less its linear prediction from the
    /// two before it, in byte planes (for float64 / int64 arrays).
    case delta2Shuffle8 = 2
}

/// Reads little-endian integers from an index body, throwing when it ends early.
private struct IndexReader {
    let bytes: [UInt8]
    let name: String
    var offset = 0

    var remaining: Int { bytes.count - offset }

    mutating func take<T: FixedWidthInteger>(_: T.Type) throws(StorageError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else {
            throw StorageError(.corrupt, path: name, message: "snapshot index ends early (at byte \(offset))")
        }
        defer { offset += size }
        return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
