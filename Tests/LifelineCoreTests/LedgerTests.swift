import Testing
@testable import LifelineCore

/// Delivered sets, retention and duplicate suppression, and the wire formats.
struct LedgerTests {
    @Test func deliveredSetMatchesASetModel() {
        for seed in UInt64(1)...200 {
            var generator = SplitMix64(seed: seed)
            var set = DeliveredSet()
            var model = Set<UInt64>()
            for _ in 0..<300 {
                let value = UInt64.random(in: 0..<120, using: &generator)
                let inserted = set.insert(SequenceNumber(value))
                let expected = model.insert(value).inserted
                #expect(inserted == expected, "seed \(seed): insert \(value)")
            }
            for value in UInt64(0)..<130 {
                #expect(set.contains(SequenceNumber(value)) == model.contains(value), "seed \(seed): contains \(value)")
            }
            #expect(set.count == model.count, "seed \(seed)")
            var writer = ByteWriter()
            set.encode(into: &writer)
            var reader = ByteReader(writer.bytes)
            #expect((try? DeliveredSet.decode(from: &reader)) == set, "seed \(seed): round trip")
        }
    }

    @Test func retentionTrimsWhatTheReceiverCovered() throws {
        var sender = MessageLedger(rank: RankID(0), rankCount: 2)
        for index in 0..<5 {
            let header = sender.send(to: RankID(1), tag: 7, epoch: .start, incarnation: 0, payload: [UInt8(index), 0])
            #expect(header.sequence == SequenceNumber(UInt64(index)))
        }
        #expect(sender.retainedBytes == 10)
        sender.trim(destination: RankID(1), covered: DeliveredSet(watermark: SequenceNumber(2), above: [SequenceNumber(3)]))
        #expect(sender.retained[1].map(\.header.sequence.rawValue) == [2, 4])
        #expect(sender.retainedBytes == 4)

        var writer = ByteWriter()
        sender.encode(into: &writer)
        var reader = ByteReader(writer.bytes)
        #expect(try MessageLedger.decode(from: &reader, rank: RankID(0), rankCount: 2) == sender)
        var wrong = ByteReader(writer.bytes)
        #expect(throws: WireError.self) { try MessageLedger.decode(from: &wrong, rank: RankID(1), rankCount: 2) }
    }

    /// A restarted sender resends 1…5; the receiver had delivered 1…3: those are dropped,
    /// 4 and 5 are delivered once.
    @Test func resentMessagesAreDeliveredOnce() {
        var receiver = MessageLedger(rank: RankID(1), rankCount: 2)
        for sequence in UInt64(0)..<3 { receiver.recordDelivery(source: RankID(0), sequence: SequenceNumber(sequence)) }
        var delivered: [UInt64] = []
        for sequence in UInt64(0)..<5 where !receiver.isDuplicate(source: RankID(0), sequence: SequenceNumber(sequence)) {
            if receiver.recordDelivery(source: RankID(0), sequence: SequenceNumber(sequence)) { delivered.append(sequence) }
        }
        #expect(delivered == [3, 4])
        let again = receiver.recordDelivery(source: RankID(0), sequence: SequenceNumber(4))
        #expect(!again, "a duplicate was accepted")
    }

    @Test func controlMessagesRoundTripAndRejectDamage() throws {
        let set = DeliveredSet(watermark: SequenceNumber(3), above: [SequenceNumber(5)])
        let messages: [ControlMessage] = [
            .start(StartPlan(restarted: true, restoreEpoch: Epoch(1))), .checkpointRequest(Epoch(2)), .safePointChosen(Epoch(2), step: 9),
            .checkpointDone(Epoch(2), coveredByReceiver: [set, DeliveredSet()]), .abort(Epoch(4)), .release,
            .peerRestarted(RankID(3), incarnation: 7), .heartbeat(step: -1), .stepReport(Epoch(2), step: 8),
            .ack(Epoch(2), Acknowledgement(step: 9, snapshotBytes: 77, outputOffset: 12, delivered: [set])),
            .snapshotFailed(Epoch(2), reason: "no space"), .finished(step: 100, loggedBytes: 4096, retainedBytesPeak: 7, logBytesPeak: 9, residentBytesPeak: 11), .checkpointWanted,
            .faultFired(index: 2), .replayComplete(deliveries: 42), .caughtUp(step: 400),
            .peerAddresses([RankAddress(host: "h1", address: "10.0.0.1", port: 4242, incarnation: 3), nil]), .signal(19),
            .peerAddress(RankID(2), RankAddress(host: "h2", address: "10.0.0.2", port: 5151, incarnation: 9)),
        ]
        for message in messages {
            let frame = message.frame()
            let prefix = try frame.withUnsafeBytes { bytes throws(WireError) in try FramePrefix.decode(bytes) }
            #expect(prefix.kind == .control)
            let body = Array(frame[FramePrefix.byteCount...])
            #expect(try ControlMessage.decode(body) == message)
            if body.count > 1 {
                #expect(throws: WireError.self, "\(message) truncated") { try ControlMessage.decode(Array(body.dropLast())) }
            }
            #expect(throws: WireError.self, "\(message) with trailing bytes") { try ControlMessage.decode(body + [0]) }
        }
        #expect(throws: WireError.self) { try ControlMessage.decode([200]) }
        var oversize = ByteWriter()
        FramePrefix(kind: .data, bodyLength: FramePrefix.bodyBytesMax + 1).encode(into: &oversize)
        #expect(throws: WireError.self) { try oversize.bytes.withUnsafeBytes { bytes throws(WireError) in try FramePrefix.decode(bytes) } }
    }

