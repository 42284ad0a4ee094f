/// A failed mirror is a state, not a loop of aborted rounds: what the supervisor decides when a
/// write to one mirror fails, and when it tries that mirror again.
///
/// When a write to one mirror fails as a failing disk does (full, read-only, I/O error; a rank's
/// snapshot, a log or the manifest), the job goes on with *degraded* commits: the ranks write
/// the other mirror alone, and each line committed so is marked with the one mirror that holds
/// it. Every `resyncPeriodSeconds` (1 s in `lifeline run`) between rounds the failed mirror is tried; once it takes
/// writes again and what the kept lines reference is copied to it, both are written again. When
/// the other mirror fails too, the job stops on its last committed line. The runtime's
/// `Supervisor` performs the copies, the probes and the manifest writes.
///
/// With partner hosts (`{partner}` in `--storage`) the supervisor's two mirrors hold the
/// manifest alone (`holdsManifestOnly`): the ranks' copies are on their hosts and their
/// partners, which no failure of these folders touches. A degrade then writes the manifest to
/// the other folder alone and tells no rank (each still writes its host's folder and its
/// partner), lines are not marked with a mirror, the newest line of the failed folder's copy of
/// the manifest stays in the manifest until the resynchronisation (`pinnedLine`: a second
/// failure then leaves a manifest whose line the hosts still keep), a rank's failed write is
/// not these folders' (nothing), and a resynchronisation writes the manifest.
///
/// | event | decision |
/// |---|---|
/// | a write to a mirror not written now failed (begun before the degrade), or a rank's while the mirrors hold the manifest alone | nothing |
/// | a write to one of two mirrors failed | degrade: write the other alone (every rank is told, unless the mirrors hold the manifest alone) |
/// | a write to the one mirror still written failed | stop: both mirrors failed |
/// | time, a mirror failed or degraded commits remain (unless the mirrors hold the manifest alone: nothing here can copy them), no round or recovery under way | try a resynchronisation, at most every `resyncPeriodSeconds` |
/// | the resynchronisation succeeded | write both again (every rank is told, unless the mirrors hold the manifest alone) |
/// | a resynchronisation that took long (the loop read nothing meanwhile) | the next try waits four times as long |
package struct MirrorPolicy: Sendable, Equatable {
    /// The mirror that failed, why and since when (job clock).
    package struct Failure: Sendable, Equatable {
        /// The mirror (`.a` or `.b`).
        package var mirror: StorageMirrors
        /// What the failed write said.
        package var reason: String
        /// When it failed.
        package var since: Double
        /// With the mirrors holding the manifest alone: the newest line of the manifest the
        /// failed mirror holds, kept until the resynchronisation (`pinnedLine`).
        package var keptLine: UInt64? = nil
    }

    /// What to do about a failed write.
    package enum Decision: Sendable, Equatable {
        /// Nothing: the mirror is not written now (a write begun before the degrade), or the
        /// write was a rank's while the mirrors hold the manifest alone.
        case nothing
        /// Write `writing` alone from now on, and tell every rank.
        case degrade(writing: StorageMirrors)
        /// The mirror still written failed too: stop on the last committed line. `first`: the
        /// earlier failure, if this policy saw it.
        case stop(first: Failure?)
    }

    /// Seconds between two tries of a failed mirror.
    package let resyncPeriodSeconds: Double
    /// A resynchronisation longer than this (seconds) makes the next try wait.
    package static let longResyncSeconds = 0.5

    /// The mirrors written now: both, or one while the other has failed.
    package private(set) var writing: StorageMirrors = .both
    /// The failed mirror, while one has failed.
    package private(set) var failed: Failure?
    /// When to try the next resynchronisation (job clock).
    package private(set) var nextResyncAt = 0.0
    /// Whether the two mirrors hold the manifest alone (partner hosts keep the ranks' copies):
    /// a failure of one changes what the ranks write in no way.
    package let holdsManifestOnly: Bool

    /// Both mirrors written; a failed one tried every `resyncPeriodSeconds`. `holdsManifestOnly`:
    /// the mirrors hold the manifest alone (partner hosts).
    package init(resyncPeriodSeconds: Double = 1, holdsManifestOnly: Bool = false) {
        self.resyncPeriodSeconds = resyncPeriodSeconds
        self.holdsManifestOnly = holdsManifestOnly
    }

    /// The mirrors every rank writes: those written now, or both when the mirrors hold the
    /// manifest alone (the ranks' copies are on their hosts and partners).
    package var ranksWrite: StorageMirrors { holdsManifestOnly ? .both : writing }

    /// The line to keep in the manifest beside the `--keep` window while a mirror that holds
    /// the manifest alone has failed: the newest one its copy names.
    package var pinnedLine: UInt64? { failed?.keptLine }

    /// A write to `mirror` (`.a` or `.b`) failed with `reason`: one of the supervisor's, when
    /// the newest committed line was `newestLine`, or a rank's (`byRank`).
    package mutating func writeFailed(
        _ mirror: StorageMirrors, reason: String, now: Double, newestLine: UInt64? = nil, byRank: Bool = false
    ) -> Decision {
        // A rank's mirrors are its host's folder and its partner's, not these.
        if byRank, holdsManifestOnly { return .nothing }
        guard writing.contains(mirror) else { return .nothing }
        guard writing == .both else { return .stop(first: failed) }
        failed = Failure(mirror: mirror, reason: reason, since: now, keptLine: holdsManifestOnly ? newestLine : nil)
        writing = StorageMirrors.both.subtracting(mirror)
        nextResyncAt = now + resyncPeriodSeconds
        return .degrade(writing: writing)
    }

    /// Whether to try a resynchronisation now: a mirror failed, or `degradedCommits` (lines an
    /// earlier run committed on one mirror) remain — unless the mirrors hold the manifest alone,
    /// where such lines are on one host and stay marked; its time has come; and `quiet` (no
    /// round writing snapshots, no recovery, not stopped). When it says yes, the next try is a
    /// period away.
    package mutating func resyncDue(now: Double, degradedCommits: Bool, quiet: Bool) -> Bool {
        guard failed != nil || (degradedCommits && !holdsManifestOnly), now >= nextResyncAt, quiet else { return false }
        nextResyncAt = now + resyncPeriodSeconds
        return true
    }

    /// The failed mirror takes writes again and holds what the kept lines reference: both are
    /// written again. Returns the failure it ends (nil: only an earlier run's degraded commits
    /// were copied).
    package mutating func resynchronised() -> Failure? {
        defer {
            failed = nil
            writing = .both
        }
        return failed
    }

    /// A resynchronisation (or a try) took `seconds`: a long one that left the mirror failed
    /// is not tried again at once.
    package mutating func resyncTook(_ seconds: Double, now: Double) {
        guard seconds > Self.longResyncSeconds, failed != nil else { return }
        nextResyncAt = now + max(resyncPeriodSeconds, 4 * seconds)
    }

    /// The mirror a line is committed on, from the mirrors each of its new snapshots is on:
    /// `onlyOn` the one mirror all are on (nil: both), or `shared` false when they share none
    /// of the mirrors written now (the round cannot commit).
    package func commitMirror(_ held: [StorageMirrors]) -> (onlyOn: StorageMirrors?, shared: Bool) {
        let common = held.reduce(ranksWrite) { $0.intersection($1) }
        switch common {
        case .both: return (nil, true)
        case .a, .b: return (common, true)
        default: return (nil, false)
        }
    }
}
