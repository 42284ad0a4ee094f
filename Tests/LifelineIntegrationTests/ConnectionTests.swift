#if canImport(Glibc)
import Glibc
#endif
import Foundation
@testable import Lifeline
import LifelineCore
import LifelineStorage
import Testing

/// The framed connection and the rank's wait for START, over a real socket pair, in-process:
/// the two liveness defects they had are replayed byte for byte.
struct ConnectionTests {
    /// Two connected sockets with the runtime's buffer sizes, so the writes below fit in them.
    private func socketPair() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        Socket.tune(fds[0])
        Socket.tune(fds[1])
        return (fds[0], fds[1])
    }

    /// A checkpoint request written right behind START (a round wanted during a recovery starts
    /// the moment it ends) reaches the rank in the same read. The wait for START used to drop
    /// it, and the round then waited forever for the rank's step report.
    @Test func controlMessagesThatArriveWithStartAreKept() throws {
        let (rankEnd, supervisorEnd) = try socketPair()
        defer { close(supervisorEnd) }
        let following: [ControlMessage] = [.checkpointRequest(Epoch(3)), .safePointChosen(Epoch(3), step: 17)]
        let before: [ControlMessage] = [.peerRestarted(RankID(1), incarnation: 5)]
        let bytes = WelcomeFrame.frame + before.flatMap { $0.frame() } + ControlMessage.start(StartPlan(restarted: true, restoreEpoch: Epoch(2))).frame()
            + following.flatMap { $0.frame() }
        try #require(Socket.sendAll(supervisorEnd, bytes))
        let reader = Connection(fd: rankEnd)
        let (plan, others) = try RankRuntime.awaitStart(reader)
        #expect(plan == StartPlan(restarted: true, restoreEpoch: Epoch(2)))
        #expect(others == before + following)
    }

    /// A control frame larger than the read buffer is taken whole however it arrives, in a
    /// buffer that grows with the bytes that came, not to the size its prefix claims: a
    /// corrupt prefix claiming 2 GiB, followed by a little, leaves the buffer a few MiB.
    @Test func aLargeControlFrameGrowsTheBufferWithItsBytes() throws {
        let (readerEnd, writerEnd) = try socketPair()
        defer { close(writerEnd) }
        var generator = SplitMix64(seed: 7)
        let record = (0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let message = ControlMessage.logEvents(first: 5, records: [record], acknowledge: true)
        let frame = message.frame()
        let reader = Connection(fd: readerEnd)
        var messages: [ControlMessage] = []
        var sent = 0
        while sent < frame.count {
            let piece = min(100 << 10, frame.count - sent)
            try #require(Socket.sendAll(writerEnd, Array(frame[sent..<sent + piece])))
            sent += piece
            #expect(try reader.readAvailable { if case .control(let message) = $0 { messages.append(message) } })
        }
        #expect(messages == [message])
        #expect(reader.bufferCapacity <= 2 * frame.count)

        let (claimedEnd, claimingEnd) = try socketPair()
        defer { close(claimingEnd) }
        var claim = ByteWriter()
        FramePrefix(kind: .control, bodyLength: 1 << 31).encode(into: &claim)
        let claimed = Connection(fd: claimedEnd)
        try #require(Socket.sendAll(claimingEnd, claim.bytes + [UInt8](repeating: 1, count: 600 << 10)))
        for _ in 0..<4 { #expect(try claimed.readAvailable { _ in Issue.record("a frame of a 2 GiB claim was delivered") }) }
        #expect(claimed.bufferCapacity <= 4 << 20, "\(claimed.bufferCapacity) bytes for 600 KiB received")
    }

    /// A host link's exact read of a length the peer named (`HostLink.receive`) takes bytes
    /// arriving in pieces whole into a buffer that grows with them, and gives up at its
    /// deadline when a claimed length never comes.
    @Test func aHostLinkReadTakesPiecesWholeAndGivesUpOnAClaim() throws {
        let (readerEnd, writerEnd) = try socketPair()
        defer { close(readerEnd); close(writerEnd) }
        var generator = SplitMix64(seed: 11)
        let bytes = (0..<((1 << 20) + 3)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let writer = Thread {
            var sent = 0
            while sent < bytes.count {
                let piece = min(50_000, bytes.count - sent)
                _ = Socket.sendAll(writerEnd, Array(bytes[sent..<sent + piece]))
                sent += piece
            }
        }
        writer.start()
        #expect(HostLink.receive(readerEnd, count: bytes.count, deadline: monotonicSeconds() + 10) == bytes)
        try #require(Socket.sendAll(writerEnd, [1, 2, 3]))
        let started = monotonicSeconds()
        #expect(HostLink.receive(readerEnd, count: 1 << 30, deadline: started + 0.2) == nil)
        #expect(monotonicSeconds() - started < 5)
    }

    /// A large payload that has only partly arrived is not waited for: the read returns, the
    /// rank goes on writing its own large message (which the peer reads meanwhile), and a later
    /// read completes the payload. Reading it with a blocking recv made two ranks that each
    /// sent 16 MB before receiving wait for each other forever.
    @Test func aLargePayloadIsReadAsItArrivesWithoutBlocking() throws {
        let (readerEnd, writerEnd) = try socketPair()
        defer { close(writerEnd) }
        var generator = SplitMix64(seed: 16)
        let payload = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let header = DataHeader(source: RankID(1), incarnation: 2, tag: 9, sequence: SequenceNumber(4), epoch: Epoch(1))
        var head = ByteWriter()
        FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payload.count)).encode(into: &head)
        header.encode(into: &head)
        let frame = head.bytes + payload
        let reader = Connection(fd: readerEnd)
        var frames: [InboundFrame] = []
        // The first part: the prefix, the header and a third of the payload.
        let firstPart = head.bytes.count + payload.count / 3
        try #require(Socket.sendAll(writerEnd, Array(frame[..<firstPart])))
        let started = monotonicSeconds()
        #expect(try reader.readAvailable { frames.append($0) })
        #expect(monotonicSeconds() - started < 1, "the read waited for the rest of the payload")
        #expect(frames.isEmpty, "a partial payload was handed over")
        // The rest, in two pieces, and a small control frame behind it.
        let secondPart = firstPart + payload.count / 3
        try #require(Socket.sendAll(writerEnd, Array(frame[firstPart..<secondPart])))
        #expect(try reader.readAvailable { frames.append($0) })
        #expect(frames.isEmpty)
        try #require(Socket.sendAll(writerEnd, Array(frame[secondPart...]) + ControlMessage.release.frame()))
        var waited = 0
        while frames.count < 2, waited < 100 {
            #expect(try reader.readAvailable { frames.append($0) })
            usleep(1_000)
            waited += 1
        }
        try #require(frames.count == 2, "got \(frames.count) frames")
        guard case .data(let received, let bytes) = frames[0], case .control(.release) = frames[1] else {
            Issue.record("expected the data frame, then RELEASE")
            return
        }
        #expect(received == header)
        #expect(bytes == payload, "the payload arrived changed")
    }

    /// A peer that dies inside a large payload ends the connection; the torn message is
    /// dropped (its sender still retains it), not waited for and not thrown.
    @Test func aPeerThatDiesInsideALargePayloadEndsTheConnection() throws {
        let (readerEnd, writerEnd) = try socketPair()
        var head = ByteWriter()
        FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + (1 << 20))).encode(into: &head)
        DataHeader(source: RankID(0), incarnation: 0, tag: 0, sequence: SequenceNumber(0), epoch: Epoch(0)).encode(into: &head)
        try #require(Socket.sendAll(writerEnd, head.bytes + [UInt8](repeating: 7, count: 1000)))
        close(writerEnd)
        let reader = Connection(fd: readerEnd)
        var frames = 0
        #expect(try reader.readAvailable { _ in frames += 1 } == false)
        #expect(frames == 0)
        #expect(reader.isClosed)
    }
}
