import Testing
@testable import LifelineCore

/// Frames on the wire: the prefix, control messages, handshakes and data headers.
struct WireFormatTests {
    private static let sets: DeliveredSets = [
        DeliveredSet(),
        DeliveredSet(watermark: SequenceNumber(3), above: [SequenceNumber(5), SequenceNumber(900)]),
        DeliveredSet(watermark: SequenceNumber(UInt64.max - 1), above: []),
    ]

    /// One value of every case, some with extreme fields.
    static let everyControlMessage: [ControlMessage] = [
        .start(StartPlan()),
        .start(StartPlan(restarted: true, restoreEpoch: Epoch(7), restoreSnapshot: "epochs/000007/rank-0002.snap",
                         deliverableEpoch: Epoch(9), replayLog: true,
                         replayLimit: RecoveryPlan.ReplayLimit(rank: 3, recoverable: 41), writeMirrors: .b)),
        .start(StartPlan(restarted: true, restoreEpoch: Epoch(4), resize: StartPlan.Resize(rankCount: 7, step: 120, messagesInFlight: true))),
        .checkpointRequest(Epoch(2)), .checkpointRequest(Epoch(UInt64.max)),
        .safePointChosen(Epoch(2), step: 9), .safePointChosen(Epoch(1), step: 0),
        .checkpointDone(Epoch(2), coveredByReceiver: sets), .checkpointDone(Epoch(3), coveredByReceiver: []),
        .cut(Epoch(2), coveredByReceiver: sets), .cut(Epoch(9), coveredByReceiver: []),
        .captured(Epoch(2), delivered: sets), .captured(Epoch(1), delivered: []),
        .eventsLogged(through: 17), .eventRecords(first: nil, records: []), .eventRecords(first: 4, records: [[1, 2], [], [3]]),
        .logEvents(first: 0, records: [[9]], acknowledge: true), .logEvents(first: UInt64.max, records: [], acknowledge: false),
        .abort(Epoch(4)),
        .release,
        .peerRestarted(RankID(3), incarnation: 7),
        .heartbeat(step: -1), .heartbeat(step: Int.max),
        .stepReport(Epoch(2), step: 8), .stepReport(Epoch(1), step: -1),
        .ack(Epoch(2), Acknowledgement(step: 9, snapshotBytes: 77, outputOffset: 12, delivered: sets)),
        .ack(Epoch(5), Acknowledgement(step: 0, snapshotBytes: UInt64.max, outputOffset: 0, delivered: [])),
        // Minimal checkpoints: a rank that kept its entry, and one that wrote because of its changes.
        .ack(Epoch(6), Acknowledgement(step: 14, snapshotBytes: 0, outputOffset: 0, delivered: sets, kept: true, changes: 0)),
        .ack(Epoch(6), Acknowledgement(step: 14, snapshotBytes: 4096, outputOffset: 80, delivered: sets, kept: false, changes: 12345)),
        .ack(Epoch(7), Acknowledgement(step: 3, snapshotBytes: 1, outputOffset: 2, delivered: [], kept: false, changes: UInt64.max)),
        .snapshotFailed(Epoch(2), reason: "no space left on device (ENOSPC) — mirror b ✗"),
        .snapshotFailed(Epoch(2), reason: ""),
        // A mirror failed: the failure names it, the next rounds write one mirror, and their
        // ACKs say which holds the snapshot.
        .snapshotFailed(Epoch(3), reason: "storage no space", failedMirrors: .b),
        .writeMirrors(.a), .writeMirrors(.both), .logMirrorFailed(.b, reason: "fdatasync failed: EIO"),
        .ack(Epoch(4), Acknowledgement(step: 5, snapshotBytes: 6, outputOffset: 7, delivered: sets, mirrors: .a)),
        .ack(Epoch(4), Acknowledgement(step: 5, snapshotBytes: 6, outputOffset: 7, delivered: sets, logPosition: 41,
                                       stateBytes: 8_388_608, inFlightBytes: 16_384, captureMicroseconds: 7_250)),
        // An ACK from memory under optimistic logging carries its snapshot's dependency vector.
        .ack(Epoch(5), {
            var ack = Acknowledgement(step: 5, snapshotBytes: 6, outputOffset: 7, delivered: sets, logPosition: 3)
            ack.inMemory = true
            ack.logDependencies = DependencyVector(dense: [9, 0, 4]).words
            return ack
        }()),
        // On several hosts, an ACK from memory names the partner host whose memory holds the
        // second copy.
        .ack(Epoch(6), {
            var ack = Acknowledgement(step: 6, snapshotBytes: 6, outputOffset: 7, delivered: sets)
            ack.inMemory = true
            ack.memoryPartner = "node-17"
            return ack
        }()),
        .finished(step: 100, loggedBytes: 4096, retainedBytesPeak: 7, logBytesPeak: 9, residentBytesPeak: 11, logSyncs: 13,
                  logSyncMicroseconds: 1_500),
        .finished(step: 7, loggedBytes: 0, retainedBytesPeak: 0, logBytesPeak: 0, residentBytesPeak: 1 << 30,
                  restoreMicroseconds: 105_345, restoredFrom: 2),
        .drained(Epoch(9), storedBytes: 1 << 20, failure: nil),
        .drained(Epoch(10), storedBytes: 0, failure: "no space left on device", failedMirrors: .b),
        .checkpointWanted,
        .faultFired(index: 2),
        .replayComplete(deliveries: 42),
        .caughtUp(step: 400), .caughtUp(step: -1), .stopping(status: 5), .stopping(status: 6), .collectHostGarbage, .exiting(status: 3),
        .memoryReclaimed(folder: "/dev/shm/lifeline-0123456789abcdef-node1", bytes: 1 << 33),
        // Independent checkpoints: an ACK with its interval's dependency vector, and the freeze
        // of a recovery, its answer, the thaw, and the trimming after the line moved.
        .ack(Epoch(3), Acknowledgement(step: 30, snapshotBytes: 9, outputOffset: 0, delivered: sets,
                                       logicalBytes: 1 << 20, chunks: 3, chunksReused: 2, dependencies: [-1, 4, 0])),
        .freeze,
        .frozen(interval: 5, dependencies: [2, -1, 7]), .frozen(interval: 0, dependencies: []),
        .thaw,
        .trim(checkpoint: 4, coveredByReceiver: sets), .trim(checkpoint: 0, coveredByReceiver: []),
        // The stall detector's question and its answers, from every kind of wait.
        .waitQuery(serial: 1), .waitQuery(serial: UInt32.max),
        .waitReport(serial: 3, RankWait(kind: .receive, peer: RankID(2), tag: -7, step: 12, sent: 5, arrived: 6, delivered: 4)),
        .waitReport(serial: 3, RankWait(kind: .receive, peer: nil, tag: Int64.max, step: -1)),
        .waitReport(serial: 9, RankWait(kind: .running, step: Int.max, sent: .max, arrived: .max, delivered: .max, heldSends: .max)),
        .waitReport(serial: 9, RankWait(kind: .safePoint, step: 40, heldSends: 2)),
        .waitReport(serial: 9, RankWait(kind: .barrier, step: 41)),
        .waitReport(serial: 9, RankWait(kind: .send, peer: RankID(0), step: 0)),
        .waitReport(serial: 9, RankWait(kind: .connect, peer: RankID(4095), step: 0)),
        .nondeterminism(source: RankID(3), sequence: SequenceNumber(rawValue: 17)),
    ]

