import Testing
@testable import LifelineStorage

@Suite struct ManifestTests {
    func line(epoch: UInt64, ranks: Int, manifests: ManifestStore) -> CommittedLine {
        let members = (0..<ranks).map { rank in
            Member(rank: rank, snapshot: manifests.snapshotName(epoch: epoch, rank: rank), step: Int(epoch) * 10,
                   incarnation: 0, outputOffset: epoch * 100, snapshotBytes: 3)
        }
        return CommittedLine(epoch: epoch, step: Int(epoch) * 10, members: members)
    }

    /// Writes every rank's snapshot of `epoch` and commits the line.
    func commitEpoch(_ epoch: UInt64, ranks: Int, manifest: inout Manifest, manifests: ManifestStore) throws {
        let newLine = line(epoch: epoch, ranks: ranks, manifests: manifests)
        for member in newLine.members {
            _ = try ChunkedSnapshots(store: manifests.store).write(
                member.snapshot, bytes: [UInt8(epoch), 1, 2], generation: epoch, reusable: [])
        }
        manifest.appendCommitted(newLine)
        try manifests.commit(&manifest)
    }

    @Test func snapshotNamesArePadded() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        #expect(manifests.snapshotName(epoch: 3, rank: 1) == "epochs/000003/rank-0001.snap")
        #expect(manifests.snapshotName(epoch: 1_234_567, rank: 12_345) == "epochs/1234567/rank-12345.snap")
    }

    @Test func commitAndLoadRoundTrip() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        #expect(try manifests.load() == nil)
        var manifest = Manifest(jobID: "job-1", rankCount: 2)
        for epoch: UInt64 in 1...3 {
            try commitEpoch(epoch, ranks: 2, manifest: &manifest, manifests: manifests)
        }
        #expect(manifest.generation == 3 && manifest.commits == 3)
        #expect(manifest.committed.map(\.epoch) == [2, 3])
        #expect(try manifests.load() == manifest)
        // A fresh store on the same roots sees the same manifest; a damaged copy is repaired.
        Disk.flipBit(manifests.store.path(ManifestStore.manifestName, on: .a), byte: 45)
        let reopened = ManifestStore(store: try folder.store())
        #expect(try reopened.load() == manifest)
        #expect(try reopened.store.read(ManifestStore.manifestName).repaired.isEmpty)
    }

    @Test func lostNewestSnapshotFallsBackToPreviousLine() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        var manifest = Manifest(jobID: "job-2", rankCount: 2)
        try commitEpoch(1, ranks: 2, manifest: &manifest, manifests: manifests)
        try commitEpoch(2, ranks: 2, manifest: &manifest, manifests: manifests)
        let lost = manifests.snapshotName(epoch: 2, rank: 1)
        Disk.flipBit(manifests.store.path(lost, on: .a), byte: 41)
        Disk.delete(manifests.store.path(lost, on: .b))
        let (intact, problems) = manifests.newestIntactLine(manifest)
        #expect(intact?.epoch == 1)
        #expect(problems.contains { $0.contains(lost) && $0.contains("both mirrors are damaged") })

        let onlyRank0 = manifests.snapshotName(epoch: 1, rank: 0)
        Disk.delete(manifests.store.path(onlyRank0, on: .a))
        Disk.delete(manifests.store.path(onlyRank0, on: .b))
        #expect(manifests.newestIntactLine(manifest).line == nil)
    }

    /// After a fallback the newer lines are abandoned: the line fallen back to then stays
    /// beside the next commit, where the abandoned line (which cannot be restored) used to
    /// take its place.
    @Test func aLineFallenBackToStaysBesideTheNextCommitOnceTheNewerAreAbandoned() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        var manifest = Manifest(jobID: "job-abandon", rankCount: 2)
        try commitEpoch(1, ranks: 2, manifest: &manifest, manifests: manifests)
        try commitEpoch(2, ranks: 2, manifest: &manifest, manifests: manifests)
        var kept = manifest
        kept.appendCommitted(line(epoch: 3, ranks: 2, manifests: manifests))
        #expect(kept.committed.map(\.epoch) == [2, 3], "without abandoning, line 2 pushes out line 1")
        let dropped = manifest.abandonLines(after: 1)
        let droppedAgain = manifest.abandonLines(after: 1)
        #expect(dropped && !droppedAgain, "nothing newer is left the second time")
        manifest.appendCommitted(line(epoch: 3, ranks: 2, manifests: manifests))
        #expect(manifest.committed.map(\.epoch) == [1, 3])
        #expect(manifest.commits == 3 && manifest.invariantViolation == nil)
        let droppedAll = manifest.abandonLines(after: nil)
        #expect(droppedAll && manifest.committed.isEmpty, "a fallback to the start drops every line")
    }

    @Test func garbageCollectRemovesOnlyUnreferencedEpochs() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        var manifest = Manifest(jobID: "job-3", rankCount: 2)
        for epoch: UInt64 in 1...4 {
            try commitEpoch(epoch, ranks: 2, manifest: &manifest, manifests: manifests)
        }
        // Epoch 5 is in progress (not committed); epoch 1's rank 0 snapshot is still referenced
        // by the newest line, as an incremental protocol may do.
        try manifests.store.write(manifests.snapshotName(epoch: 5, rank: 0), kind: .snapshot, generation: 5, body: [5])
        manifest.committed[1].members[0].snapshot = manifests.snapshotName(epoch: 1, rank: 0)
        try manifests.commit(&manifest)
        try manifests.store.write("epochs/notes", kind: .other, generation: 0, body: [])

        let removed = try manifests.garbageCollect(keeping: manifest)
        // Epoch 1's folder stays for the snapshot still referenced, without the one that is not.
        #expect(removed.prefix(2) == ["epochs/000001/rank-0001.snap", "epochs/000002"], "\(removed)")
        #expect(manifests.store.list("epochs") == ["000001", "000003", "000004", "000005", "notes"])
        #expect(manifests.store.list("epochs/000001") == ["rank-0000.snap"])
        #expect(manifests.newestIntactLine(manifest).line?.epoch == 4)
    }

    /// Independent checkpoints: a rank's snapshots up to its newest record that nothing
    /// references go, unless a newer process of the rank than the newest record's wrote them —
    /// after a partial rollback it numbers its checkpoints from the one it restored, below the
    /// records a manifest read before the rollback holds. Those, and the ones newer than every
    /// record, stay with their chunks.
    @Test func anIndependentCheckpointOfANewerProcessIsNotCollectedUnderOldRecords() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        let names = [(3, 0), (3, 2), (4, 2), (6, 0)].map { manifests.independentSnapshotName(rank: 0, checkpoint: $0, incarnation: UInt32($1)) }
        for (offset, name) in names.enumerated() {
            _ = try ChunkedSnapshots(store: manifests.store).write(name, bytes: [UInt8(offset), 9, 9, 9], generation: 1)
        }
        var manifest = Manifest(jobID: "job-independent", rankCount: 1)
        // The records of incarnation 0 up to checkpoint 5 (a manifest from before rank 0 was
        // rolled back to checkpoint 2 and relaunched as incarnation 2).
        manifest.independent = [(1...5).map { index in
            IndependentCheckpoint(index: index, snapshot: index == 5 ? manifests.independentSnapshotName(rank: 0, checkpoint: 5, incarnation: 0) : nil,
                                  step: index * 10, incarnation: 0, outputOffset: 0, snapshotBytes: 4, dependencies: [])
        }]
        try manifests.commit(&manifest)
        #expect(ManifestStore.incarnation(ofIndependent: names[1]) == 2 && ManifestStore.incarnation(ofIndependent: names[0]) == 0)
        let removed = try manifests.garbageCollect(keeping: manifest)
        #expect(removed.contains(names[0]), "\(removed)")
        for kept in names.dropFirst() {
            #expect(manifests.store.exists(kept) && (try? ChunkedSnapshots(store: manifests.store).read(kept)) != nil, "\(kept): \(removed)")
        }
    }

    @Test func inconsistentManifestOnDiskIsRejected() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        let json = Array(#"{"formatVersion":1,"jobID":"j","rankCount":1,"generation":1,"commits":0,"committed":[],"finished":false}"#.utf8)
        try manifests.store.write(ManifestStore.manifestName, kind: .manifest, generation: 2, body: json)
        #expect(storageError { () throws(StorageError) in try manifests.load() }?.code == .corrupt)
        try manifests.store.write(ManifestStore.manifestName, kind: .manifest, generation: 1, body: Array("{".utf8))
        #expect(storageError { () throws(StorageError) in try manifests.load() }?.code == .corrupt)
    }
}

