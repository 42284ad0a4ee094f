import Testing
@testable import LifelineStorage

@Suite struct FileFormatTests {
    let body: [UInt8] = Array(0..<200).map { UInt8(truncatingIfNeeded: $0 &* 7) }

    @Test func roundTripKeepsKindGenerationAndBody() throws {
        for kind in [FileKind.snapshot, .manifest, .log, .other] {
            let encoded = FileFormat.encode(kind: kind, generation: 0xDEAD_BEEF_0001, body: body)
            #expect(encoded.count == FileFormat.headerByteCount + body.count)
            #expect(Array(encoded.prefix(4)) == Array("LLSF".utf8))
            let decoded = try FileFormat.decode(encoded)
            #expect(decoded.kind == kind)
            #expect(decoded.generation == 0xDEAD_BEEF_0001)
            #expect(decoded.body == body)
        }
        let empty = try FileFormat.decode(FileFormat.encode(kind: .other, generation: 0, body: []))
        #expect(empty.body.isEmpty)
    }

    @Test func eachCorruptionIsRejectedWithItsOwnMessage() {
        let good = FileFormat.encode(kind: .snapshot, generation: 3, body: body)
        var bodyFlip = good
        bodyFlip[FileFormat.headerByteCount + 17] ^= 0x01
        var headerFlip = good
        headerFlip[9] ^= 0x01  // inside the generation
        var wrongMagic = good
        wrongMagic[0] = UInt8(ascii: "X")
        var wrongVersion = good
        wrongVersion[4] = 2  // a future version, with a valid header checksum
        let crc = Checksum.crc32(wrongVersion[0..<36])
        for index in 0..<4 { wrongVersion[36 + index] = UInt8(truncatingIfNeeded: crc >> (8 * index)) }
        var trailing = good
        trailing.append(0)

        let cases: [(String, [UInt8], StorageError.Code)] = [
            ("body bit flip", bodyFlip, .corrupt),
            ("header bit flip", headerFlip, .corrupt),
            ("truncated body", Array(good.dropLast(5)), .corrupt),
            ("truncated header", Array(good.prefix(20)), .corrupt),
            ("wrong magic", wrongMagic, .badFormat),
            ("wrong version", wrongVersion, .badFormat),
            ("zero length", [], .corrupt),
            ("trailing bytes", trailing, .corrupt),
        ]
        var messages: Set<String> = []
        for (label, bytes, code) in cases {
            let error = storageError { () throws(StorageError) in try FileFormat.decode(bytes, path: "f") }
            #expect(error?.code == code, "\(label)")
            #expect(error?.path == "f", "\(label)")
            if let error { messages.insert(error.message) }
        }
        #expect(messages.count == cases.count, "every corruption has a distinct message: \(messages)")
    }
}
