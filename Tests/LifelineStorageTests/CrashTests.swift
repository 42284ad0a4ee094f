import Foundation
import Testing
@testable import LifelineStorage
#if canImport(Glibc)
import Glibc
#endif

/// Crash consistency with real processes: a child writes epochs (chunks, indexes, manifest
/// commit, garbage collection, message log appends and trims) in a loop and is SIGKILLed at
/// random moments; and a child that runs into a file size limit.
@Suite(.serialized) struct CrashTests {
    /// The crasher's snapshot contents (the same function as in Tests/StorageCrasher).
    enum CrashContent {
        static let chunkBytes = 4096
        static let chunkCount = 7

        static func bytes(epoch: UInt64, rank: Int) -> [UInt8] {
            var bytes: [UInt8] = []
            withUnsafeBytes(of: epoch.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: UInt64(rank).littleEndian) { bytes += $0 }
            for chunk in 0..<chunkCount {
                let shared = chunk == chunkCount - 1
                var state = shared ? 0xC0FFEE : (UInt64(rank) << 40) ^ (UInt64(chunk) << 32) ^ (epoch >> UInt64(chunk))
                for _ in 0..<(chunkBytes / 8) {
                    state &+= 0x9E37_79B9_7F4A_7C15
                    var z = state
                    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                    withUnsafeBytes(of: (z ^ (z >> 31)).littleEndian) { bytes += $0 }
                }
            }
            return bytes
        }
    }

    /// The crasher's message log (the same function as in Tests/StorageCrasher).
    enum CrashLog {
        static let name = "crash"
        static let batchCount = 5

