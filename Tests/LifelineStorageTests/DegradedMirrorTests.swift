import Foundation
import Testing
@testable import LifelineStorage

/// A store writing one mirror alone (the supervisor's degraded state), the injected mirror
/// failure, and the manifest's retention of the newest line on both mirrors.
@Suite struct DegradedMirrorTests {
    let body: [UInt8] = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 7) }

    @Test func aStoreWritingOneMirrorLeavesTheOtherAloneAndDoesNotRepairIt() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let both = try folder.store()
        let onlyB = both.writing(only: [.b])
        #expect(onlyB.mirrors == [.b] && both.mirrors == [.a, .b])
        try onlyB.write("epochs/000001/rank-0000.snap", kind: .snapshot, generation: 1, body: body)
        #expect(!FileManager.default.fileExists(atPath: both.path("epochs/000001/rank-0000.snap", on: .a)))
        let read = try onlyB.read("epochs/000001/rank-0000.snap")
        #expect(read.body == body && read.problems.isEmpty && read.repaired.isEmpty, "\(read.problems)")
        #expect(!FileManager.default.fileExists(atPath: both.path("epochs/000001/rank-0000.snap", on: .a)))
        // The store on both mirrors repairs A from B, as for any missing copy.
        #expect(try both.read("epochs/000001/rank-0000.snap").repaired == [.a])
        try onlyB.remove("epochs/000001/rank-0000.snap")
        #expect(FileManager.default.fileExists(atPath: both.path("epochs/000001/rank-0000.snap", on: .a)))
        #expect(!FileManager.default.fileExists(atPath: both.path("epochs/000001/rank-0000.snap", on: .b)))
    }

    @Test func chunkedSnapshotsWriteAndReadOnOneMirror() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let onlyB = try folder.store().writing(only: [.b])
        let snapshots = ChunkedSnapshots(store: onlyB)
        let state = (0..<(1 << 18)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let written = try snapshots.write("epochs/000002/rank-0001.snap", bytes: state, generation: 2, chunkBytes: 16 << 10)
        #expect(try snapshots.read("epochs/000002/rank-0001.snap") == state)
        #expect(snapshots.allChunkNames().count == Set(written.index.chunks.map(\.hash)).count)
        #expect(PosixFile.entries(onlyB.root(.a) + "/" + ChunkedSnapshots.folder).isEmpty)
        // Written again on B alone, every chunk is referenced, not rewritten.
        let again = try snapshots.write("epochs/000003/rank-0001.snap", bytes: state, generation: 3, chunkBytes: 16 << 10)
        #expect(again.reusedCount == again.index.chunks.count)
    }

    @Test func theFailMarkerFailsWritesToItsMirrorAsAFullDisk() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let marker = store.root(.b) + "/" + MirroredStore.failWritesMarker
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        let error = storageError { () throws(StorageError) in try store.write("manifest", kind: .manifest, generation: 1, body: body) }
        #expect(error?.code == .noSpace && error?.mirror == .b && error?.isMirrorFailure == true, "\(String(describing: error))")
        // A was written first and holds the file; B stays without it.
        #expect(try store.read("manifest").body == body)
        #expect(storageError { () throws(StorageError) in try store.probe(.b) }?.mirror == .b)
        try store.probe(.a)
        try store.writing(only: [.a]).write("manifest", kind: .manifest, generation: 2, body: body)
        try FileManager.default.removeItem(atPath: marker)
        try store.probe(.b)
        #expect(store.list("") == ["manifest"], "the probe leaves nothing a listing shows")
    }

    @Test func theNewestLineOnBothMirrorsStaysWhileNewerOnesAreDegraded() {
        var manifest = Manifest(jobID: "j", rankCount: 1)
        func line(_ epoch: UInt64, _ onlyOn: Mirror? = nil) -> CommittedLine {
            CommittedLine(epoch: epoch, step: Int(epoch), members: [], onlyOn: onlyOn)
        }
        manifest.appendCommitted(line(1))
        manifest.appendCommitted(line(2))
        manifest.appendCommitted(line(3, .a))
        manifest.appendCommitted(line(4, .a))
        manifest.appendCommitted(line(5, .a))
        #expect(manifest.committed.map(\.epoch) == [2, 5])
        #expect(manifest.hasDegradedCommits && manifest.invariantViolation == nil)
        // Resynchronised: the marks are gone, and the next commit trims to `keep` again.
        for position in manifest.committed.indices { manifest.committed[position].onlyOn = nil }
        manifest.appendCommitted(line(6))
        #expect(manifest.committed.map(\.epoch) == [5, 6] && !manifest.hasDegradedCommits)
        manifest.appendCommitted(line(7, .b), keep: 3)
        #expect(manifest.committed.map(\.epoch) == [5, 6, 7])
        manifest.appendCommitted(line(8, .b), keep: 1)
        #expect(manifest.committed.map(\.epoch) == [6, 8], "keep 1 still keeps the line on both mirrors")
        manifest.appendCommitted(line(9, .b), keep: 3)
        #expect(manifest.committed.map(\.epoch) == [6, 8, 9])
        manifest.appendCommitted(line(10, .b), keep: 3)
        #expect(manifest.committed.map(\.epoch) == [6, 9, 10])
    }

    @Test func aManifestWithoutMarksDecodesAsOnBothMirrors() throws {
        let json = #"{"epoch": 3, "step": 9, "members": []}"#
        let decoded = try JSONDecoder().decode(CommittedLine.self, from: Data(json.utf8))
        #expect(decoded.onlyOn == nil)
        let marked = try JSONEncoder().encode(CommittedLine(epoch: 3, step: 9, members: [], onlyOn: .b))
        #expect(String(decoding: marked, as: UTF8.self).contains(#""onlyOn":"b""#))
    }
}

