import Testing
@testable import LifelineCore

/// Sender-based logging's event logger (the supervisor's side) and its client (a rank's), row
/// by row of their tables.
struct EventLoggerTests {
    private func records(_ sizes: Int...) -> [[UInt8]] { sizes.map { Array(repeating: UInt8($0), count: $0) } }

    @Test func appendsAreHeldInOrderAndAcknowledgedThroughTheirEnd() {
        var logger = EventLogger(rankCount: 2)
        #expect(logger.append(1, first: 0, records: records(3, 4)) == 2)
        #expect(logger.append(1, first: 2, records: records(5)) == 3)
        #expect(logger.replay(of: 1)?.first == 0 && logger.replay(of: 1)?.records == records(3, 4, 5))
        #expect(logger.bytes == 12 && logger.logs[1].bytes == 12)
        #expect(logger.replay(of: 0) == nil, "a rank that appended nothing has nothing to replay")
    }

    @Test func anAppendBehindTheEndCutsWhatARollbackUndid() {
        var logger = EventLogger(rankCount: 1)
        _ = logger.append(0, first: 10, records: records(1, 2, 3))
        #expect(logger.append(0, first: 11, records: records(7)) == 12)
        #expect(logger.replay(of: 0)?.records == records(1, 7))
        #expect(logger.bytes == 8)
        // Outside what it holds (a rollback to an older line): it starts afresh there.
        _ = logger.append(0, first: 4, records: records(2))
        #expect(logger.replay(of: 0)?.first == 4 && logger.replay(of: 0)?.records == records(2))
        #expect(logger.bytes == 2)
    }

    @Test func aCommitTrimsTheCoveredRecordsAndTheLossIsSaid() {
        var logger = EventLogger(rankCount: 1)
        _ = logger.append(0, first: 0, records: records(1, 2, 3, 4))
        logger.trim(0, before: 2)
        #expect(logger.replay(of: 0)?.first == 2 && logger.replay(of: 0)?.records == records(3, 4))
        #expect(logger.bytes == 7 && logger.bytesPeak == 10)
        #expect(logger.lost(0, from: 2) == nil && logger.lost(0, from: 4) == nil)
        #expect(logger.lost(0, from: 1) != nil, "records before a newer commit's position are gone")
        #expect(logger.lost(0, from: 5) != nil, "a position past the end was never logged here")
        logger.trim(0, before: 1)
        #expect(logger.replay(of: 0)?.first == 2, "an older trim changes nothing")
    }

    @Test func aRelaunchWithoutReplayForgetsAndTheNextAppendSaysWhereItContinues() {
        var logger = EventLogger(rankCount: 1)
        _ = logger.append(0, first: 0, records: records(1, 2))
        logger.forget(0)
        #expect(logger.replay(of: 0) == nil && logger.bytes == 0)
        #expect(logger.lost(0, from: 9) == nil, "nothing was appended since the relaunch: nothing to lose")
        _ = logger.append(0, first: 9, records: records(4))
        #expect(logger.replay(of: 0)?.first == 9)
        logger.forget(0)
        logger.trim(0, before: 12)
        #expect(logger.replay(of: 0)?.first == 12 && logger.replay(of: 0)?.records == [])
    }

    @Test func aClientSendsOnlyOnceEveryRecordIsAcknowledged() {
        var client = EventLogClient(position: 5)
        #expect(client.sendsMayGo)
        let message = client.append(records(2, 3))
        #expect(message == .logEvents(first: 5, records: records(2, 3), acknowledge: true))
        #expect(!client.sendsMayGo && client.nextIndex == 7)
        client.handleLogged(through: 6)
        #expect(!client.sendsMayGo, "one record is still unacknowledged")
        client.handleLogged(through: 7)
        #expect(client.sendsMayGo)
        client.handleLogged(through: 99)
        #expect(client.acknowledged == 7, "an acknowledgement beyond what was appended is capped")
        #expect(client.heldBytes == 5 && client.appendedBytes == 5)
        client.committed(before: 6)
        #expect(client.heldBytes == 3 && client.heldBytesPeak == 5)
    }

    @Test func aRankOnTheSupervisorsHostSendsOnceItsRecordIsWritten() {
        var client = EventLogClient(position: 0, stableOnWrite: true)
        #expect(client.append(records(4)) == .logEvents(first: 0, records: records(4), acknowledge: false))
        #expect(client.sendsMayGo, "a record in the control socket survives the rank on the supervisor's host")
        client.handleLogged(through: 1)
        #expect(client.acknowledged == 1 && client.nextIndex == 1)
    }

    @Test func theSupervisorMachineAcknowledgesTrimsAtCommitAndForgetsOnARollback() {
        var machine = SupervisorMachine(
            settings: .init(rankCount: 2, logging: .senderBased, independent: false, maxRestarts: 3,
                            heartbeatTimeoutSeconds: 2, joinTimeoutSeconds: 10),
            coordinator: CheckpointCoordinator(rankCount: 2, intervalSeconds: 1, committed: .start, now: 0), incarnation: 0)
        _ = machine.launching(0, plan: StartPlan(), step: -1, now: 0)
        _ = machine.handleConnected(0, now: 0)
        #expect(machine.handleLogEvents(from: 0, first: 0, records: records(1, 2, 3), acknowledge: true) == [.send(0, .eventsLogged(through: 3))])
        #expect(machine.handleLogEvents(from: 0, first: 3, records: [], acknowledge: false).isEmpty, "no acknowledgement unless asked")
        let ack = Acknowledgement(step: 1, snapshotBytes: 1, outputOffset: 0, delivered: DeliveredSets(rankCount: 2), logPosition: 2)
        machine.lineCommitted(acks: [ack, Acknowledgement(step: 1, snapshotBytes: 0, outputOffset: 0,
                                                          delivered: DeliveredSets(rankCount: 2), kept: true)])
        #expect(machine.eventLogger.replay(of: 0)?.first == 2 && machine.eventLogger.replay(of: 0)?.records == records(3))
        _ = machine.launching(0, plan: StartPlan(restarted: true, replayLog: false), step: 1, now: 1)
        #expect(machine.eventLogger.replay(of: 0) == nil, "a relaunch without replay forgets the undone execution's records")
        #expect(machine.uncutLogs.isEmpty, "the event logger is cut at the relaunch: no log waits to be cut")
    }
}
