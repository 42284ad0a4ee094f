import Foundation
import LifelineCore
import LifelineStorage

/// Everything `lifeline run` needs to know to start and supervise a job. Saved in the run
/// directory as `job.json`, so `lifeline resume` can continue the job.
public struct JobConfiguration: Codable, Sendable, Equatable {
    /// The checkpoint protocol variant.
    public enum Checkpointing: String, Codable, Sendable, CaseIterable {
        /// Non-blocking coordinated checkpoints (snapshots written in the background).
        case coordinated
        /// The textbook's blocking variant: sends held from capture until `CHECKPOINT_DONE`.
        case blocking
        /// Incremental: a rank that delivered nothing since its last checkpoint keeps it and
        /// writes nothing; the others checkpoint as in `coordinated`.
        case minimal
        /// Uncoordinated: each rank checkpoints on its own schedule (the interval ±25 %); a
        /// failure rolls back the ranks the latest consistent recovery line requires.
        case independent
    }

    /// What is logged of the messages ranks deliver.
    public enum Logging: String, Codable, Sendable, CaseIterable {
        /// Nothing: a failure rolls every rank back to the last committed line.
        case none
        /// Receiver-based pessimistic logging: a crashed rank restarts alone and replays its log.
        case pessimistic
        /// Sender-based logging: payloads stay with the senders, determinants of receives from
        /// any source are logged; a crashed rank restarts alone.
        case senderBased = "sender-based"
        /// Optimistic logging: every message is logged by its receiver, flushed in the
        /// background; a crashed rank replays what reached the disk, and the ranks that depend on
        /// what was lost (orphans) roll back too.
        case optimistic
    }

    /// The program to run on every rank, as resolved (an absolute path).
    public var program: String
    /// Its arguments.
    public var arguments: [String]
    /// The number of ranks.
    public var rankCount: Int
    /// The run directory (absolute).
    public var runDirectory: String
    /// The two stable-storage roots (absolute).
    public var storageRoots: [String]
    /// The checkpoint protocol variant.
    public var checkpointing: Checkpointing
    /// The message logging mode.
    public var logging: Logging
    /// Seconds from the end of one checkpoint round to the start of the next.
    public var intervalSeconds: Double
    /// Faults to inject, in the `--inject` grammar.
    public var injections: [String]
    /// Milliseconds between a rank's heartbeats.
    public var heartbeatMs: Int
    /// A rank silent this long is declared hung and killed.
    public var heartbeatTimeoutMs: Int
    /// How many failures the job survives before it gives up.
    public var maxRestarts: Int
    /// Whether to silence the progress line.
    public var quiet: Bool
    /// `--quiet-ranks`: whether the ranks' standard error stays in `output/` instead of being
    /// forwarded live to the supervisor's as `[rank R] line` (nil: forwarded).
    public var quietRanks: Bool?
    /// Seconds the job may run before it checkpoints and stops (as before a batch limit).
    public var walltimeSeconds: Double?
    /// Whether the interval follows the Young/Daly optimum sqrt(2·C·MTBF) for the measured
    /// checkpoint cost C (`--interval auto`); `intervalSeconds` is then the first interval.
    public var intervalAuto: Bool
    /// The mean time between failures the automatic interval assumes (`--mtbf`).
    public var mtbfSeconds: Double?
    /// Whether ranks write their sends, deliveries and captures to `RUN/trace/` (`--trace-deliveries`).
    public var traceDeliveries: Bool
    /// Bytes of retained messages past which a rank asks for a checkpoint (nil: no maximum).
    public var retainedBytesMax: Int?
    /// Bytes of a rank's message log past which it asks for a checkpoint (nil: no maximum).
    public var logBytesMax: Int?
    /// `--keep K`: committed recovery lines kept (nil: 2, the newest and one to fall back to).
    /// A snapshot is deleted only when no kept line (nor, under independent checkpointing, a
    /// record a line may still use) references it.
    public var keep: Int?
    /// `--keep-logs`: commits do not trim the ranks' message logs, so `lifeline replay` can run
    /// a rank from any kept line (nil: they are trimmed). Needs pessimistic or optimistic logging.
    public var keepLogs: Bool?
    /// Optimistic logging: milliseconds after which buffered log records are flushed (nil: 20).
    public var logFlushMs: Int?
    /// Optimistic logging: bytes of buffered log records that force a flush (nil: 1 MiB).
    public var logFlushBytes: Int?
    /// `--chunk-kib`: the snapshot chunk size in bytes, a multiple of 1 KiB from 4 KiB to 1 GiB
    /// (nil: 4 MiB). Smaller chunks store less after a scattered change; larger ones write and
    /// compress faster.
    public var chunkBytes: Int?
    /// `--zstd-level`: the compression level of snapshot chunks, −7...19 (nil: 1).
    public var compressionLevel: Int?
    /// `--stall-seconds`: the least time without a new safe point after which the supervisor
    /// asks the ranks where they wait (more when the job's usual pace is slower; nil: 10 s).
    /// It reports a stall, and stops a deadlock.
    public var stallSeconds: Double?

