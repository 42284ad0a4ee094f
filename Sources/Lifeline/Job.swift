#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation
import LifelineCore
import LifelineStorage

/// What a launcher uses: start a job and supervise it to its end, or resume one whose
/// supervisor died. This is what `lifeline run` and `lifeline resume` call.
public enum Job {
    /// Starts a new job in `configuration.runDirectory` and supervises it to its end.
    /// Throws a `LifelineError` with one clear line when it cannot start or cannot finish.
    public static func run(_ configuration: JobConfiguration) throws -> JobOutcome {
        let faults = try configuration.validated()
        let fileManager = FileManager.default
        if fileManager.fileExists(atPath: configuration.runDirectory + "/job.json") {
            throw LifelineError(.configuration,
                "\(configuration.runDirectory) already holds a job: `lifeline resume` it or choose another --run-dir")
        }
        let createdRunDirectory = !fileManager.fileExists(atPath: configuration.runDirectory)
        do {
            try fileManager.createDirectory(atPath: configuration.runDirectory + "/output", withIntermediateDirectories: true)
        } catch {
            throw LifelineError(.configuration, "cannot create the run directory \(configuration.runDirectory): \(error.localizedDescription)")
        }
        let lock = try lockRunDirectory(configuration.runDirectory)
        defer { close(lock) }
        let store: MirroredStore
        let storageLocks: [Int32]
        do {
            store = try openStore(configuration)
            storageLocks = try lockStorageRoots(store)
            if (try? ManifestStore(store: store).load()) ?? nil != nil {
                storageLocks.forEach { close($0) }
                throw LifelineError(.configuration,
                    "the storage roots already hold a job's manifest: choose empty folders for --storage")
            }
        } catch {
            // A refused job leaves nothing behind: not even the run directory it created.
            if createdRunDirectory { try? fileManager.removeItem(atPath: configuration.runDirectory) }
            throw error
        }
        defer { storageLocks.forEach { close($0) } }
        let manifests = ManifestStore(store: store)
        var manifest = Manifest(jobID: Supervisor.randomHex(bytes: 8), rankCount: configuration.rankCount)
        do {
            try manifests.commit(&manifest)
        } catch {
            throw LifelineError(.storage, "cannot write the first manifest: \(error)")
        }
        try configuration.save()
        let supervisor = try Supervisor(
            configuration: configuration, faults: faults, manifest: manifest, store: store, incarnation: 0, clockOffset: 0)
        return try supervisor.run()
    }

    /// Continues the job in `runDirectory` from its newest committed line, with the faults in
    /// `injections` (those of the original run are not fired again).
    /// `rankCount`, when given, must match the job's.
    public static func resume(runDirectory: String, injections: [String] = [], rankCount: Int? = nil) throws -> JobOutcome {
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path
        var configuration = try JobConfiguration.load(runDirectory: path)
        configuration.injections = injections
        if let rankCount, rankCount != configuration.rankCount {
            throw LifelineError(.configuration,
                "the job in \(path) runs on \(configuration.rankCount) ranks, not \(rankCount): resume it with -n \(configuration.rankCount)")
        }
        let faults = try configuration.validated()
        let lock = try lockRunDirectory(path)
        defer { close(lock) }
        let store = try openStore(configuration)
        let storageLocks = try lockStorageRoots(store)
        defer { storageLocks.forEach { close($0) } }
        let loaded: Manifest?
        do {
            loaded = try ManifestStore(store: store).load()
        } catch where error.code == .lost {
            throw LifelineError(.storage,
                "cannot resume \(path): its manifest is lost on both mirrors (\(error.message)), so no committed line can be found; `lifeline storage verify` says what else is damaged, and `lifeline run` starts the job anew")
        } catch {
            throw LifelineError(.storage, "cannot read the manifest of \(path): \(error)")
        }
        guard let manifest = loaded else {
            throw LifelineError(.storage, "\(path) has no manifest on either storage root: it cannot be resumed")
        }
        guard !manifest.finished else {
            throw LifelineError(.configuration, "the job in \(path) already finished: there is nothing to resume")
        }
        guard manifest.rankCount == configuration.rankCount else {
            throw LifelineError(.configuration,
                "\(path)/job.json says \(configuration.rankCount) ranks but the job's manifest \(manifest.rankCount): restore rankCount \(manifest.rankCount) in job.json to resume it")
        }
        let outputs = (try? FileManager.default.contentsOfDirectory(atPath: path + "/output")) ?? []
        let incarnation = outputs.compactMap { name -> UInt32? in
            let parts = name.split(separator: ".")
            return parts.count == 3 ? UInt32(parts[1]) : nil
        }.max().map { $0 + 1 } ?? 0
        let supervisor = try Supervisor(
            configuration: configuration, faults: faults, manifest: manifest, store: store,
            incarnation: incarnation, clockOffset: EventLog.lastTime(path: path + "/events.jsonl"))
        supervisor.events.record("resume", ["epoch": .int(Int(manifest.newestLine?.epoch ?? 0))])
        return try supervisor.run()
    }

    /// Takes the run directory's lock (held until the process ends), so two supervisors never
    /// drive one job.
    private static func lockRunDirectory(_ path: String) throws -> Int32 {
        let lockPath = path + "/lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LifelineError(.configuration, "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        guard lifeline_lock_file(fd) == 0 else {
            close(fd)
            throw LifelineError(.configuration,
                "\(path) is in use by another lifeline process: wait for it to end or choose another run directory")
        }
        return fd
    }

    /// Takes both storage roots' job locks (held until the process ends), so two jobs never
    /// share their mirrors — two started at once on the same `--storage` raced to write the
    /// first manifest, and both ran.
    private static func lockStorageRoots(_ store: MirroredStore) throws -> [Int32] {
        var locks: [Int32] = []
        for mirror in Mirror.allCases {
            let lockPath = store.path(MirroredStore.jobLockFileName, on: mirror)
            // Read-only: a lock needs no write access, and a read-only descriptor does not keep
            // a mount from being made read-only (a failing disk remounted so, say).
            let fd = open(lockPath, O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
            guard fd >= 0, lifeline_lock_file(fd) == 0 else {
                let reason = fd < 0 ? "cannot open \(lockPath): \(String(cString: strerror(errno)))"
                    : "\(store.root(mirror)) is in use by another job: wait for it to end or choose other folders for --storage"
                if fd >= 0 { close(fd) }
                locks.forEach { close($0) }
                throw LifelineError(.configuration, reason)
            }
            locks.append(fd)
        }
        return locks
    }

    private static func openStore(_ configuration: JobConfiguration) throws -> MirroredStore {
        do {
            return try MirroredStore(rootA: configuration.storageRoots[0], rootB: configuration.storageRoots[1])
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
    }
}
