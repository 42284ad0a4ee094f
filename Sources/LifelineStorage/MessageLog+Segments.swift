import Foundation

/// The segment format, and how a log is recovered from what the two mirrors hold.
extension MessageLog {
    /// What the two copies of a log hold, read without repairing anything.
    package struct Inspection: Sendable {
        /// One line per problem: a copy missing, torn, damaged, or shorter than the other; a
        /// segment that does not continue the one before.
        package var problems: [String]
        /// Whether every segment exists on both mirrors, reads to its end and is byte-equal.
        package var isHealthy: Bool { problems.isEmpty }
        /// Whether records were lost: a segment of which no copy is whole (each missing, torn
        /// or damaged), or a segment that does not continue the one before. An append reaches
        /// B only after A is durable, so a crash tears one copy of the newest segment at most;
        /// a replay of a log that lost records would not reproduce what the rank delivered.
        package var recordsLost: Bool
        /// The records the log keeps when opened: `firstIndex..<nextIndex`.
        package var kept: Range<UInt64>
        /// Whether neither mirror has a segment (a log never opened, or deleted on both).
        package var isMissing: Bool
    }

    /// Reads every segment of the log `name` on both mirrors and says what opening it would
    /// keep and repair.
    package static func inspect(store: MirroredStore, name: String) throws(StorageError) -> Inspection {
        let folders = [Mirror.a, Mirror.b].map { store.root($0) + "/" + folder + "/" + name }
        let recovery = try recover(folders: folders)
        let start = recovery.segments.first?.firstIndex ?? 0
        let end = start + UInt64(recovery.segments.reduce(0) { $0 + $1.records.count })
        return Inspection(problems: recovery.problems, recordsLost: recovery.recordsLost, kept: start..<end,
                          isMissing: recovery.isMissing)
    }

    /// One segment as recovery decided it.
    struct RecoveredSegment {
        var firstIndex: UInt64
        var records: [[UInt8]]
        /// What it should hold, on both mirrors.
        var image: [UInt8]
        /// What each mirror holds now (nil: missing).
        var copies: [[UInt8]?]
    }

    /// What the mirrors hold, and what opening does with it.
    struct Recovery {
        /// The segments kept, oldest first, each continuing the one before.
        var segments: [RecoveredSegment] = []
        /// Segments dropped (after a gap): their first indexes.
        var dropped: [UInt64] = []
        var problems: [String] = []
        var recordsLost = false
        var isMissing = true
    }

    /// Reads both mirrors' segments and decides, per segment, the copy to keep: the longer
    /// valid one (A when equal). Segments are kept while each starts where the one before
    /// ends; from the first that does not (or that no mirror holds readable), the rest is
    /// dropped: a log keeps only a valid prefix.
    static func recover(folders: [String]) throws(StorageError) -> Recovery {
        var recovery = Recovery()
        let indexes = Set(folders.flatMap { PosixFile.entries($0).compactMap(segmentIndex) }).sorted()
        recovery.isMissing = indexes.isEmpty
        var expected: UInt64?
        var ended = false
        for index in indexes {
            let paths = folders.map { $0 + "/" + segmentName(index) }
            if ended {
                recovery.dropped.append(index)
                recovery.problems.append("\(paths[0]): segment \(index) follows records that are lost; dropped")
                continue
            }
            let parsed = try folders.map { folder throws(StorageError) in try parse(folder + "/" + segmentName(index), index: index) }
            let kept = chosen(parsed)
            guard kept.valid else {
                recovery.dropped.append(index)
                recovery.recordsLost = true
                for (mirror, found) in parsed.enumerated() {
                    recovery.problems.append("\(paths[mirror]): \(found.problem ?? "missing"); segment dropped")
                }
                ended = true
                continue
            }
            if let expected, kept.firstIndex != expected {
                recovery.dropped.append(index)
                recovery.recordsLost = true
                recovery.problems.append(
                    "\(paths[0]): segment \(index) does not continue the log, which ends at record \(expected); dropped")
                ended = true
                continue
            }
            let image = Self.image(firstIndex: kept.firstIndex, records: kept.records)
            let range = kept.firstIndex..<kept.firstIndex + UInt64(kept.records.count)
            for (mirror, found) in parsed.enumerated() where found.bytes != image {
                recovery.problems.append("\(paths[mirror]): \(describe(found, against: range))")
            }
            if !parsed.contains(where: { $0.bytes != nil && $0.valid && $0.problem == nil }) {
                recovery.recordsLost = true
            }
            recovery.segments.append(RecoveredSegment(firstIndex: kept.firstIndex, records: kept.records, image: image,
                                                      copies: parsed.map(\.bytes)))
            expected = range.upperBound
        }
        return recovery
    }

