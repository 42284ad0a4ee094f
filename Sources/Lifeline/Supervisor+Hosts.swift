#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore

/// A job on several hosts (`--launcher ssh|slurm|mpirun`): where each rank runs, the
/// supervisor's TCP listener, and where each rank listens for its peers. The protocol is the
/// same as on one host; only how a rank is started and how it is reached differ.
final class HostJob {
    /// Each rank's host and every host's slots; the lost hosts (`host_lost`), where no rank is
    /// placed again.
    var placement: HostPlacement
    /// Each rank's host, as the job names it (a lost host's ranks move to the others).
    var rankHosts: [String] { placement.rankHosts }
    /// Each host's IPv4 address, by name.
    let hostAddresses: [String: String]
    /// The supervisor's TCP listener, its address and port.
    let listener: Int32
    let address: String
    let port: UInt16
    /// The ranks' control connections from other hosts, until their handshakes are in.
    let acceptor: HandshakeAcceptor
    /// The launch command template (`{host}`, `{cmd}`, `{rank}`, `{incarnation}`, `{jobid}`);
    /// unused under mpirun.
    let launchCommand: String
    /// Whether Open MPI's mpirun starts the ranks (all at once).
    let mpirun: Bool
    /// Under `--launcher slurm`: the allocation's job ID (its steps are the ranks).
    let slurmJobID: String?
    /// The ranks' link timeout (`HostLink.linkTimeoutMs`).
    let linkTimeoutMs: Int
    /// Where each rank listens for peers on other hosts (nil until its process connected).
    var addresses: [RankAddress?]
    /// The probes of lost hosts under way (`HostProbe`), by host.
    var probes: [String: RunningProbe] = [:]
    /// The serial of the last probe started (each probe's handshake carries its own).
    var probeSerial: UInt32 = 0
    /// When each lost host is probed, and when ranks move back to one that answered.
    var returns: HostReturns
    /// The ranks ordered to end so that they restart on the host they moved back to, each with
    /// the incarnation that was ordered: its exit is not a failure.
    var moving: [Int: UInt32] = [:]

    /// Places the ranks (on the hosts given, or on the Slurm allocation's nodes), resolves the
    /// hosts and listens; throws one line for a missing allocation, a host without an address
    /// or an address nobody can listen on.
    init(configuration: JobConfiguration, token: String) throws {
        var placed = configuration
        if configuration.launcher == .slurm {
            let allocation = try SlurmAllocation.current()
            slurmJobID = allocation.jobID
            if placed.hosts == nil { placed.hosts = allocation.nodes.map { JobConfiguration.Host(name: $0) } }
        } else {
            slurmJobID = nil
        }
        guard let rankHosts = try placed.rankHosts() else { throw LifelineError(.configuration, "the job names no hosts") }
        try JobConfiguration.checkPartnerHosts(configuration, rankHosts: rankHosts)
        // Under mpirun without hosts every rank is on "localhost".
        let hosts = placed.hosts ?? [JobConfiguration.Host(name: rankHosts[0])]
        self.placement = HostPlacement(rankHosts: rankHosts, hosts: hosts.map { ($0.name, $0.slots) })
        // Where a lost host's ranks' second copies are: on the partner's disk, and with levels
        // in its memory.
        placement.prefersPartner = StorageRoots.partnered(configuration.storageRoots) || configuration.memoryLevel == true
        self.linkTimeoutMs = HostLink.linkTimeoutMs(
            heartbeatMs: configuration.heartbeatMs, heartbeatTimeoutMs: configuration.heartbeatTimeoutMs)
        // The supervisor's side of a connection breaks no sooner than it would judge the rank.
        HostLink.userTimeoutMs.store(UInt32(clamping: max(3000, configuration.heartbeatTimeoutMs)), ordering: .relaxed)
        var addresses: [String: String] = [:]
        for host in placement.hosts.map(\.name) where addresses[host] == nil {
            guard let address = HostLink.resolve(host) else {
                throw LifelineError(.configuration, "host '\(host)' has no IPv4 address: check the name (or /etc/hosts)")
            }
            addresses[host] = address
        }
        self.hostAddresses = addresses
        var listenAddress: String
        var listenPort: UInt16 = 0
        if let given = configuration.listenAddress {
            let parts = given.split(separator: ":", omittingEmptySubsequences: false)
            guard (1...2).contains(parts.count), parts.count == 1 || UInt16(parts[1]) != nil else {
                throw LifelineError(.configuration, "--listen \(given) is not ADDRESS or ADDRESS:PORT")
            }
            listenAddress = String(parts[0])
            listenPort = parts.count == 2 ? UInt16(parts[1])! : 0
        } else {
            guard let first = addresses[rankHosts[0]], let local = HostLink.sourceAddress(toReach: first) else {
                throw LifelineError(.configuration,
                    "no route from this host to '\(rankHosts[0])': give the address to listen on with --listen ADDRESS")
            }
            listenAddress = local
        }
        let (listener, port) = try HostLink.listen(address: listenAddress, port: listenPort)
        self.listener = listener
        self.address = listenAddress
        self.port = port
        self.acceptor = HandshakeAcceptor(listener: listener, mutual: .supervisor, token: token)
        self.mpirun = configuration.launcher == .mpirun
        self.launchCommand = configuration.launchCommand
            ?? (configuration.launcher == .slurm ? JobConfiguration.slurmLaunchCommand : JobConfiguration.launchCommandDefault)
        self.addresses = Array(repeating: nil, count: rankHosts.count)
        self.returns = HostReturns(delaySecondsBase: Double(configuration.heartbeatTimeoutMs) / 1000)
    }

