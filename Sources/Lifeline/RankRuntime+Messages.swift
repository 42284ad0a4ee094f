#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// Point to point: sends, receives (live and replayed), the message log and logged values.
extension RankRuntime {
    // MARK: Point to point

    /// Stamps, retains and sends a message (or holds it, between capture and DONE when blocking).
    func send(_ payload: [UInt8], to destination: RankID, tag: Int64) throws {
        precondition(!finished, "send after finish()")
        // Under independent checkpointing a message carries its sender's checkpoint interval.
        let stamp = independent ? Epoch(UInt64(interval)) : participant.epoch
        // Under optimistic logging a message carries its sender's dependency vector in front.
        let payload = rules.tracksDependencies ? OptimisticLogging.stamp(payload, with: dependencyVector) : payload
        let header = ledger.send(to: destination, tag: tag, epoch: stamp, incarnation: incarnation, payload: payload)
        sends += 1
        trace?.sent(header, to: destination)
        retainedBytesPeak = max(retainedBytesPeak, ledger.retainedBytes)
        if let launch, launch.retainedBytesMax > 0, ledger.retainedBytes > launch.retainedBytesMax / Self.askAtShareOfMaximum {
            askForCheckpoint()
        }
        if participant.holdsSends {
            heldSends.append((destination, header, payload))
            return
        }
        if resendPending[destination.rawValue] {
            try flushResend(to: destination)  // the new message is retained too: sent in order
            return
        }
        try deliverOrTransmit(destination, header, payload)
    }

    func deliverOrTransmit(_ destination: RankID, _ header: DataHeader, _ payload: [UInt8]) throws {
        if destination == rank {
            inbox[rank.rawValue].append(Arrival(header: header, payload: payload))
            return
        }
        let connection = try connection(to: destination)
        var head = ByteWriter(capacity: FramePrefix.byteCount + DataHeader.byteCount)
        FramePrefix(kind: .data, bodyLength: UInt64(DataHeader.byteCount + payload.count)).encode(into: &head)
        header.encode(into: &head)
        // A peer that is gone will be restarted with everyone; the message is retained.
        try connection.write(head: head.bytes, payload: payload) { fd in
            try pump(timeoutMs: Self.pollIntervalMs, writable: fd, waiting: .send(destination))
        }
    }

