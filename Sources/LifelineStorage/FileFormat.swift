/// The layout of every file Lifeline stores: a 40-byte header followed by the body.
///
/// Header, all integers little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `LLSF` |
/// | 4 | 2 | format version, 1 |
/// | 6 | 2 | kind (`FileKind`) |
/// | 8 | 8 | generation |
/// | 16 | 8 | body length in bytes |
/// | 24 | 4 | zlib crc32 of the body |
/// | 28 | 4 | reserved, 0 |
/// | 32 | 4 | flags, 0 |
/// | 36 | 4 | zlib crc32 of bytes 0..<36 |
///
/// `decode` accepts exactly what `encode` produces and rejects anything else with a
/// `StorageError` whose message says which check failed.
package enum FileFormat {
    /// Size of the header in bytes.
    package static let headerByteCount = 40
    /// The four magic bytes, "LLSF".
    package static let magic: [UInt8] = Array("LLSF".utf8)
    /// The format version this build writes and reads.
    package static let formatVersion: UInt16 = 1

    /// Returns header + body for a file of `kind` at `generation`.
    package static func encode(kind: FileKind, generation: UInt64, body: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerByteCount + body.count)
        bytes.append(contentsOf: magic)
        appendLittleEndian(formatVersion, to: &bytes)
        appendLittleEndian(kind.rawValue, to: &bytes)
        appendLittleEndian(generation, to: &bytes)
        appendLittleEndian(UInt64(body.count), to: &bytes)
        appendLittleEndian(Checksum.crc32(body), to: &bytes)
        appendLittleEndian(UInt32(0), to: &bytes)  // reserved
        appendLittleEndian(UInt32(0), to: &bytes)  // flags
        appendLittleEndian(Checksum.crc32(bytes[0..<36]), to: &bytes)
        precondition(bytes.count == headerByteCount, "header layout is 40 bytes")
        bytes.append(contentsOf: body)
        return bytes
    }

    /// Checks `bytes` and returns what `encode` was given.
    ///
    /// Rejects, each with its own message: an empty file, a file shorter than the header, wrong
    /// magic, another format version (`.badFormat`), a header checksum mismatch, nonzero
    /// reserved fields, an unknown kind, a body shorter or longer than the header says, a body
    /// checksum mismatch (`.corrupt`). `path` only labels the error.
    package static func decode(
        _ bytes: [UInt8], path: String = "<memory>"
    ) throws(StorageError) -> (kind: FileKind, generation: UInt64, body: [UInt8]) {
        if bytes.isEmpty {
            throw StorageError(.corrupt, path: path, message: "file is empty (0 bytes)")
        }
        if bytes.count < headerByteCount {
            throw StorageError(.corrupt, path: path, message:
                "file is \(bytes.count) bytes, shorter than the \(headerByteCount)-byte header")
        }
        if Array(bytes[0..<4]) != magic {
            throw StorageError(.badFormat, path: path, message: "wrong magic bytes (expected LLSF)")
        }
        let version: UInt16 = readLittleEndian(bytes, at: 4)
        if version != formatVersion {
            throw StorageError(.badFormat, path: path, message:
                "format version \(version), this build reads version \(formatVersion)")
        }
        let headerCRC: UInt32 = readLittleEndian(bytes, at: 36)
        if Checksum.crc32(bytes[0..<36]) != headerCRC {
            throw StorageError(.corrupt, path: path, message: "header checksum mismatch")
        }
        let reserved: UInt32 = readLittleEndian(bytes, at: 28)
        let flags: UInt32 = readLittleEndian(bytes, at: 32)
        if reserved != 0 || flags != 0 {
            throw StorageError(.badFormat, path: path, message:
                "unknown header flags \(flags) / reserved \(reserved)")
        }
        let kindRaw: UInt16 = readLittleEndian(bytes, at: 6)
        guard let kind = FileKind(rawValue: kindRaw) else {
            throw StorageError(.badFormat, path: path, message: "unknown file kind \(kindRaw)")
        }
        let generation: UInt64 = readLittleEndian(bytes, at: 8)
        let bodyLength: UInt64 = readLittleEndian(bytes, at: 16)
        let actualLength = UInt64(bytes.count - headerByteCount)
        if actualLength < bodyLength {
            throw StorageError(.corrupt, path: path, message:
                "truncated: body is \(actualLength) bytes, header says \(bodyLength)")
        }
        if actualLength > bodyLength {
            throw StorageError(.corrupt, path: path, message:
                "trailing bytes: body is \(actualLength) bytes, header says \(bodyLength)")
        }
        let bodyCRC: UInt32 = readLittleEndian(bytes, at: 24)
        let body = bytes[headerByteCount...]
        if Checksum.crc32(body) != bodyCRC {
            throw StorageError(.corrupt, path: path, message: "body checksum mismatch")
        }
        return (kind, generation, Array(body))
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func readLittleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int) -> T {
        precondition(offset + MemoryLayout<T>.size <= bytes.count, "read inside the header")
        var value: T = 0
        for index in (0..<MemoryLayout<T>.size).reversed() {
            value = (value << 8) | T(bytes[offset + index])
        }
        return value
    }
}
