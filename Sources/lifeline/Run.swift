import ArgumentParser
import Foundation
import Lifeline
import LifelineCore
import LifelineStorage

extension LifelineCommand {
    /// `lifeline run [options] -- PROGRAM [ARGS...]`
    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start PROGRAM on N ranks and supervise it to the end.",
            discussion: "Example: lifeline run -n 4 --interval 2 --inject kill:rank=1,step=300 -- heat2d --size 256")

        @Option(name: [.customShort("n"), .long], parsing: .unconditional, help: "Number of ranks.")
        var ranks: Int = 4
        @Option(help: "Run directory (default: a new folder under ./lifeline-runs/).")
        var runDir: String?
        @Option(help: ArgumentHelp("The two stable-storage roots (default: two folders in the run directory). One may hold {host}: a folder of each host's own (a node's local disk), named for the host; the other is then a folder every host shares, or holds {partner}: the folder on the partner host (the next host of the job) that each host's second copies are sent to over the network.", valueName: "DIR_A,DIR_B"))
        var storage: String?
        @Option(help: "Checkpoint protocol: coordinated (non-blocking), blocking, minimal (ranks that delivered nothing since their last checkpoint keep it), or independent (each rank on its own schedule; a failure rolls back what the recovery line needs).")
        var checkpoint: String = "coordinated"
        @Option(help: "Message logging: none (global rollback), pessimistic, sender-based (a crashed rank recovers alone) or optimistic (it replays what reached its log; the ranks that depend on what was lost roll back too).")
        var logging: String = "none"
        @Option(parsing: .unconditional, help: "Seconds between checkpoints, or auto (the Young/Daly optimum for the measured cost; needs --mtbf).")
        var interval: String = "5"
        @Option(help: ArgumentHelp("Mean time between failures assumed by --interval auto (e.g. 10m).", valueName: "DURATION"))
        var mtbf: String?
        @OptionGroup var faults: InjectionOptions
        @Option(help: "Milliseconds between rank heartbeats.")
        var heartbeatMs: Int = 250
        @Option(help: "Milliseconds of silence after which a rank is declared hung.")
        var heartbeatTimeoutMs: Int = 5000
        @Option(parsing: .unconditional, help: ArgumentHelp("Least time without a new safe point after which the supervisor asks the ranks where they wait: it reports a stall, and stops a deadlock (longer when the job's usual pace is slower).", valueName: "DURATION"))
        var stallSeconds: String = "10s"
        @Option(parsing: .unconditional, help: ArgumentHelp("Time a launched rank has to connect to the supervisor; past it the job fails, saying the program does not seem to call Communicator.join().", valueName: "DURATION"))
        var joinTimeout: String = "60s"
        @Option(parsing: .unconditional, help: ArgumentHelp("Time the checkpoint asked for by a first SIGINT or SIGTERM (or the walltime) may take; past it the job stops at once on the last committed line.", valueName: "DURATION"))
        var stopTimeout: String = "30s"
        @Option(help: "When a rank gets a message again with other bytes than it delivered (the program is not deterministic): stop the job, or warn and go on.")
        var onNondeterminism: String = "stop"
        @Option(help: "Failures the job survives before it gives up.")
        var maxRestarts: Int = 10
        @Option(help: "Committed recovery lines to keep; older checkpoints no kept line uses are deleted.")
        var keep: Int = 2
        @Flag(help: "Keep the ranks' whole message logs (commits do not trim them; --log-bytes-max does not apply), so that `lifeline replay` can run a rank again from any kept line. Needs --logging pessimistic or optimistic.")
        var keepLogs = false
        @Option(help: ArgumentHelp("Checkpoint and stop before this much time has passed (e.g. 30m), as before a batch limit.", valueName: "DURATION"))
        var walltime: String?
        @Flag(help: "Each rank writes its sends, deliveries and captures to RUN_DIR/trace/ (for `lifeline timeline`).")
        var traceDeliveries = false
        @Option(help: "Retained message bytes per rank to stay under: past a quarter of it the rank asks for a checkpoint, which trims them (0: no maximum).")
        var retainedBytesMax: Int = 256 << 20
        @Option(help: "Message log bytes per rank to stay under: past a quarter of it the rank asks for a checkpoint, which trims the log (0: no maximum).")
        var logBytesMax: Int = 256 << 20
        @Option(help: "Optimistic logging: milliseconds after which a rank flushes its buffered log records.")
        var logFlushMs: Int = 20
        @Option(help: "Optimistic logging: bytes of buffered log records that make a rank flush them.")
        var logFlushBytes: Int = 1 << 20
        @Option(help: ArgumentHelp("Snapshot chunk size in KiB, 4 to 1048576: a chunk the store already holds is not written again, so smaller chunks store less after a scattered change, larger ones write faster.", valueName: "KIB"))
        var chunkKib: Int = ChunkedSnapshots.chunkBytesDefault >> 10
        @Option(parsing: .unconditional, help: ArgumentHelp("zstd level of snapshot chunks, -7 (fastest) to 19 (smallest).", valueName: "LEVEL"))
        var zstdLevel: Int = Int(ChunkedSnapshots.levelDefault)
        @Option(help: ArgumentHelp("Where committed lines are held: disk (the mirrored stable storage; a round commits once both mirrors hold it), or memory,disk (a round commits once each rank's snapshot is in its host's memory, a tmpfs, and is drained to disk behind it; a rank killed restores from memory, and a lost memory falls back to the newest line on disk).", valueName: "LEVELS"))
        var levels: String = "disk"
        @Option(help: ArgumentHelp("With --levels memory,disk: drain every K-th round to disk (the rounds whose number is a multiple of K).", valueName: "K"))
        var drainEvery: Int?
        @Option(help: ArgumentHelp("With --levels memory,disk: the most memory a rank's copies may take (its new one and the committed one), e.g. 512m; a rank over it writes to disk alone.", valueName: "BYTES"))
        var memoryMax: String?
        @Option(help: ArgumentHelp("With --levels memory,disk: the memory file system the copies go to.", valueName: "PATH"))
        var memoryRoot: String?
        @Option(help: ArgumentHelp("How ranks on one host pass messages: shared-memory (rings the two ranks share, the socket beside them for wake-ups and failure detection) or sockets (Unix-domain sockets alone). Ranks on two hosts use TCP.", valueName: "KIND"))
        var transport: String = JobConfiguration.PeerTransport.sharedMemory.rawValue
        @Flag(help: "No progress line.")
        var quiet = false
        @Flag(help: "Keep the ranks' standard error in output/ only, instead of also forwarding it live as [rank R] lines.")
        var quietRanks = false
        @Option(help: "How ranks are started: local (children of this process), ssh (on --hosts, by --launch-command; ranks on two hosts talk over TCP) slurm (inside an allocation: one job step per rank on its nodes) or mpirun (Open MPI starts every rank; any failure restarts them all).")
        var launcher: String = "local"
        @Option(help: ArgumentHelp("The hosts of --launcher ssh, in order; the ranks are shared evenly, in blocks.", valueName: "H1,H2,…"))
        var hosts: String?
        @Option(help: ArgumentHelp("A file of hosts for --launcher ssh: one a line, optionally with slots=K (the ranks it takes).", valueName: "FILE"))
        var hostfile: String?
        @Option(help: ArgumentHelp("How --launcher ssh starts a rank, run by /bin/sh: {host} is the host, {cmd} the rank's command line, each one quoted word (default: ssh {host} {cmd}; on one machine's network namespaces: nsenter --net=/run/netns/{host} sh -c {cmd}).", valueName: "TEMPLATE"))
        var launchCommand: String?
        @Option(help: ArgumentHelp("The IPv4 address (and :PORT) the supervisor listens on for ranks on other hosts (default: the address that reaches the first host, any port).", valueName: "ADDRESS"))
        var listen: String?
        @Option(help: "When a host is lost and the free slots of the others cannot take its ranks (a spare host takes them under every policy): wait (its ranks double up on the hosts left), shrink (continue on the ranks the hosts left have slots for, if the program's state is Redistributable) or fail (stop at the last committed line, saying how to resume).")
        var onHostLoss: String = "wait"
        @Argument(parsing: .postTerminator, help: "The program and its arguments, after --.")
        var command: [String] = []

        func run() throws {
            guard let name = command.first else {
                throw ValidationError("name the program after --, e.g. lifeline run -n 4 -- heat2d")
            }
            guard let checkpointing = JobConfiguration.Checkpointing(rawValue: checkpoint) else {
                throw ValidationError("--checkpoint \(checkpoint) is not one of coordinated, blocking, minimal, independent")
            }
            guard let loggingMode = JobConfiguration.Logging(rawValue: logging) else {
                throw ValidationError("--logging \(logging) is not one of none, pessimistic, sender-based, optimistic")
            }
            if checkpointing == .independent, loggingMode == .senderBased || loggingMode == .optimistic {
                throw ValidationError("--checkpoint independent works with --logging none or pessimistic, not \(logging) (its logs are trimmed by the rounds of the other schemes)")
            }
            let chunkKibRange = (ChunkedSnapshots.chunkBytesMin >> 10)...(ChunkedSnapshots.chunkBytesMax >> 10)
            guard chunkKibRange.contains(chunkKib) else {
                throw ValidationError("--chunk-kib \(chunkKib) is not in \(chunkKibRange.lowerBound)...\(chunkKibRange.upperBound) (default \(ChunkedSnapshots.chunkBytesDefault >> 10))")
            }
            guard logFlushMs > 0, logFlushBytes > 0 else {
                throw ValidationError("--log-flush-ms and --log-flush-bytes must be positive")
            }
            let intervalAuto = interval == "auto"
            var mtbfSeconds: Double?
            if let mtbf {
                guard let seconds = Double(mtbf) ?? parseDuration(mtbf), seconds > 0 else {
                    throw ValidationError("--mtbf \(mtbf) is not a duration such as 90s, 10m or 2h")
                }
                mtbfSeconds = seconds
            }
            if intervalAuto, mtbfSeconds == nil {
                throw ValidationError("--interval auto needs --mtbf DURATION, the mean time between failures")
            }
            guard let intervalSeconds = intervalAuto ? min(5, (mtbfSeconds ?? 20) / 4) : Double(interval), intervalSeconds > 0, intervalSeconds.isFinite else {
                throw ValidationError("--interval \(interval) is neither a positive number of seconds nor auto")
            }
            guard ranks >= 1 else { throw ValidationError("--ranks must be at least 1 (it is \(ranks))") }
            guard ranks <= JobConfiguration.rankCounts.upperBound else {
                throw ValidationError("--ranks \(ranks) is more than \(JobConfiguration.rankCounts.upperBound)")
            }
            var walltimeSeconds: Double?
            if let walltime {
                guard let seconds = Double(walltime) ?? parseDuration(walltime), seconds > 0 else {
                    throw ValidationError("--walltime \(walltime) is not a duration such as 90s, 30m or 2h")
                }
                walltimeSeconds = seconds
            }
            let stallSecondsMin = try positiveSeconds(stallSeconds, option: "--stall-seconds")
            let joinTimeoutSeconds = try positiveSeconds(joinTimeout, option: "--join-timeout")
            let stopTimeoutSeconds = try positiveSeconds(stopTimeout, option: "--stop-timeout")
            guard let nondeterminism = JobConfiguration.OnNondeterminism(rawValue: onNondeterminism) else {
                throw ValidationError("--on-nondeterminism \(onNondeterminism) is not one of stop, warn")
            }
            let runDirectory = absolute(runDir ?? defaultRunDirectory())
            var roots: [String]?
            if let storage {
                let parts = storage.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                    throw ValidationError("--storage takes two folders: DIR_A,DIR_B")
                }
                roots = parts.map(absolute)
            }
            var configuration = JobConfiguration(
                program: try JobConfiguration.resolveProgram(name), arguments: Array(command.dropFirst()),
                rankCount: ranks, runDirectory: runDirectory, storageRoots: roots, checkpointing: checkpointing,
                logging: loggingMode,
                intervalSeconds: intervalSeconds, injections: faults.injections, heartbeatMs: heartbeatMs,
                heartbeatTimeoutMs: heartbeatTimeoutMs, maxRestarts: maxRestarts, quiet: quiet,
                walltimeSeconds: walltimeSeconds, intervalAuto: intervalAuto, mtbfSeconds: mtbfSeconds,
                traceDeliveries: traceDeliveries,
                retainedBytesMax: retainedBytesMax > 0 ? retainedBytesMax : nil, logBytesMax: logBytesMax > 0 ? logBytesMax : nil,
                logFlushMs: logFlushMs, logFlushBytes: logFlushBytes, keep: keep,
                chunkBytes: chunkKib * 1024,
                compressionLevel: zstdLevel, stallSeconds: stallSecondsMin,
                joinTimeoutSeconds: joinTimeoutSeconds, stopTimeoutSeconds: stopTimeoutSeconds,
                onNondeterminism: nondeterminism, quietRanks: quietRanks)
            configuration.keepLogs = keepLogs ? true : nil
            guard let launcherKind = JobConfiguration.Launcher(rawValue: launcher) else {
                throw ValidationError("--launcher \(launcher) is not one of local, ssh, slurm, mpirun")
            }
            if launcherKind != .local { configuration.launcher = launcherKind }
            configuration.hosts = try parseHosts(hosts, hostfile: hostfile)
            guard let policy = JobConfiguration.OnHostLoss(rawValue: onHostLoss) else {
                throw ValidationError("--on-host-loss \(onHostLoss) is not one of wait, shrink, fail")
            }
            if policy != .wait { configuration.onHostLoss = policy }
            configuration.launchCommand = launchCommand
            configuration.listenAddress = listen
            switch levels {
            case "disk": break
            case "memory,disk": configuration.memoryLevel = true
            default: throw ValidationError("--levels \(levels) is not one of disk, memory,disk")
            }
            configuration.drainEvery = drainEvery
            guard let peerTransport = JobConfiguration.PeerTransport(rawValue: transport) else {
                throw ValidationError("--transport \(transport) is not one of shared-memory, sockets")
            }
            if peerTransport != .sharedMemory { configuration.transport = peerTransport }
            if let memoryMax {
                guard let bytes = parseBytes(memoryMax), bytes > 0 else {
                    throw ValidationError("--memory-max \(memoryMax) is not a size such as 512m, 2g or 1048576")
                }
                configuration.memoryBytesMax = bytes
            }
            configuration.memoryRoot = memoryRoot.map(absolute)
            // Refused before the run directory is announced: nothing was started.
            try configuration.validate()
            if !quiet { note("run directory \(runDirectory)") }
            finish(try Job.run(configuration))
        }
    }
}