    /// The connection to `destination`, waiting for it when there is none: a higher rank that
    /// has not connected yet, or a lower one that died and whose restart the supervisor
    /// announces (`peerRestarted`, taken out of the queue here: this rank connects to it).
    func connection(to destination: RankID) throws -> Connection {
        while true {
            if let connection = peers[destination.rawValue] { return connection }
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .connect(destination))
            if destination < rank, let index = pendingControl.firstIndex(where: {
                if case .peerRestarted(destination, _) = $0 { true } else { false }
            }), case .peerRestarted(_, let incarnation) = pendingControl.remove(at: index) {
                try peerRestarted(destination, incarnation: incarnation)
            }
        }
    }

    /// Receives the next deliverable message with `tag` from `source` (nil: any source).
    func receive(from source: RankID?, tag: Int64) throws -> Message {
        precondition(!finished, "receive after finish()")
        if let replayed = try replayReceive(source: source, tag: tag) { return replayed }
        while true {
            try serviceControl()
            if let arrival = takeArrival(from: source, tag: tag) {
                if let write = rules.delivery(anySource: source == nil) { try log(write, arrival) }
                return deliver(arrival.header, arrival.payload, replayed: false)
            }
            guard launch != nil else {
                throw LifelineError(.usage, "receive would wait forever: rank 0 runs alone and no message is queued")
            }
            if let source, try spin(for: source) { continue }
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .receive(source, tag: tag))
        }
    }

    /// Receives one message for each (source, tag) of `requests`, in that order, once all have
    /// arrived: with pessimistic logging they go to the log together — one write and one
    /// fdatasync per mirror — before any of them is delivered (group commit that keeps the
    /// guarantee). During a replay each comes from the log as usual.
    func receive(all requests: [(source: RankID, tag: Int64)]) throws -> [Message] {
        precondition(!finished, "receive after finish()")
        var messages: [Message] = []
        var index = 0
        while index < requests.count, replay != nil {
            let request = requests[index]
            guard let replayed = try replayReceive(source: request.source, tag: request.tag) else { break }
            messages.append(replayed)
            index += 1
        }
        var taken: [Arrival] = []
        while taken.count < requests.count - index {
            try serviceControl()
            returnObsolete(&taken)
            let request = requests[index + taken.count]
            if let arrival = takeArrival(from: request.source, tag: request.tag) {
                taken.append(arrival)
                continue
            }
            if try spin(for: request.source) { continue }
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .receive(request.source, tag: request.tag))
        }
        switch rules.delivery(anySource: false) {
        case .synchronously(let kind)?:
            try appendToLog(taken.map { Self.record(kind, $0) })  // one write and one sync for all
        case .buffered(let kind)?:
            for arrival in taken { try bufferLog(Self.record(kind, arrival)) }
        case nil:
            break  // named sources: no determinant
        }
        return messages + taken.map { deliver($0.header, $0.payload, replayed: false) }
    }

    /// Waiting for a named peer while every rank has a core of its own: read its socket a few
    /// times before sleeping in poll(2), so a reply that comes within microseconds is taken
    /// without a sleep and a wake-up. With more ranks than cores, spinning would steal the time
    /// of the rank being waited for, so the runtime sleeps at once.
    func spin(for source: RankID) throws -> Bool {
        guard Self.spinReads > 0, rankCount <= Self.coreCount, let peer = peers[source.rawValue], !peer.isClosed else {
            return false
        }
        let before = inbox[source.rawValue].count
        for _ in 0..<Self.spinReads {
            _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                if case .data(let header, let payload) = frame { arrive(header, payload) }
            }
            if inbox[source.rawValue].count != before { return true }
        }
        return false
    }

    func deliver(_ header: DataHeader, _ stamped: [UInt8], replayed: Bool) -> Message {
        ledger.recordDelivery(source: header.source, sequence: header.sequence)
        deliveries += 1
        participant.noteChange()
        var payload = stamped
        if rules.tracksDependencies, let (sender, bytes) = OptimisticLogging.split(stamped, rankCount: rankCount) {
            dependencyVector = OptimisticLogging.afterDelivery(dependencyVector, of: rank, sender: sender)
            payload = bytes
        }
        fingerprints.record(
            source: header.source, sequence: header.sequence, hash: Self.fingerprint(payload),
            epoch: independent ? UInt64(interval) : participant.epoch.rawValue)
        if independent {
            let source = header.source.rawValue
            intervalDependencies[source] = max(intervalDependencies[source], Int(header.epoch.rawValue))
        }
        trace?.delivered(header, replayed: replayed)
        return Message(source: header.source.rawValue, tag: Int(header.tag), bytes: payload)
    }

    /// Appends records to the log and syncs them (one write and one sync per mirror for all)
    /// before the program sees what they record.
    func appendToLog(_ records: [LogRecord]) throws {
        guard let log else { return }
        do {
            try log.append(records.map { $0.encoded() })
        } catch {
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        logBytesPeak = max(logBytesPeak, log.fileBytes)
        if let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / Self.askAtShareOfMaximum { askForCheckpoint() }
    }

    /// Logs a delivery as the logging mode's rules say.
    private func log(_ write: RankLogging.Write, _ arrival: Arrival) throws {
        switch write {
        case .synchronously(let kind): try appendToLog([Self.record(kind, arrival)])
        case .buffered(let kind): try bufferLog(Self.record(kind, arrival))
        }
    }

    /// The log record of kind `kind` for a delivery.
    static func record(_ kind: RankLogging.Record, _ arrival: Arrival) -> LogRecord {
        switch kind {
        case .delivery: .delivery(arrival.header, payload: arrival.payload)
        case .determinant: .determinant(arrival.header)
        case .value: preconditionFailure("RankLogging never logs a delivery as a value")
        }
    }

    /// Optimistic logging: keeps a record in memory; the log gets it at the next flush.
    func bufferLog(_ record: LogRecord) throws {
        let bytes = record.encoded()
        pendingLog.append(bytes)
        pendingLogBytes += bytes.count
        try flushLogIfDue()
    }

    /// Optimistic logging: writes the buffered records (one write and one fdatasync per mirror
    /// for all of them) once the flush delay or size is reached.
    func flushLogIfDue() throws {
        guard !pendingLog.isEmpty, let launch else { return }
        let due = pendingLogBytes >= launch.logFlushBytes || jobClock() - lastLogFlush >= Double(launch.logFlushMs) / 1000
        if due { try flushLog() }
    }

    /// Optimistic logging: writes every buffered record now.
    func flushLog() throws {
        lastLogFlush = jobClock()
        guard !pendingLog.isEmpty, let log else { return }
        do {
            try log.append(pendingLog)
        } catch {
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        pendingLog.removeAll(keepingCapacity: true)
        pendingLogBytes = 0
        logBytesPeak = max(logBytesPeak, log.fileBytes)
        if let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / Self.askAtShareOfMaximum { askForCheckpoint() }
    }

    /// The process's peak resident memory (VmHWM), or 0 where /proc does not say.
    static func residentBytesPeak() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = UInt64(line.split(separator: " ").dropFirst().first { !$0.isEmpty } ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// A rank asks for a checkpoint when its retained messages or its log pass this fraction
    /// (1/N) of their maximum, so that the round commits and trims them before they reach it.
    static let askAtShareOfMaximum = 4

    /// Retention or the log neared its maximum: a checkpoint that commits trims both, so the
    /// rank asks for one (once, until the next round) rather than growing without bound.
    func askForCheckpoint() {
        guard !checkpointAsked else { return }
        checkpointAsked = true
        control?.send(.checkpointWanted)
    }

    /// A value read from outside the messages, logged (with logging) so replay returns it again.
    func loggedValue(_ produce: () -> [UInt8]) throws -> [UInt8] {
        participant.noteChange()
        if var queue = replay {
            let next = queue.nextValue()
            replay = queue
            switch next {
            case .success(let bytes?):
                if rules.tracksDependencies { dependencyVector[rank.rawValue] += 1 }
                if queue.remainingCount == 0 { finishReplay() }
                return bytes
            case .success(nil):
                finishReplay()
            case .failure(let error):
                throw LifelineError(.usage, "\(error)")
            }
        }
        let bytes = produce()
        if rules.tracksDependencies { dependencyVector[rank.rawValue] += 1 }
        switch rules.value {
        case .synchronously?: try appendToLog([.value(bytes)])
        case .buffered?: try bufferLog(.value(bytes))
        case nil: break
        }
        return bytes
    }

    /// During replay: the message this receive returned before the crash; nil when live.
    func replayReceive(source: RankID?, tag: Int64) throws -> Message? {
        guard var queue = replay else { return nil }
        let next = queue.nextReceive(source: source, tag: tag)
        replay = queue
        defer { if replay != nil, queue.remainingCount == 0 { finishReplay() } }
        switch next {
        case .deliver(let header, let payload):
            return deliver(header, payload, replayed: true)
        case .await(let header):
            while true {
                try serviceControl()
                if let index = inbox[header.source.rawValue].firstIndex(where: { $0.header.sequence == header.sequence }) {
                    let arrival = inbox[header.source.rawValue].remove(at: index)
                    return deliver(arrival.header, arrival.payload, replayed: true)
                }
                try pump(timeoutMs: Self.pollIntervalMs, waiting: .receive(header.source, tag: header.tag))
            }
        case .live:
            return nil
        case .exhausted:
            finishReplay()
            return nil
        case .diverged(let expected):
            throw LifelineError(.usage,
                "replay diverged: the program asked for tag \(tag) from \(source.map { "\($0)" } ?? "any rank") where before the crash it made \(expected); it is not piecewise deterministic")
        }
    }

    func finishReplay() {
        replay = nil
        control?.send(.replayComplete(deliveries: Int(ledger.delivered.reduce(0) { $0 + $1.count })))
    }

    func takeArrival(from source: RankID?, tag: Int64) -> Arrival? {
        if frozen { return nil }
        if let source { return takeArrival(fromSource: source.rawValue, tag: tag) }
        for offset in 0..<rankCount {
            let candidate = (anySourceCursor + offset) % rankCount
            if let arrival = takeArrival(fromSource: candidate, tag: tag) {
                anySourceCursor = (candidate + 1) % rankCount
                return arrival
            }
        }
        return nil
    }

    /// The first message of the channel with `tag` that may be delivered. Epochs never decrease
    /// along a channel, so once one message is held back for its epoch, the rest are too.
    func takeArrival(fromSource source: Int, tag: Int64) -> Arrival? {
        var index = 0
        while index < inbox[source].count {
            let header = inbox[source][index].header
            if ledger.isDuplicate(source: header.source, sequence: header.sequence) {
                let duplicate = inbox[source].remove(at: index)
                checkDuplicate(duplicate.header, duplicate.payload)
                continue
            }
            guard participant.mayDeliver(messageEpoch: header.epoch) else { return nil }
            if header.tag == tag { return inbox[source].remove(at: index) }
            index += 1
        }
        return nil
    }

    /// The hash a delivery is remembered by.
    static func fingerprint(_ payload: [UInt8]) -> UInt64 {
        payload.withUnsafeBytes { ContentHash(of: $0).low }
    }

    /// A message delivered before arrived again: its bytes must be the ones delivered. If not,
    /// the supervisor is told (once) and the rank says so on its standard error.
    func checkDuplicate(_ header: DataHeader, _ stamped: [UInt8]) {
        guard !nondeterminismReported else { return }
        let payload = rules.tracksDependencies ? OptimisticLogging.split(stamped, rankCount: rankCount)?.payload ?? stamped : stamped
        guard fingerprints.differs(source: header.source, sequence: header.sequence, hash: Self.fingerprint(payload)) else { return }
        nondeterminismReported = true
        FileHandle.standardError.write(Data(
            "lifeline: \(rank) got message \(header.sequence.rawValue) from \(header.source) again with other bytes: the program is not deterministic\n".utf8))
        control?.send(.nondeterminism(source: header.source, sequence: header.sequence))
    }

    /// Arrivals taken for a `receive(all:)` that a peer's rollback made obsolete (announced
    /// meanwhile) are dropped, and those taken after them go back to the front of their inbox,
    /// in order, to be taken again.
    func returnObsolete(_ taken: inout [Arrival]) {
        guard let first = taken.firstIndex(where: { isObsolete($0.header) }) else { return }
        let kept = taken[first...].filter { !isObsolete($0.header) }
        taken.removeSubrange(first...)
        for arrival in kept.reversed() { inbox[arrival.header.source.rawValue].insert(arrival, at: 0) }
    }
}
