/// The kinds of frame on a Lifeline connection.
///
/// Every frame starts with a 12-byte prefix: `kind: UInt32`, `bodyLength: UInt64`
/// (little-endian), then `bodyLength` bytes. The data path never uses a text encoding.
package enum FrameKind: UInt32, Sendable {
    /// The first frame on every connection: a `Handshake`.
    case handshake = 1
    /// The acceptor's answer to a valid handshake (empty body).
    case welcome = 2
    /// A program message: a `DataHeader` and its payload.
    case data = 3
    /// A `ControlMessage` between a rank and its supervisor.
    case control = 4
    /// The first frame on a connection between hosts: a `HostHello` (the connector's identity and
    /// nonce, no token).
    case hello = 5
    /// The acceptor's answer to a hello: a `HostChallenge` (its identity, its nonce, and its proof
    /// that it knows the token).
    case challenge = 6
    /// The connector's proof that it knows the token (32 bytes).
    case proof = 7
}

/// The fixed prefix of every frame.
package struct FramePrefix: Sendable, Equatable {
    /// The prefix's size in bytes.
    package static let byteCount = 12
    /// The largest body a peer may announce; a larger one is a protocol error.
    package static let bodyBytesMax: UInt64 = 1 << 34

    /// What follows.
    package var kind: FrameKind
    /// How many body bytes follow the prefix.
    package var bodyLength: UInt64

    /// A prefix for a body of `bodyLength` bytes.
    package init(kind: FrameKind, bodyLength: UInt64) {
        self.kind = kind
        self.bodyLength = bodyLength
    }

    /// Appends the prefix.
    package func encode(into writer: inout ByteWriter) {
        withUnsafeTemporaryAllocation(byteCount: Self.byteCount, alignment: 8) { bytes in
            store(into: bytes)
            writer.writeRaw(UnsafeRawBufferPointer(bytes))
        }
    }

    /// Stores the prefix (the kind as a UInt32, then the body length as a UInt64, little-endian)
    /// into the first `byteCount` bytes of `target`: the layout `decode` reads.
    package func store(into target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= Self.byteCount)
        target.storeBytes(of: kind.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        target.storeBytes(of: bodyLength.littleEndian, toByteOffset: 4, as: UInt64.self)
    }

    /// Decodes a prefix from exactly `byteCount` bytes.
    package static func decode(_ bytes: UnsafeRawBufferPointer) throws(WireError) -> FramePrefix {
        precondition(bytes.count >= byteCount)
        let rawKind = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let length = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 4, as: UInt64.self))
        guard let kind = FrameKind(rawValue: rawKind) else { throw WireError("unknown frame kind \(rawKind)") }
        guard length <= bodyBytesMax else { throw WireError("frame of \(length) bytes exceeds the maximum") }
        return FramePrefix(kind: kind, bodyLength: length)
    }
}

/// The header of a program message; the payload follows it in the frame body.
package struct DataHeader: Sendable, Equatable {
    /// The header's size in bytes.
    package static let byteCount = 32

    /// The sending rank.
    package var source: RankID
    /// The sender's incarnation (how many times it has been started before).
    package var incarnation: UInt32
    /// The program's tag.
    package var tag: Int64
    /// The position of the message in its (source, destination) channel.
    package var sequence: SequenceNumber
    /// The sender's epoch when it sent: the last checkpoint round it captured.
    package var epoch: Epoch

    /// A header with every field given.
    package init(source: RankID, incarnation: UInt32, tag: Int64, sequence: SequenceNumber, epoch: Epoch) {
        self.source = source
        self.incarnation = incarnation
        self.tag = tag
        self.sequence = sequence
        self.epoch = epoch
    }

    /// Appends the header.
    package func encode(into writer: inout ByteWriter) {
        withUnsafeTemporaryAllocation(byteCount: Self.byteCount, alignment: 8) { bytes in
            store(into: bytes)
            writer.writeRaw(UnsafeRawBufferPointer(bytes))
        }
    }

    /// Stores the header (source and incarnation as UInt32s, then tag, sequence and epoch as
    /// 64-bit values, little-endian) into the first `byteCount` bytes of `target`: the layout
    /// `decode` reads.
    package func store(into target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= Self.byteCount)
        func store<T: FixedWidthInteger>(_ value: T, at offset: Int) {
            target.storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
        }
        store(UInt32(source.rawValue), at: 0)
        store(incarnation, at: 4)
        store(tag, at: 8)
        store(sequence.rawValue, at: 16)
        store(epoch.rawValue, at: 24)
    }

    /// The bytes before a data frame's payload: the frame prefix and this header.
    package static let frameHeadByteCount = FramePrefix.byteCount + byteCount

    /// Stores the head of a data frame carrying `payloadCount` bytes — its prefix, then this
    /// header — into the first `frameHeadByteCount` bytes of `target`. A message's send path
    /// builds its head on the stack with this, where a `ByteWriter` would allocate an array per
    /// message.
    package func storeFrameHead(payloadCount: Int, into target: UnsafeMutableRawBufferPointer) {
        precondition(target.count >= Self.frameHeadByteCount)
        FramePrefix(kind: .data, bodyLength: UInt64(Self.byteCount + payloadCount)).store(into: target)
        store(into: UnsafeMutableRawBufferPointer(rebasing: target[FramePrefix.byteCount...]))
    }

    /// Decodes a header from the first `byteCount` bytes of a frame body.
    package static func decode(_ bytes: UnsafeRawBufferPointer) -> DataHeader {
        precondition(bytes.count >= byteCount)
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        return DataHeader(
            source: RankID(Int(field(0, UInt32.self))),
            incarnation: field(4, UInt32.self),
            tag: field(8, Int64.self),
            sequence: SequenceNumber(field(16, UInt64.self)),
            epoch: Epoch(field(24, UInt64.self))
        )
    }
}

