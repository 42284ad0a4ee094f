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

    /// A lost host that answers again takes ranks again: the ranks that doubled up go back to it,
    /// its own first, and no more than it has slots for; a host whose ranks went to a spare gets
    /// none back (it is a spare now). Its silence counts from its return.
    @Test func aHostThatAnswersAgainTakesBackTheRanksBeyondTheirHostsSlots() {
        var placement = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil)])
        guard case .moved = placement.lose("b", beyondSlots: true) else { Issue.record("b not lost"); return }
        #expect(placement.rankHosts == ["a", "a", "a", "a"])
        #expect(placement.movesBack(to: "b") == [], "a lost host takes nothing")
        placement.readmit("b", now: 50)
        #expect(placement.lost.isEmpty)
        #expect(placement.silence(of: "b", now: 51) == 1)
        #expect(placement.movesBack(to: "b") == [HostPlacement.Move(rank: 2, host: "b"), HostPlacement.Move(rank: 3, host: "b")])
        #expect(placement.rankHosts == ["a", "a", "b", "b"])
        #expect(placement.movesBack(to: "b") == [], "nothing is beyond its slots any more")

        // Three hosts: c's ranks doubled up on a and b; c takes back its own (its slots: 1).
        var three = HostPlacement(rankHosts: ["a", "b", "c"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        guard case .moved = three.lose("c", beyondSlots: true) else { Issue.record("c not lost"); return }
        #expect(three.rankHosts == ["a", "b", "a"])
        three.readmit("c", now: 0)
        #expect(three.movesBack(to: "c") == [HostPlacement.Move(rank: 2, host: "c")])
        #expect(three.rankHosts == ["a", "b", "c"])

        // A spare took the lost host's ranks within its slots: they stay there.
        var spare = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        _ = spare.lose("b", beyondSlots: false)
        spare.readmit("b", now: 0)
        #expect(spare.movesBack(to: "b") == [])
        #expect(spare.rankHosts == ["a", "a", "c", "c"])
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

    /// With partner copies a lost host's ranks go to its partner (the next host by lowest rank)
    /// while it has free slots, where their second copies are; then to the roomiest host.
    @Test func withPartnerCopiesTheLostHostsPartnerTakesItsRanksFirst() {
        let start = HostPlacement(rankHosts: ["a", "b", "b", "c"], hosts: [("a", 3), ("b", 2), ("c", 2), ("d", 3)])
        #expect(HostPlacement.partner(of: "b", rankHosts: start.rankHosts) == "c")
        #expect(HostPlacement.partner(of: "c", rankHosts: start.rankHosts) == "a")
        #expect(HostPlacement.partner(of: "d", rankHosts: start.rankHosts) == nil)
        #expect(HostPlacement.partner(of: "a", rankHosts: ["a", nil, "a"]) == nil)
        var plain = start
        #expect(plain.lose("b", beyondSlots: false)
            == .moved([HostPlacement.Move(rank: 1, host: "d"), HostPlacement.Move(rank: 2, host: "a")]))
        var partnered = start
        partnered.prefersPartner = true
        #expect(partnered.lose("b", beyondSlots: false)
            == .moved([HostPlacement.Move(rank: 1, host: "c"), HostPlacement.Move(rank: 2, host: "d")]))
        #expect(partnered.rankHosts == ["a", "c", "d", "c"])
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

    /// `--on-host-loss` decided: with no free slot left, `wait` doubles up, `fail` stops with the
    /// hosts left and their slots, `shrink` continues on them unless the job cannot (then it
    /// doubles up and says why); free slots take the ranks under every policy, and the shrink
    /// question is asked only when a shrink is chosen.
    @Test func thePolicyDecidesOnlyWhenTheFreeSlotsCannotTakeTheRanks() {
        let start = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil)])
        let left = [HostPlacement.Host(name: "b", slots: 2)]
        var asked = 0
        let canShrink = { () -> String? in asked += 1; return nil }
        var waiting = start
        #expect(waiting.lose("a", policy: .wait, shrinkRefusal: canShrink)
            == .moved([HostPlacement.Move(rank: 0, host: "b"), HostPlacement.Move(rank: 1, host: "b")], shrinkRefused: nil))
        var failing = start
        #expect(failing.lose("a", policy: .fail, shrinkRefusal: canShrink) == .fail(rankCount: 2, hosts: left))
        #expect(failing == start, "a stop moves no rank")
        var shrinking = start
        #expect(shrinking.lose("a", policy: .shrink, shrinkRefusal: canShrink) == .shrink(rankCount: 2, hosts: left))
        #expect(asked == 1)
        var refused = start
        #expect(refused.lose("a", policy: .shrink, shrinkRefusal: { "the state is not Redistributable" })
            == .moved([HostPlacement.Move(rank: 0, host: "b"), HostPlacement.Move(rank: 1, host: "b")],
                      shrinkRefused: "the state is not Redistributable"))
        var spare = HostPlacement(rankHosts: ["a", "a", "b", "b"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        #expect(spare.lose("a", policy: .fail, shrinkRefusal: canShrink)
            == .moved([HostPlacement.Move(rank: 0, host: "c"), HostPlacement.Move(rank: 1, host: "c")], shrinkRefused: nil))
        #expect(asked == 1)
        var last = HostPlacement(rankHosts: ["a", "a"], hosts: [("a", nil)])
        #expect(last.lose("a", policy: .shrink, shrinkRefusal: canShrink) == .lastHost)
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

    /// The silence rule: a silent rank's host is lost when none of its ranks was heard from for
    /// half the heartbeat timeout, and it holds two ranks or more (one silent rank alone may
    /// only be hung); a lost host is not judged again.
    @Test func aHostIsLostWhenNoneOfItsRanksWasHeardFor() {
        var placement = HostPlacement(rankHosts: ["a", "a", "b", "b", "c"], hosts: [("a", nil), ("b", nil), ("c", nil)])
        for rank in 0..<5 { placement.heard(from: rank, now: 1) }
        placement.heard(from: 1, now: 3.5)  // a rank of host a still beats
        let lost = placement.lostBySilence(of: [0, 2, 4], now: 4, heartbeatTimeoutSeconds: 5)
        #expect(lost.map(\.host) == ["b"], "\(lost)")
        #expect(lost.first?.cause == "none of its ranks was heard from for 3.0 s")
        #expect(placement.lostBySilence(of: [2], now: 3, heartbeatTimeoutSeconds: 5).isEmpty, "2 s is not half the timeout")
        _ = placement.lose("b", beyondSlots: true)
        #expect(placement.lostBySilence(of: [0], now: 4, heartbeatTimeoutSeconds: 5).isEmpty, "rank 0 moved to a beating host")
    }

    /// The exit rule: a rank that failed before it connected, from a host silent for the whole
    /// heartbeat timeout since its last word or launch.
    @Test func aHostIsLostWhenARankFailsBeforeConnectingFromASilentHost() {
        var placement = HostPlacement(rankHosts: ["a", "b"], hosts: [("a", nil), ("b", nil)])
        placement.heard(from: 1, now: 2)
        #expect(placement.lostByExit(of: 1, exit: "exited with status 3", now: 6, heartbeatTimeoutSeconds: 5) == nil,
                "launched there 4 s ago")
        let lost = placement.lostByExit(of: 1, exit: "exited with status 3", now: 7.5, heartbeatTimeoutSeconds: 5)
        #expect(lost?.host == "b")
        #expect(lost?.cause == "rank 1 exited with status 3 before it connected, and no rank there was heard from for 5.5 s")
    }
}
