import Foundation
import Testing
@testable import LifelineStorage

/// The corruption matrix: each kind of file × each fault × on A, on B, on both.
///
/// A single-mirror fault is repaired by the read and leaves both copies byte-equal to the
/// originals. A double fault gives a typed error naming the file: a snapshot chunk or index
/// makes `newestIntactLine` fall back to the previous line, which still reads exactly; the
/// manifest is `.lost`. Nothing else is lost.
@Suite struct CorruptionMatrixTests {
    enum Target: CaseIterable { case chunk, index, manifest }
    enum Fault: CaseIterable { case bitFlip, truncation, deletion, zeroLength, wrongMagic, wrongVersion }
    enum Where: CaseIterable { case a, b, both }

    static let chunkBytes = 4096

    /// Epochs 1 and 2 committed for two ranks; every snapshot distinct, so no chunk is shared.
    struct Fixture {
        let folder = TemporaryFolder()
        let manifests: ManifestStore
        var manifest = Manifest(jobID: "matrix", rankCount: 2)

        init() throws {
            manifests = ManifestStore(store: try folder.store())
            try manifests.commit(&manifest)
            for epoch: UInt64 in 1...2 {
                var members: [Member] = []
                for rank in 0..<2 {
                    let name = manifests.snapshotName(epoch: epoch, rank: rank)
                    _ = try ChunkedSnapshots(store: manifests.store).write(
                        name, bytes: Self.content(epoch: epoch, rank: rank), generation: epoch, chunkBytes: chunkBytes)
                    members.append(Member(rank: rank, snapshot: name, step: 0, incarnation: 0, outputOffset: 0, snapshotBytes: 0))
                }
                manifest.appendCommitted(CommittedLine(epoch: epoch, step: 0, members: members))
                try manifests.commit(&manifest)
            }
        }

        static func content(epoch: UInt64, rank: Int) -> [UInt8] {
            var generator = SeededGenerator(state: epoch << 8 | UInt64(rank))
            return (0..<(3 * chunkBytes + 100)).map { _ in UInt8(truncatingIfNeeded: generator.next() % 7) }
        }

        /// The store name of the file `target` stands for: rank 1's snapshot of epoch 2.
        func name(_ target: Target) throws -> String {
            let snapshot = manifests.snapshotName(epoch: 2, rank: 1)
            switch target {
            case .manifest: return ManifestStore.manifestName
            case .index: return snapshot
            case .chunk:
                let chunked = ChunkedSnapshots(store: manifests.store)
                return chunked.chunkName(try chunked.index(snapshot).chunks[1].hash)
            }
        }
    }

    static func damage(_ path: String, with fault: Fault) {
        switch fault {
        case .bitFlip: Disk.flipBit(path, byte: FileFormat.headerByteCount + 3)
        case .truncation: Disk.truncate(path, to: Disk.bytes(path).count / 2)
        case .deletion: Disk.delete(path)
        case .zeroLength: Disk.put([], at: path)
        case .wrongMagic: Disk.flipBit(path, byte: 0)
        case .wrongVersion:
            // A future version with a header checksum that holds: only the version is wrong.
            var bytes = Disk.bytes(path)
            bytes[4] = 2
            let crc = Checksum.crc32(bytes[0..<36])
            for index in 0..<4 { bytes[36 + index] = UInt8(truncatingIfNeeded: crc >> (8 * index)) }
            Disk.put(bytes, at: path)
        }
    }

    @Test(arguments: Target.allCases, Fault.allCases)
    func singleMirrorFaultIsRepaired(target: Target, fault: Fault) throws {
        for mirror in [Mirror.a, .b] {
            let fixture = try Fixture()
            defer { fixture.folder.remove() }
            let store = fixture.manifests.store
            let name = try fixture.name(target)
            let original = Disk.bytes(store.path(name, on: .a))
            Self.damage(store.path(name, on: mirror), with: fault)
            let label = "\(target) \(fault) on \(mirror)"
            let found = fixture.manifests.verify(repair: false)
            #expect(!found.isClean && found.unrecoverableCount == 0 && found.problems.count == 1, "\(label): \(found.problems)")
            let damagedPath = store.path(name, on: mirror)
            let untouched = !FileManager.default.fileExists(atPath: damagedPath) || Disk.bytes(damagedPath) != original
            #expect(untouched, "\(label): verify without repair wrote nothing")

            #expect(try fixture.manifests.load() == fixture.manifest, "\(label)")
            let (line, problems) = fixture.manifests.newestIntactLine(fixture.manifest)
            #expect(line?.epoch == 2, "\(label): \(problems)")
            #expect(try ChunkedSnapshots(store: store).read(fixture.manifests.snapshotName(epoch: 2, rank: 1))
                    == Fixture.content(epoch: 2, rank: 1), "\(label)")
            for copy in [Mirror.a, .b] {
                #expect(Disk.bytes(store.path(name, on: copy)) == original, "\(label): copy \(copy) restored")
            }
            let report = fixture.manifests.verify(repair: false)
            #expect(report.isClean && report.problems.isEmpty, "\(label): \(report.problems)")
        }
    }

    @Test(arguments: Target.allCases, Fault.allCases)
    func doubleFaultIsATypedErrorAndFallsBack(target: Target, fault: Fault) throws {
        let fixture = try Fixture()
        defer { fixture.folder.remove() }
        let store = fixture.manifests.store
        let name = try fixture.name(target)
        for mirror in [Mirror.a, .b] { Self.damage(store.path(name, on: mirror), with: fault) }
        let label = "\(target) \(fault) on both"
        let chunked = ChunkedSnapshots(store: store)

        switch target {
        case .manifest:
            let error = storageError { () throws(StorageError) in try fixture.manifests.load() }
            #expect(error?.code == .lost, "\(label): \(String(describing: error))")
            #expect(error?.description.contains(ManifestStore.manifestName) == true, "\(label)")
        case .chunk, .index:
            let error = storageError { () throws(StorageError) in
                try chunked.read(fixture.manifests.snapshotName(epoch: 2, rank: 1))
            }
            let expected: Set<StorageError.Code> = target == .index && fault == .deletion ? [.notFound] : [.lost]
            #expect(error.map { expected.contains($0.code) } == true, "\(label): \(String(describing: error))")
            #expect(error?.path == name, "\(label): the error names the file")
            let (line, problems) = fixture.manifests.newestIntactLine(fixture.manifest)
            #expect(line?.epoch == 1, "\(label): falls back to epoch 1")
            #expect(problems.contains { $0.contains(name) }, "\(label): \(problems)")
            #expect(problems.contains { $0.contains("epoch 2 is not restorable") }, "\(label)")
        }
        // Nothing else is lost: every snapshot of epoch 1 reads exactly (and epoch 2 rank 0).
        for (epoch, rank) in [(UInt64(1), 0), (1, 1), (2, 0)] {
            #expect(try chunked.read(fixture.manifests.snapshotName(epoch: epoch, rank: rank))
                    == Fixture.content(epoch: epoch, rank: rank), "\(label): epoch \(epoch) rank \(rank)")
        }
        let report = fixture.manifests.verify(repair: true)
        #expect(!report.isClean && report.unrecoverableCount >= 1, "\(label)")
        #expect(report.problems.contains { $0.contains(name) }, "\(label): \(report.problems)")
    }
}
