import Foundation
import Testing
@testable import LifelineStorage

/// The mirrored append-only message log: records survive a reopen, trimming and cutting, and —
/// the corruption matrix for log segments — each fault on A or on B is repaired from the other
/// mirror with every record intact, while a fault on both yields the longest valid prefix and
/// never a record whose checksum fails.
struct MessageLogTests {
    enum Fault: CaseIterable { case bitFlip, truncation, deletion, zeroLength, wrongMagic, wrongVersion }

    static let headerBytes = 24

    /// Ten records of different lengths, their bytes a function of their index.
    static let records: [[UInt8]] = (0..<10).map { index in (0..<(5 + 37 * index)).map { UInt8(truncatingIfNeeded: $0 * 7 + index) } }

    private func writtenLog(_ folder: TemporaryFolder) throws -> (MirroredStore, [String]) {
        let store = try folder.store()
        let log = try MessageLog(store: store, name: "rank-1")
        try log.append(Array(Self.records[0..<4]))
        try log.append(Array(Self.records[4...]))
        let paths = [Mirror.a, .b].map { store.path(MessageLog.folder + "/rank-1/" + MessageLog.segmentName(0), on: $0) }
        return (store, paths)
    }

    static func damage(_ path: String, with fault: Fault) {
        switch fault {
        case .bitFlip: Disk.flipBit(path, byte: headerBytes + 8 + 200)  // inside the fourth record
        case .truncation: Disk.truncate(path, to: Disk.bytes(path).count / 2)
        case .deletion: Disk.delete(path)
        case .zeroLength: Disk.put([], at: path)
        case .wrongMagic: Disk.flipBit(path, byte: 0)
        case .wrongVersion:
            var bytes = Disk.bytes(path)
            bytes[4] = UInt8(truncatingIfNeeded: MessageLog.version + 1)
            let crc = Checksum.crc32(bytes[0..<16])
            for index in 0..<4 { bytes[16 + index] = UInt8(truncatingIfNeeded: crc >> (8 * index)) }
            Disk.put(bytes, at: path)
        }
    }

    /// A rank moved off a lost host takes its log from where another host kept it: the
    /// newest copy (by incarnation, then where that incarnation's newest segment starts, then
    /// the count) replaces an older copy on its new host whole, through a hidden folder renamed
    /// into place, and opens with every record.
    @Test func aCopyKeptElsewhereReplacesAnOlderOneWhole() throws {
        let name = { (index: UInt64, incarnation: UInt32) in MessageLog.segmentName(MessageLog.SegmentID(index: index, incarnation: incarnation)) }
        #expect(MessageLog.newness(ofFiles: [name(0, 4)]).lexicographicallyPrecedes(MessageLog.newness(ofFiles: [name(0, 3), name(10, 3)])) == false)
        #expect(MessageLog.newness(ofFiles: [name(0, 3), name(7, 3)]).lexicographicallyPrecedes(MessageLog.newness(ofFiles: [name(10, 3)])))
        #expect(MessageLog.newness(ofFiles: ["lock", "notes.txt"]) == [0, 0, 0])

        let kept = TemporaryFolder()
        defer { kept.remove() }
        let keptStore = try kept.store()
        let current = try MessageLog(store: keptStore, name: "rank-1", incarnation: 3)
        try current.append(Self.records)
        let folderA = keptStore.root(.a) + "/" + MessageLog.folder + "/rank-1"
        let files = PosixFile.entries(folderA).map { (name: $0, bytes: Disk.bytes(folderA + "/" + $0)) }

        let moved = TemporaryFolder()
        defer { moved.remove() }
        let movedStore = try moved.store()
        let stale = try MessageLog(store: movedStore, name: "rank-1", incarnation: 1)
        try stale.append([[9, 9, 9]])
        #expect(MessageLog.newestIncarnation(root: movedStore.root(.a), name: "rank-1") == 1)
        try MessageLog.adopt(files + [(name: "notes.txt", bytes: [1])], root: movedStore.root(.a), name: "rank-1")
        let adopted = movedStore.root(.a) + "/" + MessageLog.folder
        #expect(PosixFile.entries(adopted) == ["rank-1"], "no staging folder left behind")
        #expect(PosixFile.entries(adopted + "/rank-1") == files.map(\.name))
        #expect(MessageLog.newestIncarnation(root: movedStore.root(.a), name: "rank-1") == 3)
        // Its new partner (mirror B here) holds nothing of it yet: opening fills it from A.
        try PosixFile.removeTree(movedStore.root(.b) + "/" + MessageLog.folder + "/rank-1")
        let reopened = try MessageLog(store: movedStore, name: "rank-1", incarnation: 5)
        #expect(reopened.firstIndex == 0 && reopened.records == Self.records)
    }

