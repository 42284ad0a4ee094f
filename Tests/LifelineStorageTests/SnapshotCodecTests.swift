import Foundation
import Testing
@testable import LifelineStorage

@Suite struct SnapshotCodecTests {
    static let seed: UInt64 = 20_240_611

    /// A smooth field with noise in the low mantissa bits, like real numeric state.
    func smoothField(count: Int) -> [UInt8] {
        var generator = SeededGenerator(state: Self.seed)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 8)
        for index in 0..<count {
            let value = sin(Double(index) * 0.001) + 2.0
            let noisy = Double(bitPattern: value.bitPattern ^ (generator.next() & 0xFFFF))
            withUnsafeBytes(of: noisy.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
        }
        return bytes
    }

    @Test func randomDataRoundTrips() throws {
        var generator = SeededGenerator(state: Self.seed)
        for count in [0, 1, 7, 4096, 100_003] {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let compressed = try SnapshotCodec.compress(bytes)
            #expect(try SnapshotCodec.decompress(compressed) == bytes, "count \(count), seed \(Self.seed)")
        }
    }

    @Test func smoothFloatDataRoundTripsShuffled() throws {
        let bytes = smoothField(count: 50_001)
        let compressed = try SnapshotCodec.compress(SnapshotCodec.shuffle8(bytes), level: 3)
        #expect(SnapshotCodec.unshuffle8(try SnapshotCodec.decompress(compressed)) == bytes)
    }

    @Test func shuffleIsInvertibleForEveryLength() {
        var generator = SeededGenerator(state: Self.seed)
        for count in [0, 1, 7, 8, 9, 15, 16, 803] {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let shuffled = SnapshotCodec.shuffle8(bytes)
            #expect(shuffled.count == count)
            #expect(SnapshotCodec.unshuffle8(shuffled) == bytes, "count \(count)")
            #expect(Array(shuffled.suffix(count % 8)) == Array(bytes.suffix(count % 8)), "remainder untouched")
        }
        // Plane layout: [k * n + i] = [i * 8 + k].
        let values: [UInt8] = Array(0..<16)
        #expect(SnapshotCodec.shuffle8(values) == [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15])
    }

    @Test func shuffledSmoothDataCompressesSmaller() throws {
        let bytes = smoothField(count: 200_000)
        let plain = try SnapshotCodec.compress(bytes)
        let shuffled = try SnapshotCodec.compress(SnapshotCodec.shuffle8(bytes))
        #expect(shuffled.count < plain.count, "shuffled \(shuffled.count) vs plain \(plain.count)")
    }

