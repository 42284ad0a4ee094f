#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import LifelineCore
import LifelineStorage

/// A complete frame read from a connection.
enum InboundFrame {
    /// A peer's first frame.
    case handshake(Handshake)
    /// The acceptor took our handshake.
    case welcome
    /// A program message.
    case data(DataHeader, [UInt8])
    /// A control message.
    case control(ControlMessage)
}

/// One framed stream connection, owned by one thread: reads whole frames out of a buffer (large
/// payloads straight into their own arrays, as far as they have arrived) and writes frames
/// completely (the caller's `whileBlocked` serves other traffic meanwhile). Neither direction
/// waits for the peer.
///
/// Between two ranks of one host the stream runs through shared memory (`SharedRings`) once the
/// handshake is done, and the socket only carries wake-ups and the end of the stream: the
/// owner's poll loop arms the inbound ring before it sleeps (`armBeforeSleep`), hands the socket
/// over when poll(2) says it is readable (`socketReadable`), and reads the ring after every wait.
///
/// Its stored variables skip Swift's dynamic exclusivity checks (`@exclusivity(unchecked)`),
/// as `RankRuntime`'s do and for the same reason: one thread, and a message's hot path.
final class Connection {
    /// Payloads at least this large are read straight into their own array, skipping the buffer.
    private static let directPayloadBytesMin = 64 << 10
    private static let bufferBytes = 256 << 10
    /// Frames up to this size go to a socket in one piece, copied together on the stack.
    private static let coalescedBytesMax = 4 << 10

    /// The socket.
    let fd: Int32
    /// Set once the peer closed the stream or it failed; the socket is closed then.
    @exclusivity(unchecked) private(set) var isClosed = false
    /// Bytes read from the stream so far (a spinning receiver watches it: data still coming).
    @exclusivity(unchecked) private(set) var receivedBytes = 0
    /// The stream's shared-memory rings (nil: the stream runs through the socket).
    let rings: SharedRings?
    /// The inbound ring's address (nil on a socket), held apart so that a spinning receiver's
    /// look at it touches nothing reference-counted.
    private let inboundRing: UnsafeMutableRawPointer?
    /// With rings: the bytes ever read from the inbound ring, counted here and published to
    /// the peer (its room) an eighth of the ring at a time (`lifeline_ring_release`).
    @exclusivity(unchecked) private var ringHead: UInt64 = 0
    /// With rings: the peer's end of the socket is closed (it exited or died); what is left in
    /// the inbound ring is read, then the connection closes.
    @exclusivity(unchecked) private var peerEnded = false
    @exclusivity(unchecked) private var buffer: [UInt8]
    @exclusivity(unchecked) private var start = 0
    @exclusivity(unchecked) private var end = 0
    /// The header of a large data frame whose payload is still arriving; nil between frames.
    /// Invariant: while set, `largeFilled < largePayload.count`, and the buffer is empty.
    @exclusivity(unchecked) private var largeHeader: DataHeader?
    /// That frame's payload, filled up to `largeFilled` bytes.
    @exclusivity(unchecked) private var largePayload: [UInt8] = []
    @exclusivity(unchecked) private var largeFilled = 0

    /// Whether the stream is a TCP connection (to another host): a large payload arriving there
    /// is waited for in poll(2), not read as it flows (see `sleepsThroughLargePayloads`).
    let isTCP: Bool

    /// With rings: how long a writer that finds the ring full watches it for room before it
    /// waits in its poll loop (0: at once; spinning pays only when the reader has a core).
    private let roomSpinSeconds: Double

