import LifelineCore

/// A failing mirror (`FaultProfile.storage`): the simulated disk keeps each snapshot on the
/// mirrors it was written to, and in one storage run of two one mirror fails every write for a
/// while (or for good). The supervisor machine's `MirrorPolicy` decides as in `lifeline run`:
/// the round whose snapshot failed on it aborts, the job degrades to the other mirror (every
/// rank is told), lines commit there alone, and once the mirror takes writes again the
/// supervisor copies what the lines reference to it and both are written again. The checks: a
/// line's snapshots are on every mirror it is committed on, and a rank restores from a mirror
/// that works.
extension Simulation {
    /// A mirror's failure: which, from when, and until when (nil: for good).
    struct MirrorFailure {
        var mirror: StorageMirrors
        var from: Double
        var until: Double?
    }

    /// Draws the run's mirror failure from a generator of its own (the other faults of a seed
    /// stay where they were): in one run of two, one mirror fails before the horizon, for a
    /// while or, one time in three, for good.
    static func drawMirrorFailure(seed: UInt64, horizon: Double) -> MirrorFailure? {
        var draws = SplitMix64(seed: seed ^ 0x4D49_5252_4F52_0000)
        guard Bool.random(using: &draws) else { return nil }
        let mirror: StorageMirrors = Bool.random(using: &draws) ? .a : .b
        let from = Double.random(in: 0.01...max(0.02, horizon), using: &draws)
        let until = Int.random(in: 0..<3, using: &draws) == 0 ? nil : from + Double.random(in: 0.02...max(0.05, horizon / 3), using: &draws)
        return MirrorFailure(mirror: mirror, from: from, until: until)
    }

    /// The mirrors that take writes now.
    var workingMirrors: StorageMirrors {
        guard let failure = mirrorFailure, now >= failure.from, failure.until.map({ now < $0 }) ?? true else { return .both }
        return StorageMirrors.both.subtracting(failure.mirror)
    }

    /// A write to `mirror` failed (a snapshot, or the manifest): what the supervisor machine
    /// decides is performed. Only one mirror ever fails here, so the job never stops for both.
    func mirrorWriteFailed(_ mirror: StorageMirrors, reason: String) throws {
        let (decision, actions) = supervisor.writeFailed(mirror, reason: reason, now: now)
        switch decision {
        case .nothing:
            break
        case .degrade:
            report.degrades += 1
            note(0xD0, UInt64(mirror.rawValue))
            try perform(actions)
        case .stop:
            throw Violation("the supervisor stopped for both mirrors, but only mirror \(mirror.rawValue == 1 ? "A" : "B") failed")
        }
    }

    /// The manifest is about to be committed on the mirrors written now: a failed one degrades
    /// first, and the commit goes to the other (as the runtime's `commitManifest` retries).
    func commitManifestMirrors() throws {
        let failing = supervisor.writeMirrors.subtracting(workingMirrors)
        guard !failing.isEmpty else { return }
        try mirrorWriteFailed(failing, reason: "simulated failing mirror (manifest)")
    }

    /// Between rounds, when the supervisor machine says so: when the mirror that lacks the
    /// degraded lines works, everything the lines and the independent records reference is
    /// copied to it, the lines are on both again, and the ranks write both.
    func resynchroniseIfDue() throws {
        let degraded = lines.contains { $0.onlyOn != nil }
        guard supervisor.mirrors.failed != nil || degraded,
              supervisor.resyncDue(now: now, degradedCommits: degraded) else { return }
        let lacking = supervisor.mirrors.failed?.mirror ?? lines.lazy.compactMap(\.onlyOn).first.map { StorageMirrors.both.subtracting($0) }
        guard let lacking, workingMirrors.contains(lacking) else { return }  // the probe fails
        for name in referencedSnapshots() { snapshots[name]?.mirrors = .both }
        for index in lines.indices { lines[index].onlyOn = nil }
        report.resyncs += 1
        note(0xD1)
        let (_, actions) = supervisor.resynchronised()
        try perform(actions)
    }

    /// The snapshots a committed line names, and under independent checkpoints every recorded one.
    private func referencedSnapshots() -> Set<String> {
        var names = Set(lines.flatMap { $0.entries.compactMap { $0 } })
        if settings.variant == .independent {
            for rank in 0..<settings.rankCount {
                for index in stride(from: 1, through: checkpoints.dependencies.newestCheckpoint(rank), by: 1) {
                    names.insert(Self.checkpointName(index, rank: rank))
                }
            }
        }
        return names
    }
}
