#if canImport(Glibc)
import Glibc
#endif
import Foundation
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// The progress engine: control messages, reconnections, the participant's actions, and the
/// poll loop that moves bytes.
extension RankRuntime {
    // MARK: The progress engine

    /// Handles queued control messages. Never called from inside a send, so a message that
    /// releases held sends cannot interleave frames on a socket.
    func serviceControl() throws {
        if rules.flushesAtCheckpoints { try flushLogIfDue() }
        reportLogMirrorFailure()
        reportNondeterminism()
        takeDurableSnapshots()
        while !pendingControl.isEmpty {
            let message = pendingControl.removeFirst()
            switch message {
            case .checkpointRequest(let epoch):
                writer?.roundRequested(epoch: epoch)
                try perform(machine.handleRequest(epoch))
            case .safePointChosen(let epoch, let step):
                try perform(machine.participant.handleSafePointChosen(epoch, step: step))
            case .checkpointDone(let epoch, let covered):
                takeDurableSnapshots()
                try trimLog(before: machine.committed(epoch, coveredByReceiver: covered, coversSelf: true))
                writer?.collectHostGarbage(writing: writeMirrors)
                try perform(machine.participant.handleDone(epoch))
                // This rank's entry in the line: the round, or under minimal checkpoints an
                // older one when it kept its checkpoint.
                writer?.removeOlderMemoryCopies(committed: epoch, entry: machine.participant.committedRound)
                warmNextCaptureBuffer()
            case .cut(let epoch, let covered):
                writeCaptured(epoch, coveredByReceiver: covered)
            case .abort(let epoch):
                if awaitingCut?.snapshot.epoch == epoch { awaitingCut = nil }  // no line will hold it
                if earlyCut?.epoch == epoch { earlyCut = nil }
                if roundCapturing == epoch { roundCapturing = nil }
                writer?.abandonMemoryCopy(epoch: epoch)
                try perform(machine.participant.handleAbort(epoch))
            case .writeMirrors(let mirrors) where !mirrors.isEmpty:
                writeMirrors = mirrors
                do {
                    try log?.write(only: mirrors.mirrors)
                    if log?.failedMirror == nil { logMirrorFailureReported = false }
                } catch {
                    // The mirror is still failing: the log goes on without it, and says so.
                    control?.send(.logMirrorFailed(error.mirror.map { StorageMirrors([$0]) } ?? [], reason: "\(error)"))
                }
            case .release:
                released = true
                control?.markReleased()
            case .peerRestarted(let peer, let peerIncarnationNew):
                try peerRestarted(peer, incarnation: peerIncarnationNew)
            case .freeze:
                try freeze()  // read before START: answered now
            case .thaw:
                machine.thaw()
            case .trim(let checkpoint, let covered):
                try trimLog(before: machine.committed(
                    Epoch(UInt64(max(0, checkpoint))), coveredByReceiver: covered, coversSelf: false))
                writer?.collectHostGarbage(writing: writeMirrors)
            case .collectHostGarbage:
                writer?.collectHostGarbage(writing: writeMirrors)
            case .waitQuery(let serial):
                control?.send(.waitReport(serial: serial, wait(.running)))  // read before START, answered late
            case .signal(let number):
                carryOut(signal: number)  // read before START
            case .peerAddress(let peer, let address):
                notePeerAddress(peer, address)  // read before START
            case .start, .peerAddresses, .writeMirrors, .logMirrorFailed, .heartbeat, .stepReport, .captured, .logEvents, .eventsLogged, .eventRecords, .ack, .snapshotFailed, .finished, .checkpointWanted, .faultFired,
                 .replayComplete, .caughtUp, .frozen, .waitReport, .nondeterminism, .drained, .stopping, .exiting,
                 .memoryReclaimed:
                break  // not for a rank, or already handled
            }
        }
    }

    /// A peer was restarted: what its lost execution sent and this rank has not delivered is
    /// obsolete when it rolled back (re-execution sends it again, perhaps differently); then
    /// this rank reconnects to it.
    func peerRestarted(_ peer: RankID, incarnation peerIncarnationNew: UInt32) throws {
        machine.peerRestarted(peer, incarnation: peerIncarnationNew)
        try reconnect(to: peer, incarnation: peerIncarnationNew)
    }

