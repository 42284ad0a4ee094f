#if canImport(Glibc)
import Glibc
#endif
import LifelineCore

/// Stalls and deadlocks: the supervisor performs what the `StallDetector` decides — asks the
/// ranks where they wait, says so when the job is stuck, and stops a deadlock with who waits
/// for whom.
extension Supervisor {
    /// Lets time act on the stall detector.
    func checkStalls() throws {
        for action in stalls.handleTick(now: now, recovering: machine.isRecovering) {
            switch action {
            case .query(let serial):
                for rank in slots.indices where machine.ranks[rank].joined { send(.waitQuery(serial: serial), to: rank) }
            case .stall(let waits, let silentSeconds):
                let text = Self.describe(waits)
                warn(String(format: "no rank passed a new safe point for %.1f s: ", silentSeconds) + text)
                events.record("stall", ["silent_s": .double(silentSeconds), "waits": .string(text)])
            case .deadlock(let waits):
                let text = Self.describe(waits)
                events.record("deadlock", ["waits": .string(text)])
                stopSurvivors()
                throw LifelineError(.jobFailed,
                    "deadlock: \(text); nothing is in flight, so no rank can go on. The program's sends and receives do not match: check their order, sources and tags")
            }
        }
    }

    /// Each rank's wait in words: "rank 0 waits to receive from rank 1 (tag 7), rank 1 …".
    static func describe(_ waits: [RankWait?]) -> String {
        waits.enumerated().map { rank, wait in
            "rank \(rank) " + (wait?.summary ?? "computes (it did not answer)")
        }.joined(separator: ", ")
    }
}
