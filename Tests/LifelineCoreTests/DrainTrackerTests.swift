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
        #expect(tracker.drained(1, rank: 0, storedBytes: 100, now: 10.2) == nil)
        #expect(tracker.drained(1, rank: 2, storedBytes: 50, now: 10.4) == nil)
        #expect(tracker.pinned == [1], "a drain is still under way")
        let record = tracker.drained(1, rank: 1, storedBytes: 25, now: 10.5)
        #expect(record == .init(epoch: 1, storedBytes: 175, afterCommitSeconds: 0.5))
        #expect(tracker.pinned.isEmpty && tracker.onDisk.isEmpty)
    }

    @Test func drainsInBeforeTheCommitPutTheLineOnDiskAtOnce() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        #expect(tracker.drained(4, rank: 0, storedBytes: 1, now: 1) == nil, "not committed yet")
        tracker.acknowledgedFromDisk(4, rank: 1)
        #expect(tracker.levels(ofCommitting: 4, anyInMemory: true) == (true, true))
        tracker.committed(4, inMemoryAlone: false, now: 2)
        #expect(tracker.pinned.isEmpty && tracker.onDisk.isEmpty)
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
        tracker.drainFailed(2)
        #expect(tracker.pinned.isEmpty)
        #expect(tracker.drained(2, rank: 1, storedBytes: 9, now: 1) == nil, "rank 0's drain failed")
        // Rank 1 relaunched from that line: rank 0 will not drain it again, so it is not pinned.
        tracker.rankEnded(1)
        let drainsAgain = tracker.relaunching(1, restoring: 2, inMemoryAlone: true)
        #expect(!drainsAgain && tracker.pinned.isEmpty)
    }

    @Test func aRankRelaunchedFromALineItHadNotDrainedDrainsItAgain() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(3, inMemoryAlone: true, now: 0)
        _ = tracker.drained(3, rank: 0, storedBytes: 4, now: 0.5)
        tracker.rankEnded(1)
        #expect(tracker.pinned.isEmpty)
        let rank0 = tracker.relaunching(0, restoring: 3, inMemoryAlone: true)
        #expect(!rank0, "rank 0's drain is in")
        let rank1 = tracker.relaunching(1, restoring: 3, inMemoryAlone: true)
        #expect(rank1 && tracker.pinned == [3])
        let onDisk = tracker.relaunching(1, restoring: 3, inMemoryAlone: false)
        #expect(!onDisk, "a line on disk is not drained again")
        #expect(tracker.drained(3, rank: 1, storedBytes: 4, now: 2) == .init(epoch: 3, storedBytes: 8, afterCommitSeconds: 2))
    }

    @Test func aRankThatEndsUnpinsOnlyTheLinesItHadNotDrained() {
        var tracker = DrainTracker(rankCount: 2, drainEvery: 1)
        tracker.committed(5, inMemoryAlone: true, now: 0)
        tracker.committed(6, inMemoryAlone: true, now: 1)
        _ = tracker.drained(5, rank: 1, storedBytes: 1, now: 1.5)
        tracker.rankEnded(1)
        #expect(tracker.pinned == [5], "rank 1 drained round 5; rank 0's drain of it goes on")
        #expect(tracker.drained(5, rank: 0, storedBytes: 1, now: 2)?.epoch == 5)
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
        #expect(tracker.drained(2, rank: 1, storedBytes: 1, now: 4) == nil, "round 2 is forgotten")
        #expect(tracker.drained(3, rank: 1, storedBytes: 1, now: 4)?.afterCommitSeconds == 1)
    }
}