    @Test func theNumericFilterIsInvertibleForEveryLengthAndValue() {
        var generator = SeededGenerator(state: Self.seed)
        for count in [0, 1, 7, 8, 9, 15, 16, 24, 803, 4096] {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let filtered = bytes.withUnsafeBytes { SnapshotCodec.delta2Shuffle8($0) }
            #expect(filtered.count == count)
            #expect(SnapshotCodec.undelta2Unshuffle8(filtered) == bytes, "count \(count), seed \(Self.seed)")
            #expect(Array(filtered.suffix(count % 8)) == Array(bytes.suffix(count % 8)), "remainder untouched")
        }
        // Extremes wrap and come back: the residual of UInt64.max after 0, 0 is UInt64.max.
        var extremes: [UInt8] = []
        for value: UInt64 in [.max, 0, .max, 1, .max - 1, 1 << 63, 0, 42] { withUnsafeBytes(of: value.littleEndian) { extremes += $0 } }
        #expect(SnapshotCodec.undelta2Unshuffle8(extremes.withUnsafeBytes { SnapshotCodec.delta2Shuffle8($0) }) == extremes)
        // A line of integers (3, 5, 7, …) leaves residuals 3, −1 (wrapped), then zeros.
        var line: [UInt8] = []
        for index in 0..<4 { withUnsafeBytes(of: UInt64(3 + 2 * index).littleEndian) { line += $0 } }
        let residuals = SnapshotCodec.unshuffle8(line.withUnsafeBytes { SnapshotCodec.delta2Shuffle8($0) })
        let words = stride(from: 0, to: residuals.count, by: 8).map { offset in
            residuals[offset..<offset + 8].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        #expect(words == [3, UInt64.max, 0, 0])
    }

    @Test func theNumericFilterCompressesASmoothFieldSmallerThanShuffleAlone() throws {
        let bytes = smoothField(count: 200_000)
        let shuffled = try SnapshotCodec.compress(SnapshotCodec.shuffle8(bytes))
        let predicted = try SnapshotCodec.compress(bytes.withUnsafeBytes { SnapshotCodec.delta2Shuffle8($0) })
        #expect(predicted.count < shuffled.count, "delta2 \(predicted.count) vs shuffle \(shuffled.count)")
    }

    @Test func damagedFramesAreRejected() throws {
        let notZstd = storageError { () throws(StorageError) in try SnapshotCodec.decompress([1, 2, 3, 4, 5, 6, 7, 8]) }
        #expect(notZstd?.code == .badFormat)
        var frame = try SnapshotCodec.compress(smoothField(count: 1000))
        frame.removeLast(frame.count / 2)
        let truncated = storageError { () throws(StorageError) in try SnapshotCodec.decompress(frame) }
        #expect(truncated?.code == .corrupt)
    }

    // MARK: Planar bodies

    /// `bytes` filtered (`delta2Shuffle8`) and stored as a planar body.
    func planar(_ bytes: [UInt8], level: Int32 = 1) throws -> (filtered: [UInt8], body: [UInt8]) {
        let filtered = bytes.withUnsafeBytes { SnapshotCodec.delta2Shuffle8($0) }
        return (filtered, try filtered.withUnsafeBytes { raw in try SnapshotCodec.compressPlanes(raw, level: level) })
    }

    /// The encodings of a planar body's nine parts, read from its part table.
    func partEncodings(_ body: [UInt8]) -> [UInt32] {
        (0..<9).map { FileFormat.readLittleEndian(body, at: SnapshotCodec.planesHeaderBytes + $0 * SnapshotCodec.planesPartBytes + 4) }
    }

    @Test func planarBodiesRoundTripForEveryLength() throws {
        // Below `planesBytesMin` a chunk is one zstd frame; above it, planes and a tail of
        // every length from 0 to 7 bytes.
        for count in [0, 1, 9, 4096, SnapshotCodec.planesBytesMin - 1, SnapshotCodec.planesBytesMin,
                      SnapshotCodec.planesBytesMin + 3, 300_007, 1 << 20] {
            let bytes = Array(smoothField(count: count / 8 + 1).prefix(count))
            let (filtered, body) = try planar(bytes)
            #expect(SnapshotCodec.isPlanes(body) == (count >= SnapshotCodec.planesBytesMin), "count \(count)")
            #expect(SnapshotCodec.contentSize(body) == count, "count \(count)")
            #expect(try SnapshotCodec.decompress(body) == filtered, "count \(count), seed \(Self.seed)")
        }
    }

    @Test func noisePlanesAreStoredRawAndTheRestCompressed() throws {
        // A smooth field whose low 16 bits are noise: after the filter, planes 0 and 1 are
        // noise (stored raw), the high planes nearly constant (compressed).
        let (filtered, body) = try planar(smoothField(count: 1 << 17))
        let encodings = partEncodings(body)
        #expect(encodings[0] == 0 && encodings[1] == 0, "noise planes raw: \(encodings)")
        #expect(encodings[6] == 1 && encodings[7] == 1, "smooth planes compressed: \(encodings)")
        #expect(body.count < filtered.count * 6 / 8, "body \(body.count) of \(filtered.count)")
        // Random bytes: every plane raw, the body no longer than the header over the bytes.
        var generator = SeededGenerator(state: Self.seed)
        let random = (0..<(1 << 18)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let (randomFiltered, randomBody) = try planar(random)
        #expect(partEncodings(randomBody).prefix(8).allSatisfy { $0 == 0 }, "seed \(Self.seed)")
        #expect(randomBody.count == randomFiltered.count + SnapshotCodec.planesHeaderBytes + 9 * SnapshotCodec.planesPartBytes)
        #expect(try SnapshotCodec.decompress(randomBody) == randomFiltered)
    }

    @Test func planarBodiesLoseLittleAgainstOneFrame() throws {
        let bytes = smoothField(count: 1 << 18)
        let (filtered, body) = try planar(bytes)
        let frame = try SnapshotCodec.compress(filtered)
        #expect(Double(body.count) <= Double(frame.count) * 1.05, "planar \(body.count) vs one frame \(frame.count)")
    }

    @Test func damagedPlanarBodiesAreRejected() throws {
        let (_, body) = try planar(smoothField(count: 1 << 17))
        func code(_ bytes: [UInt8]) -> StorageError.Code? {
            storageError { () throws(StorageError) in _ = try SnapshotCodec.decompress(bytes) }?.code
        }
        #expect(code(Array(body.prefix(10))) == .corrupt, "cut in the header")
        #expect(code(Array(body.prefix(40))) == .corrupt, "cut in the part table")
        #expect(code(Array(body.dropLast(1))) == .corrupt, "cut in the parts")
        var version = body
        version[4] = 9
        #expect(code(version) == .badFormat, "a newer version")
        var raw = body
        raw[SnapshotCodec.planesHeaderBytes] &+= 1  // part 0's stored length, raw: no longer its plane's
        #expect(code(raw) == .corrupt)
        var encoding = body
        encoding[SnapshotCodec.planesHeaderBytes + 4] = 7
        #expect(code(encoding) == .corrupt, "an unknown encoding")
        var frame = body
        frame[frame.count - 20] ^= 0xFF  // inside the last plane's zstd frame
        #expect(code(frame) == .corrupt || (try? SnapshotCodec.decompress(frame)) != (try? SnapshotCodec.decompress(body)),
                "a damaged frame fails or decodes to other bytes (which the chunk's hash then refuses)")
        var huge = body
        for index in 8..<16 { huge[index] = 0xFF }  // declares more than any limit
        #expect(code(huge) == .corrupt)
    }
}
