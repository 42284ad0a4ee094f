#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage

/// A failed mirror is a state, not a loop of aborted rounds: what happens when a write to one
/// mirror fails, and when the failed mirror is tried again, is decided by the machine's
/// `MirrorPolicy` (LifelineCore); this performs it — the stores written, the probes, the copies
/// and the manifest writes.
///
/// While one mirror has failed, the ranks write their snapshots to the other alone, the
/// manifest is written there, and each line committed so is marked with the one mirror that
/// holds it (`onlyOn`). The newest line on both mirrors stays in the manifest until the failed
/// mirror is resynchronised, so a second failure still finds a line. When the other mirror
/// fails too, the job stops on its last committed line.
extension Supervisor {
    /// A write to `mirror` failed with `reason` (a rank's snapshot or log, `byRank`, or the
    /// manifest): degrade to the other mirror, or stop when that one has failed already.
    func mirrorFailed(_ mirror: Mirror, reason: String, byRank: Bool = false) throws {
        let (decision, actions) = machine.writeFailed(
            StorageMirrors([mirror]), reason: reason, now: now, newestLine: manifest.newestLine?.epoch, byRank: byRank)
        switch decision {
        case .nothing:
            return  // a write begun before the degrade
        case .stop(let first):
            try bothMirrorsFailed(second: mirror, first: first, reason: reason)
        case .degrade(let writing):
            store = bothMirrors.writing(only: writing.mirrors)
            manifests = ManifestStore(store: store)
            events.record("mirror_degraded", [
                "mirror": .string(mirror.rawValue), "root": .string(bothMirrors.root(mirror)), "reason": .string(reason),
            ])
            if machine.mirrors.holdsManifestOnly {
                warn("this machine's folder \(bothMirrors.root(mirror)) failed: \(reason); the manifest is written to "
                    + "\(bothMirrors.root(mirror.other)) alone until it takes writes again (the ranks' copies, on their hosts "
                    + "and their partners, go on as before)")
            } else {
                warn("mirror \(mirror.label) (\(bothMirrors.root(mirror))) failed: \(reason); checkpoints commit on mirror "
                    + "\(mirror.other.label) alone until \(mirror.label) takes writes again (the newest line on both mirrors is kept)")
            }
            try perform(actions)
        }
    }

    /// The mirror still written failed too: stop every rank on the last committed line and
    /// say how to go on.
    private func bothMirrorsFailed(second mirror: Mirror, first: MirrorPolicy.Failure?, reason: String) throws -> Never {
        let earlier = first.map { "mirror \($0.mirror.mirrors[0].label): \($0.reason)" } ?? "mirror \(mirror.other.label) earlier"
        stopSurvivors()
        let epoch = manifest.newestLine?.epoch ?? 0
        events.record("mirrors_failed", ["mirror": .string(mirror.rawValue), "reason": .string(reason), "epoch": .int(Int(clamping: epoch))])
        throw LifelineError(.storage,
            "both storage mirrors failed (\(earlier); mirror \(mirror.label): \(reason)): the job stopped on its last "
            + "committed line, epoch \(epoch); once a mirror takes writes again, continue with: lifeline resume "
            + configuration.runDirectory)
    }

    /// Commits `next` on the mirrors written now. A mirror that fails the write is degraded
    /// and the commit tried again on the other one; throws when that fails too (or the error
    /// is not a mirror's). The manifest's generation advances even when the write fails, so a
    /// later commit never reuses the generation of a copy this one left behind.
    func commitManifest(_ next: inout Manifest) throws {
        do throws(StorageError) {
            try manifests.commit(&next)
            durableLines = next.committed
        } catch where error.isMirrorFailure && store.mirrors.count == 2 {
            manifest.generation = next.generation
            try mirrorFailed(error.mirror!, reason: error.message)
            do throws(StorageError) {
                try manifests.commit(&next)
                durableLines = next.committed
            } catch {
                manifest.generation = next.generation
                if error.isMirrorFailure { try bothMirrorsFailed(second: error.mirror!, first: machine.mirrors.failed, reason: error.message) }
                throw error
            }
        } catch {
            manifest.generation = next.generation
            if error.isMirrorFailure { try bothMirrorsFailed(second: error.mirror!, first: machine.mirrors.failed, reason: error.message) }
            throw error
        }
    }