    @Test func recordsSurviveReopenTrimAndCut() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, paths) = try writtenLog(folder)
        var log = try MessageLog(store: store, name: "rank-1")
        #expect(log.records == Self.records && log.firstIndex == 0 && log.nextIndex == 10 && log.problems.isEmpty)
        try log.trim(before: 3)  // all in one segment: nothing to delete yet
        try log.truncate(from: 8)
        log = try MessageLog(store: store, name: "rank-1")
        #expect(log.firstIndex == 0 && log.records == Array(Self.records[0..<8]))
        #expect(Disk.bytes(paths[0]) == Disk.bytes(paths[1]), "the mirrors agree")
        // Appending after a cut continues at the cut, on both mirrors.
        try log.append([[42]])
        #expect(log.syncCount == 2, "one fdatasync per mirror for the batch")
        #expect(log.syncSeconds > 0, "the append's durable write is timed")
        log = try MessageLog(store: store, name: "rank-1")
        #expect(log.nextIndex == 9 && log.records.last == [42])
    }

    /// A kill between A's append and B's leaves B shorter: healthy records, nothing lost.
    @Test func shorterMirrorIsRepairableNotLost() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, paths) = try writtenLog(folder)
        let shorter = Disk.bytes(paths[1])
        let log = try MessageLog(store: store, name: "rank-1")
        try log.append([[9, 9]])
        Disk.put(shorter, at: paths[1])
        let inspection = try MessageLog.inspect(store: store, name: "rank-1")
        #expect(!inspection.recordsLost && inspection.kept == 0..<11 && inspection.problems.count == 1, "\(inspection)")
    }

    /// Mirror A's copy alone keeps every record, none lost, when it is whole (what a lone
    /// recovery's check relies on to spare reading B), and fewer when its tail is torn, however
    /// whole B is; damaged inside, it has lost records.
    @Test func firstMirrorAloneProvesAWholeLog() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, paths) = try writtenLog(folder)
        let whole = try #require(try MessageLog.inspectFirstMirror(store: store, name: "rank-1"))
        #expect(!whole.recordsLost && !whole.isMissing && whole.kept == 0..<10, "\(whole)")
        #expect(whole.problems.allSatisfy { $0.contains("/b/") && $0.contains("missing") }, "\(whole.problems)")
        let bytes = Disk.bytes(paths[0])
        Disk.put(Array(bytes.dropLast(3)), at: paths[0])
        let torn = try #require(try MessageLog.inspectFirstMirror(store: store, name: "rank-1"))
        #expect(torn.kept.upperBound < 10, "\(torn)")
        Disk.put(bytes, at: paths[0])
        Self.damage(paths[0], with: .bitFlip)
        let damaged = try #require(try MessageLog.inspectFirstMirror(store: store, name: "rank-1"))
        #expect(damaged.recordsLost || damaged.kept.upperBound < 10, "\(damaged)")
        #expect(try MessageLog.inspect(store: store, name: "rank-1").kept == 0..<10, "both mirrors keep every record")
    }

    /// `resume(at:)` makes an index the next one, inside the log, past its end or before it.
    @Test func resumeAtMakesTheNextIndex() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, _) = try writtenLog(folder)
        let log = try MessageLog(store: store, name: "rank-1")
        try log.resume(at: 6)
        #expect(log.firstIndex == 0 && log.records == Array(Self.records[0..<6]))
        try log.resume(at: 20)
        #expect(log.firstIndex == 20 && log.records.isEmpty)
        try log.append([[7]])
        try log.resume(at: 4)
        let reopened = try MessageLog(store: store, name: "rank-1")
        #expect(reopened.firstIndex == 4 && reopened.records.isEmpty && reopened.nextIndex == 4)
    }

    @Test(arguments: Fault.allCases)
    func singleMirrorFaultIsRepaired(fault: Fault) throws {
        for (damaged, mirror) in [(0, Mirror.a), (1, .b)] {
            let folder = TemporaryFolder()
            defer { folder.remove() }
            let (store, paths) = try writtenLog(folder)
            let original = Disk.bytes(paths[1 - damaged])
            Self.damage(paths[damaged], with: fault)
            let label = "\(fault) on \(mirror)"
            let inspection = try MessageLog.inspect(store: store, name: "rank-1")
            #expect(!inspection.isHealthy && !inspection.recordsLost && inspection.kept == 0..<10, "\(label): \(inspection)")
            let log = try MessageLog(store: store, name: "rank-1")
            #expect(log.records == Self.records, "\(label): every record is back")
            #expect(!log.problems.isEmpty, "\(label): the damage is reported")
            #expect(try MessageLog.inspect(store: store, name: "rank-1").isHealthy, "\(label): healthy once opened")
            for path in paths { #expect(Disk.bytes(path) == original, "\(label): \(path) repaired") }
        }
    }

    @Test(arguments: Fault.allCases)
    func doubleFaultReturnsOnlyAValidPrefix(fault: Fault) throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, paths) = try writtenLog(folder)
        for path in paths { Self.damage(path, with: fault) }
        let label = "\(fault) on both"
        let inspection = try MessageLog.inspect(store: store, name: "rank-1")
        #expect(inspection.recordsLost == (fault != .deletion) && inspection.isMissing == (fault == .deletion),
                "\(label): \(inspection)")
        let log = try MessageLog(store: store, name: "rank-1")
        // Never a record that was not written, never one whose checksum fails: a prefix.
        #expect(log.records.count < Self.records.count, "\(label): something was lost")
        #expect(Array(Self.records.prefix(log.records.count)) == log.records, "\(label): \(log.records.count) records")
        switch fault {
        case .bitFlip:
            #expect(log.records.count == 3, "\(label): the records before the damaged one")
        case .truncation:
            #expect(log.records.count >= 1, "\(label): the whole records before the cut")
        case .deletion:
            #expect(log.records.isEmpty && log.problems.isEmpty, "\(label): no log at all")
        case .zeroLength, .wrongMagic, .wrongVersion:
            #expect(log.records.isEmpty, "\(label)")
        }
        if fault != .deletion {
            #expect(log.problems.count == 2 && log.problems.allSatisfy { problem in paths.contains { problem.hasPrefix($0) } },
                    "\(label): each mirror's damage is named: \(log.problems)")
        }
        // The cut log is consistent again: both mirrors agree and it takes appends.
        #expect(Disk.bytes(paths[0]) == Disk.bytes(paths[1]), "\(label)")
        try log.append([[1, 2, 3]])
        #expect(try MessageLog(store: store, name: "rank-1").records.last == [1, 2, 3], "\(label)")
    }

    /// Small segments: appends roll over to new segment files, trimming deletes whole ones,
    /// cutting rewrites only the segment it falls in, and reopening joins them again.
    @Test func segmentsRollTrimAndCut() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let segmentBytes = 200
        var log = try MessageLog(store: store, name: "seg", segmentBytesMax: segmentBytes)
        for record in Self.records { try log.append([record]) }
        let folderA = store.path(MessageLog.folder + "/seg", on: .a)
        let segmentNames = PosixFile.entries(folderA)
        #expect(segmentNames.count > 3, "\(segmentNames)")
        #expect(segmentNames == PosixFile.entries(store.path(MessageLog.folder + "/seg", on: .b)))
        log = try MessageLog(store: store, name: "seg", segmentBytesMax: segmentBytes)
        #expect(log.records == Self.records && log.problems.isEmpty)

        try log.trim(before: 6)
        #expect(log.firstIndex <= 6 && log.firstIndex > 0, "whole segments before record 6 are gone: \(log.firstIndex)")
        #expect(PosixFile.entries(folderA).count < segmentNames.count)
        try log.truncate(from: 8)
        log = try MessageLog(store: store, name: "seg", segmentBytesMax: segmentBytes)
        #expect(log.nextIndex == 8 && log.records == Array(Self.records[Int(log.firstIndex)..<8]))
        try log.append([[5, 5]])
        #expect(try MessageLog(store: store, name: "seg").records.last == [5, 5])
    }

    /// A middle segment damaged on one mirror is repaired; on both, the log keeps the segments
    /// before it and drops the rest, and says records were lost.
    @Test func middleSegmentDamage() throws {
        for both in [false, true] {
            let folder = TemporaryFolder()
            defer { folder.remove() }
            let store = try folder.store()
            let log = try MessageLog(store: store, name: "seg", segmentBytesMax: 200)
            for record in Self.records { try log.append([record]) }
            let names = PosixFile.entries(store.path(MessageLog.folder + "/seg", on: .a))
            let middle = names[names.count / 2]
            let middleIndex = try #require(MessageLog.segmentIndex(middle))
            for mirror in both ? [Mirror.a, .b] : [.b] {
                Disk.flipBit(store.path(MessageLog.folder + "/seg/" + middle, on: mirror), byte: Self.headerBytes + 10)
            }
            let inspection = try MessageLog.inspect(store: store, name: "seg")
            #expect(inspection.recordsLost == both, "\(inspection)")
            let reopened = try MessageLog(store: store, name: "seg")
            if both {
                #expect(reopened.nextIndex < 10 && reopened.nextIndex >= middleIndex, "\(reopened.nextIndex)")
                #expect(reopened.records == Array(Self.records[0..<Int(reopened.nextIndex)]))
            } else {
                #expect(reopened.records == Self.records)
            }
        }
    }

    /// A crash inside a cut or a restart, after the new last segment is written and before the
    /// old ones are deleted (simulated by putting them back): recovery drops what the cut
    /// discarded, without calling it lost, and B's older, longer copy does not undo the cut.
    @Test func cutsSurviveACrashBeforeTheirDeletes() throws {
        for cut in [UInt64(5), 0, 30] {  // inside the log, to its very start, past its end
            let folder = TemporaryFolder()
            defer { folder.remove() }
            let store = try folder.store()
            let log = try MessageLog(store: store, name: "seg", segmentBytesMax: 200)
            for record in Self.records { try log.append([record]) }
            var saved: [String: [UInt8]] = [:]
            for mirror in [Mirror.a, .b] {
                let segmentFolder = store.path(MessageLog.folder + "/seg", on: mirror)
                for name in PosixFile.entries(segmentFolder) { saved[segmentFolder + "/" + name] = Disk.bytes(segmentFolder + "/" + name) }
            }
            try log.resume(at: cut)
            let afterCut = log.records
            for (path, bytes) in saved where !FileManager.default.fileExists(atPath: path) || path.contains("/b/") {
                Disk.put(bytes, at: path)  // the deletes never happened; B kept its old copies
            }
            let label = "resume(at: \(cut))"
            let inspection = try MessageLog.inspect(store: store, name: "seg")
            #expect(!inspection.recordsLost, "\(label): \(inspection.problems)")
            let reopened = try MessageLog(store: store, name: "seg")
            #expect(reopened.nextIndex == cut && reopened.records == afterCut, "\(label): \(reopened.firstIndex)..<\(reopened.nextIndex)")
            #expect(try MessageLog.inspect(store: store, name: "seg").isHealthy, "\(label): repaired on open")
        }
    }

    /// Zeros at the end of a segment (a file system's filler after a power loss) are not
    /// records.
    @Test func zeroFilledTailIsNotARecord() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let (store, paths) = try writtenLog(folder)
        for path in paths { Disk.put(Disk.bytes(path) + [UInt8](repeating: 0, count: 64), at: path) }
        let log = try MessageLog(store: store, name: "rank-1")
        #expect(log.records == Self.records)
        #expect(log.problems.count == 2 && log.problems.allSatisfy { $0.contains("empty record") }, "\(log.problems)")
    }

    /// Fencing by incarnation: a process of the rank left running after its replacement opened
    /// the log (cut off, stopped) appends on; what it writes from the replacement's claim on —
    /// past the end of its segment, or in a segment it starts — is not the log's, and a process
    /// of an older incarnation than the log's newest cannot open it.
    @Test func anOlderIncarnationLeftRunningIsFencedOffTheLog() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let stale = try MessageLog(store: store, name: "rank-2", incarnation: 1, segmentBytesMax: 600)
        try stale.append(Array(Self.records[0..<3]))
        let names = { PosixFile.entries(store.path(MessageLog.folder + "/rank-2", on: .a)).sorted() }
        #expect(names() == ["00000000000000000000-0000000001.seg"])

        // The replacement (incarnation 4) claims the log at its end: record 3.
        let replacement = try MessageLog(store: store, name: "rank-2", incarnation: 4, segmentBytesMax: 600)
        #expect(replacement.records == Array(Self.records[0..<3]) && replacement.problems.isEmpty, "\(replacement.problems)")
        #expect(names() == ["00000000000000000000-0000000001.seg", "00000000000000000003-0000000004.seg"])
        // The old process goes on: into its own segment, and (past 600 bytes) into a new one.
        try stale.append([[0xEE, 1], [0xEE, 2]])
        try stale.append(Array(Self.records[5..<8]))
        #expect(names().count == 3, "\(names())")
        try replacement.append(Array(Self.records[3..<6]))

        let reopened = try MessageLog(store: store, name: "rank-2", incarnation: 5)
        #expect(reopened.records == Array(Self.records[0..<6]), "\(reopened.problems)")
        #expect(reopened.problems.contains { $0.contains("records from 3 on cut: incarnation 4 took the log over") }, "\(reopened.problems)")
        #expect(reopened.problems.contains { $0.contains("dropped: incarnation 4 took the log over at record 3") }, "\(reopened.problems)")
        // Its segments are gone, and the first is cut back to what it held at the claim.
        #expect(names().allSatisfy { !$0.hasSuffix("0000000001.seg") || $0.hasPrefix("00000000000000000000") }, "\(names())")
        #expect(try MessageLog.inspect(store: store, name: "rank-2").isHealthy)

        // An older incarnation cannot open the log any more.
        #expect(storageError { () throws(StorageError) in _ = try MessageLog(store: store, name: "rank-2", incarnation: 4) }?.code == .fenced)
        // The tools open it without a claim.
        let tool = try MessageLog(store: store, name: "rank-2")
        #expect(tool.records == Array(Self.records[0..<6]) && tool.incarnation == 5)
        #expect(MessageLog.newestIncarnation(store: store) == 5)
    }

    /// A replacement cutting the log back into the older incarnation's segment (optimistic
    /// logging's rollback) replaces that segment by one of its own: still fenced after a reopen.
    @Test func aCutIntoAnOlderIncarnationsSegmentIsTheNewOnes() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try folder.store()
        let stale = try MessageLog(store: store, name: "rank-3", incarnation: 1)
        try stale.append(Array(Self.records[0..<6]))
        let replacement = try MessageLog(store: store, name: "rank-3", incarnation: 2)
        try replacement.truncate(from: 4)
        try stale.append([[0xEE, 1]])  // into a file no longer in the log
        try replacement.append([[7, 7, 7]])
        let reopened = try MessageLog(store: store, name: "rank-3", incarnation: 3)
        #expect(reopened.records == Array(Self.records[0..<4]) + [[7, 7, 7]], "\(reopened.problems)")
    }
}
