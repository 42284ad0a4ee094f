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

    /// Reads every segment of the log `name` on the mirrors `store` writes (both, unless one
    /// has failed: its copy is then stale and not looked at) and says what opening it would
    /// keep and repair.
    package static func inspect(store: MirroredStore, name: String) throws(StorageError) -> Inspection {
        try inspect(store: store, name: name, reading: store.logMirrorsRead)
    }

    /// `inspect` of mirror A's copy alone, when the store reads A (nil when it does not; its
    /// problems name B's copy as missing). An append reaches B only after A is durable, so A
    /// alone, with no record lost and long enough, proves a log fit to replay, at half the
    /// reading; B is needed only when it does not.
    package static func inspectFirstMirror(store: MirroredStore, name: String) throws(StorageError) -> Inspection? {
        guard store.logMirrorsRead[0] else { return nil }
        return try inspect(store: store, name: name, reading: [true, false])
    }

    private static func inspect(store: MirroredStore, name: String, reading: [Bool]) throws(StorageError) -> Inspection {
        inspection(try recover(folders: Folder.of(store, name: name), reading: reading,
                               expectedMissing: store.logMirrorsExpectedMissing))
    }

    /// `inspect` of the one copy of log `name` that `folder` keeps (a partner's folder: the copy
    /// another host keeps of a log written on its partner), read only: what a rank that copies
    /// it and opens it keeps (`adopt`).
    package static func inspect(keptBy folder: any RemoteFolder, name: String) throws(StorageError) -> Inspection {
        let copy = Folder.remote(folder, MessageLog.folder + "/" + name)
        return inspection(try recover(folders: [copy, copy], reading: [true, false], expectedMissing: [false, true]))
    }

    private static func inspection(_ recovery: Recovery) -> Inspection {
        let start = recovery.segments.first?.firstIndex ?? 0
        let end = start + UInt64(recovery.segments.reduce(0) { $0 + $1.records.count })
        return Inspection(problems: recovery.problems, recordsLost: recovery.recordsLost, kept: start..<end,
                          isMissing: recovery.isMissing)
    }

    /// The records the log `name` keeps, read without repairing or writing anything (`lifeline
    /// replay` reads a finished or stopped run): the index of the first, the records' bytes,
    /// and whether records were lost (see `Inspection.recordsLost`).
    package static func readRecords(store: MirroredStore, name: String) throws(StorageError)
        -> (first: UInt64, records: [[UInt8]], recordsLost: Bool) {
        let recovery = try recover(folders: Folder.of(store, name: name), reading: store.logMirrorsRead,
                                   expectedMissing: store.logMirrorsExpectedMissing)
        return (recovery.segments.first?.firstIndex ?? 0, recovery.segments.flatMap(\.records), recovery.recordsLost)
    }

    /// Deletes the segments of log `name` on `stale` (a mirror that failed and takes writes
    /// again) that lie before the first segment on the other mirror: the log was trimmed past
    /// them while `stale` was not written, and left there they would read as the log's start.
    /// Returns how many it deleted.
    package static func pruneStale(store: MirroredStore, name: String, on stale: Mirror) throws(StorageError) -> Int {
        let folders = Folder.of(store, name: name)
        let (kept, pruned) = stale == .a ? (folders[1], folders[0]) : (folders[0], folders[1])
        guard let first = try kept.entries().compactMap(segmentID).map(\.index).min() else { return 0 }
        var deleted = 0
        for id in try pruned.entries().compactMap(segmentID) where id.index < first {
            if try pruned.remove(segmentName(id)) { deleted += 1 }
        }
        return deleted
    }

    /// A segment file's identity: the index of its first record, and the incarnation of the
    /// rank process that wrote it (0 for a log whose writer names no incarnation).
    struct SegmentID: Hashable, Comparable {
        var index: UInt64
        var incarnation: UInt32

        static func < (lhs: SegmentID, rhs: SegmentID) -> Bool {
            (lhs.index, lhs.incarnation) < (rhs.index, rhs.incarnation)
        }
    }

    /// One segment as recovery decided it.
    struct RecoveredSegment {
        var firstIndex: UInt64
        var incarnation: UInt32
        var generation: UInt16
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
        /// Segments dropped (after a gap, or fenced off).
        var dropped: [SegmentID] = []
        /// The newest incarnation that wrote a segment, kept or not.
        var newestIncarnation: UInt32 = 0
        var problems: [String] = []
        var recordsLost = false
        var isMissing = true
    }

    /// Reads both mirrors' segments and decides what the log is.
    ///
    /// Per segment, the copy kept is the one of the higher generation, else the one that
    /// continues the other further, else A's when it is whole (A is written first, so it is
    /// never older than B, and a cut shortens it first), else the longer valid one. Every cut or
    /// restart of the log writes its new last segment with a higher generation before it
    /// deletes what follows, so the segments of the highest generation G are the log's end:
    /// older-generation segments after them, or not leading up to them, belong to a part of
    /// the log that was discarded (a crash came before their deletion) and are dropped without
    /// loss. Otherwise segments are kept while each starts where the one before ends; a
    /// segment no mirror holds readable, or a gap, ends the log there and counts as lost
    /// records: a log keeps only a valid prefix.
    ///
    /// Fencing comes first. A segment's name carries the incarnation of the rank process that
    /// wrote it, and a process opening the log starts a segment of its own at the log's end (see
    /// `MessageLog.init`): an incarnation's first segment claims the log from its index on. What
    /// an older incarnation wrote from a newer one's claim on — a process left running on a cut
    /// host after its replacement started — is not the log's: such segments are dropped, and
    /// one that runs past the claim is cut there. Generations then compare within an
    /// incarnation: a newer incarnation's segments are newer than any older one's.
    ///
    /// `reading`: per mirror, whether its copy is read; one that is not (a failed mirror, whose
    /// copy is stale) counts as missing. `expectedMissing`: per mirror, whether a copy it does
    /// not hold is no problem (a node-local mirror read from another host).
    static func recover(
        folders: [Folder], reading: [Bool] = [true, true], expectedMissing: [Bool] = [false, false]
    ) throws(StorageError) -> Recovery {
        var recovery = Recovery()
        let read = folders.indices.filter { reading[$0] }
        var listed: [Set<SegmentID>] = folders.map { _ in [] }
        for mirror in read { listed[mirror] = Set(try folders[mirror].entries().compactMap(segmentID)) }
        let found = listed.reduce(Set<SegmentID>()) { $0.union($1) }.sorted()
        recovery.isMissing = found.isEmpty
        recovery.newestIncarnation = found.map(\.incarnation).max() ?? 0
        var claims: [UInt32: UInt64] = [:]
        for id in found { claims[id.incarnation] = min(claims[id.incarnation] ?? .max, id.index) }
        /// Where incarnations newer than `incarnation` took the log over (nil: none did).
        func claim(after incarnation: UInt32) -> (index: UInt64, by: UInt32)? {
            claims.filter { $0.key > incarnation }.min { ($0.value, $0.key) < ($1.value, $1.key) }.map { ($0.value, $0.key) }
        }
        var ids: [SegmentID] = []
        for id in found {
            guard let newer = claim(after: id.incarnation), id.index >= newer.index else {
                ids.append(id)
                continue
            }
            recovery.dropped.append(id)
            for mirror in read where listed[mirror].contains(id) {
                recovery.problems.append("\(folders[mirror].path)/\(segmentName(id)): dropped: incarnation \(newer.by) took the log over at record \(newer.index)")
            }
        }
        var parsed: [[ParsedSegment]] = []
        for id in ids {
            let newer = claim(after: id.incarnation)
            parsed.append(try folders.indices.map { mirror throws(StorageError) in
                guard reading[mirror] else {
                    return ParsedSegment(bytes: nil, valid: false, firstIndex: id.index, incarnation: id.incarnation, records: [], problem: nil)
                }
                let path = folders[mirror].path + "/" + segmentName(id)
                var copy = try parse(folders[mirror], id: id)
                if let newer, copy.valid, copy.end > newer.index {
                    copy.records.removeLast(Int(copy.end - newer.index))
                    recovery.problems.append("\(path): records from \(newer.index) on cut: incarnation \(newer.by) took the log over there")
                }
                return copy
            })
        }
        let kept = parsed.map(chosen)
        let paths = ids.map { id in folders.map { $0.path + "/" + segmentName(id) } }
        let newest = kept.filter(\.valid).map(\.rank).max() ?? 0
        guard let first = kept.firstIndex(where: { $0.valid && $0.rank == newest }) else {
            for position in ids.indices {
                drop(position, lost: true, reason: "no mirror holds it readable", paths: paths, parsed: parsed, into: &recovery)
            }
            return recovery
        }
        // Back from the first segment of the newest generation, while the segments lead up to it.
        var start = first
        while start > 0, kept[start - 1].valid, kept[start - 1].end == kept[start].firstIndex {
            start -= 1
        }
        for position in 0..<start {
            let damaged = position == start - 1 && !kept[position].valid
            drop(position, lost: damaged, reason: damaged ? "no mirror holds it readable"
                    : "it belongs to a discarded part of the log", paths: paths, parsed: parsed, into: &recovery)
        }
        // Forward, while each continues the one before.
        var ended = false
        for position in start..<ids.count {
            let segment = kept[position]
            let continues = position == start || segment.firstIndex == kept[position - 1].end
            if !ended, segment.valid, continues, position <= first || segment.rank == newest {
                keep(position, kept: segment, paths: paths, parsed: parsed, expectedMissing: expectedMissing, into: &recovery)
                continue
            }
            if segment.valid && segment.rank < newest {
                drop(position, lost: false, reason: "it belongs to a discarded part of the log",
                     paths: paths, parsed: parsed, into: &recovery)
            } else {
                drop(position, lost: !ended, reason: segment.valid ? "it does not continue the log" : "no mirror holds it readable",
                     paths: paths, parsed: parsed, into: &recovery)
            }
            ended = true
        }
        return recovery
    }

    private static func keep(
        _ position: Int, kept: ParsedSegment, paths: [[String]], parsed: [[ParsedSegment]], expectedMissing: [Bool],
        into recovery: inout Recovery
    ) {
        // A whole copy, read to its end, with the header's reserved bytes zero and no record cut
        // off (a claim by a newer incarnation), is its own image: spare encoding (and
        // checksumming) every record again.
        let imageBytes = kept.records.reduce(headerBytes) { $0 + 8 + $1.count }
        let image = if let bytes = kept.bytes, kept.isWhole, bytes.count == imageBytes, bytes[(headerBytes - 4)..<headerBytes].allSatisfy({ $0 == 0 }) {
            bytes
        } else {
            Self.image(firstIndex: kept.firstIndex, generation: kept.generation, records: kept.records)
        }
        let range = kept.firstIndex..<kept.end
        for (mirror, found) in parsed[position].enumerated()
        where !holds(found.bytes, image) && !(found.bytes == nil && expectedMissing[mirror]) {
            recovery.problems.append("\(paths[position][mirror]): \(describe(found, against: range))")
        }
        if !parsed[position].contains(where: \.isWhole) { recovery.recordsLost = true }
        recovery.segments.append(RecoveredSegment(firstIndex: kept.firstIndex, incarnation: kept.incarnation, generation: kept.generation,
                                                  records: kept.records, image: image, copies: parsed[position].map(\.bytes)))
    }

    private static func drop(
        _ position: Int, lost: Bool, reason: String, paths: [[String]], parsed: [[ParsedSegment]], into recovery: inout Recovery
    ) {
        recovery.dropped.append(SegmentID(index: parsed[position][0].firstIndex, incarnation: parsed[position][0].incarnation))
        if lost { recovery.recordsLost = true }
        for (mirror, found) in parsed[position].enumerated() where found.bytes != nil {
            recovery.problems.append("\(paths[position][mirror]): \(found.problem.map { $0 + "; " } ?? "")dropped: \(reason)")
        }
    }

    /// Whether a copy (nil: missing) holds exactly `image` (compared with `memcmp`).
    static func holds(_ copy: [UInt8]?, _ image: [UInt8]) -> Bool {
        copy.map { bytesEqual($0, image) } ?? false
    }

    /// One copy of a segment, parsed.
    struct ParsedSegment {
        var bytes: [UInt8]?
        var valid: Bool
        var firstIndex: UInt64
        var incarnation: UInt32 = 0
        var generation: UInt16 = 0
        var records: [[UInt8]]
        var problem: String?

        /// Its order among segments: a newer incarnation's first, then the higher generation.
        var rank: UInt64 { UInt64(incarnation) << 16 | UInt64(generation) }
        /// The index after its last record.
        var end: UInt64 { firstIndex + UInt64(records.count) }
        /// Present, readable to its end.
        var isWhole: Bool { bytes != nil && valid && problem == nil }
    }

    /// The copy recovery keeps: of two valid copies, the one of the higher generation (a cut
    /// writes its new segment with a higher one), else the one whose records continue the
    /// other's further; otherwise A's when whole, else the longer valid one (A when equal).
    ///
    /// A is written first, so normally A's copy is never older than B's; but while A has
    /// failed the log goes on on B alone, and the copy A was left with must not win.
    private static func chosen(_ parsed: [ParsedSegment]) -> ParsedSegment {
        let (a, b) = (parsed[0], parsed[1])
        if a.valid && b.valid {
            if a.generation != b.generation { return a.generation > b.generation ? a : b }
            // (Once generations saturate, a cut no longer raises them: then A's whole copy wins.)
            if a.generation < .max, b.records.count > a.records.count, b.records.starts(with: a.records) { return b }
        }
        if a.isWhole { return a }
        let index = b.records.count > a.records.count && b.valid ? 1 : 0
        return parsed[index].valid ? parsed[index] : parsed[1 - index]
    }

    /// One copy's problem, said against the records kept.
    private static func describe(_ found: ParsedSegment, against kept: Range<UInt64>) -> String {
        if let problem = found.problem { return problem }
        if found.bytes == nil { return "missing; the other mirror holds records \(kept.lowerBound)..<\(kept.upperBound)" }
        let held = found.firstIndex..<found.firstIndex + UInt64(found.records.count)
        return "holds records \(held.lowerBound)..<\(held.upperBound), the other mirror \(kept.lowerBound)..<\(kept.upperBound)"
    }

    /// The file name of a segment: the index of its first record in 20 digits, then, for an
    /// incarnation other than 0, `-` and the incarnation in 10 digits, then `.seg`.
    static func segmentName(_ id: SegmentID) -> String {
        let index = zeroPadded(String(id.index), 20)
        return id.incarnation == 0 ? index + ".seg" : index + "-" + zeroPadded(String(id.incarnation), 10) + ".seg"
    }

    /// The file name of incarnation 0's segment whose first record is `index`.
    static func segmentName(_ index: UInt64) -> String { segmentName(SegmentID(index: index, incarnation: 0)) }

    private static func zeroPadded(_ digits: String, _ width: Int) -> String {
        String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The identity a segment file name gives, or nil for any other name.
    static func segmentID(_ fileName: String) -> SegmentID? {
        guard fileName.hasSuffix(".seg") else { return nil }
        let stem = fileName.dropLast(4)
        if stem.count == 20, let index = UInt64(stem) { return SegmentID(index: index, incarnation: 0) }
        guard stem.count == 31, stem[stem.index(stem.startIndex, offsetBy: 20)] == "-",
              let index = UInt64(stem.prefix(20)), let incarnation = UInt32(stem.suffix(10)) else { return nil }
        return SegmentID(index: index, incarnation: incarnation)
    }

    /// The first index a segment file name gives, or nil for any other name.
    static func segmentIndex(_ fileName: String) -> UInt64? { segmentID(fileName)?.index }

    /// Parses one copy: its header (which must name `index`) and its records up to the first
    /// that is torn or fails its checksum.
    static func parse(_ folder: Folder, id: SegmentID) throws(StorageError) -> ParsedSegment {
        let index = id.index
        // A copy that cannot be read (EIO, EACCES, a partner that does not answer) is an
        // error, not a missing copy: the segment may be intact, and recovery must not drop it.
        guard let bytes = try folder.read(segmentName(id)) else {
            return ParsedSegment(bytes: nil, valid: false, firstIndex: index, incarnation: id.incarnation, records: [], problem: nil)
        }
        func invalid(_ problem: String) -> ParsedSegment {
            ParsedSegment(bytes: bytes, valid: false, firstIndex: index, incarnation: id.incarnation, records: [], problem: problem)
        }
        guard bytes.count >= headerBytes, Array(bytes[0..<4]) == magic else { return invalid("not a log segment (bad header)") }
        let version = UInt16(bytes[4]) | UInt16(bytes[5]) << 8
        guard version == Self.version else {
            return invalid("log format \(version) is not \(Self.version): another Lifeline wrote it")
        }
        guard load(UInt32.self, bytes, 16) == Checksum.crc32(bytes[0..<16]) else { return invalid("header checksum fails") }
        let firstIndex = load(UInt64.self, bytes, 8)
        guard firstIndex == index else { return invalid("header says record \(firstIndex), the file name \(index)") }
        let generation = load(UInt16.self, bytes, 6)
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
            guard length > 0 else {
                // No record is empty, and the crc32 of nothing is 0: zeros a file system left at
                // the end of a grown file would otherwise read as records.
                problem = "empty record (zero-filled) at byte \(offset)"
                break
            }
            let payload = bytes[offset + 8..<offset + 8 + length]
            guard Checksum.crc32(payload) == checksum else { problem = "record checksum fails at byte \(offset)"; break }
            records.append(Array(payload))
            offset += 8 + length
        }
        return ParsedSegment(bytes: bytes, valid: true, firstIndex: firstIndex, incarnation: id.incarnation, generation: generation, records: records,
                             problem: problem.map { "\($0); the tail is cut" })
    }

    /// A whole segment: header and records.
    static func image(firstIndex: UInt64, generation: UInt16, records: [[UInt8]]) -> [UInt8] {
        var bytes = magic
        bytes += [UInt8(version & 0xff), UInt8(version >> 8), UInt8(generation & 0xff), UInt8(generation >> 8)]
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