    /// The default of `stallSeconds`.
    public static let stallSecondsDefault = 10.0
    /// `--join-timeout`: how long a launched rank has to connect to the supervisor before the
    /// job fails, saying the program does not seem to be a Lifeline program (nil: 60 s).
    public var joinTimeoutSeconds: Double?
    /// The default of `joinTimeoutSeconds`.
    public static let joinTimeoutSecondsDefault = 60.0
    /// What the job does when a rank gets a message again with other bytes than it delivered.
    public enum OnNondeterminism: String, Codable, Sendable {
        /// Stop the job (exit 1): its ranks' states may not fit together.
        case stop
        /// Say so and go on.
        case warn
    }
    /// `--on-nondeterminism`: nil is `stop`.
    public var onNondeterminism: OnNondeterminism?
    /// `--stop-timeout`: how long the checkpoint that SIGINT, SIGTERM or the walltime asks for
    /// may take before the job stops at once on the last committed line (nil: 30 s).
    public var stopTimeoutSeconds: Double?
    /// The default of `stopTimeoutSeconds`.
    public static let stopTimeoutSecondsDefault = 30.0

    /// How the ranks' processes are started.
    public enum Launcher: String, Codable, Sendable, CaseIterable {
        /// Children of the supervisor on this host, over Unix sockets (the default).
        case local
        /// On the hosts of `hosts`, each by `launchCommand` (by default `ssh {host} {cmd}`); ranks
        /// on two hosts talk over TCP, and the supervisor listens on `listenAddress`.
        case ssh
        /// Inside a Slurm allocation (`salloc --no-kill` or `sbatch --no-kill`): the hosts are the
        /// allocation's nodes, and each rank is a job step of its own (`srun -n1 --exact`), so
        /// one rank's death leaves the other steps running; a rank's step is ended with
        /// `scancel`. Otherwise as `ssh`.
        case slurm
        /// Open MPI's `mpirun` starts every rank of a launch at once (on `hosts`, or on this
        /// host). It takes the whole launch down when one rank dies, so every failure restarts
        /// every rank from the last committed line: `--logging none` only.
        case mpirun
    }

    /// Whether the ranks run under a launcher that may place them on other hosts (they then
    /// connect over TCP).
    public var launchesOnHosts: Bool { launcher == .ssh || launcher == .slurm || launcher == .mpirun }
    /// `--launcher` (nil: local).
    public var launcher: Launcher?

    /// A host of a job on several hosts: its name as given (resolved by the system's resolver)
    /// and how many ranks it takes (nil: an even share).
    public struct Host: Codable, Sendable, Equatable {
        /// The host's name or IPv4 address.
        public var name: String
        /// The ranks it takes (`slots=K` in a host file); nil: the ranks are shared evenly.
        public var slots: Int?

