#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A mirrored, append-only log of records: the receiver's message log of pessimistic logging.
///
/// One file per mirror, `logs/NAME.log` under each root: a 24-byte header (magic `LLMG`,
/// version, the index of the first record, the header's crc32) and then records of
/// `[length: UInt32, crc32: UInt32, payload]`. An append writes every record of the batch to A
/// and `fdatasync`s it, then the same to B (group commit: one sync per mirror for the batch).
/// Opening finds a torn or corrupt tail on each mirror, keeps the longer valid log (A when
/// equal), and rewrites the other to match; a record is never returned unless its checksum holds.
/// Trimming rewrites both files atomically without the records before an index.
///
/// Owned by one thread.
package final class MessageLog {
    private static let magic: [UInt8] = Array("LLMG".utf8)
    private static let version: UInt16 = 1
    private static let headerBytes = 24
    /// The folder of the logs under each root.
    package static let folder = "logs"
    /// The largest record accepted; a larger length field marks a corrupt tail.
    package static let recordBytesMax = 1 << 31

    private let paths: [String]
    private var descriptors: [Int32]
    /// The index of the first record in the files.
    package private(set) var firstIndex: UInt64
    /// The records from `firstIndex` on, as read at open and appended since.
    package private(set) var records: [[UInt8]]
    /// The bytes of one mirror's file.
    package private(set) var fileBytes: Int
    /// Bytes appended to each mirror since this log was opened.
    package private(set) var appendedBytes: UInt64 = 0
    /// The fsyncs and fdatasyncs this log issued since it was opened (each mirror counts).
    package private(set) var syncCount: UInt64 = 0
    /// What opening found and repaired, one line each.
    package private(set) var problems: [String] = []

    /// Opens (or creates) the log `name` on both roots of `store` and recovers its valid prefix.
    package init(store: MirroredStore, name: String) throws(StorageError) {
        let folder = Self.folder
        paths = [Mirror.a, Mirror.b].map { store.root($0) + "/" + folder + "/" + name + ".log" }
        for mirror in [Mirror.a, Mirror.b] {
            let directory = store.root(mirror) + "/" + folder
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw StorageError(errno: errno, operation: "mkdir", path: directory)
            }
        }
        let parsed = try paths.map { path throws(StorageError) in try Self.parse(path) }
        let winner = Self.chosen(parsed)
        firstIndex = winner.firstIndex
        records = winner.records
        fileBytes = 0
        descriptors = []
        for (mirror, found) in parsed.enumerated() where found.problem != nil {
            problems.append("\(paths[mirror]): \(found.problem!)")
        }
        // Rewrite both mirrors to the chosen prefix (a no-op in content when they agree), so a
        // torn tail is cut and the other mirror repaired before anything is appended.
        let image = Self.image(firstIndex: firstIndex, records: records)
        let existed = parsed.contains { $0.bytes != nil }
        for (mirror, path) in paths.enumerated() where parsed[mirror].bytes != image {
            if existed, parsed[mirror].problem == nil {
                problems.append("\(path): \(Self.describe(parsed[mirror], against: firstIndex..<nextIndex)); rewritten to match")
            }
            try Self.writeAtomically(image, path: path)
        }
        fileBytes = image.count
        for path in paths {
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
            descriptors.append(fd)
        }
    }

    deinit { descriptors.forEach { close($0) } }

    /// The index the next appended record gets.
    package var nextIndex: UInt64 { firstIndex + UInt64(records.count) }

    /// Appends records and makes them durable on both mirrors before returning (A first).
    package func append(_ payloads: [[UInt8]]) throws(StorageError) {
        guard !payloads.isEmpty else { return }
        var bytes: [UInt8] = []
        for payload in payloads {
            precondition(payload.count < Self.recordBytesMax)
            Self.appendRecord(payload, to: &bytes)
        }
        for (mirror, fd) in descriptors.enumerated() {
            try Self.writeAll(fd, bytes, path: paths[mirror])
            if fdatasync(fd) != 0 { throw StorageError(errno: errno, operation: "fdatasync", path: paths[mirror]) }
            syncCount += 1
        }
        records += payloads
        fileBytes += bytes.count
        appendedBytes += UInt64(bytes.count)
    }

    /// Drops the records from `index` on from both mirrors (atomically, file by file): an
    /// optimistic log whose tail a rolled-back rank will not replay.
    package func truncate(from index: UInt64) throws(StorageError) {
        guard index < nextIndex else { return }
        let keep = Int(max(index, firstIndex) - firstIndex)
        records.removeLast(records.count - keep)
        try rewrite()
    }

    /// Makes `index` the index of the next record: drops the records from `index` on, and when
    /// the log does not reach `index` or starts after it, empties it and starts it there. For a
    /// rank rolled back with every other rank to a checkpoint taken at log position `index`:
    /// it re-executes instead of replaying, so what it logged after the checkpoint is void.
    package func resume(at index: UInt64) throws(StorageError) {
        if index >= firstIndex && index <= nextIndex {
            try truncate(from: index)
            return
        }
        records.removeAll()
        firstIndex = index
        try rewrite()
    }

    /// The log name of a rank's receiver log: `rank-R`.
    package static func name(ofRank rank: Int) -> String { "rank-\(rank)" }

    /// Drops the records before `index` from both mirrors (atomically, file by file).
    package func trim(before index: UInt64) throws(StorageError) {
        guard index > firstIndex else { return }
        let dropCount = Int(min(index - firstIndex, UInt64(records.count)))
        records.removeFirst(dropCount)
        firstIndex += UInt64(dropCount)
        try rewrite()
    }

    /// Replaces both mirrors' files with the records kept (atomically, file by file) and
    /// reopens them for appending.
    private func rewrite() throws(StorageError) {
        let image = Self.image(firstIndex: firstIndex, records: records)
        for (mirror, path) in paths.enumerated() {
            try Self.writeAtomically(image, path: path)
            syncCount += 2  // the file and its folder
            close(descriptors[mirror])
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
            descriptors[mirror] = fd
        }
        fileBytes = image.count
    }

    // MARK: Format

    private struct Parsed {
        var bytes: [UInt8]?
        var valid: Bool
        var firstIndex: UInt64
        var records: [[UInt8]]
        var problem: String?
    }

    /// What the two copies of a log hold, read without repairing anything.
    package struct Inspection: Sendable {
        /// One line per problem: a copy missing, torn, damaged, or shorter than the other.
        package var problems: [String]
        /// Whether both copies exist, read to their end and are byte-equal.
        package var isHealthy: Bool { problems.isEmpty }
        /// Whether neither copy is intact (each missing, torn or damaged, at least one present).
        /// An append reaches B only after A is durable, so a crash can tear one copy, never
        /// both: the records past the longer valid prefix are lost, and a replay of this log
        /// would not reproduce what the rank delivered.
        package var recordsLost: Bool
        /// The records the log would keep when opened: `firstIndex..<nextIndex`.
        package var kept: Range<UInt64>
        /// Whether neither mirror has the file (a log never opened, or deleted on both).
        package var isMissing: Bool
    }

    /// Reads both copies of the log `name` and says what opening it would find and repair.
    package static func inspect(store: MirroredStore, name: String) throws(StorageError) -> Inspection {
        let paths = [Mirror.a, Mirror.b].map { store.root($0) + "/" + folder + "/" + name + ".log" }
        let parsed = try paths.map { path throws(StorageError) in try parse(path) }
        let winner = chosen(parsed)
        let image = Self.image(firstIndex: winner.firstIndex, records: winner.records)
        let kept = winner.firstIndex..<winner.firstIndex + UInt64(winner.records.count)
        var problems: [String] = []
        if parsed.contains(where: { $0.bytes != nil }) {
            for (mirror, found) in parsed.enumerated() where found.bytes != image {
                problems.append("\(paths[mirror]): \(describe(found, against: kept))")
            }
        }
        let intact = parsed.contains { $0.bytes != nil && $0.valid && $0.problem == nil }
        let exists = parsed.contains { $0.bytes != nil }
        return Inspection(problems: problems, recordsLost: !intact && exists, kept: kept, isMissing: !exists)
    }

    /// The copy opening keeps: the longer valid one (A when equal), as parsed.
    private static func chosen(_ parsed: [Parsed]) -> Parsed {
        let index = parsed[1].records.count > parsed[0].records.count && parsed[1].valid ? 1 : 0
        let winner = parsed[index].valid ? parsed[index] : parsed[1 - index]
        return winner.valid ? winner : Parsed(bytes: nil, valid: false, firstIndex: winner.firstIndex, records: [], problem: nil)
    }

    /// One copy's problem, said against the records kept.
    private static func describe(_ found: Parsed, against kept: Range<UInt64>) -> String {
        if let problem = found.problem { return problem }
        if found.bytes == nil { return "missing; the other mirror holds records \(kept.lowerBound)..<\(kept.upperBound)" }
        let held = found.firstIndex..<found.firstIndex + UInt64(found.records.count)
        return "holds records \(held.lowerBound)..<\(held.upperBound), the other mirror \(kept.lowerBound)..<\(kept.upperBound)"
    }

    private static func parse(_ path: String) throws(StorageError) -> Parsed {
        guard let data = FileManager.default.contents(atPath: path) else {
            return Parsed(bytes: nil, valid: false, firstIndex: 0, records: [], problem: nil)
        }
        let bytes = [UInt8](data)
        guard bytes.count >= headerBytes, Array(bytes[0..<4]) == magic else {
            return Parsed(bytes: bytes, valid: false, firstIndex: 0, records: [], problem: "not a message log (bad header)")
        }
        let version = UInt16(bytes[4]) | UInt16(bytes[5]) << 8
        guard version == Self.version else {
            return Parsed(bytes: bytes, valid: false, firstIndex: 0, records: [],
                          problem: "log format \(version) is not \(Self.version): a newer Lifeline wrote it")
        }
        let firstIndex = load(UInt64.self, bytes, 8)
        guard load(UInt32.self, bytes, 16) == Checksum.crc32(bytes[0..<16]) else {
            return Parsed(bytes: bytes, valid: false, firstIndex: 0, records: [], problem: "header checksum fails")
        }
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
            guard Checksum.crc32(payload) == checksum else {
                problem = "record checksum fails at byte \(offset)"
                break
            }
            records.append(Array(payload))
            offset += 8 + length
        }
        return Parsed(bytes: bytes, valid: true, firstIndex: firstIndex, records: records,
                      problem: problem.map { "\($0); the tail is cut" })
    }

    private static func image(firstIndex: UInt64, records: [[UInt8]]) -> [UInt8] {
        var bytes = magic
        bytes += [UInt8(version & 0xff), UInt8(version >> 8), 0, 0]
        withUnsafeBytes(of: firstIndex.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: Checksum.crc32(bytes).littleEndian) { bytes += $0 }
        bytes += [0, 0, 0, 0]
        for record in records { appendRecord(record, to: &bytes) }
        return bytes
    }

    private static func appendRecord(_ payload: [UInt8], to bytes: inout [UInt8]) {
        withUnsafeBytes(of: UInt32(payload.count).littleEndian) { bytes += $0 }
        withUnsafeBytes(of: Checksum.crc32(payload).littleEndian) { bytes += $0 }
        bytes += payload
    }

    private static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }

    private static func writeAtomically(_ bytes: [UInt8], path: String) throws(StorageError) {
        let url = URL(fileURLWithPath: path)
        try PosixFile.writeAtomically(bytes, directory: url.deletingLastPathComponent().path, fileName: url.lastPathComponent)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(StorageError) {
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + written, bytes.count - written) }
            if count < 0 {
                if errno == EINTR { continue }
                throw StorageError(errno: errno, operation: "write", path: path)
            }
            written += count
        }
    }
}