    private func prefix(of frame: [UInt8]) throws -> FramePrefix {
        try frame.withUnsafeBytes { bytes throws(WireError) in try FramePrefix.decode(bytes) }
    }

    @Test(arguments: everyControlMessage)
    func controlMessageRoundTrips(_ message: ControlMessage) throws {
        let frame = message.frame()
        let prefix = try prefix(of: frame)
        #expect(prefix.kind == .control)
        #expect(prefix.bodyLength == UInt64(frame.count - FramePrefix.byteCount), "prefix length disagrees with the body")
        let body = Array(frame[FramePrefix.byteCount...])
        #expect(try ControlMessage.decode(body) == message)
    }

    @Test(arguments: everyControlMessage)
    func controlMessageRefusesEveryTruncationAndTrailingBytes(_ message: ControlMessage) {
        let body = Array(message.frame()[FramePrefix.byteCount...])
        for length in 0..<body.count {
            #expect(throws: WireError.self, "\(message) cut to \(length) of \(body.count) bytes decoded") {
                try ControlMessage.decode(Array(body.prefix(length)))
            }
        }
        for trailing in [[0], [1, 2, 3], [UInt8](repeating: 0xFF, count: 12)] as [[UInt8]] {
            #expect(throws: WireError.self, "\(message) with \(trailing.count) trailing bytes decoded") {
                try ControlMessage.decode(body + trailing)
            }
        }
    }

    @Test func controlMessageRefusesUnknownCodes() {
        let known: Set<UInt8> = Set(Self.everyControlMessage.map { $0.frame()[FramePrefix.byteCount] })
        #expect(known.count == 35, "a control message case is missing from the list: codes \(known.sorted())")
        for code in UInt8.min...UInt8.max where !known.contains(code) {
            #expect(throws: WireError.self, "code \(code) decoded") { try ControlMessage.decode([code] + [UInt8](repeating: 0, count: 40)) }
        }
        #expect(throws: WireError.self) { try ControlMessage.decode([]) }
    }

    /// The body of an ACK frame, with its `kept` flag at `keptFlagOffset`: code, epoch, step,
    /// snapshot bytes and output offset come first.
    private static let keptFlagOffset = 1 + 8 + 8 + 8 + 8

    private func ackBody(_ ack: Acknowledgement) -> [UInt8] {
        Array(ControlMessage.ack(Epoch(1), ack).frame()[FramePrefix.byteCount...])
    }

    @Test func controlMessageRefusesAnAckWithAnUnsortedDeliveredSet() throws {
        // The delivered sets come before the tail: the count of the log's dependency words (4
        // bytes, none) and the memory partner's name (8 bytes, empty). Swap the last set's two
        // numbers above its watermark.
        let sorted = DeliveredSet(watermark: SequenceNumber(2), above: [SequenceNumber(5), SequenceNumber(9)])
        let body = ackBody(Acknowledgement(step: 4, snapshotBytes: 0, outputOffset: 0, delivered: [sorted]))
        #expect(try ControlMessage.decode(body) == .ack(Epoch(1), Acknowledgement(step: 4, snapshotBytes: 0, outputOffset: 0, delivered: [sorted])))
        let tail = 4 + 8
        let sets = Array(body.dropLast(tail))
        let unsorted = Array(sets.dropLast(16)) + Array(sets.suffix(8)) + Array(sets.suffix(16).prefix(8)) + Array(body.suffix(tail))
        #expect(unsorted.count == body.count && unsorted != body)
        #expect(throws: WireError.self, "an ACK with delivered numbers 9, 5 decoded") { try ControlMessage.decode(unsorted) }
    }

    /// A round's control traffic is linear in the ranks: an ACK, a DONE and a TRIM carry the
    /// sets of the channels used (and an independent ACK the dependencies that exist), not one
    /// per rank of the job.
    @Test func perRankSetsAndVectorsTravelSparse() throws {
        var sets = DeliveredSets(rankCount: 10_000)
        sets[17] = DeliveredSet(watermark: SequenceNumber(40), above: [])
        sets[9_999] = DeliveredSet(watermark: SequenceNumber(3), above: [SequenceNumber(7)])
        var dependencies = PerPeer(rankCount: 10_000, absent: -1)
        dependencies[4] = 2
        let ack = ControlMessage.ack(Epoch(3), Acknowledgement(
            step: 9, snapshotBytes: 1, outputOffset: 2, delivered: sets, dependencies: dependencies))
        let done = ControlMessage.checkpointDone(Epoch(3), coveredByReceiver: sets)
        let trim = ControlMessage.trim(checkpoint: 2, coveredByReceiver: sets)
        let frozen = ControlMessage.frozen(interval: 5, dependencies: dependencies)
        for message in [ack, done, trim, frozen] {
            #expect(message.frame().count < 200, "\(message.frame().count) bytes")
            #expect(try ControlMessage.decode(Array(message.frame()[FramePrefix.byteCount...])) == message)
        }
        // Decoding allocates no more than a bounded job claims, and names each rank once, in order.
        var claim = ByteWriter()
        claim.write(UInt8(4))  // checkpointDone's code
        claim.write(UInt64(3))
        claim.write(UInt32(1 << 30))
        claim.write(UInt32(0))
        #expect(throws: WireError.self) { try ControlMessage.decode(claim.bytes) }
        var twice = ByteWriter()
        twice.write(UInt8(4))
        twice.write(UInt64(3))
        twice.write(UInt32(4))
        twice.write(UInt32(2))
        for _ in 0..<2 {
            twice.write(UInt32(1))
            DeliveredSet(watermark: SequenceNumber(1), above: []).encode(into: &twice)
        }
        #expect(throws: WireError.self) { try ControlMessage.decode(twice.bytes) }
    }

    /// The flags byte: bit 0 kept (minimal), bit 1 held in memory (`--levels memory,disk`);
    /// a kept checkpoint is not written anywhere, so both at once is refused, as is any other bit.
    @Test func ackFlagsSitAfterTheOutputOffsetAndRefuseUnknownBits() throws {
        let kept = Acknowledgement(step: 4, snapshotBytes: 0, outputOffset: 0, delivered: Self.sets, kept: true, changes: 0)
        var body = ackBody(kept)
        #expect(body[Self.keptFlagOffset] == 1, "the kept flag moved: \(body.prefix(Self.keptFlagOffset + 1))")
        body[Self.keptFlagOffset] = 0
        var wrote = kept
        wrote.kept = false
        #expect(try ControlMessage.decode(body) == .ack(Epoch(1), wrote))
        body[Self.keptFlagOffset] = 2
        var inMemory = wrote
        inMemory.inMemory = true
        #expect(try ControlMessage.decode(body) == .ack(Epoch(1), inMemory))
        #expect(ackBody(inMemory)[Self.keptFlagOffset] == 2)
        for flag in [UInt8(3), 4, 0x80, 0xFF] {
            body[Self.keptFlagOffset] = flag
            #expect(throws: WireError.self, "an ACK with kept flag \(flag) decoded") { try ControlMessage.decode(body) }
        }
    }

    /// Records numbered from `first` past the last index (UInt64.max) are no rank's log: the
    /// decoder refuses them, so the event logger never computes an index that overflows.
    @Test func logRecordsPastTheLastIndexAreRefused() throws {
        for message in [ControlMessage.logEvents(first: UInt64.max, records: [[1]], acknowledge: false),
                        .logEvents(first: UInt64.max - 1, records: [[1], [2]], acknowledge: true),
                        .eventRecords(first: UInt64.max, records: [[3]])] {
            let body = Array(message.frame()[FramePrefix.byteCount...])
            #expect(throws: WireError.self, "\(message) decoded") { try ControlMessage.decode(body) }
        }
        let last = ControlMessage.logEvents(first: UInt64.max - 1, records: [[1]], acknowledge: false)
        #expect(try ControlMessage.decode(Array(last.frame()[FramePrefix.byteCount...])) == last)
    }

    @Test func drainedRoundTripsWithAndWithoutAFailure() throws {
        for message in [ControlMessage.drained(Epoch(7), storedBytes: 123_456, failure: nil),
                        .drained(Epoch(UInt64.max), storedBytes: 0, failure: "mirror a: no space left on device")] {
            let frame = message.frame()
            #expect(try ControlMessage.decode(Array(frame[FramePrefix.byteCount...])) == message)
        }
    }

    @Test func ackChangesRoundTripAtTheirExtremes() throws {
        for changes in [UInt64(0), 1, 12345, UInt64(UInt32.max) + 1, UInt64.max] {
            for kept in [false, true] {
                let ack = Acknowledgement(step: 7, snapshotBytes: 9, outputOffset: 3, delivered: Self.sets, kept: kept, changes: changes)
                #expect(try ControlMessage.decode(ackBody(ack)) == .ack(Epoch(1), ack), "kept \(kept), changes \(changes)")
            }
        }
    }

    @Test func controlMessageRefusesAHugeSetCount() {
        var body = ByteWriter()
        body.write(UInt8(4))  // checkpointDone
        body.write(UInt64(1))
        body.write(UInt32.max)
        #expect(throws: WireError.self) { try ControlMessage.decode(body.bytes) }
    }

    @Test func framePrefixRoundTripsAndRefusesOversizeAndUnknownKinds() throws {
        for kind in [FrameKind.handshake, .welcome, .data, .control] {
            for length in [UInt64(0), 1, 12_345, FramePrefix.bodyBytesMax] {
                var writer = ByteWriter()
                FramePrefix(kind: kind, bodyLength: length).encode(into: &writer)
                #expect(writer.bytes.count == FramePrefix.byteCount)
                #expect(try prefix(of: writer.bytes) == FramePrefix(kind: kind, bodyLength: length))
            }
        }
        var oversize = ByteWriter()
        FramePrefix(kind: .data, bodyLength: FramePrefix.bodyBytesMax + 1).encode(into: &oversize)
        #expect(throws: WireError.self, "a body over the maximum was accepted") { try prefix(of: oversize.bytes) }
        var huge = ByteWriter()
        FramePrefix(kind: .control, bodyLength: UInt64.max).encode(into: &huge)
        #expect(throws: WireError.self) { try prefix(of: huge.bytes) }
        for rawKind in [UInt32(0), 8, 0x0100_0000, UInt32.max] {
            var unknown = ByteWriter()
            unknown.write(rawKind)
            unknown.write(UInt64(0))
            #expect(throws: WireError.self, "frame kind \(rawKind) accepted") { try prefix(of: unknown.bytes) }
        }
    }

    @Test func dataHeaderRoundTripsInExactly32Bytes() {
        let headers = [
            DataHeader(source: RankID(0), incarnation: 0, tag: 0, sequence: SequenceNumber(0), epoch: .start),
            DataHeader(source: RankID(4095), incarnation: UInt32.max, tag: Int64.min, sequence: SequenceNumber(UInt64.max), epoch: Epoch(UInt64.max)),
            DataHeader(source: RankID(3), incarnation: 2, tag: -1, sequence: SequenceNumber(77), epoch: Epoch(5)),
        ]
        for header in headers {
            var writer = ByteWriter()
            header.encode(into: &writer)
            #expect(writer.bytes.count == DataHeader.byteCount)
            let trailing = writer.bytes + [0xAB, 0xCD]  // a payload follows the header in a frame
            #expect(trailing.withUnsafeBytes { DataHeader.decode($0) } == header)
        }
    }

    /// The send path's head, stored on the stack, is the bytes the prefix and the header append.
    @Test func storedFrameHeadMatchesTheEncodedPrefixAndHeader() throws {
        let headers = [
            DataHeader(source: RankID(0), incarnation: 0, tag: 0, sequence: SequenceNumber(0), epoch: .start),
            DataHeader(source: RankID(4095), incarnation: UInt32.max, tag: Int64.min, sequence: SequenceNumber(UInt64.max), epoch: Epoch(UInt64.max)),
        ]
        for header in headers {
            for payloadCount in [0, 64, 1 << 20] {
                var writer = ByteWriter()
                FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payloadCount)).encode(into: &writer)
                header.encode(into: &writer)
                var stored = [UInt8](repeating: 0xEE, count: DataHeader.frameHeadByteCount + 3)
                stored.withUnsafeMutableBytes { header.storeFrameHead(payloadCount: payloadCount, into: $0) }
                #expect(Array(stored.prefix(DataHeader.frameHeadByteCount)) == writer.bytes)
                #expect(stored.suffix(3).allSatisfy { $0 == 0xEE }, "nothing past the head is written")
                let prefix = try stored.withUnsafeBytes { try FramePrefix.decode($0) }
                #expect(prefix == FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payloadCount)))
            }
        }
    }

    @Test func handshakeRoundTrips() throws {
        for handshake in [
            Handshake(token: "3f1c9a", role: .control, rank: RankID(0), incarnation: 0, pid: 4242),
            Handshake(token: "", role: .peer, rank: RankID(17), incarnation: UInt32.max, pid: Int32.max),
            Handshake(token: String(repeating: "k", count: 300), role: .peer, rank: RankID(1), incarnation: 3, pid: -1),
        ] {
            let frame = handshake.frame()
            let prefix = try prefix(of: frame)
            #expect(prefix.kind == .handshake)
            #expect(prefix.bodyLength == UInt64(frame.count - FramePrefix.byteCount))
            #expect(try Handshake.decode(Array(frame[FramePrefix.byteCount...])) == handshake)
        }
    }

    @Test func handshakeRefusesTruncationAndUnknownRoles() {
        let handshake = Handshake(token: "secret", role: .peer, rank: RankID(2), incarnation: 1, pid: 99)
        let body = Array(handshake.frame()[FramePrefix.byteCount...])
        for length in 0..<body.count {
            #expect(throws: WireError.self, "a handshake cut to \(length) of \(body.count) bytes decoded") {
                try Handshake.decode(Array(body.prefix(length)))
            }
        }
        var badRole = body
        badRole[8 + 6] = 9  // after the token's length (8) and bytes (6)
        #expect(throws: WireError.self) { try Handshake.decode(badRole) }
    }

    /// Like `ControlMessage.decode`, `Handshake.decode` refuses stray bytes after the message
    /// (found by this test, disabled in 5223b2c, fixed in f8cd902).
    @Test
    func handshakeRefusesTrailingBytes() {
        let body = Array(Handshake(token: "secret", role: .peer, rank: RankID(2), incarnation: 1, pid: 99).frame()[FramePrefix.byteCount...])
        #expect(throws: WireError.self, "a handshake with trailing bytes decoded") { try Handshake.decode(body + [0, 0, 0, 0]) }
    }
}