    deinit {
        close(listener)
        for probe in probes.values { kill(probe.pid, SIGKILL) }
    }

    /// The environment's part that says where `rank` runs and where the supervisor listens.
    func hosts(of rank: Int) -> LaunchEnvironment.Hosts {
        let host = rankHosts[rank]
        return LaunchEnvironment.Hosts(
            host: host, hostAddress: hostAddresses[host]!, supervisorAddress: address, supervisorPort: port,
            linkTimeoutMs: linkTimeoutMs)
    }

    /// The command line that starts `program` for `rank` on its host: the launch command with
    /// `{host}` and `{cmd}` filled in, each one shell-quoted word, where `{cmd}` sets the
    /// rank's environment (which holds no token) and runs the program.
    func commandLine(
        rank: Int, incarnation: UInt32, program: String, arguments: [String], environment: [String: String]
    ) -> String {
        commandLine(
            host: rankHosts[rank], rank: String(rank), incarnation: incarnation, program: program, arguments: arguments,
            environment: environment)
    }

    /// The command line that starts `program` on `host` with `environment`, `{rank}` being
    /// `rank` (a rank's index, or "probe").
    func commandLine(
        host: String, rank: String, incarnation: UInt32, program: String, arguments: [String], environment: [String: String]
    ) -> String {
        let variables = environment.keys.sorted().map { Self.quoted("\($0)=\(environment[$0]!)") }
        let command = (["exec", "env"] + variables + ([program] + arguments).map(Self.quoted)).joined(separator: " ")
        return "exec " + launchCommand
            .replacingOccurrences(of: "{host}", with: Self.quoted(host))
            .replacingOccurrences(of: "{rank}", with: rank)
            .replacingOccurrences(of: "{incarnation}", with: String(incarnation))
            .replacingOccurrences(of: "{jobid}", with: Self.quoted(slurmJobID ?? ""))
            .replacingOccurrences(of: "{cmd}", with: Self.quoted(command))
    }