/// A message log whose mirror fails: it goes on on the other, reopening keeps what was written
/// since (even when A is the mirror left behind), and adding the mirror back rewrites it.
@Suite struct DegradedMessageLogTests {
    static let records: [[UInt8]] = (0..<12).map { index in (0..<(9 + 29 * index)).map { UInt8(truncatingIfNeeded: $0 * 5 + index) } }

    @Test(arguments: [Mirror.a, .b])
    func aLogGoesOnOnTheOtherMirrorAndReopensWithEveryRecord(failing: Mirror) throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let log = try MessageLog(store: store, name: "rank-0", segmentBytesMax: 600)
        try log.append(Array(Self.records[0..<3]))
        let marker = store.root(failing) + "/" + MirroredStore.failWritesMarker
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        try log.append(Array(Self.records[3..<8]))  // goes on without the failing mirror, across segments
        #expect(log.failedMirror?.mirror == failing && log.failedMirror?.error.code == .noSpace)
        try log.truncate(from: 7)  // a cut while degraded: a higher generation on one mirror only
        try log.append([Self.records[8]])
        let expected = Array(Self.records[0..<7]) + [Self.records[8]]
        #expect(log.records == expected)
        try FileManager.default.removeItem(atPath: marker)
        // A crash now: reopening reads both and keeps the copy written since, whichever it is.
        let inspection = try MessageLog.inspect(store: store, name: "rank-0")
        #expect(!inspection.recordsLost && inspection.kept == 0..<8, "\(inspection.problems)")
        let reopened = try MessageLog(store: store, name: "rank-0", segmentBytesMax: 600)
        #expect(reopened.records == expected && reopened.failedMirror == nil)
        #expect(try MessageLog.inspect(store: store, name: "rank-0").isHealthy, "reopening repaired the left-behind copy")
    }

    @Test func writingBothAgainRewritesTheLeftBehindMirror() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let log = try MessageLog(store: store, name: "rank-2", segmentBytesMax: 500)
        try log.append(Array(Self.records[0..<2]))
        try log.write(only: [.b])  // the supervisor's word: A failed elsewhere
        try log.append(Array(Self.records[2..<6]))
        try log.trim(before: 3)
        #expect(!(try MessageLog.inspect(store: store, name: "rank-2").isHealthy))
        let marker = store.root(.a) + "/" + MirroredStore.failWritesMarker
        #expect(FileManager.default.createFile(atPath: marker, contents: nil))
        let error = storageError { () throws(StorageError) in try log.write(only: [.a, .b]) }
        #expect(error?.mirror == .a, "adding back a mirror that still fails says so: \(String(describing: error))")
        try FileManager.default.removeItem(atPath: marker)
        try log.write(only: [.a, .b])
        try log.append([Self.records[6]])
        let inspection = try MessageLog.inspect(store: store, name: "rank-2")
        #expect(inspection.isHealthy, "\(inspection.problems)")
        #expect(try MessageLog(store: store, name: "rank-2", segmentBytesMax: 500).records == log.records)
    }

    /// A log trimmed while B was not written leaves B's older segments behind: reopened on A
    /// alone (a rank restarted while degraded) it is A's log; once B takes writes again, the
    /// stale segments are pruned and reopening on both keeps every record.
    @Test func aLogTrimmedWhileAMirrorWasDroppedReopensWhole() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let log = try MessageLog(store: store, name: "rank-4", segmentBytesMax: 400)
        try log.append(Array(Self.records[0..<3]))
        try log.write(only: [.a])
        try log.append(Array(Self.records[3..<10]))
        try log.trim(before: 6)
        let expected = log.records
        #expect(log.firstIndex > 0, "the trim deleted segments on A")
        let onA = try MessageLog(store: store.writing(only: [.a]), name: "rank-4", segmentBytesMax: 400)
        #expect(onA.records == expected && onA.firstIndex == log.firstIndex)
        #expect(try MessageLog.pruneStale(store: store, name: "rank-4", on: .b) > 0)
        let reopened = try MessageLog(store: store, name: "rank-4", segmentBytesMax: 400)
        #expect(reopened.records == expected && reopened.firstIndex == log.firstIndex)
        #expect(try MessageLog.inspect(store: store, name: "rank-4").isHealthy)
    }

    @Test func bothMirrorsFailingFailsTheWrite() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let log = try MessageLog(store: store, name: "rank-3")
        try log.append([Self.records[0]])
        for mirror in Mirror.allCases {
            #expect(FileManager.default.createFile(atPath: store.root(mirror) + "/" + MirroredStore.failWritesMarker, contents: nil))
        }
        let error = storageError { () throws(StorageError) in try log.append([Self.records[1]]) }
        #expect(error?.code == .noSpace && error?.mirror == .b, "A dropped, then B fails too: \(String(describing: error))")
        #expect(storageError { () throws(StorageError) in try log.append([Self.records[2]]) } != nil, "the log refuses after that")
    }
}