        /// A host with every field given.
        public init(name: String, slots: Int? = nil) {
            self.name = name
            self.slots = slots
        }
    }
    /// `--hosts` or `--hostfile`: where the ranks run under `--launcher ssh`, in order.
    public var hosts: [Host]?
    /// `--launch-command`: how a rank is started on its host. `{host}` becomes the host's name
    /// and `{cmd}` the rank's command line, each as one shell-quoted word (`{rank}` and
    /// `{incarnation}`: the numbers); the whole runs under `/bin/sh -c` on this host.
    public var launchCommand: String?
    /// The default of `launchCommand` under `--launcher ssh`.
    public static let launchCommandDefault = "ssh {host} {cmd}"
    /// The launch command under `--launcher slurm`: a job step of one task on the rank's node,
    /// named after the rank and incarnation (so that it can be cancelled), overcommitting the
    /// node's CPUs rather than waiting for them; srun hands its standard input to the task.
    public static let slurmLaunchCommand =
        "srun --jobid={jobid} --job-name=lifeline-{rank}-{incarnation} --nodes=1 --ntasks=1 --exact --overcommit "
        + "--kill-on-bad-exit=0 --nodelist={host} /bin/sh -c {cmd}"
    /// `--listen`: the IPv4 address (optionally `:PORT`) the supervisor listens on for ranks on
    /// other hosts (nil: the address this host uses to reach the first host, any free port).
    public var listenAddress: String?
    /// What the job does when a host is lost and the free slots of the hosts left cannot take
    /// its ranks (a spare host, or a host with free slots, takes them under every policy).
    public enum OnHostLoss: String, Codable, Sendable, CaseIterable {
        /// Keep every rank: the lost host's ranks double up on the hosts left, past their slots,
        /// until the job ends (or is stopped and resumed on new hosts).
        case wait
        /// Continue on the ranks the hosts left have slots for, restored from the newest
        /// committed line by the program's `Redistributable` state; when the line or the program
        /// cannot be redistributed, say why and go on as `wait`.
        case shrink
        /// Stop every rank at the last committed line and exit with status 1, saying how to
        /// resume (`lifeline resume RUN_DIR [-n M] [--hosts …]`).
        case fail
    }
    /// `--on-host-loss` (nil: `wait`).
    public var onHostLoss: OnHostLoss?

    /// How ranks on one host pass their messages.
    public enum PeerTransport: String, Codable, Sendable, CaseIterable {
        /// Byte rings in memory the two ranks share, with the socket beside them for wake-ups
        /// and for noticing a peer's death: no system call on a message's way when the receiver
        /// is spinning for it.
        case sharedMemory = "shared-memory"
        /// Unix-domain sockets alone.
        case sockets
    }
    /// `--transport` between ranks on one host (nil: `sharedMemory`). Ranks on other hosts
    /// always talk over TCP.
    public var transport: PeerTransport?

    /// `--levels memory,disk`: a round commits once each rank's snapshot is in its host's
    /// memory (level 1, uncompressed, in a folder of `memoryRoot`), and is drained to the
    /// mirrored disks (level 2) behind it. Nil: `--levels disk`, every line on disk before it
    /// commits.
    public var memoryLevel: Bool?
    /// `--drain-every K`: with `memoryLevel`, the rounds whose number is a multiple of K are
    /// drained to disk (nil: 1, every round).
    public var drainEvery: Int?
    /// `--memory-max BYTES`: with `memoryLevel`, the most a rank may hold in memory (its new
    /// copy and the committed one); a rank whose copies do not fit says so once and writes to
    /// disk alone (nil: no bound but the memory file system's size).
    public var memoryBytesMax: Int?
    /// `--memory-root PATH`: with `memoryLevel`, the memory file system the copies go to (nil:
    /// `/dev/shm`). Each job holds a folder of its own there, removed when it ends.
    public var memoryRoot: String?
    /// The default of `memoryRoot`.
    public static let memoryRootDefault = "/dev/shm"

