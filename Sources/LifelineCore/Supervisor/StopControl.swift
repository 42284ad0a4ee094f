/// Stopping on request, decided: SIGINT or SIGTERM (or the walltime coming near) takes a
/// checkpoint and then stops every rank, so that `lifeline resume` continues from it; a second
/// request, or a checkpoint that does not commit within the stop timeout, stops at once on the
/// last committed line. The runtime's `Supervisor` feeds it the requests, the time and the
/// commits, and performs what it answers (a round asked of the coordinator, the stop).
///
/// | event | answer |
/// |---|---|
/// | a first request, a round can start | `checkpointThenStop`: ask for a round; the stop follows its commit |
/// | a first request, no round can start (ranks at the final barrier, a lone replay, independent checkpoints) | `stopNow(.noRoundPossible)` |
/// | a second request | `stopNow(.again)` |
/// | time: the stop's round has not committed by the deadline | `stopNow(.timeout)` |
/// | time: the walltime less a reserve of three rounds (at most half of it) is reached | a request named `walltime` |
/// | the stop's round committed | `stopNow(.committed)` |
package struct StopControl: Sendable, Equatable {
    /// Why the job stops now.
    package enum StopNow: Sendable, Equatable {
        /// The round the stop asked for committed.
        case committed
        /// A second request while the first one's round was under way.
        case again
        /// No round can start now (or there are none): the last committed line resumes.
        case noRoundPossible
        /// The stop's round did not commit within `seconds` (`--stop-timeout`).
        case timeout(seconds: Double)
    }

    /// What to do about a request or the time.
    package enum Decision: Sendable, Equatable {
        /// Ask the coordinator for a round now; the stop follows its commit.
        case checkpointThenStop(reason: String)
        /// Stop every rank now, on the last committed line.
        case stopNow(StopNow, reason: String)

        /// What asked for it: "SIGINT", "walltime 3600 s", "stop-timeout", "committed".
        package var reason: String {
            switch self {
            case .checkpointThenStop(let reason), .stopNow(_, let reason): reason
            }
        }
    }

    /// `--stop-timeout` in seconds.
    package let stopTimeoutSeconds: Double
    /// `--walltime` in seconds, counted from this supervisor's start (nil: none).
    package let walltimeSeconds: Double?
    /// The signal of the first request (the walltime asks as SIGTERM), once there was one.
    package private(set) var signal: Int32?
    /// When the stop gives up on its round (job clock), while one is awaited.
    package private(set) var deadline: Double?
    /// Whether the job was stopped (nothing more is decided).
    package private(set) var stopped = false

    /// Stop decisions with `stopTimeoutSeconds` and an optional walltime.
    package init(stopTimeoutSeconds: Double, walltimeSeconds: Double?) {
        self.stopTimeoutSeconds = stopTimeoutSeconds
        self.walltimeSeconds = walltimeSeconds
    }

    /// Whether a stop was requested.
    package var isRequested: Bool { signal != nil }

    /// A stop was requested with `signal` (`reason`: how to name it, "SIGINT"). `roundPossible`:
    /// whether a checkpoint round can start now.
    package mutating func request(signal: Int32, reason: String, now: Double, roundPossible: Bool) -> Decision {
        guard !stopped else { return .stopNow(.again, reason: reason) }
        if self.signal != nil { return stop(.again, reason: reason) }
        self.signal = signal
        guard roundPossible else { return stop(.noRoundPossible, reason: reason) }
        deadline = now + stopTimeoutSeconds
        return .checkpointThenStop(reason: reason)
    }

    /// Time passed: the stop's round is overdue, or the walltime (`elapsed`: seconds since this
    /// supervisor started) is near enough that the final checkpoint must start, leaving three
    /// times `lastRoundSeconds` (at least 1 s, at most half the walltime). `stopSignal`: what a
    /// walltime request counts as (SIGTERM).
    package mutating func tick(now: Double, elapsed: Double, lastRoundSeconds: Double, roundPossible: Bool,
                               stopSignal: Int32) -> Decision? {
        guard !stopped else { return nil }
        if let deadline, now >= deadline { return stop(.timeout(seconds: stopTimeoutSeconds), reason: "stop-timeout") }
        guard let walltime = walltimeSeconds, signal == nil else { return nil }
        let reserve = min(walltime / 2, max(1, 3 * lastRoundSeconds))
        guard elapsed >= walltime - reserve else { return nil }
        return request(signal: stopSignal, reason: "walltime \(Self.seconds(walltime)) s", now: now, roundPossible: roundPossible)
    }

    /// A round committed: the stop, if one awaits it, happens now.
    package mutating func committed() -> Decision? {
        guard signal != nil, !stopped else { return nil }
        return stop(.committed, reason: "committed")
    }

    private mutating func stop(_ why: StopNow, reason: String) -> Decision {
        stopped = true
        deadline = nil
        return .stopNow(why, reason: reason)
    }

    /// A duration in whole seconds where it is whole, as `--walltime` was given.
    static func seconds(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? "\(Int(value))" : "\(value)"
    }
}
