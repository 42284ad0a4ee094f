import Foundation
import Testing
@testable import LifelineStorage

/// Level 1 of `--levels memory,disk`: a rank's copy of a round in the host's memory, checked
/// when read; the manifest keeps a line on disk while newer ones are in memory alone; the
/// recovery line is found in memory first and on disk when a copy there is gone.
@Suite struct MemoryLevelTests {
    func state(rank: Int, epoch: UInt64, bytes: Int = 3 * 4096) -> [UInt8] {
        var generator = SeededGenerator(state: UInt64(rank) << 32 | epoch)
        return (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// A snapshot's metadata, as a rank's copy stores it after the state.
    func metadata(rank: Int, epoch: UInt64) -> [UInt8] {
        Array("metadata of rank \(rank), round \(epoch)".utf8)
    }

    func write(_ level: MemoryLevel, rank: Int, epoch: UInt64) throws {
        try level.write(rank: rank, epoch: epoch, state: state(rank: rank, epoch: epoch), metadata: metadata(rank: rank, epoch: epoch))
    }

    func line(_ epoch: UInt64, ranks: Int, manifests: ManifestStore? = nil, inMemory: Bool? = nil, onDisk: Bool? = nil) -> CommittedLine {
        var line = CommittedLine(epoch: epoch, step: Int(epoch), members: (0..<ranks).map {
            Member(rank: $0, snapshot: manifests?.snapshotName(epoch: epoch, rank: $0) ?? "epochs/\(epoch)/rank-\($0)", step: Int(epoch), incarnation: 0,
                   outputOffset: 0, snapshotBytes: 0)
        })
        line.inMemory = inMemory
        line.onDisk = onDisk
        return line
    }

    /// A copy fetched from another host in parts is whole under its name, also when its size is
    /// an exact multiple of a part (the last, empty part ends it); a copy that goes missing
    /// midway leaves nothing behind. A copy sent in parts, and its first part's temporary file,
    /// are their rank's (removed with its copies), and no reader takes them for copies.
    @Test func aCopyFetchedInPartsIsWholeAndAMissingOneLeavesNothing() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let source = MemoryLevel(folder: folder.path + "/source")
        try source.create()
        try write(source, rank: 1, epoch: 4)
        let copy = try #require(FileManager.default.contents(atPath: source.folder + "/" + MemoryLevel.fileName(rank: 1, epoch: 4)))
        let bytes = [UInt8](copy)
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        for partBytes in [4096, 1000, bytes.count, bytes.count / 2 + 1] {
            var asked = 0
            try level.adopt(rank: 1, epoch: 4, partBytes: partBytes) { offset throws(StorageError) in
                asked += 1
                return Array(bytes[min(offset, bytes.count)..<min(offset + partBytes, bytes.count)])
            }
            let fetched = try #require(FileManager.default.contents(atPath: level.folder + "/" + MemoryLevel.fileName(rank: 1, epoch: 4)))
            #expect([UInt8](fetched) == bytes, "parts of \(partBytes)")
            #expect(asked == bytes.count / partBytes + 1)
        }
        let exact = Array(bytes[..<8192])
        try level.adopt(rank: 2, epoch: 4, partBytes: 4096) { offset throws(StorageError) in
            Array(exact[min(offset, exact.count)..<min(offset + 4096, exact.count)])
        }
        #expect(FileManager.default.contents(atPath: level.folder + "/" + MemoryLevel.fileName(rank: 2, epoch: 4)).map([UInt8].init) == exact)
        #expect(throws: StorageError.self) {
            try level.adopt(rank: 3, epoch: 4, partBytes: 4096) { offset throws(StorageError) in offset == 0 ? Array(bytes[..<4096]) : nil }
        }
        #expect(!level.has(rank: 3, epoch: 4))
        #expect(PosixFile.entries(level.folder).allSatisfy { !$0.contains("000003-") }, "\(PosixFile.entries(level.folder))")

        let partial = MemoryLevel.partialName(of: MemoryLevel.fileName(rank: 5, epoch: 9))
        #expect(MemoryLevel.parse(partial) == nil)
        #expect(MemoryLevel.parse(partial: partial)! == (5, 9))
        #expect(MemoryLevel.owner(of: partial) == 5)
        #expect(MemoryLevel.owner(of: PosixFile.temporaryName(for: partial)) == 5)
        #expect(MemoryLevel.owner(of: "notes.part") == nil)
    }