    /// The host of each rank under `--launcher ssh` (or `slurm` with `hosts` given): each host
    /// takes its `slots` (or an even share, the first hosts one more when the ranks do not
    /// divide), in order; nil with the local launcher. Throws when the hosts' slots cannot hold
    /// the ranks.
    public func rankHosts() throws -> [String]? {
        guard launchesOnHosts else { return nil }
        guard let hosts, !hosts.isEmpty else {
            if launcher == .slurm { return nil }  // the allocation's nodes, known when the job starts
            if launcher == .mpirun { return Array(repeating: "localhost", count: rankCount) }
            throw LifelineError(.configuration, "--launcher ssh needs the hosts: --hosts h1,h2,… or --hostfile FILE")
        }
        var placement: [String] = []
        let share = (rankCount + hosts.count - 1) / hosts.count
        for host in hosts where placement.count < rankCount {
            placement += Array(repeating: host.name, count: min(host.slots ?? share, rankCount - placement.count))
        }
        guard placement.count == rankCount else {
            throw LifelineError(.configuration,
                "the hosts' slots hold \(placement.count) ranks, not \(rankCount): add slots or hosts, or run fewer ranks")
        }
        return placement
    }

    /// Reads a host file: one host a line, optionally followed by `slots=K`; blank lines and
    /// lines from `#` on are ignored.
    public static func parseHostfile(_ text: String, path: String) throws -> [Host] {
        var hosts: [Host] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let name = words.first else { continue }
            var slots: Int?
            for word in words.dropFirst() {
                guard word.hasPrefix("slots="), let count = Int(word.dropFirst(6)), count > 0 else {
                    throw LifelineError(.configuration,
                        "\(path):\(number + 1): '\(word)' is not slots=K (K ≥ 1); a line is HOST [slots=K]")
                }
                slots = count
            }
            hosts.append(Host(name: String(name), slots: slots))
        }
        guard !hosts.isEmpty else { throw LifelineError(.configuration, "\(path) names no host") }
        return hosts
    }

    /// A configuration with the defaults of `lifeline run` for everything but the program.
    public init(
        program: String, arguments: [String] = [], rankCount: Int = 4, runDirectory: String,
        storageRoots: [String]? = nil, checkpointing: Checkpointing = .coordinated, logging: Logging = .none,
        intervalSeconds: Double = 5,
        injections: [String] = [], heartbeatMs: Int = 250, heartbeatTimeoutMs: Int = 5000, maxRestarts: Int = 10,
        quiet: Bool = false, walltimeSeconds: Double? = nil, intervalAuto: Bool = false, mtbfSeconds: Double? = nil,
        traceDeliveries: Bool = false, retainedBytesMax: Int? = 256 << 20, logBytesMax: Int? = 256 << 20,
        logFlushMs: Int? = nil, logFlushBytes: Int? = nil, keep: Int? = nil,
        chunkBytes: Int? = nil, compressionLevel: Int? = nil, stallSeconds: Double? = nil,
        joinTimeoutSeconds: Double? = nil, stopTimeoutSeconds: Double? = nil, onNondeterminism: OnNondeterminism? = nil,
        quietRanks: Bool = false
    ) {
        self.quietRanks = quietRanks ? true : nil
        self.program = program
        self.arguments = arguments
        self.rankCount = rankCount
        self.runDirectory = runDirectory
        self.storageRoots = storageRoots ?? [runDirectory + "/storage-a", runDirectory + "/storage-b"]
        self.checkpointing = checkpointing
        self.logging = logging
        self.intervalSeconds = intervalSeconds
        self.injections = injections
        self.heartbeatMs = heartbeatMs
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.maxRestarts = maxRestarts
        self.quiet = quiet
        self.walltimeSeconds = walltimeSeconds
        self.intervalAuto = intervalAuto
        self.mtbfSeconds = mtbfSeconds
        self.traceDeliveries = traceDeliveries
        self.retainedBytesMax = retainedBytesMax
        self.logBytesMax = logBytesMax
        self.logFlushMs = logFlushMs
        self.logFlushBytes = logFlushBytes
        self.keep = keep
        self.chunkBytes = chunkBytes
        self.compressionLevel = compressionLevel
        self.stallSeconds = stallSeconds
        self.joinTimeoutSeconds = joinTimeoutSeconds
        self.stopTimeoutSeconds = stopTimeoutSeconds
        self.onNondeterminism = onNondeterminism
    }

    /// The rank counts a job may have.
    public static let rankCounts = 1...4096

    /// Checks every field, as `Job.run` does before it starts anything: throws a
    /// `LifelineError` with one clear line for the first problem (what is wrong and what to
    /// do), so a caller can refuse a configuration before it announces or creates anything.
    public func validate() throws {
        _ = try validated()
    }

    /// Checks every field and parses the injections; throws one clear line for the first problem.
    func validated() throws -> [FaultSpec] {
        guard Self.rankCounts.contains(rankCount) else {
            throw LifelineError(.configuration, "--ranks \(rankCount) is not in \(Self.rankCounts)")
        }
        guard intervalSeconds > 0, intervalSeconds.isFinite else {
            throw LifelineError(.configuration, "--interval must be a positive number of seconds")
        }
        guard heartbeatMs > 0, heartbeatTimeoutMs > heartbeatMs else {
            throw LifelineError(.configuration, "--heartbeat-timeout-ms must exceed --heartbeat-ms, both positive")
        }
        guard !intervalAuto || (mtbfSeconds ?? 0) > 0 else {
            throw LifelineError(.configuration, "--interval auto needs --mtbf DURATION, the mean time between failures")
        }
        guard maxRestarts >= 0 else { throw LifelineError(.configuration, "--max-restarts must be ≥ 0") }
        if let stallSeconds, !(stallSeconds > 0 && stallSeconds.isFinite) {
            throw LifelineError(.configuration, "--stall-seconds must be a positive number of seconds")
        }
        if let joinTimeoutSeconds, !(joinTimeoutSeconds > 0 && joinTimeoutSeconds.isFinite) {
            throw LifelineError(.configuration, "--join-timeout must be a positive number of seconds")
        }
        if let stopTimeoutSeconds, !(stopTimeoutSeconds > 0 && stopTimeoutSeconds.isFinite) {
            throw LifelineError(.configuration, "--stop-timeout must be a positive number of seconds")
        }
        if keepLogs == true, logging != .pessimistic, logging != .optimistic {
            throw LifelineError(.configuration,
                "--keep-logs keeps the message logs for `lifeline replay`, which needs their payloads: use --logging pessimistic or optimistic")
        }
        if let keep, keep < 1 {
            throw LifelineError(.configuration, "--keep \(keep): keep at least 1 committed line (2, the default, leaves one to fall back to)")
        }
        if let chunkBytes, chunkBytes % 1024 != 0
            || !(ChunkedSnapshots.chunkBytesMin...ChunkedSnapshots.chunkBytesMax).contains(chunkBytes) {
            throw LifelineError(.configuration, "--chunk-kib \(chunkBytes / 1024): give a chunk size from \(ChunkedSnapshots.chunkBytesMin >> 10) to \(ChunkedSnapshots.chunkBytesMax >> 10) KiB (default \(ChunkedSnapshots.chunkBytesDefault >> 10))")
        }
        if let compressionLevel, !ChunkedSnapshots.levelRange.contains(Int32(clamping: compressionLevel)) {
            throw LifelineError(.configuration, "--zstd-level \(compressionLevel) is not in \(ChunkedSnapshots.levelRange.lowerBound)...\(ChunkedSnapshots.levelRange.upperBound) (1, the default, is fast; 3 gains a few percent at half the speed)")
        }
        if launcher == .mpirun, logging != .none || checkpointing == .independent {
            throw LifelineError(.configuration,
                "--launcher mpirun restarts every rank after any failure (mpirun takes the launch down with one rank): use --logging none and a coordinated, blocking or minimal scheme")
        }
        if launcher == .mpirun, launchCommand != nil {
            throw LifelineError(.configuration, "--launch-command does not apply to --launcher mpirun (mpirun starts the ranks)")
        }
        if let onHostLoss, onHostLoss != .wait {
            guard launcher == .ssh || launcher == .slurm else {
                throw LifelineError(.configuration,
                    "--on-host-loss \(onHostLoss.rawValue) needs --launcher ssh or slurm (hosts are lost only there; under mpirun every failure restarts the whole launch)")
            }
            if onHostLoss == .shrink, checkpointing == .independent {
                throw LifelineError(.configuration,
                    "--on-host-loss shrink restores a line that every rank wrote at one step, which --checkpoint independent never has: use coordinated, blocking or minimal")
            }
        }
        if launchesOnHosts {
            _ = try rankHosts()
            if let command = launchCommand, !command.contains("{cmd}") {
                throw LifelineError(.configuration, "--launch-command '\(command)' has no {cmd}: say where the rank's command line goes")
            }
        } else if hosts != nil || launchCommand != nil || listenAddress != nil {
            throw LifelineError(.configuration, "--hosts, --hostfile, --launch-command and --listen need --launcher ssh, slurm or mpirun")
        }
        guard storageRoots.count == 2 else {
            throw LifelineError(.configuration, "--storage takes two folders, DIR_A,DIR_B")
        }
        let a = URL(fileURLWithPath: storageRoots[0]).standardizedFileURL.path
        let b = URL(fileURLWithPath: storageRoots[1]).standardizedFileURL.path
        guard a != b else {
            throw LifelineError(.configuration, "the two storage roots are the same folder (\(a)): give two different folders")
        }
        if storageRoots.allSatisfy({ $0.contains(StorageRoots.placeholder) }) {
            throw LifelineError(.configuration,
                "both storage roots hold {host}: losing a host would lose both copies of what its ranks wrote; make one a folder every host shares")
        }
        if storageRoots.contains(where: { $0.contains(StorageRoots.partnerPlaceholder) }) {
            try validatePartnerStorage()
        }
        if memoryLevel == true {
            guard checkpointing != .independent else {
                throw LifelineError(.configuration,
                    "--levels memory,disk works with --checkpoint coordinated, blocking or minimal for now (independent checkpoints pair each rank's checkpoints with older ones of the others)")
            }
            if checkpointing == .minimal, let drainEvery, drainEvery > 1 {
                throw LifelineError(.configuration,
                    "--drain-every \(drainEvery) with --checkpoint minimal: a rank may keep a checkpoint of a round that was not drained in every later line, so minimal checkpoints drain every round (leave --drain-every out)")
            }
            guard launcher != .mpirun else {
                throw LifelineError(.configuration,
                    "--levels memory,disk does not work with --launcher mpirun: mpirun restarts every rank of the launch, and chooses their hosts itself, so no rank could count on its copy in memory; use --launcher slurm or ssh")
            }
            if let drainEvery, drainEvery < 1 {
                throw LifelineError(.configuration, "--drain-every \(drainEvery): drain every K-th round to disk, K ≥ 1 (1, the default, drains each)")
            }
            if let memoryBytesMax, memoryBytesMax < 1 {
                throw LifelineError(.configuration, "--memory-max must be a positive number of bytes (or leave it out: no bound)")
            }
            // On other hosts the root is theirs, out of this machine's sight: a rank that cannot
            // write its copy there writes to disk alone, and says so.
            let root = memoryRoot ?? Self.memoryRootDefault
            var isFolder: ObjCBool = false
            guard launchesOnHosts || FileManager.default.fileExists(atPath: root, isDirectory: &isFolder), launchesOnHosts || isFolder.boolValue else {
                throw LifelineError(.configuration,
                    "--memory-root \(root) is not a folder: name a memory file system (a tmpfs such as /dev/shm) for level 1")
            }
        } else if drainEvery != nil || memoryBytesMax != nil || memoryRoot != nil {
            throw LifelineError(.configuration, "--drain-every, --memory-max and --memory-root need --levels memory,disk")
        }
        if StorageRoots.nodeLocalMirror(storageRoots) != nil {
            for host in hosts ?? [] {
                if let problem = StorageRoots.problem(hostName: host.name) {
                    throw LifelineError(.configuration, "--storage: {host} cannot stand for \(problem) in a path: name the hosts by plain names or addresses")
                }
            }
        }
        let faults: [FaultSpec]
        do {
            faults = try injections.map { spec throws(FaultSpecError) in try FaultSpec.parse(spec, rankCount: rankCount) }
        } catch {
            throw LifelineError(.configuration, "\(error)")
        }
        // With partner hosts a `fail:mirror=` fails this machine's folder of that root, which
        // holds the manifest; the ranks' copies are on their hosts, out of the supervisor's reach.
        if StorageRoots.partnered(storageRoots), let fault = faults.first(where: { if case .corrupt = $0 { true } else { false } }) {
            throw LifelineError(.configuration,
                "--inject \(fault) does not work with {partner} in --storage yet: the ranks' copies are on their hosts, out of the supervisor's reach")
        }
        if memoryLevel != true, let lose = faults.first(where: { if case .loseMemory = $0 { true } else { false } }) {
            throw LifelineError(.configuration, "--inject \(lose) needs --levels memory,disk: a job on disk alone holds nothing in memory")
        }
        if launchesOnHosts, let lose = faults.first(where: { if case .loseMemory = $0 { true } else { false } }) {
            throw LifelineError(.configuration,
                "--inject \(lose) works with --launcher local: on several hosts a memory is lost with its host (cut one off, or kill its processes)")
        }
        return faults
    }

    /// Checks a `--storage` whose second root holds `{partner}`: second copies sent to partner
    /// hosts. What works with them for now is said in each refusal.
    private func validatePartnerStorage() throws {
        guard !storageRoots[0].contains(StorageRoots.partnerPlaceholder) else {
            throw LifelineError(.configuration,
                "--storage: {partner} goes in the second root (DIR_A holds {host}, each node's own folder; DIR_B the folder a partner node keeps)")
        }
        guard storageRoots[0].contains(StorageRoots.placeholder), !storageRoots[1].contains(StorageRoots.placeholder) else {
            throw LifelineError(.configuration,
                "--storage with {partner}: give DIR_A with {host} and DIR_B with {partner}, such as /local/{host}/ckpt,/local/{partner}/ckpt-partner")
        }
        let expanded = storageRoots.map { $0.replacingOccurrences(of: StorageRoots.partnerPlaceholder, with: StorageRoots.placeholder) }
        guard URL(fileURLWithPath: expanded[0]).standardizedFileURL.path != URL(fileURLWithPath: expanded[1]).standardizedFileURL.path else {
            throw LifelineError(.configuration,
                "--storage: DIR_B with {partner} is DIR_A on each host, so a host's own copies and those it keeps for its partner would be one folder: give DIR_B another path")
        }
        guard launcher == .ssh || launcher == .slurm else {
            throw LifelineError(.configuration,
                "--storage with {partner} needs --launcher ssh or slurm: partner copies go from one host to another")
        }
        if let chunkBytes, chunkBytes > Self.partnerChunkBytesMax {
            throw LifelineError(.configuration,
                "--chunk-kib \(chunkBytes / 1024) with {partner}: a chunk goes to the partner in one request of at most \(FolderRequest.bytesMax >> 20) MiB; give at most \(Self.partnerChunkBytesMax >> 10) KiB")
        }
        // Under Slurm the hosts are the allocation's nodes, known when the job starts (checked
        // then, `checkPartnerHosts`).
        let placedLater = launcher == .slurm && hosts == nil
        guard try placedLater || Set(rankHosts() ?? []).count >= 2 else {
            throw LifelineError(.configuration,
                "--storage with {partner} needs ranks on two hosts at least: a host's partner is another host")
        }
    }

    /// The largest chunk a job with partner copies takes: a chunk, compressed or not, goes to
    /// the partner in one request.
    static let partnerChunkBytesMax = 128 << 20

    /// With partner copies, that the ranks are on two hosts at least (`rankHosts`: where the
    /// job placed them, under Slurm on the allocation's nodes).
    static func checkPartnerHosts(_ configuration: JobConfiguration, rankHosts: [String]) throws {
        guard StorageRoots.partnered(configuration.storageRoots), Set(rankHosts).count < 2 else { return }
        throw LifelineError(.configuration,
            "--storage with {partner} needs ranks on two hosts at least: a host's partner is another host (the allocation gave \(Set(rankHosts).sorted().joined(separator: ",")))")
    }

    /// Reads the configuration a run directory's `job.json` holds, for the run directory at
    /// `path`: wherever the folder was copied or moved, its own storage roots are used (roots
    /// inside the run directory are kept relative to it; roots elsewhere stay as given).
    public static func load(runDirectory path: String) throws -> JobConfiguration {
        guard let data = FileManager.default.contents(atPath: path + "/job.json") else {
            throw LifelineError(.configuration, "\(path) is not a Lifeline run directory (no readable job.json)")
        }
        var configuration: JobConfiguration
        do {
            configuration = try JSONDecoder().decode(JobConfiguration.self, from: data)
        } catch {
            throw LifelineError(.configuration,
                "\(path)/job.json is damaged (\(Self.describe(error))); restore it from a copy of the run directory")
        }
        // What every reader sizes and indexes by: a damaged file is said, not trapped on.
        guard Self.rankCounts.contains(configuration.rankCount), configuration.storageRoots.count == 2 else {
            throw LifelineError(.configuration,
                "\(path)/job.json is damaged: it names \(configuration.rankCount) ranks (a job has \(Self.rankCounts)) and "
                    + "\(configuration.storageRoots.count) storage roots (a job has 2); restore it from a copy of the run directory")
        }
        let recorded = configuration.runDirectory
        configuration.runDirectory = path
        configuration.storageRoots = configuration.storageRoots.map { root in
            if !root.hasPrefix("/") { return path + "/" + root }
            if root.hasPrefix(recorded + "/") { return path + root.dropFirst(recorded.count) }  // an older job.json
            return root
        }
        return configuration
    }

    /// What a failed decoding of `job.json` found, in a few words: which field, and what was
    /// wrong with it.
    private static func describe(_ error: Error) -> String {
        func field(_ path: [CodingKey]) -> String {
            path.isEmpty ? "the file" : "field " + path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        func said(_ context: DecodingError.Context) -> String {
            "\(field(context.codingPath)): " + context.debugDescription.trimmingCharacters(in: CharacterSet(charactersIn: ". "))
        }
        switch error as? DecodingError {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return said(context)
        case .keyNotFound(let key, let context):
            return "\(field(context.codingPath + [key])) is missing"
        default:
            return "\(error)"
        }
    }

    /// Writes `job.json` into the run directory, with the storage roots that lie inside it
    /// relative to it, so the folder can be copied or moved and resumed where it is.
    func save() throws {
        var stored = self
        stored.storageRoots = storageRoots.map { root in
            root.hasPrefix(runDirectory + "/") ? String(root.dropFirst(runDirectory.count + 1)) : root
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(stored).write(to: URL(fileURLWithPath: runDirectory + "/job.json"), options: .atomic)
    }

    /// Finds a program by name: beside the `lifeline` executable first, then on PATH. A name
    /// with a slash is taken as a path.
    public static func resolveProgram(_ name: String) throws -> String {
        let fileManager = FileManager.default
        var candidates: [String] = []
        if name.contains("/") {
            candidates = [URL(fileURLWithPath: name).standardizedFileURL.path]
        } else {
            let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent(name).path)
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
            candidates += path.split(separator: ":").map { "\($0)/\(name)" }
        }
        for candidate in candidates where fileManager.fileExists(atPath: candidate) {
            guard fileManager.isExecutableFile(atPath: candidate) else {
                throw LifelineError(.configuration, "\(candidate) is not executable: chmod +x it or build it")
            }
            return candidate
        }
        throw LifelineError(.configuration,
            "program '\(name)' was not found beside lifeline or on PATH: give its path or build it first")
    }
}
