import Testing
@testable import LifelineCore

/// Where the supervisor takes the ranks' level-1 copies to be on a job on several hosts
/// (`MemoryCopies`), each row of its table.
@Suite struct MemoryCopiesTests {
    @Test func aCopyIsFoundOnlyOnTheHostThatHoldsIt() {
        var copies = MemoryCopies()
        copies.held(rank: 0, round: 3, on: "h1")
        copies.held(rank: 2, round: 3, on: "h2")
        #expect(copies.has(rank: 0, round: 3, on: "h1"))
        #expect(!copies.has(rank: 0, round: 3, on: "h2"), "a rank moved to another host reads disk")
        #expect(!copies.has(rank: 0, round: 2, on: "h1"), "no copy of a round never acknowledged from memory")
        #expect(copies.copy(of: 2, round: 3)?.host == "h2")
        copies.held(rank: 1, round: 3, on: "h2", logPosition: 17, dependencies: [4, 0, 9])
        #expect(copies.copy(of: 1, round: 3) == .init(host: "h2", logPosition: 17, dependencies: [4, 0, 9]),
                "what the ACK said of the checkpoint, for the orphan search")
    }

    @Test func aLostHostTakesItsCopiesAndLeavesTheOthers() {
        var copies = MemoryCopies()
        for round: UInt64 in [3, 4] {
            copies.held(rank: 0, round: round, on: "h1")
            copies.held(rank: 1, round: round, on: "h2")
        }
        copies.lose(host: "h2")
        #expect(!copies.has(rank: 1, round: 3, on: "h2") && !copies.has(rank: 1, round: 4, on: "h2"))
        #expect(copies.has(rank: 0, round: 3, on: "h1") && copies.has(rank: 0, round: 4, on: "h1"))
        // The host back, a new copy there counts again.
        copies.held(rank: 1, round: 5, on: "h2")
        #expect(copies.has(rank: 1, round: 5, on: "h2"))
    }

    @Test func aCopyInThePartnersMemoryOutlivesTheLossOfTheRanksHost() {
        var copies = MemoryCopies()
        for round: UInt64 in [3, 4] {
            copies.held(rank: 0, round: round, on: "h1", partner: "h2")
            copies.held(rank: 1, round: round, on: "h2", partner: "h1")
        }
        copies.held(rank: 2, round: 4, on: "h2")  // its partner's copy could not be written
        #expect(copies.has(rank: 1, round: 4, on: "h2") && copies.has(rank: 1, round: 4, on: "h1"))
        #expect(!copies.has(rank: 1, round: 4, on: "h3"), "a host that holds neither copy")
        copies.lose(host: "h2")
        #expect(copies.has(rank: 1, round: 3, on: "h1") && copies.has(rank: 1, round: 4, on: "h1"),
                "a lost host's rank, placed on its partner, restores from the partner's memory")
        #expect(!copies.has(rank: 1, round: 4, on: "h2"), "the lost host's own copy went with it")
        #expect(!copies.has(rank: 2, round: 4, on: "h1") && !copies.has(rank: 2, round: 4, on: "h2"),
                "a copy the lost host alone held is gone")
        #expect(copies.has(rank: 0, round: 4, on: "h1") && !copies.has(rank: 0, round: 4, on: "h2"),
                "the second copy the lost host held for a partner went with it")
        // The partner lost as well: nothing is left in memory.
        copies.lose(host: "h1")
        #expect(copies.copy(of: 0, round: 4) == nil && copies.copy(of: 1, round: 4) == nil)
    }

    @Test func aCommitLeavesTheCopiesOfItsMembersAndOfLaterRounds() {
        var copies = MemoryCopies()
        for round: UInt64 in [2, 3, 4, 5] {
            copies.held(rank: 0, round: round, on: "h1")
            copies.held(rank: 1, round: round, on: "h1")
        }
        // Line 4 commits; rank 1 is its member through its snapshot of round 2 (it kept it).
        // Round 5 is under way.
        copies.committed(4, members: [0: 4, 1: 2])
        #expect(!copies.has(rank: 0, round: 2, on: "h1") && copies.has(rank: 1, round: 2, on: "h1"))
        #expect(!copies.has(rank: 0, round: 3, on: "h1") && !copies.has(rank: 1, round: 3, on: "h1"),
                "an older line's copies: each rank removed them at DONE")
        #expect(copies.has(rank: 0, round: 4, on: "h1") && copies.has(rank: 1, round: 4, on: "h1"))
        #expect(copies.has(rank: 0, round: 5, on: "h1") && copies.has(rank: 1, round: 5, on: "h1"))
    }

    @Test func aRelaunchKeepsTheCopyItRestoresAndAFailedRestoreNone() {
        var copies = MemoryCopies()
        for round: UInt64 in [4, 5] {
            copies.held(rank: 0, round: round, on: "h1")
            copies.held(rank: 1, round: round, on: "h1")
        }
        copies.relaunched(rank: 1, restoring: 4)
        #expect(copies.has(rank: 1, round: 4, on: "h1") && !copies.has(rank: 1, round: 5, on: "h1"))
        #expect(copies.has(rank: 0, round: 5, on: "h1"), "another rank's copies stay")
        copies.forget(rank: 1)
        #expect(!copies.has(rank: 1, round: 4, on: "h1"))
        copies.relaunched(rank: 0, restoring: 0)
        #expect(!copies.has(rank: 0, round: 4, on: "h1") && !copies.has(rank: 0, round: 5, on: "h1"),
                "a rank restarted from the beginning keeps no copy")
    }
}
