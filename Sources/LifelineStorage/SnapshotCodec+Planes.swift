import CZstd
import Foundation

/// Planar bodies: a filtered chunk (`shuffle8`, `delta2Shuffle8`) stored one byte plane at a
/// time, each plane the way that pays for its time.
///
/// After the numeric filter, a float64 field's planes differ wildly: on heat2d's state the low
/// four planes are noise (8.0 bits of entropy per byte: zstd stores them as they are, after
/// looking for matches that are not there), plane 4 is nearly noise (its bytes are as good as
/// random, but rows of the field repeat: zstd keeps 56–68 % of it through long matches, at
/// 370–390 MB/s), and the high planes shrink to 3–17 %. One zstd frame over the whole chunk
/// spends most of its time on the planes it cannot shrink. Here each plane is classed by the
/// entropy of a sample (`entropyBits`): noise is stored raw; nearly-noise planes get zstd ten
/// levels faster than the chunk's level; the rest get the chunk's level. Measured on heat2d's
/// state (2 cores, zstd 1.5.4, level 1, zstd's part alone, 4 MiB pieces): one frame 1.655× at
/// 620–670 MB/s; planes with the nearly-noise plane four levels faster 1.629× at 1,390 MB/s,
/// six levels faster 1.615× at 1,480, ten levels faster 1.596× at 1,580 (plane 4 keeps 73–82 %
/// at 840 MB/s): 2 % of the ratio for 12 % of the time, which keeps filter and zstd together
/// over 1 GB/s on one core of the slower of the machines measured.
/// A plane that zstd would not shrink is stored raw.
///
/// Layout (little-endian): magic `LLP8`, version UInt16 (1), part count UInt16 (9: the eight
/// planes, then the `count % 8` bytes that follow them), content length UInt64; per part, its
/// stored length UInt32 and its encoding UInt32 (0 raw, 1 one zstd frame recording its size);
/// then the parts' stored bytes in order. A zstd frame starts with other bytes (`28 b5 2f fd`),
/// so `decompress` tells the two bodies apart, and a chunk stored either way reads the same.
extension SnapshotCodec {
    /// The magic of a planar body.
    static let planesMagic: [UInt8] = Array("LLP8".utf8)
    /// The planar body's format version.
    static let planesVersion: UInt16 = 1
    /// Magic, version, part count, content length.
    static let planesHeaderBytes = 16
    /// Stored length and encoding of one part.
    static let planesPartBytes = 8
    /// A plane's sample at or above this entropy (bits per byte) is noise: stored raw. Uniform
    /// random bytes measure 7.985 on the 12 KiB sample (the estimate falls short of 8 by about
    /// 255 / (2 · 12,288 · ln 2)); heat2d's plane 4, which zstd shrinks to 60 % by its matches,
    /// measures 7.89–7.91.
    static let noiseEntropyBits = 7.95
    /// A plane's sample at or above this entropy is nearly noise: zstd `nearNoiseLevelsFaster`
    /// levels faster.
    static let nearNoiseEntropyBits = 7.0
    /// How many levels faster than the chunk's a nearly-noise plane is compressed (see the
    /// type's comment for the measurements behind it).
    static let nearNoiseLevelsFaster: Int32 = 10
    /// Planes shorter than this are compressed at the chunk's level without being classed.
    static let planeClassedBytesMin = 16 << 10
    /// Chunks shorter than this are stored as one zstd frame (`compress`): for them nine frames
    /// cost more than they save.
    static let planesBytesMin = 128 << 10

    /// How one part of a planar body is stored.
    enum PartEncoding: UInt32 {
        /// Its bytes as they are.
        case raw = 0
        /// One zstd frame that records its size.
        case zstd = 1
    }

