import CZstd

/// Compression of snapshot bodies with zstd, and the byte shuffle that makes numeric state
/// compressible.
///
/// Raw float64 state barely compresses (ratio about 1.1 for a smooth field with noisy low bits):
/// its exponent and high mantissa bytes repeat, but they are interleaved with noisy low bytes.
/// `shuffle8` groups byte *k* of every 8-byte value together (as Blosc does), which puts the
/// repetitive bytes side by side; compress the shuffled bytes and `unshuffle8` after
/// decompressing.
package enum SnapshotCodec {
    /// Largest decompressed size `decompress` accepts by default (16 GiB): a frame claiming more
    /// is refused rather than allocated.
    package static let decompressedBytesMaxDefault = 1 << 34

    /// Compresses `bytes` into one zstd frame that records its content size.
    ///
    /// `level` is zstd's level (1 is fast, 19 is slow; negative levels are faster still).
    package static func compress(_ bytes: [UInt8], level: Int32 = 1) throws(StorageError) -> [UInt8] {
        try bytes.withUnsafeBytes { source in
            Result { () throws(StorageError) in try compress(source, level: level) }
        }.get()
    }

    /// Compresses the bytes of `source` into one zstd frame that records its content size.
    package static func compress(_ source: UnsafeRawBufferPointer, level: Int32 = 1) throws(StorageError) -> [UInt8] {
        let bound = ZSTD_compressBound(source.count)
        if ZSTD_isError(bound) != 0 {
            throw StorageError(.invalidArgument, path: "<snapshot>", message:
                "\(source.count) bytes are too many for one zstd frame")
        }
        var status = 0
        let compressed = [UInt8](unsafeUninitializedCapacity: max(bound, 1)) { buffer, initializedCount in
            status = ZSTD_compress(buffer.baseAddress, buffer.count, source.baseAddress, source.count, level)
            initializedCount = ZSTD_isError(status) != 0 ? 0 : status
        }
        if ZSTD_isError(status) != 0 {
            throw StorageError(.ioFailure, path: "<snapshot>", message: "zstd compress failed: \(errorName(status))")
        }
        return compressed
    }

    /// The content size a zstd frame declares, or nil if `bytes` is not a frame that records it.
    package static func contentSize(_ bytes: [UInt8]) -> Int? {
        let size = bytes.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        return size >= UInt64.max - 1 || size > UInt64(Int.max) ? nil : Int(size)
    }

    /// Decompresses one zstd frame produced by `compress`.
    ///
    /// Throws `.badFormat` if the input is not a zstd frame or does not record its content size,
    /// `.corrupt` if the frame is damaged or declares more than `decompressedBytesMax`.
    package static func decompress(
        _ bytes: [UInt8], decompressedBytesMax: Int = decompressedBytesMaxDefault
    ) throws(StorageError) -> [UInt8] {
        let contentSize = bytes.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        let sizeUnknown = UInt64.max  // ZSTD_CONTENTSIZE_UNKNOWN
        let sizeError = UInt64.max - 1  // ZSTD_CONTENTSIZE_ERROR
        if contentSize == sizeError {
            throw StorageError(.badFormat, path: "<snapshot>", message: "not a zstd frame")
        }
        if contentSize == sizeUnknown {
            throw StorageError(.badFormat, path: "<snapshot>", message: "zstd frame does not record its size")
        }
        if contentSize > UInt64(decompressedBytesMax) {
            throw StorageError(.corrupt, path: "<snapshot>", message:
                "zstd frame declares \(contentSize) bytes, over the \(decompressedBytesMax)-byte limit")
        }
        let expected = Int(contentSize)
        var status = 0
        let decompressed = bytes.withUnsafeBytes { source in
            [UInt8](unsafeUninitializedCapacity: max(expected, 1)) { buffer, initializedCount in
                status = ZSTD_decompress(buffer.baseAddress, expected, source.baseAddress, source.count)
                initializedCount = ZSTD_isError(status) != 0 ? 0 : min(status, expected)
            }
        }
        if ZSTD_isError(status) != 0 {
            throw StorageError(.corrupt, path: "<snapshot>", message: "zstd decompress failed: \(errorName(status))")
        }
        if status != expected {
            throw StorageError(.corrupt, path: "<snapshot>", message:
                "zstd frame gave \(status) bytes, its header says \(expected)")
        }
        return decompressed
    }

    /// Regroups bytes so that byte *k* of every 8-byte value lies in plane *k*: for
    /// `n = bytes.count / 8` values, output `[k * n + i]` = input `[i * 8 + k]`. The
    /// `bytes.count % 8` bytes at the end are copied unchanged.
    package static func shuffle8(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { shuffle8($0) }
    }

    /// `shuffle8` of the bytes of `source`.
    package static func shuffle8(_ source: UnsafeRawBufferPointer) -> [UInt8] {
        let valueCount = source.count / 8
        return [UInt8](unsafeUninitializedCapacity: source.count) { target, initializedCount in
            for plane in 0..<8 {
                let planeStart = plane * valueCount
                for index in 0..<valueCount {
                    target[planeStart + index] = source[index * 8 + plane]
                }
            }
            for index in (valueCount * 8)..<source.count {
                target[index] = source[index]
            }
            initializedCount = source.count
        }
    }

    /// Undoes `shuffle8`: `unshuffle8(shuffle8(x)) == x` for every length.
    package static func unshuffle8(_ bytes: [UInt8]) -> [UInt8] {
        let valueCount = bytes.count / 8
        return bytes.withUnsafeBufferPointer { source in
            [UInt8](unsafeUninitializedCapacity: bytes.count) { target, initializedCount in
                for plane in 0..<8 {
                    let planeStart = plane * valueCount
                    for index in 0..<valueCount {
                        target[index * 8 + plane] = source[planeStart + index]
                    }
                }
                for index in (valueCount * 8)..<bytes.count {
                    target[index] = source[index]
                }
                initializedCount = bytes.count
            }
        }
    }

    private static func errorName(_ code: Int) -> String {
        String(cString: ZSTD_getErrorName(code))
    }
}
