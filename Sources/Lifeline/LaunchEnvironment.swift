#if canImport(Glibc)
import Glibc
#endif
import LifelineCore
import LifelineStorage

/// What the supervisor tells each rank through its environment — who it is, where to connect,
/// and the job's settings — and, once `START` came, the plan it carried (`plan`). The names are
/// the contract between `lifeline run` and a rank process.
package struct LaunchEnvironment: Sendable, Equatable {
    /// Environment variable names.
    package enum Key {
        /// The rank's index.
        package static let rank = "LIFELINE_RANK"
        /// The number of ranks.
        package static let size = "LIFELINE_SIZE"
        /// The job's secret token; every connection's handshake carries it.
        package static let token = "LIFELINE_TOKEN"
        /// The prefix of the abstract socket names of this incarnation's supervisor and ranks.
        package static let addressPrefix = "LIFELINE_ADDRESS"
        /// The rank's incarnation.
        package static let incarnation = "LIFELINE_INCARNATION"
        /// The supervisor's process ID (a rank whose parent is not it exits).
        package static let supervisorPID = "LIFELINE_SUPERVISOR_PID"
        /// The two storage roots, `A,B`.
        package static let storage = "LIFELINE_STORAGE"
        /// `coordinated`, `blocking`, `minimal` or `independent`.
        package static let variant = "LIFELINE_CHECKPOINT"
        /// Milliseconds between heartbeats.
        package static let heartbeatMs = "LIFELINE_HEARTBEAT_MS"
        /// Rank-side faults to fire: `INDEX=SPEC;INDEX=SPEC…`.
        package static let faults = "LIFELINE_FAULTS"
        /// The message logging mode.
        package static let logging = "LIFELINE_LOGGING"
        /// The folder of delivery traces (absent: no tracing).
        package static let trace = "LIFELINE_TRACE"
        /// The monotonic clock's reading at the job's start (seconds), so ranks stamp traces on
        /// the supervisor's clock.
        package static let clockOrigin = "LIFELINE_CLOCK_ORIGIN"
        /// Retained bytes past which the rank asks for a checkpoint (0: no maximum).
        package static let retainedBytesMax = "LIFELINE_RETAINED_BYTES_MAX"
        /// Log bytes past which the rank asks for a checkpoint (0: no maximum).
        package static let logBytesMax = "LIFELINE_LOG_BYTES_MAX"
        /// Independent checkpointing: the mean seconds between a rank's checkpoints.
        package static let interval = "LIFELINE_INTERVAL"
        /// Optimistic logging: milliseconds and bytes after which buffered log records are flushed.
        package static let logFlushMs = "LIFELINE_LOG_FLUSH_MS"
        package static let logFlushBytes = "LIFELINE_LOG_FLUSH_BYTES"
        /// The snapshot chunk size in bytes, and the zstd level of chunks.
        package static let chunkBytes = "LIFELINE_CHUNK_BYTES"
        package static let compressionLevel = "LIFELINE_ZSTD_LEVEL"
        /// "1" when commits do not trim the message log (`--keep-logs`).
        package static let keepLogs = "LIFELINE_KEEP_LOGS"
        /// A job on several hosts: the rank's host as the launcher names it.
        package static let host = "LIFELINE_HOST"
        /// That host's IPv4 address, where the rank listens for peers on other hosts.
        package static let hostAddress = "LIFELINE_HOST_ADDRESS"
        /// The supervisor's TCP address, `ADDRESS:PORT` (absent: the Unix socket on this host).
        package static let supervisorTCP = "LIFELINE_SUPERVISOR_TCP"
        /// "1": the token is the first line of standard input, not a variable (a command line
        /// that starts a rank on another host may be read by every user there).
        package static let tokenOnStdin = "LIFELINE_TOKEN_STDIN"
        /// A file readable only by the user whose first line is the token (under mpirun, which
        /// does not hand every rank its standard input).
        package static let tokenFile = "LIFELINE_TOKEN_FILE"
        /// A job on several hosts: the TCP_USER_TIMEOUT of the rank's connections, in ms.
        package static let linkTimeoutMs = "LIFELINE_LINK_TIMEOUT_MS"
        /// The data bytes of each shared-memory ring to a peer on this host (absent or 0: sockets).
        package static let ringBytes = "LIFELINE_RING_BYTES"
        /// `--levels memory,disk`: the job's level-1 folder (absent: disk alone).
        package static let memoryFolder = "LIFELINE_MEMORY"
        /// `--levels memory,disk`: drain the rounds whose number is a multiple of this.
        package static let drainEvery = "LIFELINE_DRAIN_EVERY"
        /// `--levels memory,disk`: the most bytes the rank's level-1 copies may take (0: no bound).
        package static let memoryBytesMax = "LIFELINE_MEMORY_MAX"
        /// The page where the ranks on the supervisor's host sum their log syncs as one union
        /// (`SharedSyncTime`; absent: none).
        package static let syncTime = "LIFELINE_SYNC_TIME"
        /// A rank relaunched after it failed: the safe point it had reached then, which it
        /// reports passing again (absent: none).
        package static let catchUpStep = "LIFELINE_CATCH_UP_STEP"
        /// `--levels memory,disk`: "1": the rank restores a line held in memory alone whose
        /// drain ended with its predecessor, and drains it again.
        package static let drainRestored = "LIFELINE_DRAIN_RESTORED"
        /// `--levels memory,disk` on several hosts: "none": the supervisor holds no copy in
        /// memory of the snapshot the rank restores, which it reads from disk (a copy of that
        /// rank and round in the folder is another run's); else the host whose memory holds the
        /// copy, when it is not the rank's own (the rank fetches it from there first).
        package static let memoryCopyHost = "LIFELINE_MEMORY_COPY_HOST"
    }

    /// `--levels memory,disk`: where the rank's level-1 copies go and which rounds it drains.
    package struct MemoryLevelSettings: Sendable, Equatable {
        /// The job's level-1 folder on this host (`MemoryLevel`).
        package var folder: String
        /// The rounds whose number is a multiple of this are drained to disk.
        package var drainEvery: Int
        /// The most bytes the rank's copies may take, its new one and the committed one (0: no bound).
        package var bytesMax: Int
        /// The rank restores a line held in memory alone that its predecessor had not drained
        /// yet: it drains it (from its copy in memory) before any later round.
        package var drainRestored = false
        /// Whether the rank restores from a copy in memory, if it finds an intact one: false on
        /// several hosts when the supervisor holds none of the snapshot it restores.
        package var readsCopy = true
        /// On several hosts: the host whose memory holds the copy the rank restores, when it is
        /// not the rank's own host (a lost host's rank placed away from its partner): the rank
        /// fetches it from there into its host's memory before it restores.
        package var copyHost: String?

        /// Settings with every field given.
        package init(
            folder: String, drainEvery: Int, bytesMax: Int, drainRestored: Bool = false, readsCopy: Bool = true,
            copyHost: String? = nil
        ) {
            self.folder = folder
            self.drainEvery = drainEvery
            self.bytesMax = bytesMax
            self.drainRestored = drainRestored
            self.readsCopy = readsCopy
            self.copyHost = copyHost
        }

        /// Whether round `epoch` is drained to disk.
        package func drains(_ epoch: Epoch) -> Bool { DrainTracker.drains(epoch.rawValue, every: UInt64(max(1, drainEvery))) }

        /// Whether two copies of `bytes` bytes fit `bytesMax`: a copy and a spare to write the
        /// next one over (`MemoryLevel.prepareSpare`).
        package func fitsTwoCopies(of bytes: Int) -> Bool { bytesMax == 0 || 2 * bytes <= bytesMax }
    }

    /// Where a rank of a job on several hosts runs, and where its supervisor listens.
    package struct Hosts: Sendable, Equatable {
        /// The rank's host, as the launcher names it.
        package var host: String
        /// Its IPv4 address.
        package var hostAddress: String
        /// The supervisor's IPv4 address.
        package var supervisorAddress: String
        /// The supervisor's TCP port.
        package var supervisorPort: UInt16
        /// The TCP_USER_TIMEOUT of the rank's connections (`HostLink.linkTimeoutMs`).
        package var linkTimeoutMs: Int

        /// Placement and supervisor with every field given.
        package init(host: String, hostAddress: String, supervisorAddress: String, supervisorPort: UInt16, linkTimeoutMs: Int) {
            self.host = host
            self.hostAddress = hostAddress
            self.supervisorAddress = supervisorAddress
            self.supervisorPort = supervisorPort
            self.linkTimeoutMs = linkTimeoutMs
        }
    }

    /// The rank's index.
    package var rank: RankID
    /// The number of ranks.
    package var rankCount: Int
    /// The job's secret token.
    package var token: String
    /// The prefix of the abstract socket names.
    package var addressPrefix: String
    /// The rank's incarnation.
    package var incarnation: UInt32
    /// The supervisor's process ID.
    package var supervisorPID: Int32
    /// The two stable-storage roots.
    package var storageRoots: (a: String, b: String)
    /// The checkpoint protocol variant.
    package var variant: CheckpointVariant
    /// Milliseconds between heartbeats.
    package var heartbeatMs: Int
    /// Pending rank-side faults with their index in the job's list.
    package var faults: [(index: Int, spec: FaultSpec)]
    /// The message logging mode.
    package var logging: LoggingMode
    /// Where to write delivery traces, if tracing.
    package var traceDirectory: String?
    /// The monotonic clock's reading at the job's start.
    package var clockOrigin: Double
    /// Retained bytes past which the rank asks for a checkpoint (0: no maximum).
    package var retainedBytesMax: Int = 0
    /// Log bytes past which the rank asks for a checkpoint (0: no maximum).
    package var logBytesMax: Int = 0
    /// Independent checkpointing: the mean seconds between this rank's checkpoints (each period
    /// is drawn within ±25 % of it, from a generator seeded by the rank and incarnation).
    package var intervalSeconds: Double = 0
    /// Optimistic logging: flush buffered log records after this many milliseconds.
    package var logFlushMs: Int = 20
    /// Optimistic logging: flush buffered log records once they hold this many bytes.
    package var logFlushBytes: Int = 1 << 20
    /// The snapshot chunk size in bytes.
    package var chunkBytes: Int = ChunkedSnapshots.chunkBytesDefault
    /// The zstd level of snapshot chunks.
    package var compressionLevel: Int32 = ChunkedSnapshots.levelDefault
    /// `--keep-logs`: commits do not trim the message log, so `lifeline replay` can run a rank
    /// from any kept line (the log's maximum does not apply).
    package var keepLogs = false
    /// A job on several hosts: the rank's host and its supervisor's TCP address (nil: every rank
    /// is a child of the supervisor on its host, and talks over Unix sockets). The token then
    /// comes on standard input, and the rank does not check its parent.
    package var hosts: Hosts?
    /// `--levels memory,disk` (nil: disk alone).
    package var memoryLevel: MemoryLevelSettings?
    /// The data bytes of each ring of the shared memory a rank makes for a peer it connects to
    /// on its host (0: sockets alone, `--transport sockets`).
    package var ringBytes = 0
    /// The page of `SharedSyncTime` (nil: none).
    package var syncTimePath: String?
    /// A rank relaunched after it failed: the safe point it had reached then. Passing it again
    /// it says so (`caughtUp`), and the supervisor records how long the job took to get back
    /// there (`caught_up`). Nil: not relaunched after a failure.
    package var catchUpStep: Int?

    /// What `START` said: where the rank begins, whether it replays, the mirrors it writes (a
    /// fresh start until then).
    package var plan = StartPlan()

    /// Takes the plan `START` carried.
    package mutating func apply(_ plan: StartPlan) { self.plan = plan }
    /// Whether this launch recovers the rank (after a failure, or by `resume`).
    package var restarted: Bool { plan.restarted }
    /// The committed round to restore from (`.start` for a fresh start).
    package var restoreEpoch: Epoch { plan.restoreEpoch }
    /// The store-relative name of the snapshot to restore.
    package var restoreSnapshot: String? { plan.restoreSnapshot }
    /// The newest round started before this launch.
    package var deliverableEpoch: Epoch { plan.deliverableEpoch }
    /// Whether a restarted rank replays its message log (it restarts alone, or with its
    /// orphans, while the others keep running). After a global rollback it does not: every
    /// rank re-executes from the recovery line, and what the logs hold past it is void.
    package var replayLog: Bool { plan.replayLog }
    /// Optimistic logging: the failed ranks and the last state interval each can recover; a
    /// rank restarted with it replays only what depends on no later state of any of them.
    package var replayLimit: RecoveryPlan.ReplayLimit? { plan.replayLimit }
    /// The mirrors the rank writes its snapshots to (both, unless one has failed).
    package var writeMirrors: StorageMirrors { plan.writeMirrors }

    /// The abstract socket name of the supervisor.
    package var supervisorAddress: String { "\(addressPrefix).s" }
    /// The abstract socket name of a rank.
    package func rankAddress(_ rank: RankID) -> String { "\(addressPrefix).\(rank.rawValue)" }

    /// Two launch environments are equal when their variables are.
    package static func == (lhs: LaunchEnvironment, rhs: LaunchEnvironment) -> Bool {
        lhs.variables == rhs.variables
    }

    /// The variables to put in the rank's environment.
    package var variables: [String: String] {
        var result: [String: String] = [
            Key.rank: String(rank.rawValue), Key.size: String(rankCount), Key.token: token,
            Key.addressPrefix: addressPrefix, Key.incarnation: String(incarnation),
            Key.supervisorPID: String(supervisorPID), Key.storage: "\(storageRoots.a),\(storageRoots.b)",
            Key.variant: variant.rawValue,
            Key.heartbeatMs: String(heartbeatMs),
            Key.faults: faults.map { "\($0.index)=\($0.spec)" }.joined(separator: ";"),
            Key.logging: logging.rawValue, Key.clockOrigin: String(clockOrigin),
            Key.retainedBytesMax: String(retainedBytesMax), Key.logBytesMax: String(logBytesMax),
            Key.interval: String(intervalSeconds), Key.logFlushMs: String(logFlushMs),
            Key.logFlushBytes: String(logFlushBytes), Key.chunkBytes: String(chunkBytes),
            Key.compressionLevel: String(compressionLevel),
        ]
        if let traceDirectory { result[Key.trace] = traceDirectory }
        if ringBytes > 0 { result[Key.ringBytes] = String(ringBytes) }
        if let syncTimePath { result[Key.syncTime] = syncTimePath }
        if let catchUpStep { result[Key.catchUpStep] = String(catchUpStep) }
        if keepLogs { result[Key.keepLogs] = "1" }
        if let memoryLevel {
            result[Key.memoryFolder] = memoryLevel.folder
            result[Key.drainEvery] = String(memoryLevel.drainEvery)
            result[Key.memoryBytesMax] = String(memoryLevel.bytesMax)
            if memoryLevel.drainRestored { result[Key.drainRestored] = "1" }
            if !memoryLevel.readsCopy {
                result[Key.memoryCopyHost] = "none"
            } else if let copyHost = memoryLevel.copyHost {
                result[Key.memoryCopyHost] = copyHost
            }
        }
        if let hosts {
            result[Key.token] = nil
            result[Key.tokenOnStdin] = "1"
            result[Key.host] = hosts.host
            result[Key.hostAddress] = hosts.hostAddress
            result[Key.supervisorTCP] = "\(hosts.supervisorAddress):\(hosts.supervisorPort)"
            result[Key.linkTimeoutMs] = String(hosts.linkTimeoutMs)
        }
        return result
    }

    private static func validChunkBytes(_ bytes: Int) -> Int? {
        (ChunkedSnapshots.chunkBytesMin...ChunkedSnapshots.chunkBytesMax).contains(bytes) && bytes % 8 == 0 ? bytes : nil
    }

    /// Reads the environment of this process; nil when it was not started by `lifeline run`.
    package static func current() throws -> LaunchEnvironment? {
        func value(_ key: String) -> String? { getenv(key).map { String(cString: $0) } }
        guard let rankText = value(Key.rank) else { return nil }
        func required(_ key: String) throws -> String {
            guard let text = value(key), !text.isEmpty else {
                throw LifelineError(.environment, "\(key) is not set: start ranks with `lifeline run`")
            }
            return text
        }
        func number<T: FixedWidthInteger>(_ key: String, _: T.Type) throws -> T {
            let text = try required(key)
            guard let parsed = T(text) else { throw LifelineError(.environment, "\(key)=\(text) is not a number") }
            return parsed
        }
        guard let rank = Int(rankText) else { throw LifelineError(.environment, "\(Key.rank)=\(rankText) is not a number") }
        let rankCount = try number(Key.size, Int.self)
        guard rankCount > 0, (0..<rankCount).contains(rank) else {
            throw LifelineError(.environment, "\(Key.rank)=\(rank) is not in 0..<\(rankCount)")
        }
        let roots = try required(Key.storage).split(separator: ",", maxSplits: 1).map(String.init)
        guard roots.count == 2 else { throw LifelineError(.environment, "\(Key.storage) must be A,B") }
        guard let variant = CheckpointVariant(rawValue: try required(Key.variant)) else {
            throw LifelineError(.environment, "\(Key.variant) is not a checkpoint variant")
        }
        var faults: [(index: Int, spec: FaultSpec)] = []
        for item in (value(Key.faults) ?? "").split(separator: ";") {
            let parts = item.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let index = Int(parts[0]),
                  let spec = try? FaultSpec.parse(String(parts[1]), rankCount: rankCount)
            else { throw LifelineError(.environment, "\(Key.faults) has a bad entry '\(item)'") }
            // Under mpirun every rank gets the launch's faults: each keeps its own.
            if let target = spec.rank, target.rawValue != rank { continue }
            faults.append((index, spec))
        }
        guard let logging = LoggingMode(rawValue: try required(Key.logging)) else {
            throw LifelineError(.environment, "\(Key.logging) is not a logging mode")
        }
        var hosts: Hosts?
        if let supervisor = value(Key.supervisorTCP) {
            let parts = supervisor.split(separator: ":")
            guard parts.count == 2, let port = UInt16(parts[1]) else {
                throw LifelineError(.environment, "\(Key.supervisorTCP)=\(supervisor) is not ADDRESS:PORT")
            }
            // Under mpirun the supervisor cannot say where a rank runs: the rank's host is the
            // address it reaches the supervisor from.
            let hostAddress = value(Key.hostAddress).flatMap { $0.isEmpty ? nil : $0 }
                ?? HostLink.sourceAddress(toReach: String(parts[0]))
            guard let hostAddress else {
                throw LifelineError(.environment, "no route from this host to the supervisor at \(supervisor)")
            }
            hosts = Hosts(host: value(Key.host).flatMap { $0.isEmpty ? nil : $0 } ?? hostAddress, hostAddress: hostAddress,
                          supervisorAddress: String(parts[0]), supervisorPort: port,
                          linkTimeoutMs: try number(Key.linkTimeoutMs, Int.self))
        }
        let token = try value(Key.tokenFile).map(tokenFromFile)
            ?? (value(Key.tokenOnStdin) == "1" ? try tokenFromStandardInput() : try required(Key.token))
        var environment = LaunchEnvironment(
            rank: RankID(rank), rankCount: rankCount, token: token,
            addressPrefix: try required(Key.addressPrefix), incarnation: try number(Key.incarnation, UInt32.self),
            supervisorPID: try number(Key.supervisorPID, Int32.self), storageRoots: (roots[0], roots[1]),
            variant: variant, heartbeatMs: try number(Key.heartbeatMs, Int.self),
            faults: faults, logging: logging,
            traceDirectory: value(Key.trace),
            clockOrigin: value(Key.clockOrigin).flatMap(Double.init) ?? 0,
            retainedBytesMax: value(Key.retainedBytesMax).flatMap(Int.init) ?? 0,
            logBytesMax: value(Key.logBytesMax).flatMap(Int.init) ?? 0,
            intervalSeconds: value(Key.interval).flatMap(Double.init) ?? 0,
            logFlushMs: value(Key.logFlushMs).flatMap(Int.init) ?? 20,
            logFlushBytes: value(Key.logFlushBytes).flatMap(Int.init) ?? 1 << 20,
            chunkBytes: value(Key.chunkBytes).flatMap(Int.init).flatMap(Self.validChunkBytes)
                ?? ChunkedSnapshots.chunkBytesDefault,
            compressionLevel: value(Key.compressionLevel).flatMap(Int32.init)
                .flatMap { ChunkedSnapshots.levelRange.contains($0) ? $0 : nil } ?? ChunkedSnapshots.levelDefault,
            keepLogs: value(Key.keepLogs) == "1", hosts: hosts)
        environment.ringBytes = value(Key.ringBytes).flatMap(Int.init)
            .flatMap { SharedRings.isAcceptable(capacity: $0) ? $0 : nil } ?? 0
        environment.syncTimePath = value(Key.syncTime).flatMap { $0.isEmpty ? nil : $0 }
        environment.catchUpStep = value(Key.catchUpStep).flatMap(Int.init)
        if let folder = value(Key.memoryFolder), !folder.isEmpty {
            environment.memoryLevel = MemoryLevelSettings(
                folder: folder, drainEvery: max(1, value(Key.drainEvery).flatMap(Int.init) ?? 1),
                bytesMax: max(0, value(Key.memoryBytesMax).flatMap(Int.init) ?? 0),
                drainRestored: value(Key.drainRestored) == "1",
                readsCopy: value(Key.memoryCopyHost) != "none",
                copyHost: value(Key.memoryCopyHost).flatMap { $0.isEmpty || $0 == "none" ? nil : $0 })
        }
        return environment
    }

    /// The token, as the first line of the file at `path`.
    private static func tokenFromFile(_ path: String) throws -> String {
        var bytes: [UInt8] = []
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buffer = [UInt8](repeating: 0, count: 1024)
            let count = read(fd, &buffer, buffer.count)
            if count > 0 { bytes = Array(buffer[..<count]) }
            close(fd)
        }
        guard let line = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first, !line.isEmpty
        else { throw LifelineError(.environment, "\(Key.tokenFile)=\(path) cannot be read: start ranks with `lifeline run`") }
        return String(line)
    }

    /// The token, as the first line of standard input (the supervisor writes it to the pipe it
    /// starts the launch command with, and closes it). Waits 10 s at most.
    static func tokenFromStandardInput() throws -> String {
        var line: [UInt8] = []
        let deadline = monotonicSeconds() + 10
        while line.count < 1024 {
            var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
            let left = deadline - monotonicSeconds()
            guard left > 0 else { break }
            guard poll(&descriptor, 1, Int32(left * 1000)) > 0 else { continue }
            var byte: UInt8 = 0
            let count = read(0, &byte, 1)
            if count < 0, errno == EINTR || errno == EAGAIN { continue }
            guard count == 1 else { break }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        throw LifelineError(.environment, "\(Key.tokenOnStdin)=1 but no token line came on standard input: start ranks with `lifeline run`")
    }
}
