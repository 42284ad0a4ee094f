import Testing
@testable import LifelineCore

/// When `--inject` faults fire (`FaultSchedule`): at a time, at a commit, in the rank, or
/// again and again (`chaos`, replayed from its seed), and which never fired.
@Suite struct FaultScheduleTests {
    private func schedule(_ specs: [String]) throws -> FaultSchedule {
        FaultSchedule(try specs.map { spec throws(FaultSpecError) in try FaultSpec.parse(spec, rankCount: 4) })
    }

    @Test func theSupervisorsKillAtACommitComesAfterTheOtherFaultsDueThen() throws {
        let faults = try schedule(["kill:supervisor,epoch=3", "lose:memory,epoch=3", "kill:rank=1,epoch=3", "corrupt:mirror=a,epoch=2"])
        #expect(faults.dueAtCommit(2) == [3])
        #expect(faults.dueAtCommit(3) == [1, 2, 0])
        var timed = faults
        #expect(timed.due(now: 1e9, rankCount: 4).isEmpty, "a kill at a commit does not fire at a time")
        #expect(faults.specs[0].description == "kill:supervisor,epoch=3")
        #expect(throws: FaultSpecError.self) { try FaultSpec.parse("kill:supervisor,epoch=3,after=2s", rankCount: 4) }
        #expect(throws: FaultSpecError.self) { try FaultSpec.parse("kill:supervisor,epoch=0", rankCount: 4) }
        #expect(throws: FaultSpecError.self) { try FaultSpec.parse("kill:supervisor", rankCount: 4) }
    }

    @Test func timedFaultsFireOnceAtTheirTimeAndStorageFaultsWhenTheRuntimeSaysSo() throws {
        var faults = try schedule(["kill:rank=1,after=2s", "hang:rank=2,after=3s", "kill:supervisor,after=9s",
                                   "corrupt:mirror=a,file=chunk,after=1s"])
        #expect(faults.due(now: 0.5, rankCount: 4).isEmpty)
        #expect(faults.due(now: 1, rankCount: 4) == [.storage(index: 3)])
        #expect(faults.due(now: 2.5, rankCount: 4) == [.signal(index: 0, rank: RankID(1), stop: false), .storage(index: 3)],
                "the corruption waits for a file to damage")
        faults.fired(3)
        #expect(faults.due(now: 3, rankCount: 4) == [.signal(index: 1, rank: RankID(2), stop: true)])
        #expect(faults.due(now: 20, rankCount: 4) == [.killSupervisor(index: 2)])
        #expect(faults.due(now: 30, rankCount: 4).isEmpty && faults.notFired.isEmpty)
    }

    @Test func commitFaultsRankFaultsAndTheOnesThatNeverFired() throws {
        var faults = try schedule(["fail:mirror=b,epoch=2", "kill:rank=3,step=5", "kill:rank=3,phase=checkpoint", "kill:rank=0,step=1"])
        #expect(faults.dueAtCommit(1).isEmpty && faults.dueAtCommit(2) == [0])
        #expect(faults.inRank(3).map(\.index) == [1, 2] && faults.inRank(1).isEmpty)
        faults.fired(1)
        faults.fired(99)  // a rank's report of no such fault changes nothing
        #expect(faults.inRank(3).map(\.index) == [2], "a restarted rank does not fire it again")
        #expect(faults.notFired.map { "\($0)" } == ["fail:mirror=b,epoch=2", "kill:rank=3,phase=checkpoint", "kill:rank=0,step=1"])
    }

    @Test func chaosKillsAtExponentialTimesReplayedFromItsSeed() throws {
        var first = try schedule(["chaos:seed=7,mtbf=2s"])
        var second = try schedule(["chaos:seed=7,mtbf=2s"])
        var kills: [(Double, RankID)] = []
        for tick in 0..<2_000 {
            let now = Double(tick) * 0.05
            let firings = first.due(now: now, rankCount: 4)
            #expect(firings == second.due(now: now, rankCount: 4))
            for case .chaos(let rank) in firings { kills.append((now, rank)) }
        }
        #expect(kills.count > 20 && kills.count < 100, "about 100 s / 2 s: \(kills.count)")
        #expect(Set(kills.map(\.1)).count == 4, "every rank is drawn")
        #expect(first.notFired.isEmpty, "chaos never ends, so it is never said not to have fired")
    }
}