    /// One copy of a segment, parsed.
    struct ParsedSegment {
        var bytes: [UInt8]?
        var valid: Bool
        var firstIndex: UInt64
        var records: [[UInt8]]
        var problem: String?
    }

    /// The copy recovery keeps: the longer valid one (A when equal).
    private static func chosen(_ parsed: [ParsedSegment]) -> ParsedSegment {
        let index = parsed[1].records.count > parsed[0].records.count && parsed[1].valid ? 1 : 0
        return parsed[index].valid ? parsed[index] : parsed[1 - index]
    }

    /// One copy's problem, said against the records kept.
    private static func describe(_ found: ParsedSegment, against kept: Range<UInt64>) -> String {
        if let problem = found.problem { return problem }
        if found.bytes == nil { return "missing; the other mirror holds records \(kept.lowerBound)..<\(kept.upperBound)" }
        let held = found.firstIndex..<found.firstIndex + UInt64(found.records.count)
        return "holds records \(held.lowerBound)..<\(held.upperBound), the other mirror \(kept.lowerBound)..<\(kept.upperBound)"
    }

    /// The file name of the segment whose first record is `index`: 20 digits and `.seg`.
    static func segmentName(_ index: UInt64) -> String {
        let digits = String(index)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".seg"
    }

    /// The first index a segment file name gives, or nil for any other name.
    static func segmentIndex(_ fileName: String) -> UInt64? {
        guard fileName.hasSuffix(".seg"), fileName.count == 24 else { return nil }
        return UInt64(fileName.dropLast(4))
    }

    /// Parses one copy: its header (which must name `index`) and its records up to the first
    /// that is torn or fails its checksum.
    static func parse(_ path: String, index: UInt64) throws(StorageError) -> ParsedSegment {
        guard let data = FileManager.default.contents(atPath: path) else {
            return ParsedSegment(bytes: nil, valid: false, firstIndex: index, records: [], problem: nil)
        }
        let bytes = [UInt8](data)
        func invalid(_ problem: String) -> ParsedSegment {
            ParsedSegment(bytes: bytes, valid: false, firstIndex: index, records: [], problem: problem)
        }
        guard bytes.count >= headerBytes, Array(bytes[0..<4]) == magic else { return invalid("not a log segment (bad header)") }
        let version = UInt16(bytes[4]) | UInt16(bytes[5]) << 8
        guard version == Self.version else {
            return invalid("log format \(version) is not \(Self.version): another Lifeline wrote it")
        }
        guard load(UInt32.self, bytes, 16) == Checksum.crc32(bytes[0..<16]) else { return invalid("header checksum fails") }
        let firstIndex = load(UInt64.self, bytes, 8)
        guard firstIndex == index else { return invalid("header says record \(firstIndex), the file name \(index)") }
        var records: [[UInt8]] = []
        var offset = headerBytes
        var problem: String?
        while offset < bytes.count {
            guard bytes.count - offset >= 8 else { problem = "torn record header at byte \(offset)"; break }
            let length = Int(load(UInt32.self, bytes, offset))
            let checksum = load(UInt32.self, bytes, offset + 4)
            guard length < recordBytesMax, bytes.count - offset - 8 >= length else {
                problem = "torn record at byte \(offset)"
                break
            }
            let payload = bytes[offset + 8..<offset + 8 + length]
            guard Checksum.crc32(payload) == checksum else { problem = "record checksum fails at byte \(offset)"; break }
            records.append(Array(payload))
            offset += 8 + length
        }
        return ParsedSegment(bytes: bytes, valid: true, firstIndex: firstIndex, records: records,
                             problem: problem.map { "\($0); the tail is cut" })
    }

    /// A whole segment: header and records.
    static func image(firstIndex: UInt64, records: [[UInt8]]) -> [UInt8] {
        var bytes = magic
        bytes += [UInt8(version & 0xff), UInt8(version >> 8), 0, 0]
        withUnsafeBytes(of: firstIndex.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: Checksum.crc32(bytes).littleEndian) { bytes += $0 }
        bytes += [0, 0, 0, 0]
        for record in records { appendRecord(record, to: &bytes) }
        return bytes
    }

    static func appendRecord(_ payload: [UInt8], to bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { bytes += $0 }
        withUnsafeBytes(of: Checksum.crc32(payload).littleEndian) { bytes += $0 }
        bytes += payload
    }

    private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
