#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation
@testable import Lifeline
import LifelineCore
import LifelineStorage
import Testing

/// Connections between ranks of one host through shared-memory rings, in-process over a real
/// socket pair: the rings pass with the first byte, frames cross them both ways (also ones many
/// times a ring's size), each side wakes the other only when it may sleep, a peer's death ends
/// the stream after what it wrote, and what is not a sealed pair of rings, or a ring whose
/// counters lie, is refused rather than followed.
struct SharedRingsTests {
    /// The connecting end and the accepting end, the rings passed over the socket as a rank passes
    /// them with its handshake.
    private func connectedPair(capacity: Int = 4 << 10) throws -> (connector: Connection, acceptor: Connection) {
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let made = try #require(SharedRings.create(capacity: capacity))
        try #require(Socket.sendAll(fds[0], [1, 2, 3], passing: made.descriptor))
        close(made.descriptor)
        var bytes = [UInt8](repeating: 0, count: 3)
        var passed: Int32 = -1
        let received = bytes.withUnsafeMutableBytes { lifeline_receive_with_descriptor(fds[1], $0.baseAddress!, 3, &passed) }
        try #require(received == 3 && passed >= 0)
        defer { close(passed) }
        let mapped = try #require(SharedRings.map(passed: passed))
        return (Connection(fd: fds[0], rings: made.rings), Connection(fd: fds[1], rings: mapped))
    }

