/// Finds a job that stopped making progress, and tells a stall from a deadlock. Progress is a
/// rank passing a new safe point; when none has for `thresholdSeconds` (much longer than the
/// job's usual pace), the detector asks every rank where it waits, twice, `confirmSeconds`
/// apart. Answers that changed mean messages moved: the job is busy, not stuck. Equal answers
/// are a stall, reported once until progress resumes; equal answers in which every rank waits
/// on the others (to receive, or at the final barrier), none holds sends back for a commit, and
/// no recovery runs are a deadlock: nothing is in flight (every rank polls its sockets while it
/// waits, so a message in flight would have arrived and changed its counts) and no rank can
/// send the message another waits for. A checkpoint round does not change that: its safe point
/// lies beyond the waits, and what it delays (messages from ranks that captured, to ranks that
/// have not) no rank may need before it (the safe-point contract).
///
/// | state | event | next | actions |
/// |---|---|---|---|
/// | watching | tick, no progress for `thresholdSeconds` | asking (first) | query |
/// | asking | tick, all answered or `answerSeconds` passed, first | between(first answers) | — |
/// | between | tick past `confirmSeconds` (or the threshold, after a stall) | asking (again) | query |
/// | asking | tick, answers differ from the previous ones | watching | — (busy: counts as progress) |
/// | asking | tick, answers equal, all wait on others | deadlocked | deadlock |
/// | asking | tick, answers equal otherwise | between(answers) | stall, once per stall |
/// | any but deadlocked | progress, or a tick during a recovery | watching | — |
///
/// Time is an argument (seconds on the job's clock); nothing here reads a clock.
package struct StallDetector: Sendable {
    /// Where the detector is.
    package enum State: Sendable, Equatable {
        /// Progress is recent enough.
        case watching
        /// Query `serial` went out at `sentAt`; `answers` so far, indexed by rank; `previous`:
        /// the answers to the query before, if this one confirms them.
        case asking(serial: UInt32, sentAt: Double, answers: [RankWait?], previous: [RankWait?]?)
        /// Between two queries: the next goes out at `nextAt` and is compared with `previous`.
        case between(nextAt: Double, previous: [RankWait?])
        /// A deadlock was reported; the job stops.
        case deadlocked
    }

    /// What the runtime must do.
    package enum Action: Sendable, Equatable {
        /// Send `waitQuery(serial)` to every rank.
        case query(serial: UInt32)
        /// Say that the job stalls: no new safe point for `silentSeconds`; each rank's wait
        /// (nil: it did not answer, so it is busy in the program's own code).
        case stall(waits: [RankWait?], silentSeconds: Double)
        /// Stop the job: every rank waits on another and nothing is in flight.
        case deadlock(waits: [RankWait])
    }

    /// The number of ranks.
    package let rankCount: Int
    /// The least silence that starts the questions, whatever the pace.
    package let thresholdSecondsMin: Double
    /// How many times the usual pace counts as a stall.
    package static let paceFactor = 10.0
    /// How long the ranks have to answer a query.
    package static let answerSeconds = 1.0
    /// The time between the first and the second query of a suspected stall.
    package static let confirmSeconds = 1.0

    /// The state.
    package private(set) var state: State = .watching
    /// When the last progress was seen (job clock).
    package private(set) var lastProgressAt: Double
    /// The job's usual time between two progress events (a moving average), once two were seen
    /// (the time to the first includes the launch).
    package private(set) var paceSeconds: Double?
    /// Whether any progress was seen.
    private var progressSeen = false
    /// Whether the current stall was reported. Invariant: false while `watching`.
    private var reported = false
    /// The serial of the last query. Invariant: never decreases.
    private var serial: UInt32 = 0

    /// A detector for `rankCount` ranks that starts watching at `now`.
    package init(rankCount: Int, thresholdSecondsMin: Double, now: Double) {
        precondition(rankCount > 0 && thresholdSecondsMin > 0)
        self.rankCount = rankCount
        self.thresholdSecondsMin = thresholdSecondsMin
        self.lastProgressAt = now
    }

    /// The silence after which the detector asks the ranks: `paceFactor` times the pace, and
    /// at least `thresholdSecondsMin`.
    package var thresholdSeconds: Double {
        max(thresholdSecondsMin, Self.paceFactor * (paceSeconds ?? 0))
    }

    /// A rank passed a new safe point.
    package mutating func handleProgress(now: Double) {
        guard state != .deadlocked else { return }
        if progressSeen {
            let interval = max(0, now - lastProgressAt)
            paceSeconds = paceSeconds.map { 0.875 * $0 + 0.125 * interval } ?? interval
        }
        progressSeen = true
        resume(now: now)
    }

    /// A rank answered query `serial`.
    package mutating func handleAnswer(from rank: RankID, serial answered: UInt32, _ wait: RankWait) {
        precondition((0..<rankCount).contains(rank.rawValue), "an answer from \(rank) of \(rankCount)")
        guard case .asking(let current, let sentAt, var answers, let previous) = state, answered == current else { return }
        answers[rank.rawValue] = wait
        state = .asking(serial: current, sentAt: sentAt, answers: answers, previous: previous)
    }

    /// The clock advanced. `recovering`: ranks are being restarted (the recovery has deadlines
    /// of its own, and its ranks wait for each other on purpose).
    package mutating func handleTick(now: Double, recovering: Bool) -> [Action] {
        defer { checkInvariants() }
        if recovering, state != .deadlocked {
            resume(now: now)
            return []
        }
        switch state {
        case .watching:
            guard now - lastProgressAt >= thresholdSeconds else { return [] }
            return [ask(now: now, previous: nil)]
        case .between(let nextAt, let previous):
            guard now >= nextAt else { return [] }
            return [ask(now: now, previous: previous)]
        case .asking(_, let sentAt, let answers, let previous):
            guard answers.allSatisfy({ $0 != nil }) || now - sentAt >= Self.answerSeconds else { return [] }
            return conclude(answers, previous: previous, now: now)
        case .deadlocked:
            return []
        }
    }

    private mutating func ask(now: Double, previous: [RankWait?]?) -> Action {
        serial += 1
        state = .asking(serial: serial, sentAt: now, answers: Array(repeating: nil, count: rankCount), previous: previous)
        return .query(serial: serial)
    }

    private mutating func conclude(_ answers: [RankWait?], previous: [RankWait?]?, now: Double) -> [Action] {
        guard let previous else {
            state = .between(nextAt: now + Self.confirmSeconds, previous: answers)
            return []
        }
        guard answers == previous else {
            resume(now: now)  // messages moved, or a rank left its wait: busy, not stuck
            return []
        }
        let waits = answers.compactMap { $0 }
        if waits.count == rankCount, waits.allSatisfy(\.waitsOnOthers), waits.contains(where: { $0.kind == .receive }) {
            state = .deadlocked
            return [.deadlock(waits: waits)]
        }
        state = .between(nextAt: now + thresholdSeconds, previous: answers)
        guard !reported, !waits.isEmpty else { return [] }
        reported = true
        return [.stall(waits: answers, silentSeconds: now - lastProgressAt)]
    }

    private mutating func resume(now: Double) {
        lastProgressAt = now
        reported = false
        state = .watching
    }

    private func checkInvariants() {
        precondition(state != .watching || !reported, "a stall reported while watching")
        if case .asking(_, _, let answers, let previous) = state {
            precondition(answers.count == rankCount && (previous?.count ?? rankCount) == rankCount)
        }
    }
}
