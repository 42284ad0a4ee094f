#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore

/// A job on several hosts (`--launcher ssh`): where each rank runs, the supervisor's TCP
/// listener, and where each rank listens for its peers. The protocol is the same as on one
/// host; only how a rank is started and how it is reached differ.
final class HostJob {
    /// Each rank's host, as the job names it (a lost host's ranks move to the others).
    var rankHosts: [String]
    /// The hosts in the order given.
    let hostNames: [String]
    /// The hosts lost (`host_lost`): no rank is placed there again.
    var lost: Set<String> = []
    /// When a rank on each host was last heard from (job clock): a host none of whose ranks
    /// spoke for a while is suspected when one of them fails.
    private var heardAt: [String: Double] = [:]

    /// `rank` sent something now.
    func heard(from rank: Int, now: Double) { heardAt[rankHosts[rank]] = now }

    /// Seconds since a rank on `host` was last heard from (since the job began: `now`).
    func silence(of host: String, now: Double) -> Double { now - (heardAt[host] ?? 0) }
    /// Each host's IPv4 address, by name.
    let hostAddresses: [String: String]
    /// The supervisor's TCP listener, its address and port.
    let listener: Int32
    let address: String
    let port: UInt16
    /// The ranks' control connections from other hosts, until their handshakes are in.
    let acceptor: HandshakeAcceptor
    /// The launch command template (`{host}`, `{cmd}`, `{rank}`, `{incarnation}`, `{jobid}`).
    let launchCommand: String
    /// Under `--launcher slurm`: the allocation's job ID (its steps are the ranks).
    let slurmJobID: String?
    /// The ranks' link timeout (`HostLink.linkTimeoutMs`).
    let linkTimeoutMs: Int
    /// Where each rank listens for peers on other hosts (nil until its process connected).
    var addresses: [RankAddress?]

    /// Places the ranks (on the hosts given, or on the Slurm allocation's nodes), resolves the
    /// hosts and listens; throws one line for a missing allocation, a host without an address
    /// or an address nobody can listen on.
    init(configuration: JobConfiguration, token: String) throws {
        var rankHosts = try configuration.rankHosts()
        if configuration.launcher == .slurm {
            let allocation = try SlurmAllocation.current()
            slurmJobID = allocation.jobID
            if rankHosts == nil {
                var placement = configuration
                placement.hosts = allocation.nodes.map { JobConfiguration.Host(name: $0) }
                rankHosts = try placement.rankHosts()
            }
        } else {
            slurmJobID = nil
        }
        guard let rankHosts else { throw LifelineError(.configuration, "the job names no hosts") }
        self.rankHosts = rankHosts
        self.linkTimeoutMs = HostLink.linkTimeoutMs(
            heartbeatMs: configuration.heartbeatMs, heartbeatTimeoutMs: configuration.heartbeatTimeoutMs)
        self.hostNames = rankHosts.reduce(into: []) { names, host in if !names.contains(host) { names.append(host) } }
        var addresses: [String: String] = [:]
        for host in rankHosts where addresses[host] == nil {
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
        self.launchCommand = configuration.launchCommand
            ?? (configuration.launcher == .slurm ? JobConfiguration.slurmLaunchCommand : JobConfiguration.launchCommandDefault)
        self.addresses = Array(repeating: nil, count: rankHosts.count)
    }

    deinit { close(listener) }

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
        let variables = environment.keys.sorted().map { Self.quoted("\($0)=\(environment[$0]!)") }
        let command = (["exec", "env"] + variables + ([program] + arguments).map(Self.quoted)).joined(separator: " ")
        return "exec " + launchCommand
            .replacingOccurrences(of: "{host}", with: Self.quoted(rankHosts[rank]))
            .replacingOccurrences(of: "{rank}", with: String(rank))
            .replacingOccurrences(of: "{incarnation}", with: String(incarnation))
            .replacingOccurrences(of: "{jobid}", with: Self.quoted(slurmJobID ?? ""))
            .replacingOccurrences(of: "{cmd}", with: Self.quoted(command))
    }

