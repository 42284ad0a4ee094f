/// A rank's decisions about its messages, apart from its I/O: how a send is stamped and
/// whether it leaves now, is held (blocking checkpoints) or waits behind a restarted peer's
/// resend; which arrival is obsolete, a duplicate (and whether its bytes differ from the
/// delivered copy: nondeterminism) or kept; which kept message a receive may take (not while
/// frozen, not before the round its epoch names); what a delivery changes (delivered sets, the
/// optimistic dependency vector, the independent interval's dependencies); what a replay
/// returns; what a commit or a trim drops; what a freeze answers.
///
/// The runtime's `RankRuntime` calls it from the program's thread and does the I/O: sockets,
/// the message log, the snapshot writer, the control connection. A simulator can drive the
/// same machine with a virtual network. What differs between the logging modes is asked of
/// `rules` (`RankLogging`), the one switch over them.
///
/// | event | decision |
/// |---|---|
/// | send | stamp (epoch or interval; optimistic: dependency vector in front), retain; held between capture and DONE (blocking), behind the resend to a restarted peer, else sent |
/// | arrival | obsolete (from an incarnation a peer's rollback undid): dropped; delivered before: dropped, its bytes compared; else kept in arrival order |
/// | receive | the first kept message of the channel with the tag whose epoch may be delivered; any source: the channels in turn |
/// | peer restarted | its obsolete arrivals dropped (independent, optimistic); its retained messages sent again first |
/// | connection to a peer lost | its retained messages sent again first once reconnected (the peer drops duplicates) |
/// | DONE / TRIM | retained messages the receivers' committed checkpoints cover dropped; the log trimmed to the capture |
/// | FREEZE | nothing delivered until THAW; answered with the interval and its dependencies |
package struct RankMachine: Sendable {
    /// Who the rank is and what the job asks of it.
    package struct Settings: Sendable, Equatable {
        /// The rank.
        package var rank: RankID
        /// The number of ranks.
        package var rankCount: Int
        /// Its incarnation.
        package var incarnation: UInt32
        /// The checkpoint scheme.
        package var variant: CheckpointVariant
        /// The logging mode.
        package var logging: LoggingMode
        /// `--retained-max` (0: none): past a quarter of it the rank asks for a checkpoint.
        package var retainedBytesMax: Int
        /// Independent checkpoints: the mean seconds between two of the rank's checkpoints (0: none).
        package var intervalSeconds: Double

        /// Settings with every field given.
        package init(rank: RankID, rankCount: Int, incarnation: UInt32, variant: CheckpointVariant, logging: LoggingMode,
                     retainedBytesMax: Int = 0, intervalSeconds: Double = 0) {
            self.rank = rank
            self.rankCount = rankCount
            self.incarnation = incarnation
            self.variant = variant
            self.logging = logging
            self.retainedBytesMax = retainedBytesMax
            self.intervalSeconds = intervalSeconds
        }
    }

    /// Where a rank begins: its restored snapshot's parts, or the start of the job.
    package struct Restored: Sendable {
        /// The round (or independent checkpoint) of the snapshot.
        package var epoch: Epoch
        /// The safe point it was taken at.
        package var step: Int
        /// Its ledger: delivered sets and retained messages.
        package var ledger: MessageLedger
        /// Optimistic logging: its dependency vector (empty otherwise).
        package var dependencies: DependencyVector
        /// Whether the snapshot is the rank's own; false when a resize rebuilt the rank from the
        /// states of the ranks that wrote the line (its ledger and dependencies then start empty).
        package var ownSnapshot: Bool

        /// A restored snapshot's parts.
        package init(epoch: Epoch, step: Int, ledger: MessageLedger, dependencies: DependencyVector, ownSnapshot: Bool = true) {
            self.epoch = epoch
            self.step = step
            self.ledger = ledger
            self.dependencies = dependencies
            self.ownSnapshot = ownSnapshot
        }
    }

    /// A message that arrived and waits to be received.
    package struct Arrival: Sendable, Equatable {
        /// Its header.
        package var header: DataHeader
        /// Its payload as sent (optimistic logging: the sender's dependency vector in front).
        package var payload: [UInt8]

        /// An arrival.
        package init(header: DataHeader, payload: [UInt8]) {
            self.header = header
            self.payload = payload
        }
    }

    /// A message to put on the wire (or in this rank's own inbox).
    package struct Outgoing: Sendable, Equatable {
        /// Where it goes.
        package var destination: RankID
        /// Its header.
        package var header: DataHeader
        /// Its payload as stamped.
        package var payload: [UInt8]
    }

    /// What becomes of a send.
    package enum SendRoute: Sendable, Equatable {
        /// Transmit it now.
        case now
        /// Blocking checkpoints: held until DONE (`takeHeldSends`).
        case held
        /// The destination restarted: its retained messages, this one last, go first (`takeResend`).
        case afterResend
    }

    /// What a replayed receive does.
    package enum ReplayStep: Sendable, Equatable {
        /// Return this message, delivered now.
        case deliver(DataHeader, [UInt8])
        /// Wait for this message to arrive again, then take it (`takeReplayed`).
        case await(DataHeader)
        /// Receive this one live (sender-based logging: a named source is deterministic); the
        /// replay goes on.
        case live
        /// Not replaying, or nothing left to replay: receive live from now on (`endReplay`).
        case exhausted
        /// The program asked for something else than it did before the crash.
        case diverged(expected: String)
    }

    /// A duplicate whose bytes differ from those delivered: the sender did not re-execute the
    /// same way (said once).
    package struct Nondeterminism: Sendable, Equatable {
        /// The sender.
        package var source: RankID
        /// The message's position on its channel.
        package var sequence: SequenceNumber
    }

    /// The rank and its job.
    package let settings: Settings
    /// What the logging mode asks of this rank.
    package let rules: RankLogging
    /// Delivered sets, next sequence numbers and retained messages.
    package private(set) var ledger: MessageLedger
    /// The rank's side of the checkpoint rounds.
    package var participant: CheckpointParticipant
    /// Messages kept per source, in arrival order.
    package private(set) var inbox: PerPeer<[Arrival]>

    /// Blocking checkpoints: sends held between capture and DONE.
    package private(set) var heldSends: [Outgoing] = []
    /// Independent checkpoints: the interval the rank is in (its checkpoints so far, counting
    /// the one it was restored from); messages carry it.
    package private(set) var interval = 0
    /// Independent checkpoints: per sender, the newest interval of it delivered from in the
    /// current interval (-1: none): the interval's dependency vector.
    package private(set) var intervalDependencies: PerPeer<Int>
    /// Independent checkpoints: when (job clock) the next checkpoint is due; never while one
    /// is being written.
    package private(set) var nextCheckpointAt = Double.infinity
    /// Independent checkpoints: the checkpoint being written and the period drawn to follow it,
    /// which starts when the write ends (`independentCheckpointEnded`).
    private var independentWrite: (index: Int, period: Double)?
    /// Optimistic logging: the rank's dependency vector, stamped on every message it sends.
    package private(set) var dependencyVector = DependencyVector()
    /// Frozen for a recovery's planning: nothing is delivered until THAW.
    package private(set) var frozen = false
    /// Per peer, the incarnation its messages must come from at least (set when it rolls back:
    /// what its lost execution sent is obsolete).
    package private(set) var obsoleteBelow: PerPeer<UInt32>
    /// The incarnation of each peer's current connection.
    package private(set) var peerIncarnation: PerPeer<UInt32>
    /// Peers restarted (or whose connection dropped) that must get this rank's retained
    /// messages again before anything new.
    package private(set) var resendPending: PerPeer<Bool>
    /// Records to replay after a restart, in their logged order; nil when live.
    package private(set) var replay: ReplayQueue?
    /// The log position when the rank captured each open round (or checkpoint).
    package private(set) var logPositionAtCapture: [(epoch: Epoch, position: UInt64)] = []
    /// Messages this incarnation sent (what a `waitReport` shows moving).
    package private(set) var sends: UInt64 = 0
    /// Messages that arrived at this incarnation and were kept (not duplicates, not obsolete).
    package private(set) var arrivals: UInt64 = 0
    /// Messages this incarnation delivered.
    package private(set) var deliveries: UInt64 = 0
    /// The most bytes retained at once.
    package private(set) var retainedBytesPeak = 0
    /// The rank asked for a checkpoint that has not started yet.
    package private(set) var checkpointAsked = false
    private var fingerprints: DeliveryFingerprints
    private let fingerprint: @Sendable ([UInt8]) -> UInt64
    private var nondeterminism: Nondeterminism?
    private var nondeterminismFound = false
    private var anySourceCursor = 0
    private var periodGenerator: SplitMix64

    /// The machine of a rank beginning at `restored` (nil: the start), replaying `replay` when
    /// it restarts alone. `deliverableEpoch`: the newest round started before its launch (from
    /// START). `fingerprint` hashes a payload, to tell a duplicate with other bytes.
    package init(settings: Settings, restored: Restored?, deliverableEpoch: Epoch?, replay: ReplayQueue?, now: Double,
                 fingerprint: @escaping @Sendable ([UInt8]) -> UInt64) {
        let count = settings.rankCount
        self.settings = settings
        self.rules = RankLogging(mode: settings.logging, independent: settings.variant == .independent)
        self.ledger = restored?.ledger ?? MessageLedger(rank: settings.rank, rankCount: count)
        self.participant = CheckpointParticipant(
            variant: settings.variant, epoch: restored?.epoch ?? .start, stepPassed: restored?.step ?? -1,
            deliverableEpoch: deliverableEpoch, hasOwnCheckpoint: restored?.ownSnapshot ?? true)
        self.inbox = PerPeer(rankCount: count, absent: [])
        self.intervalDependencies = PerPeer(rankCount: count, absent: -1)
        // Only optimistic logging keeps a dependency vector (it travels on every message).
        if settings.logging == .optimistic { self.dependencyVector = restored?.dependencies ?? DependencyVector() }
        self.obsoleteBelow = PerPeer(rankCount: count, absent: 0)
        self.peerIncarnation = PerPeer(rankCount: count, absent: settings.incarnation)
        self.resendPending = PerPeer(rankCount: count, absent: false)
        self.replay = replay
        self.fingerprints = DeliveryFingerprints(rankCount: count)
        self.fingerprint = fingerprint
        self.periodGenerator = SplitMix64(seed: UInt64(settings.rank.rawValue) << 32 | UInt64(settings.incarnation))
        if settings.variant == .independent, settings.intervalSeconds > 0 {
            interval = Int(restored?.epoch.rawValue ?? 0)
            nextCheckpointAt = now + nextPeriod()
        }
    }

    private var rank: RankID { settings.rank }
    private var independent: Bool { settings.variant == .independent }

    // MARK: Sending

    /// Stamps and retains a message to `destination`, and says whether it leaves now.
    /// `askCheckpoint`: retention passed a quarter of its maximum (said once per round).
    package mutating func send(_ payload: [UInt8], to destination: RankID, tag: Int64)
        -> (outgoing: Outgoing, route: SendRoute, askCheckpoint: Bool)
    {
        // Under independent checkpointing a message carries its sender's checkpoint interval.
        let stamp = independent ? Epoch(UInt64(interval)) : participant.epoch
        let stamped = rules.tracksDependencies ? OptimisticLogging.stamp(payload, with: dependencyVector) : payload
        let header = ledger.send(to: destination, tag: tag, epoch: stamp, incarnation: settings.incarnation, payload: stamped)
        sends += 1
        retainedBytesPeak = max(retainedBytesPeak, ledger.retainedBytes)
        let outgoing = Outgoing(destination: destination, header: header, payload: stamped)
        let ask = settings.retainedBytesMax > 0 && ledger.retainedBytes > settings.retainedBytesMax / Self.askAtShareOfMaximum
            && askForCheckpoint()
        if participant.holdsSends {
            heldSends.append(outgoing)
            return (outgoing, .held, ask)
        }
        return (outgoing, resendPending[destination.rawValue] ? .afterResend : .now, ask)
    }

    /// A rank asks for a checkpoint when its retained messages or its log pass this fraction
    /// (1/N) of their maximum, so that the round commits and trims them before they reach it.
    package static let askAtShareOfMaximum = 4

    /// Whether to ask the supervisor for a checkpoint now: once, until the next round starts.
    package mutating func askForCheckpoint() -> Bool {
        guard !checkpointAsked else { return false }
        checkpointAsked = true
        return true
    }

    /// The sends held since the capture (blocking checkpoints), to transmit now, in order. To
    /// a peer whose resend is pending (it restarted, or the connection to it dropped, while the
    /// sends were held) the whole resend goes instead: it holds the held sends too (they are
    /// retained), and a held send must not overtake the messages before it on its channel.
    package mutating func takeHeldSends() -> [Outgoing] {
        defer { heldSends.removeAll() }
        var outgoing: [Outgoing] = []
        var resent: Set<Int> = []
        for message in heldSends {
            let destination = message.destination.rawValue
            if resendPending[destination], let again = takeResend(to: message.destination) {
                resent.insert(destination)
                outgoing += again
            } else if !resent.contains(destination) {
                outgoing.append(message)
            }
        }
        return outgoing
    }

    /// A peer's new incarnation connected (`connecting`: this rank made the connection to a
    /// restarted peer; else the peer connected to this rank): what this rank retains for it
    /// goes again before anything new.
    package mutating func peerConnected(_ peer: RankID, incarnation: UInt32, connecting: Bool) {
        guard connecting || incarnation > peerIncarnation[peer.rawValue] else { return }
        peerIncarnation[peer.rawValue] = incarnation
        resendPending[peer.rawValue] = true
    }

    /// The connection to `peer` dropped (a link failure, not a restart: both processes live
    /// on). Whatever was in flight on it is lost, and every message not yet delivered is still
    /// retained, so what this rank retains for `peer` goes again, before anything new, once
    /// they are connected again; `peer` drops the copies it had (`arrive`, `take`).
    package mutating func connectionLost(to peer: RankID) {
        resendPending[peer.rawValue] = true
    }

    /// The messages retained for `peer`, to send again before anything new, when it restarted
    /// or the connection to it dropped since they were last sent; nil otherwise. Each goes out
    /// stamped with this incarnation, as after a restore (`retainedOutgoing`): one retained from
    /// the restored snapshot belongs to this process's state, and a peer that knows this rank
    /// rolled back (a partial rollback, an optimistic orphan) must not drop it as obsolete, or
    /// its channel would skip it (`lifeline simulate --ranks 45 --seed 61047205 --checkpoint
    /// independent --steps 40 --faults all`: a dropped connection's resend was dropped so).
    package mutating func takeResend(to peer: RankID) -> [Outgoing]? {
        guard resendPending[peer.rawValue] else { return nil }
        resendPending[peer.rawValue] = false
        return ledger.retained[peer.rawValue].map { message in
            var header = message.header
            header.incarnation = settings.incarnation
            return Outgoing(destination: peer, header: header, payload: message.payload)
        }
    }

    /// Every retained message, to send again after a restore: receivers drop what they had.
    /// Each goes out stamped with this incarnation: it belongs to the restored state, and a
    /// receiver that drops what this rank's earlier incarnations sent (their execution past the
    /// restore point is undone: independent checkpoints, optimistic orphans) must not drop it
    /// with them, or the channel would skip it and deliver the next message in its place.
    package var retainedOutgoing: [Outgoing] {
        ledger.retained.used.flatMap { destination in
            ledger.retained[destination].map { message in
                var header = message.header
                header.incarnation = settings.incarnation
                return Outgoing(destination: RankID(destination), header: header, payload: message.payload)
            }
        }
    }

    // MARK: Arrivals and receives

    /// A message arrived: kept, unless it is obsolete or a duplicate. False when dropped.
    @discardableResult
    package mutating func arrive(_ header: DataHeader, _ payload: [UInt8]) -> Bool {
        guard (0..<settings.rankCount).contains(header.source.rawValue) else { return false }
        // A message from an incarnation that was rolled back (independent checkpoints,
        // optimistic orphans) is obsolete: neither delivered nor compared with what was.
        if isObsolete(header) { return false }
        if ledger.isDuplicate(source: header.source, sequence: header.sequence) {
            checkDuplicate(header, payload)
            return false
        }
        arrivals += 1
        inbox[header.source.rawValue].append(Arrival(header: header, payload: payload))
        return true
    }

    /// The message a receive from `source` (nil: any, the channels in turn) with `tag` may
    /// take now, removed from the inbox; nil when none may (frozen, none there, or held for
    /// a round this rank has not captured).
    package mutating func take(from source: RankID?, tag: Int64) -> Arrival? {
        if frozen { return nil }
        if let source { return take(fromSource: source.rawValue, tag: tag) }
        // The sources with arrivals, in turn from the cursor: it costs the sources used.
        let sources = inbox.used
        let first = sources.firstIndex { $0 >= anySourceCursor } ?? 0
        for offset in 0..<sources.count {
            let candidate = sources[(first + offset) % sources.count]
            if let arrival = take(fromSource: candidate, tag: tag) {
                anySourceCursor = (candidate + 1) % settings.rankCount
                return arrival
            }
        }
        return nil
    }

    /// How many messages from `source` with `tag` a receive could take now, in order, without
    /// taking any (a non-blocking receive's test): none while frozen; duplicates are not
    /// counted, and the count stops at the first message held back for its round.
    package func deliverableCount(from source: RankID, tag: Int64) -> Int {
        guard !frozen else { return 0 }
        var sequences: Set<UInt64> = []
        for arrival in inbox[source.rawValue] {
            let header = arrival.header
            if ledger.isDuplicate(source: header.source, sequence: header.sequence) { continue }
            guard participant.mayDeliver(messageEpoch: header.epoch) else { break }
            if header.tag == tag { sequences.insert(header.sequence.rawValue) }
        }
        return sequences.count
    }

    /// The next message for a group receive (`receive(all:)`) that took `taken` and delivers
    /// them all at once at its end: as `take`, but another copy of one already taken is dropped.
    /// Until the group delivers, `take` sees nothing of those as delivered, and a restarted
    /// sender sends again what this rank has not delivered yet: without this a group asking one
    /// channel twice would get the same message twice.
    package mutating func take(from source: RankID?, tag: Int64, besides taken: [Arrival]) -> Arrival? {
        while let arrival = take(from: source, tag: tag) {
            let header = arrival.header
            guard taken.contains(where: { $0.header.source == header.source && $0.header.sequence == header.sequence }) else {
                return arrival
            }
        }
        return nil
    }

    /// The first message of the channel with `tag` that may be delivered. Epochs never decrease
    /// along a channel, so once one message is held back for its epoch, the rest are too.
    private mutating func take(fromSource source: Int, tag: Int64) -> Arrival? {
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

    /// Delivers a message to the program: records it delivered, and returns its payload
    /// (optimistic logging: without the dependency vector, which is merged into the rank's).
    /// Throws, delivering nothing, when an optimistic message carries no readable vector: its
    /// dependencies are unknown, so delivering it could hide an orphan.
    package mutating func deliver(_ header: DataHeader, _ stamped: [UInt8]) throws(WireError) -> [UInt8] {
        var payload = stamped
        if rules.tracksDependencies {
            guard let (sender, bytes) = OptimisticLogging.split(stamped, rankCount: settings.rankCount) else {
                throw WireError("message \(header.sequence.rawValue) from rank \(header.source.rawValue) carries no readable "
                    + "dependency vector (\(stamped.count) bytes)")
            }
            dependencyVector = OptimisticLogging.afterDelivery(
                dependencyVector, of: rank, sender: sender, epoch: participant.epoch.rawValue)
            payload = bytes
        }
        ledger.recordDelivery(source: header.source, sequence: header.sequence)
        deliveries += 1
        participant.noteChange()
        // A duplicate reaches a rank that lives on only when its peer can recover alone (with
        // logging); after a global rollback every rank is a new process with an empty table.
        // So without logging no delivery is hashed: a pass over every payload saved.
        if settings.logging.recoversAlone {
            fingerprints.record(
                source: header.source, sequence: header.sequence, hash: fingerprint(payload),
                epoch: independent ? UInt64(interval) : participant.epoch.rawValue)
        }
        if independent {
            let source = header.source.rawValue
            intervalDependencies[source] = max(intervalDependencies[source], Int(clamping: header.epoch.rawValue))
        }
        return payload
    }

    /// A message delivered before arrived again: its bytes must be the ones delivered.
    private mutating func checkDuplicate(_ header: DataHeader, _ stamped: [UInt8]) {
        guard !nondeterminismFound, fingerprints.remembers(source: header.source, sequence: header.sequence) else { return }
        let payload = rules.tracksDependencies
            ? OptimisticLogging.split(stamped, rankCount: settings.rankCount)?.payload ?? stamped : stamped
        guard fingerprints.differs(source: header.source, sequence: header.sequence, hash: fingerprint(payload)) else { return }
        nondeterminismFound = true
        nondeterminism = Nondeterminism(source: header.source, sequence: header.sequence)
    }

    /// A duplicate with other bytes than the delivered copy, found since the last call (once
    /// in the rank's life): the runtime tells the supervisor.
    package mutating func takeNondeterminism() -> Nondeterminism? {
        defer { nondeterminism = nil }
        return nondeterminism
    }

    /// Whether a message comes from an execution of its sender that a rollback undid.
    package func isObsolete(_ header: DataHeader) -> Bool {
        rules.peerRestartMakesObsolete && header.incarnation < obsoleteBelow[header.source.rawValue]
    }

    /// Arrivals taken for a `receive(all:)` that a peer's rollback made obsolete (announced
    /// meanwhile) are dropped, and those taken after them go back to the front of their inbox,
    /// in order, to be taken again.
    package mutating func returnObsolete(_ taken: inout [Arrival]) {
        guard let first = taken.firstIndex(where: { isObsolete($0.header) }) else { return }
        let kept = taken[first...].filter { !isObsolete($0.header) }
        taken.removeSubrange(first...)
        for arrival in kept.reversed() { inbox[arrival.header.source.rawValue].insert(arrival, at: 0) }
    }

    /// A peer was restarted (`peerRestarted`): when it rolled back (independent checkpoints,
    /// optimistic orphans) what its lost execution sent and this rank has not delivered is
    /// obsolete; re-execution sends it again, perhaps differently.
    package mutating func peerRestarted(_ peer: RankID, incarnation: UInt32) {
        guard rules.peerRestartMakesObsolete else { return }
        obsoleteBelow[peer.rawValue] = incarnation
        inbox[peer.rawValue].removeAll { $0.header.incarnation < incarnation }
    }

    // MARK: Replay

    /// During a replay, what the next receive returns; `.exhausted` when not replaying.
    package mutating func replayReceive(source: RankID?, tag: Int64) -> ReplayStep {
        guard var queue = replay else { return .exhausted }
        let next = queue.nextReceive(source: source, tag: tag)
        replay = queue
        switch next {
        case .deliver(let header, let payload): return .deliver(header, payload)
        case .await(let header): return .await(header)
        case .live: return .live
        case .exhausted: return .exhausted
        case .diverged(let expected): return .diverged(expected: expected)
        }
    }

    /// During a replay, the logged value the next `logged` returns: nil when not replaying or
    /// the log has no more (then live); throws when the log holds something else there.
    package mutating func replayValue() throws(WireError) -> [UInt8]? {
        guard var queue = replay else { return nil }
        let next = queue.nextValue()
        replay = queue
        return try next.get()
    }

    /// Whether the replay has nothing left (it ends now).
    package var replayExhausted: Bool { replay.map { $0.remainingCount == 0 } ?? false }

    /// The replay ended: every later receive is live.
    package mutating func endReplay() {
        replay = nil
    }

    /// During a replay, the awaited message when it has arrived again, removed from the inbox.
    package mutating func takeReplayed(_ header: DataHeader) -> Arrival? {
        guard let index = inbox[header.source.rawValue].firstIndex(where: { $0.header.sequence == header.sequence }) else {
            return nil
        }
        return inbox[header.source.rawValue].remove(at: index)
    }

    /// A value read from outside the messages is returned to the program (logged or replayed).
    package mutating func noteLoggedValue() {
        participant.noteChange()
        if rules.tracksDependencies { dependencyVector.advance(rank.rawValue, epoch: participant.epoch.rawValue) }
    }

    // MARK: Checkpoints

    /// A checkpoint request arrived: the rank's own ask for one is answered.
    package mutating func handleRequest(_ epoch: Epoch) -> [CheckpointParticipant.Action] {
        checkpointAsked = false
        return participant.handleRequest(epoch)
    }

    /// The rank captured round (or independent checkpoint) `epoch` with its log at `position`.
    package mutating func noteCapture(_ epoch: Epoch, logPosition: UInt64) {
        logPositionAtCapture.append((epoch, logPosition))
    }

    /// Independent checkpoints: whether the next checkpoint is due at this safe point. Not while
    /// the rank replays its log: a snapshot records where the log stands, and the state is then
    /// behind the log's end (a restore from it would skip what was still to replay).
    package func independentCheckpointDue(now: Double) -> Bool {
        independent && !frozen && replay == nil && now >= nextCheckpointAt
    }

    /// Independent checkpoints: closes the current interval with a checkpoint; returns its
    /// index and the interval's dependency vector (for its ACK). The next is due one period
    /// after this one's write ends, as SCR counts its checkpoint seconds from the end of the
    /// last: a rank then computes for a period between two writes whatever a write costs. With
    /// the period counted from the capture, a write longer than the period (a snapshot holding
    /// every message since the start, as on a program with the domino effect) queued the next
    /// behind it, and each queued one held its own copy of the state and the traffic: heat2d
    /// 1024² on 4 ranks and 2 cores, a 6.8 s computation, took 158 s.
    package mutating func closeInterval(now: Double) -> (index: Int, dependencies: PerPeer<Int>) {
        interval += 1
        let dependencies = intervalDependencies
        intervalDependencies = PerPeer(rankCount: settings.rankCount, absent: -1)
        independentWrite = (interval, nextPeriod())
        nextCheckpointAt = .infinity
        return (interval, dependencies)
    }

    /// Independent checkpoints: checkpoint `index` is durable, or its write failed: the next
    /// is due a period from `now`.
    package mutating func independentCheckpointEnded(_ index: Int, now: Double) {
        guard let write = independentWrite, write.index == index else { return }
        independentWrite = nil
        nextCheckpointAt = now + write.period
    }

    /// The next independent checkpoint period: the interval ±25 % (a generator per rank and
    /// incarnation).
    private mutating func nextPeriod() -> Double {
        settings.intervalSeconds * (0.75 + 0.5 * Double(periodGenerator.next() >> 11) / Double(1 << 53))
    }

    /// A line committed (DONE of round `epoch`, or TRIM of the independent checkpoint-only
    /// line): each receiver's committed checkpoint covers `coveredByReceiver[receiver]` of what
    /// this rank retains for it (`coversSelf`: and its own messages to itself that it
    /// delivered). Returns the log position before which records can be trimmed, if this rank
    /// captured that checkpoint.
    package mutating func committed(_ epoch: Epoch, coveredByReceiver covered: DeliveredSets, coversSelf: Bool) -> UInt64? {
        for receiver in covered.used where receiver != rank.rawValue && receiver < settings.rankCount {
            ledger.trim(destination: RankID(receiver), covered: covered[receiver])
        }
        if coversSelf { ledger.trim(destination: rank, covered: ledger.delivered[rank.rawValue]) }
        fingerprints.trim(before: epoch.rawValue)
        // What the committed line holds can no longer be lost: no failure makes an orphan of it.
        if rules.tracksDependencies, !independent { dependencyVector.forgetStable(committed: epoch, except: rank.rawValue) }
        guard let captured = logPositionAtCapture.first(where: { $0.epoch == epoch }) else { return nil }
        logPositionAtCapture.removeAll { $0.epoch <= epoch }
        return captured.position
    }

    /// FREEZE: nothing is delivered until THAW. Returns the answer: the interval and its
    /// dependencies (optimistic logging: the dependency vector).
    package mutating func freeze() -> ControlMessage {
        frozen = true
        if rules.tracksDependencies { return .frozen(interval: 0, dependencies: dependencyVector.intervals(rankCount: settings.rankCount)) }
        return .frozen(interval: interval, dependencies: intervalDependencies)
    }

    /// THAW: deliveries go on.
    package mutating func thaw() {
        frozen = false
    }

    /// The rank's wait, for a `waitQuery`, with the counts that move with progress.
    package func wait(_ kind: RankWait.Kind, peer: RankID? = nil, tag: Int64 = 0) -> RankWait {
        var wait = RankWait(
            kind: kind, step: participant.stepPassed, sent: sends, arrived: arrivals, delivered: deliveries,
            heldSends: UInt64(heldSends.count))
        wait.peer = peer
        wait.tag = tag
        return wait
    }
}
