#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A mirrored, append-only log of records: the receiver's message log of pessimistic logging
/// (and the determinants and logged values of the other modes).
///
/// The records live in segments, `logs/NAME/<first index>.seg` under each root: a 24-byte
/// header (magic `LLMG`, version, generation, the index of the segment's first record, the
/// header's crc32) and then records of `[length: UInt32, crc32: UInt32, payload]`. Appends go
/// to the newest segment: every record of the batch to A and `fdatasync`, then the same to B
/// (group commit: one sync per mirror for the batch). A segment past `segmentBytesMax` is
/// closed and the next batch starts a new one. Trimming deletes whole segments; cutting the
/// tail rewrites the one segment it falls in, with a higher generation, before it deletes the
/// later ones. Opening (see `recover(folders:)`) cuts a torn or corrupt tail of each copy,
/// keeps A's copy of each segment when whole (else the longer valid one), rewrites the other
/// to match, deletes what an interrupted cut left behind, and keeps segments only while they
/// continue each other; a record is never returned unless its checksum holds.
///
/// Invariant: `records` is the concatenation of the segments' records, on both mirrors, and
/// `segments` lists them oldest first, each starting where the one before ends.
///
/// Owned by one thread.
package final class MessageLog {
    static let magic: [UInt8] = Array("LLMG".utf8)
    static let version: UInt16 = 2
    static let headerBytes = 24
    /// The folder of the logs under each root.
    package static let folder = "logs"
    /// The largest record accepted; a larger length field marks a corrupt tail.
    package static let recordBytesMax = 1 << 31
    /// The size past which a segment is closed: 8 MiB, so trimming deletes files rather than
    /// rewriting them, and at most one segment of records already covered stays on disk.
    package static let segmentBytesDefault = 8 << 20

    /// One segment on disk (alike on both mirrors).
    struct Segment {
        /// The index of its first record; it names the file.
        var firstIndex: UInt64
        /// Its records.
        var recordCount: Int
        /// Its length in bytes on one mirror.
        var bytes: Int
    }

    /// The log's folder on each mirror: `ROOT/logs/NAME`.
    let folders: [String]
    private let segmentBytesMax: Int
    private var segments: [Segment]
    /// The newest segment, open for appending, on each mirror.
    private var descriptors: [Int32] = []
    /// The index of the first record kept (the first segment's first record).
    package private(set) var firstIndex: UInt64
    /// The records from `firstIndex` on, as read at open and appended since.
    package private(set) var records: [[UInt8]]
    /// The bytes of one mirror's segments.
    package var fileBytes: Int { segments.reduce(0) { $0 + $1.bytes } }
    /// Bytes appended to each mirror since this log was opened.
    package private(set) var appendedBytes: UInt64 = 0
    /// The fsyncs and fdatasyncs this log issued since it was opened (each mirror counts).
    package private(set) var syncCount: UInt64 = 0
    /// What opening found and repaired, one line each.
    package private(set) var problems: [String] = []
    /// The error of a write that failed part way; the log refuses further changes.
    private var failure: StorageError?
    /// The generation of the newest segments: raised by every cut and restart, so recovery
    /// can tell segments a crash left behind from the log's end.
    private var generation: UInt16 = 0

    /// Opens (or creates) the log `name` on both roots of `store` and recovers its valid
    /// prefix; segments close past `segmentBytesMax` bytes.
    package init(store: MirroredStore, name: String, segmentBytesMax: Int = segmentBytesDefault) throws(StorageError) {
        precondition(segmentBytesMax > Self.headerBytes, "a segment holds its header and records")
        folders = [Mirror.a, Mirror.b].map { store.root($0) + "/" + Self.folder + "/" + name }
        self.segmentBytesMax = segmentBytesMax
        for mirror in [Mirror.a, Mirror.b] {
            try PosixFile.makeDirectories(root: store.root(mirror), relative: Self.folder + "/" + name)
        }
        let recovery = try Self.recover(folders: folders)
        problems = recovery.problems
        segments = []
        firstIndex = recovery.segments.first?.firstIndex ?? 0
        records = []
        generation = recovery.segments.last?.generation ?? 0
        for segment in recovery.segments {
            for (mirror, folder) in folders.enumerated() where !Self.holds(segment.copies[mirror], segment.image) {
                try write(segment.image, segmentAt: segment.firstIndex, in: folder)
            }
            segments.append(Segment(firstIndex: segment.firstIndex, recordCount: segment.records.count, bytes: segment.image.count))
            records += segment.records
        }
        for index in recovery.dropped {
            try removeSegment(at: index)
        }
        if segments.isEmpty {
            try startSegment(at: 0, records: [])
        } else {
            try openNewest()
        }
    }

    deinit { descriptors.forEach { close($0) } }

    /// The index the next appended record gets.
    package var nextIndex: UInt64 { firstIndex + UInt64(records.count) }

    /// Appends records and makes them durable on both mirrors before returning (A first). A
    /// batch that would take the newest segment past its size starts a new segment.
    package func append(_ payloads: [[UInt8]]) throws(StorageError) {
        guard !payloads.isEmpty else { return }
        var bytes: [UInt8] = []
        try checkUsable()
        for payload in payloads {
            precondition(!payload.isEmpty && payload.count < Self.recordBytesMax, "a record holds 1 byte or more")
            Self.appendRecord(payload, to: &bytes)
        }
        let newest = segments[segments.count - 1]
        try guarded { () throws(StorageError) in
            if newest.recordCount > 0 && newest.bytes + bytes.count > segmentBytesMax {
                try startSegment(at: nextIndex, records: payloads)
            } else {
                for (mirror, fd) in descriptors.enumerated() {
                    let path = segmentPath(newest.firstIndex, in: folders[mirror])
                    try PosixFile.writeAll(fd, bytes, path: path)
                    if fdatasync(fd) != 0 { throw StorageError(errno: errno, operation: "fdatasync", path: path) }
                    syncCount += 1
                }
                segments[segments.count - 1].recordCount += payloads.count
                segments[segments.count - 1].bytes += bytes.count
            }
        }
        records += payloads
        appendedBytes += UInt64(bytes.count)
    }

    /// Drops the records from `index` on from both mirrors: later segments are deleted, the
    /// one `index` falls in is rewritten atomically. An optimistic log whose tail a rolled-back
    /// rank will not replay.
    ///
    /// The segment the log now ends in is written first, with a higher generation: a crash
    /// before the later segments are deleted leaves them marked as discarded for recovery.
    package func truncate(from index: UInt64) throws(StorageError) {
        try checkUsable()
        guard index < nextIndex else { return }
        guard index > firstIndex else {
            try restart(at: index)
            return
        }
        try guarded { () throws(StorageError) in
            records.removeLast(Int(nextIndex - index))
            let later = segments.filter { $0.firstIndex >= index }.map(\.firstIndex)
            segments.removeLast(later.count)
            let last = segments.removeLast()
            let kept = Array(records[Int(last.firstIndex - firstIndex)...])
            generation = generation < .max ? generation + 1 : generation
            try startSegment(at: last.firstIndex, records: kept)
            for segmentIndex in later.reversed() {
                try removeSegment(at: segmentIndex)
            }
        }
    }

    /// Drops the segments whose records all lie before `index`, on both mirrors. When every
    /// record does, the log continues in a new empty segment at `nextIndex`.
    package func trim(before index: UInt64) throws(StorageError) {
        try checkUsable()
        if index >= nextIndex, !records.isEmpty {
            try restart(at: nextIndex)
            return
        }
        try guarded { () throws(StorageError) in
            while segments.count > 1, segments[1].firstIndex <= index {
                try removeSegment(at: segments[0].firstIndex)
                records.removeFirst(segments[0].recordCount)
                segments.removeFirst()
                firstIndex = segments[0].firstIndex
            }
        }
    }

    /// Makes `index` the index of the next record: drops the records from `index` on, and when
    /// the log does not reach `index` or starts after it, empties it and starts it there. For a
    /// rank rolled back with every other rank to a checkpoint taken at log position `index`:
    /// it re-executes instead of replaying, so what it logged after the checkpoint is void.
    package func resume(at index: UInt64) throws(StorageError) {
        try checkUsable()
        if index > firstIndex && index <= nextIndex {
            try truncate(from: index)
        } else if index != firstIndex || !records.isEmpty {
            try restart(at: index)
        }
    }

    /// The log name of a rank's receiver log: `rank-R`.
    package static func name(ofRank rank: Int) -> String { "rank-\(rank)" }

    // MARK: Segments

    /// Refuses to go on after a write failed part way: what the files hold may then differ from
    /// `records` until the log is opened again (which recovers it from the files).
    private func checkUsable() throws(StorageError) {
        if let failure {
            throw StorageError(failure.code, path: failure.path,
                               message: "an earlier write of this log failed (\(failure.message)); reopen the log")
        }
    }

    /// Runs a change to the files; if it throws, the log refuses every later change.
    private func guarded(_ change: () throws(StorageError) -> Void) throws(StorageError) {
        do throws(StorageError) {
            try change()
        } catch {
            failure = error
            throw error
        }
    }

    /// Empties the log: a new empty segment at `index`, of a higher generation, then the old
    /// segments deleted (a crash in between leaves them marked as discarded for recovery).
    private func restart(at index: UInt64) throws(StorageError) {
        try guarded { () throws(StorageError) in
            let old = segments.map(\.firstIndex).filter { $0 != index }
            segments.removeAll()
            records.removeAll()
            firstIndex = index
            generation = generation < .max ? generation + 1 : generation
            try startSegment(at: index, records: [])
            for segmentIndex in old {
                try removeSegment(at: segmentIndex)
            }
        }
    }

    /// Writes a new segment holding `records` (atomically, A then B) and makes it the newest.
    private func startSegment(at index: UInt64, records payloads: [[UInt8]]) throws(StorageError) {
        let image = Self.image(firstIndex: index, generation: generation, records: payloads)
        closeNewest()
        for folder in folders {
            try write(image, segmentAt: index, in: folder)
        }
        segments.append(Segment(firstIndex: index, recordCount: payloads.count, bytes: image.count))
        try openNewest()
    }

    /// Writes a whole segment file atomically (its folder fsynced).
    private func write(_ image: [UInt8], segmentAt index: UInt64, in folder: String) throws(StorageError) {
        try PosixFile.writeAtomically(image, directory: folder, fileName: Self.segmentName(index))
        syncCount += 2  // the file and its folder
    }

    /// Deletes a segment on both mirrors (A first), each folder fsynced.
    private func removeSegment(at index: UInt64) throws(StorageError) {
        for folder in folders where try PosixFile.removeFile(segmentPath(index, in: folder)) {
            try PosixFile.fsyncDirectory(folder)
            syncCount += 1
        }
    }

    private func openNewest() throws(StorageError) {
        let newest = segments[segments.count - 1].firstIndex
        for folder in folders {
            let path = segmentPath(newest, in: folder)
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
            descriptors.append(fd)
        }
    }

    private func closeNewest() {
        descriptors.forEach { close($0) }
        descriptors.removeAll()
    }

    func segmentPath(_ index: UInt64, in folder: String) -> String {
        folder + "/" + Self.segmentName(index)
    }
}
