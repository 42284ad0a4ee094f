/// Appends little-endian fixed-width values and byte runs to a growing array.
///
/// The wire and snapshot formats are built with this one writer so that every byte order and
/// length prefix is decided in one place.
package struct ByteWriter: Sendable {
    /// The bytes written so far.
    package private(set) var bytes: [UInt8]

    /// Starts an empty buffer with room for `capacity` bytes.
    package init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// Appends a fixed-width integer in little-endian order.
    package mutating func write<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// Appends a float64 by its bit pattern.
    package mutating func write(_ value: Double) { write(value.bitPattern) }

    /// Appends a length prefix (UInt64) and then the bytes.
    package mutating func writeCounted(_ run: some Collection<UInt8>) {
        write(UInt64(run.count))
        bytes.append(contentsOf: run)
    }

    /// Appends a UTF-8 string with a length prefix.
    package mutating func write(_ string: String) { writeCounted(Array(string.utf8)) }

    /// Appends bytes without a prefix.
    package mutating func writeRaw(_ run: some Collection<UInt8>) { bytes.append(contentsOf: run) }
}

/// Reads what a `ByteWriter` wrote; every read checks the remaining length first.
package struct ByteReader: Sendable {
    private let bytes: [UInt8]
    /// The index of the next byte to read.
    package private(set) var offset: Int

    /// Reads `bytes` from `offset`.
    package init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Whether every byte has been read.
    package var isAtEnd: Bool { offset == bytes.count }
    /// How many bytes are left.
    package var remainingCount: Int { bytes.count - offset }

    /// Reads a little-endian fixed-width integer.
    package mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(WireError) -> T {
        let size = MemoryLayout<T>.size
        guard remainingCount >= size else { throw WireError("input ends early: wanted \(size) bytes at offset \(offset)") }
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { target in
            bytes.withUnsafeBytes { source in
                target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + size]))
            }
        }
        offset += size
        return T(littleEndian: value)
    }

    /// Reads a float64 by its bit pattern.
    package mutating func readDouble() throws(WireError) -> Double { Double(bitPattern: try read(UInt64.self)) }

    /// Reads `count` bytes.
    package mutating func readRaw(_ count: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard count >= 0, remainingCount >= count else { throw WireError("input ends early: wanted \(count) bytes at offset \(offset)") }
        defer { offset += count }
        return bytes[offset..<offset + count]
    }

    /// Reads a length-prefixed byte run.
    package mutating func readCounted() throws(WireError) -> [UInt8] {
        let count = try read(UInt64.self)
        guard count <= UInt64(remainingCount) else { throw WireError("length \(count) at offset \(offset) runs past the end") }
        return Array(try readRaw(Int(count)))
    }

    /// Reads a length-prefixed UTF-8 string.
    package mutating func readString() throws(WireError) -> String {
        String(decoding: try readCounted(), as: UTF8.self)
    }
}
