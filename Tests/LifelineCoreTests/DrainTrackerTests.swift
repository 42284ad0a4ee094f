import Testing
@testable import LifelineCore

/// What the supervisor decides about level 2 under `--levels memory,disk` (`DrainTracker`),
/// each row of its table.
@Suite struct DrainTrackerTests {
    @Test func aLineCommittedInMemoryIsPinnedUntilEveryRanksDrainIsIn() {
        var tracker = DrainTracker(rankCount: 3, drainEvery: 1)
        #expect(tracker.levels(ofCommitting: 1, anyInMemory: true) == (true, false))
        tracker.committed(1, inMemoryAlone: true, now: 10)
        #expect(tracker.pinned == [1])
        #expect(tracker.drained(1, rank: 0, storedBytes: 100, now: 10.2).isEmpty)
        #expect(tracker.drained(1, rank: 2, storedBytes: 50, now: 10.4).isEmpty)
        #expect(tracker.pinned == [1], "a drain is still under way")
        let records = tracker.drained(1, rank: 1, storedBytes: 25, now: 10.5)
        #expect(records == [.init(epoch: 1, storedBytes: 175, afterCommitSeconds: 0.5)])
        #expect(tracker.pinned.isEmpty && tracker.onDisk[1]?.ranks == [0, 1, 2])
    }

