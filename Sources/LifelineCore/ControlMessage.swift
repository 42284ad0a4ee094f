/// The storage mirrors a snapshot is written to or held by (A and B, as the storage layer
/// names them): both, or one alone while the other has failed.
package struct StorageMirrors: OptionSet, Sendable, Hashable {
    /// The bits: A is 1, B is 2.
    package let rawValue: UInt8
    /// A set from its bits.
    package init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Mirror A.
    package static let a = StorageMirrors(rawValue: 1)
    /// Mirror B.
    package static let b = StorageMirrors(rawValue: 2)
    /// Both mirrors: the normal state.
    package static let both: StorageMirrors = [.a, .b]
}

/// What a rank reports when its snapshot for a round is durable on the mirrors it was asked
/// to write (both, unless one has failed).
package struct Acknowledgement: Sendable, Equatable {
    /// The safe point at which the state was captured.
    package var step: Int
    /// The snapshot's size as stored (compressed, one mirror).
    package var snapshotBytes: UInt64
    /// The length of the rank's standard output when it captured: what a commit may release.
    package var outputOffset: UInt64
    /// The sequence numbers the rank had delivered at capture, indexed by source rank (the
    /// sources it delivered from are stored and sent).
    package var delivered: DeliveredSets
    /// `--checkpoint minimal`: the rank delivered nothing since its last committed checkpoint,
    /// wrote nothing, and keeps that checkpoint as its entry in the new line (`snapshotBytes`
    /// and `outputOffset` are then 0 and `delivered` is unchanged since that checkpoint).
    package var kept: Bool
    /// Deliveries and logged values since the rank's last committed checkpoint: why it wrote.
    package var changes: UInt64
    /// The snapshot's uncompressed size.
    package var logicalBytes: UInt64
    /// The snapshot's chunks, and how many of them were already stored intact (not written).
    package var chunks: UInt32
    /// Of `chunks`, those referenced instead of written.
    package var chunksReused: UInt32
    /// The index of the rank's next log record at capture (sender-based logging: the event
    /// logger drops the records before it when the line commits).
    package var logPosition: UInt64
    /// The program state's bytes in the snapshot (what `Checkpointable.encode(to:)` wrote).
    package var stateBytes: UInt64
    /// The bytes of the messages the snapshot stores, payloads and headers
    /// (`MessageLedger.storedMessageBytes`): those in flight across the line (all it retained,
    /// under independent checkpoints). Zero exactly when it stores no message.
    package var inFlightBytes: UInt64
    /// `--checkpoint independent`: the dependency vector of the interval this checkpoint closes
    /// (per sender, the newest sender interval delivered from; -1: none). Empty otherwise.
    package var dependencies: PerPeer<Int>
    /// The mirrors that hold the snapshot: both, or one during a degraded state.
    package var mirrors: StorageMirrors
    /// `--levels memory,disk`: the snapshot is held in the host's memory (level 1) and the sizes
    /// above are of that copy; its drain to disk, if the round is drained, is reported by
    /// `drained`. False: it is on disk (level 2), as in a job on disk alone.
    package var inMemory: Bool = false
    /// How long after its capture began the rank sent the round's `captured`, in
    /// microseconds (it sends it first, before the program encodes its state): the supervisor
    /// times a round from the first capture's start, its `captured` arrival less this.
    package var captureMicroseconds: UInt32 = 0
    /// Optimistic logging: the words (`DependencyVector.words`) of the dependency vector the
    /// snapshot stores. With levels on other hosts, or partner copies, the supervisor cannot
    /// read the snapshot, and its orphan search takes them from here. Empty otherwise.
    package var logDependencies: [UInt64] = []
    /// With levels on several hosts: the host whose memory holds the second copy of the
    /// snapshot held in memory (`inMemory`), the rank's partner host; nil when none does (one
    /// host left, or the partner's copy could not be written).
    package var memoryPartner: String?

    /// An acknowledgement with every field given.
    package init(step: Int, snapshotBytes: UInt64, outputOffset: UInt64, delivered: DeliveredSets,
                 kept: Bool = false, changes: UInt64 = 0, logicalBytes: UInt64 = 0, chunks: UInt32 = 0,
                 chunksReused: UInt32 = 0, logPosition: UInt64 = 0, stateBytes: UInt64 = 0, inFlightBytes: UInt64 = 0,
                 dependencies: PerPeer<Int> = PerPeer(rankCount: 0, absent: -1), mirrors: StorageMirrors = .both,
                 captureMicroseconds: UInt32 = 0) {
        self.captureMicroseconds = captureMicroseconds
        self.mirrors = mirrors
        self.logPosition = logPosition
        self.stateBytes = stateBytes
        self.inFlightBytes = inFlightBytes
        self.step = step
        self.snapshotBytes = snapshotBytes
        self.outputOffset = outputOffset
        self.delivered = delivered
        self.kept = kept
        self.changes = changes
        self.logicalBytes = logicalBytes
        self.chunks = chunks
        self.chunksReused = chunksReused
        self.dependencies = dependencies
    }
}

