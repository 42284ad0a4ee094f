/// What a launched rank is to do, sent with `START` once every rank of its launch has
/// connected: where it begins (a committed snapshot, or the start of the job), whether it
/// recovers and replays its log, and how it writes to storage. The environment a rank is
/// launched with says only who it is and where to connect; the plan is decided by the
/// supervisor and travels in the protocol, so a launcher (local, Slurm, ssh) starts every
/// rank the same way.
package struct StartPlan: Sendable, Equatable {
    /// Whether this launch recovers the rank (after a failure, or by `resume`).
    package var restarted: Bool
    /// The committed round (or independent checkpoint) to restore from; `.start`: none.
    package var restoreEpoch: Epoch
    /// The store-relative name of the snapshot to restore, if any.
    package var restoreSnapshot: String?
    /// The newest round started before this launch: messages of rounds up to it are not held.
    package var deliverableEpoch: Epoch
    /// Whether the rank replays its message log (it restarts alone, or with its orphans).
    package var replayLog: Bool
    /// Optimistic logging: replay only what depends on no state of a failed rank beyond what
    /// `replayLimit` says its checkpoint and log recover.
    package var replayLimit: RecoveryPlan.ReplayLimit?
    /// The mirrors to write (both, unless one has failed).
    package var writeMirrors: StorageMirrors
    /// A resized job: the rank is rebuilt from the states of the `rankCount` ranks that wrote
    /// the line of `restoreEpoch` at `step` (`Redistributable`), not from a snapshot of its own.
    package var resize: Resize?

    /// Where a resized rank's state comes from: the line of `restoreEpoch`, written by
    /// `rankCount` ranks at `step`.
    package struct Resize: Sendable, Equatable {
        /// The number of ranks that wrote the line.
        package var rankCount: Int
        /// The line's step, where every rank of the resized job begins.
        package var step: Int
        /// Whether the line's snapshots store messages in flight (or may: a line committed
        /// before they were counted): a state that does not take them must not be rebuilt.
        package var messagesInFlight: Bool

        /// The line's rank count and step, and whether messages were in flight across it.
        package init(rankCount: Int, step: Int, messagesInFlight: Bool = false) {
            self.rankCount = rankCount
            self.step = step
            self.messagesInFlight = messagesInFlight
        }
    }

    /// A plan with every field given; by default a fresh start on both mirrors.
    package init(restarted: Bool = false, restoreEpoch: Epoch = .start, restoreSnapshot: String? = nil,
                 deliverableEpoch: Epoch = .start, replayLog: Bool = false, replayLimit: RecoveryPlan.ReplayLimit? = nil,
                 writeMirrors: StorageMirrors = .both, resize: Resize? = nil) {
        self.restarted = restarted
        self.restoreEpoch = restoreEpoch
        self.restoreSnapshot = restoreSnapshot
        self.deliverableEpoch = deliverableEpoch
        self.replayLog = replayLog
        self.replayLimit = replayLimit
        self.writeMirrors = writeMirrors
        self.resize = resize
    }

    func encode(into writer: inout ByteWriter) {
        var flags: UInt8 = 0
        if restarted { flags |= 1 }
        if replayLog { flags |= 2 }
        if restoreSnapshot != nil { flags |= 4 }
        if replayLimit != nil { flags |= 8 }
        if resize != nil { flags |= 16 }
        writer.write(flags)
        writer.write(restoreEpoch.rawValue)
        writer.write(deliverableEpoch.rawValue)
        writer.write(writeMirrors.rawValue)
        if let restoreSnapshot { writer.write(restoreSnapshot) }
        if let replayLimit {
            writer.write(UInt32(replayLimit.recoverable.count))
            for (rank, recoverable) in replayLimit.recoverable.sorted(by: { $0.key < $1.key }) {
                writer.write(UInt32(rank))
                writer.write(recoverable)
            }
        }
        if let resize {
            writer.write(UInt32(resize.rankCount))
            writer.write(Int64(resize.step))
            writer.write(UInt8(resize.messagesInFlight ? 1 : 0))
        }
    }

    static func decode(from reader: inout ByteReader) throws(WireError) -> StartPlan {
        let flags = try reader.read(UInt8.self)
        guard flags & ~31 == 0 else { throw WireError("START with flags \(flags)") }
        let restoreEpoch = Epoch(try reader.read(UInt64.self))
        let deliverableEpoch = Epoch(try reader.read(UInt64.self))
        let bits = try reader.read(UInt8.self)
        guard bits != 0, bits & ~StorageMirrors.both.rawValue == 0 else { throw WireError("START with mirror set \(bits)") }
        let snapshot = flags & 4 != 0 ? try reader.readString() : nil
        var limit: RecoveryPlan.ReplayLimit?
        if flags & 8 != 0 {
            let count = Int(try reader.read(UInt32.self))
            guard count >= 1, count <= reader.remainingCount / 12 else { throw WireError("START with \(count) replay limits") }
            var recoverable: [Int: UInt64] = [:]
            for _ in 0..<count { recoverable[Int(try reader.read(UInt32.self))] = try reader.read(UInt64.self) }
            limit = RecoveryPlan.ReplayLimit(recoverable: recoverable)
        }
        var resize: Resize?
        if flags & 16 != 0 {
            let count = Int(try reader.read(UInt32.self))
            let step = try reader.read(Int64.self)
            let inFlight = try reader.read(UInt8.self)
            guard count >= 1, step >= 0, inFlight <= 1 else {
                throw WireError("START resizing from \(count) ranks at step \(step) (in flight: \(inFlight))")
            }
            resize = Resize(rankCount: count, step: Int(step), messagesInFlight: inFlight == 1)
        }
        return StartPlan(
            restarted: flags & 1 != 0, restoreEpoch: restoreEpoch, restoreSnapshot: snapshot, deliverableEpoch: deliverableEpoch,
            replayLog: flags & 2 != 0, replayLimit: limit, writeMirrors: StorageMirrors(rawValue: bits), resize: resize)
    }
}