    /// Commits `next` and makes it the manifest in force; a write that fails short of
    /// stopping the job (both mirrors failed: thrown) is said as `failing: error`, and the
    /// manifest in force stays as it was.
    func commitManifestOrWarn(_ next: Manifest, failing what: String) throws {
        var next = next
        do {
            try commitManifest(&next)
            manifest = next
        } catch let error as LifelineError {
            throw error
        } catch {
            warn("\(what): \(error)")
        }
    }

    /// Between rounds, when the machine says it is due: tries the failed mirror and, when it
    /// takes writes, copies to it what the kept lines reference and ends the degraded state.
    /// Also resynchronises degraded commits a previous run left (at a resume).
    func resynchroniseIfDue() {
        guard machine.resyncDue(now: now, degradedCommits: manifest.hasDegradedCommits) else { return }
        // A drain under way writes the mirrors its round was acknowledged on (one, while
        // degraded), and its end records the line on disk: marked on both by a resync before it
        // ends, the line would count as the newest on both mirrors, and the lines really on both
        // could be collected. The resync waits for the drains to end.
        guard drains.pinned.isEmpty else { return }
        if let failedMirror {
            do throws(StorageError) {
                try bothMirrors.probe(failedMirror.mirror)
            } catch {
                return
            }
        }
        let started = now
        defer { machine.resyncTook(now - started, now: now) }
        // Logs trimmed while the mirror was not written left older segments there. (Not with a
        // node-local root: this process sees its own host's folder only, not the ranks' logs.)
        if let failedMirror, bothMirrors.nodeLocal == nil {
            for rank in 0..<configuration.rankCount {
                guard (try? MessageLog.pruneStale(store: bothMirrors, name: MessageLog.name(ofRank: rank), on: failedMirror.mirror)) != nil
                else { return }
            }
        }
        let source = failedMirror?.mirror.other ?? manifest.committed.lazy.compactMap(\.onlyOn).first
            ?? (manifest.independent ?? []).joined().lazy.compactMap(\.onlyOn).first ?? .a
        // Holding the manifest alone (partner hosts), the mirrors take it again and nothing else.
        let snapshots = machine.mirrors.holdsManifestOnly ? [] : referencedSnapshots(manifest)
        guard let copied = copyToBothMirrors(snapshots, from: source) else { return }
        var next = manifest
        // Holding the manifest alone, lines marked with one mirror (by an earlier build) are on
        // one host: nothing here copied them, and they stay marked.
        for position in next.committed.indices where !machine.mirrors.holdsManifestOnly { next.committed[position].onlyOn = nil }
        if var records = next.independent {
            for rank in records.indices {
                for position in records[rank].indices { records[rank][position].onlyOn = nil }
            }
            next.independent = records
        }
        do throws(StorageError) {
            try ManifestStore(store: bothMirrors).commit(&next)
            durableLines = next.committed
        } catch {
            manifest.generation = next.generation
            return
        }
        manifest = next
        let (ended, actions) = machine.resynchronised()
        store = bothMirrors
        manifests = ManifestStore(store: store)
        if let ended {
            let mirror = ended.mirror.mirrors[0]
            events.record("mirror_resynced", [
                "mirror": .string(mirror.rawValue), "files": .int(copied), "seconds": .double(now - started),
                "degraded_s": .double(now - ended.since),
            ])
            if machine.mirrors.holdsManifestOnly {
                warn("this machine's folder \(bothMirrors.root(mirror)) takes writes again: the manifest is written to both folders again")
            } else {
                warn("mirror \(mirror.label) takes writes again: resynchronised (\(copied) files copied); checkpoints commit on both mirrors again")
            }
        } else {
            events.record("mirror_resynced", ["files": .int(copied), "seconds": .double(now - started)])
            warn("the lines an earlier run committed on one mirror are on both again (\(copied) files copied)")
        }
        try? perform(actions)  // sends only
    }

    /// The snapshot files the manifest's lines and independent records reference.
    private func referencedSnapshots(_ manifest: Manifest) -> [String] {
        // A line in memory alone (`--levels memory,disk`) has on disk what its drains wrote.
        let lines = manifest.committed.flatMap { line in
            line.members.map(\.snapshot).filter { line.isOnDisk || bothMirrors.exists($0) }
        }
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
        faultSchedule.fired(index)
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