/// A message between a rank and its supervisor, named as in the literature.
package enum ControlMessage: Sendable, Equatable {
    // Supervisor → rank.
    /// Every rank of this launch is connected to the supervisor: connect to the peers, and
    /// begin as the plan says (restore, replay, mirrors).
    case start(StartPlan)
    /// `CHECKPOINT_REQUEST(epoch)`: answer with `stepReport` and wait at the next safe point.
    case checkpointRequest(Epoch)
    /// The common safe point chosen for the round: capture there.
    case safePointChosen(Epoch, step: Int)
    /// `CHECKPOINT_DONE(epoch)`: the round is committed. Carries, per receiver, what that
    /// receiver had delivered from this rank at capture, so retained messages can be trimmed.
    case checkpointDone(Epoch, coveredByReceiver: DeliveredSets)
    /// The round's cut, once every rank has captured (or kept) for it: per receiver, what that
    /// receiver had delivered from this rank at its capture. Of the messages this rank retained
    /// at its own capture, those not covered are the ones in flight across the line: the
    /// snapshot stores them and no others (docs/protocol.md, "What a snapshot stores").
    case cut(Epoch, coveredByReceiver: DeliveredSets)
    /// `ABORT(epoch)`: the round will not commit; lift the hold on its messages.
    case abort(Epoch)
    /// Every rank reached the final barrier: exit.
    case release
    /// Write snapshots to these mirrors from now on (one alone while the other has failed,
    /// both again once it is resynchronised).
    case writeMirrors(StorageMirrors)
    /// A rank was restarted alone (its incarnation given): connect to it if it is below you,
    /// wait for its connection otherwise, then send it your retained messages again.
    case peerRestarted(RankID, incarnation: UInt32)
    /// A job on several hosts: where each rank listens (nil: not known yet), sent before START
    /// and before `peerRestarted`, so the rank connects to the process named there.
    case peerAddresses([RankAddress?])
    /// A job on several hosts: where one restarted rank listens now, sent before its
    /// `peerRestarted` to the ranks that keep running (the rest of their table holds).
    case peerAddress(RankID, RankAddress)
    /// Collect the host's folders (a node-local mirror, the folder kept for a partner host)
    /// against the committed manifest: under independent checkpoints, after the supervisor
    /// collected checkpoints no line can use, which no `trim` follows while the line stands.
    case collectHostGarbage
    /// An injected fault for a rank on another host, whose process the supervisor cannot signal:
    /// carry out this signal on yourself now (SIGKILL or SIGSTOP; any other is ignored).
    case signal(Int32)
    /// Independent checkpointing, a rank failed: finish writing your checkpoints, stop delivering
    /// messages and taking checkpoints, and answer `frozen` with your current interval.
    case freeze
    /// The recovery line is set (restarted ranks announced before): deliver again.
    case thaw
    /// Sender-based logging: the event logger holds every record of this rank below `through`;
    /// sends wait for it.
    case eventsLogged(through: UInt64)
    /// Sender-based logging, before START to a rank restarted to replay: the records the event
    /// logger holds for it, the first at index `first` (nil: none since its last relaunch).
    case eventRecords(first: UInt64?, records: [[UInt8]])
    /// Independent checkpointing: no recovery line can reach behind the checkpoint-only line any
    /// more. Drop what each receiver's checkpoint in it covers, and the log before your own
    /// checkpoint `checkpoint` in it.
    case trim(checkpoint: Int, coveredByReceiver: DeliveredSets)
    /// The job seems stalled: say where you wait (answer `waitReport` with this serial at once,
    /// from inside whatever wait you are in).
    case waitQuery(serial: UInt32)

    // Rank → supervisor.
    /// The rank is alive; `step` is the last safe point it passed.
    case heartbeat(step: Int)
    /// The answer to a request: the last safe point the rank passed.
    case stepReport(Epoch, step: Int)
    /// The rank captured (or, under minimal checkpoints, kept its checkpoint) for round
    /// `epoch`, having delivered `delivered` from each source: the supervisor's `cut` is made of
    /// these. Sent at the capture, before the snapshot is written.
    case captured(Epoch, delivered: DeliveredSets)
    /// `ACK(epoch)`: the rank's snapshot is durable.
    case ack(Epoch, Acknowledgement)
    /// Sender-based logging: log records (determinants, logged values) for the event logger,
    /// the first at index `first`; `acknowledge`: the rank waits for `eventsLogged` before its
    /// next send (a rank on another host; one on the supervisor's host does not).
    case logEvents(first: UInt64, records: [[UInt8]], acknowledge: Bool)
    /// The rank could not write its snapshot; the round must abort. `failedMirrors`: the mirror
    /// whose write failed, when its disk failed (full, read-only, I/O error); empty otherwise.
    case snapshotFailed(Epoch, reason: String, failedMirrors: StorageMirrors = [])
    /// The rank reached the end of its program and waits at the final barrier; it reports what
    /// its incarnation appended to its message log, the peaks of its retained messages and of
    /// its log on disk (0 without logging), its peak resident memory, how many fsyncs its log
    /// cost (one per mirror per batch of records, and those of trimming), the microseconds
    /// its appends took to make records durable, and how long its restore took (reading and
    /// checking its snapshot; 0: it started afresh) and from where (`restoredFrom`: 0 none, 1
    /// disk, 2 memory).
    case finished(step: Int, loggedBytes: UInt64, retainedBytesPeak: UInt64, logBytesPeak: UInt64, residentBytesPeak: UInt64,
                  logSyncs: UInt64 = 0, logSyncMicroseconds: UInt64 = 0, restoreMicroseconds: UInt64 = 0, restoredFrom: UInt8 = 0)
    /// The program asked for a checkpoint.
    case checkpointWanted
    /// An injected fault is about to fire in the rank (it kills itself next).
    case faultFired(index: Int)
    /// A restarted rank has replayed every logged delivery and runs live again; `deliveries`: how
    /// many receives its log answered.
    case replayComplete(deliveries: Int)
    /// A rank relaunched after it failed passed the safe point it had reached then
    /// (`LaunchEnvironment.catchUpStep`): the job is back where it was (`caught_up`).
    case caughtUp(step: Int)
    /// The answer to `freeze`: the rank's current checkpoint interval and its dependency vector.
    case frozen(interval: Int, dependencies: PerPeer<Int>)
    /// The answer to `waitQuery(serial)`: where the program waits inside the runtime.
    case waitReport(serial: UInt32, RankWait)
    /// Message `sequence` from `source` arrived again with bytes other than the ones the rank
    /// delivered: its sender did not re-execute the same way (the program is not deterministic).
    case nondeterminism(source: RankID, sequence: SequenceNumber)
    /// The rank's message log stopped writing a mirror whose write failed (full, read-only,
    /// I/O error) and goes on on the other alone: the supervisor degrades the job to it.
    case logMirrorFailed(StorageMirrors, reason: String)
    /// `--levels memory,disk`: the rank's snapshot of round `epoch`, acknowledged in memory, is
    /// on disk now (`storedBytes` newly stored on one mirror), or could not be written there
    /// (`failure` says why; the line stays in memory alone; `failedMirrors`: the mirror whose
    /// write failed as a failing disk does, which the job then degrades from).
    case drained(Epoch, storedBytes: UInt64, failure: String?, failedMirrors: StorageMirrors = [])
    /// The rank's runtime ends its process with `status`, one of the runtime's own exit
    /// statuses (a snapshot it cannot restore, a log it cannot replay, a log copy its partner
    /// did not take): said first, so that the supervisor does not take a program that exits
    /// with the same status for the runtime.
    case stopping(status: Int32)
    /// The program ends the rank's process with `status` (not 0) by `exit` (or by returning
    /// from its main function with it): said from the process's exit handler, so that on another
    /// host the supervisor does not take a program's own status 3 for a rank that lost its link
    /// (the runtime's own exits skip the handler).
    case exiting(status: Int32)
    /// `--levels memory,disk` on several hosts: the rank removed `folder`, which a job whose
    /// supervisor died left in its host's memory (`MemoryLevel.reclaimAbandoned`), and the
    /// `bytes` its files held.
    case memoryReclaimed(folder: String, bytes: UInt64)

    private enum Code: UInt8 {
        case start = 1, checkpointRequest, safePointChosen, checkpointDone, abort, release, peerRestarted, freeze, thaw, trim
        case waitQuery, writeMirrors, cut, eventsLogged, eventRecords, peerAddresses, signal, peerAddress, collectHostGarbage
        case heartbeat = 20, stepReport, ack, snapshotFailed, finished, checkpointWanted, faultFired, replayComplete, frozen
        case waitReport, nondeterminism, logMirrorFailed, captured, logEvents, drained, caughtUp, stopping, exiting
        case memoryReclaimed
    }

    /// The complete frame, prefix included.
    package func frame() -> [UInt8] {
        var body = ByteWriter()
        encodeBody(into: &body)
        var writer = ByteWriter(capacity: FramePrefix.byteCount + body.bytes.count)
        FramePrefix(kind: .control, bodyLength: UInt64(body.bytes.count)).encode(into: &writer)
        writer.writeRaw(body.bytes)
        return writer.bytes
    }

    private func encodeBody(into writer: inout ByteWriter) {
        switch self {
        case .start(let plan):
            writer.write(Code.start.rawValue)
            plan.encode(into: &writer)
        case .checkpointRequest(let epoch):
            writer.write(Code.checkpointRequest.rawValue)
            writer.write(epoch.rawValue)
        case .safePointChosen(let epoch, let step):
            writer.write(Code.safePointChosen.rawValue)
            writer.write(epoch.rawValue)
            writer.write(Int64(step))
        case .checkpointDone(let epoch, let sets), .cut(let epoch, let sets), .captured(let epoch, let sets):
            // A round's number and per-rank delivered sets (DONE, the cut, a captured report).
            let code: Code = switch self {
            case .checkpointDone: .checkpointDone
            case .cut: .cut
            default: .captured
            }
            writer.write(code.rawValue)
            writer.write(epoch.rawValue)
            Self.encode(sets, into: &writer)
        case .abort(let epoch):
            writer.write(Code.abort.rawValue)
            writer.write(epoch.rawValue)
        case .eventsLogged(let through):
            writer.write(Code.eventsLogged.rawValue)
            writer.write(through)
        case .eventRecords(let first, let records):
            writer.write(Code.eventRecords.rawValue)
            writer.write(UInt8(first == nil ? 0 : 1))
            writer.write(first ?? 0)
            Self.encode(records, into: &writer)
        case .logEvents(let first, let records, let acknowledge):
            writer.write(Code.logEvents.rawValue)
            writer.write(first)
            writer.write(UInt8(acknowledge ? 1 : 0))
            Self.encode(records, into: &writer)
        case .release:
            writer.write(Code.release.rawValue)
        case .peerRestarted(let rank, let incarnation):
            writer.write(Code.peerRestarted.rawValue)
            writer.write(UInt32(rank.rawValue))
            writer.write(incarnation)
        case .peerAddresses(let table):
            writer.write(Code.peerAddresses.rawValue)
            writer.write(UInt32(table.count))
            for entry in table {
                writer.write(UInt8(entry == nil ? 0 : 1))
                entry?.encode(into: &writer)
            }
        case .peerAddress(let rank, let address):
            writer.write(Code.peerAddress.rawValue)
            writer.write(UInt32(rank.rawValue))
            address.encode(into: &writer)
        case .collectHostGarbage:
            writer.write(Code.collectHostGarbage.rawValue)
        case .freeze:
            writer.write(Code.freeze.rawValue)
        case .thaw:
            writer.write(Code.thaw.rawValue)
        case .trim(let checkpoint, let covered):
            writer.write(Code.trim.rawValue)
            writer.write(Int64(checkpoint))
            Self.encode(covered, into: &writer)
        case .waitQuery(let serial):
            writer.write(Code.waitQuery.rawValue)
            writer.write(serial)
        case .signal(let number):
            writer.write(Code.signal.rawValue)
            writer.write(UInt32(bitPattern: number))
        case .waitReport(let serial, let wait):
            writer.write(Code.waitReport.rawValue)
            writer.write(serial)
            wait.encode(into: &writer)
        case .nondeterminism(let source, let sequence):
            writer.write(Code.nondeterminism.rawValue)
            writer.write(UInt32(source.rawValue))
            writer.write(sequence.rawValue)
        case .frozen(let interval, let dependencies):
            writer.write(Code.frozen.rawValue)
            writer.write(Int64(interval))
            Self.encodeSparse(dependencies, into: &writer)
        case .heartbeat(let step):
            writer.write(Code.heartbeat.rawValue)
            writer.write(Int64(step))
        case .stepReport(let epoch, let step):
            writer.write(Code.stepReport.rawValue)
            writer.write(epoch.rawValue)
            writer.write(Int64(step))
        case .writeMirrors(let mirrors):
            writer.write(Code.writeMirrors.rawValue)
            writer.write(mirrors.rawValue)
        case .logMirrorFailed(let mirrors, let reason):
            writer.write(Code.logMirrorFailed.rawValue)
            writer.write(mirrors.rawValue)
            writer.write(reason)
        case .ack(let epoch, let ack):
            writer.write(Code.ack.rawValue)
            writer.write(epoch.rawValue)
            writer.write(Int64(ack.step))
            writer.write(ack.snapshotBytes)
            writer.write(ack.outputOffset)
            writer.write(UInt8(ack.kept ? 1 : 0) | UInt8(ack.inMemory ? 2 : 0))
            writer.write(ack.changes)
            writer.write(ack.logicalBytes)
            writer.write(ack.chunks)
            writer.write(ack.chunksReused)
            writer.write(ack.logPosition)
            writer.write(ack.stateBytes)
            writer.write(ack.inFlightBytes)
            writer.write(ack.captureMicroseconds)
            writer.write(ack.mirrors.rawValue)
            Self.encodeSparse(ack.dependencies, into: &writer)
            Self.encode(ack.delivered, into: &writer)
            writer.write(UInt32(ack.logDependencies.count))
            for word in ack.logDependencies { writer.write(word) }
            writer.write(ack.memoryPartner ?? "")
        case .drained(let epoch, let storedBytes, let failure, let failedMirrors):
            writer.write(Code.drained.rawValue)
            writer.write(epoch.rawValue)
            writer.write(storedBytes)
            writer.write(failedMirrors.rawValue)
            writer.write(UInt8(failure == nil ? 0 : 1))
            if let failure { writer.write(failure) }
        case .snapshotFailed(let epoch, let reason, let failedMirrors):
            writer.write(Code.snapshotFailed.rawValue)
            writer.write(epoch.rawValue)
            writer.write(failedMirrors.rawValue)
            writer.write(reason)
        case .finished(let step, let loggedBytes, let retainedBytesPeak, let logBytesPeak, let residentBytesPeak, let logSyncs,
                       let logSyncMicroseconds, let restoreMicroseconds, let restoredFrom):
            writer.write(Code.finished.rawValue)
            writer.write(Int64(step))
            writer.write(loggedBytes)
            writer.write(retainedBytesPeak)
            writer.write(logBytesPeak)
            writer.write(residentBytesPeak)
            writer.write(logSyncs)
            writer.write(logSyncMicroseconds)
            writer.write(restoreMicroseconds)
            writer.write(restoredFrom)
        case .checkpointWanted:
            writer.write(Code.checkpointWanted.rawValue)
        case .faultFired(let index):
            writer.write(Code.faultFired.rawValue)
            writer.write(UInt32(index))
        case .replayComplete(let deliveries):
            writer.write(Code.replayComplete.rawValue)
            writer.write(UInt64(deliveries))
        case .caughtUp(let step):
            writer.write(Code.caughtUp.rawValue)
            writer.write(Int64(step))
        case .stopping(let status):
            writer.write(Code.stopping.rawValue)
            writer.write(status)
        case .exiting(let status):
            writer.write(Code.exiting.rawValue)
            writer.write(status)
        case .memoryReclaimed(let folder, let bytes):
            writer.write(Code.memoryReclaimed.rawValue)
            writer.write(bytes)
            writer.write(folder)
        }
    }

    /// Decodes a control frame's body.
    package static func decode(_ body: [UInt8]) throws(WireError) -> ControlMessage {
        var reader = ByteReader(body)
        guard let code = Code(rawValue: try reader.read(UInt8.self)) else {
            throw WireError("unknown control message code \(body.first ?? 0)")
        }
        func epoch() throws(WireError) -> Epoch { Epoch(try reader.read(UInt64.self)) }
        func step() throws(WireError) -> Int { Int(try reader.read(Int64.self)) }
        func mirrors() throws(WireError) -> StorageMirrors {
            let bits = try reader.read(UInt8.self)
            guard bits & ~StorageMirrors.both.rawValue == 0 else { throw WireError("mirror set \(bits)") }
            return StorageMirrors(rawValue: bits)
        }
        let message: ControlMessage
        switch code {
        case .start: message = .start(try StartPlan.decode(from: &reader))
        case .checkpointRequest: message = .checkpointRequest(try epoch())
        case .safePointChosen: message = .safePointChosen(try epoch(), step: try step())
        case .checkpointDone: message = .checkpointDone(try epoch(), coveredByReceiver: try decodeSets(&reader))
        case .abort: message = .abort(try epoch())
        case .cut: message = .cut(try epoch(), coveredByReceiver: try decodeSets(&reader))
        case .captured: message = .captured(try epoch(), delivered: try decodeSets(&reader))
        case .eventsLogged: message = .eventsLogged(through: try reader.read(UInt64.self))
        case .eventRecords:
            let present = try reader.read(UInt8.self)
            guard present <= 1 else { throw WireError("event records with flag \(present)") }
            let first = try reader.read(UInt64.self)
            let records = try decodeRecords(&reader)
            guard first <= UInt64.max - UInt64(records.count) else { throw WireError("event records run past the last index") }
            message = .eventRecords(first: present == 1 ? first : nil, records: records)
        case .logEvents:
            let first = try reader.read(UInt64.self)
            let acknowledge = try reader.read(UInt8.self)
            guard acknowledge <= 1 else { throw WireError("log records with acknowledge flag \(acknowledge)") }
            let records = try decodeRecords(&reader)
            // Numbered from `first` on: a range past the last index is no rank's log.
            guard first <= UInt64.max - UInt64(records.count) else { throw WireError("log records run past the last index") }
            message = .logEvents(first: first, records: records, acknowledge: acknowledge == 1)
        case .release: message = .release
        case .peerRestarted:
            message = .peerRestarted(RankID(Int(try reader.read(UInt32.self))), incarnation: try reader.read(UInt32.self))
        case .peerAddresses:
            let count = Int(try reader.read(UInt32.self))
            guard count <= ranksMax, count <= reader.remainingCount else { throw WireError("address table claims \(count) ranks") }
            var table: [RankAddress?] = []
            for _ in 0..<count {
                let present = try reader.read(UInt8.self)
                guard present <= 1 else { throw WireError("address table with flag \(present)") }
                table.append(present == 1 ? try RankAddress.decode(from: &reader) : nil)
            }
            message = .peerAddresses(table)
        case .peerAddress:
            let rank = Int(try reader.read(UInt32.self))
            guard rank < ranksMax else { throw WireError("an address for rank \(rank)") }
            message = .peerAddress(RankID(rank), try RankAddress.decode(from: &reader))
        case .collectHostGarbage: message = .collectHostGarbage
        case .freeze: message = .freeze
        case .thaw: message = .thaw
        case .trim: message = .trim(checkpoint: try step(), coveredByReceiver: try decodeSets(&reader))
        case .waitQuery: message = .waitQuery(serial: try reader.read(UInt32.self))
        case .signal: message = .signal(Int32(bitPattern: try reader.read(UInt32.self)))
        case .writeMirrors: message = .writeMirrors(try mirrors())
        case .logMirrorFailed:
            let failed = try mirrors()
            message = .logMirrorFailed(failed, reason: try reader.readString())
        case .waitReport: message = .waitReport(serial: try reader.read(UInt32.self), try RankWait.decode(from: &reader))
        case .nondeterminism:
            message = .nondeterminism(
                source: RankID(Int(try reader.read(UInt32.self))), sequence: SequenceNumber(rawValue: try reader.read(UInt64.self)))
        case .frozen: message = .frozen(interval: try step(), dependencies: try decodeSparseIntegers(&reader))
        case .heartbeat: message = .heartbeat(step: try step())
        case .stepReport: message = .stepReport(try epoch(), step: try step())
        case .ack:
            let round = try epoch()
            let captured = try step()
            let snapshotBytes = try reader.read(UInt64.self)
            let outputOffset = try reader.read(UInt64.self)
            let kept = try reader.read(UInt8.self)
            guard kept <= 2 else { throw WireError("ACK with flags \(kept)") }
            let changes = try reader.read(UInt64.self)
            let logicalBytes = try reader.read(UInt64.self)
            let chunks = try reader.read(UInt32.self)
            let chunksReused = try reader.read(UInt32.self)
            let logPosition = try reader.read(UInt64.self)
            let stateBytes = try reader.read(UInt64.self)
            let inFlightBytes = try reader.read(UInt64.self)
            let captureMicroseconds = try reader.read(UInt32.self)
            let held = try mirrors()
            let dependencies = try decodeSparseIntegers(&reader)
            let delivered = try decodeSets(&reader)
            let words = Int(try reader.read(UInt32.self))
            guard words % 3 == 0, words <= reader.remainingCount / 8 else { throw WireError("ACK claims \(words) dependency words") }
            var logDependencies: [UInt64] = []
            logDependencies.reserveCapacity(words)
            for _ in 0..<words { logDependencies.append(try reader.read(UInt64.self)) }
            let memoryPartner = try reader.readString()
            var acknowledgement = Acknowledgement(
                step: captured, snapshotBytes: snapshotBytes, outputOffset: outputOffset, delivered: delivered,
                kept: kept & 1 != 0, changes: changes, logicalBytes: logicalBytes, chunks: chunks, chunksReused: chunksReused,
                logPosition: logPosition, stateBytes: stateBytes, inFlightBytes: inFlightBytes, dependencies: dependencies,
                mirrors: held)
            acknowledgement.inMemory = kept & 2 != 0
            acknowledgement.captureMicroseconds = captureMicroseconds
            acknowledgement.logDependencies = logDependencies
            acknowledgement.memoryPartner = memoryPartner.isEmpty ? nil : memoryPartner
            message = .ack(round, acknowledgement)
        case .drained:
            let round = try epoch()
            let storedBytes = try reader.read(UInt64.self)
            let failedMirrors = try mirrors()
            let failed = try reader.read(UInt8.self)
            guard failed <= 1 else { throw WireError("DRAINED with flag \(failed)") }
            message = .drained(round, storedBytes: storedBytes, failure: failed == 1 ? try reader.readString() : nil,
                               failedMirrors: failedMirrors)
        case .snapshotFailed:
            let round = try epoch()
            let failed = try mirrors()
            message = .snapshotFailed(round, reason: try reader.readString(), failedMirrors: failed)
        case .finished:
            message = .finished(step: try step(), loggedBytes: try reader.read(UInt64.self),
                                retainedBytesPeak: try reader.read(UInt64.self), logBytesPeak: try reader.read(UInt64.self),
                                residentBytesPeak: try reader.read(UInt64.self), logSyncs: try reader.read(UInt64.self),
                                logSyncMicroseconds: try reader.read(UInt64.self), restoreMicroseconds: try reader.read(UInt64.self),
                                restoredFrom: try reader.read(UInt8.self))
        case .checkpointWanted: message = .checkpointWanted
        case .faultFired: message = .faultFired(index: Int(try reader.read(UInt32.self)))
        case .replayComplete: message = .replayComplete(deliveries: Int(try reader.read(UInt64.self)))
        case .caughtUp: message = .caughtUp(step: try step())
        case .stopping: message = .stopping(status: try reader.read(Int32.self))
        case .exiting: message = .exiting(status: try reader.read(Int32.self))
        case .memoryReclaimed:
            let bytes = try reader.read(UInt64.self)
            message = .memoryReclaimed(folder: try reader.readString(), bytes: bytes)
        }
        guard reader.isAtEnd else { throw WireError("\(reader.remainingCount) stray bytes after control message") }
        return message
    }

    /// Per-rank sets travel sparse: the count, then only the non-empty ones with their rank, so
    /// a round's ACKs and DONEs carry the channels used, not one set per pair of ranks.
    private static func encode(_ sets: DeliveredSets, into writer: inout ByteWriter) {
        writer.write(UInt32(sets.count))
        let used = sets.used
        writer.write(UInt32(used.count))
        for index in used {
            writer.write(UInt32(index))
            sets[index].encode(into: &writer)
        }
    }

    /// Log records travel as a count, then each record counted.
    private static func encode(_ records: [[UInt8]], into writer: inout ByteWriter) {
        writer.write(UInt32(records.count))
        for record in records { writer.writeCounted(record) }
    }

    private static func decodeRecords(_ reader: inout ByteReader) throws(WireError) -> [[UInt8]] {
        let count = Int(try reader.read(UInt32.self))
        guard count <= reader.remainingCount / 8 else { throw WireError("\(count) log records in \(reader.remainingCount) bytes") }
        var records: [[UInt8]] = []
        records.reserveCapacity(count)
        for _ in 0..<count { records.append(try reader.readCounted()) }
        return records
    }

    /// A dependency vector travels sparse too: the count, then the entries other than -1 (none).
    private static func encodeSparse(_ integers: PerPeer<Int>, into writer: inout ByteWriter) {
        writer.write(UInt32(integers.rankCount))
        let used = integers.used
        writer.write(UInt32(used.count))
        for index in used {
            writer.write(UInt32(index))
            writer.write(Int64(integers[index]))
        }
    }

    private static func decodeSparseIntegers(_ reader: inout ByteReader) throws(WireError) -> PerPeer<Int> {
        let count = Int(try reader.read(UInt32.self))
        guard count <= ranksMax else { throw WireError("control message claims \(count) ranks") }
        let used = Int(try reader.read(UInt32.self))
        guard used <= count, used <= reader.remainingCount / 12 else { throw WireError("control message claims \(used) entries") }
        var integers = PerPeer(rankCount: count, absent: -1)
        var previous = -1
        for _ in 0..<used {
            let index = Int(try reader.read(UInt32.self))
            guard index > previous, index < count else { throw WireError("control message names entry \(index) out of order") }
            previous = index
            integers[index] = Int(try reader.read(Int64.self))
        }
        return integers
    }

    /// The most ranks a per-rank field may claim (a bound on what decoding allocates).
    static let ranksMax = 1 << 20

    private static func decodeSets(_ reader: inout ByteReader) throws(WireError) -> DeliveredSets {
        let count = Int(try reader.read(UInt32.self))
        guard count <= ranksMax else { throw WireError("control message claims \(count) ranks") }
        let used = Int(try reader.read(UInt32.self))
        guard used <= count, used <= reader.remainingCount / 16 else { throw WireError("control message claims \(used) sets") }
        var sets = DeliveredSets(rankCount: count)
        var previous = -1
        for _ in 0..<used {
            let index = Int(try reader.read(UInt32.self))
            guard index > previous, index < count else { throw WireError("control message names set \(index) out of order") }
            previous = index
            sets[index] = try DeliveredSet.decode(from: &reader)
        }
        return sets
    }
}
