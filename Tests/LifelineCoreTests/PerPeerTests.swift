import Testing
@testable import LifelineCore

/// `PerPeer`: a value per rank that reads and writes like an array, and beyond 64 ranks stores
/// only what differs from the absent value.
@Suite struct PerPeerTests {
    /// Both storages: every rank's value in an array (up to `denseRanksMax` ranks) and only
    /// the used ones in a dictionary (beyond).
    @Test(arguments: [PerPeer<[Int]>.denseRanksMax, 10_000])
    func itReadsAndWritesLikeAnArrayAndStoresOnlyWhatIsUsed(rankCount: Int) {
        var inbox = PerPeer<[Int]>(rankCount: rankCount, absent: [])
        #expect(inbox.count == rankCount && inbox.usedCount == 0 && inbox[rankCount - 1] == [])
        inbox[42].append(7)
        inbox[42].append(8)
        inbox[3].append(1)
        #expect(inbox[42] == [7, 8] && inbox.used == [3, 42] && inbox.usedCount == 2)
        inbox[42].removeAll()
        #expect(inbox.used == [3], "a rank back at the absent value is not stored")
        inbox[3] = []
        #expect(inbox.usedCount == 0)
    }

    @Test func denseArraysConvertBothWaysAndEqualityIsByValue() {
        let sets: DeliveredSets = [DeliveredSet(), DeliveredSet(watermark: SequenceNumber(4), above: []), DeliveredSet()]
        #expect(sets.count == 3 && sets.used == [1] && sets.dense[1].count == 4)
        #expect(sets == DeliveredSets(sets.dense))
        var other = DeliveredSets(rankCount: 3)
        _ = other[1].insert(SequenceNumber(0))
        #expect(other != sets)
        for sequence in 1...3 { _ = other[1].insert(SequenceNumber(UInt64(sequence))) }
        #expect(other == sets)
        #expect(PerPeer([5, -1, 5], absent: -1).used == [0, 2])
    }
}