/// Which lines a resize may start from, and the manifest of the resized job.
@Suite struct ManifestResizeTests {
    private func line(_ epoch: UInt64, ranks: Int, store: ManifestStore, step: Int = 20, inFlight: UInt64? = 0) -> CommittedLine {
        CommittedLine(epoch: epoch, step: step, members: (0..<ranks).map {
            Member(rank: $0, snapshot: store.snapshotName(epoch: epoch, rank: $0), step: step, incarnation: 0,
                   outputOffset: 0, snapshotBytes: 1, inFlightBytes: inFlight)
        })
    }

    @Test func aLineEveryRankWroteAtOneStepCanBeResized() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        var manifest = Manifest(jobID: "j", rankCount: 4)
        manifest.appendCommitted(line(3, ranks: 4, store: manifests))
        #expect(manifests.resizeRefusal(manifest.committed[0], of: manifest) == nil)
        #expect(manifests.inFlightBytes(manifest.committed[0]) == 0)

        var kept = line(4, ranks: 4, store: manifests)
        kept.members[2].snapshot = manifests.snapshotName(epoch: 3, rank: 2)
        #expect(manifests.resizeRefusal(kept, of: manifest)?.contains("keeps an earlier checkpoint") == true)
        var uneven = line(4, ranks: 4, store: manifests)
        uneven.members[1].step = 19
        #expect(manifests.resizeRefusal(uneven, of: manifest)?.contains("not at one step") == true)
        var missing = line(4, ranks: 4, store: manifests)
        missing.members.removeLast()
        #expect(manifests.resizeRefusal(missing, of: manifest)?.contains("entry for each") == true)
        #expect(manifests.inFlightBytes(line(4, ranks: 4, store: manifests, inFlight: nil)) == nil)
        var independent = manifest
        independent.independent = [[], [], [], []]
        #expect(manifests.resizeRefusal(manifest.committed[0], of: independent)?.contains("independent") == true)
    }

    /// Lines keep the count that wrote them across resizes (4 → 2 → 4), and the manifest stays
    /// consistent: a line of 4 members under a manifest of 2 ranks is not a violation.
    @Test func linesKeepTheirRankCountAcrossResizes() throws {
        let folder = TemporaryFolder()
        defer { folder.remove() }
        let manifests = ManifestStore(store: try folder.store())
        var manifest = Manifest(jobID: "j", rankCount: 4)
        manifest.appendCommitted(line(3, ranks: 4, store: manifests), keep: 5)
        var two = manifest.resized(to: 2, from: manifest.committed[0])
        #expect(two.rankCount == 2 && two.committed[0].rankCount == 4 && two.rankCount(of: two.committed[0]) == 4)
        #expect(two.invariantViolation == nil)
        two.appendCommitted(line(4, ranks: 2, store: manifests), keep: 5)
        #expect(two.committed[1].rankCount == nil && two.rankCount(of: two.committed[1]) == 2)
        let four = two.resized(to: 4, from: two.committed[1])
        #expect(four.committed.map(\.rankCount) == [nil, 2], "the line of 4 is the manifest's count again")
        #expect(four.invariantViolation == nil)
        #expect(two.resizedFrom == 3 && four.resizedFrom == 4, "the line each resize started from")
        var wrong = two
        wrong.committed[1].members.append(Member(rank: 3, snapshot: "x", step: 20, incarnation: 0, outputOffset: 0, snapshotBytes: 1))
        #expect(wrong.invariantViolation?.contains("outside 0..<2") == true)
        try manifests.commit(&two)
        #expect(try manifests.load() == two)
    }
}
