#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import CLifelineSupport
import LifelineCore
import LifelineStorage
import Synchronization

/// Writes a rank's snapshots in the background (the non-blocking protocol): cut into chunks,
/// compress and write the chunks the store does not already hold intact (mirror A, verify,
/// mirror B; one of them alone while the other has failed), write the index, then send `ACK`
/// straight to the supervisor. The program's thread learns of each outcome through
/// `takeCompleted()`.
///
/// The ACK's `snapshotBytes` is the bytes newly stored on one mirror (new chunks and the
/// index), not the snapshot's logical size.
///
/// With a memory level (`--levels memory,disk`) a round's snapshot is first written whole to
/// the host's memory (`MemoryLevel`) and acknowledged from there: its program state as soon as
/// it is captured (`beginMemoryCopy`), the rest at the round's cut. A round that is drained is
/// then written to the mirrors as above, on a queue of its own, and reported by `drained`: the
/// next round's copy and ACK do not wait behind it (a drain of 256 MiB over 4 ranks takes about
/// a second here, as long as a round's interval), and a drain gives way to the next round:
/// from the round's request until the rank learns that it committed (or was aborted) the drain
/// prepares no more chunks (for 2 s at most per round), so that the captures and copies the
/// commit waits for — this rank's, and those of the host's other ranks, whose drains pause
/// alike — have the cores. (On 2 cores with 4 ranks and 256 MiB, pausing each drain only from
/// its rank's capture to its ACK left rounds that met a drain committing 0.6–1.5 s after the
/// first capture, against 0.2 s for rounds that met none; pausing from the request to the
/// commit, with the capture buffers below, 0.19–0.44 s.) From a rank's second round on, its
/// state is captured straight into the round's copy in memory (`openMemoryCapture`, over the
/// rank's spare), and a drain reads the state from that copy in place, pinned until the drain
/// is done so that no commit makes it the spare a later capture writes over. A round captured
/// into a buffer instead (the first, or one that outgrew the spare) is drained from the buffer,
/// which the drain still reads when the next round captures, so with a memory level the runtime
/// keeps two capture buffers for those (`RankRuntime.captureBuffers`). Drains run in round order, one at a time; one waits behind
/// the one under way at most, each holding a snapshot's bytes, and a third waits for a place.
/// (The supervisor keeps a line being drained in the manifest, and the collection spares the
/// folders of lines newer than the newest on disk, so nothing a drain writes goes from under
/// it.) A copy that does not fit `--memory-max`, or that the memory file system refuses, goes
/// to the mirrors before the ACK, as without levels (said once).
final class SnapshotWriter: Sendable {
    /// What became of one snapshot.
    enum Outcome: Sendable {
        /// Durable on both mirrors; ACK sent.
        case durable(Epoch)
        /// Could not be written; the supervisor was told and will abort the round.
        case failed(Epoch)
    }

    /// A captured snapshot to write.
    struct Job: Sendable {
        var epoch: Epoch
        var step: Int
        var name: String
        /// The snapshot's bytes, in segments chunked apart (`RankSnapshot.encoded()`).
        var uncompressed: [ChunkedSnapshots.Segment]
        /// The snapshot but its program state (`RankSnapshot.metadata()`, the first segment),
        /// which a copy in memory stores after the state.
        var metadata: [UInt8] = []
        /// The program state, which a copy in memory stores as one piece.
        var state: [UInt8] = []
        var delivered: DeliveredSets
        var outputOffset: UInt64
        /// Deliveries and logged values since the rank's last committed checkpoint.
        var changes: UInt64
        /// Independent checkpointing: the dependency vector of the interval this closes.
        var dependencies: PerPeer<Int>
        /// A `phase=checkpoint` fault to fire between durability and ACK.
        var faultIndex: Int?
        /// The mirrors to write (the supervisor's `writeMirrors`).
        var mirrors: StorageMirrors
        /// The index of the rank's next log record at capture.
        var logPosition: UInt64 = 0
        /// The program state's bytes in the snapshot.
        var stateBytes: UInt64 = 0
        /// The payload bytes of the messages the snapshot stores.
        var inFlightBytes: UInt64 = 0
        /// How long the program took to capture the state.
        var captureMicroseconds: UInt32 = 0
        /// Whether the program state was captured straight into the round's copy in memory
        /// (`openMemoryCapture`): `state` and `uncompressed` are then empty, and the drain
        /// reads the state from the copy.
        var stateInMemoryCopy = false
        /// The ranges of the program state declared numeric (for a drain from the copy).
        var numericRanges: [Range<Int>] = []
        /// Optimistic logging where the supervisor cannot read the snapshot (in another host's
        /// memory, or on the hosts' disks with partner copies): its dependency vector, for its
        /// ACK (`Acknowledgement.logDependencies`).
        var logDependencies: [UInt64] = []
    }