    /// The host handshake's frames round-trip, refuse damage, and the two MACs' transcripts
    /// differ (no answer can be reflected back) and cover both nonces.
    @Test func hostHandshakeFramesRoundTripAndTranscriptsDiffer() throws {
        let hello = HostHello(role: .control, rank: RankID(7), incarnation: 9, pid: 1234, port: 5555,
                              nonce: Array(repeating: 1, count: HostHandshake.nonceBytes))
        let challenge = HostChallenge(role: .supervisor, rank: RankID(0), incarnation: 0,
                                      nonce: Array(repeating: 2, count: HostHandshake.nonceBytes),
                                      mac: Array(repeating: 3, count: HostHandshake.macBytes))
        let helloBody = Array(hello.frame()[FramePrefix.byteCount...])
        #expect(try HostHello.decode(helloBody) == hello)
        #expect(throws: WireError.self) { try HostHello.decode(Array(helloBody.dropLast())) }
        #expect(throws: WireError.self) { try HostHello.decode(helloBody + [0]) }
        let challengeBody = Array(challenge.frame()[FramePrefix.byteCount...])
        #expect(try HostChallenge.decode(challengeBody) == challenge)
        #expect(throws: WireError.self) { try HostChallenge.decode(Array(challengeBody.dropLast())) }
        let acceptor = HostHandshakeTranscript.acceptor(hello, challenge)
        let connector = HostHandshakeTranscript.connector(hello, challenge)
        #expect(acceptor != connector)
        var otherNonce = challenge
        otherNonce.nonce[0] = 9
        #expect(HostHandshakeTranscript.acceptor(hello, otherNonce) != acceptor)
        var otherIncarnation = hello
        otherIncarnation.incarnation = 8
        #expect(HostHandshakeTranscript.connector(otherIncarnation, challenge) != connector)
    }