    /// A job folder whose owner lock another process can take (its supervisor died: here its
    /// descriptor closed) is removed with what it holds; one whose lock is held, one with no
    /// lock, and anything not named as a job folder stay. Copies around the lock are removed
    /// without it (`removeCopies`), and a second lock on a held folder is refused.
    @Test func aFolderWhoseSupervisorDiedIsReclaimedAndNoOther() throws {
        let root = TemporaryFolder()
        defer { root.remove() }
        let dead = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "dead"))
        let live = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "live"))
        let unlocked = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "hosts", host: "node1"))
        for level in [dead, live, unlocked] {
            try level.create()
            try write(level, rank: 0, epoch: 1)
        }
        try FileManager.default.createDirectory(atPath: root.path + "/other", withIntermediateDirectories: true)
        close(try dead.holdOwnerLock())
        let held = try live.holdOwnerLock()
        defer { close(held) }
        #expect(throws: StorageError.self) { _ = try live.holdOwnerLock() }
        live.removeCopies()
        #expect(PosixFile.entries(live.folder) == [MemoryLevel.ownerLockName], "the copies go, the lock stays")
        try write(live, rank: 0, epoch: 2)
        let reclaimed = MemoryLevel.reclaimAbandoned(root: root.path + "/")
        #expect(reclaimed.map(\.folder) == [dead.folder])
        #expect((reclaimed.first?.bytes ?? 0) > 0)
        #expect(!PosixFile.isDirectory(dead.folder))
        #expect(live.has(rank: 0, epoch: 2) && unlocked.has(rank: 0, epoch: 1))
        #expect(PosixFile.isDirectory(root.path + "/other"))
        #expect(MemoryLevel.reclaimAbandoned(root: root.path).isEmpty, "nothing more to reclaim")
        // The caller's own folder is never taken, its lock free or not.
        let own = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "own"))
        try own.create()
        close(try own.holdOwnerLock())
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, sparingJobOf: own.folder).isEmpty)
        #expect(PosixFile.isDirectory(own.folder))
        // A new supervisor of a job takes its folder over: not while a live one holds it; from
        // one that died, emptied and locked anew.
        func lock(_ taken: MemoryLevel.TakeOver) -> Int32? {
            if case .taken(let lock) = taken { lock } else { nil }
        }
        #expect(lock(try live.takeOver(patienceSeconds: 0.05)) == nil)
        #expect(live.has(rank: 0, epoch: 2), "a refused takeover leaves the folder as it was")
        close(try #require(lock(try unlocked.takeOver())))
        #expect(PosixFile.entries(unlocked.folder) == [MemoryLevel.ownerLockName])
        let again = try #require(lock(try unlocked.takeOver()))
        defer { close(again) }
        #expect(PosixFile.entries(unlocked.folder) == [MemoryLevel.ownerLockName])
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, sparingJobOf: own.folder).isEmpty, "its new lock is held")
        // A folder that a reclaiming process died removing (renamed aside first, named by its
        // pid; none has a pid above 2^22) goes too; one that a live process removes is its own.
        let removing = root.path + "/" + MemoryLevel.reclaimingPrefix + "\(getpid())-removing"
        let aside = root.path + "/" + MemoryLevel.reclaimingPrefix + "99999999-dead"
        for folder in [removing, aside] { try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true) }
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, sparingJobOf: own.folder).map(\.folder) == [aside])
        #expect(!PosixFile.isDirectory(aside) && PosixFile.isDirectory(removing))
    }

    /// On several hosts a job's ranks on a host share its folder's lock: the folder is taken
    /// for abandoned only once none of them holds it and it went untouched a while (a rank of
    /// the job may be relaunched), never while one holds it, never by a process of the same job
    /// (its folders on other hosts that share the memory file system are spared too), and the
    /// last rank to let go as the job ends removes the folder. Reclaiming opens no descriptor
    /// it does not close.
    @Test func aHostsFolderIsReclaimedOnceNoRankOfItsJobHoldsItsLock() throws {
        let root = TemporaryFolder()
        defer { root.remove() }
        let killed = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "killed", host: "node1"))
        let running = MemoryLevel(folder: MemoryLevel.folder(root: root.path, jobID: "running", host: "node1"))
        let first = try #require(killed.holdRanksLock())
        let second = try #require(killed.holdRanksLock(), "the ranks of a host share the lock")
        try write(killed, rank: 0, epoch: 1)
        try write(killed, rank: 1, epoch: 1)
        let held = try #require(running.holdRanksLock())
        try write(running, rank: 2, epoch: 1)
        close(first)
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, ranksIdleSeconds: 0).isEmpty, "a rank of each job still lives")
        close(second)
        #expect(MemoryLevel.reclaimAbandoned(root: root.path).isEmpty, "its lock was touched just now")
        // A rank of the killed job on another host of this memory file system spares its job.
        let sibling = MemoryLevel.folder(root: root.path, jobID: "killed", host: "node2")
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, sparingJobOf: sibling, ranksIdleSeconds: 0).isEmpty)
        let openBefore = openFiles(under: root.path)
        let reclaimed = MemoryLevel.reclaimAbandoned(root: root.path, sparingJobOf: running.folder, ranksIdleSeconds: 0)
        #expect(openFiles(under: root.path) == openBefore, "reclaiming left descriptors open")
        #expect(reclaimed.map(\.folder) == [killed.folder] && (reclaimed.first?.bytes ?? 0) > 0, "\(reclaimed)")
        #expect(!PosixFile.isDirectory(killed.folder))
        #expect(running.has(rank: 2, epoch: 1))
        // A rank that takes the lock again makes the folder anew.
        let relaunched = try #require(killed.holdRanksLock())
        #expect(PosixFile.entries(killed.folder) == [MemoryLevel.ranksLockName])
        close(relaunched)
        // The job ends on a host: a rank that lets go while another holds the lock leaves the
        // folder; the last one removes it, once the copies are gone.
        let other = try #require(running.holdRanksLock())
        running.releaseRanksLock(held)
        #expect(PosixFile.isDirectory(running.folder))
        running.removeCopies(of: 2)
        running.releaseRanksLock(other)
        #expect(!PosixFile.isDirectory(running.folder))
        #expect(MemoryLevel.reclaimAbandoned(root: root.path, ranksIdleSeconds: 0).map(\.folder) == [killed.folder],
                "the folder left free is taken")
    }

    /// What this process's open descriptors under `folder` name (tests that run beside open
    /// others of their own), each as often as it is open.
    func openFiles(under folder: String) -> [String] {
        PosixFile.entries("/proc/self/fd").compactMap { entry -> String? in
            var target = [CChar](repeating: 0, count: 4096)
            let count = readlink("/proc/self/fd/" + entry, &target, target.count - 1)
            guard count > 0 else { return nil }
            let path = String(decoding: target[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return path.hasPrefix(folder) ? path : nil
        }.sorted()
    }

    @Test func aCopyReadsBackAndAnyChangeToItIsRefused() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        let bytes = state(rank: 2, epoch: 7)
        let written = try level.write(rank: 2, epoch: 7, state: bytes, metadata: metadata(rank: 2, epoch: 7))
        #expect(written == MemoryLevel.headerByteCount + bytes.count + metadata(rank: 2, epoch: 7).count)
        let read = try #require(try level.map(rank: 2, epoch: 7))
        #expect(Array(read.state) == bytes && Array(read.metadata) == metadata(rank: 2, epoch: 7))
        #expect(try level.map(rank: 2, epoch: 8) == nil)
        #expect(level.has(rank: 2, epoch: 7) && !level.has(rank: 1, epoch: 7))

        let path = folder.path + "/memory/" + MemoryLevel.fileName(rank: 2, epoch: 7)
        let original = try #require(FileManager.default.contents(atPath: path))
        // A flipped byte anywhere (header or body), a cut, or another rank's copy under this name.
        for offset in [0, 8, 16, 24, 32, 40, 56, MemoryLevel.headerByteCount + 5, original.count - 1] {
            var damaged = original
            damaged[offset] ^= 0x40
            try damaged.write(to: URL(fileURLWithPath: path))
            #expect(throws: StorageError.self, "a flip at \(offset) was not noticed") { try level.map(rank: 2, epoch: 7) }
        }
        try original.prefix(original.count - 10).write(to: URL(fileURLWithPath: path))
        #expect(throws: StorageError.self) { try level.map(rank: 2, epoch: 7) }
        try original.write(to: URL(fileURLWithPath: folder.path + "/memory/" + MemoryLevel.fileName(rank: 3, epoch: 7)))
        #expect(throws: StorageError.self) { try level.map(rank: 3, epoch: 7) }
    }

    @Test func aCommitRemovesTheRanksOlderCopiesAndWhatADeadWriterLeft() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        for epoch: UInt64 in [3, 4, 5] {
            for rank in 0..<2 { try write(level, rank: rank, epoch: epoch) }
        }
        let stale = folder.path + "/memory/." + MemoryLevel.fileName(rank: 0, epoch: 4) + ".tmp.12345.1"
        let underWay = folder.path + "/memory/." + MemoryLevel.fileName(rank: 0, epoch: 6) + ".tmp.12345.2"
        for path in [stale, underWay] { _ = FileManager.default.createFile(atPath: path, contents: Data([1, 2, 3])) }
        #expect(level.bytesHeld(rank: 0, except: 5) == 2 * (MemoryLevel.headerByteCount + 3 * 4096 + metadata(rank: 0, epoch: 3).count))
        level.removeOlder(rank: 0, than: 5)
        #expect(level.rounds(of: 0) == [5])
        #expect(level.rounds(of: 1) == [3, 4, 5])
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: underWay), "a later round's copy may be under way")
        level.removeCopies()
        #expect(level.rounds(of: 1).isEmpty)
        #expect(FileManager.default.fileExists(atPath: folder.path + "/memory"))
    }

    /// Minimal checkpoints: a rank that kept its checkpoint of round 2 through round 8 keeps
    /// that copy, and loses the others before 8 (one of an aborted round, 5, and one left from
    /// before a rollback, 7); the budget counts the kept copy as held.
    @Test func aCommitKeepsTheCopyARankKeptAsItsEntry() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        for epoch: UInt64 in [2, 5, 7] { try write(level, rank: 0, epoch: epoch) }
        let one = MemoryLevel.headerByteCount + 3 * 4096 + metadata(rank: 0, epoch: 2).count
        #expect(level.bytesHeld(rank: 0, except: 9, from: 8, keeping: 2) == one)
        #expect(level.bytesHeld(rank: 0, except: 9, from: 8) == 0)
        level.removeOlder(rank: 0, than: 8, keeping: 2)
        #expect(level.rounds(of: 0) == [2])
    }

    @Test func aCopyBegunAtTheCaptureOverTheSpareIsFinishedAtTheCutOrAbandoned() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        // Round 3's copy, made obsolete by round 4's commit, is kept as the rank's spare.
        try level.write(rank: 0, epoch: 3, state: state(rank: 0, epoch: 3, bytes: (3 << 20) + 4099), metadata: metadata(rank: 0, epoch: 3))
        try write(level, rank: 0, epoch: 4)
        level.removeOlder(rank: 0, than: 4)
        let spare = folder.path + "/memory/" + MemoryLevel.spareName(rank: 0)
        #expect(level.rounds(of: 0) == [4] && FileManager.default.fileExists(atPath: spare))
        // Round 5's state is copied at its capture, over the spare (longer than the new copy);
        // its commit of round 4 meanwhile keeps it.
        let bytes = state(rank: 0, epoch: 5, bytes: 3 << 20)  // several pieces of the copy
        let copy = try bytes.withUnsafeBytes { try level.begin(rank: 0, epoch: 5, state: $0) }
        #expect(!level.has(rank: 0, epoch: 5), "nothing is in place before the cut")
        #expect(!FileManager.default.fileExists(atPath: spare), "the spare is written over")
        level.removeOlder(rank: 0, than: 4)
        try metadata(rank: 0, epoch: 5).withUnsafeBytes { _ = try level.finish(copy, metadata: $0) }
        let mapped = try #require(try level.map(rank: 0, epoch: 5))
        #expect(Array(mapped.state) == bytes && Array(mapped.metadata) == metadata(rank: 0, epoch: 5))
        // An aborted round's copy leaves nothing behind.
        let aborted = try bytes.withUnsafeBytes { try level.begin(rank: 0, epoch: 6, state: $0) }
        level.abandon(aborted)
        #expect(PosixFile.entries(folder.path + "/memory").sorted()
            == [MemoryLevel.fileName(rank: 0, epoch: 4), MemoryLevel.fileName(rank: 0, epoch: 5)])
    }

    /// A rank's first copy has no older one to recycle: a spare is made for its next, of the
    /// size asked, only when it has none; the next copy is written over it and reads back.
    @Test func aSpareMadeAheadIsWrittenOverByTheNextCopy() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        try write(level, rank: 0, epoch: 1)
        let spare = folder.path + "/memory/" + MemoryLevel.spareName(rank: 0)
        #expect(level.prepareSpare(rank: 0, bytes: 1 << 20))
        let size = try FileManager.default.attributesOfItem(atPath: spare)[.size] as? Int
        #expect(size == 1 << 20)
        #expect(!level.prepareSpare(rank: 0, bytes: 2 << 20), "a rank has one spare")
        #expect(!level.prepareSpare(rank: 1, bytes: 0), "no spare of no bytes")
        #expect(level.rounds(of: 0) == [1], "a spare is no copy")
        try write(level, rank: 0, epoch: 2)
        #expect(!FileManager.default.fileExists(atPath: spare), "the spare is written over")
        let mapped = try #require(try level.map(rank: 0, epoch: 2))
        #expect(Array(mapped.state) == state(rank: 0, epoch: 2) && Array(mapped.metadata) == metadata(rank: 0, epoch: 2))
        #expect(PosixFile.entries(folder.path + "/memory").sorted()
            == [MemoryLevel.fileName(rank: 0, epoch: 1), MemoryLevel.fileName(rank: 0, epoch: 2)])
    }

    /// A rank's writer keeps its spare mapped: copies written through the mapping, round after
    /// round, as the state grows past the spare and shrinks again, read back exactly as written
    /// (a stale byte of the spare's older copy would show in the state or fail its hash), and a
    /// mapping goes once its file does (or the file's pages would stay allocated).
    @Test func copiesWrittenOverAMappedSpareReadBackExactly() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory", mapsCopies: true)
        let mappings = try #require(level.mappings)
        try level.create()
        let sizes = [5 * 4096, 5 * 4096, 9 * 4096 + 17, 2 * 4096 + 3, 2 * 4096 + 3, 6 * 4096]
        for (index, bytes) in sizes.enumerated() {
            let epoch = UInt64(index + 1)
            let written = state(rank: 0, epoch: epoch, bytes: bytes)
            try level.write(rank: 0, epoch: epoch, state: written, metadata: metadata(rank: 0, epoch: epoch))
            if index == 0 { level.prepareSpare(rank: 0, bytes: MemoryLevel.headerByteCount + bytes + 64) }
            let mapped = try #require(try level.map(rank: 0, epoch: epoch))
            #expect(Array(mapped.state) == written, "round \(epoch): the state read back differs")
            #expect(Array(mapped.metadata) == metadata(rank: 0, epoch: epoch))
            level.removeOlder(rank: 0, than: epoch)
            #expect(level.rounds(of: 0) == [epoch])
            #expect(mappings.count <= 2, "round \(epoch): \(mappings.count) files mapped, for a copy and a spare")
            #expect(mappings.count >= 1, "round \(epoch): the spare is mapped")
        }
        level.removeCopies()
        level.removeOlder(rank: 0, than: UInt64(sizes.count + 1))
        #expect(mappings.count == 0, "the files are gone, and so are their mappings")
    }

    @Test func aRelaunchedRankMapsTheSpareItsPredecessorLeft() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let bytes = 7 * 4096 + 5
        let predecessor = MemoryLevel(folder: folder.path + "/memory", mapsCopies: true)
        try predecessor.create()
        try predecessor.write(rank: 0, epoch: 1, state: state(rank: 0, epoch: 1, bytes: bytes), metadata: metadata(rank: 0, epoch: 1))
        #expect(predecessor.prepareSpare(rank: 0, bytes: MemoryLevel.headerByteCount + bytes))
        // The rank's next incarnation: a new process with nothing mapped, the files still there.
        let successor = MemoryLevel(folder: folder.path + "/memory", mapsCopies: true)
        let mappings = try #require(successor.mappings)
        #expect(mappings.count == 0)
        #expect(!successor.prepareSpare(rank: 0, bytes: MemoryLevel.headerByteCount + bytes), "the spare is there already")
        #expect(mappings.count == 1, "the predecessor's spare is mapped")
        let written = state(rank: 0, epoch: 2, bytes: bytes)
        try successor.write(rank: 0, epoch: 2, state: written, metadata: metadata(rank: 0, epoch: 2))
        let mapped = try #require(try successor.map(rank: 0, epoch: 2))
        #expect(Array(mapped.state) == written, "the copy written over the mapped spare reads back")
        #expect(Array(mapped.metadata) == metadata(rank: 0, epoch: 2))
    }

    /// A capture written straight into the mapped spare (`openCapture`): no spare, no target;
    /// a capture completed there reads back exactly, and the spare's older bytes past the new
    /// state do not show; a capture given up leaves the spare as it was found.
    @Test func aCaptureIntoTheSpareIsTheCopy() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory", mapsCopies: true)
        try level.create()
        #expect(level.openCapture(rank: 0, epoch: 1) == nil, "no spare yet")
        try level.write(rank: 0, epoch: 1, state: state(rank: 0, epoch: 1, bytes: 9 * 4096), metadata: metadata(rank: 0, epoch: 1))
        #expect(level.prepareSpare(rank: 0, bytes: MemoryLevel.headerByteCount + 9 * 4096))
        for (epoch, bytes) in [(UInt64(2), 9 * 4096), (3, 4 * 4096 + 5)] {
            let target = try #require(level.openCapture(rank: 0, epoch: epoch))
            #expect(target.state.count >= 9 * 4096, "the whole spare is room for the state")
            let written = state(rank: 0, epoch: epoch, bytes: bytes)
            written.withUnsafeBytes { target.state.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
            let copy = level.beginCaptured(target, stateLength: bytes)
            try MemoryLevel.withBytes(metadata(rank: 0, epoch: epoch)) { raw throws(StorageError) in _ = try level.finish(copy, metadata: raw) }
            let mapped = try #require(try level.map(rank: 0, epoch: epoch))
            #expect(Array(mapped.state) == written, "round \(epoch): the state read back differs")
            #expect(Array(mapped.metadata) == metadata(rank: 0, epoch: epoch))
            level.removeOlder(rank: 0, than: epoch)
            #expect(level.rounds(of: 0) == [epoch])
        }
        // Given up: the spare is back, and the next copy is made over it.
        let target = try #require(level.openCapture(rank: 0, epoch: 4))
        level.cancelCapture(target)
        #expect(level.rounds(of: 0) == [3])
        #expect(PosixFile.entries(level.folder).filter { $0.contains(".tmp.") }.isEmpty, "no temporary file left")
        #expect(level.openCapture(rank: 0, epoch: 4).map { level.cancelCapture($0); return true } == true, "the spare is there again")
    }

    /// A copy read in place (a drain) is pinned: commits neither remove it nor make it the spare
    /// that the next capture writes over, until it is unpinned and a later call collects it.
    @Test func aPinnedCopyIsNotWrittenOverUntilUnpinned() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let level = MemoryLevel(folder: folder.path + "/memory", mapsCopies: true)
        try level.create()
        try write(level, rank: 0, epoch: 1)
        level.pin(1)
        let drained = try #require(try level.map(rank: 0, epoch: 1, verifying: false))
        try write(level, rank: 0, epoch: 2)
        level.removeOlder(rank: 0, than: 2)
        #expect(level.rounds(of: 0) == [1, 2], "the pinned copy stays")
        #expect(level.openCapture(rank: 0, epoch: 3) == nil, "it did not become the spare")
        #expect(Array(drained.state) == state(rank: 0, epoch: 1))
        level.unpin(1)
        level.removeOlder(rank: 0, than: 2)
        #expect(level.rounds(of: 0) == [2])
        #expect(level.openCapture(rank: 0, epoch: 3).map { level.cancelCapture($0); return true } == true, "now it is the spare")
    }

    @Test func theManifestKeepsTheNewestLineOnDiskWhileNewerOnesAreInMemoryAlone() {
        var manifest = Manifest(jobID: "j", rankCount: 2)
        manifest.appendCommitted(line(1, ranks: 2, inMemory: true, onDisk: true), keep: 2)
        for epoch: UInt64 in 2...5 {
            manifest.appendCommitted(line(epoch, ranks: 2, inMemory: true, onDisk: false), keep: 2)
        }
        #expect(manifest.committed.map(\.epoch) == [1, 5], "the line on disk stays in place of the oldest kept")
        let recorded = manifest.recordOnDisk(epoch: 5)
        let dropped = manifest.recordOnDisk(epoch: 3)
        #expect(recorded)
        #expect(!dropped, "a dropped line is not recorded")
        manifest.appendCommitted(line(6, ranks: 2, inMemory: true, onDisk: false), keep: 2)
        #expect(manifest.committed.map(\.epoch) == [5, 6])
        #expect(manifest.committed.map(\.levels) == ["memory,disk", "memory"])
        #expect(manifest.invariantViolation == nil)
        var nowhere = manifest
        nowhere.committed[1].inMemory = false
        #expect(nowhere.invariantViolation != nil)
        // A manifest of a job on disk alone reads as before: no level fields, on disk.
        #expect(CommittedLine(epoch: 1, step: 1, members: []).levels == "disk")
    }

    @Test func aLineBeingDrainedStaysInTheManifestBeyondKeep() {
        var manifest = Manifest(jobID: "j", rankCount: 2)
        manifest.appendCommitted(line(1, ranks: 2, inMemory: true, onDisk: true), keep: 1)
        manifest.appendCommitted(line(2, ranks: 2, inMemory: true, onDisk: false), keep: 1)
        manifest.appendCommitted(line(3, ranks: 2, inMemory: true, onDisk: false), keep: 1, pinned: [2])
        #expect(manifest.committed.map(\.epoch) == [1, 2, 3], "the line on disk and the one being drained stay")
        manifest.appendCommitted(line(4, ranks: 2, inMemory: true, onDisk: false), keep: 1, pinned: [2, 3])
        #expect(manifest.committed.map(\.epoch) == [1, 2, 3, 4])
        let recorded = manifest.recordOnDisk(epoch: 2)
        #expect(recorded)
        manifest.appendCommitted(line(5, ranks: 2, inMemory: true, onDisk: false), keep: 1, pinned: [3])
        #expect(manifest.committed.map(\.epoch) == [2, 3, 5], "line 2, on disk now, is the anchor; line 1 goes")
        manifest.appendCommitted(line(6, ranks: 2, inMemory: true, onDisk: false), keep: 1)
        #expect(manifest.committed.map(\.epoch) == [2, 6], "unpinned, line 3 goes")
        #expect(manifest.invariantViolation == nil)
    }

    /// With the default `--keep 2` a pinned line inside the window never pushes out the
    /// newest line on disk, nor is it dropped for an older anchor.
    @Test func pinsNeverPushOutTheLinesKeptWithoutThem() {
        var manifest = Manifest(jobID: "j", rankCount: 2)
        manifest.appendCommitted(line(4, ranks: 2, inMemory: true, onDisk: true), keep: 2)
        manifest.appendCommitted(line(5, ranks: 2, inMemory: true, onDisk: false), keep: 2)
        manifest.appendCommitted(line(6, ranks: 2, inMemory: true, onDisk: false), keep: 2, pinned: [5])
        #expect(manifest.committed.map(\.epoch) == [4, 5, 6], "the anchor on disk and the line being drained stay")
        // A round written to disk at once (a copy over --memory-max) while round 5 still drains.
        var direct = Manifest(jobID: "j", rankCount: 2)
        direct.appendCommitted(line(4, ranks: 2, inMemory: true, onDisk: true), keep: 2)
        direct.appendCommitted(line(5, ranks: 2, inMemory: true, onDisk: false), keep: 2)
        direct.appendCommitted(line(6, ranks: 2, inMemory: true, onDisk: true), keep: 2, pinned: [5])
        #expect(direct.committed.map(\.epoch) == [5, 6])
        direct.appendCommitted(line(7, ranks: 2, inMemory: true, onDisk: false), keep: 2, pinned: [5])
        #expect(direct.committed.map(\.epoch) == [5, 6, 7], "line 6, the newest on disk, stays")
        var three = Manifest(jobID: "j", rankCount: 2)
        three.appendCommitted(line(4, ranks: 2, inMemory: true, onDisk: true), keep: 3)
        for epoch: UInt64 in 5...7 {
            three.appendCommitted(line(epoch, ranks: 2, inMemory: true, onDisk: false), keep: 3, pinned: [5, 6])
        }
        #expect(three.committed.map(\.epoch) == [4, 5, 6, 7])
        #expect(three.invariantViolation == nil && direct.invariantViolation == nil)
    }

    @Test func theCollectionSparesTheFoldersOfLinesNewerThanTheNewestOnDisk() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try MirroredStore(rootA: folder.path + "/a", rootB: folder.path + "/b")
        let manifests = ManifestStore(store: store)
        var manifest = Manifest(jobID: "j", rankCount: 2)
        // Rounds 1 and 2 drained; round 3 held in memory alone, its drain under way (rank 0's
        // snapshot written, rank 1's index still a temporary file); round 4 in memory alone,
        // not drained (a round that is dropped, with rank 0's drain of it begun).
        for epoch: UInt64 in 1...2 {
            for rank in 0..<2 {
                _ = try ChunkedSnapshots(store: store).write(
                    manifests.snapshotName(epoch: epoch, rank: rank), bytes: state(rank: rank, epoch: epoch), generation: epoch, chunkBytes: 4096)
            }
            manifest.appendCommitted(line(epoch, ranks: 2, manifests: manifests, inMemory: true, onDisk: true), keep: 1)
        }
        _ = try ChunkedSnapshots(store: store).write(
            manifests.snapshotName(epoch: 3, rank: 0), bytes: state(rank: 0, epoch: 3), generation: 3, chunkBytes: 4096)
        let underWay = ["epochs/000003/.rank-0001.snap.tmp.1.1", "epochs/000004/.rank-0000.snap.tmp.1.1"]
        for name in underWay {
            let path = store.path(name, on: .a)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: path, contents: Data([1])))
        }
        manifest.appendCommitted(line(3, ranks: 2, manifests: manifests, inMemory: true, onDisk: false), keep: 1)
        manifest.appendCommitted(line(5, ranks: 2, manifests: manifests, inMemory: true, onDisk: false), keep: 1, pinned: [3])
        #expect(manifest.committed.map(\.epoch) == [2, 3, 5])
        try manifests.commit(&manifest)

        // While a drain holds the chunk lock the chunks' collection is owed, and said so.
        let drain = try #require(ChunkLock(store: store, exclusive: false, wait: true))
        let owed = try manifests.collect(keeping: manifest)
        drain.release()
        #expect(!owed.chunksCollected)
        let (removed, chunksCollected) = try manifests.collect(keeping: manifest)
        #expect(chunksCollected)
        #expect(owed.removed.contains("epochs/000001") && !removed.contains("epochs/000001"), "\(owed.removed) \(removed)")
        #expect(store.list("epochs") == ["000002", "000003", "000004"], "folders from the newest line on disk on stay")
        #expect(store.list("epochs/000003") == ["rank-0000.snap"])
        for name in underWay {
            #expect(FileManager.default.fileExists(atPath: store.path(name, on: .a)), "\(name): a drain's file under way stays")
        }
        #expect(try ChunkedSnapshots(store: store).read(manifests.snapshotName(epoch: 3, rank: 0)) == state(rank: 0, epoch: 3))
        #expect(try ChunkedSnapshots(store: store).read(manifests.snapshotName(epoch: 2, rank: 1)) == state(rank: 1, epoch: 2))
    }

    @Test func theRecoveryLineIsReadFromMemoryFirstAndFromDiskWhenACopyIsGone() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let store = try MirroredStore(rootA: folder.path + "/a", rootB: folder.path + "/b")
        let manifests = ManifestStore(store: store)
        let level = MemoryLevel(folder: folder.path + "/memory")
        try level.create()
        var manifest = Manifest(jobID: "j", rankCount: 2)
        // Round 2 drained to disk; round 3 in memory alone.
        for rank in 0..<2 {
            let bytes = state(rank: rank, epoch: 2)
            _ = try ChunkedSnapshots(store: store).write(manifests.snapshotName(epoch: 2, rank: rank), bytes: bytes, generation: 2, chunkBytes: 4096)
            try level.write(rank: rank, epoch: 2, state: bytes, metadata: metadata(rank: rank, epoch: 2))
            try write(level, rank: rank, epoch: 3)
        }
        manifest.appendCommitted(line(2, ranks: 2, manifests: manifests, inMemory: true, onDisk: true))
        manifest.appendCommitted(line(3, ranks: 2, manifests: manifests, inMemory: true, onDisk: false))

        #expect(manifests.newestIntactLine(manifest, memory: level).line?.epoch == 3)
        // An earlier supervisor's copies are not trusted, nor is memory without the level.
        let resumed = manifests.newestIntactLine(manifest, memory: level, memorySince: 3)
        #expect(resumed.line?.epoch == 2)
        #expect(resumed.problems.contains { $0.contains("does not outlive its supervisor") })
        #expect(manifests.newestIntactLine(manifest).line?.epoch == 2)
        // Rank 1's copy of round 3 gone: round 2, whose copies in memory are gone too, reads from disk.
        unlink(folder.path + "/memory/" + MemoryLevel.fileName(rank: 1, epoch: 3))
        level.removeOlder(rank: 0, than: 3)
        level.removeOlder(rank: 1, than: 3)
        let fallback = manifests.newestIntactLine(manifest, memory: level)
        #expect(fallback.line?.epoch == 2)
        #expect(fallback.problems.contains { $0.contains("epoch 3 rank 1: its copy in memory is gone") })
        // Verify and collection leave a line in memory alone alone: nothing of it is on disk.
        try manifests.commit(&manifest)
        #expect(manifests.verify(repair: false).unrecoverableCount == 0)
        try manifests.garbageCollect(keeping: manifest)
        #expect(try ChunkedSnapshots(store: store).read(manifests.snapshotName(epoch: 2, rank: 1)) == state(rank: 1, epoch: 2))
    }
}