    /// `FREEZE` (a recovery plans its line): every checkpoint taken is made durable and
    /// acknowledged, nothing more is delivered or taken until `THAW`, and the supervisor gets
    /// the rank's interval and dependencies. Answered from whatever wait the rank is in (it
    /// touches no peer socket), so a recovery never waits on a rank blocked in a send.
    func freeze() throws {
        writer?.drain()
        takeDurableSnapshots()
        // Everything delivered so far reaches the log: this rank loses nothing if it turns out
        // to be an orphan and is restarted.
        if rules.flushesAtCheckpoints { try flushLog() }
        control?.send(machine.freeze())
    }

    /// The message log dropped a mirror whose write failed: tell the supervisor once.
    func reportLogMirrorFailure() {
        guard let log, let failed = log.failedMirror, !logMirrorFailureReported else { return }
        logMirrorFailureReported = true
        guard !log.keptByPartner else {
            // The supervisor's mirrors hold the manifest alone: not theirs to degrade.
            FileHandle.standardError.write(Data(("lifeline: rank \(rank.rawValue)'s message log goes on with one copy until "
                + "the rank restarts: \(failed.error)\n").utf8))
            return
        }
        control?.send(.logMirrorFailed(StorageMirrors([failed.mirror]), reason: "\(failed.error)"))
    }

    /// The snapshots the writer made durable since the last look, told to the participant;
    /// under independent checkpoints, every write that ended, durable or not, schedules the next.
    func takeDurableSnapshots() {
        for outcome in writer?.takeCompleted() ?? [] {
            switch outcome {
            case .durable(let epoch):
                machine.participant.handleSnapshotDurable(epoch)
                machine.independentCheckpointEnded(Int(epoch.rawValue), now: jobClock())
            case .failed(let epoch):
                machine.independentCheckpointEnded(Int(epoch.rawValue), now: jobClock())
            }
        }
    }

    /// A committed checkpoint covers the deliveries it captured: drop them from the log
    /// (`position`: where the log stood at its capture; nil: this rank did not capture it).
    func trimLog(before position: UInt64?) throws {
        guard let position else { return }
        eventLog?.committed(before: position)
        if launch?.keepLogs == true { return }  // kept for `lifeline replay`
        do {
            try log?.trim(before: position)
        } catch {
            if let log, log.keptByPartner { partnerCopyFailed("cannot trim the message log: \(error)") }
            throw LifelineError(.storage, "cannot trim the message log: \(error)")
        }
    }

    /// An injected fault the supervisor cannot deliver to this host's process: SIGKILL or
    /// SIGSTOP, carried out on itself (any other signal is ignored).
    func carryOut(signal number: Int32) {
        guard number == SIGKILL || number == SIGSTOP else { return }
        lifeline_flush_stdio()
        kill(getpid(), number)
    }

    /// Where a restarted peer listens now (the rest of the table holds).
    func notePeerAddress(_ peer: RankID, _ address: RankAddress) {
        guard peer.rawValue < rankCount else { return }
        if peerAddresses.count < rankCount { peerAddresses += Array(repeating: nil, count: rankCount - peerAddresses.count) }
        peerAddresses[peer.rawValue] = address
    }

    /// A peer was restarted alone: make a connection to its new incarnation (the higher rank
    /// connects) and send it again what it may have lost.
    func reconnect(to peer: RankID, incarnation peerIncarnationNew: UInt32) throws {
        guard let launch, peer != rank else { return }
        if rank > peer {
            peers[peer.rawValue]?.close()
            // The restarted peer may die again before it accepts (a fault during its recovery):
            // then the supervisor restarts it once more and says so again; this rank goes on
            // (what it sends meanwhile is retained) instead of failing with it.
            guard let connection = try connectToPeer(peer, launch: launch) else { return }
            peers[peer.rawValue] = connection
            machine.peerConnected(peer, incarnation: peerIncarnationNew, connecting: true)
        }
        while machine.peerIncarnation[peer.rawValue] < peerIncarnationNew {
            try pump(timeoutMs: Self.pollIntervalMs, waiting: .connect(peer))
        }
        try flushResend(to: peer)
    }

    /// Sends a restarted peer every retained message again, before anything new. A write may
    /// wait, and the wait may find the peer restarted once more (or its stream ended): then the
    /// rest is left for the resend that announces, which sends everything again in order — a
    /// message written to the newer process here would overtake the one that failed before it.
    func flushResend(to peer: RankID) throws {
        guard let messages = machine.takeResend(to: peer), !messages.isEmpty else { return }
        let connection = try connection(to: peer)
        for message in messages {
            guard !machine.resendPending[peer.rawValue], peers[peer.rawValue] === connection, !connection.isClosed else { return }
            trace?.sent(message.header, to: peer)
            try deliverOrTransmit(message)
        }
    }

