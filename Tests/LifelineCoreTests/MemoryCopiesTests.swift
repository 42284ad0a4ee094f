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
        #expect(copies.host(of: 2, round: 3) == "h2")
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

    @Test func copiesNoKeptLineHoldsAreForgotten() {
        var copies = MemoryCopies()
        for round: UInt64 in [2, 3, 4, 5] {
            copies.held(rank: 0, round: round, on: "h1")
            copies.held(rank: 1, round: round, on: "h1")
        }
        // Lines 4 and 5 kept; rank 1 is a member of line 5 through its snapshot of round 2.
        copies.forget(before: 5, held: [4: [0, 1], 5: [0], 2: [1]])
        #expect(!copies.has(rank: 0, round: 2, on: "h1") && copies.has(rank: 1, round: 2, on: "h1"))
        #expect(!copies.has(rank: 0, round: 3, on: "h1") && !copies.has(rank: 1, round: 3, on: "h1"))
        #expect(copies.has(rank: 0, round: 4, on: "h1") && copies.has(rank: 1, round: 4, on: "h1"))
        #expect(copies.has(rank: 1, round: 5, on: "h1"), "the round just committed stays")
    }
}
