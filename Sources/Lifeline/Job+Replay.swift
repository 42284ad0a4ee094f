#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// How `lifeline replay` ended: its last line, lines to say before it, and the exit status.
public struct ReplayOutcome: Sendable {
    /// `replay: rank R from epoch E to step S: match` or `…: nothing to compare` (with `up to
    /// there, but …` when the rank's log is damaged or missing), or `replay: rank R: diverged
    /// at step S`.
    public var line: String
    /// What the replay says before its last line (where it starts from and why, why it ended).
    public var notes: [String]
    /// 0 when every checkpoint reached matched (or none was reached), 1 when the rank diverged,
    /// 4 when its log lost records or is missing (what came before was checked and matched).
    public var exitStatus: Int32
}

extension Job {
    /// Runs rank `rank` of the job in `runDirectory` again, alone, from its checkpoint in line
    /// `fromEpoch` (0: the start of the job; nil: the oldest kept line its message log still
    /// reaches back to), delivering what its log holds in the logged order and sending nothing,
    /// until `untilStep` or the end of the log. Its state at each later checkpoint's step is
    /// compared with what that checkpoint stored. `debugger`, when not empty, is the command the
    /// program runs under (`["lldb", "--"]`, `["gdb", "--args"]`).
    ///
    /// The job must have run with pessimistic or optimistic logging, whose logs hold the
    /// payloads; with `--keep-logs` its logs reach back to every kept line. Nothing in the run
    /// directory is written. Throws a `LifelineError` saying what is missing.
    public static func replay(
        runDirectory: String, rank: Int, fromEpoch: UInt64? = nil, untilStep: Int? = nil, debugger: [String] = []
    ) throws -> ReplayOutcome {
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path
        let configuration = try JobConfiguration.load(runDirectory: path)
        guard configuration.logging == .pessimistic || configuration.logging == .optimistic else {
            throw LifelineError(.configuration,
                "the job in \(path) ran with --logging \(configuration.logging.rawValue), whose logs hold no payloads to replay: replay needs a job run with --logging pessimistic or optimistic (and --keep-logs to start from any kept line)")
        }
        // Not while a supervisor drives the job: its commits trim logs and delete snapshots.
        let lock = try lockRunDirectory(path)
        defer { close(lock) }
        let store: MirroredStore
        do {
            store = try StorageRoots.open(configuration.storageRoots, fills: false, creating: false).readingOnly
        } catch {
            throw LifelineError(.storage, "\(error)")
        }
        let manifests = ManifestStore(store: store)
        let manifest: Manifest
        do {
            guard let loaded = try manifests.load(repair: false) else {
                throw LifelineError(.storage, "\(path) has no manifest: nothing was ever checkpointed to replay from")
            }
            manifest = loaded
        } catch let error as LifelineError {
            throw error
        } catch {
            throw LifelineError(.storage, "cannot read the manifest of \(path): \(error)")
        }
        guard (0..<manifest.rankCount).contains(rank) else {
            throw LifelineError(.configuration, "--rank \(rank): the job has ranks 0 to \(manifest.rankCount - 1)")
        }
        var notes: [String] = []
        let (starts, unreadable) = startPoints(of: rank, manifest: manifest, store: store)
        notes += unreadable
        let log: MessageLog.Inspection
        do {
            log = try MessageLog.inspect(store: store, name: MessageLog.name(ofRank: rank))
        } catch {
            throw LifelineError(.storage, "cannot read rank \(rank)'s message log: \(error)")
        }
        let logStart = log.kept.lowerBound
        // A log that lost records (or has none) ends the replay where its damage begins: said,
        // and the last line does not pass for a clean check.
        let logDamage = log.isMissing ? "it has no message log on either mirror"
            : log.recordsLost ? "its message log lost records after record \(log.kept.upperBound)" : nil
        if log.recordsLost { notes += log.problems.map { "message log of rank \(rank): \($0)" } }
        let start: StartPoint
        if let fromEpoch {
            guard let chosen = starts.first(where: { $0.epoch == fromEpoch }) else {
                throw LifelineError(.configuration,
                    "--from \(fromEpoch): rank \(rank) cannot start from a line of that epoch; it can from: \(starts.map { "\($0.epoch)" }.joined(separator: ", "))"
                        + (starts.contains { $0.epoch == 0 } ? " (0: the start of the job)" : ""))
            }
            guard chosen.logPosition >= logStart else {
                throw LifelineError(.configuration,
                    "--from \(fromEpoch): rank \(rank)'s message log was trimmed past that checkpoint (it starts at record \(logStart)); run the job with --keep-logs to replay from any kept line")
            }
            start = chosen
        } else {
            guard let oldest = starts.first(where: { $0.logPosition >= logStart }) else {
                throw LifelineError(.storage, "rank \(rank)'s message log does not reach back to any kept checkpoint")
            }
            start = oldest
            if oldest.epoch != starts.first?.epoch {
                notes.append("rank \(rank)'s log was trimmed at commits\(configuration.keepLogs == true ? "" : " (run with --keep-logs to keep it)"): replaying from epoch \(start.epoch), the oldest line it reaches back to")
            }
        }
        let checkpoints = starts.filter { $0.snapshotEpoch > start.snapshotEpoch && $0.step > start.step }
            .map { ReplayPlan.Checkpoint(epoch: $0.snapshotEpoch, step: $0.step, snapshot: $0.snapshot ?? "") }
        notes.append("rank \(rank) from epoch \(start.epoch) (\(start.step < 0 ? "the start of the job" : "step \(start.step)")), "
                     + "\(checkpoints.count) later checkpoint\(checkpoints.count == 1 ? "" : "s") to compare"
                     + (untilStep.map { ", until step \($0)" } ?? ""))

        let scratch = FileManager.default.temporaryDirectory.path + "/lifeline-replay-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let plan = ReplayPlan(
            rank: rank, rankCount: manifest.rankCount, storageRoots: configuration.storageRoots,
            logging: configuration.logging.rawValue, epoch: start.epoch, snapshot: start.snapshot,
            snapshotEpoch: start.snapshotEpoch, checkpoints: checkpoints, untilStep: untilStep,
            resultPath: scratch + "/result")
        let planPath = scratch + "/plan.json"
        try JSONEncoder().encode(plan).write(to: URL(fileURLWithPath: planPath))

