#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation

/// Stopping on request: SIGINT or SIGTERM (or the walltime) takes a checkpoint, stops every rank,
/// and says how to resume; a second signal stops at once (the last committed line still resumes).
extension Supervisor {
    static func routeStopSignals() throws -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0, lifeline_route_stop_signals(fds[1]) == 0 else {
            throw LifelineError(.environment, "cannot watch for SIGINT/SIGTERM: \(String(cString: strerror(errno)))")
        }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        return fds[0]
    }

    /// A stop signal arrived.
    func handleStopSignal() throws {
        var byte: UInt8 = 0
        guard read(signalFD, &byte, 1) == 1 else { return }
        try requestStop(signal: Int32(byte), reason: byte == UInt8(SIGINT) ? "SIGINT" : "SIGTERM")
    }

    /// Starts the checkpoint-and-stop, or stops at once when one is already under way.
    func requestStop(signal: Int32, reason: String) throws {
        if stopSignal != nil {
            events.record("stop_now", ["reason": .string(reason)])
            warn("\(reason) again: stopping at once")
            stopForResume()
            return
        }
        stopSignal = signal
        events.record("stop_requested", ["reason": .string(reason)])
        if coordinator.finished.contains(true) || machine.replaying != nil || independent {
            // No round can start now (or, under independent checkpointing, there are none):
            // the last committed line resumes.
            warn("\(reason): stopping; the last committed line resumes")
            stopForResume()
            return
        }
        stopDeadline = now + (configuration.stopTimeoutSeconds ?? JobConfiguration.stopTimeoutSecondsDefault)
        warn("\(reason): taking a checkpoint, then stopping (send it again to stop at once)")
        try perform(coordinator.handleCheckpointWanted(now: now))
    }

    /// `--stop-timeout`: the checkpoint a stop asked for did not commit in time (a mirror
    /// failing, a rank killed in its checkpoint, a rank that never reaches a safe point): stop
    /// at once on the last committed line.
    func checkStopDeadline() {
        guard let stopDeadline, stoppedOutcome == nil, now >= stopDeadline else { return }
        let seconds = configuration.stopTimeoutSeconds ?? JobConfiguration.stopTimeoutSecondsDefault
        events.record("stop_now", ["reason": .string("stop-timeout")])
        warn(String(format: "the checkpoint before the stop did not commit within %.0f s (--stop-timeout): stopping at once", seconds))
        stopForResume()
    }

    /// Starts the stop before the walltime, leaving room for the final checkpoint. The walltime
    /// counts from this supervisor's start, like a batch allocation's limit: each `resume` (in
    /// the next allocation) gets it anew.
    func checkWalltime() throws {
        guard let walltime = configuration.walltimeSeconds, stopSignal == nil else { return }
        let reserve = min(walltime / 2, max(1, 3 * lastRoundSeconds))
        if now - clockOffset >= walltime - reserve {
            try requestStop(signal: SIGTERM, reason: "walltime \(walltime) s")
        }
    }

    /// Stops every rank and records how to continue.
    func stopForResume() {
        stopSurvivors()
        let epoch = manifest.newestLine?.epoch ?? 0
        events.record("stopped", ["epoch": .int(Int(epoch)), "commits": .int(manifest.commits)])
        warn("stopped at epoch \(epoch); continue with: lifeline resume \(configuration.runDirectory)")
        stoppedOutcome = JobOutcome(
            rankCount: configuration.rankCount, epochsCommitted: manifest.commits, failures: failures,
            recoveries: recoveries, runDirectory: configuration.runDirectory, stoppedBySignal: stopSignal ?? SIGTERM)
    }
}
