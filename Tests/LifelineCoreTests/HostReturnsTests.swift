import Testing

@testable import LifelineCore

/// When a lost host is probed, and when ranks move back to one that answered.
@Suite struct HostReturnsTests {
    /// A lost host is probed a base delay after its loss, then after delays that double per
    /// unanswered probe, a minute at most; a probe running is not started again; an answer ends
    /// the probing.
    @Test func aLostHostIsProbedAtDelaysThatDoubleUntilItAnswers() {
        var returns = HostReturns(delaySecondsBase: 1)
        #expect(returns.delaySecondsBase == 2, "2 s at least")
        returns.lost("b", now: 10)
        #expect(returns.due(now: 11.9, probing: []) == [])
        #expect(returns.due(now: 12, probing: []) == ["b"])
        #expect(returns.due(now: 12, probing: ["b"]) == [], "one probe at a time")
        returns.unanswered("b", now: 20)
        #expect(returns.due(now: 23.9, probing: []) == [])
        #expect(returns.due(now: 24, probing: []) == ["b"])
        for _ in 0..<10 { returns.unanswered("b", now: 100) }
        #expect(returns.next["b"] == HostReturns.Probe(at: 160, unanswered: 11))
        returns.answered("b", commits: 3)
        #expect(returns.due(now: 1000, probing: []) == [])
        returns.unanswered("b", now: 1000)
        #expect(returns.next["b"] == nil, "an answered host is probed no more")
    }

    /// The ranks move back once a line committed since the host answered, or at once where no
    /// line can commit; only while the job is quiet; once. A host lost
    /// again before they moved forgets its return.
    @Test func ranksMoveBackAfterTheNextCommitOrAtOnceWhereNoLineCommits() {
        var returns = HostReturns(delaySecondsBase: 2)
        returns.lost("b", now: 0)
        returns.answered("b", commits: 4)
        #expect(returns.movesDue(commits: 4, noLineCommits: false, quiet: true) == [])
        #expect(returns.movesDue(commits: 5, noLineCommits: false, quiet: false) == [])
        #expect(returns.movesDue(commits: 5, noLineCommits: false, quiet: true) == ["b"])
        #expect(returns.movesDue(commits: 6, noLineCommits: false, quiet: true) == [], "once")

        returns.lost("c", now: 0)
        returns.answered("c", commits: 6)
        #expect(returns.movesDue(commits: 6, noLineCommits: true, quiet: false) == [])
        #expect(returns.movesDue(commits: 6, noLineCommits: true, quiet: true) == ["c"])

        returns.lost("d", now: 0)
        returns.answered("d", commits: 6)
        returns.lost("d", now: 1)
        #expect(returns.movesDue(commits: 9, noLineCommits: true, quiet: true) == [])
        #expect(returns.due(now: 3, probing: []) == ["d"], "probed again")
    }
}