        let status = try runReplayed(program: configuration.program, arguments: configuration.arguments,
                                     debugger: debugger, planPath: planPath)
        guard let text = try? String(contentsOfFile: plan.resultPath, encoding: .utf8),
              let outcome = ReplaySession.Outcome(line: text.trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            throw LifelineError(.jobFailed,
                "replay: rank \(rank): the program \(status) before the replay ended (its error is above)")
        }
        switch outcome {
        case .ended(let step, let compared, let reason):
            notes.append("it stopped at step \(step): \(reason)")
            let checked = compared > 0 ? "match" : "nothing to compare"
            if let logDamage {
                return ReplayOutcome(
                    line: "replay: rank \(rank) from epoch \(start.epoch) to step \(step): \(checked) up to there, but \(logDamage)"
                        + " (lifeline storage verify says more); what followed was not checked",
                    notes: notes, exitStatus: 4)
            }
            return ReplayOutcome(
                line: "replay: rank \(rank) from epoch \(start.epoch) to step \(step): " + checked, notes: notes, exitStatus: 0)
        case .diverged(let step, let reason):
            notes.append(reason)
            return ReplayOutcome(line: "replay: rank \(rank): diverged at step \(step)", notes: notes, exitStatus: 1)
        }
    }

    /// Where a replay of one rank may start: the start of the job, or its entry in a kept line.
    private struct StartPoint {
        /// The line (0: the start of the job).
        var epoch: UInt64
        /// The rank's snapshot in it, and the round that snapshot was captured for (a kept
        /// entry's is older than `epoch`).
        var snapshot: String?
        var snapshotEpoch: UInt64
        /// The snapshot's step (-1: the start) and log position.
        var step: Int
        var logPosition: UInt64
    }

    /// The lines (0: the start of the job) from which `rank` can be replayed: those whose
    /// snapshot's log position its message log still holds, oldest first.
    static func replayableEpochs(of rank: Int, manifest: Manifest, store: MirroredStore) throws -> [UInt64] {
        let logStart = try MessageLog.inspect(store: store, name: MessageLog.name(ofRank: rank)).kept.lowerBound
        return startPoints(of: rank, manifest: manifest, store: store).points.filter { $0.logPosition >= logStart }.map(\.epoch)
    }

    /// The start of the job, then the rank's entry in every kept line of the job's rank count,
    /// oldest first (each snapshot's log position read from its first chunk only), and a note
    /// for each snapshot that cannot be read. After a resize, only the lines committed since:
    /// the ranks' logs and states before it belong to the job on its old count.
    private static func startPoints(
        of rank: Int, manifest: Manifest, store: MirroredStore
    ) -> (points: [StartPoint], unreadable: [String]) {
        let manifests = ManifestStore(store: store)
        var points: [StartPoint] = []
        var unreadable: [String] = []
        if manifest.resizedFrom == nil {
            points.append(StartPoint(epoch: 0, snapshot: nil, snapshotEpoch: 0, step: -1, logPosition: 0))
        }
        for line in manifest.committed where manifest.rankCount(of: line) == manifest.rankCount
            && line.epoch > manifest.resizedFrom ?? 0 {
            guard let member = line.members.first(where: { $0.rank == rank }),
                  let snapshotEpoch = manifests.epoch(ofSnapshot: member.snapshot) else { continue }
            do {
                let position = try RankSnapshot.logPosition(of: member.snapshot, store: store)
                points.append(StartPoint(epoch: line.epoch, snapshot: member.snapshot, snapshotEpoch: snapshotEpoch,
                                         step: member.step, logPosition: position))
            } catch {
                unreadable.append("rank \(rank)'s snapshot in line \(line.epoch) cannot be read (\(error)): the replay neither starts from it nor compares with it")
            }
        }
        return (points, unreadable)
    }

    /// Runs the program (under `debugger`, if any) with the replay plan, on this terminal, and
    /// returns how it exited in words. It starts with no signal blocked and every signal's
    /// default action (a debugger needs SIGCHLD, whatever this process inherited), and SIGINT
    /// (Ctrl-C) is the program's or the debugger's: this process catches it and goes on waiting.
    private static func runReplayed(program: String, arguments: [String], debugger: [String], planPath: String) throws -> String {
        var environment = ProcessInfo.processInfo.environment
        environment[ReplayPlan.variable] = planPath
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t(), all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let previous = signal(SIGINT) { _ in }
        defer { signal(SIGINT, previous) }
        var pid: pid_t = 0
        let result = withExecArguments(debugger + [program] + arguments, environment) { argv, envp in
            posix_spawnp(&pid, argv[0]!, nil, &attributes, argv, envp)
        }
        guard result == 0 else {
            throw LifelineError(.configuration, "cannot start \((debugger + [program]).joined(separator: " ")): \(String(cString: strerror(result)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let signalled = status & 0x7f
        return signalled != 0 ? "was killed by signal \(signalled)" : "exited with status \((status >> 8) & 0xff)"
    }
}
