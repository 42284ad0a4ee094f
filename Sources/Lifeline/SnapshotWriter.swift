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
    }

    private let snapshots: ChunkedSnapshots
    private let control: ControlLink
    private let chunkBytes: Int
    private let level: Int32
    private let queue = DispatchQueue(label: "lifeline.snapshot-writer")
    private let completed = Mutex<[Outcome]>([])
    private let pendingCount = Atomic<Int>(0)

    /// A writer for `store` that reports to the supervisor over `control`, cutting snapshots
    /// into chunks of `chunkBytes` (a multiple of 8) compressed at zstd `level`.
    init(store: MirroredStore, control: ControlLink, chunkBytes: Int, level: Int32) {
        precondition(chunkBytes % 8 == 0, "numeric segments are filtered as 8-byte values, so chunks hold whole ones")
        self.snapshots = ChunkedSnapshots(store: store)
        self.control = control
        self.chunkBytes = chunkBytes
        self.level = level
    }

    /// Queues a snapshot; returns at once.
    func submit(_ job: Job) {
        pendingCount.add(1, ordering: .sequentiallyConsistent)
        queue.async { [self] in
            write(job)
            pendingCount.subtract(1, ordering: .sequentiallyConsistent)
        }
    }

    /// Outcomes reported since the last call, oldest first.
    func takeCompleted() -> [Outcome] {
        completed.withLock { outcomes in
            defer { outcomes.removeAll() }
            return outcomes
        }
    }

    /// With a node-local mirror (`{host}` in `--storage`): after a commit, removes from this
    /// host's folder what no line of the manifest keeps, after this rank's queued writes. Every
    /// rank of the host may ask; one collects at a time, under the chunk lock taken
    /// exclusively, and none while a rank of the host writes a snapshot (it then waits for the
    /// next commit). The manifest is read from the shared root, as the supervisor committed it:
    /// one a little older (the next commit already made) only keeps more. Nothing is collected
    /// while the job writes one mirror alone (`writing`: a mirror has failed): the shared
    /// manifest may then be far behind what the ranks wrote.
    func collectHostGarbage(writing: StorageMirrors) {
        guard writing.mirrors.count == 2, let local = snapshots.store.confinedToNodeLocal,
              let reader = snapshots.store.sharedReadOnly else { return }
        queue.async {
            guard let manifest = try? ManifestStore(store: reader).load(repair: false) else { return }
            _ = try? ManifestStore(store: local).garbageCollect(keeping: manifest)
        }
    }

    /// Waits until every queued snapshot has been written or has failed.
    func drain() {
        queue.sync {}
    }

    private func write(_ job: Job) {
        do {
            let store = snapshots.store.writing(only: job.mirrors.mirrors)
            let written = try ChunkedSnapshots(store: store).write(
                job.name, segments: job.uncompressed, generation: job.epoch.rawValue, chunkBytes: chunkBytes, level: level)
            if let faultIndex = job.faultIndex { fireFault(index: faultIndex, control: control) }
            // Report to the program's thread before the ACK: DONE, which the ACK causes,
            // must find the outcome already there.
            completed.withLock { $0.append(.durable(job.epoch)) }
            control.send(.ack(job.epoch, Acknowledgement(
                step: job.step, snapshotBytes: UInt64(written.storedBytes),
                outputOffset: job.outputOffset, delivered: job.delivered, changes: job.changes,
                logicalBytes: UInt64(written.logicalBytes), chunks: UInt32(written.index.chunks.count),
                chunksReused: UInt32(written.reusedCount), logPosition: job.logPosition, stateBytes: job.stateBytes, inFlightBytes: job.inFlightBytes,
                dependencies: job.dependencies, mirrors: job.mirrors)))
        } catch {
            completed.withLock { $0.append(.failed(job.epoch)) }
            let failed = error.isMirrorFailure ? error.mirror.map { StorageMirrors([$0]) } ?? [] : []
            control.send(.snapshotFailed(job.epoch, reason: "\(error)", failedMirrors: failed))
        }
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