    /// The command line that starts every rank under mpirun: `mpirun -np N` on the hosts (by
    /// their counts, in order), each rank a shell
    /// that takes its rank from Open MPI, its incarnation from it, and sends its output to the
    /// rank's files in the run directory.
    func mpirunCommandLine(
        program: String, arguments: [String], environment: [String: String], firstIncarnation: UInt32, rankCount: Int,
        outputDirectory: String
    ) -> String {
        var variables = environment
        variables[LaunchEnvironment.Key.rank] = nil
        variables[LaunchEnvironment.Key.incarnation] = nil
        let settings = variables.keys.sorted().map { Self.quoted("\($0)=\(variables[$0]!)") }
        let output = Self.quoted(outputDirectory)
        let script = "r=${OMPI_COMM_WORLD_RANK:?not started by mpirun}; i=$((\(firstIncarnation) + r)); exec env "
            + (settings + ["LIFELINE_RANK=$r", "LIFELINE_INCARNATION=$i"]).joined(separator: " ") + " "
            + ([program] + arguments).map(Self.quoted).joined(separator: " ")
            + " >>\(output)/rank-$r.$i.out 2>>\(output)/rank-$r.$i.err"
        // A rank's death takes the others down at once, not after mpirun's default second.
        var options = ["-np", String(rankCount), "--oversubscribe", "--mca", "odls_base_sigkill_timeout", "0"]
        if getuid() == 0 { options.append("--allow-run-as-root") }
        if placement.hosts.map(\.name) != ["localhost"] {
            let counts = placement.hosts.map { ($0.name, placement.rankCount(on: $0.name)) }.filter { $0.1 > 0 }
            options += ["--host", counts.map { "\($0.0):\($0.1)" }.joined(separator: ",")]
        }
        return "exec mpirun " + options.map(Self.quoted).joined(separator: " ") + " /bin/sh -c " + Self.quoted(script)
    }

    /// Under Slurm, ends the job step of `rank`'s `incarnation` (found by its name), in the
    /// background: killing srun alone may leave the task running on its node.
    func cancelStep(rank: Int, incarnation: UInt32) {
        cancelStep(named: "lifeline-\(rank)-\(incarnation)")
    }

    /// Under Slurm, ends the job step `name` (`lifeline-{rank}-{incarnation}`), in the background.
    func cancelStep(named name: String) {
        guard let jobID = slurmJobID else { return }
        Thread.detachNewThread {
            guard let steps = SlurmAllocation.output(of: ["squeue", "--noheader", "--steps", "--jobs", jobID, "--format", "%i %j"])
            else { return }
            for line in steps.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 2, fields[1] == name else { continue }
                _ = SlurmAllocation.output(of: ["scancel", "--quiet", "--signal=KILL", String(fields[0])])
            }
        }
    }

    /// `text` as one word for a POSIX shell.
    static func quoted(_ text: String) -> String {
        // Plain words stay as they are (a word that begins with '=' is quoted: zsh expands it).
        if !text.isEmpty, !text.hasPrefix("="),
           text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0)) }) {
            return text
        }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// The Slurm allocation `lifeline run --launcher slurm` runs in (`salloc`, `sbatch`).
enum SlurmAllocation {
    /// The allocation's job ID and its nodes, in order.
    static func current() throws -> (jobID: String, nodes: [String]) {
        let environment = ProcessInfo.processInfo.environment
        guard let jobID = environment["SLURM_JOB_ID"], let nodeList = environment["SLURM_JOB_NODELIST"] ?? environment["SLURM_NODELIST"]
        else {
            throw LifelineError(.configuration,
                "--launcher slurm runs inside an allocation: salloc --no-kill -N NODES -n RANKS lifeline run --launcher slurm … (or the same in an sbatch script)")
        }
        guard let text = output(of: ["scontrol", "show", "hostnames", nodeList]) else {
            throw LifelineError(.configuration, "cannot list the allocation's nodes (scontrol show hostnames \(nodeList)): is Slurm's scontrol on PATH?")
        }
        let nodes = text.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
        guard !nodes.isEmpty else { throw LifelineError(.configuration, "the allocation \(jobID) has no nodes (\(nodeList))") }
        return (jobID, nodes)
    }

    /// What `command` (looked up on PATH) writes to standard output, when it exits with 0.
    static func output(of command: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = command
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? String(decoding: data, as: UTF8.self) : nil
    }
}

/// One rank of a launch, as the supervisor starts it.
struct RankLaunch {
    /// The rank.
    var rank: Int
    /// The step it begins at (-1: the start).
    var step: Int
    /// Its environment (its incarnation among it).
    var environment: LaunchEnvironment
}