/// The first frame on every connection. A peer whose token differs from the job's is refused.
package struct Handshake: Sendable, Equatable {
    /// Who is connecting.
    package enum Role: UInt8, Sendable {
        /// A rank's control connection to its supervisor.
        case control = 1
        /// A rank's data connection to another rank.
        case peer = 2
        /// The supervisor, as the acceptor of control connections between hosts.
        case supervisor = 3
        /// A rank's connection to a partner rank on another host that keeps the second copy
        /// of its stable storage (`PartnerFolder`); also the supervisor's, reading a failed
        /// rank's log where another host keeps it.
        case storage = 4
        /// The supervisor reading a host's own folder (mirror A of its ranks), lent for reading
        /// by the host's ranks: where a failed rank's message log is before its relaunch opens it.
        case hostFolder = 5
        /// A rank's connection to a rank of its partner host, which keeps the rank's level-1
        /// copies (`--levels memory,disk`) in that host's memory: the second copy in memory.
        case partnerMemory = 6
        /// The program started on a lost host only to prove that the host runs it and reaches
        /// the supervisor again (`HostProbe`); the supervisor closes the connection at once.
        case hostProbe = 7
    }

    /// The job's secret token.
    package var token: String
    /// What the connection is for.
    package var role: Role
    /// The connecting rank.
    package var rank: RankID
    /// The connecting rank's incarnation.
    package var incarnation: UInt32
    /// The connecting process.
    package var pid: Int32
    /// Between hosts, the TCP port the connecting rank listens on for its peers (the `HostHello`
    /// carries it; the same-host handshake frame does not: peers there use Unix sockets).
    package var port: UInt16 = 0

    /// A handshake with every field given.
    package init(token: String, role: Role, rank: RankID, incarnation: UInt32, pid: Int32, port: UInt16 = 0) {
        self.token = token
        self.role = role
        self.rank = rank
        self.incarnation = incarnation
        self.pid = pid
        self.port = port
    }

    /// The complete frame, prefix included.
    package func frame() -> [UInt8] {
        var body = ByteWriter()
        body.write(token)
        body.write(role.rawValue)
        body.write(UInt32(rank.rawValue))
        body.write(incarnation)
        body.write(pid)
        var writer = ByteWriter(capacity: FramePrefix.byteCount + body.bytes.count)
        FramePrefix(kind: .handshake, bodyLength: UInt64(body.bytes.count)).encode(into: &writer)
        writer.writeRaw(body.bytes)
        return writer.bytes
    }

    /// Decodes a handshake body.
    package static func decode(_ body: [UInt8]) throws(WireError) -> Handshake {
        var reader = ByteReader(body)
        let token = try reader.readString()
        guard let role = Role(rawValue: try reader.read(UInt8.self)) else { throw WireError("unknown handshake role") }
        let rank = RankID(Int(try reader.read(UInt32.self)))
        let incarnation = try reader.read(UInt32.self)
        let pid = try reader.read(Int32.self)
        guard reader.isAtEnd else { throw WireError("\(reader.remainingCount) stray bytes after the handshake") }
        return Handshake(token: token, role: role, rank: rank, incarnation: incarnation, pid: pid)
    }
}
