import Testing
@testable import LifelineCore

/// The supervisor's records of independent checkpoints (`IndependentCheckpoints`): what is
/// recorded, when the checkpoint-only line moves, what is collected, what each sender trims.
@Suite struct IndependentCheckpointsTests {
    private func delivered(_ counts: [UInt64]) -> DeliveredSets {
        DeliveredSets(counts.map { DeliveredSet(watermark: SequenceNumber($0), above: []) })
    }

    @Test func checkpointsAreRecordedInOrderAndTheLineMovesWithThem() {
        var records = IndependentCheckpoints(rankCount: 2)
        #expect(records.record(rank: 0, index: 2, dependencies: [-1, -1], delivered: []) == "checkpoint 2 after 0 recorded")
        #expect(records.record(rank: 0, index: 1, dependencies: [-1], delivered: []) != nil, "a vector for another job")
        #expect(records.record(rank: 0, index: 1, dependencies: [-1, -1], delivered: delivered([0, 3])) == nil)
        #expect(records.record(rank: 1, index: 1, dependencies: [5_000, -1], delivered: [])
            == "checkpoint 1 depends on interval 5000 of rank 0, which has recorded 1 checkpoints", "a corrupt record")
        var advance = records.advance(collecting: true, keepNewest: false)
        #expect(advance.line == [1, 0] && advance.moved, "the first advance commits")
        records.lineCommitted(advance.line)
        #expect(records.record(rank: 1, index: 1, dependencies: [0, -1], delivered: delivered([2, 0])) == nil)
        advance = records.advance(collecting: true, keepNewest: false)
        #expect(advance.line == [1, 1] && advance.moved)
        // Rank 0 drops what rank 1's checkpoint 1 delivered from it; rank 1 what rank 0's did.
        #expect(advance.trims.map(\.checkpoint) == [1, 1])
        #expect(advance.trims[0].coveredByReceiver[1] == DeliveredSet(watermark: SequenceNumber(2), above: []))
        #expect(advance.trims[1].coveredByReceiver[0] == DeliveredSet(watermark: SequenceNumber(3), above: []))
        records.lineCommitted(advance.line)
        #expect(!records.advance(collecting: true, keepNewest: false).moved)
    }

    @Test func snapshotsBeforeTheLineAreCollectedButNotTheNewestWithLoggingNorWhileNotCollecting() {
        var records = IndependentCheckpoints(rankCount: 2)
        for index in 1...3 { _ = records.record(rank: 0, index: index, dependencies: [-1, -1], delivered: []) }
        _ = records.record(rank: 1, index: 1, dependencies: [-1, -1], delivered: [])
        #expect(records.advance(collecting: false, keepNewest: false).collected.isEmpty)
        var copy = records
        #expect(copy.advance(collecting: true, keepNewest: false).collected.map(\.index) == [1, 2])
        #expect(copy.newestRestorable(0) == 3 && copy.restorable[0] == [3])
        records.truncate(rank: 0, after: 1)
        #expect(records.counts == [1, 1] && records.newestRestorable(0) == 1)
        // With logging, the newest checkpoint is a lone restart's point, whatever the line says.
        var logged = IndependentCheckpoints(records: [[([-1, -1], true), ([-1, -1], true)], [([-1, -1], true)]])
        #expect(logged.advance(collecting: true, keepNewest: true).collected.map(\.index) == [1])
    }

    /// Rank 2 delivered what rank 1 sent after its checkpoint 1, and rank 2's checkpoint 1 was
    /// recorded before rank 1's (its ACK overtook). The simulator found that the useless-checkpoint
    /// search took rank 1's unrecorded interval for one no line can hold, and deleted rank 2's
    /// snapshot that a later recovery line needed (`lifeline simulate --ranks 55 --seed 20127
    /// --checkpoint independent --steps 7`).
    @Test func aCheckpointThatDependsOnAnIntervalNotRecordedYetIsNotUseless() {
        var records = IndependentCheckpoints(rankCount: 3)
        _ = records.record(rank: 2, index: 1, dependencies: [-1, 1, -1], delivered: [])
        #expect(records.advance(collecting: true, keepNewest: false).collected.isEmpty)
        #expect(records.dependencies.uselessCheckpoints() == [[], [], []])
        _ = records.record(rank: 1, index: 1, dependencies: [-1, -1, -1], delivered: [])
        _ = records.record(rank: 1, index: 2, dependencies: [-1, -1, -1], delivered: [])
        let advance = records.advance(collecting: true, keepNewest: false)
        #expect(advance.line == [0, 2, 1] && records.restorable[2] == [1], "\(advance)")
    }
}
