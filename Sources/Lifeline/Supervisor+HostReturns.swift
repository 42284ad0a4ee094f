#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore

/// A probe of a lost host under way (`HostProbe`).
struct RunningProbe {
    /// The launch command's process.
    var pid: pid_t
    /// The probe's serial, which its handshake carries (as its incarnation).
    var serial: UInt32
    /// When it is killed unanswered (job clock).
    var deadline: Double
    /// Whether its handshake reached the supervisor and was welcomed.
    var welcomed = false
}

/// A lost host that comes back: the supervisor probes each lost host (`HostProbe`), readmits
/// one that answered (`host_back`), and moves the ranks beyond their hosts' slots back to it
/// (`ranks_moved`), as `HostReturns` and `HostPlacement` decide.
extension Supervisor {
    /// A job on several hosts, not under mpirun (where a launch is mpirun's): probes each lost
    /// host whose time came (one probe at a time per host), kills a probe past its time, and
    /// moves ranks back to a host that came back once that is due.
    func probeLostHosts() {
        guard let hostJob, !hostJob.mpirun else { return }
        for (host, probe) in hostJob.probes where now > probe.deadline {
            // Its exit, read as any other, counts it unanswered.
            kill(probe.pid, SIGKILL)
            hostJob.cancelStep(named: "lifeline-probe-\(probe.serial)")
            hostJob.probes[host]?.deadline = .infinity
        }
        for host in hostJob.returns.due(now: now, probing: Set(hostJob.probes.keys)) { startProbe(of: host) }
        let quiet = !machine.isRecovering && !machine.coordinator.finished.contains(true) && !machine.stopControl.isRequested
            && { if case .idle = machine.coordinator.state { true } else { false } }()
        for host in hostJob.returns.movesDue(commits: manifest.commits, noLineCommits: noLineCommits, quiet: quiet) {
            moveRanksBack(to: host)
        }
    }

    /// Whether no line can commit now: partner copies, and one host left with ranks.
    private var noLineCommits: Bool {
        guard let hostJob else { return false }
        return StorageRoots.partnered(configuration.storageRoots) && Set(hostJob.rankHosts).count < 2
    }

    /// Starts the program on lost `host` as a probe, by the launch command (`{rank}` is `probe`,
    /// `{incarnation}` the probe's serial), the token on its standard input and its errors in
    /// the run directory's `host-probe-HOST.err`.
    private func startProbe(of host: String) {
        guard let hostJob, let address = hostJob.hostAddresses[host] else { return }
        hostJob.probeSerial &+= 1
        if hostJob.probeSerial == 0 { hostJob.probeSerial = 1 }
        let serial = hostJob.probeSerial
        let environment = HostProbe.environment(
            serial: serial, host: host, hostAddress: address, supervisorAddress: hostJob.address,
            supervisorPort: hostJob.port, linkTimeoutMs: hostJob.linkTimeoutMs)
        let line = hostJob.commandLine(
            host: host, rank: "probe", incarnation: serial, program: configuration.program, arguments: configuration.arguments,
            environment: environment)
        let errors = configuration.runDirectory + "/host-probe-\(host.replacingOccurrences(of: "/", with: "_")).err"
        unlink(errors)
        do {
            let pid = try launcher.spawn(
                program: "/bin/sh", arguments: ["-c", line], environment: [:], input: Array((token + "\n").utf8),
                stdoutPath: "/dev/null", stderrPath: errors)
            hostJob.probes[host] = RunningProbe(pid: pid, serial: serial, deadline: now + HostProbe.timeoutSeconds)
        } catch {
            hostJob.returns.unanswered(host, now: now)
        }
    }

    /// A probe's handshake (its serial) reached the supervisor and was welcomed.
    func probeWelcomed(serial: UInt32) {
        guard let hostJob, let host = hostJob.probes.first(where: { $0.value.serial == serial })?.key else { return }
        hostJob.probes[host]?.welcomed = true
    }

    /// A process ended: when it was a probe of a lost host, takes its answer and returns true.
    /// The host is back when the probe's handshake was welcomed and its launch command exited
    /// with 0: it takes ranks again (`host_back`), and those beyond their hosts' slots move back
    /// to it after the next commit (at once where no line can commit).
    func probeEnded(_ exit: ProcessExit) -> Bool {
        guard let hostJob, let (host, probe) = hostJob.probes.first(where: { $0.value.pid == exit.pid }) else { return false }
        hostJob.probes[host] = nil
        guard hostJob.placement.lost.contains(host) else { return true }
        guard exit.exitCode == 0, probe.welcomed else {
            hostJob.returns.unanswered(host, now: now)
            return true
        }
        hostJob.placement.readmit(host, now: now)
        hostJob.returns.answered(host, commits: manifest.commits)
        warn("host \(host) answers again: it takes ranks again, and ranks beyond their hosts' slots move back to it "
            + (noLineCommits ? "now" : "after the next commit"))
        events.record("host_back", ["host": .string(host)])
        return true
    }

    /// Moves the ranks beyond their hosts' slots to `host`, which came back (`ranks_moved`):
    /// each is ordered to end, through its runtime (one not connected yet by ending its launch
    /// command), and the recovery that follows, not counted as a failure, restarts it there.
    private func moveRanksBack(to host: String) {
        guard let hostJob else { return }
        let moves = hostJob.placement.movesBack(to: host)
        guard !moves.isEmpty else { return }
        let ranks = moves.map { String($0.rank) }.joined(separator: ",")
        warn("ranks \(ranks) move back to host \(host): each restarts there")
        events.record("ranks_moved", ["host": .string(host), "ranks": .string(ranks), "cause": .string("host_back")])
        for move in moves {
            hostJob.addresses[move.rank] = nil
            hostJob.moving[move.rank] = machine.ranks[move.rank].incarnation
            if slots[move.rank].connection != nil { write(.signal(SIGKILL), to: move.rank) } else { signalRank(move.rank, SIGKILL) }
        }
    }

    /// Whether `rank`'s process at `incarnation` was ordered to end to move to another host, and
    /// has not ended yet: its connection is not taken, and what it sends does not count for the
    /// host it is leaving (`rankHosts` names the new one already).
    func isMoving(_ rank: Int, incarnation: UInt32) -> Bool {
        hostJob?.moving[rank] == incarnation
    }

    /// Whether `rank`'s process that just ended was ordered to end to move to another host
    /// (answered once per order; `ExitJudgement` takes it for a move only when it was killed).
    func wasOrderedToMove(_ rank: Int) -> Bool {
        guard let hostJob, let incarnation = hostJob.moving.removeValue(forKey: rank) else { return false }
        return incarnation == machine.ranks[rank].incarnation
    }
}
