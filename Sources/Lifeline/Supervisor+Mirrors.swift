#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage

/// A failed mirror is a state, not a loop of aborted rounds.
///
/// When a write to one mirror fails as a failing disk does (full, read-only, I/O error; a
/// rank's snapshot or the manifest), the job goes on with *degraded* commits: the ranks write
/// their snapshots to the other mirror alone (`writeMirrors`), the manifest is written there,
/// and each line committed so is marked with the one mirror that holds it (`onlyOn`). The
/// newest line on both mirrors stays in the manifest until the failed mirror is
/// resynchronised, so a second failure still finds a line. Every second between rounds, the
/// supervisor tries the failed mirror; once it takes writes again, every file the kept lines
/// reference is copied to it, the manifest is written to both, and the ranks write both again.
/// When the other mirror fails too, the job stops on its last committed line.
extension Supervisor {
    /// Seconds between two tries of a failed mirror.
    static let resyncPeriodSeconds = 1.0

    /// A write to `mirror` failed with `reason` (a rank's snapshot, or the manifest): degrade
    /// to the other mirror, or stop when that one has failed already.
    func mirrorFailed(_ mirror: Mirror, reason: String) throws {
        guard store.mirrors.contains(mirror) else { return }  // a write begun before the degrade
        guard store.mirrors.count == 2 else {
            try bothMirrorsFailed(second: mirror, reason: reason)
        }
        failedMirror = (mirror, reason, now)
        store = bothMirrors.writing(only: [mirror.other])
        manifests = ManifestStore(store: store)
        nextResyncAt = now + Self.resyncPeriodSeconds
        events.record("mirror_degraded", [
            "mirror": .string(mirror.rawValue), "root": .string(bothMirrors.root(mirror)), "reason": .string(reason),
        ])
        warn("mirror \(mirror.label) (\(bothMirrors.root(mirror))) failed: \(reason); checkpoints commit on mirror "
            + "\(mirror.other.label) alone until \(mirror.label) takes writes again (the newest line on both mirrors is kept)")
        for rank in slots.indices { send(.writeMirrors(StorageMirrors(store.mirrors)), to: rank) }
    }

    /// The mirror still written failed too: stop every rank on the last committed line and
    /// say how to go on.
    private func bothMirrorsFailed(second mirror: Mirror, reason: String) throws -> Never {
        let first = failedMirror.map { "mirror \($0.mirror.label): \($0.reason)" } ?? "mirror \(mirror.other.label) earlier"
        stopSurvivors()
        let epoch = manifest.newestLine?.epoch ?? 0
        events.record("mirrors_failed", ["mirror": .string(mirror.rawValue), "reason": .string(reason), "epoch": .int(Int(epoch))])
        throw LifelineError(.storage,
            "both storage mirrors failed (\(first); mirror \(mirror.label): \(reason)): the job stopped on its last "
            + "committed line, epoch \(epoch); once a mirror takes writes again, continue with: lifeline resume "
            + configuration.runDirectory)
    }

    /// The commit's mirror: the one mirror every snapshot of the line is on (nil: both), or
    /// nil together with false when the snapshots share no mirror.
    func commitMirror(_ held: [StorageMirrors]) -> (onlyOn: Mirror?, shared: Bool) {
        let common = held.reduce(StorageMirrors(store.mirrors)) { $0.intersection($1) }
        switch common.mirrors.count {
        case 2: return (nil, true)
        case 1: return (common.mirrors[0], true)
        default: return (nil, false)
        }
    }

    /// Commits `next` on the mirrors written now. A mirror that fails the write is degraded
    /// and the commit tried again on the other one; throws when that fails too (or the error
    /// is not a mirror's). The manifest's generation advances even when the write fails, so a
    /// later commit never reuses the generation of a copy this one left behind.
    func commitManifest(_ next: inout Manifest) throws {
        do throws(StorageError) {
            try manifests.commit(&next)
        } catch where error.isMirrorFailure && store.mirrors.count == 2 {
            manifest.generation = next.generation
            try mirrorFailed(error.mirror!, reason: error.message)
            do throws(StorageError) {
                try manifests.commit(&next)
            } catch {
                manifest.generation = next.generation
                if error.isMirrorFailure { try bothMirrorsFailed(second: error.mirror!, reason: error.message) }
                throw error
            }
        } catch {
            manifest.generation = next.generation
            if error.isMirrorFailure { try bothMirrorsFailed(second: error.mirror!, reason: error.message) }
            throw error
        }
    }