/// A positive, finite duration given as seconds (`2.5`) or with a unit (`500ms`, `10s`, `2m`).
func positiveSeconds(_ text: String, option: String) throws -> Double {
    guard let seconds = Double(text) ?? parseDuration(text), seconds > 0, seconds.isFinite else {
        throw ValidationError("\(option) \(text) is not a duration such as 500ms, 10s or 2m")
    }
    return seconds
}

/// A size in bytes, given as a number or with a binary unit (`512k`, `64m`, `2g`); nil when
/// it is neither.
func parseBytes(_ text: String) -> Int? {
    let units: [Character: Int] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
    let lowered = text.lowercased().replacingOccurrences(of: "ib", with: "").replacingOccurrences(of: "b", with: "")
    if let value = Int(lowered) { return value }
    guard let unit = lowered.last.flatMap({ units[$0] }), let value = Double(lowered.dropLast()), value > 0,
          value * Double(unit) < Double(Int.max) else { return nil }
    return Int(value * Double(unit))
}

/// The hosts of `--hosts H1,H2,…` or `--hostfile FILE` (nil: neither given).
func parseHosts(_ hosts: String?, hostfile: String?) throws -> [JobConfiguration.Host]? {
    if hosts != nil, hostfile != nil { throw ValidationError("give --hosts or --hostfile, not both") }
    if let hosts {
        let names = hosts.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard !names.contains(where: \.isEmpty) else { throw ValidationError("--hosts \(hosts) has an empty name") }
        return names.map { JobConfiguration.Host(name: $0) }
    }
    if let hostfile {
        guard let data = FileManager.default.contents(atPath: hostfile) else {
            throw ValidationError("--hostfile \(hostfile) cannot be read")
        }
        return try JobConfiguration.parseHostfile(String(decoding: data, as: UTF8.self), path: hostfile)
    }
    return nil
}
