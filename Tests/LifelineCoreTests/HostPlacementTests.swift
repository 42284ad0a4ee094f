import Testing

@testable import LifelineCore

/// Where a lost host's ranks go (`--on-host-loss`): free slots first (a spare host takes the
/// place of the lost one), then, by the policy, doubling up or nowhere (the job shrinks or stops).
@Suite struct HostPlacementTests {
    /// Two hosts of two ranks each and a spare: the spare takes the lost host's ranks, under
    /// every policy.
    @Test(arguments: [false, true])
    func aSpareHostTakesTheLostHostsRanks(beyondSlots: Bool) {
        var placement = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        #expect(placement.hosts.map(\.slots) == [2, 2, 2])
        #expect(placement.lose("b", beyondSlots: beyondSlots)
            == .moved([HostPlacement.Move(rank: 2, host: "c"), HostPlacement.Move(rank: 3, host: "c")]))
        #expect(placement.rankHosts == ["a", "a", "c", "c"])
        #expect(placement.lost == ["b"])
        // Lost once, a host is not lost again; its ranks left it.
        #expect(placement.lose("c", beyondSlots: false) == .noRoom(hostsLeft: [HostPlacement.Host(name: "a", slots: 2)], rankCount: 2))
        #expect(placement.rankHosts == ["a", "a", "c", "c"], "a refusal changes nothing")
    }

    /// Free slots are filled from the host with the most of them, the first in order on a tie.
    @Test func freeSlotsAreFilledFromTheRoomiestHost() {
        var placement = HostPlacement(
            rankHosts: ["a", "a", "a", "b", "c"], hosts: [("a", 3), ("b", 2), ("c", 3)])
        #expect(placement.lose("a", beyondSlots: false) == .moved([
            HostPlacement.Move(rank: 0, host: "c"), HostPlacement.Move(rank: 1, host: "b"), HostPlacement.Move(rank: 2, host: "c"),
        ]))
        #expect(placement.rankHosts == ["c", "b", "c", "b", "c"])
    }

    /// With no free slot left: doubling up goes to the hosts with the fewest ranks; without it
    /// the loss says how many ranks the hosts left hold, and changes nothing.
    @Test func withoutFreeSlotsTheRanksDoubleUpOrTheJobShrinks() {
        let start = HostPlacement(rankHosts: ["a", "a", "b", "b", "c", "c"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        var refused = start
        #expect(refused.lose("a", beyondSlots: false) == .noRoom(
            hostsLeft: [HostPlacement.Host(name: "b", slots: 2), HostPlacement.Host(name: "c", slots: 2)], rankCount: 4))
        #expect(refused == start)
        var doubled = start
        #expect(doubled.lose("a", beyondSlots: true)
            == .moved([HostPlacement.Move(rank: 0, host: "b"), HostPlacement.Move(rank: 1, host: "c")]))
        #expect(doubled.rankHosts == ["b", "c", "b", "b", "c", "c"])
    }

    /// The last host is never lost: its ranks stay.
    @Test func theLastHostIsNotLost() {
        var placement = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil)])
        #expect(placement.lose("a", beyondSlots: true) == .moved([HostPlacement.Move(rank: 0, host: "b"), HostPlacement.Move(rank: 1, host: "b")]))
        #expect(placement.lose("b", beyondSlots: true) == .lastHost)
        #expect(placement.rankHosts == ["b", "b", "b", "b"] && placement.lost == ["a"])
    }

    /// Slots below what the placement gave a host (the ranks do not divide) count as the ranks
    /// it holds: a host never starts over its slots.
    @Test func aHostsSlotsAreAtLeastItsRanks() {
        let placement = HostPlacement(rankHosts: ["a", "a", "a", "b"], hosts: [("a", 1), ("b", nil)])
        #expect(placement.hosts == [HostPlacement.Host(name: "a", slots: 3), HostPlacement.Host(name: "b", slots: 2)])
    }
}