extension Supervisor {
    /// Starts the processes of a launch: one per rank, or under `--launcher mpirun` one mpirun
    /// for all (the pid of each rank is then mpirun's). Returns the pids in the launches' order.
    func spawnRanks(_ launches: [RankLaunch], outputDirectory: String) throws -> [pid_t] {
        guard let hostJob, hostJob.mpirun else {
            return try launches.map { launch in
                try spawnRank(
                    launch.rank, environment: launch.environment,
                    stdoutPath: OutputCommitter.stdoutPath(
                        directory: outputDirectory, rank: launch.rank, incarnation: launch.environment.incarnation),
                    stderrPath: OutputCommitter.stderrPath(
                        directory: outputDirectory, rank: launch.rank, incarnation: launch.environment.incarnation))
            }
        }
        guard let first = launches.first, launches.count == configuration.rankCount,
              launches.enumerated().allSatisfy({ $1.rank == $0 && $1.environment.incarnation == first.environment.incarnation + UInt32($0) })
        else {
            throw LifelineError(.jobFailed, "mpirun starts every rank at once: a launch of some ranks only cannot be made under --launcher mpirun")
        }
        var common = first.environment
        common.faults = launches.flatMap(\.environment.faults)
        common.hosts = LaunchEnvironment.Hosts(
            host: "", hostAddress: "", supervisorAddress: hostJob.address, supervisorPort: hostJob.port,
            linkTimeoutMs: hostJob.linkTimeoutMs)
        common.supervisorPID = 0
        // The ranks' output files exist before they start, as a spawned rank's do (the output
        // committer opens them at once); the ranks' shells append to them.
        for launch in launches {
            for path in [OutputCommitter.stdoutPath(directory: outputDirectory, rank: launch.rank, incarnation: launch.environment.incarnation),
                         OutputCommitter.stderrPath(directory: outputDirectory, rank: launch.rank, incarnation: launch.environment.incarnation)] {
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                guard fd >= 0 else {
                    throw LifelineError(.environment, "cannot create the rank's output file \(path): \(String(cString: strerror(errno)))")
                }
                close(fd)
            }
        }
        // mpirun hands its standard input to one rank: the token goes in a file only the user
        // reads, in the run directory (on the file system every host shares).
        let tokenPath = configuration.runDirectory + "/token"
        try writePrivately(token + "\n", to: tokenPath)
        var variables = common.variables
        variables[LaunchEnvironment.Key.tokenOnStdin] = nil
        variables[LaunchEnvironment.Key.tokenFile] = tokenPath
        let line = hostJob.mpirunCommandLine(
            program: configuration.program, arguments: configuration.arguments, environment: variables,
            firstIncarnation: first.environment.incarnation, rankCount: launches.count, outputDirectory: outputDirectory)
        let pid = try launcher.spawn(
            program: "/bin/sh", arguments: ["-c", line], environment: [:],
            stdoutPath: outputDirectory + "/mpirun.\(first.environment.incarnation).out",
            stderrPath: outputDirectory + "/mpirun.\(first.environment.incarnation).err")
        return Array(repeating: pid, count: launches.count)
    }