        static func payload(_ index: UInt64) -> [UInt8] {
            (0...(index % 300)).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0 &* 7) }
        }
    }

    static var iterations: Int {
        ProcessInfo.processInfo.environment["LIFELINE_CRASH_ITERATIONS"].flatMap(Int.init) ?? 200
    }

    @Test func killedWriterLeavesTheOldOrTheNewLine() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let environment = ProcessInfo.processInfo.environment
        let baseSeed = environment["LIFELINE_CRASH_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64(1 << 48))
        var durableEpoch: UInt64 = 0  // the newest epoch a child said was committed
        var newestSeen: UInt64 = 0
        var killsAfterACommit = 0
        var durableLogged: UInt64 = 0  // the log's next index the child last said was durable
        var logRepairs = 0  // kills that left the log torn or its mirrors unequal
        var interruptedWrites = 0  // kills that left a temporary file or a copy to repair
        let cycleMicroseconds = try Self.measureCycle(folder)
        durableEpoch = try ManifestStore(store: try folder.store()).load()?.newestLine?.epoch ?? 0
        durableLogged = try MessageLog(store: try folder.store(), name: CrashLog.name).nextIndex
        newestSeen = durableEpoch
        for iteration in 0..<Self.iterations {
            let seed = baseSeed &+ UInt64(iteration)
            let context = "iteration \(iteration), seed \(seed) (rerun: LIFELINE_CRASH_SEED=\(baseSeed))"
            var generator = SeededGenerator(state: seed)
            // Uniform over a bit more than one cycle (write both snapshots, commit, collect).
            let delayMicroseconds = UInt32(generator.next() % UInt64(cycleMicroseconds * 5 / 4))
            var child = try ChildProcess(["loop", folder.path + "/a", folder.path + "/b"])
            guard child.read(until: "ready") else {
                _ = child.wait()
                Issue.record("\(context): the child did not start: \(child.text)")
                return
            }
            usleep(delayMicroseconds)
            child.kill()
            let committed = child.text.split(separator: "\n").compactMap { line -> UInt64? in
                line.hasPrefix("committed ") ? UInt64(line.dropFirst(10)) : nil
            }
            if let last = committed.last { durableEpoch = last; killsAfterACommit += 1 }
            // The last `logged` line is durable; a `cutting` line after it may or may not have taken.
            var cutting: UInt64?
            for line in child.text.split(separator: "\n") {
                if line.hasPrefix("logged "), let next = UInt64(line.dropFirst(7)) {
                    durableLogged = next
                    cutting = nil
                } else if line.hasPrefix("cutting "), let next = UInt64(line.dropFirst(8)) {
                    cutting = next
                }
            }
            do {
                let (next, repaired) = try Self.checkLog(folder, durable: durableLogged, cutting: cutting, context: context)
                durableLogged = next
                if repaired { logRepairs += 1 }
            } catch {
                Issue.record("\(context): the message log does not open after a kill: \(error)")
                return
            }

            let manifests = ManifestStore(store: try folder.store())
            let manifest: Manifest
            do {
                guard let loaded = try manifests.load() else {
                    #expect(durableEpoch == 0, "\(context): the manifest vanished")
                    continue
                }
                manifest = loaded
            } catch {
                Issue.record("\(context): the manifest does not load after a kill: \(error)")
                return
            }
            let newest = manifest.newestLine?.epoch ?? 0
            #expect(newest >= durableEpoch && newest <= durableEpoch + 1,
                    "\(context): newest line \(newest), last commit reported \(durableEpoch)")
            #expect(newest >= newestSeen, "\(context): the committed line went back from \(newestSeen) to \(newest)")
            newestSeen = newest
            durableEpoch = newest
            let chunked = ChunkedSnapshots(store: manifests.store)
            for line in manifest.committed {
                for member in line.members {
                    do {
                        let bytes = try chunked.read(member.snapshot)
                        #expect(bytes == CrashContent.bytes(epoch: line.epoch, rank: member.rank),
                                "\(context): epoch \(line.epoch) rank \(member.rank) holds other bytes")
                    } catch {
                        Issue.record("\(context): epoch \(line.epoch) rank \(member.rank) does not read: \(error)")
                        return
                    }
                }
            }
            let report = manifests.verify(repair: iteration % 10 == 9)
            #expect(report.unrecoverableCount == 0, "\(context): \(report.problems)")
            if !report.problems.isEmpty { interruptedWrites += 1 }
        }
        #expect(newestSeen > 0, "seed \(baseSeed): no epoch was ever committed: the kills came too early")
        #expect(killsAfterACommit > 0)
        #expect(interruptedWrites > 0 || Self.iterations < 50, "seed \(baseSeed): no kill landed inside a write")
        print("crash test, seed \(baseSeed): \(Self.iterations) kills, \(killsAfterACommit) after a commit, \(interruptedWrites) inside a snapshot or manifest write, \(logRepairs) inside a log append or trim")
    }

    /// Opens the crasher's log after a kill (which cuts a torn tail and repairs a mirror) and
    /// checks that it holds a run of the expected records reaching at least what was durable
    /// and at most one batch beyond (or, when a cut was under way, exactly where it cuts);
    /// returns its next index and whether opening repaired it.
    static func checkLog(_ folder: TemporaryFolder, durable: UInt64, cutting: UInt64?, context: String) throws -> (UInt64, Bool) {
        let log = try MessageLog(store: try folder.store(), name: CrashLog.name)
        let reached = log.nextIndex >= durable && log.nextIndex <= durable + UInt64(CrashLog.batchCount)
        #expect(reached || log.nextIndex == cutting,
                "\(context): the log reaches \(log.nextIndex), \(durable) were durable, cut to \(String(describing: cutting))")
        #expect(!log.problems.contains { $0.contains("does not continue") || $0.contains("readable") },
                "\(context): a crash lost records: \(log.problems)")
        for (offset, record) in log.records.enumerated() where record != CrashLog.payload(log.firstIndex + UInt64(offset)) {
            Issue.record("\(context): log record \(log.firstIndex + UInt64(offset)) holds other bytes")
            break
        }
        return (log.nextIndex, !log.problems.isEmpty)
    }

    /// Runs a child for two commits and returns the time between them (one cycle: snapshots,
    /// commit, garbage collection), clamped to 40–400 ms, in microseconds.
    static func measureCycle(_ folder: TemporaryFolder) throws -> Int {
        var child = try ChildProcess(["loop", folder.path + "/a", folder.path + "/b"])
        _ = child.read(until: "committed 1")
        let start = DispatchTime.now().uptimeNanoseconds
        _ = child.read(until: "committed 3")
        let cycle = Int((DispatchTime.now().uptimeNanoseconds - start) / 2_000)
        child.kill()
        return min(400_000, max(40_000, cycle))
    }

    @Test func fileSizeLimitFailsTheWriteCleanlyAndTheLastLineStillLoads() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        // Epoch 1 by a child without a limit, then epoch 2 under a 32 KiB file size limit.
        var first = try ChildProcess(["loop", folder.path + "/a", folder.path + "/b"])
        let started = first.read(until: "committed 1")
        #expect(started, "\(first.text)")
        first.kill()
        let manifests = ManifestStore(store: try folder.store())
        var manifest = try #require(try manifests.load())
        manifest.committed.removeAll { $0.epoch != 1 }  // exactly epoch 1, whatever else committed
        manifest.commits = manifest.committed.count
        try manifests.commit(&manifest)
        try manifests.garbageCollect(keeping: manifest)
        // The killed child may have left a log append on A alone or a temporary file: repaired
        // here, so the check at the end sees only what the disk-full child left.
        _ = manifests.verify(repair: true)

        var child = try ChildProcess(["disk-full", folder.path + "/a", folder.path + "/b", String(32 << 10)])
        let status = child.wait()
        #expect((status >> 8) & 0xff == 3, "expected a .noSpace error, got status \(status): \(child.text)")
        #expect(child.text.contains("noSpace") && child.text.contains("File too large"), "\(child.text)")

        let reopened = ManifestStore(store: try folder.store())
        let loaded = try #require(try reopened.load())
        #expect(loaded == manifest, "the manifest is the last committed one")
        let (line, problems) = reopened.newestIntactLine(loaded)
        #expect(line?.epoch == 1 && problems.isEmpty, "\(problems)")
        for member in line?.members ?? [] {
            #expect(try ChunkedSnapshots(store: reopened.store).read(member.snapshot)
                    == CrashContent.bytes(epoch: 1, rank: member.rank))
        }
        let report = reopened.verify(repair: false)
        #expect(report.isClean && report.temporaryCount == 0, "\(report.problems)")
    }
}
