#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation
import LifelineCore

/// Stopping on request: SIGINT or SIGTERM (or the walltime) takes a checkpoint, stops every rank,
/// and says how to resume; a second signal stops at once (the last committed line still resumes).
/// What to do when is decided by the machine's `StopControl`; this performs it.
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

    /// Performs what the machine decides about a stop request: the round it asked for, or the
    /// stop at once.
    func requestStop(signal: Int32, reason: String) throws {
        events.record("stop_requested", ["reason": .string(reason)])
        let (decision, actions) = machine.requestStop(signal: signal, reason: reason, now: now)
        try perform(decision, actions)
    }

    /// Lets time act on the stop: `--stop-timeout` passed for the stop's round, or the walltime
    /// (counted from this supervisor's start, like a batch allocation's limit: each `resume`, in
    /// the next allocation, gets it anew) is near enough that the final checkpoint must start.
    func checkStop() throws {
        guard stoppedOutcome == nil,
              let (decision, actions) = machine.checkStop(
                now: now, elapsed: now - clockOffset, lastRoundSeconds: lastRoundSeconds, stopSignal: SIGTERM)
        else { return }
        if case .stopNow(.timeout, _) = decision {} else { events.record("stop_requested", ["reason": .string(decision.reason)]) }
        try perform(decision, actions)
    }

    /// A round committed: stops now when a stop awaited it. True when it stopped.
    func stopIfRequestedAfterCommit() -> Bool {
        guard let decision = machine.stopAfterCommit() else { return false }
        try? perform(decision, [])
        return true
    }

    private func perform(_ decision: StopControl.Decision, _ actions: [SupervisorMachine.Action]) throws {
        switch decision {
        case .checkpointThenStop(let reason):
            warn("\(reason): taking a checkpoint, then stopping (send it again to stop at once)")
            try perform(actions)
        case .stopNow(let why, let reason):
            switch why {
            case .committed:
                break
            case .again:
                events.record("stop_now", ["reason": .string(reason)])
                warn("\(reason) again: stopping at once")
            case .noRoundPossible:
                // No round can start now (or, under independent checkpointing, there are none).
                warn("\(reason): stopping; the last committed line resumes")
            case .timeout(let seconds):
                events.record("stop_now", ["reason": .string("stop-timeout")])
                warn(String(format: "the checkpoint before the stop did not commit within %.0f s (--stop-timeout): stopping at once", seconds))
            }
            stopForResume()
        }
    }

    /// Stops every rank and records how to continue.
    func stopForResume() {
        stopSurvivors()
        let epoch = manifest.newestLine?.epoch ?? 0
        events.record("stopped", ["epoch": .int(Int(clamping: epoch)), "commits": .int(manifest.commits)])
        warn("stopped at epoch \(epoch); continue with: lifeline resume \(configuration.runDirectory)")
        stoppedOutcome = JobOutcome(
            rankCount: configuration.rankCount, epochsCommitted: manifest.commits, failures: failures,
            recoveries: recoveries, runDirectory: configuration.runDirectory, stoppedBySignal: machine.stopControl.signal ?? SIGTERM)
    }
}