    func perform(_ actions: [CheckpointParticipant.Action]) throws {
        for action in actions {
            switch action {
            case .reportStep(let epoch, let step):
                control?.send(.stepReport(epoch, step: step))
            case .capture:
                preconditionFailure("capture happens only at a safe point")
            case .trimRetained:
                break  // done with the coverage DONE carried
            case .releaseHeldSends:
                for message in machine.takeHeldSends() { try deliverOrTransmit(message) }
            }
        }
    }

    /// What the program's thread waits for while it pumps: what it answers a `waitQuery`.
    enum Waiting {
        /// Nothing: it passes a safe point on its way through the program.
        case running
        /// A message from a rank (nil: any) with a tag.
        case receive(RankID?, tag: Int64)
        /// The round's common safe point.
        case safePoint
        /// The other ranks, at the final barrier.
        case barrier
        /// Room in the socket to a peer.
        case send(RankID)
        /// A peer's connection.
        case connect(RankID)
    }

    /// The answer to a `waitQuery`: the wait with the counts that move with progress.
    func wait(_ waiting: Waiting) -> RankWait {
        switch waiting {
        case .running: machine.wait(.running)
        case .receive(let source, let tag): machine.wait(.receive, peer: source, tag: tag)
        case .safePoint: machine.wait(.safePoint)
        case .barrier: machine.wait(.barrier)
        case .send(let peer): machine.wait(.send, peer: peer)
        case .connect(let peer): machine.wait(.connect, peer: peer)
        }
    }

    /// Waits up to `timeoutMs` for traffic (or for `writable` to drain) and reads everything
    /// that arrived: data into the inbox, control messages into the pending queue, new peer
    /// connections through their handshake. A `waitQuery` is answered at once with `waiting`.
    ///
    /// Connections through shared memory are armed before the wait (a peer that writes then
    /// wakes this rank through the socket; one that finds bytes already there makes the wait a
    /// look) and read after it, whatever woke the rank.
    func pump(timeoutMs: Int32, writable: Int32? = nil, waiting: Waiting) throws {
        var timeoutMs = timeoutMs
        var answerFreeze = false
        var descriptors: [pollfd] = []
        descriptors.reserveCapacity(rankCount + 2)
        if let controlReader { descriptors.append(pollfd(fd: controlReader.fd, events: Int16(POLLIN), revents: 0)) }
        if listener >= 0 { descriptors.append(pollfd(fd: listener, events: Int16(POLLIN), revents: 0)) }
        if let hostListener { descriptors.append(pollfd(fd: hostListener.wakeFD, events: Int16(POLLIN), revents: 0)) }
        let handshaking = acceptor?.descriptors ?? []
        for fd in handshaking { descriptors.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        var ringed = false
        for case let peer? in peers where !peer.isClosed {
            // A ring's room is announced on the socket: it is never waited on for writing.
            let events = peer.fd == writable && !peer.usesRings ? Int16(POLLIN) | Int16(POLLOUT) : Int16(POLLIN)
            descriptors.append(pollfd(fd: peer.fd, events: events, revents: 0))
            if peer.usesRings {
                ringed = true
                if timeoutMs != 0, peer.armBeforeSleep() { timeoutMs = 0 }
            }
        }
        let ready = poll(&descriptors, nfds_t(descriptors.count), timeoutMs)
        if ready < 0, errno != EINTR {
            throw LifelineError(.transport, "poll failed: \(String(cString: strerror(errno)))")
        }
        defer { if let acceptor { reportRefusals(acceptor) } }  // after the reads: see `expire`
        if ringed { try readRings(ready > 0 ? descriptors : []) }
        guard ready > 0 else { return }
        for descriptor in descriptors where descriptor.revents != 0 {
            if let controlReader, descriptor.fd == controlReader.fd {
                let open = try controlReader.readAvailable { frame in
                    guard case .control(let message) = frame else { return }
                    switch message {
                    case .waitQuery(let serial): control?.send(.waitReport(serial: serial, wait(waiting)))
                    case .freeze: answerFreeze = true
                    case .eventsLogged(let through): eventLog?.handleLogged(through: through)  // sends wait for it
                    case .peerAddresses(let table): peerAddresses = table  // before the START or restart it is for
                    case .peerAddress(let peer, let address): notePeerAddress(peer, address)
                    case .signal(let number): carryOut(signal: number)
                    default: pendingControl.append(message)
                    }
                }
                if !open { supervisorGone() }
                if answerFreeze {
                    // A THAW still queued is from the recovery before: the new freeze holds
                    // until the new plan's THAW.
                    answerFreeze = false
                    pendingControl.removeAll { $0 == .thaw }
                    try freeze()
                }
            } else if let hostListener, descriptor.fd == hostListener.wakeFD {
                for (fd, handshake) in hostListener.take() { acceptPeer(fd, handshake) }
            } else if descriptor.fd == listener {
                for (fd, handshake) in acceptor?.acceptAll(now: monotonicSeconds()) ?? [] { acceptPeer(fd, handshake) }
            } else if handshaking.contains(descriptor.fd) {
                if let (fd, handshake) = acceptor?.read(descriptor.fd) { acceptPeer(fd, handshake) }
            } else if let peer = openPeer(descriptor.fd), !peer.usesRings {
                _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                    if case .data(let header, let payload) = frame { machine.arrive(header, payload) }
                }
            }
        }
    }