    /// Between rounds, at most every `resyncPeriodSeconds`: tries the failed mirror and, when it
    /// takes writes, copies to it what the kept lines reference and ends the degraded state.
    /// Also resynchronises degraded commits a previous run left (at a resume).
    func resynchroniseIfDue() {
        guard failedMirror != nil || manifest.hasDegradedCommits, now >= nextResyncAt, stoppedOutcome == nil,
              machine.recoveryStartedAt == nil, machine.replaying == nil, machine.starting.isEmpty, machine.freezing == nil
        else { return }
        if !independent {
            guard case .idle = coordinator.state else { return }  // no snapshot being written
        }
        nextResyncAt = now + Self.resyncPeriodSeconds
        if let failedMirror {
            do throws(StorageError) {
                try bothMirrors.probe(failedMirror.mirror)
            } catch {
                return
            }
        }
        let started = now
        defer { resynchronisationTook(now - started) }
        if let failedMirror {
            // Logs trimmed while the mirror was not written left older segments there.
            for rank in 0..<configuration.rankCount {
                guard (try? MessageLog.pruneStale(store: bothMirrors, name: MessageLog.name(ofRank: rank), on: failedMirror.mirror)) != nil
                else { return }
            }
        }
        let source = failedMirror?.mirror.other ?? manifest.committed.lazy.compactMap(\.onlyOn).first
            ?? (manifest.independent ?? []).joined().lazy.compactMap(\.onlyOn).first ?? .a
        guard let copied = copyToBothMirrors(referencedSnapshots(manifest), from: source) else { return }
        var next = manifest
        for position in next.committed.indices { next.committed[position].onlyOn = nil }
        if var records = next.independent {
            for rank in records.indices {
                for position in records[rank].indices { records[rank][position].onlyOn = nil }
            }
            next.independent = records
        }
        do throws(StorageError) {
            try ManifestStore(store: bothMirrors).commit(&next)
        } catch {
            manifest.generation = next.generation
            return
        }
        manifest = next
        let mirror = failedMirror?.mirror
        let degradedSeconds = failedMirror.map { now - $0.since }
        failedMirror = nil
        store = bothMirrors
        manifests = ManifestStore(store: store)
        if let mirror, let degradedSeconds {
            events.record("mirror_resynced", [
                "mirror": .string(mirror.rawValue), "files": .int(copied), "seconds": .double(now - started),
                "degraded_s": .double(degradedSeconds),
            ])
            warn("mirror \(mirror.label) takes writes again: resynchronised (\(copied) files copied); checkpoints commit on both mirrors again")
        } else {
            events.record("mirror_resynced", ["files": .int(copied), "seconds": .double(now - started)])
            warn("the lines an earlier run committed on one mirror are on both again (\(copied) files copied)")
        }
        for rank in slots.indices { send(.writeMirrors(.both), to: rank) }
    }

    /// The loop did not read the ranks while the copies were made: their silence is not theirs
    /// (heartbeats are judged from now on), and a long copy that failed is not tried again at
    /// once.
    private func resynchronisationTook(_ seconds: Double) {
        guard seconds > 0.5 else { return }
        for rank in slots.indices where machine.ranks[rank].alive { machine.heard(from: rank, now: now) }
        if failedMirror != nil { nextResyncAt = now + max(Self.resyncPeriodSeconds, 4 * seconds) }
    }

    /// The snapshot files the manifest's lines and independent records reference.
    private func referencedSnapshots(_ manifest: Manifest) -> [String] {
        let lines = manifest.committed.flatMap(\.members).map(\.snapshot)
        let records = (manifest.independent ?? []).joined().compactMap(\.snapshot)
        return Array(Set(lines + records)).sorted()
    }

    /// Copies each snapshot (index and chunks) from `source`, the mirror written while the
    /// other had failed, to the other mirror where its copy differs or is missing (a copy there
    /// under the same name may be stale: a name written again since). Returns how many copies
    /// it wrote, or nil when one could not be read or written.
    func copyToBothMirrors(_ snapshots: [String], from source: Mirror) -> Int? {
        let chunked = ChunkedSnapshots(store: bothMirrors.writing(only: [source]))
        var copied = 0
        for snapshot in snapshots {
            guard let wrote = try? bothMirrors.copy(snapshot, from: source, to: source.other),
                  let index = try? chunked.index(snapshot) else { return nil }
            copied += wrote ? 1 : 0
            for chunk in Set(index.chunks.map { chunked.chunkName($0.hash) }).sorted() {
                guard let wrote = try? bothMirrors.copy(chunk, from: source, to: source.other) else { return nil }
                copied += wrote ? 1 : 0
            }
        }
        return copied
    }

    // MARK: Injected mirror failures

    /// Fires a `fail:mirror=` fault: every write to that mirror fails from now on (for its
    /// duration), in the supervisor and in every rank.
    func failMirror(_ index: Int, mirror: Mirror, seconds: Double?) {
        faultFired[index] = true
        let path = bothMirrors.root(mirror) + "/" + MirroredStore.failWritesMarker
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        if fd >= 0 { close(fd) }
        mirrorFaults.append((index, mirror, seconds.map { now + $0 }))
        events.record("fault_injected", ["spec": .string("\(faults[index])"), "marker": .bool(fd >= 0)])
        if fd < 0 { warn("--inject \(faults[index]): cannot create \(path)") }
    }

    /// Ends the `fail:mirror=` faults whose duration is over (all of them when `all`, as the
    /// supervisor stops: a resume starts with both mirrors taking writes).
    func clearMirrorFaults(all: Bool = true) {
        let time = now
        mirrorFaults.removeAll { fault in
            guard all || fault.until.map({ time >= $0 }) == true else { return false }
            unlink(bothMirrors.root(fault.mirror) + "/" + MirroredStore.failWritesMarker)
            if !all { events.record("fault_cleared", ["spec": .string("\(faults[fault.index])")]) }
            return true
        }
    }
}
