/// The frames of the mutual handshake between hosts, and what each side proves.
///
/// Over TCP the token never travels. The connector sends a `HostHello` (who it is, a fresh
/// nonce); the acceptor answers with a `HostChallenge` (who it is, its own fresh nonce, and a
/// MAC keyed by the token over both); the connector checks that MAC and sends its own
/// (`proof`). Each MAC covers both nonces and both identities (role, rank, incarnation), under
/// a label of its own direction, so no answer can be replayed into another connection or
/// reflected back at its sender. The MAC itself (HMAC-SHA256) is computed by the runtime,
/// which links a cryptography library; this module only lays out the bytes it covers
/// (`HostHandshakeTranscript`).
package enum HostHandshake {
    /// The bytes of each nonce.
    package static let nonceBytes = 32
    /// The bytes of each MAC (HMAC-SHA256).
    package static let macBytes = 32
    /// The longest hello or challenge body taken.
    package static let bodyBytesMax = 256
}

/// The connector's first frame between hosts: its identity and a fresh nonce.
package struct HostHello: Sendable, Equatable {
    /// What the connection is for (`control` to the supervisor, `peer` to a rank).
    package var role: Handshake.Role
    /// The connecting rank.
    package var rank: RankID
    /// Its incarnation: a process left over from an earlier incarnation is refused (fencing).
    package var incarnation: UInt32
    /// The connecting process (on its own host).
    package var pid: Int32
    /// On a control connection, the TCP port the rank listens on for its peers (0 otherwise).
    package var port: UInt16
    /// `HostHandshake.nonceBytes` random bytes.
    package var nonce: [UInt8]

    /// A hello with every field given.
    package init(role: Handshake.Role, rank: RankID, incarnation: UInt32, pid: Int32, port: UInt16, nonce: [UInt8]) {
        self.role = role
        self.rank = rank
        self.incarnation = incarnation
        self.pid = pid
        self.port = port
        self.nonce = nonce
    }

    /// The body's bytes (what the MACs cover).
    package var body: [UInt8] {
        var writer = ByteWriter(capacity: 16 + nonce.count)
        writer.write(role.rawValue)
        writer.write(UInt32(rank.rawValue))
        writer.write(incarnation)
        writer.write(pid)
        writer.write(port)
        writer.writeRaw(nonce)
        return writer.bytes
    }

    /// The complete frame.
    package func frame() -> [UInt8] { HostHandshake.frame(.hello, body) }

    /// Decodes a hello body.
    package static func decode(_ body: [UInt8]) throws(WireError) -> HostHello {
        var reader = ByteReader(body)
        guard let role = Handshake.Role(rawValue: try reader.read(UInt8.self)) else { throw WireError("unknown hello role") }
        let rank = RankID(Int(try reader.read(UInt32.self)))
        let incarnation = try reader.read(UInt32.self)
        let pid = try reader.read(Int32.self)
        let port = try reader.read(UInt16.self)
        let nonce = Array(try reader.readRaw(HostHandshake.nonceBytes))
        guard reader.isAtEnd else { throw WireError("\(reader.remainingCount) stray bytes after the hello") }
        return HostHello(role: role, rank: rank, incarnation: incarnation, pid: pid, port: port, nonce: nonce)
    }

    /// The handshake the acceptor's owner judges (its token field is empty: none was sent).
    package var handshake: Handshake {
        Handshake(token: "", role: role, rank: rank, incarnation: incarnation, pid: pid, port: port)
    }
}