    @Test func faultSpecsParseAndRefuse() throws {
        #expect(try FaultSpec.parse("kill:rank=1,step=40", rankCount: 4) == .killAtStep(RankID(1), step: 40))
        #expect(try FaultSpec.parse("kill:rank=2,after=250ms", rankCount: 4) == .killAfter(RankID(2), seconds: 0.25))
        #expect(try FaultSpec.parse("kill:rank=0,phase=checkpoint", rankCount: 4) == .killInPhase(RankID(0), .checkpoint))
        #expect(try FaultSpec.parse("hang:rank=3,after=1.5s", rankCount: 4) == .hangAfter(RankID(3), seconds: 1.5))
        #expect(try FaultSpec.parse("kill:supervisor,after=1m", rankCount: 4) == .killSupervisor(.after(seconds: 60)))
        #expect(try FaultSpec.parse("chaos:seed=7,mtbf=2s", rankCount: 4) == .chaos(seed: 7, mtbfSeconds: 2))
        #expect(try FaultSpec.parse("corrupt:mirror=a,epoch=3", rankCount: 4) == .corrupt(mirrorA: true, .epoch(3), .chunk))
        #expect(try FaultSpec.parse("corrupt:mirror=b,after=2s,file=manifest", rankCount: 4)
                == .corrupt(mirrorA: false, .after(seconds: 2), .manifest))
        #expect(try FaultSpec.parse("fail:mirror=b,epoch=2,for=3s", rankCount: 4) == .failMirror(mirrorA: false, .epoch(2), seconds: 3))
        #expect(try FaultSpec.parse("fail:mirror=a,after=2.5s", rankCount: 4) == .failMirror(mirrorA: true, .after(seconds: 2.5), seconds: nil))
        #expect(try FaultSpec.parse("lose:memory,epoch=3", rankCount: 4) == .loseMemory(.epoch(3)))
        #expect(try FaultSpec.parse("kill:rank=2,epoch=4", rankCount: 4) == .killAtCommit(RankID(2), epoch: 4))
        #expect(try FaultSpec.parse("lose:memory,after=2s", rankCount: 4) == .loseMemory(.after(seconds: 2)))
        for bad in ["lose:memory", "lose:epoch=3", "lose:memory,epoch=0", "lose:memory,epoch=2,after=1s", "lose:memory,epoch=2,mirror=a", "kill:rank=1,epoch=0", "kill:rank=1,epoch=2,step=3",
                    "kill", "kill:rank=9,step=1", "kill:rank=1", "kill:rank=1,step=x", "hang:rank=1,after=3",
                    "kill:rank=1,phase=lunch", "boom:rank=1", "kill:rank=1,step=2,step=3", "kill:rank=1,after=2s,color=red",
                    "corrupt:mirror=c,epoch=1", "corrupt:mirror=a", "corrupt:mirror=a,epoch=0", "corrupt:mirror=a,epoch=1,after=2s",
                    "corrupt:mirror=a,epoch=1,file=disk", "corrupt:mirror=a,epoch=1,rank=2",
                    "fail:mirror=b", "fail:mirror=b,epoch=1,file=chunk", "fail:mirror=b,epoch=1,for=3", "fail:mirror=x,after=1s"] {
            #expect(throws: FaultSpecError.self, "\(bad) was accepted") { try FaultSpec.parse(bad, rankCount: 4) }
        }
        for spec in ["kill:rank=1,step=40", "hang:rank=3,after=250ms", "chaos:seed=7,mtbf=2.0s", "corrupt:mirror=b,epoch=2",
                     "corrupt:mirror=a,after=1.5s,file=log", "corrupt:mirror=a,epoch=4,file=index",
                     "fail:mirror=b,epoch=2,for=3s", "fail:mirror=a,after=250ms", "lose:memory,epoch=5", "lose:memory,after=1.5s", "kill:rank=3,epoch=2"] {
            #expect(try FaultSpec.parse(try FaultSpec.parse(spec, rankCount: 4).description, rankCount: 4)
                    == FaultSpec.parse(spec, rankCount: 4))
        }
    }

    @Test func exponentialDrawsHaveTheirMean() {
        var generator = SplitMix64(seed: 42)
        let draws = (0..<20000).map { _ in generator.exponential(mean: 2) }
        let mean = draws.reduce(0, +) / Double(draws.count)
        #expect(abs(mean - 2) < 0.1, "mean \(mean)")
        #expect(abs(naturalLogarithm(10) - 2.302585092994046) < 1e-12)
    }

    private func header(_ source: Int, sequence: UInt64 = 0, tag: Int64 = 1) -> DataHeader {
        DataHeader(source: RankID(source), incarnation: 0, tag: tag, sequence: SequenceNumber(sequence), epoch: .start)
    }

    /// Any-source replay: the log says P2 then P1; during replay P1's arrives first, yet the
    /// receive returns P2's first.
    @Test func pessimisticReplayReturnsTheLoggedOrder() {
        var queue = ReplayQueue([.delivery(header(2), payload: [2]), .delivery(header(1), payload: [1]), .value([9])],
                                mode: .pessimistic)
        #expect(queue.nextReceive(source: nil, tag: 1) == .deliver(header(2), payload: [2]))
        if case .diverged = queue.nextReceive(source: RankID(2), tag: 1) {} else { Issue.record("a wrong source was accepted") }
        #expect(queue.nextReceive(source: nil, tag: 1) == .deliver(header(1), payload: [1]))
        if case .diverged = queue.nextReceive(source: nil, tag: 1) {} else { Issue.record("a receive replaced a value read") }
        #expect((try? queue.nextValue().get()) == [9])
        #expect(queue.nextReceive(source: nil, tag: 1) == .exhausted)
        // `replay_done` reports the receives the log answered: the two deliveries, not the value.
        #expect(queue.deliveriesReplayed == 2)
    }

    /// Sender-based: only receives from any source are logged (as determinants); a named
    /// receive goes live, an any-source receive waits for the logged message.
    @Test func senderBasedReplayWaitsForTheLoggedMessage() {
        var queue = ReplayQueue([.determinant(header(3, sequence: 7))], mode: .senderBased)
        #expect(queue.nextReceive(source: RankID(1), tag: 1) == .live)
        #expect(queue.nextReceive(source: nil, tag: 1) == .await(header(3, sequence: 7)))
        #expect(queue.remainingCount == 0)
        #expect(queue.deliveriesReplayed == 1)
        // Only what was taken counts, and a value read is no delivery.
        var values = ReplayQueue([.value([1]), .determinant(header(3, sequence: 8))], mode: .senderBased)
        #expect((try? values.nextValue().get()) == [1])
        #expect(values.deliveriesReplayed == 0)
    }

    @Test func logRecordsRoundTripAndRejectDamage() throws {
        for record in [LogRecord.delivery(header(1, sequence: 4), payload: [1, 2, 3]), .determinant(header(2)), .value([0, 1])] {
            #expect(try LogRecord.decode(record.encoded()) == record)
        }
        #expect(throws: WireError.self) { try LogRecord.decode([9, 1]) }
        #expect(throws: WireError.self) { try LogRecord.decode([2] + [UInt8](repeating: 0, count: 10)) }
        #expect(throws: WireError.self) { try LogRecord.decode([2] + [UInt8](repeating: 0, count: DataHeader.byteCount + 1)) }
    }
}