    private func dataFrame(_ payload: [UInt8], sequence: UInt64) -> (head: [UInt8], header: DataHeader) {
        let header = DataHeader(source: RankID(1), incarnation: 1, tag: 5, sequence: SequenceNumber(sequence), epoch: Epoch(0))
        var head = ByteWriter()
        FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payload.count)).encode(into: &head)
        header.encode(into: &head)
        return (head.bytes, header)
    }

    private func isReadable(_ fd: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) == 1
    }

    /// A 1 MiB message through a 4 KiB ring (the writer serves the reader while it waits for
    /// room, as a rank's poll loop does), small ones between, and replies the other way: every
    /// byte arrives, in order.
    @Test func framesCrossBothWaysAlsoManyTimesARingsSize() throws {
        let (connector, acceptor) = try connectedPair()
        var generator = SplitMix64(seed: 7)
        let big = (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let payloads = [[UInt8](repeating: 1, count: 64), big, [UInt8](repeating: 2, count: 3000), []]
        var received: [(DataHeader, [UInt8])] = []
        let collect: (InboundFrame) -> Void = { if case .data(let header, let bytes) = $0 { received.append((header, bytes)) } }
        var waits = 0
        for (index, payload) in payloads.enumerated() {
            let (head, _) = dataFrame(payload, sequence: UInt64(index))
            var unwoken = 0
            let written = try connector.write(head: head, payload: payload) { fd in
                waits += 1
                _ = try acceptor.readAvailable(collect)
                // The read made room and the writer was marked waiting: it was woken.
                if !isReadable(fd) { unwoken += 1 }
                connector.socketReadable()
            }
            #expect(written)
            #expect(unwoken == 0, "the writer waiting for room was not woken \(unwoken) times")
            #expect(try acceptor.readAvailable(collect))
        }
        #expect(waits > 200, "a 1 MiB message fitted a 4 KiB ring (\(waits) waits)")
        try #require(received.count == payloads.count, "got \(received.count) frames")
        for (index, (header, bytes)) in received.enumerated() {
            #expect(header.sequence == SequenceNumber(UInt64(index)))
            #expect(bytes == payloads[index], "message \(index) arrived changed")
        }
        let (head, _) = dataFrame([9, 9], sequence: 99)
        #expect(connector.usesRings && acceptor.usesRings)
        var replyWaited = false
        #expect(acceptor.write(head: head, payload: [9, 9]) { _ in replyWaited = true })
        #expect(!replyWaited, "a small reply waited for room")
        var replies: [[UInt8]] = []
        #expect(try connector.readAvailable { if case .data(_, let bytes) = $0 { replies.append(bytes) } })
        #expect(replies == [[9, 9]])
    }

    /// The reader publishes what it read (the writer's room) an eighth of the ring at a time, not
    /// on every message; a writer that finds the ring full meanwhile still gets its room.
    @Test func aReaderPublishesItsCountAnEighthOfTheRingAtATime() throws {
        let (connector, acceptor) = try connectedPair()  // 4 KiB rings: published every 512 bytes
        let published = { try #require(acceptor.rings).inbound.load(fromByteOffset: 64, as: UInt64.self) }
        let (head, _) = dataFrame([1], sequence: 0)
        let frameBytes = UInt64(head.count + 1)
        var read = 0
        var sent: UInt64 = 0
        while sent + frameBytes < 512 {
            #expect(connector.write(head: head, payload: [1]) { _ in Issue.record("a small frame waited for room") })
            sent += frameBytes
            #expect(try acceptor.readAvailable { _ in read += 1 })
        }
        #expect(try published() == 0, "the reader published its count before an eighth of the ring was read")
        #expect(connector.write(head: head, payload: [1]) { _ in })
        #expect(try acceptor.readAvailable { _ in read += 1 })
        #expect(try published() == sent + frameBytes, "an eighth of the ring read, and the count not published")
        // Two frames read past it, not published: the ring then fills with room the writer
        // cannot see, and a writer with more than the ring to send waits for room, and is
        // woken, each time.
        for _ in 0..<2 {
            #expect(connector.write(head: head, payload: [1]) { _ in })
            #expect(try acceptor.readAvailable { _ in read += 1 })
        }
        #expect(try published() == sent + frameBytes, "two small frames read, and the count published")
        sent += 2 * frameBytes
        let big = [UInt8](repeating: 3, count: 3 * 4096)
        let (bigHead, _) = dataFrame(big, sequence: 1)
        var arrived: [UInt8] = []
        var waits = 0
        var unwoken = 0
        let written = try connector.write(head: bigHead, payload: big) { fd in
            waits += 1
            _ = try acceptor.readAvailable { if case .data(_, let bytes) = $0 { arrived = bytes } }
            if !isReadable(fd) { unwoken += 1 }
            connector.socketReadable()
        }
        #expect(written)
        #expect(waits > 0 && unwoken == 0, "\(waits) waits for room, \(unwoken) of them not woken")
        #expect(try acceptor.readAvailable { if case .data(_, let bytes) = $0 { arrived = bytes } })
        #expect(arrived == big)
        #expect(read == Int(sent / frameBytes) + 1, "\(read) frames read")
    }

    /// A receiver that armed its ring before sleeping is woken by the next write, through the
    /// socket; one that is spinning (not armed) costs the writer no system call and gets no byte.
    @Test func onlyAReceiverThatMaySleepIsWoken() throws {
        let (connector, acceptor) = try connectedPair()
        let (head, _) = dataFrame([1], sequence: 0)
        #expect(connector.write(head: head, payload: [1]) { _ in })
        #expect(!isReadable(acceptor.fd), "a write to a receiver that was not sleeping sent a wake-up")
        #expect(acceptor.hasRingData)
        #expect(acceptor.armBeforeSleep(), "bytes were there, yet the receiver would have slept")
        var count = 0
        #expect(try acceptor.readAvailable { _ in count += 1 })
        #expect(count == 1)
        #expect(!acceptor.armBeforeSleep())
        #expect(connector.write(head: head, payload: [1]) { _ in })
        #expect(isReadable(acceptor.fd), "a receiver about to sleep was not woken")
        acceptor.socketReadable()
        acceptor.disarm()
        #expect(!isReadable(acceptor.fd), "the wake-up byte was not taken")
        #expect(try acceptor.readAvailable { _ in count += 1 })
        #expect(count == 2)
    }

    /// A peer that dies leaves whole frames in the ring and a torn one: the whole ones are
    /// delivered, the torn one dropped (its sender retains it), and the connection ends.
    @Test func aPeerThatDiesEndsTheStreamAfterWhatItWrote() throws {
        let (connector, acceptor) = try connectedPair(capacity: 64 << 10)
        for index in 0..<2 {
            let (head, _) = dataFrame([UInt8](repeating: UInt8(index), count: 100), sequence: UInt64(index))
            #expect(connector.write(head: head, payload: [UInt8](repeating: UInt8(index), count: 100)) { _ in })
        }
        let (tornHead, _) = dataFrame([UInt8](repeating: 7, count: 1000), sequence: 2)
        #expect(connector.write(head: tornHead, payload: []) { _ in })  // the header alone: the payload never comes
        connector.close()
        #expect(isReadable(acceptor.fd))
        acceptor.socketReadable()
        var sequences: [UInt64] = []
        #expect(try acceptor.readAvailable { if case .data(let header, _) = $0 { sequences.append(header.sequence.rawValue) } } == false)
        #expect(sequences == [0, 1])
        #expect(acceptor.isClosed)
        #expect(connector.write(head: tornHead, payload: []) { _ in } == false, "a closed connection took a write")
    }

    /// A counter that says the ring holds more than it can closes the connection; nothing is
    /// read past the ring.
    @Test func aRingWhoseCountersLieClosesTheConnection() throws {
        let (connector, acceptor) = try connectedPair()
        // The connector's outbound ring is the acceptor's inbound one: its tail says 1 MiB.
        let rings = try #require(connector.rings)
        rings.outbound.storeBytes(of: UInt64(1 << 20), as: UInt64.self)
        #expect(try acceptor.readAvailable { _ in Issue.record("a frame came out of a lying ring") } == false)
        #expect(acceptor.isClosed)
    }

    /// Rings shrink with the rank count so that a rank's outbound rings stay within their bound,
    /// down to the smallest ring; each is a power of two a peer accepts.
    @Test func ringsShrinkWithTheRankCount() {
        #expect(SharedRings.capacity(forRanks: 2) == SharedRings.capacityDefault)
        #expect(SharedRings.capacity(forRanks: 17) == SharedRings.capacityDefault)
        #expect(SharedRings.capacity(forRanks: 64) == 64 << 10)
        #expect(SharedRings.capacity(forRanks: 100_000) == SharedRings.capacityRange.lowerBound)
        for ranks in [2, 3, 18, 65, 1000, 5000] {
            let capacity = SharedRings.capacity(forRanks: ranks)
            #expect(SharedRings.capacityRange.contains(capacity) && capacity & (capacity - 1) == 0)
            #expect(capacity * (ranks - 1) <= SharedRings.bytesPerRankMax || capacity == SharedRings.capacityRange.lowerBound)
        }
    }

    /// What a peer passes is mapped only when it is a sealed pair of rings of an accepted size.
    @Test func onlyASealedPairOfRingsIsMapped() throws {
        let made = try #require(SharedRings.create(capacity: 4 << 10))
        defer { close(made.descriptor) }
        #expect(SharedRings.map(passed: made.descriptor) != nil)
        // A sealed file of another size.
        let odd = lifeline_shared_memory_create(1000)
        try #require(odd >= 0)
        defer { close(odd) }
        #expect(SharedRings.map(passed: odd) == nil)
        // A plain file of the right size, which its owner could still shrink under the mapping.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("rings-\(getpid())").path
        let plain = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        try #require(plain >= 0)
        defer {
            close(plain)
            unlink(path)
        }
        try #require(ftruncate(plain, off_t(2 * (Int(LIFELINE_RING_HEADER_BYTES) + (4 << 10)))) == 0)
        #expect(SharedRings.map(passed: plain) == nil)
        // Not a file at all.
        var fds: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        defer {
            close(fds[0])
            close(fds[1])
        }
        #expect(SharedRings.map(passed: fds[0]) == nil)
    }

    /// A stranger's connection that passes descriptors with a wrong handshake is refused, and
    /// what it passed does not stay open in the rank.
    @Test func descriptorsPassedWithARefusedHandshakeAreClosed() throws {
        let listener = try Socket.listen(abstractName: "lifeline-test-rings-\(getpid())")
        defer { close(listener) }
        let acceptor = HandshakeAcceptor(listener: listener, token: "right", takesDescriptors: true)
        for token in ["wrong", "right"] {
            let fd = try Socket.connect(abstractName: "lifeline-test-rings-\(getpid())")
            let made = try #require(SharedRings.create(capacity: 4 << 10))
            var status = stat()
            try #require(fstat(made.descriptor, &status) == 0)
            let handshake = Handshake(token: token, role: .peer, rank: RankID(1), incarnation: 0, pid: getpid())
            #expect(Socket.sendAll(fd, handshake.frame(), passing: made.descriptor))
            close(made.descriptor)
            let accepted = acceptor.acceptAll(now: monotonicSeconds())
            if token == "wrong" {
                #expect(accepted.isEmpty)
                #expect(acceptor.takeReport(now: monotonicSeconds(), final: true)?.reasons.contains("token") == true)
                #expect(try descriptorsOpen(on: status.st_ino) == 0, "the refused connection's rings stayed open")
            } else {
                try #require(accepted.count == 1)
                let passed = try #require(acceptor.takePassed(accepted[0].fd))
                #expect(try descriptorsOpen(on: status.st_ino) == 1)
                #expect(SharedRings.map(passed: passed) != nil)
                close(passed)
                close(accepted[0].fd)
            }
            close(fd)
        }
    }

    /// How many of this process's descriptors are open on the file with inode `inode`.
    private func descriptorsOpen(on inode: ino_t) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").filter { name in
            var status = stat()
            return stat("/proc/self/fd/\(name)", &status) == 0 && status.st_ino == inode
                && (status.st_mode & S_IFMT) == S_IFREG
        }.count
    }
}