    private let snapshots: ChunkedSnapshots
    private let control: ControlLink
    private let chunkBytes: Int
    private let level: Int32
    private let queue = DispatchQueue(label: "lifeline.snapshot-writer")
    /// The drains of rounds held in memory, in order, one at a time.
    private let drainQueue = DispatchQueue(label: "lifeline.snapshot-drain")
    /// A place for a drain waiting behind the one under way (taken when it is queued, given
    /// back when it starts).
    private let drainWaiting = DispatchSemaphore(value: 1)
    private let completed = Mutex<[Outcome]>([])
    /// Whether `completed` holds an outcome: the program's thread asks at every call into the
    /// runtime, and mostly there is none, which this tells it without taking the lock.
    private let anyCompleted = Atomic<Bool>(false)
    /// The copy in memory of the round captured last, begun at its capture, completed at its cut.
    private let pendingCopy = Mutex<MemoryLevel.PendingCopy?>(nil)
    /// The last round committed (`removeOlderMemoryCopies`): copies older than it are on their
    /// way out.
    private let lastCommitted = Atomic<UInt64>(0)
    /// This rank's entry in the last committed line (`removeOlderMemoryCopies`).
    private let lastEntry = Atomic<UInt64>(0)
    /// Whether a drain failed since `takeDrainFailure` last asked.
    private let drainFailed = Atomic<Bool>(false)
    /// The memory level and this rank's place in it (nil: disk alone).
    private let memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)?
    /// The round under way since its request reached this rank (until the rank learns of the
    /// round's commit or abort, or its copy goes to disk instead), 0 when none: a drain waits
    /// while it is set (`giveWayToRound`).
    private let roundUnderWay = Atomic<UInt64>(0)
    /// The round a drain waited for until `roundWaitMillisecondsMax` ran out: it does not wait
    /// for it again.
    private let roundWaitedOut = Atomic<UInt64>(0)
    /// Whether the writer's queue waits for a place behind the drain under way (`queueDrain`).
    private let writerWaitsForDrain = Atomic<Bool>(false)
    /// How long a drain waits for one round at most, in milliseconds.
    private static let roundWaitMillisecondsMax = 2000
    /// Whether this rank said that its copies go to disk alone (said once).
    private let memoryRefusalSaid = Atomic<Bool>(false)
    /// How many chunks a drain compresses at a time: the host's cores shared among its ranks,
    /// whose drains run at once, behind the rounds of the same ranks. On 2 cores with 4 ranks,
    /// one chunk at a time drained 256 MiB in 0.63 s (median of 7 runs) against 0.78 s two at a
    /// time (8 compressing threads on 2 cores, and a run in seven took 2.0 s), and the rounds'
    /// commits in memory met fewer drains in their way.
    private let drainChunksAtATime: Int

    /// Where a host's garbage is collected (`collectHostGarbage`): the folders, each seen
    /// alone, and the store the manifest that says what to keep is read from.
    struct HostCollection: Sendable {
        /// Reads the manifest the supervisor committed.
        var manifest: MirroredStore
        /// The host's folders to collect.
        var folders: [MirroredStore]
    }

    /// This host's collection: with a node-local mirror, its folder against the shared root's
    /// manifest (nil: none), unless the writer was given another.
    private let hostCollection: HostCollection?
    /// Whether the last collection of the host's folders left their chunks (a write held the
    /// lock): it runs again after this rank's next write.
    private let hostCollectionOwed = Atomic<Bool>(false)
    /// With levels on several hosts: the partner host's folder in memory, where each copy this
    /// rank holds in memory also goes before its ACK (`copyToPartner`).
    private let memoryPartner: PartnerFolder?
    /// Where the copies to `memoryPartner` are made and their rounds acknowledged.
    private let partnerQueue = DispatchQueue(label: "lifeline.memory-partner")
    /// Whether this rank said that its copies in memory are on its host alone (said once, until
    /// a copy reaches the partner again).
    private let partnerRefusalSaid = Atomic<Bool>(false)

    /// A writer for `store` that reports to the supervisor over `control`, cutting snapshots
    /// into chunks of `chunkBytes` (a multiple of 8) compressed at zstd `level`; with `memory`,
    /// rank `rank`'s rounds are held in the host's memory first, and drained to disk
    /// `drainChunksAtATime` chunks at a time, and to `memoryPartner` too when one is given (the
    /// partner host's memory). `hostCollection`: where the host's garbage is collected, when not
    /// as the store says (partner hosts: `PartnerDirectory`).
    init(store: MirroredStore, control: ControlLink, chunkBytes: Int, level: Int32,
         memory: LaunchEnvironment.MemoryLevelSettings? = nil, rank: Int = 0, drainChunksAtATime: Int = 1,
         memoryPartner: PartnerFolder? = nil, hostCollection: HostCollection? = nil) {
        self.memoryPartner = memory == nil ? nil : memoryPartner
        precondition(chunkBytes % 8 == 0, "numeric segments are filtered as 8-byte values, so chunks hold whole ones")
        self.snapshots = ChunkedSnapshots(store: store)
        self.control = control
        self.chunkBytes = chunkBytes
        self.level = level
        self.memory = memory.map { (MemoryLevel(folder: $0.folder, mapsCopies: true), $0, rank) }
        self.drainChunksAtATime = max(1, drainChunksAtATime)
        self.hostCollection = hostCollection ?? store.confinedToNodeLocal.flatMap { local in
            store.sharedReadOnly.map { HostCollection(manifest: $0, folders: [local]) }
        }
    }

    /// Queues a snapshot; returns at once. A round whose state was captured straight into its
    /// copy in memory is completed and acknowledged right here, on the caller's thread (the
    /// program's, at the round's cut): what is left is the metadata, a few small writes and a
    /// rename, and on a machine whose cores the ranks' computation fills, a hand-over to the
    /// writer's thread cost more than that (the ACK left up to 12 ms after the cut on 2 cores
    /// with 4 ranks). What follows the ACK (a spare, the drain) is queued as usual.
    func submit(_ job: Job) {
        if job.stateInMemoryCopy, let memory {
            if completeInMemory(job, memory) { queue.async { [self] in afterHeldInMemory(job, memory) } }
            return
        }
        queue.async { [self] in write(job) }
    }

    /// With a memory level: copies round `epoch`'s program state to the host's memory now, on
    /// the caller's thread (the program's, at its capture), and leaves the copy for `submit` to
    /// complete at the round's cut. The copy is made at once rather than behind the program
    /// because the round commits only when every rank's copy is there: in the background it
    /// would share the cores with the program's computation and take several times as long,
    /// for the same work. A copy begun for an earlier round whose cut never came (the round was
    /// aborted) goes. One that does not fit, or fails, is left to `submit` (which writes to
    /// disk then).
    func beginMemoryCopy(epoch: Epoch, state: [UInt8]) {
        guard let memory else { return }
        roundUnderWay.store(epoch.rawValue, ordering: .releasing)
        if let stale = pendingCopy.withLock({ $0.take() }) { memory.store.abandon(stale) }
        guard fitsBesideCommitted(stateBytes: state.count, epoch: epoch, memory) else {
            roundUnderWay.store(0, ordering: .releasing)
            return
        }
        do {
            let copy = try MemoryLevel.withBytes(state) { raw throws(StorageError) in
                try memory.store.begin(rank: memory.rank, epoch: epoch.rawValue, state: raw)
            }
            pendingCopy.withLock { $0 = copy }
        } catch {
            roundUnderWay.store(0, ordering: .releasing)
            sayOnce("rank \(memory.rank)'s copy in memory could not be written (\(error)): its checkpoints go to disk until one fits")
        }
    }

    /// With a memory level and a spare mapped: round `epoch`'s copy in memory, opened for the
    /// program to capture its state straight into (`MemoryLevel.openCapture`), so that the
    /// capture is the copy. Nil when the rank has no spare yet (its first rounds): the state is
    /// then captured into a buffer and copied (`beginMemoryCopy`). The capture ends with
    /// `beginMemoryCopy(epoch:captured:stateLength:)`, or `cancelMemoryCapture`.
    func openMemoryCapture(epoch: Epoch) -> MemoryLevel.CaptureTarget? {
        guard let memory else { return nil }
        roundUnderWay.store(epoch.rawValue, ordering: .releasing)
        if let stale = pendingCopy.withLock({ $0.take() }) { memory.store.abandon(stale) }
        return memory.store.openCapture(rank: memory.rank, epoch: epoch.rawValue)
    }

    /// The program captured `stateLength` bytes of state into `target` (`openMemoryCapture`),
    /// whose XXH3-128 is `stateHash` when the capture took it as it wrote (else the copy is
    /// hashed where it lies): the copy is left for `submit` to complete at the round's cut, as
    /// `beginMemoryCopy` leaves one. False, with the capture cancelled, when it does not fit
    /// `--memory-max`: the caller copies the state out first and writes it to disk.
    func beginMemoryCopy(epoch: Epoch, captured target: MemoryLevel.CaptureTarget, stateLength: Int, stateHash: ContentHash? = nil) -> Bool {
        guard let memory else { return false }
        guard fitsBesideCommitted(stateBytes: stateLength, epoch: epoch, memory) else {
            roundUnderWay.store(0, ordering: .releasing)
            return false
        }
        let copy = memory.store.beginCaptured(target, stateLength: stateLength, stateHash: stateHash)
        pendingCopy.withLock { $0 = copy }
        return true
    }

    /// Gives up a capture into `target` (`openMemoryCapture`): its file is the rank's spare again.
    func cancelMemoryCapture(_ target: MemoryLevel.CaptureTarget) {
        memory?.store.cancelCapture(target)
    }

    /// Whether a copy of a state of `stateBytes` bytes fits `--memory-max` beside the copies of
    /// the last committed round on (older ones go after the writes queued before that commit);
    /// `submit` checks the budget again and says why when it does not fit.
    private func fitsBesideCommitted(stateBytes: Int, epoch: Epoch, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) -> Bool {
        guard memory.settings.bytesMax > 0 else { return true }
        let held = memory.store.bytesHeld(
            rank: memory.rank, except: epoch.rawValue, from: lastCommitted.load(ordering: .relaxed),
            keeping: lastEntry.load(ordering: .relaxed))
        return MemoryLevel.headerByteCount + stateBytes + held <= memory.settings.bytesMax
    }

    /// With a memory level, in a rank restored with a state of `stateBytes` bytes: its first
    /// copy in memory will write over a spare whose pages are there already and mapped, as
    /// every copy after a rank's first does (`holdInMemory`): the spare its predecessor left,
    /// or one made now if two copies fit. In the background, before the first round.
    /// True when a spare is being prepared.
    @discardableResult
    func prepareSpare(stateBytes: Int) -> Bool {
        guard let memory else { return false }
        let bytes = MemoryLevel.headerByteCount + stateBytes
        guard memory.settings.fitsTwoCopies(of: bytes) else { return false }
        queue.async { memory.store.prepareSpare(rank: memory.rank, bytes: bytes) }
        return true
    }

    /// With a memory level: round `epoch` was requested; the drains give way to it from now.
    func roundRequested(epoch: Epoch) {
        guard memory != nil else { return }
        roundUnderWay.store(epoch.rawValue, ordering: .releasing)
    }

    /// With a memory level: round `epoch` was aborted, so its copy under way goes now (its
    /// file would hold a state's worth of memory until the next capture).
    func abandonMemoryCopy(epoch: Epoch) {
        guard let memory else { return }
        let copy = pendingCopy.withLock { pending -> MemoryLevel.PendingCopy? in
            guard pending?.epoch == epoch.rawValue else { return nil }
            return pending.take()
        }
        if let copy { memory.store.abandon(copy) }
        _ = roundUnderWay.compareExchange(expected: epoch.rawValue, desired: 0, ordering: .releasing)
    }

    /// Outcomes reported since the last call, oldest first.
    func takeCompleted() -> [Outcome] {
        guard anyCompleted.load(ordering: .acquiring) else { return [] }
        return completed.withLock { outcomes in
            anyCompleted.store(false, ordering: .relaxed)
            defer { outcomes.removeAll() }
            return outcomes
        }
    }

    /// Hands `outcome` to the program's thread (`takeCompleted`).
    private func report(_ outcome: Outcome) {
        completed.withLock { outcomes in
            outcomes.append(outcome)
            anyCompleted.store(true, ordering: .releasing)
        }
    }

    /// With a node-local mirror (`{host}` in `--storage`): after a commit, removes from this
    /// host's folder what no line of the manifest keeps, after this rank's queued writes. Every
    /// rank of the host may ask; one collects at a time, under the chunk lock taken
    /// exclusively, and none while a rank of the host writes a snapshot (it then waits for the
    /// next commit; a partner's write on a folder this host keeps holds the same lock). The
    /// manifest is read from the shared root (with partner hosts, from the supervisor, which
    /// lends it), as the supervisor committed it: one a little older (the next commit already
    /// made) only keeps more. Nothing is collected while the job writes one mirror alone
    /// (`writing`: a mirror has failed): the shared manifest may then be far behind what the
    /// ranks wrote.
    ///
    /// A collection that left the chunks because a write held the lock (another rank of the
    /// host, or the partner writing to the folder kept here) is owed: it runs again after this
    /// rank's next write, until it is through. Under independent checkpoints, with no commit to
    /// bring the next one, the chunks of the checkpoints collected would stay otherwise.
    func collectHostGarbage(writing: StorageMirrors) {
        guard writing.mirrors.count == 2, let hostCollection else { return }
        queue.async { [self] in collectHost(hostCollection) }
    }

    /// Collects the host's folders now, on the writer's queue (`collectHostGarbage`).
    private func collectHost(_ hostCollection: HostCollection) {
        guard let manifest = try? ManifestStore(store: hostCollection.manifest).load(repair: false) else { return }
        var owed = false
        for folder in hostCollection.folders {
            if let collected = try? ManifestStore(store: folder).collect(keeping: manifest), !collected.chunksCollected { owed = true }
        }
        hostCollectionOwed.store(owed, ordering: .relaxed)
    }

    /// With a memory level: round `epoch` committed with this rank's snapshot of round `entry`
    /// in its line (`epoch` itself, or under minimal checkpoints an older round when the rank
    /// kept its checkpoint), so its other copies of older rounds in memory go (after its queued
    /// writes: none of them is older than a commit), and the drains' pause for that round
    /// (`roundRequested`) ends.
    func removeOlderMemoryCopies(committed epoch: Epoch, entry: Epoch) {
        guard let memory else { return }
        lastCommitted.store(epoch.rawValue, ordering: .relaxed)
        lastEntry.store(entry.rawValue, ordering: .relaxed)
        let round = roundUnderWay.load(ordering: .acquiring)
        if round != 0, round <= epoch.rawValue { _ = roundUnderWay.compareExchange(expected: round, desired: 0, ordering: .releasing) }
        queue.async { memory.store.removeOlder(rank: memory.rank, than: epoch.rawValue, keeping: entry.rawValue) }
    }

    /// Whether a drain failed since the last call: under minimal checkpoints the rank then
    /// writes a new checkpoint at its next round rather than keep one that may not be on disk.
    func takeDrainFailure() -> Bool {
        drainFailed.exchange(false, ordering: .relaxed)
    }

    /// Waits until every queued snapshot has been written or has failed, drains included.
    func drain() {
        queue.sync {}
        partnerQueue.sync {}
        drainQueue.sync {}
    }

    private func write(_ job: Job) {
        if let memory, job.name.hasPrefix(ManifestStore.epochsFolder + "/"), holdInMemory(job, memory) { return }
        do {
            let store = snapshots.store.writing(only: job.mirrors.mirrors)
            let written = try ChunkedSnapshots(store: store).write(
                job.name, segments: job.uncompressed, generation: job.epoch.rawValue, chunkBytes: chunkBytes, level: level)
            if let faultIndex = job.faultIndex { fireFault(index: faultIndex, control: control) }
            // Report to the program's thread before the ACK: DONE, which the ACK causes,
            // must find the outcome already there.
            report(.durable(job.epoch))
            var acknowledgement = Acknowledgement(
                step: job.step, snapshotBytes: UInt64(written.storedBytes),
                outputOffset: job.outputOffset, delivered: job.delivered, changes: job.changes,
                logicalBytes: UInt64(written.logicalBytes), chunks: UInt32(written.index.chunks.count),
                chunksReused: UInt32(written.reusedCount), logPosition: job.logPosition, stateBytes: job.stateBytes, inFlightBytes: job.inFlightBytes,
                dependencies: job.dependencies, mirrors: job.mirrors, captureMicroseconds: job.captureMicroseconds)
            acknowledgement.logDependencies = job.logDependencies
            control.send(.ack(job.epoch, acknowledgement))
            if let hostCollection, job.mirrors.mirrors.count == 2, hostCollectionOwed.load(ordering: .relaxed) {
                collectHost(hostCollection)
            }
        } catch {
            fail(job, reason: "\(error)", failedMirrors: failedMirrors(error))
        }
    }

    /// The mirror `error` says failed, when the job should go on without it. With partner
    /// copies neither is given up: the failure fails the round alone (the next round may find
    /// the partner back, or another partner host after a host was lost), so that a line commits
    /// on two hosts or not at all (the supervisor could not copy the ranks' files to a mirror
    /// that came back).
    private func failedMirrors(_ error: StorageError) -> StorageMirrors {
        guard error.isMirrorFailure, let mirror = error.mirror, snapshots.store.remote == nil else { return [] }
        return StorageMirrors([mirror])
    }

    /// Writes a round's snapshot to the host's memory and acknowledges it from there, then
    /// drains it to the mirrors if the round is drained. False, with nothing sent, when the copy
    /// does not fit `--memory-max` or the memory file system refuses it: the caller writes it to
    /// the mirrors as without levels.
    private func holdInMemory(_ job: Job, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) -> Bool {
        // A state captured into its copy has nowhere else to go: a copy that could not be
        // completed failed the round (reported).
        guard completeInMemory(job, memory) else { return job.stateInMemoryCopy }
        afterHeldInMemory(job, memory)
        return true
    }

    /// Completes round `job`'s copy in memory (begun at its capture, or made now from its state)
    /// and sends its ACK. False when the round is not held in memory: a copy that does not fit
    /// `--memory-max` or that the memory file system refuses (nothing sent; the caller writes it
    /// to disk), or, for a state captured into its copy, a copy that could not be completed (the
    /// round failed, and was reported so).
    private func completeInMemory(_ job: Job, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) -> Bool {
        let bytes = MemoryLevel.headerByteCount + Int(job.stateBytes) + job.metadata.count
        // The copy begun at this round's capture; a newer round's stays for its own cut.
        var begun = pendingCopy.withLock { pending -> MemoryLevel.PendingCopy? in
            guard let copy = pending, copy.epoch <= job.epoch.rawValue else { return nil }
            pending = nil
            return copy
        }
        if let stale = begun, stale.epoch != job.epoch.rawValue {
            memory.store.abandon(stale)
            begun = nil
        }
        // A round whose copy goes to disk after all is written like a drain: the drain under way
        // need not wait for it.
        var heldInMemory = false
        defer { if !heldInMemory { _ = roundUnderWay.compareExchange(expected: job.epoch.rawValue, desired: 0, ordering: .releasing) } }
        if job.stateInMemoryCopy {
            // The state is in the copy alone (it fitted `--memory-max` at the capture): the
            // copy is completed, or the snapshot is lost and the round fails.
            guard let begun else {
                fail(job, reason: "rank \(memory.rank)'s copy in memory of round \(job.epoch.rawValue) is gone")
                return false
            }
            do {
                _ = try MemoryLevel.withBytes(job.metadata) { raw throws(StorageError) in try memory.store.finish(begun, metadata: raw) }
            } catch {
                fail(job, reason: "\(error)")
                return false
            }
        } else {
            guard fitsInMemory(bytes: bytes, epoch: job.epoch, memory) else {
                if let begun { memory.store.abandon(begun) }
                return false
            }
            do {
                let copy = try begun ?? MemoryLevel.withBytes(job.state) { raw throws(StorageError) in
                    try memory.store.begin(rank: memory.rank, epoch: job.epoch.rawValue, state: raw)
                }
                _ = try MemoryLevel.withBytes(job.metadata) { raw throws(StorageError) in try memory.store.finish(copy, metadata: raw) }
            } catch {
                sayOnce("rank \(memory.rank)'s copy in memory could not be written (\(error)): its checkpoints go to disk until one fits")
                return false
            }
        }
        var acknowledgement = Acknowledgement(
            step: job.step, snapshotBytes: UInt64(bytes), outputOffset: job.outputOffset, delivered: job.delivered,
            changes: job.changes, logicalBytes: UInt64(bytes - MemoryLevel.headerByteCount), chunks: 1,
            logPosition: job.logPosition, stateBytes: job.stateBytes, inFlightBytes: job.inFlightBytes,
            dependencies: job.dependencies, mirrors: job.mirrors, captureMicroseconds: job.captureMicroseconds)
        acknowledgement.inMemory = true
        acknowledgement.logDependencies = job.logDependencies
        heldInMemory = true  // the drains wait for the round's commit (`removeOlderMemoryCopies`) or abort
        guard let memoryPartner, memoryPartner.hasKeepers else {
            acknowledge(job, acknowledgement)
            return true
        }
        // The copy to the partner host's memory and the ACK after it go on a queue of their own:
        // neither the program's thread nor a drain on the writer's queue waits for the network.
        partnerQueue.async { [self, acknowledgement] in
            var acknowledgement = acknowledgement
            acknowledgement.memoryPartner = copyToPartner(job.epoch, memory)
            acknowledge(job, acknowledgement)
            if acknowledgement.memoryPartner != nil { removeOlderPartnerCopies(memory) }
        }
        return true
    }

    /// Sends round `job`'s ACK from memory, after its fault if one fires there and after the
    /// program's thread is told the snapshot is held (DONE, which the ACK causes, must find that
    /// outcome there).
    private func acknowledge(_ job: Job, _ acknowledgement: Acknowledgement) {
        if let faultIndex = job.faultIndex { fireFault(index: faultIndex, control: control) }
        report(.durable(job.epoch))
        control.send(.ack(job.epoch, acknowledgement))
    }

    /// With levels on several hosts: writes this rank's copy of round `epoch`, just completed
    /// here, to the partner host's memory (the same bytes under the same name, next to the
    /// partner's own ranks' copies), so that the copy outlives this host; returns that host.
    /// Nil when there is no partner (the job's other hosts are lost) or the copy could not be
    /// written there: the round is then held in this host's memory alone, which the ACK says,
    /// and this host's loss sends its ranks to disk. A copy that could not be written is said
    /// once on the rank's standard error, until a copy reaches a partner again.
    private func copyToPartner(_ epoch: Epoch, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) -> String? {
        guard let memoryPartner, memoryPartner.hasKeepers else { return nil }
        do {
            try Self.send(MemoryLevel.fileName(rank: memory.rank, epoch: epoch.rawValue), from: memory.store, to: memoryPartner)
            guard let host = memoryPartner.connectedHost else {
                throw StorageError(.ioFailure, path: memoryPartner.location, message: "the connection closed after the write")
            }
            partnerRefusalSaid.store(false, ordering: .relaxed)
            return host
        } catch {
            if !partnerRefusalSaid.exchange(true, ordering: .relaxed) {
                let text = Array(("lifeline: rank \(memory.rank)'s copy in memory is on its host alone: \(memoryPartner.location) "
                    + "could not take it (\(error)); that host's loss would send its ranks to disk\n").utf8)
                _ = text.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
            }
            return nil
        }
    }

    /// The parts in which a copy in memory goes to the partner host and is fetched from there:
    /// `FolderRequest.partBytesMax` (64 MiB), or `LIFELINE_PARTNER_PART_BYTES` (4 KiB at least;
    /// the tests make copies of a few parts that way).
    static let partnerPartBytes: Int = {
        let given = getenv("LIFELINE_PARTNER_PART_BYTES").flatMap { Int(String(cString: $0)) }
        return min(FolderRequest.partBytesMax, max(4096, given ?? FolderRequest.partBytesMax))
    }()

    /// Sends the copy `name` in `store` to `partner` under the same name: in one write when it
    /// fits one part, else part by part (one part in memory at a time) under its partial name,
    /// renamed there once whole, so that no reader there finds a part of it.
    static func send(_ name: String, from store: MemoryLevel, to partner: PartnerFolder) throws(StorageError) {
        let partBytes = partnerPartBytes
        func part(at offset: Int) throws(StorageError) -> [UInt8] {
            guard let bytes = try store.part(of: name, offset: offset, count: partBytes) else {
                throw StorageError(.notFound, path: store.folder + "/" + name, message: "the copy is gone")
            }
            return bytes
        }
        let first = try part(at: 0)
        guard first.count == partBytes else {
            try partner.write([FileToWrite(name, encoded: first)])
            return
        }
        let partial = MemoryLevel.partialName(of: name)
        do throws(StorageError) {
            _ = try partner.remove(partial)
            try partner.write([FileToWrite(partial, encoded: first)])
            var offset = partBytes
            while case let next = try part(at: offset), !next.isEmpty {
                try partner.append(partial, at: offset, next)
                offset += next.count
                if next.count < partBytes { break }
            }
            try partner.rename(partial, to: name)
        } catch {
            // What reached the partner would stay in its memory, uncounted, until the job ends.
            _ = try? partner.remove(partial)
            throw error
        }
    }

    /// Removes from the partner host's memory this rank's copies that the last commit it heard
    /// of made obsolete, as `removeOlderMemoryCopies` does here: those of rounds before the
    /// committed one but this rank's entry in its line; those an earlier process of this rank
    /// left there too. Run after a copy reached the partner, so that each round's removals
    /// share its connection. A failure leaves them, for the partner's ranks to remove when the
    /// job ends.
    private func removeOlderPartnerCopies(_ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) {
        let committed = lastCommitted.load(ordering: .relaxed), entry = lastEntry.load(ordering: .relaxed)
        guard committed > 0, let memoryPartner, let names = try? memoryPartner.entries("") else { return }
        for name in names {
            // A copy sent in parts that did not become whole (its removal after a failure
            // failed too) goes as well: this queue sends one copy at a time.
            if let partial = MemoryLevel.parse(partial: name), partial.rank == memory.rank {
                _ = try? memoryPartner.remove(name)
                continue
            }
            guard let copy = MemoryLevel.parse(name), copy.rank == memory.rank, copy.epoch < committed,
                  copy.epoch != entry else { continue }
            _ = try? memoryPartner.remove(name)
        }
    }

    /// After round `job`'s ACK from memory, on the writer's queue: a spare for the next round's
    /// copy, and the round's drain to disk if it is drained.
    private func afterHeldInMemory(_ job: Job, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) {
        let bytes = MemoryLevel.headerByteCount + Int(job.stateBytes) + job.metadata.count
        // The next round's copy writes over a spare whose pages are in memory already: the
        // copy this round's commit makes obsolete, or, when this is the rank's only copy, a
        // spare made now (if two copies fit).
        if memory.settings.fitsTwoCopies(of: bytes),
           !memory.store.rounds(of: memory.rank).contains(where: { $0 < job.epoch.rawValue }) {
            memory.store.prepareSpare(rank: memory.rank, bytes: bytes)
        }
        guard memory.settings.drains(job.epoch) else { return }
        guard job.stateInMemoryCopy else {
            queueDrain(job.epoch, name: job.name, segments: job.uncompressed, mirrors: job.mirrors)
            return
        }
        // The drain reads the state from the copy in place, which stays pinned until it is
        // done: until then no commit makes it the spare that a later capture writes over.
        memory.store.pin(job.epoch.rawValue)
        let copy: MappedCopy
        do {
            guard let mapped = try memory.store.map(rank: memory.rank, epoch: job.epoch.rawValue, verifying: false) else {
                throw StorageError(.corrupt, path: memory.store.folder, message: "the copy just written is gone")
            }
            copy = mapped
        } catch {
            memory.store.unpin(job.epoch.rawValue)
            drainFailed.store(true, ordering: .relaxed)
            control.send(.drained(job.epoch, storedBytes: 0, failure: "\(error)"))
            return
        }
        let segments = RankSnapshot.segments(metadata: job.metadata, state: .mapped(copy), numericRanges: job.numericRanges)
        queueDrain(job.epoch, name: job.name, segments: segments, mirrors: job.mirrors) { [self] in
            memory.store.unpin(job.epoch.rawValue)
            // What the commits since skipped while the copy was read goes now.
            queue.async {
                memory.store.removeOlder(rank: memory.rank, than: self.lastCommitted.load(ordering: .relaxed),
                                         keeping: self.lastEntry.load(ordering: .relaxed))
            }
        }
    }

    /// A snapshot that cannot be written: the program's thread and the supervisor are told
    /// (the round is aborted).
    private func fail(_ job: Job, reason: String, failedMirrors: StorageMirrors = []) {
        report(.failed(job.epoch))
        control.send(.snapshotFailed(job.epoch, reason: reason, failedMirrors: failedMirrors))
    }

    /// With a memory level: drains round `epoch`'s snapshot `name` (its `segments`, as
    /// `RankSnapshot.encoded` cuts them) to `mirrors` before any round queued after it, unlike
    /// `drain()`, which waits for every write. A rank relaunched from a line held in memory
    /// alone that its predecessor had not drained does so with the copy it restored from.
    func drain(_ epoch: Epoch, name: String, segments: [ChunkedSnapshots.Segment], mirrors: StorageMirrors) {
        queue.async { [self] in queueDrain(epoch, name: name, segments: segments, mirrors: mirrors) }
    }

    /// Queues a drain behind the one under way, waiting while another already waits there.
    private func queueDrain(_ epoch: Epoch, name: String, segments: [ChunkedSnapshots.Segment], mirrors: StorageMirrors,
                            then done: @escaping @Sendable () -> Void = {}) {
        // While this queue waits, a later round's ACK waits behind it: the drain under way must
        // not give way to that round (`giveWayToRound`), or each would wait on the other.
        writerWaitsForDrain.store(true, ordering: .releasing)
        drainWaiting.wait()
        writerWaitsForDrain.store(false, ordering: .releasing)
        drainQueue.async { [self] in
            drainWaiting.signal()
            drainToDisk(epoch, name: name, segments: segments, mirrors: mirrors)
            done()
        }
    }

    /// Writes a round held in memory to the mirrors and reports `drained` (with the failure, if
    /// it failed).
    private func drainToDisk(_ epoch: Epoch, name: String, segments: [ChunkedSnapshots.Segment], mirrors: StorageMirrors) {
        do {
            let store = snapshots.store.writing(only: mirrors.mirrors)
            let written = try ChunkedSnapshots(store: store).write(
                name, segments: segments, generation: epoch.rawValue, chunkBytes: chunkBytes, level: level,
                windowChunks: drainChunksAtATime, beforeWindow: giveWayToRound)
            control.send(.drained(epoch, storedBytes: UInt64(written.storedBytes), failure: nil))
        } catch {
            let failed = failedMirrors(error)
            drainFailed.store(true, ordering: .relaxed)
            control.send(.drained(epoch, storedBytes: 0, failure: "\(error)", failedMirrors: failed))
        }
    }

    /// A drain's pause between windows: while a round is under way, waits for the rank to learn
    /// of its commit or abort (polling each millisecond; for `roundWaitMillisecondsMax` at most
    /// per round), unless the writer's queue, where the round's ACK comes from, waits for the
    /// drains itself.
    private func giveWayToRound() {
        var waited = 0
        while true {
            let round = roundUnderWay.load(ordering: .acquiring)
            guard round != 0, round != roundWaitedOut.load(ordering: .relaxed),
                  !writerWaitsForDrain.load(ordering: .acquiring) else { return }
            guard waited < Self.roundWaitMillisecondsMax else {
                roundWaitedOut.store(round, ordering: .relaxed)
                return
            }
            usleep(1000)
            waited += 1
        }
    }

    /// Whether a copy of `bytes` fits `--memory-max` beside the rank's other copies (said once
    /// when it does not).
    private func fitsInMemory(bytes: Int, epoch: Epoch, _ memory: (store: MemoryLevel, settings: LaunchEnvironment.MemoryLevelSettings, rank: Int)) -> Bool {
        guard memory.settings.bytesMax > 0 else { return true }
        let held = memory.store.bytesHeld(rank: memory.rank, except: epoch.rawValue)
        guard bytes + held > memory.settings.bytesMax else { return true }
        sayOnce("rank \(memory.rank)'s copies in memory (\(bytes + held) bytes with the committed one) do not fit --memory-max \(memory.settings.bytesMax): its checkpoints go to disk alone")
        return false
    }

    /// Writes `line` to standard error once per process.
    private func sayOnce(_ line: String) {
        guard !memoryRefusalSaid.exchange(true, ordering: .relaxed) else { return }
        let text = Array(("lifeline: " + line + "\n").utf8)
        _ = text.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

/// Fires an injected rank-side fault: tells the supervisor which one (and, at a safe point,
/// that the rank reached it: the failure is reported at that step), then SIGKILLs this process.
func fireFault(index: Int, step: Int? = nil, control: ControlLink?) -> Never {
    lifeline_flush_stdio()
    if let step { control?.send(.heartbeat(step: step)) }
    control?.send(.faultFired(index: index))
    kill(getpid(), SIGKILL)
    while true { pause() }
}