    @Test func drainsInBeforeTheCommitPutTheLineOnDiskAtOnce() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        #expect(tracker.drained(4, rank: 0, storedBytes: 1, now: 1).isEmpty, "not committed yet")
        tracker.acknowledgedFromDisk(4, rank: 1)
        #expect(tracker.levels(ofCommitting: 4, anyInMemory: true) == (true, true))
        tracker.committed(4, inMemoryAlone: false, now: 2)
        #expect(tracker.pinned.isEmpty)
        // A line of snapshots all on disk is a line without levels.
        #expect(tracker.levels(ofCommitting: 5, anyInMemory: false) == (nil, nil))
    }

    @Test func aRoundThatIsNotDrainedIsNotPinned() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 4)
        tracker.committed(3, inMemoryAlone: true, now: 0)
        tracker.committed(4, inMemoryAlone: true, now: 1)
        #expect(tracker.pinned == [4])
        #expect(!tracker.drains(3) && tracker.drains(8))
    }

    @Test func aFailedDrainUnpinsItsLineWhichIsNeverRecorded() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(2, inMemoryAlone: true, now: 0)
        tracker.drainFailed(2, rank: 0)
        #expect(tracker.pinned.isEmpty)
        #expect(tracker.drained(2, rank: 1, storedBytes: 9, now: 1).isEmpty, "rank 0's drain failed")
        // Rank 1 relaunched from that line: rank 0 will not drain it again, so it is not pinned.
        tracker.rankEnded(1)
        let drainsAgain = tracker.relaunching(1, restoring: 2, line: 2, inMemoryAlone: true)
        #expect(!drainsAgain && tracker.pinned.isEmpty)
    }

    @Test func aRankRelaunchedFromALineItHadNotDrainedDrainsItAgain() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(3, inMemoryAlone: true, now: 0)
        _ = tracker.drained(3, rank: 0, storedBytes: 4, now: 0.5)
        tracker.rankEnded(1)
        #expect(tracker.pinned.isEmpty)
        let rank0 = tracker.relaunching(0, restoring: 3, line: 3, inMemoryAlone: true)
        #expect(!rank0, "rank 0's drain is in")
        let rank1 = tracker.relaunching(1, restoring: 3, line: 3, inMemoryAlone: true)
        #expect(rank1 && tracker.pinned == [3])
        let onDisk = tracker.relaunching(1, restoring: 3, line: 3, inMemoryAlone: false)
        #expect(!onDisk, "a line on disk is not drained again")
        #expect(tracker.drained(3, rank: 1, storedBytes: 4, now: 2) == [.init(epoch: 3, storedBytes: 8, afterCommitSeconds: 2)])
    }

    @Test func aRankThatEndsUnpinsOnlyTheLinesItHadNotDrained() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(5, inMemoryAlone: true, now: 0)
        tracker.committed(6, inMemoryAlone: true, now: 1)
        _ = tracker.drained(5, rank: 1, storedBytes: 1, now: 1.5)
        tracker.rankEnded(1)
        #expect(tracker.pinned == [5], "rank 1 drained round 5; rank 0's drain of it goes on")
        #expect(tracker.drained(5, rank: 0, storedBytes: 1, now: 2).map(\.epoch) == [5])
        tracker.rankEnded(0)
        #expect(tracker.pinned.isEmpty)
    }

    @Test func roundsBeforeTheOldestKeptLineAreForgotten() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        for epoch: UInt64 in 1...3 {
            tracker.committed(epoch, inMemoryAlone: true, now: Double(epoch))
            _ = tracker.drained(epoch, rank: 0, storedBytes: 1, now: Double(epoch))
        }
        tracker.forget(before: 3)
        #expect(tracker.pinned == [3] && Set(tracker.onDisk.keys) == [3])
        #expect(tracker.drained(2, rank: 1, storedBytes: 1, now: 4).isEmpty, "round 2 is forgotten")
        #expect(tracker.drained(3, rank: 1, storedBytes: 1, now: 4).map(\.afterCommitSeconds) == [1])
    }

    /// Minimal checkpoints: rank 1 keeps its snapshot of round 2 in the lines of rounds 3 and 4
    /// (rank 2 kept the start: no member). Both lines wait for rank 1's drain of round 2, which
    /// records them together; the snapshot stays known on disk while a kept line holds it.
    @Test func aKeptSnapshotPutsEveryLineThatHoldsItOnDiskWithItsDrain() {
        var tracker = DrainTracker(rankCount: 3, drainEvery: 1)
        tracker.committed(2, members: [0: 2, 1: 2], inMemoryAlone: true, now: 1)
        _ = tracker.drained(2, rank: 0, storedBytes: 10, now: 1.1)
        #expect(tracker.levels(ofCommitting: 3, members: [0: 3, 1: 2], anyInMemory: true) == (true, false))
        tracker.committed(3, members: [0: 3, 1: 2], inMemoryAlone: true, now: 2)
        #expect(tracker.drained(3, rank: 0, storedBytes: 5, now: 2.1).isEmpty, "rank 1's snapshot of round 2 is not on disk")
        tracker.committed(4, members: [0: 4, 1: 2], inMemoryAlone: true, now: 3)
        _ = tracker.drained(4, rank: 0, storedBytes: 5, now: 3.1)
        #expect(tracker.pinned == [2, 3, 4])
        let records = tracker.drained(2, rank: 1, storedBytes: 7, now: 4)
        #expect(records.map(\.epoch) == [2, 3, 4])
        #expect(records.first?.storedBytes == 17 && records.last?.afterCommitSeconds == 1)
        #expect(tracker.pinned.isEmpty)
        // A later line keeping it is on disk at once; with every member on disk and none in
        // memory, it is a line without levels.
        #expect(tracker.levels(ofCommitting: 5, members: [0: 4, 1: 2], anyInMemory: true) == (true, true))
        #expect(tracker.levels(ofCommitting: 5, members: [0: 4, 1: 2], anyInMemory: false) == (nil, nil))
        tracker.forget(before: 4, held: [2: [1]])
        #expect(tracker.isOnDisk(rank: 1, epoch: 2), "a kept line still holds rank 1's snapshot of round 2")
        #expect(!tracker.isOnDisk(rank: 0, epoch: 2) && !tracker.isOnDisk(rank: 0, epoch: 3), "no kept line holds them")
        tracker.forget(before: 5, held: [4: [0]])
        #expect(!tracker.isOnDisk(rank: 1, epoch: 2))
    }

    /// A kept snapshot whose drain failed: the lines holding it are unpinned and never
    /// recorded, and a line committed later with it is not pinned; a rank relaunched from a
    /// kept snapshot that is not on disk (its drain died with it) drains it again.
    @Test func keptSnapshotsFailAndAreDrainedAgainLikeTheLinesOwn() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(2, members: [0: 2, 1: 2], inMemoryAlone: true, now: 0)
        tracker.drainFailed(2, rank: 1)
        tracker.committed(3, members: [0: 3, 1: 2], inMemoryAlone: true, now: 1)
        #expect(tracker.pinned.isEmpty)
        let again = tracker.relaunching(1, restoring: 2, line: 3, inMemoryAlone: true)
        #expect(!again, "the drain of rank 1's snapshot of round 2 failed")

        var other = DrainTracker(rankCount: 2, drainEvery: 1)
        other.committed(5, members: [0: 5, 1: 4], inMemoryAlone: true, now: 0)
        other.rankEnded(1)
        #expect(other.pinned.isEmpty)
        let wrongRound = other.relaunching(1, restoring: 5, line: 5, inMemoryAlone: true)
        #expect(!wrongRound, "rank 1's entry in line 5 is its snapshot of round 4")
        let drains = other.relaunching(1, restoring: 4, line: 5, inMemoryAlone: true)
        #expect(drains && other.pinned == [5])
        _ = other.drained(5, rank: 0, storedBytes: 1, now: 1)
        #expect(other.drained(4, rank: 1, storedBytes: 1, now: 2).map(\.epoch) == [5])
    }

    /// A snapshot whose drain failed and then ended (a relaunched rank drained it again) is on
    /// disk: the lines holding it are recorded, and a later line keeping it is pinned as usual.
    @Test func aDrainThatEndsAfterAFailedOneClearsTheFailure() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(6, members: [0: 6, 1: 6], inMemoryAlone: true, now: 0)
        _ = tracker.drained(6, rank: 0, storedBytes: 1, now: 0.1)
        tracker.drainFailed(6, rank: 1)
        #expect(tracker.pinned.isEmpty)
        #expect(tracker.drained(6, rank: 1, storedBytes: 1, now: 1).map(\.epoch) == [6])
        tracker.committed(7, members: [0: 7, 1: 6], inMemoryAlone: true, now: 2)
        #expect(tracker.pinned == [7])
    }

    /// A line whose drains are all in but whose record the manifest did not take is owed: it
    /// stays pinned (the manifest keeps it) until it is handed back, once, to be written again;
    /// a rank that ends does not unpin it (its snapshot is on disk), and an owed line before
    /// the oldest kept one is forgotten.
    @Test func aRecordTheManifestDidNotTakeIsOwedAndStaysPinned() throws {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(7, inMemoryAlone: true, now: 0)
        _ = tracker.drained(7, rank: 0, storedBytes: 3, now: 0.5)
        let record = try #require(tracker.drained(7, rank: 1, storedBytes: 4, now: 1).first)
        #expect(tracker.pinned.isEmpty)
        tracker.owe(record)
        #expect(tracker.pinned == [7])
        tracker.rankEnded(0)
        tracker.rankEnded(1)
        #expect(tracker.pinned == [7], "every member of line 7 is on disk")
        #expect(tracker.takeOwed() == [record])
        #expect(tracker.pinned.isEmpty && tracker.takeOwed().isEmpty, "handed back once")
        tracker.owe(record)
        tracker.forget(before: 8)
        #expect(tracker.pinned.isEmpty && tracker.takeOwed().isEmpty)
    }
}
