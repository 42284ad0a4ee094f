#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore

/// A job on several hosts (`--launcher ssh`): where each rank runs, the supervisor's TCP
/// listener, and where each rank listens for its peers. The protocol is the same as on one
/// host; only how a rank is started and how it is reached differ.
final class HostJob {
    /// Each rank's host, as the job names it.
    let rankHosts: [String]
    /// Each host's IPv4 address, by name.
    let hostAddresses: [String: String]
    /// The supervisor's TCP listener, its address and port.
    let listener: Int32
    let address: String
    let port: UInt16
    /// The ranks' control connections from other hosts, until their handshakes are in.
    let acceptor: HandshakeAcceptor
    /// The launch command template (`{host}`, `{cmd}`).
    let launchCommand: String
    /// Where each rank listens for peers on other hosts (nil until its process connected).
    var addresses: [RankAddress?]

    /// Resolves the hosts and listens; throws one line for a host without an address or an
    /// address nobody can listen on.
    init(configuration: JobConfiguration, rankHosts: [String], token: String) throws {
        self.rankHosts = rankHosts
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
        self.launchCommand = configuration.launchCommand ?? JobConfiguration.launchCommandDefault
        self.addresses = Array(repeating: nil, count: rankHosts.count)
    }

    deinit { close(listener) }

    /// The environment's part that says where `rank` runs and where the supervisor listens.
    func hosts(of rank: Int) -> LaunchEnvironment.Hosts {
        let host = rankHosts[rank]
        return LaunchEnvironment.Hosts(
            host: host, hostAddress: hostAddresses[host]!, supervisorAddress: address, supervisorPort: port)
    }

    /// The command line that starts `program` for `rank` on its host: the launch command with
    /// `{host}` and `{cmd}` filled in, each one shell-quoted word, where `{cmd}` sets the
    /// rank's environment (which holds no token) and runs the program.
    func commandLine(rank: Int, program: String, arguments: [String], environment: [String: String]) -> String {
        let variables = environment.keys.sorted().map { Self.quoted("\($0)=\(environment[$0]!)") }
        let command = (["exec", "env"] + variables + ([program] + arguments).map(Self.quoted)).joined(separator: " ")
        return "exec " + launchCommand
            .replacingOccurrences(of: "{host}", with: Self.quoted(rankHosts[rank]))
            .replacingOccurrences(of: "{cmd}", with: Self.quoted(command))
    }

    /// `text` as one word for a POSIX shell.
    static func quoted(_ text: String) -> String {
        if !text.isEmpty, text.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,@%+".contains($0) }), text.isASCII {
            return text
        }
        return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
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
            rank: rank, program: configuration.program, arguments: configuration.arguments, environment: remote.variables)
        return try launcher.spawn(
            program: "/bin/sh", arguments: ["-c", line], environment: [:], input: Array((token + "\n").utf8),
            stdoutPath: stdoutPath, stderrPath: stderrPath)
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