    /// The open connection on `fd`. A closed one keeps its number, which a newer descriptor
    /// (another peer's connection) may have taken since.
    private func openPeer(_ fd: Int32) -> Connection? {
        peers.first { $0?.fd == fd && $0?.isClosed == false } ?? nil
    }

    /// After a wait: every connection through shared memory is awake again, takes the wake-ups
    /// and the end of the stream its socket holds (`ready`: the polled descriptors), and is read.
    private func readRings(_ ready: [pollfd]) throws {
        for descriptor in ready where descriptor.revents != 0 {
            if let peer = openPeer(descriptor.fd), peer.usesRings { peer.socketReadable() }
        }
        for case let peer? in peers where peer.usesRings && !peer.isClosed {
            peer.disarm()
            _ = try peer.readAvailable(bytesMax: Self.readBytesMaxPerWait) { frame in
                if case .data(let header, let payload) = frame { machine.arrive(header, payload) }
            }
        }
    }

    /// Closes connections whose handshake is late, and says (at most every few seconds, on the
    /// rank's standard error; `final`: now) how many were refused.
    func reportRefusals(_ acceptor: HandshakeAcceptor, final: Bool = false) {
        guard !acceptor.isIdle else { return }  // every wait passes here: no clock read for nothing
        acceptor.expire(now: monotonicSeconds())
        guard let report = acceptor.takeReport(now: monotonicSeconds(), final: final) else { return }
        FileHandle.standardError.write(Data(
            "lifeline: \(rank) refused \(report.count) connection(s): \(report.reasons)\n".utf8))
    }

    /// Takes a peer's connection whose handshake carried the token, if it names another rank
    /// of the job; refuses it otherwise.
    func acceptPeer(_ fd: Int32, _ handshake: Handshake) {
        // The rings a peer on this host passed with its handshake (over TCP there are none).
        let passed = acceptor?.takePassed(fd)
        defer { if let passed { close(passed) } }  // the mapping outlives the descriptor
        guard handshake.role == .peer, (0..<rankCount).contains(handshake.rank.rawValue), handshake.rank != rank else {
            acceptor?.refuse(fd, "a handshake that names no other rank")
            return
        }
        // Fencing: a process of an older incarnation than the supervisor last named (left running
        // on a host that was cut off) never takes its replacement's place.
        let named = handshake.rank.rawValue < peerAddresses.count ? peerAddresses[handshake.rank.rawValue]?.incarnation : nil
        guard handshake.incarnation >= named ?? 0 else {
            acceptor?.refuse(fd, "a handshake from an older incarnation of rank \(handshake.rank.rawValue)")
            return
        }
        var rings: SharedRings?
        if let passed {
            rings = SharedRings.map(passed: passed)
            guard rings != nil else {
                acceptor?.refuse(fd, "a handshake with shared memory that is not a sealed pair of rings")
                return
            }
        }
        peers[handshake.rank.rawValue]?.close()
        machine.peerConnected(handshake.rank, incarnation: handshake.incarnation, connecting: false)
        let connection = Connection(fd: fd, rings: rings, roomSpinSeconds: roomSpinSeconds)
        // Over TCP the acceptor's thread welcomed it when its proof was right.
        if !HostLink.isTCP(fd) { _ = connection.write(head: [UInt8](WelcomeFrame.frame)) { _ in } }
        peers[handshake.rank.rawValue] = connection
    }
}
