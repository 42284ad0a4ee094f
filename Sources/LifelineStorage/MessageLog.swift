#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A mirrored, append-only log of records: the receiver's message log of pessimistic logging
/// (and the determinants and logged values of the other modes).
///
/// The records live in segments, `logs/NAME/<first index>[-<incarnation>].seg` under each root: a 24-byte
/// header (magic `LLMG`, version, generation, the index of the segment's first record, the
/// header's crc32) and then records of `[length: UInt32, crc32: UInt32, payload]`. Appends go
/// to the newest segment: every record of the batch to A and `fdatasync`, then the same to B
/// (group commit: one sync per mirror for the batch); a partner's copy (a store with
/// `remoteB`) takes the same bytes in one request, synced by the keeper before it answers. A segment past `segmentBytesMax` is
/// closed and the next batch starts a new one. Trimming deletes whole segments; cutting the
/// tail rewrites the one segment it falls in, with a higher generation, before it deletes the
/// later ones. Opening (see `recover(folders:)`) cuts a torn or corrupt tail of each copy,
/// keeps A's copy of each segment when whole (else the longer valid one), rewrites the other
/// to match, deletes what an interrupted cut left behind, and keeps segments only while they
/// continue each other; a record is never returned unless its checksum holds.
///
/// Invariant: `records` is the concatenation of the segments' records, on both mirrors (on the
/// one mirror still written while the other has failed), and `segments` lists them oldest
/// first, each starting where the one before ends.
///
/// A mirror whose write fails as a failing disk fails (full, read-only, I/O error) is dropped
/// and the log goes on on the other alone (`failedMirror`), unless a partner keeps a copy (then
/// the write fails: the log is on two hosts or the rank fails); `write(only:)` drops one on the
/// supervisor's word, and adding it back rewrites its segments from `records`. Opening picks,
/// per segment, the copy of the higher generation, else the longer (see `recover(folders:)`),
/// so a copy left behind on a dropped mirror never wins over the one written since.
///
/// Fencing: a rank's log is opened with the rank's incarnation, which names every segment it
/// writes, and opening starts a segment of its own at the log's end (its claim). A process of
/// an older incarnation still running somewhere (cut off, stopped, and replaced meanwhile) can
/// write only segments of its own name, and recovery drops what it wrote from the claim on
/// (see `recover(folders:)`); it never writes into the replacement's files.
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
        /// The incarnation that wrote it; it names the file too.
        var incarnation: UInt32
        /// Its records.
        var recordCount: Int
        /// Its length in bytes on one mirror.
        var bytes: Int
        /// The generation its header carries.
        var generation: UInt16
    }

    /// The log's folder on each mirror: `ROOT/logs/NAME`, on this machine or kept by a partner.
    let folders: [Folder]
    private let segmentBytesMax: Int
    private var segments: [Segment]
    /// The newest segment, open for appending, on each mirror (nil: not written).
    private var descriptors: [Int32?] = [nil, nil]
    /// Whether each mirror (A, B) is written.
    private var active = [true, true]
    /// Per mirror, the file whose presence makes its writes fail (`--inject fail:mirror=`; nil
    /// for a partner's folder).
    private let failMarkers: [String?]
    /// The mirror this log stopped writing because a write there failed, and that error; nil
    /// while both are written (or one was dropped on the supervisor's word).
    package private(set) var failedMirror: (mirror: Mirror, error: StorageError)?
    /// The index of the first record kept (the first segment's first record).
    package private(set) var firstIndex: UInt64
    /// The records from `firstIndex` on, as read at open and appended since.
    package private(set) var records: [[UInt8]]
    /// Whether a partner host keeps the log's second copy.
    package var keptByPartner: Bool { folders.contains(where: \.isRemote) }
    /// Whether a log a partner keeps goes on with its local copy alone when a write to the
    /// partner's fails, as a log on two local mirrors does (optimistic logging: a recovery
    /// replays what a copy holds and rolls back what depends on the rest); otherwise such a
    /// write fails. A failing local copy fails the write either way.
    package var goesOnAlone = false
    /// The bytes of one mirror's segments.
    package var fileBytes: Int { segments.reduce(0) { $0 + $1.bytes } }
    /// Bytes appended to each mirror since this log was opened.
    package private(set) var appendedBytes: UInt64 = 0
    /// The fsyncs and fdatasyncs this log issued since it was opened (each mirror counts).
    package private(set) var syncCount: UInt64 = 0
    /// Seconds the appends since this log was opened took to make their records durable (the
    /// records' framing, the writes and syncs on every mirror): the floor of a logging rule
    /// that syncs before delivery.
    package private(set) var syncSeconds = 0.0
    /// What opening found and repaired, one line each.
    package private(set) var problems: [String] = []
    /// The error of a write that failed part way; the log refuses further changes.
    private var failure: StorageError?
    /// The generation of the newest segments: raised by every cut and restart, so recovery
    /// can tell segments a crash left behind from the log's end.
    private var generation: UInt16 = 0
    /// The incarnation whose name the segments this log starts carry.
    package private(set) var incarnation: UInt32 = 0

    /// Opens (or creates) the log `name` on the roots of `store` and recovers its valid prefix;
    /// segments close past `segmentBytesMax` bytes. Both mirrors are read; only those `store`
    /// writes are repaired and written (one failing is dropped, see `failedMirror`).
    ///
    /// `incarnation`: the rank process that opens its log to write it. Unless the newest
    /// segment is its own already, it claims the log with a new empty segment at the end, so
    /// that an older incarnation still running is fenced off from here on. A newer incarnation's
    /// segment on disk means this process was replaced: `.fenced`. Nil (the tools, repairing a
    /// log): no claim; the log goes on under the newest segment's incarnation.
    package init(
        store: MirroredStore, name: String, incarnation: UInt32? = nil, segmentBytesMax: Int = segmentBytesDefault
    ) throws(StorageError) {
        precondition(segmentBytesMax > Self.headerBytes, "a segment holds its header and records")
        folders = Folder.of(store, name: name)
        failMarkers = [Mirror.a, Mirror.b].map { mirror in
            store.remote?.mirror == mirror ? nil : store.root(mirror) + "/" + MirroredStore.failWritesMarker
        }
        // A node-local mirror that is not this process's to fill (a tool, on another host than
        // the rank's) is neither read nor written: the rank keeps its host's copy.
        active = [Mirror.a, Mirror.b].map { store.mirrors.contains($0) && !store.missingIsExpected(on: $0) }
        self.segmentBytesMax = segmentBytesMax
        segments = []
        firstIndex = 0
        records = []
        try onEachMirror { mirror throws(StorageError) in try folders[mirror].create() }
        let recovery = try Self.recover(folders: folders, reading: active)
        if let incarnation, incarnation < recovery.newestIncarnation {
            throw StorageError(.fenced, path: folders[0].path, message:
                "incarnation \(recovery.newestIncarnation) of this rank took the log over: this process (incarnation \(incarnation)) was replaced")
        }
        self.incarnation = incarnation ?? recovery.segments.last?.incarnation ?? 0
        problems = recovery.problems
        firstIndex = recovery.segments.first?.firstIndex ?? 0
        generation = recovery.segments.last?.generation ?? 0
        for segment in recovery.segments {
            try onEachMirror { mirror throws(StorageError) in
                if !Self.holds(segment.copies[mirror], segment.image) {
                    try write(segment.image, segment: SegmentID(index: segment.firstIndex, incarnation: segment.incarnation),
                              in: folders[mirror])
                }
            }
            segments.append(Segment(firstIndex: segment.firstIndex, incarnation: segment.incarnation, recordCount: segment.records.count,
                                    bytes: segment.image.count, generation: segment.generation))
            records += segment.records
        }
        for id in recovery.dropped {
            try removeSegment(SegmentID(index: id.index, incarnation: id.incarnation))
        }
        if segments.isEmpty {
            try startSegment(at: 0, records: [])
        } else if segments[segments.count - 1].incarnation != self.incarnation {
            try startSegment(at: nextIndex, records: [])  // the claim
        } else {
            try openNewest()
        }
    }

    deinit { for case let fd? in descriptors { close(fd) } }

    /// The index the next appended record gets.
    package var nextIndex: UInt64 { firstIndex + UInt64(records.count) }

    /// Appends records and makes them durable on both mirrors before returning (A first). A
    /// batch that would take the newest segment past its size starts a new segment.
    package func append(_ payloads: [[UInt8]]) throws(StorageError) {
        guard !payloads.isEmpty else { return }
        let started = monotonicSeconds()
        defer { syncSeconds += monotonicSeconds() - started }
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
                try onEachMirror { mirror throws(StorageError) in
                    switch folders[mirror] {
                    case .local:
                        guard let fd = descriptors[mirror] else { return }
                        let path = segmentPath(newest.id, in: folders[mirror])
                        try PosixFile.writeAll(fd, bytes, path: path)
                        if fdatasync(fd) != 0 { throw StorageError(errno: errno, operation: "fdatasync", path: path) }
                    case .remote(let folder, let path):
                        try folder.append(path + "/" + Self.segmentName(newest.id), at: newest.bytes, bytes)
                    }
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
            let later = segments.filter { $0.firstIndex >= index }.map(\.id)
            segments.removeLast(later.count)
            let last = segments.removeLast()
            let kept = Array(records[Int(last.firstIndex - firstIndex)...])
            generation = generation < .max ? generation + 1 : generation
            try startSegment(at: last.firstIndex, records: kept)
            // The cut segment, if an older incarnation's, is replaced by this one's of the same
            // first index (which fences it off) and goes.
            for id in later.reversed() + (last.incarnation == incarnation ? [] : [last.id]) {
                try removeSegment(id)
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
                try removeSegment(segments[0].id)
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

    /// The newest incarnation that wrote a segment of any log in `store` (nil: none). A job
    /// resumed starts its processes above it, or they would be fenced off their own logs.
    package static func newestIncarnation(store: MirroredStore) -> UInt32? {
        store.list(folder).flatMap { name in
            store.list(folder + "/" + name).compactMap { segmentID($0)?.incarnation }
        }.max()
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
            let old = segments.map(\.id).filter { $0 != SegmentID(index: index, incarnation: incarnation) }
            segments.removeAll()
            records.removeAll()
            firstIndex = index
            generation = generation < .max ? generation + 1 : generation
            try startSegment(at: index, records: [])
            for id in old {
                try removeSegment(id)
            }
        }
    }

    /// Writes a new segment holding `records` (atomically, A then B) and makes it the newest.
    private func startSegment(at index: UInt64, records payloads: [[UInt8]]) throws(StorageError) {
        let image = Self.image(firstIndex: index, generation: generation, records: payloads)
        let id = SegmentID(index: index, incarnation: incarnation)
        closeNewest()
        try onEachMirror { mirror throws(StorageError) in try write(image, segment: id, in: folders[mirror]) }
        segments.append(Segment(firstIndex: index, incarnation: incarnation, recordCount: payloads.count, bytes: image.count,
                                generation: generation))
        try openNewest()
    }

    /// Runs `body` for each mirror written, A first. A mirror whose write fails as a disk
    /// fails (or whose fail marker is there) is dropped while the other is still written, and
    /// the change goes on there; any other error, or the last mirror failing, is thrown.
    private func onEachMirror(_ body: (Int) throws(StorageError) -> Void) throws(StorageError) {
        guard active.contains(true) else {
            throw StorageError(.ioFailure, path: folders[0].path, message: "the log writes no mirror")
        }
        for mirror in 0..<2 where active[mirror] {
            do throws(StorageError) {
                if let marker = failMarkers[mirror], access(marker, F_OK) == 0 {
                    throw StorageError(errno: ENOSPC, operation: "log write (a fault injected by --inject fail:mirror="
                                       + "\(mirror == 0 ? "a" : "b"))", path: folders[mirror].path)
                }
                try body(mirror)
            } catch {
                var tagged = error
                tagged.mirror = mirror == 0 ? .a : .b
                // A log with a partner's copy is on two hosts or fails: dropping either copy
                // would make deliveries that one host's loss loses (its snapshots follow the
                // same rule: a line commits on two hosts or not at all). Unless it may go on
                // alone (`goesOnAlone`).
                guard tagged.isMirrorFailure, active[1 - mirror], !keptByPartner || goesOnAlone && folders[mirror].isRemote
                else { throw tagged }
                drop(mirror)
                failedMirror = (tagged.mirror!, tagged)
            }
        }
    }

    /// Stops writing `mirror` (an index): its descriptor is closed, its files left as they are.
    private func drop(_ mirror: Int) {
        active[mirror] = false
        if let fd = descriptors[mirror] { close(fd) }
        descriptors[mirror] = nil
    }

    /// Writes the log to `mirrors` from now on (at least one). A mirror added back gets the
    /// log's segments written anew from its records, and its files of no kept segment
    /// removed; when that fails, the mirror stays dropped and the error is thrown.
    package func write(only mirrors: [Mirror]) throws(StorageError) {
        precondition(!mirrors.isEmpty, "a log writes at least one mirror")
        try checkUsable()
        // Adding back first: when that fails, the mirror written now is still written.
        for (position, mirror) in [Mirror.a, .b].enumerated() where mirrors.contains(mirror) && !active[position] {
            try resynchronise(position)
        }
        for (position, mirror) in [Mirror.a, .b].enumerated() where !mirrors.contains(mirror) && active[position] {
            drop(position)
        }
    }

    /// Rewrites mirror `position`'s copy of the log from `records` and writes it again.
    private func resynchronise(_ position: Int) throws(StorageError) {
        let folder = folders[position]
        do throws(StorageError) {
            if let marker = failMarkers[position], access(marker, F_OK) == 0 {
                throw StorageError(errno: ENOSPC, operation: "log write (a fault injected by --inject fail:mirror="
                                   + "\(position == 0 ? "a" : "b"))", path: folder.path)
            }
            try folder.create()
            let kept = Set(segments.map { Self.segmentName($0.id) })
            for name in try folder.entries() where Self.segmentID(name) != nil && !kept.contains(name) {
                if try folder.remove(name) { syncCount += 1 }
            }
            var offset = 0
            for segment in segments {
                let image = Self.image(firstIndex: segment.firstIndex, generation: segment.generation,
                                       records: Array(records[offset..<offset + segment.recordCount]))
                offset += segment.recordCount
                try write(image, segment: segment.id, in: folder)
            }
            try folder.sync()
            if case .local = folder {
                let path = segmentPath(segments[segments.count - 1].id, in: folder)
                let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
                guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
                descriptors[position] = fd
            }
            active[position] = true
            failedMirror = nil
        } catch {
            var tagged = error
            tagged.mirror = position == 0 ? .a : .b
            throw tagged
        }
    }

    /// Writes a whole segment file atomically (its folder fsynced).
    private func write(_ image: [UInt8], segment id: SegmentID, in folder: Folder) throws(StorageError) {
        try folder.write(image, as: Self.segmentName(id))
        syncCount += 2  // the file and its folder
    }

    /// Deletes a segment on the mirrors written (A first), each folder fsynced.
    private func removeSegment(_ id: SegmentID) throws(StorageError) {
        try onEachMirror { mirror throws(StorageError) in
            if try folders[mirror].remove(Self.segmentName(id)) { syncCount += 1 }
        }
    }

    private func openNewest() throws(StorageError) {
        let newest = segments[segments.count - 1].id
        try onEachMirror { mirror throws(StorageError) in
            guard case .local = folders[mirror] else { return }  // a partner's copy takes appends by request
            let path = segmentPath(newest, in: folders[mirror])
            let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
            descriptors[mirror] = fd
        }
    }

    private func closeNewest() {
        for mirror in descriptors.indices {
            if let fd = descriptors[mirror] { close(fd) }
            descriptors[mirror] = nil
        }
    }

    func segmentPath(_ id: SegmentID, in folder: Folder) -> String {
        folder.path + "/" + Self.segmentName(id)
    }
}

extension MessageLog.Segment {
    /// Its file's identity.
    var id: MessageLog.SegmentID { MessageLog.SegmentID(index: firstIndex, incarnation: incarnation) }
}
