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
    /// The most incarnations a job's processes reach, all ranks' restarts together (a
    /// resume numbers its processes above the newest found, which must leave room).
    static let incarnationsMax = UInt32.max / 2
    /// The most rounds a job reaches (epochs; folder names past it are not the job's).
    static let epochsMax = UInt64(Int32.max)

    /// Starts a new job in `configuration.runDirectory` and supervises it to its end.
    /// Throws a `LifelineError` with one clear line when it cannot start or cannot finish.
    /// Under `--on-host-loss shrink`, a lost host whose ranks the hosts left cannot take makes
    /// the job continue on fewer ranks in this call, as `resume` with another rank count would.
    public static func run(_ configuration: JobConfiguration) throws -> JobOutcome {
        try continueOnFewerRanks(after: try start(configuration))
    }

    /// Starts a new job and supervises it until it ends or stops; returns the locks it took,
    /// for a continuation on fewer ranks.
    private static func start(_ configuration: JobConfiguration) throws -> (JobOutcome, JobLocks) {
        let faults = try configuration.validated()
        // Asked before anything is written: a program that cannot shrink is refused now, not
        // when a host is lost.
        let shrinkTakesMessages: Bool?
        do {
            shrinkTakesMessages = try askShrinkable(configuration)
        } catch {
            throw LifelineError(.configuration, "--on-host-loss shrink: \(error.message); use --on-host-loss wait or fail")
        }
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
        let locks = JobLocks()
        locks.add([try lockRunDirectory(configuration.runDirectory)])
        let store: MirroredStore
        do {
            store = try openStore(configuration)
            locks.add(try lockStorageRoots(store))
            if (try? ManifestStore(store: store).load()) ?? nil != nil {
                throw LifelineError(.configuration,
                    "the storage roots already hold a job's manifest: choose empty folders for --storage")
            }
        } catch {
            // A refused job leaves nothing behind: not even the run directory it created.
            if createdRunDirectory { try? fileManager.removeItem(atPath: configuration.runDirectory) }
            throw error
        }
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
        supervisor.shrinkTakesMessages = shrinkTakesMessages
        return (try supervisor.run(), locks)
    }

    /// Under `--on-host-loss shrink`: asks the program whether its state can be redistributed
    /// (`ResizeProbe`) and returns whether it takes messages in flight; throws why it cannot.
    /// Nil under the other policies.
    private static func askShrinkable(_ configuration: JobConfiguration) throws(LifelineError) -> Bool? {
        guard configuration.onHostLoss == .shrink else { return nil }
        let refuse = { (reason: String) in LifelineError(.configuration, reason) }
        let answer: ResizeProbe.Answer
        do {
            answer = try ResizeProbe.ask(
                program: configuration.program, arguments: configuration.arguments, size: max(1, configuration.rankCount - 1))
        } catch let error as LifelineError {
            throw refuse(error.message)
        } catch {
            throw refuse("\(error)")
        }
        switch answer {
        case .redistributable(let takesMessages):
            return takesMessages
        case .notRedistributable(let type):
            throw refuse("the program's state \(type) does not conform to Redistributable, so the job cannot continue on fewer ranks")
        case .calledFirst(let call):
            throw refuse("the program calls comm.\(call) before comm.restore(_:), so it cannot say whether its state can be redistributed")
        }
    }

    /// Continues a job that a lost host stopped to shrink (`JobOutcome.shrink`) on the ranks
    /// the hosts left hold, from its newest line, for as long as hosts are lost; the outcome
    /// counts the failures and recoveries of every part (the shrink is one of each).
    /// The first part's locks are kept through every part: this process drives the job all along.
    private static func continueOnFewerRanks(after first: (JobOutcome, JobLocks)) throws -> JobOutcome {
        var (outcome, locks) = first
        while let shrink = outcome.shrink {
            let next: JobOutcome
            (next, locks) = try resumeOnce(
                runDirectory: outcome.runDirectory, rankCount: shrink.rankCount, hosts: shrink.hosts, held: locks)
            var total = JobOutcome(
                rankCount: next.rankCount, epochsCommitted: next.epochsCommitted, failures: outcome.failures + next.failures,
                recoveries: outcome.recoveries + 1 + next.recoveries, runDirectory: next.runDirectory,
                stoppedBySignal: next.stoppedBySignal)
            total.shrink = next.shrink
            outcome = total
        }
        withExtendedLifetime(locks) {}
        return outcome
    }

    /// Continues the job in `runDirectory` from its newest committed line, with the faults in
    /// `injections` (those of the original run are not fired again).
    ///
    /// `rankCount`, when given and not the job's, resizes the job: the line is restored onto
    /// that many ranks by the program's `Redistributable` state. Before anything is written the
    /// line is checked (every rank wrote it, at one step) and the program is asked whether it
    /// can (`ResizeProbe`); a refusal throws one line and leaves the run directory as it was.
    ///
    /// `hosts`, when given, replace the job's hosts (a job on several hosts that lost one).
    ///
    /// `walltime`, when given, replaces the job's walltime from this resume on (it is saved in
    /// `job.json`): a job resumed in a new batch allocation gets that allocation's limit.
    public static func resume(
        runDirectory: String, injections: [String] = [], rankCount: Int? = nil, hosts: [JobConfiguration.Host]? = nil,
        walltime: Walltime? = nil
    ) throws -> JobOutcome {
        try continueOnFewerRanks(after: try resumeOnce(
            runDirectory: runDirectory, injections: injections, rankCount: rankCount, hosts: hosts, walltime: walltime))
    }

    /// A resumed job's walltime, in place of the one it was started with.
    public enum Walltime: Sendable, Equatable {
        /// No walltime: the job runs until it ends.
        case none
        /// A checkpoint and a stop this many seconds after each start or resume.
        case seconds(Double)
    }

    /// Resumes a job once, until it ends or stops; `held`: the locks of the part before, in this
    /// process (none: they are taken). Returns the locks, for the part after.
    private static func resumeOnce(
        runDirectory: String, injections: [String] = [], rankCount: Int?, hosts: [JobConfiguration.Host]?,
        walltime: Walltime? = nil, held: JobLocks? = nil
    ) throws -> (JobOutcome, JobLocks) {
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path
        var configuration = try JobConfiguration.load(runDirectory: path)
        configuration.injections = injections
        if let hosts { configuration.hosts = hosts }
        if let rankCount, rankCount < 1 {
            throw LifelineError(.configuration, "-n \(rankCount): a job runs on at least one rank")
        }
        if case .seconds(let seconds) = walltime, !(seconds > 0 && seconds.isFinite) {
            throw LifelineError(.configuration, "--walltime \(seconds) s: a walltime is a positive duration such as 90s, 30m or 2h, or none")
        }
        var target = configuration
        target.rankCount = rankCount ?? configuration.rankCount
        let faults = try target.validated()  // injections name the ranks of the job as resumed
        let locks = held ?? JobLocks()
        if held == nil { locks.add([try lockRunDirectory(path)]) }
        let store = try openStore(configuration)
        if held == nil { locks.add(try lockStorageRoots(store)) }
        var loaded: Manifest?
        do {
            loaded = try ManifestStore(store: store).load()
        } catch where error.code == .lost {
            throw LifelineError(.storage,
                "cannot resume \(path): its manifest is lost on both mirrors (\(error.message)), so no committed line can be found; `lifeline storage verify` says what else is damaged, and `lifeline run` starts the job anew")
        } catch {
            throw LifelineError(.storage, "cannot read the manifest of \(path): \(error)")
        }
        guard var manifest = loaded else {
            throw LifelineError(.storage, "\(path) has no manifest on either storage root: it cannot be resumed")
        }
        guard !manifest.finished else {
            throw LifelineError(.configuration, "the job in \(path) already finished: there is nothing to resume")
        }
        if manifest.rankCount != configuration.rankCount, manifest.committed.contains(where: { $0.rankCount != nil }) {
            // A resize whose manifest was committed before job.json was written: the manifest
            // is the source of truth.
            configuration.rankCount = manifest.rankCount
            try configuration.save()
        }
        guard manifest.rankCount == configuration.rankCount else {
            throw LifelineError(.configuration,
                "\(path)/job.json says \(configuration.rankCount) ranks but the job's manifest \(manifest.rankCount): restore rankCount \(manifest.rankCount) in job.json to resume it")
        }
        switch walltime {
        case nil: break
        case .none?: configuration.walltimeSeconds = nil
        case .seconds(let seconds)?: configuration.walltimeSeconds = seconds
        }
        var resize: (from: Int, line: CommittedLine?)?
        if let rankCount, rankCount != manifest.rankCount {
            let line = try checkResizable(manifest, store: store, configuration: configuration, to: rankCount)
            resize = (manifest.rankCount, line)
            manifest = manifest.resized(to: rankCount, from: line)
            do {
                try ManifestStore(store: store).commit(&manifest)
            } catch {
                throw LifelineError(.storage,
                    "cannot record the resize in the manifest: \(error); `lifeline resume` continues on the rank count the manifest holds (\(rankCount) if one mirror took the resize)")
            }
            configuration.rankCount = rankCount
            try configuration.save()
        } else if hosts != nil || walltime != nil {
            try configuration.save()
        }
        var shrinkTakesMessages: Bool?
        do {
            shrinkTakesMessages = try askShrinkable(configuration)
        } catch {
            FileHandle.standardError.write(Data("lifeline: --on-host-loss shrink: \(error.message): a lost host's ranks will double up instead\n".utf8))
        }
        // Above every incarnation the job has had (its output files, its lines and records, the
        // names of its log segments): a process below one would be fenced off its own log.
        let outputs = (try? FileManager.default.contentsOfDirectory(atPath: path + "/output")) ?? []
        let recorded = manifest.committed.flatMap(\.members).map(\.incarnation)
            + (manifest.independent ?? []).flatMap { $0 }.map(\.incarnation)
        let incarnations = outputs.compactMap { name -> UInt32? in
            let parts = name.split(separator: ".")
            return parts.count == 3 ? UInt32(parts[1]) : nil
        } + recorded.compactMap { UInt32(exactly: $0) } + [MessageLog.newestIncarnation(store: store)].compactMap { $0 }
        // Names read from the run directory: one past every count a job reaches is a stray
        // file (or damage), said in one line rather than overflowing the numbering.
        let newestIncarnation = incarnations.max() ?? 0
        guard newestIncarnation < Self.incarnationsMax else {
            throw LifelineError(.storage,
                "\(path) names incarnation \(newestIncarnation) (in output/, the manifest or a log's segments), past the \(Self.incarnationsMax) a job reaches: remove the stray file that names it")
        }
        let epochs = store.list(ManifestStore.epochsFolder).compactMap { UInt64($0) }
        if let stray = epochs.first(where: { $0 > Self.epochsMax }) {
            throw LifelineError(.storage,
                "\(path)'s storage holds epochs/\(stray), past the \(Self.epochsMax) rounds a job reaches: move that folder away from both storage roots")
        }
        let supervisor = try Supervisor(
            configuration: configuration, faults: faults, manifest: manifest, store: store,
            incarnation: incarnations.isEmpty ? 0 : newestIncarnation + 1, clockOffset: EventLog.lastTime(path: path + "/events.jsonl"),
            startedEpoch: epochs.max() ?? 0)
        supervisor.shrinkTakesMessages = shrinkTakesMessages
        supervisor.events.record("resume", ["epoch": .int(Int(manifest.newestLine?.epoch ?? 0))])
        if let resize {
            supervisor.events.record("resize", [
                "from": .int(resize.from), "to": .int(configuration.rankCount),
                "epoch": .int(Int(resize.line?.epoch ?? 0)), "step": .int(resize.line?.step ?? -1),
            ])
        }
        return (try supervisor.run(), locks)
    }

    /// The line a resize to `rankCount` ranks starts from (nil: none is committed, and the job
    /// starts anew on `rankCount` ranks), or a `LifelineError` saying why the job cannot be
    /// resized: the line is not one every rank wrote at one step, the program's state does not
    /// conform to `Redistributable`, or messages in flight at the line would be lost.
    private static func checkResizable(
        _ manifest: Manifest, store: MirroredStore, configuration: JobConfiguration, to rankCount: Int
    ) throws -> CommittedLine? {
        let manifests = ManifestStore(store: store)
        let refuse = { (reason: String) in
            LifelineError(.configuration,
                "cannot resume the job of \(manifest.rankCount) ranks on \(rankCount): \(reason); nothing was changed")
        }
        if manifest.independent != nil {
            throw refuse("its checkpoints are independent, so no line is at one step; resume it on \(manifest.rankCount) ranks")
        }
        let newest = StorageRoots.partnered(configuration.storageRoots)
            ? Supervisor.newestUnreadLine(manifest) : manifests.newestIntactLine(manifest).line
        guard let line = newest else { return nil }
        if let reason = manifests.resizeRefusal(line, of: manifest) { throw refuse(reason) }
        let answer: ResizeProbe.Answer
        do {
            answer = try ResizeProbe.ask(program: configuration.program, arguments: configuration.arguments, size: rankCount)
        } catch let error as LifelineError {
            throw refuse(error.message)
        }
        switch answer {
        case .notRedistributable(let type):
            throw refuse("the program's state \(type) does not conform to Redistributable; resume it on \(manifest.rankCount(of: line)) ranks")
        case .calledFirst(let call):
            throw refuse("the program calls comm.\(call) before comm.restore(_:), so it cannot say whether its state can be redistributed")
        case .redistributable(let takesMessages):
            // Known for a line `resizeRefusal` accepts.
            let inFlight = manifests.inFlightBytes(line) ?? 0
            if inFlight > 0, !takesMessages {
                throw refuse("\(inFlight) bytes of messages were in flight at line \(line.epoch), and the program's state does not take them (Redistributable.takesMessagesInFlight)")
            }
        }
        return line
    }

    /// Takes the run directory's lock (held until the process ends), so two supervisors never
    /// drive one job.
    static func lockRunDirectory(_ path: String) throws -> Int32 {
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
            return try StorageRoots.open(configuration.storageRoots, fills: false)
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
    }
}

/// The locks a supervisor holds while it drives a job (its run directory's and both storage
/// roots', `flock`), released when this goes. A job that continues on fewer ranks in the same
/// process keeps them from one part to the next: released and taken again, the run directory's
/// was now and then still held by a child being spawned at that moment, which holds a copy of
/// the descriptor until its exec closes it, and the continuation was refused.
private final class JobLocks {
    private var descriptors: [Int32] = []

    /// Holds `descriptors` too.
    func add(_ descriptors: [Int32]) { self.descriptors += descriptors }

    deinit { descriptors.forEach { close($0) } }
}