    /// Writes `text` to a new file at `path` that only the user can read (mode 0600).
    private func writePrivately(_ text: String, to path: String) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw LifelineError(.environment, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
            throw LifelineError(.environment, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Starts `rank`'s process: as a child (local launcher), or by the launch command on its
    /// host, with the token on standard input.
    func spawnRank(_ rank: Int, environment: LaunchEnvironment, stdoutPath: String, stderrPath: String) throws -> pid_t {
        guard let hostJob else {
            return try launcher.spawn(
                program: configuration.program, arguments: configuration.arguments,
                environment: environment.variables, stdoutPath: stdoutPath, stderrPath: stderrPath)
        }
        var remote = environment
        remote.hosts = hostJob.hosts(of: rank)
        remote.supervisorPID = 0
        let line = hostJob.commandLine(
            rank: rank, incarnation: environment.incarnation, program: configuration.program,
            arguments: configuration.arguments, environment: remote.variables)
        return try launcher.spawn(
            program: "/bin/sh", arguments: ["-c", line], environment: [:], input: Array((token + "\n").utf8),
            stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    /// Sends `signal` to `rank`'s process (on several hosts, its launch command's); a SIGKILL
    /// under Slurm also cancels the rank's job step.
    func signalRank(_ rank: Int, _ signal: Int32) {
        // A process whose exit was read (one mpirun held several ranks) is gone: its pid may
        // name another process by now.
        guard !endedLaunches.contains(slots[rank].pid) else { return }
        kill(slots[rank].pid, signal)
        if signal == SIGKILL, let hostJob, hostJob.slurmJobID != nil {
            hostJob.cancelStep(rank: rank, incarnation: machine.ranks[rank].incarnation)
        }
    }

    /// A control connection from another host passed the handshake: notes where its rank
    /// listens for peers.
    func noteAddress(of rank: Int, _ handshake: Handshake, fd: Int32) {
        guard let hostJob else { return }
        if hostJob.mpirun, let peer = HostLink.peerAddress(fd) {
            // Open MPI placed the rank: it listens on the address it reached the supervisor
            // from, which also names its host.
            hostJob.addresses[rank] = RankAddress(host: peer, address: peer, port: handshake.port, incarnation: handshake.incarnation)
            return
        }
        let host = hostJob.rankHosts[rank]
        hostJob.addresses[rank] = RankAddress(
            host: host, address: hostJob.hostAddresses[host]!, port: handshake.port, incarnation: handshake.incarnation)
    }
}

extension Supervisor {
    /// A job on several hosts: the silent ranks (past their heartbeat or join timeout) are about
    /// to be judged; a host the placement's silence rule finds lost (`HostPlacement.lostBySilence`)
    /// is lost first, so that its ranks are relaunched elsewhere.
    func noteSilence(of silent: [Int]) {
        guard let hostJob, !silent.isEmpty else { return }
        for (host, cause) in hostJob.placement.lostBySilence(
            of: silent, now: now, heartbeatTimeoutSeconds: Double(configuration.heartbeatTimeoutMs) / 1000) {
            loseHost(host, cause: cause)
        }
    }

    /// A job on several hosts: `rank` failed before its control connection was taken; the
    /// placement's exit rule (`HostPlacement.lostByExit`) may find its host cut off.
    func noteExitBeforeConnecting(_ rank: Int, _ exit: ProcessExit) {
        guard let hostJob, slots[rank].connection == nil, let code = exit.exitCode, code != 0, !machine.ranks[rank].exitExpected,
              let (host, cause) = hostJob.placement.lostByExit(
                of: rank, exit: "\(exit)", now: now, heartbeatTimeoutSeconds: Double(configuration.heartbeatTimeoutMs) / 1000)
        else { return }
        loseHost(host, cause: cause)
    }

    /// Marks `host` lost and moves its ranks to free slots on the hosts left (said on the
    /// terminal and as `host_lost`); with no other host left, the ranks stay (the job goes on
    /// trying there). When the free slots cannot take them, `--on-host-loss` decides: they
    /// double up (`wait`), or the job is to stop and continue on fewer ranks (`shrink`) or stop
    /// (`fail`), which `hostLossStop` holds for the caller to perform.
    private func loseHost(_ host: String, cause: String) {
        guard let hostJob, !hostJob.placement.lost.contains(host) else { return }
        let policy = configuration.onHostLoss ?? .wait
        let ranks = hostJob.rankHosts.indices.filter { hostJob.rankHosts[$0] == host }.map(String.init).joined(separator: ",")  // before any move
        // Its memory is taken for gone with it, even where its ranks must stay (`lastHost`).
        memoryCopies.lose(host: host)
        launchedBeforeHostLoss = Set(0..<configuration.rankCount)
        let decision = hostJob.placement.lose(
            host, policy: HostPlacement.Policy(rawValue: policy.rawValue) ?? .wait, shrinkRefusal: shrinkRefusal)
        switch decision {
        case .lastHost:
            return
        case .moved(let moves, let refused):
            if let refused {
                warn("host \(host) lost (\(cause)), and the job cannot continue on fewer ranks: \(refused); the ranks double up instead")
            }
            announce(host, moves, cause: cause)
            if !hostJob.mpirun { hostJob.returns.lost(host, now: now) }
            if StorageRoots.partnered(configuration.storageRoots), Set(hostJob.rankHosts).count < 2 {
                warn("only one host has ranks now, so no host can keep a partner copy: no line commits until the lost host answers again (its ranks then move back to it); or stop the job (Ctrl-C stops it at the last committed line) and resume it with --hosts naming two hosts at least")
            }
        case .fail(let rankCount, let left), .shrink(let rankCount, let left):
            events.record("host_lost", [
                "host": .string(host), "ranks": .string(ranks), "cause": .string(cause), "policy": .string(policy.rawValue),
            ])
            let names = left.map(\.name).joined(separator: ",")
            let why = "host \(host) lost (\(cause)), and the hosts left (\(names)) have slots for \(rankCount) of the \(configuration.rankCount) ranks"
            if case .fail = decision {
                hostLossStop = .fail(why + " (--on-host-loss fail)", rankCount: rankCount, hostsLeft: names)
            } else {
                warn(why + ": continuing on \(rankCount) ranks (--on-host-loss shrink)")
                hostLossStop = .shrink(JobOutcome.Shrink(
                    rankCount: rankCount, hosts: left.map { JobConfiguration.Host(name: $0.name, slots: $0.slots) }))
            }
        }
    }

    /// Says where a lost host's ranks went (`host_lost`); they connect again from there.
    private func announce(_ host: String, _ moves: [HostPlacement.Move], cause: String) {
        guard let hostJob else { return }
        for move in moves { hostJob.addresses[move.rank] = nil }
        let ranks = moves.map { String($0.rank) }.joined(separator: ",")
        warn("host \(host) lost (\(cause)); its ranks \(ranks) move to " + Set(moves.map(\.host)).sorted().joined(separator: ","))
        events.record("host_lost", [
            "host": .string(host), "ranks": .string(ranks), "cause": .string(cause),
            "policy": .string((configuration.onHostLoss ?? .wait).rawValue),
            "moved_to": .string(moves.map { "\($0.rank):\($0.host)" }.joined(separator: ",")),
        ])
    }

    /// Why the job cannot continue on fewer ranks now (nil: it can): the program's answer at
    /// the start (`shrinkTakesMessages`), and the newest intact line, checked as `lifeline
    /// resume -n M` checks it.
    private func shrinkRefusal() -> String? {
        guard let takesMessages = shrinkTakesMessages else {
            return "the program could not be asked whether its state can be redistributed"
        }
        guard let line = newestIntactLine().line else { return nil }
        if let reason = manifests.resizeRefusal(line, of: manifest) { return reason }
        if !takesMessages, let bytes = manifests.inFlightBytes(line), bytes > 0 {
            return "\(bytes) bytes of messages were in flight at line \(line.epoch), and the program's state does not take them"
        }
        return nil
    }

    /// Performs what a lost host left to do (`hostLossStop`): stops every rank at the last
    /// committed line, then either returns (the job continues on fewer ranks: `stoppedOutcome`
    /// says how) or throws the line that says how to resume.
    func performHostLossStop() throws {
        guard let stop = hostLossStop else { return }
        hostLossStop = nil
        stopSurvivors()
        let epoch = Int(manifest.newestLine?.epoch ?? 0)
        switch stop {
        case .fail(let why, let rankCount, let hostsLeft):
            events.record("stopped", ["epoch": .int(epoch), "commits": .int(manifest.commits)])
            throw LifelineError(.jobFailed,
                "\(why): stopped at epoch \(epoch); continue with: lifeline resume \(configuration.runDirectory) --hosts HOSTS "
                    + "(with a host in place of the lost one), or on fewer ranks: lifeline resume \(configuration.runDirectory) -n \(rankCount) --hosts \(hostsLeft)")
        case .shrink(let order):
            events.record("shrink", [
                "from": .int(configuration.rankCount), "to": .int(order.rankCount), "epoch": .int(epoch),
                "hosts": .string(order.hosts.map(\.name).joined(separator: ",")),
            ])
            var outcome = JobOutcome(
                rankCount: configuration.rankCount, epochsCommitted: manifest.commits, failures: failures + 1,
                recoveries: recoveries, runDirectory: configuration.runDirectory)
            outcome.shrink = order
            stoppedOutcome = outcome
        }
    }
}

/// What a lost host leaves the supervisor to do once the rank being judged is put aside.
enum HostLossStop {
    /// Stop and continue on fewer ranks.
    case shrink(JobOutcome.Shrink)
    /// Stop and say how to resume: why, the ranks the hosts left have slots for, and those hosts.
    case fail(String, rankCount: Int, hostsLeft: String)
}