    /// Wraps a connected socket, and the rings its stream runs through (nil: the socket); the
    /// connection owns and closes both.
    init(fd: Int32, rings: SharedRings? = nil, roomSpinSeconds: Double = 0) {
        self.fd = fd
        self.rings = rings
        self.roomSpinSeconds = roomSpinSeconds
        inboundRing = rings?.inbound
        if let inbound = rings?.inbound { ringHead = lifeline_ring_published_head(inbound) }
        buffer = [UInt8](repeating: 0, count: Self.bufferBytes)
        if rings == nil { Socket.tune(fd) }
        var domain: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        isTCP = rings == nil && getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &length) == 0 && (domain == AF_INET || domain == AF_INET6)
    }

    /// Whether a receiver waiting for this peer should sleep in poll(2) rather than read the
    /// socket as bytes come: over TCP, while a large payload is still arriving. Reading a TCP
    /// socket in a loop takes its lock against the kernel's delivery of the next segments, which
    /// halved the bandwidth of 1 MiB messages between two hosts against a reader that sleeps
    /// until data is there; a small message's round trip still spins (no payload under way).
    var sleepsThroughLargePayloads: Bool { isTCP && largeHeader != nil }

    deinit { if !isClosed { Glibc.close(fd) } }

    /// The bytes the read buffer holds room for (it grows with a frame larger than it).
    var bufferCapacity: Int { buffer.count }

    /// Whether the stream runs through shared memory: the poll loop reads it after every wait,
    /// and never waits for the socket to be writable.
    var usesRings: Bool { rings != nil }

    /// Whether the inbound ring holds bytes not read yet (false on a socket): one load, what a
    /// spinning receiver checks.
    var hasRingData: Bool {
        guard let inboundRing, !isClosed else { return false }
        return lifeline_ring_has_data(inboundRing, ringHead) != 0
    }

    /// Before the owner sleeps in poll(2): marks the inbound ring so the peer's next write wakes
    /// it through the socket. True when bytes are there already (then do not sleep).
    func armBeforeSleep() -> Bool {
        guard let inboundRing, !isClosed else { return false }
        return lifeline_ring_arm_consumer(inboundRing, ringHead) != 0
    }

    /// After the wait: the owner is awake (whatever woke it).
    func disarm() {
        guard let inboundRing, !isClosed else { return }
        lifeline_ring_disarm_consumer(inboundRing)
    }

    /// With rings, poll(2) said the socket is readable: takes the wake-up bytes, and notes the
    /// end of the stream (what is still in the ring is read before the connection closes).
    func socketReadable() {
        guard rings != nil, !isClosed, !peerEnded else { return }
        var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while true {
            let received = withUnsafeMutableBytes(of: &scratch) { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if received > 0 { continue }
            if received < 0, errno == EINTR { continue }
            if received < 0, errno == EAGAIN || errno == EWOULDBLOCK { return }
            peerEnded = true
            return
        }
    }

    /// Wakes the peer sleeping in poll(2): one byte on the socket. A full socket already holds
    /// wake-ups the peer has not read; a peer that is gone is noticed by the reading side.
    private func wakePeer() {
        var byte: UInt8 = 1
        _ = send(fd, &byte, 1, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
    }

    /// Reads up to `count` bytes of the stream into `target` without waiting: the count, 0 at
    /// the end of the stream, or -1 when nothing is there now (-2: the stream failed; the
    /// connection is closed).
    private func receive(into target: UnsafeMutableRawPointer, count: Int) -> Int {
        guard let rings else {
            while true {
                let received = recv(fd, target, count, Int32(MSG_DONTWAIT))
                if received >= 0 { return received }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return -1 }
                close()
                return -2
            }
        }
        var corrupt: Int32 = 0
        let received = lifeline_ring_read(rings.inbound, rings.capacity, &ringHead, target, count, &corrupt)
        if corrupt != 0 {
            close()
            return -2
        }
        if received > 0 {
            if lifeline_ring_release(rings.inbound, rings.capacity, ringHead) != 0,
               lifeline_ring_producer_needs_wake(rings.inbound) != 0 {
                wakePeer()
            }
            return received
        }
        return peerEnded ? 0 : -1
    }

    /// Closes the socket.
    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(fd)
    }

    /// Reads what is available and hands over every complete frame. Returns false once the
    /// stream has ended (the connection is then closed). Stops after about `bytesMax` bytes, so
    /// a fast sender's stream waits in the kernel (and throttles the sender) instead of piling
    /// up in this process's memory; the caller reads on when it needs more. Never blocks: a
    /// large payload is read as far as it has arrived and completed by later calls, so two
    /// ranks that write large messages to each other at once both keep reading.
    func readAvailable(bytesMax: Int = .max, _ deliver: (InboundFrame) throws -> Void) throws -> Bool {
        guard !isClosed else { return false }
        var bytesRead = 0
        while bytesRead < bytesMax {
            if largeHeader != nil {
                guard let received = receiveLargePayload() else { return !isClosed }
                bytesRead += received
                if let frame = takeCompleteLargePayload() { try deliver(frame) }
                if isClosed { return false }
                continue
            }
            if start > 0, buffer.count - end < Self.directPayloadBytesMin {
                buffer.withUnsafeMutableBytes { bytes in
                    bytes.baseAddress!.copyMemory(from: bytes.baseAddress! + start, byteCount: end - start)
                }
                end -= start
                start = 0
            }
            let space = buffer.count - end
            let received = buffer.withUnsafeMutableBytes { bytes in receive(into: bytes.baseAddress! + end, count: space) }
            if received == -1 { return true }
            if received < 0 { return false }
            if received == 0 {
                try parseFrames(deliver)
                close()
                return false
            }
            end += received
            bytesRead += received
            receivedBytes += received
            try parseFrames(deliver)
            if isClosed { return false }
            // The stream is drained: spare the EAGAIN call (unless its end is known to be next).
            if received < space, largeHeader == nil, !peerEnded { return true }
        }
        return true
    }

    private func parseFrames(_ deliver: (InboundFrame) throws -> Void) throws {
        while largeHeader == nil, end - start >= FramePrefix.byteCount {
            let prefix = try buffer.withUnsafeBytes { bytes throws(WireError) in
                try FramePrefix.decode(UnsafeRawBufferPointer(rebasing: bytes[start..<start + FramePrefix.byteCount]))
            }
            let bodyLength = Int(prefix.bodyLength)
            let bodyStart = start + FramePrefix.byteCount
            if prefix.kind == .data, bodyLength >= Self.directPayloadBytesMin + DataHeader.byteCount {
                // A large payload gets an array of its own once its header is here (the buffer
                // always has room for it: it is compacted when less than a large payload's
                // minimum is left), never a buffer of its size.
                guard end - bodyStart >= DataHeader.byteCount else { return }
                beginLargePayload(bodyStart: bodyStart, bodyLength: bodyLength)
                if let frame = takeCompleteLargePayload() { try deliver(frame) }
                continue
            }
            guard end - bodyStart >= bodyLength else {
                // A frame larger than the buffer: it grows as the frame's bytes come (doubling,
                // up to the frame's size), never at once to what a prefix claims — a corrupt
                // one claims up to `FramePrefix.bodyBytesMax` before any body follows.
                let frameBytes = FramePrefix.byteCount + bodyLength
                if frameBytes > buffer.count, end == buffer.count {
                    var grown = [UInt8](repeating: 0, count: min(frameBytes, max(2 * buffer.count, end - start + Self.bufferBytes)))
                    grown.withUnsafeMutableBytes { target in
                        buffer.withUnsafeBytes { source in
                            target.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[start..<end]))
                        }
                    }
                    end -= start
                    start = 0
                    buffer = grown
                }
                return
            }
            let body = bodyStart..<bodyStart + bodyLength
            start = body.upperBound
            try deliver(try decodeFrame(prefix.kind, body))
        }
    }

    private func decodeFrame(_ kind: FrameKind, _ body: Range<Int>) throws -> InboundFrame {
        switch kind {
        case .data:
            guard body.count >= DataHeader.byteCount else { throw WireError("data frame shorter than its header") }
            return buffer.withUnsafeBytes { bytes in
                let header = DataHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[body.lowerBound..<body.lowerBound + DataHeader.byteCount]))
                return .data(header, Array(bytes[body.lowerBound + DataHeader.byteCount..<body.upperBound]))
            }
        case .control:
            return .control(try ControlMessage.decode(Array(buffer[body])))
        case .handshake:
            return .handshake(try Handshake.decode(Array(buffer[body])))
        case .welcome:
            return .welcome
        case .hello, .challenge, .proof:
            throw WireError("a host handshake frame after the handshake")
        }
    }

    /// Starts a large data frame: its payload gets an array of its own, which takes what is
    /// buffered now; `receiveLargePayload` reads the rest straight into it as it arrives.
    private func beginLargePayload(bodyStart: Int, bodyLength: Int) {
        let header = buffer.withUnsafeBytes { bytes in
            DataHeader.decode(UnsafeRawBufferPointer(rebasing: bytes[bodyStart..<bodyStart + DataHeader.byteCount]))
        }
        let payloadStart = bodyStart + DataHeader.byteCount
        let payloadCount = bodyLength - DataHeader.byteCount
        let buffered = min(end - payloadStart, payloadCount)
        // Bytes past `buffered` are counted as initialized but hold whatever the allocator gave:
        // they are all written from the socket before the payload is handed over (a zero fill
        // would cost a pass over every large message).
        largePayload = [UInt8](unsafeUninitializedCapacity: payloadCount) { target, initialized in
            buffer.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(target).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: source[payloadStart..<payloadStart + buffered]))
            }
            initialized = payloadCount
        }
        largeHeader = header
        largeFilled = buffered
        start = payloadStart + buffered
        if start == end {
            start = 0
            end = 0
        }
    }

    /// Reads what has arrived of the large payload under way, without waiting. Returns the
    /// bytes read, or nil when none are there now (or the stream ended: the connection is then
    /// closed, and the torn message is dropped like any torn frame: its sender is gone and
    /// still retains it).
    private func receiveLargePayload() -> Int? {
        let wanted = largePayload.count - largeFilled
        let received = largePayload.withUnsafeMutableBytes { target in
            receive(into: target.baseAddress! + largeFilled, count: wanted)
        }
        if received > 0 {
            largeFilled += received
            receivedBytes += received
            return received
        }
        if received == -1 { return nil }
        largeHeader = nil
        largePayload = []
        close()
        return nil
    }

    /// The large frame under way once its payload is complete (then the connection is back to
    /// reading frames from its buffer); nil while bytes are missing.
    private func takeCompleteLargePayload() -> InboundFrame? {
        guard let header = largeHeader, largeFilled == largePayload.count else { return nil }
        let payload = largePayload
        largeHeader = nil
        largePayload = []
        largeFilled = 0
        return .data(header, payload)
    }

    /// Writes `head` and then `payload` completely. While the socket is full, calls
    /// `whileBlocked` (which must wait for it to drain and serve incoming traffic). Returns false
    /// when the peer is gone.
    @discardableResult
    func write(head: [UInt8], payload: [UInt8] = [], whileBlocked: (Int32) throws -> Void) rethrows -> Bool {
        try head.withUnsafeBytes { try write(head: $0, payload: payload, whileBlocked: whileBlocked) }
    }

    /// `write(head:payload:whileBlocked:)` with the head in memory the caller holds (a data
    /// frame's, built on its stack).
    @discardableResult
    func write(head headBytes: UnsafeRawBufferPointer, payload: [UInt8], whileBlocked: (Int32) throws -> Void) rethrows -> Bool {
        guard !isClosed else { return false }
        if let rings { return try write(head: headBytes, payload: payload, into: rings, whileBlocked: whileBlocked) }
        let total = headBytes.count + payload.count
        var written = 0
        if total > 0, total <= Self.coalescedBytesMax {
            // A small frame goes in one piece from the stack: send(2) of one buffer costs the
            // kernel less than sendmsg(2) of two (the vectors are copied in and checked). What
            // it does not take, or an error, goes on below as any write's.
            let sent = withUnsafeTemporaryAllocation(byteCount: total, alignment: 8) { frame in
                frame.copyMemory(from: headBytes)
                payload.withUnsafeBytes { bytes in
                    UnsafeMutableRawBufferPointer(rebasing: frame[headBytes.count...]).copyMemory(from: bytes)
                }
                return send(fd, frame.baseAddress, total, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if sent > 0 { written = sent }
        }
        while written < total {
            // The two pieces' vectors on the stack: a send allocates nothing.
            let sent = payload.withUnsafeBytes { payloadBytes in
                withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { vectors in
                    var count = 0
                    if written < headBytes.count {
                        vectors[count] = iovec(
                            iov_base: UnsafeMutableRawPointer(mutating: headBytes.baseAddress! + written),
                            iov_len: headBytes.count - written)
                        count += 1
                    }
                    let payloadOffset = max(0, written - headBytes.count)
                    if payloadBytes.count > payloadOffset {
                        vectors[count] = iovec(
                            iov_base: UnsafeMutableRawPointer(mutating: payloadBytes.baseAddress! + payloadOffset),
                            iov_len: payloadBytes.count - payloadOffset)
                        count += 1
                    }
                    var message = msghdr()
                    message.msg_iov = vectors.baseAddress
                    message.msg_iovlen = count
                    return sendmsg(fd, &message, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
            }
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    try whileBlocked(fd)
                    // The wait may have read the end of this stream and closed it: its number may
                    // belong to another descriptor by now, which must not get the rest of the frame.
                    guard !isClosed else { return false }
                    continue
                }
                close()
                return false
            }
            written += sent
        }
        return true
    }

    /// `write` through the outbound ring: copies what fits and wakes the peer if it sleeps;
    /// while the ring is full, watches it for room for `roomSpinSeconds`, then marks it (the
    /// peer's next read wakes this side through the socket) and calls `whileBlocked`.
    private func write(head headBytes: UnsafeRawBufferPointer, payload: [UInt8], into rings: SharedRings,
                       whileBlocked: (Int32) throws -> Void) rethrows -> Bool {
        let total = headBytes.count + payload.count
        var written = 0
        while written < total {
            guard !isClosed, !peerEnded else { return false }
            var corrupt: Int32 = 0
            let taken = payload.withUnsafeBytes { payloadBytes in
                let headOffset = min(written, headBytes.count)
                let payloadOffset = max(0, written - headBytes.count)
                return lifeline_ring_write(
                    rings.outbound, rings.capacity,
                    headBytes.baseAddress.map { $0 + headOffset }, headBytes.count - headOffset,
                    payloadBytes.baseAddress.map { $0 + payloadOffset }, payloadBytes.count - payloadOffset, &corrupt)
            }
            if corrupt != 0 {
                close()
                return false
            }
            written += taken
            if taken > 0, lifeline_ring_consumer_needs_wake(rings.outbound) != 0 { wakePeer() }
            guard written < total else { break }
            if roomSpinSeconds > 0, awaitRoom(rings) { continue }
            if lifeline_ring_arm_producer(rings.outbound, rings.capacity) == 0 { try whileBlocked(fd) }
        }
        return true
    }

    /// Watches the full outbound ring for room, up to `roomSpinSeconds`; true when room came.
    private func awaitRoom(_ rings: SharedRings) -> Bool {
        let started = monotonicSeconds()
        while true {
            for _ in 0..<256 {
                if lifeline_ring_has_room(rings.outbound, rings.capacity) != 0 { return true }
            }
            if monotonicSeconds() - started > roomSpinSeconds { return false }
        }
    }
}
