/// Where a rank's program waits inside the runtime, as the rank answers the supervisor's
/// `waitQuery`, with the counts that move whenever it makes progress. Two answers that are
/// equal mean the rank did nothing in between.
package struct RankWait: Sendable, Equatable {
    /// What the rank waits for.
    package enum Kind: UInt8, Sendable {
        /// Nothing: it is in the program's own code (it answered from a safe point it passed).
        case running = 1
        /// A message from `peer` (nil: any source) with `tag`.
        case receive
        /// The round's common safe point, at its safe point `step`.
        case safePoint
        /// The other ranks, at the final barrier.
        case barrier
        /// Room in the socket to `peer` (its send is under way).
        case send
        /// A connection from or to `peer`.
        case connect
    }

    /// What the rank waits for.
    package var kind: Kind
    /// The rank it waits on (`receive`: nil for any source; `send`, `connect`).
    package var peer: RankID?
    /// `receive`: the tag it waits for; 0 otherwise.
    package var tag: Int64
    /// The last safe point the rank passed (`safePoint`: the one it waits at).
    package var step: Int
    /// Messages the rank's incarnation sent, that arrived at it, and that it delivered.
    package var sent: UInt64
    /// See `sent`.
    package var arrived: UInt64
    /// See `sent`.
    package var delivered: UInt64
    /// Messages the rank holds back until the checkpoint round's DONE (`--checkpoint
    /// blocking`): they go out when the round commits, whatever the program does.
    package var heldSends: UInt64

    /// A wait with every field given.
    package init(kind: Kind, peer: RankID? = nil, tag: Int64 = 0, step: Int, sent: UInt64 = 0, arrived: UInt64 = 0,
                 delivered: UInt64 = 0, heldSends: UInt64 = 0) {
        self.kind = kind
        self.peer = peer
        self.tag = tag
        self.step = step
        self.sent = sent
        self.arrived = arrived
        self.delivered = delivered
        self.heldSends = heldSends
    }

    /// Whether the rank can go on only when another rank sends to it (or, at the final barrier,
    /// never again on its own), and holds no message that a commit would send.
    package var waitsOnOthers: Bool { (kind == .receive || kind == .barrier) && heldSends == 0 }

    /// What the rank waits for, in words: "waits to receive from rank 1 (tag 7)".
    package var summary: String {
        switch kind {
        case .running: return "computes (last safe point \(step))"
        case .receive:
            let source = peer.map { "rank \($0.rawValue)" } ?? "any rank"
            return "waits to receive from \(source) (tag \(tag))"
        case .safePoint: return "waits at safe point \(step) for the checkpoint round's safe point"
        case .barrier: return "waits at the final barrier"
        case .send: return "waits to send to rank \(peer?.rawValue ?? -1) (its socket is full)"
        case .connect: return "waits for the connection of rank \(peer?.rawValue ?? -1)"
        }
    }

    /// Appends the wait to a control message body.
    package func encode(into writer: inout ByteWriter) {
        writer.write(kind.rawValue)
        writer.write(Int32(peer?.rawValue ?? -1))
        writer.write(tag)
        writer.write(Int64(step))
        writer.write(sent)
        writer.write(arrived)
        writer.write(delivered)
        writer.write(heldSends)
    }

    /// Reads a wait written by `encode(into:)`.
    package static func decode(from reader: inout ByteReader) throws(WireError) -> RankWait {
        let code = try reader.read(UInt8.self)
        guard let kind = Kind(rawValue: code) else { throw WireError("unknown wait kind \(code)") }
        let peer = try reader.read(Int32.self)
        guard peer >= -1 else { throw WireError("wait names rank \(peer)") }
        return RankWait(
            kind: kind, peer: peer < 0 ? nil : RankID(Int(peer)), tag: try reader.read(Int64.self),
            step: Int(try reader.read(Int64.self)), sent: try reader.read(UInt64.self), arrived: try reader.read(UInt64.self),
            delivered: try reader.read(UInt64.self), heldSends: try reader.read(UInt64.self))
    }
}
