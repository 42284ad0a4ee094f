#if canImport(Glibc)
import Glibc
#endif
import LifelineCore

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
final class Connection {
    /// Payloads at least this large are read straight into their own array, skipping the buffer.
    private static let directPayloadBytesMin = 64 << 10
    private static let bufferBytes = 256 << 10

    /// The socket.
    let fd: Int32
    /// Set once the peer closed the stream or it failed; the socket is closed then.
    private(set) var isClosed = false
    /// Bytes read from the socket so far (a spinning receiver watches it: data still coming).
    private(set) var receivedBytes = 0
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    /// The header of a large data frame whose payload is still arriving; nil between frames.
    /// Invariant: while set, `largeFilled < largePayload.count`, and the buffer is empty.
    private var largeHeader: DataHeader?
    /// That frame's payload, filled up to `largeFilled` bytes.
    private var largePayload: [UInt8] = []
    private var largeFilled = 0

    /// Wraps a connected socket; the connection owns and closes it.
    init(fd: Int32) {
        self.fd = fd
        buffer = [UInt8](repeating: 0, count: Self.bufferBytes)
        Socket.tune(fd)
    }

    deinit { if !isClosed { Glibc.close(fd) } }

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
            let received = buffer.withUnsafeMutableBytes { bytes in
                recv(fd, bytes.baseAddress! + end, space, Int32(MSG_DONTWAIT))
            }
            if received < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return true }
                close()
                return false
            }
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
            if received < space, largeHeader == nil { return true }  // the socket is drained: spare the EAGAIN call
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
                if FramePrefix.byteCount + bodyLength > buffer.count {
                    var grown = [UInt8](repeating: 0, count: FramePrefix.byteCount + bodyLength)
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
        while true {
            let wanted = largePayload.count - largeFilled
            let received = largePayload.withUnsafeMutableBytes { target in
                recv(fd, target.baseAddress! + largeFilled, wanted, Int32(MSG_DONTWAIT))
            }
            if received > 0 {
                largeFilled += received
                receivedBytes += received
                return received
            }
            if received < 0, errno == EINTR { continue }
            if received < 0, errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            largeHeader = nil
            largePayload = []
            close()
            return nil
        }
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
        guard !isClosed else { return false }
        let total = head.count + payload.count
        var written = 0
        while written < total {
            // The two pieces' vectors on the stack: a send allocates nothing.
            let sent = head.withUnsafeBytes { headBytes in
                payload.withUnsafeBytes { payloadBytes in
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
            }
            if sent < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    try whileBlocked(fd)
                    continue
                }
                close()
                return false
            }
            written += sent
        }
        return true
    }
}