/// The acceptor's answer to a hello: its identity, a fresh nonce, and its MAC.
package struct HostChallenge: Sendable, Equatable {
    /// `supervisor` or `peer`.
    package var role: Handshake.Role
    /// The accepting rank (0 for the supervisor).
    package var rank: RankID
    /// Its incarnation (0 for the supervisor).
    package var incarnation: UInt32
    /// `HostHandshake.nonceBytes` random bytes.
    package var nonce: [UInt8]
    /// HMAC-SHA256 keyed by the token over `HostHandshakeTranscript.acceptor`.
    package var mac: [UInt8]

    /// A challenge with every field given.
    package init(role: Handshake.Role, rank: RankID, incarnation: UInt32, nonce: [UInt8], mac: [UInt8]) {
        self.role = role
        self.rank = rank
        self.incarnation = incarnation
        self.nonce = nonce
        self.mac = mac
    }

    /// The identity and nonce: what the MACs cover of the challenge.
    package var signedPart: [UInt8] {
        var writer = ByteWriter(capacity: 9 + nonce.count)
        writer.write(role.rawValue)
        writer.write(UInt32(rank.rawValue))
        writer.write(incarnation)
        writer.writeRaw(nonce)
        return writer.bytes
    }

    /// The complete frame.
    package func frame() -> [UInt8] { HostHandshake.frame(.challenge, signedPart + mac) }

    /// Decodes a challenge body.
    package static func decode(_ body: [UInt8]) throws(WireError) -> HostChallenge {
        var reader = ByteReader(body)
        guard let role = Handshake.Role(rawValue: try reader.read(UInt8.self)) else { throw WireError("unknown challenge role") }
        let rank = RankID(Int(try reader.read(UInt32.self)))
        let incarnation = try reader.read(UInt32.self)
        let nonce = Array(try reader.readRaw(HostHandshake.nonceBytes))
        let mac = Array(try reader.readRaw(HostHandshake.macBytes))
        guard reader.isAtEnd else { throw WireError("\(reader.remainingCount) stray bytes after the challenge") }
        return HostChallenge(role: role, rank: rank, incarnation: incarnation, nonce: nonce, mac: mac)
    }
}

/// What each side's MAC covers: a label of its direction, then the hello's body and the
/// challenge's signed part (both nonces, both identities).
package enum HostHandshakeTranscript {
    /// What the acceptor's MAC (in the challenge) covers.
    package static func acceptor(_ hello: HostHello, _ challenge: HostChallenge) -> [UInt8] {
        Array("lifeline host handshake v1: acceptor".utf8) + hello.body + challenge.signedPart
    }

    /// What the connector's MAC (the proof) covers.
    package static func connector(_ hello: HostHello, _ challenge: HostChallenge) -> [UInt8] {
        Array("lifeline host handshake v1: connector".utf8) + hello.body + challenge.signedPart
    }
}

extension HostHandshake {
    /// A frame of `kind` around `body`.
    package static func frame(_ kind: FrameKind, _ body: [UInt8]) -> [UInt8] {
        var writer = ByteWriter(capacity: FramePrefix.byteCount + body.count)
        FramePrefix(kind: kind, bodyLength: UInt64(body.count)).encode(into: &writer)
        writer.writeRaw(body)
        return writer.bytes
    }
}

/// Where a rank of a job on several hosts listens: its host (as the job names it), that host's
/// address, the rank's TCP port there, and the incarnation listening. Ranks on one host talk
/// over Unix sockets; ranks on two hosts connect to these addresses.
package struct RankAddress: Sendable, Equatable {
    /// The host's name as given to the launcher.
    package var host: String
    /// The host's IPv4 address, as text.
    package var address: String
    /// The rank's TCP port.
    package var port: UInt16
    /// The incarnation that listens there.
    package var incarnation: UInt32

    /// An address with every field given.
    package init(host: String, address: String, port: UInt16, incarnation: UInt32) {
        self.host = host
        self.address = address
        self.port = port
        self.incarnation = incarnation
    }

    func encode(into writer: inout ByteWriter) {
        writer.write(host)
        writer.write(address)
        writer.write(port)
        writer.write(incarnation)
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> RankAddress {
        RankAddress(
            host: try reader.readString(), address: try reader.readString(), port: try reader.read(UInt16.self),
            incarnation: try reader.read(UInt32.self))
    }
}
