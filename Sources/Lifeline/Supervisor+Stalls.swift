#if canImport(Glibc)
import Glibc
#endif
import LifelineCore

/// Stalls and deadlocks, as the supervisor machine's `StallDetector` decides them: the machine
/// asks the ranks where they wait; this words what it finds.
extension Supervisor {
    /// Lets time act on the stall detector.
    func checkStalls() throws {
        try perform(machine.checkStalls(now: now))
    }

    /// Says a stall: no rank passed a new safe point for a while, and where each waits.
    func reportStall(_ waits: [RankWait?], silentSeconds: Double) {
        let text = Self.describe(waits)
        warn(String(format: "no rank passed a new safe point for %.1f s: ", silentSeconds) + text)
        events.record("stall", ["silent_s": .double(silentSeconds), "waits": .string(text)])
    }

    /// A deadlock ends the job with who waits for whom.
    func failOnDeadlock(_ waits: [RankWait]) throws -> Never {
        let text = Self.describe(waits)
        events.record("deadlock", ["waits": .string(text)])
        stopSurvivors()
        throw LifelineError(.jobFailed,
            "deadlock: \(text); nothing is in flight, so no rank can go on. The program's sends and receives do not match: check their order, sources and tags")
    }

    /// Each rank's wait in words: "rank 0 waits to receive from rank 1 (tag 7), rank 1 …".
    static func describe(_ waits: [RankWait?]) -> String {
        waits.enumerated().map { rank, wait in
            "rank \(rank) " + (wait?.summary ?? "computes (it did not answer)")
        }.joined(separator: ", ")
    }
}