    /// Compresses a chunk filtered into byte planes (`shuffle8`, `delta2Shuffle8`) as a planar
    /// body: each plane raw or in a zstd frame of its own, at `level` or `nearNoiseLevelsFaster`
    /// levels faster (see the type's comment); a chunk under `planesBytesMin` as one zstd frame.
    /// `decompress` gives the bytes back either way.
    package static func compressPlanes(_ filtered: UnsafeRawBufferPointer, level: Int32 = 1) throws(StorageError) -> [UInt8] {
        guard filtered.count >= planesBytesMin else { return try compress(filtered, level: level) }
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        defer { ZSTD_freeCCtx(context) }
        let planeBytes = filtered.count / 8
        var parts: [Range<Int>] = (0..<8).map { $0 * planeBytes..<($0 + 1) * planeBytes }
        parts.append(8 * planeBytes..<filtered.count)
        let headerBytes = planesHeaderBytes + parts.count * planesPartBytes
        let capacity = headerBytes + parts.reduce(0) { $0 + max(ZSTD_compressBound($1.count), $1.count) }
        var failure: Int = 0
        let body = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initializedCount in
            guard let out = buffer.baseAddress, let source = filtered.baseAddress else {
                initializedCount = 0
                return
            }
            let raw = UnsafeMutableRawPointer(out)
            var offset = headerBytes
            for (index, part) in parts.enumerated() {
                let bytes = UnsafeRawBufferPointer(start: source + part.lowerBound, count: part.count)
                var encoding = PartEncoding.raw
                var stored = part.count
                if let partLevel = zstdLevel(for: bytes, level: level) {
                    let written = ZSTD_compressCCtx(context, out + offset, capacity - offset, bytes.baseAddress, bytes.count, partLevel)
                    if ZSTD_isError(written) != 0 {
                        failure = written
                        initializedCount = 0
                        return
                    }
                    if written < part.count {
                        encoding = .zstd
                        stored = written
                    }
                }
                if encoding == .raw, part.count > 0 { memcpy(out + offset, source + part.lowerBound, part.count) }
                let entry = planesHeaderBytes + index * planesPartBytes
                raw.storeBytes(of: UInt32(stored).littleEndian, toByteOffset: entry, as: UInt32.self)
                raw.storeBytes(of: encoding.rawValue.littleEndian, toByteOffset: entry + 4, as: UInt32.self)
                offset += stored
            }
            for (index, byte) in planesMagic.enumerated() { out[index] = byte }
            raw.storeBytes(of: planesVersion.littleEndian, toByteOffset: 4, as: UInt16.self)
            raw.storeBytes(of: UInt16(parts.count).littleEndian, toByteOffset: 6, as: UInt16.self)
            raw.storeBytes(of: UInt64(filtered.count).littleEndian, toByteOffset: 8, as: UInt64.self)
            initializedCount = offset
        }
        if failure != 0 {
            throw StorageError(.ioFailure, path: "<snapshot>", message: "zstd compress failed: \(errorName(failure))")
        }
        return body
    }

    /// The zstd level for one part of a planar body, or nil to store it raw (see the type's
    /// comment).
    static func zstdLevel(for part: UnsafeRawBufferPointer, level: Int32) -> Int32? {
        guard part.count >= planeClassedBytesMin else { return part.isEmpty ? nil : level }
        let entropy = entropyBits(part)
        if entropy >= noiseEntropyBits { return nil }
        return entropy >= nearNoiseEntropyBits ? level - nearNoiseLevelsFaster : level
    }

    /// The order-0 entropy, in bits per byte, of three 4 KiB samples of `bytes` (its start,
    /// middle and end) taken together.
    static func entropyBits(_ bytes: UnsafeRawBufferPointer) -> Double {
        let sample = 4096
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), !bytes.isEmpty else { return 0 }
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 256) { counts in
            counts.initialize(repeating: 0)
            var total = 0
            for start in [0, bytes.count / 2 - sample / 2, bytes.count - sample] where start >= 0 {
                let end = min(bytes.count, start + sample)
                for index in start..<end { counts[Int(base[index])] &+= 1 }
                total += end - start
            }
            var entropy = 0.0
            for count in counts where count > 0 {
                let share = Double(count) / Double(total)
                entropy -= share * log2(share)
            }
            return entropy
        }
    }

    /// Whether `bytes` begins as a planar body does.
    static func isPlanes(_ bytes: [UInt8]) -> Bool {
        bytes.starts(with: planesMagic)
    }

    /// The content length a planar body declares, or nil when its header is cut short.
    static func planesContentSize(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= planesHeaderBytes else { return nil }
        let size: UInt64 = FileFormat.readLittleEndian(bytes, at: 8)
        return size > UInt64(Int.max) ? nil : Int(size)
    }

    /// Decodes a planar body, checking every length against the header; throws `.badFormat`
    /// for another version and `.corrupt` for a body that does not add up or a damaged frame.
    static func decompressPlanes(_ bytes: [UInt8], decompressedBytesMax: Int) throws(StorageError) -> [UInt8] {
        func corrupt(_ message: String) -> StorageError { StorageError(.corrupt, path: "<snapshot>", message: message) }
        guard bytes.count >= planesHeaderBytes else { throw corrupt("planar body cut short in its header") }
        let version: UInt16 = FileFormat.readLittleEndian(bytes, at: 4)
        guard version == planesVersion else {
            throw StorageError(.badFormat, path: "<snapshot>", message: "planar body version \(version), this build reads \(planesVersion)")
        }
        let partCount = Int(FileFormat.readLittleEndian(bytes, at: 6) as UInt16)
        guard let contentSize = planesContentSize(bytes), contentSize <= decompressedBytesMax else {
            throw corrupt("planar body declares more than the \(decompressedBytesMax)-byte limit")
        }
        let planeBytes = contentSize / 8
        guard partCount == 9 else { throw corrupt("planar body has \(partCount) parts, not 9") }
        let headerBytes = planesHeaderBytes + partCount * planesPartBytes
        guard bytes.count >= headerBytes else { throw corrupt("planar body cut short in its part table") }
        var entries: [(stored: Int, encoding: PartEncoding, length: Int)] = []
        var storedTotal = headerBytes
        for index in 0..<partCount {
            let stored = Int(FileFormat.readLittleEndian(bytes, at: planesHeaderBytes + index * planesPartBytes) as UInt32)
            let code: UInt32 = FileFormat.readLittleEndian(bytes, at: planesHeaderBytes + index * planesPartBytes + 4)
            guard let encoding = PartEncoding(rawValue: code) else { throw corrupt("planar body part \(index) has encoding \(code)") }
            let length = index < 8 ? planeBytes : contentSize - 8 * planeBytes
            guard encoding == .zstd || stored == length else { throw corrupt("planar body raw part \(index) is \(stored) bytes, not \(length)") }
            entries.append((stored, encoding, length))
            storedTotal += stored
        }
        guard storedTotal == bytes.count else { throw corrupt("planar body is \(bytes.count) bytes, its parts say \(storedTotal)") }
        var failure: StorageError?
        let content = bytes.withUnsafeBytes { source in
            [UInt8](unsafeUninitializedCapacity: max(contentSize, 1)) { target, initializedCount in
                initializedCount = 0
                guard let out = target.baseAddress, let input = source.baseAddress else { return }
                var from = headerBytes
                var to = 0
                for (index, entry) in entries.enumerated() {
                    switch entry.encoding {
                    case .raw:
                        if entry.length > 0 { memcpy(out + to, input + from, entry.length) }
                    case .zstd:
                        let declared = ZSTD_getFrameContentSize(input + from, entry.stored)
                        guard declared == UInt64(entry.length) else {
                            failure = corrupt("planar body part \(index) declares \(declared) bytes, not \(entry.length)")
                            return
                        }
                        let written = ZSTD_decompress(out + to, entry.length, input + from, entry.stored)
                        guard ZSTD_isError(written) == 0, written == entry.length else {
                            failure = corrupt("planar body part \(index): zstd decompress failed")
                            return
                        }
                    }
                    from += entry.stored
                    to += entry.length
                }
                initializedCount = contentSize
            }
        }
        if let failure { throw failure }
        return content
    }
}
