import Testing
@testable import LifelineCore

/// What a failed mirror leads to (`MirrorPolicy`), each row of its table, and the supervisor
/// machine telling every rank which mirrors to write.
@Suite struct MirrorPolicyTests {
    @Test func aFailedWriteDegradesThenTheSecondStops() {
        var policy = MirrorPolicy()
        let degraded = policy.writeFailed(.b, reason: "disk full", now: 3)
        #expect(degraded == .degrade(writing: .a))
        #expect(policy.writing == .a && policy.failed == .init(mirror: .b, reason: "disk full", since: 3))
        let late = policy.writeFailed(.b, reason: "late write", now: 3.5)
        #expect(late == .nothing, "a write begun before the degrade")
        let second = policy.writeFailed(.a, reason: "I/O error", now: 4)
        #expect(second == .stop(first: .init(mirror: .b, reason: "disk full", since: 3)))
    }

    @Test func resynchronisationIsTriedEveryPeriodWhenQuietAndBacksOffAfterALongTry() {
        var policy = MirrorPolicy()
        let tries = [
            policy.resyncDue(now: 10, degradedCommits: false, quiet: true),  // nothing to resynchronise
            policy.resyncDue(now: 10, degradedCommits: true, quiet: true),  // an earlier run's degraded commits
            policy.resyncDue(now: 10.5, degradedCommits: true, quiet: true),  // a period has not passed
        ]
        #expect(tries == [false, true, false])
        _ = policy.writeFailed(.a, reason: "read-only", now: 20)
        let failedTries = [
            policy.resyncDue(now: 20.5, degradedCommits: false, quiet: true),  // a period has not passed
            policy.resyncDue(now: 21, degradedCommits: false, quiet: false),  // a round or a recovery under way
            policy.resyncDue(now: 21, degradedCommits: false, quiet: true),
        ]
        #expect(failedTries == [false, false, true])
        policy.resyncTook(3, now: 24)
        #expect(policy.nextResyncAt == 36, "four times a long try")
        let ended = policy.resynchronised()
        #expect(ended == .init(mirror: .a, reason: "read-only", since: 20))
        let again = policy.resynchronised()
        #expect(policy.writing == .both && policy.failed == nil && again == nil)
    }

    @Test func aLineCommitsOnTheMirrorsItsSnapshotsShare() {
        var policy = MirrorPolicy()
        #expect(policy.commitMirror([.both, .both]) == (nil, true))
        #expect(policy.commitMirror([.both, .a]) == (.a, true))
        #expect(policy.commitMirror([.a, .b]) == (nil, false))
        _ = policy.writeFailed(.a, reason: "full", now: 0)
        #expect(policy.commitMirror([.both, .both]) == (.b, true), "only the mirror written counts")
    }

    @Test func theMachineTellsEveryRankWhichMirrorsToWriteAndStartPlansFollow() {
        var machine = SupervisorMachine(
            settings: .init(rankCount: 2, logging: .none, independent: false, maxRestarts: 1, heartbeatTimeoutSeconds: 10,
                            joinTimeoutSeconds: 10),
            coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 100, committed: .start, now: 0), incarnation: 0)
        for rank in 0..<2 {
            _ = machine.launching(rank, plan: StartPlan(), step: -1, now: 0)
            _ = machine.handleConnected(rank, now: 0)
        }
        let (decision, actions) = machine.writeFailed(.a, reason: "full", now: 1)
        #expect(decision == .degrade(writing: .b))
        #expect(actions == [.send(0, .writeMirrors(.b)), .send(1, .writeMirrors(.b))])
        #expect(machine.writeMirrors == .b)
        let due = machine.resyncDue(now: 2, degradedCommits: false)
        #expect(due)
        let (ended, back) = machine.resynchronised()
        #expect(ended?.mirror == .a && back == [.send(0, .writeMirrors(.both)), .send(1, .writeMirrors(.both))])
    }

    /// With partner hosts the supervisor's mirrors hold the manifest alone: a failure of one
    /// degrades the manifest's writes, tells no rank, marks no line with a mirror, and ends
    /// with nothing sent either.
    @Test func mirrorsThatHoldTheManifestAloneDegradeWithoutTheRanks() {
        var machine = SupervisorMachine(
            settings: .init(rankCount: 2, logging: .none, independent: false, maxRestarts: 1, heartbeatTimeoutSeconds: 10,
                            joinTimeoutSeconds: 10, mirrorsHoldManifestOnly: true),
            coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 100, committed: .start, now: 0), incarnation: 0)
        for rank in 0..<2 {
            _ = machine.launching(rank, plan: StartPlan(), step: -1, now: 0)
            _ = machine.handleConnected(rank, now: 0)
        }
        let (decision, actions) = machine.writeFailed(.b, reason: "read-only", now: 1)
        #expect(decision == .degrade(writing: .a) && actions.isEmpty)
        #expect(machine.mirrors.writing == .a && machine.writeMirrors == .both, "the manifest on A, the ranks (and START plans) on both")
        #expect(machine.mirrors.commitMirror([.both, .both]) == (nil, true), "a line is not marked with a mirror")
        #expect(machine.mirrors.commitMirror([.both, .a]) == (.a, true))
        let second = machine.writeFailed(.a, reason: "I/O error", now: 2).0
        #expect(second == .stop(first: .init(mirror: .b, reason: "read-only", since: 1)))
        var resynchronising = SupervisorMachine(
            settings: .init(rankCount: 2, logging: .none, independent: false, maxRestarts: 1, heartbeatTimeoutSeconds: 10,
                            joinTimeoutSeconds: 10, mirrorsHoldManifestOnly: true),
            coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 100, committed: .start, now: 0), incarnation: 0)
        _ = resynchronising.writeFailed(.a, reason: "full", now: 1)
        let due = resynchronising.resyncDue(now: 2, degradedCommits: false)
        let (ended, back) = resynchronising.resynchronised()
        #expect(due && ended?.mirror == .a && back.isEmpty && resynchronising.mirrors.writing == .both)
    }

    /// A new line: a rank that kept its checkpoint (minimal) keeps its entry, the others name
    /// what their current process wrote, on the mirror all the new snapshots share.
    @Test func aLineToCommitKeepsWhatWasKeptOnTheMirrorTheSnapshotsShare() {
        var machine = SupervisorMachine(
            settings: .init(rankCount: 3, logging: .none, independent: false, maxRestarts: 1, heartbeatTimeoutSeconds: 10,
                            joinTimeoutSeconds: 10),
            coordinator: CheckpointCoordinator(rankCount: 3, intervalSeconds: 100, committed: .start, now: 0), incarnation: 0)
        for rank in 0..<3 { _ = machine.launching(rank, plan: StartPlan(), step: -1, now: 0) }
        let empty = DeliveredSets(rankCount: 3, absent: DeliveredSet())
        func ack(kept: Bool = false, on mirrors: StorageMirrors = .both) -> Acknowledgement {
            Acknowledgement(step: 4, snapshotBytes: 1, outputOffset: 0, delivered: empty, kept: kept, mirrors: mirrors)
        }
        let line = machine.lineToCommit([ack(), ack(kept: true, on: []), ack(on: .b)])
        #expect(line?.entries == [.wrote(incarnation: 0), .keeps, .wrote(incarnation: 2)])
        #expect(line?.onlyOn == .b)
        #expect(machine.lineToCommit([ack(on: .a), ack(on: .b), ack()]) == nil, "no mirror shared")
    }
}
