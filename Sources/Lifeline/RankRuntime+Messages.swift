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
        checkProbe("send")
        try checkNotFinished("send")
        if let replaySession {  // a replayed rank's sends go nowhere, compared with what was delivered
            replaySession.sent(payload, tag: tag, to: destination.rawValue)
            return
        }
        try awaitEventLog()
        let (outgoing, route, askCheckpoint) = machine.send(payload, to: destination, tag: tag)
        trace?.sent(outgoing.header, to: destination)
        if askCheckpoint { control?.send(.checkpointWanted) }
        switch route {
        case .held: return
        case .afterResend: try flushResend(to: destination)  // the new message is retained too: sent in order
        case .now: try deliverOrTransmit(outgoing)
        }
    }

    /// Sender-based logging's no-orphan rule: nothing leaves before every record this rank
    /// appended is stable (`EventLogClient.sendsMayGo`). Ranks on the supervisor's host never
    /// wait (a record is stable once in the control socket); one that waits for the event
    /// logger's acknowledgement serves its connections meanwhile.
    func awaitEventLog() throws {
        while let eventLog, !eventLog.sendsMayGo {
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .running)
        }
    }

    func deliverOrTransmit(_ message: RankMachine.Outgoing) throws {
        let destination = message.destination
        if destination == rank {
            machine.arrive(message.header, message.payload)
            return
        }
        let connection = try connection(to: destination)
        // The frame's head on the stack: a send allocates nothing of its own.
        try withUnsafeTemporaryAllocation(byteCount: DataHeader.frameHeadByteCount, alignment: 8) { head in
            message.header.storeFrameHead(payloadCount: message.payload.count, into: head)
            // A peer that is gone will be restarted with everyone; the message is retained.
            try connection.write(head: UnsafeRawBufferPointer(head), payload: message.payload) { fd in
                try pump(timeoutMs: Self.pollIntervalMs, writable: fd, waiting: .send(destination))
            }
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

    /// Refuses a call of the program after its `finish()`: the job may have been released.
    func checkNotFinished(_ call: String) throws {
        guard !finished else { throw LifelineError(.usage, "\(call) after finish(): finish() must be the program's last call") }
    }

    /// Receives the next deliverable message with `tag` from `source` (nil: any source).
    func receive(from source: RankID?, tag: Int64) throws -> Message {
        checkProbe("receive")
        try checkNotFinished("receive")
        if let replayed = try replayReceive(source: source, tag: tag) { return replayed }
        replaySession?.logEnded()
        while true {
            try serviceControl()
            if let arrival = machine.take(from: source, tag: tag) {
                if let write = rules.delivery(anySource: source == nil) { try log(write, arrival) }
                return try deliver(arrival.header, arrival.payload, replayed: false)
            }
            guard isLaunched else {
                throw LifelineError(.usage, "receive would wait forever: rank 0 runs alone and no message is queued")
            }
            if try spin(for: source) { continue }
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .receive(source, tag: tag))
        }
    }

    /// How many messages from `source` with `tag` a receive could take now, after reading what
    /// has arrived without waiting. The answer depends on timing: callers log it
    /// (`loggedValue`) so that a replay sees the same.
    func deliverableCount(from source: RankID, tag: Int64) throws -> Int {
        checkProbe("deliverableCount")
        try checkNotFinished("test")
        try serviceControl()
        try pump(timeoutMs: 0, waiting: .receive(source, tag: tag))
        return machine.deliverableCount(from: source, tag: tag)
    }

    /// Receives one message for each (source, tag) of `requests`, in that order, once all have
    /// arrived: with pessimistic logging they go to the log together — one write and one
    /// fdatasync per mirror — before any of them is delivered (group commit that keeps the
    /// guarantee). During a replay each comes from the log as usual.
    func receive(all requests: [(source: RankID, tag: Int64)]) throws -> [Message] {
        checkProbe("receive")
        try checkNotFinished("receive")
        var messages: [Message] = []
        var index = 0
        while index < requests.count, machine.replay != nil {
            let request = requests[index]
            guard let replayed = try replayReceive(source: request.source, tag: request.tag) else { break }
            messages.append(replayed)
            index += 1
        }
        if index < requests.count { replaySession?.logEnded() }
        var taken: [Arrival] = []
        while taken.count < requests.count - index {
            try serviceControl()
            machine.returnObsolete(&taken)
            let request = requests[index + taken.count]
            if let arrival = machine.take(from: request.source, tag: request.tag, besides: taken) {
                taken.append(arrival)
                continue
            }
            guard isLaunched else {
                throw LifelineError(.usage, "receive would wait forever: rank 0 runs alone and no message is queued")
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
        return try messages + taken.map { try deliver($0.header, $0.payload, replayed: false) }
    }

    /// Waiting for a peer while every rank has a core of its own: read its socket a few times
    /// (watch its ring a while) before sleeping in poll(2), so a reply that comes within
    /// microseconds is taken without a sleep and a wake-up. Waiting for any source, the rings
    /// are watched (reading every socket in turn would cost a system call each). With more
    /// ranks than cores, spinning would steal the time of the rank being waited for: the rings
    /// are watched a while longer, with the core yielded between looks (`yieldWatching`), as MPI
    /// libraries do when oversubscribed. True when a message from the source (or any) arrived.
    func spin(for source: RankID?) throws -> Bool {
        guard Self.spinReads > 0 else { return false }
        guard rankCount <= Self.coreCount else { return try yieldWatching(source) }
        guard let source else {
            let ringed = peers.compactMap { $0 }.filter { $0.usesRings && !$0.isClosed }
            return ringed.isEmpty ? false : try spin(forRings: ringed)
        }
        guard let peer = peers[source.rawValue], !peer.isClosed else { return false }
        if peer.usesRings { return try spin(forRing: peer, source: source) }
        if peer.sleepsThroughLargePayloads { return false }
        // The budget starts again whenever bytes came in: a large message arriving in pieces
        // is read as it flows, not slept over between pieces (each sleep a wake-up to pay).
        var budget = Self.spinReads
        var received = peer.receivedBytes
        var arrived = false
        while budget > 0 {
            budget -= 1
            // Whether a message from `source` was queued comes from `arrive` itself: asking the
            // machine after each read (a call into another module on a value this class holds)
            // would copy the whole machine, dozens of retains, on every turn of this loop.
            _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                if case .data(let header, let payload) = frame, machine.arrive(header, payload), header.source == source {
                    arrived = true
                }
            }
            if arrived { return true }
            if peer.sleepsThroughLargePayloads { return false }
            if peer.receivedBytes != received {
                received = peer.receivedBytes
                budget = Self.spinReads
            }
        }
        return false
    }

    /// With more ranks than cores: watches the rings of `source` (nil: every peer's) for up to
    /// `yieldWatchSeconds`, yielding the core between looks (sched_yield(2)), so that the rank
    /// being waited for, if it waits for this core, runs at once instead of after a sleep and a
    /// wake-up of this one. True when a message from `source` (or any) arrived.
    private func yieldWatching(_ source: RankID?) throws -> Bool {
        let rings = source.map { source in peers[source.rawValue].map { [$0] } ?? [] } ?? peers.compactMap { $0 }
        let watched = rings.filter { $0.usesRings && !$0.isClosed }
        guard !watched.isEmpty else { return false }
        let started = monotonicSeconds()
        repeat {
            for peer in watched where peer.hasRingData {
                var arrived = false
                _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                    if case .data(let header, let payload) = frame, machine.arrive(header, payload),
                       source == nil || header.source == source {
                        arrived = true
                    }
                }
                if arrived { return true }
            }
            sched_yield()
        } while monotonicSeconds() - started < Self.yieldWatchSeconds
        return false
    }

    /// `spin` over one peer's ring: watches it (a load, no system call, nothing retained) for
    /// up to `ringSpinSeconds` since the last bytes came, and reads it whenever bytes are there.
    /// True when a message from `source` arrived.
    ///
    /// The clock starts after the first 256 looks find nothing (a reply that is already on its
    /// way costs no clock read), and again after every read that did not bring the message.
    private func spin(forRing peer: Connection, source: RankID) throws -> Bool {
        var lastBytesAt: Double?
        while true {
            for _ in 0..<256 {
                guard peer.hasRingData else { continue }
                var arrived = false
                _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                    if case .data(let header, let payload) = frame, machine.arrive(header, payload), header.source == source {
                        arrived = true
                    }
                }
                if arrived { return true }
                if peer.isClosed { return false }
                lastBytesAt = nil
            }
            guard let since = lastBytesAt else {
                lastBytesAt = monotonicSeconds()
                continue
            }
            if monotonicSeconds() - since > Self.ringSpinSeconds { return false }
        }
    }

    /// `spin` for any source over every peer's ring: as `spin(forRing:source:)`. True when a
    /// message arrived.
    private func spin(forRings rings: [Connection]) throws -> Bool {
        var arrived = false
        var lastBytesAt: Double?  // started lazily, as in `spin(forRing:source:)`
        var turns = 0
        while true {
            var open = false
            for peer in rings where !peer.isClosed {
                open = true
                guard peer.hasRingData else { continue }
                _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                    if case .data(let header, let payload) = frame, machine.arrive(header, payload) { arrived = true }
                }
                if arrived { return true }
                lastBytesAt = nil
            }
            guard open else { return false }
            turns += 1
            guard turns & 255 == 0 else { continue }
            guard let since = lastBytesAt else {
                lastBytesAt = monotonicSeconds()
                continue
            }
            if monotonicSeconds() - since > Self.ringSpinSeconds { return false }
        }
    }

    func deliver(_ header: DataHeader, _ stamped: [UInt8], replayed: Bool) throws -> Message {
        let payload: [UInt8]
        do {
            payload = try machine.deliver(header, stamped)
        } catch {
            throw LifelineError(.transport, "cannot deliver: \(error.description)")
        }
        trace?.delivered(header, replayed: replayed)
        return Message(source: header.source.rawValue, tag: Int(header.tag), bytes: payload)
    }

    /// Appends records to the log and syncs them (one write and one sync per mirror for all)
    /// before the program sees what they record; under sender-based logging, sends them to the
    /// supervisor's event logger instead (in the control socket before the program goes on).
    func appendToLog(_ records: [LogRecord]) throws {
        if var client = eventLog {
            control?.send(client.append(records.map { $0.encoded() }))
            eventLog = client
            logBytesPeak = max(logBytesPeak, client.heldBytesPeak)
            if let launch, launch.logBytesMax > 0, client.heldBytes > launch.logBytesMax / RankMachine.askAtShareOfMaximum,
               machine.askForCheckpoint() {
                control?.send(.checkpointWanted)
            }
            return
        }
        guard let log else { return }
        do {
            let encoded = records.map { $0.encoded() }
            try measureSync { try log.append(encoded) }
        } catch {
            if log.keptByPartner { partnerCopyFailed("cannot write the message log: \(error)") }
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        askIfLogNearsItsMaximum(log)
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
        guard let launch else { return }
        if RankLogging.flushDue(bufferedBytes: pendingLogBytes, sinceFlush: jobClock() - lastLogFlush,
                                flushBytes: launch.logFlushBytes, flushSeconds: Double(launch.logFlushMs) / 1000) {
            try flushLog()
        }
    }

    /// A write of the log that its partner's copy did not take (the partner host lost, or
    /// another one placed as this host's partner since): not the program's failure. What the
    /// write left is on this host; the rank stops with `RuntimeExitStatus.logCopyFailed`, and is
    /// relaunched to replay it, its log written to the partner its host has then. (An
    /// optimistic log goes on without the partner's copy instead: `MessageLog.goesOnAlone`.)
    func partnerCopyFailed(_ what: String) -> Never {
        stopForSupervisor(RuntimeExitStatus.logCopyFailed, rank: rank.rawValue, what, control: control)
    }

    /// Optimistic logging: writes every buffered record now.
    func flushLog() throws {
        lastLogFlush = jobClock()
        guard !pendingLog.isEmpty, let log else { return }
        do {
            try measureSync { try log.append(pendingLog) }
        } catch {
            throw LifelineError(.storage, "cannot write the message log: \(error)")
        }
        pendingLog.removeAll(keepingCapacity: true)
        pendingLogBytes = 0
        askIfLogNearsItsMaximum(log)
    }

    /// Runs a log append as one interval of the host's sync time (`SharedSyncTime`).
    private func measureSync(_ append: () throws -> Void) rethrows {
        guard let syncTime else { return try append() }
        try syncTime.measure(append)
    }

    /// The log passed a quarter of its maximum: a checkpoint that commits trims it, so the
    /// rank asks for one (once, until the next round) rather than growing without bound.
    private func askIfLogNearsItsMaximum(_ log: MessageLog) {
        logBytesPeak = max(logBytesPeak, log.fileBytes)
        guard let launch, launch.logBytesMax > 0, log.fileBytes > launch.logBytesMax / RankMachine.askAtShareOfMaximum,
              machine.askForCheckpoint() else { return }
        control?.send(.checkpointWanted)
    }

    /// The process's peak resident memory (VmHWM), or 0 where /proc does not say.
    static func residentBytesPeak() -> UInt64 {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = UInt64(line.split(separator: " ").dropFirst().first { !$0.isEmpty } ?? "")
        else { return 0 }
        return kib * 1024
    }

    /// A value read from outside the messages, logged (with logging) so replay returns it again.
    func loggedValue(_ produce: () throws -> [UInt8]) throws -> [UInt8] {
        checkProbe("loggedValue")
        if machine.replay != nil {
            let replayed: [UInt8]?
            do {
                replayed = try machine.replayValue()
            } catch {
                replaySession?.diverged("the program read a logged value where the log holds a delivery (\(error))")
                throw LifelineError(.usage, "\(error)")
            }
            if let replayed {
                machine.noteLoggedValue()
                if machine.replayExhausted { finishReplay() }
                return replayed
            }
            finishReplay()
        }
        replaySession?.logEnded()
        let bytes = try produce()
        machine.noteLoggedValue()
        switch rules.value {
        case .synchronously?: try appendToLog([.value(bytes)])
        case .buffered?: try bufferLog(.value(bytes))
        case nil: break
        }
        return bytes
    }

    /// During replay: the message this receive returned before the crash; nil when live.
    func replayReceive(source: RankID?, tag: Int64) throws -> Message? {
        guard machine.replay != nil else { return nil }
        let next = machine.replayReceive(source: source, tag: tag)
        defer { if machine.replay != nil, machine.replayExhausted { finishReplay() } }
        switch next {
        case .deliver(let header, let payload):
            return try deliver(header, payload, replayed: true)
        case .await(let header):
            replaySession?.logEnded()  // a determinant: its payload is not in this log
            while true {
                try serviceControl()
                if let arrival = machine.takeReplayed(header) {
                    return try deliver(arrival.header, arrival.payload, replayed: true)
                }
                try pump(timeoutMs: Self.pollIntervalMs, waiting: .receive(header.source, tag: header.tag))
            }
        case .live:
            return nil
        case .exhausted:
            finishReplay()
            return nil
        case .diverged(let expected):
            replaySession?.diverged(
                "the program asked for tag \(tag) from \(source.map { "\($0)" } ?? "any rank") where the log holds \(expected)")
            throw LifelineError(.usage,
                "replay diverged: the program asked for tag \(tag) from \(source.map { "\($0)" } ?? "any rank") where before the crash it made \(expected); it is not piecewise deterministic")
        }
    }

    /// The replay is over (its log answered every receive it held): the rank runs live, and the
    /// supervisor learns how many receives the log answered.
    func finishReplay() {
        let replayed = machine.replay?.deliveriesReplayed ?? 0
        machine.endReplay()
        control?.send(.replayComplete(deliveries: replayed))
    }

    /// The hash a delivery is remembered by.
    static func fingerprint(_ payload: [UInt8]) -> UInt64 {
        payload.withUnsafeBytes { ContentHash(of: $0).low }
    }

    /// A duplicate arrived with other bytes than the copy delivered: the supervisor is told
    /// (once) and the rank says so on its standard error.
    func reportNondeterminism() {
        guard let found = machine.takeNondeterminism() else { return }
        FileHandle.standardError.write(Data(
            "lifeline: \(rank) got message \(found.sequence.rawValue) from \(found.source) again with other bytes: the program is not deterministic\n".utf8))
        control?.send(.nondeterminism(source: found.source, sequence: found.sequence))
    }
}
