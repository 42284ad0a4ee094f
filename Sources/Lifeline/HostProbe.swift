#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore

/// Whether a lost host is back. While a host is lost, the supervisor starts the program there
/// now and then, by the launch command as a rank is started, with `LIFELINE_HOST_PROBE` set and
/// no rank: at its first call into the runtime the program connects to the supervisor under the
/// handshake role `hostProbe`, proving the job's token and the supervisor's both ways as a rank
/// does, and exits with 0 once it is welcomed (3 when it cannot reach it). So a host is back when
/// it runs the program from the same path and reaches the supervisor again, not merely when a
/// shell answers there: the supervisor takes a probe for an answer only when its handshake (its
/// serial) was welcomed and its launch command exited with 0, and closes its connection at once.
enum HostProbe {
    /// The environment variable that makes the program a probe: the probe's serial (1 or more),
    /// which its handshake carries as its incarnation.
    static let variable = "LIFELINE_HOST_PROBE"
    /// How long a probe may take before it is killed and counted as an unanswered one: the
    /// program's start (its own work before it calls the runtime among it) and a connection.
    static let timeoutSeconds = 30.0

    /// The environment of probe `serial` of `host` (at `hostAddress`) for a supervisor listening
    /// at `supervisorAddress`:`supervisorPort`; the token goes on its standard input.
    static func environment(
        serial: UInt32, host: String, hostAddress: String, supervisorAddress: String, supervisorPort: UInt16, linkTimeoutMs: Int
    ) -> [String: String] {
        [
            variable: String(serial),
            LaunchEnvironment.Key.host: host,
            LaunchEnvironment.Key.hostAddress: hostAddress,
            LaunchEnvironment.Key.supervisorTCP: "\(supervisorAddress):\(supervisorPort)",
            LaunchEnvironment.Key.linkTimeoutMs: String(linkTimeoutMs),
            LaunchEnvironment.Key.tokenOnStdin: "1",
        ]
    }

    /// In the program: when this process is a probe, connects to the supervisor and ends the
    /// process with 0 (welcomed) or 3 (not reached, or the environment is not a probe's); returns
    /// otherwise.
    static func answerIfAsked() {
        guard let value = getenv(variable) else { return }
        signal(SIGPIPE, SIG_IGN)
        guard let serial = UInt32(String(cString: value)), serial > 0 else { exit(RuntimeExitStatus.linkLost) }
        exit(reachesSupervisor(serial: serial) ? 0 : RuntimeExitStatus.linkLost)
    }

    /// Whether the supervisor the environment names welcomed probe `serial`.
    private static func reachesSupervisor(serial: UInt32) -> Bool {
        let environment = ProcessInfo.processInfo.environment
        guard let supervisor = environment[LaunchEnvironment.Key.supervisorTCP] else { return false }
        let parts = supervisor.split(separator: ":")
        guard parts.count == 2, let port = UInt16(parts[1]), let token = try? LaunchEnvironment.tokenFromStandardInput() else {
            return false
        }
        if let timeout = environment[LaunchEnvironment.Key.linkTimeoutMs].flatMap(UInt32.init) {
            HostLink.userTimeoutMs.store(timeout, ordering: .relaxed)
        }
        let hello = HostHello(role: .hostProbe, rank: RankID(0), incarnation: serial, pid: getpid(), port: 0, nonce: HostLink.nonce())
        guard let fd = try? HostLink.connectAuthenticated(
            address: String(parts[0]), port: port, hello: hello, expected: .supervisor, token: token)
        else { return false }
        close(fd)
        return true
    }
}