    /// Under Slurm, ends the job step of `rank`'s `incarnation` (found by its name), in the
    /// background: killing srun alone may leave the task running on its node.
    func cancelStep(rank: Int, incarnation: UInt32) {
        guard let jobID = slurmJobID else { return }
        let name = "lifeline-\(rank)-\(incarnation)"
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

    /// Moves the ranks of `host` to the hosts not lost, each to the one that holds the fewest
    /// ranks then (the first in order on a tie); marks `host` lost. Returns the moves, or nil
    /// when no other host is left.
    func lose(_ host: String) -> [(rank: Int, to: String)]? {
        let remaining = hostNames.filter { $0 != host && !lost.contains($0) }
        guard !remaining.isEmpty else { return nil }
        lost.insert(host)
        var moves: [(rank: Int, to: String)] = []
        for rank in rankHosts.indices where rankHosts[rank] == host {
            let target = remaining.min { a, b in
                rankHosts.filter { $0 == a }.count < rankHosts.filter { $0 == b }.count
            }!
            rankHosts[rank] = target
            addresses[rank] = nil
            moves.append((rank, target))
        }
        return moves
    }

    /// `text` as one word for a POSIX shell.
    static func quoted(_ text: String) -> String {
        if !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0) }), text.isASCII {
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

private extension String {
    var isASCII: Bool { utf8.allSatisfy { $0 < 0x80 } }
}

extension Supervisor {
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
        kill(slots[rank].pid, signal)
        if signal == SIGKILL, let hostJob, hostJob.slurmJobID != nil {
            hostJob.cancelStep(rank: rank, incarnation: machine.ranks[rank].incarnation)
        }
    }

    /// A control connection from another host passed the handshake: notes where its rank
    /// listens for peers.
    func noteAddress(of rank: Int, _ handshake: Handshake) {
        guard let hostJob else { return }
        let host = hostJob.rankHosts[rank]
        hostJob.addresses[rank] = RankAddress(
            host: host, address: hostJob.hostAddresses[host]!, port: handshake.port, incarnation: handshake.incarnation)
    }
}

extension Supervisor {
    /// A job on several hosts: the silent ranks (past their heartbeat or join timeout) about to
    /// be judged. When no rank of a silent rank's host was heard from for half the heartbeat
    /// timeout either (a live rank beats every `--heartbeat-ms`), the host is lost (its link was
    /// cut, or it died with its processes): its ranks move to the other hosts before they are
    /// relaunched.
    func noteSilence(of silent: [Int]) {
        guard let hostJob, !silent.isEmpty else { return }
        let quiet = Double(configuration.heartbeatTimeoutMs) / 2000
        for host in Set(silent.map { hostJob.rankHosts[$0] }).sorted()
        where !hostJob.lost.contains(host) && hostJob.silence(of: host, now: now) > quiet {
            loseHost(host, cause: "none of its ranks was heard from for \(Self.seconds(hostJob.silence(of: host, now: now))) s")
        }
    }

    /// A job on several hosts: `rank` failed before its control connection was taken. When no
    /// rank of its host was heard from for the heartbeat timeout either, the host is cut off
    /// (a rank that cannot reach the supervisor exits with 3; srun fails to launch a step on an
    /// unreachable node).
    func noteExitBeforeConnecting(_ rank: Int, _ exit: ProcessExit) {
        guard let hostJob, slots[rank].connection == nil, exit.exitCode != 0, !machine.ranks[rank].exitExpected else { return }
        let host = hostJob.rankHosts[rank]
        let silence = hostJob.silence(of: host, now: now)
        guard !hostJob.lost.contains(host), silence > Double(configuration.heartbeatTimeoutMs) / 1000 else { return }
        loseHost(host, cause: "rank \(rank) \(exit) before it connected, and no rank there was heard from for \(Self.seconds(silence)) s")
    }

    static func seconds(_ value: Double) -> String { String(format: "%.1f", value) }

    /// Marks `host` lost and moves its ranks to the other hosts (said on the terminal and as
    /// `host_lost`); with no other host left, the ranks stay (the job goes on trying there).
    private func loseHost(_ host: String, cause: String) {
        guard let hostJob, let moves = hostJob.lose(host) else { return }
        let ranks = moves.map(\.rank)
        warn("host \(host) lost (\(cause)); its ranks \(ranks.map(String.init).joined(separator: ",")) move to "
            + Array(Set(moves.map(\.to))).sorted().joined(separator: ","))
        events.record("host_lost", [
            "host": .string(host), "ranks": .string(ranks.map(String.init).joined(separator: ",")),
            "cause": .string(cause), "moved_to": .string(moves.map { "\($0.rank):\($0.to)" }.joined(separator: ",")),
        ])
    }
}
