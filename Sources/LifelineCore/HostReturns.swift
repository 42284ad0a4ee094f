/// When a lost host is probed, and when the ranks move back to one that answered: the decisions
/// behind a lost host's return, apart from how a probe is started or a rank moved.
///
/// A lost host is probed a delay after its loss, and again after each probe that went
/// unanswered, the delay doubling (from `delaySecondsBase`, a minute at most). One that answered
/// takes ranks again (`HostPlacement.readmit(_:now:)`); the ranks beyond their hosts' slots move
/// back to it once a line committed since (what they restart from is then fresh), or at once where
/// no line can commit, and only while the job is quiet (no recovery, no round, no stop under
/// way, no rank finished). A host is either probed or waiting for its ranks to move, not both.
package struct HostReturns: Sendable, Equatable {
    /// A lost host's next probe.
    package struct Probe: Sendable, Equatable {
        /// When it is due (job clock).
        package var at: Double
        /// The probes of the host that went unanswered so far.
        package var unanswered: Int
    }

    /// The delay from a loss to the first probe (the supervisor's: its heartbeat timeout, 2 s
    /// at least).
    package let delaySecondsBase: Double
    /// The longest delay between two probes of a host.
    package static let delaySecondsMax = 60.0
    /// Each lost host's next probe.
    package private(set) var next: [String: Probe] = [:]
    /// The hosts back whose ranks have yet to move, each with the commits counted when it came
    /// back.
    package private(set) var returning: [String: Int] = [:]

    /// Returns whose first probe comes `delaySecondsBase` after a loss (2 s at least).
    package init(delaySecondsBase: Double) {
        self.delaySecondsBase = max(2, delaySecondsBase)
    }

    /// The delay before the probe that follows `unanswered` unanswered ones.
    package func delay(unanswered: Int) -> Double {
        min(Self.delaySecondsMax, delaySecondsBase * Double(1 << min(unanswered, 6)))
    }

    /// `host` was lost now: its first probe is due after the base delay, and a return it made
    /// before is forgotten (its ranks left it again).
    package mutating func lost(_ host: String, now: Double) {
        next[host] = Probe(at: now + delay(unanswered: 0), unanswered: 0)
        returning[host] = nil
        checkInvariant()
    }

    /// The hosts to probe now: lost ones whose probe is due and not already running
    /// (`probing`), in order.
    package func due(now: Double, probing: Set<String>) -> [String] {
        next.filter { $0.value.at <= now && !probing.contains($0.key) }.map(\.key).sorted()
    }

    /// A probe of `host` failed to start, ended with a failure or ran past its time: the next
    /// one comes after a longer delay.
    package mutating func unanswered(_ host: String, now: Double) {
        guard let probe = next[host] else { return }
        next[host] = Probe(at: now + delay(unanswered: probe.unanswered + 1), unanswered: probe.unanswered + 1)
        checkInvariant()
    }

    /// `host` answered a probe while `commits` lines had committed: it is probed no more, and
    /// its ranks move back after the next commit (`movesDue`).
    package mutating func answered(_ host: String, commits: Int) {
        next[host] = nil
        returning[host] = commits
        checkInvariant()
    }

    /// The hosts whose ranks move back now, in order, each forgotten once named: a line
    /// committed since it came back (`commits` now), or none can commit (`noLineCommits`); none
    /// unless the job is `quiet` (no recovery, checkpoint round or stop under way, no rank at the
    /// final barrier): a rank ordered to end then would abort a round or a stop.
    package mutating func movesDue(commits: Int, noLineCommits: Bool, quiet: Bool) -> [String] {
        guard quiet else { return [] }
        let due = returning.filter { commits > $0.value || noLineCommits }.map(\.key).sorted()
        for host in due { returning[host] = nil }
        return due
    }

    /// A host is probed or waits for its ranks to move, never both.
    private func checkInvariant() {
        precondition(Set(next.keys).isDisjoint(with: returning.keys), "a host both probed and back")
    }
}
