import Foundation
import LifelineCore
import LifelineStorage

/// What `lifeline inspect` reports about a run: its configuration, checkpoints, failures and how
/// each was recovered, the time lost, and the health of its mirrors — read from `job.json`,
/// `events.jsonl` and the storage roots, without changing anything.
public struct RunSummary: Sendable {
    /// One failure and its recovery.
    public struct Failure: Sendable {
        /// Seconds since the job started.
        public var time: Double
        /// The rank that failed.
        public var rank: Int
        /// Why (as the event log says).
        public var cause: String
        /// `global-rollback` or `replay`.
        public var recovery: String
        /// With levels, where the recovery read the line it restored: `memory`, `disk`, or
        /// `start` (none committed yet); nil without levels.
        public var level: String?
        /// Seconds from the failure to the recovered job, if it recovered.
        public var recoverySeconds: Double?
        /// Seconds from the failure until the failed rank passed again the step it had reached
        /// (`caught_up`): the job back where the failure found it, re-executed steps included.
        public var caughtUpSeconds: Double?
    }

    /// One committed checkpoint round.
    public struct Commit: Sendable {
        /// The round's epoch.
        public var epoch: Int
        /// Seconds since the job started when the round committed.
        public var time: Double
        /// The round's safe point.
        public var step: Int
        /// The ranks that wrote a snapshot in the round.
        public var wrote: [Int]
        /// The ranks that kept an older checkpoint (`--checkpoint minimal`), each with the
        /// round it was written in (nil: none yet, the rank would restart from the beginning).
        public var kept: [(rank: Int, from: Int?)]
        /// Uncompressed bytes of the snapshots written.
        public var logicalBytes: Int
        /// Bytes newly stored on one mirror (compressed chunks not already stored, and indexes).
        public var storedBytes: Int
        /// Chunks in the snapshots written, and how many of them were already stored.
        public var chunks: Int
        /// Of `chunks`, those referenced instead of written.
        public var chunksReused: Int
        /// The levels that held the line at its commit: `memory` (the hosts' memory alone, on
        /// disk later if drained), `memory,disk`, or `disk`; nil in a run whose events predate
        /// levels.
        public var level: String?
        /// A line committed in memory alone that its drains then put on disk: seconds after the
        /// commit, and the bytes the drains stored on one mirror.
        public var drained: (afterCommitSeconds: Double, storedBytes: Int)?
        /// The ranks whose drain of their snapshot in the line failed (it stays in memory
        /// alone): of the round's own snapshot, or of one the rank kept from an older round.
        public var drainFailedRanks: [Int]
    }

    /// The job's configuration.
    public var configuration: JobConfiguration
    /// `finished`, `stopped`, or `interrupted` (the supervisor died or is still running).
    public var status: String
    /// Seconds from the start to the last event.
    public var elapsedSeconds: Double
    /// Committed checkpoint rounds.
    public var commits: Int
    /// Rounds aborted.
    public var aborts: Int
    /// Bytes stored by all committed rounds (with levels, where they committed: a line in
    /// memory counts its copies there).
    public var checkpointBytes: Int
    /// With levels, the bytes the drains of lines committed in memory stored on one mirror.
    public var drainedBytes: Int
    /// With levels, the drains that failed: one per rank and round, in committed or aborted
    /// rounds alike.
    public var drainsFailed: Int
    /// Mean seconds from a round's request to its commit.
    public var checkpointSecondsMean: Double
    /// The committed rounds, oldest first (under independent checkpointing: each move of the
    /// checkpoint-only line).
    public var commitsDetail: [Commit]
    /// Independent checkpointing: the checkpoints each rank took (recorded when durable).
    public var independentCheckpoints: [Int]
    /// The failures, in order.
    public var failures: [Failure]
    /// Seconds spent recovering (sum over failures).
    public var recoverySecondsTotal: Double
    /// Bytes of message logs on mirror A.
    public var logBytes: Int
    /// The mirrors' health, one line each problem; empty when healthy.
    public var storageProblems: [String]
    /// Files checked on the mirrors.
    public var storageFiles: Int

    /// Whether `lifeline resume RUN_DIR -n M` can restore the job onto another number of ranks:
    /// `yes (…)` or `no (why)`. The program's opt-in (`Redistributable`) is asked by the resume
    /// itself, which runs the program.
    public var resizable: String
    /// Which ranks `lifeline replay` can run again, and from which lines: `ranks 0-3, from
    /// epochs 0, 5, 6`, or `no (why)`.
    public var replayable: String

    /// Reads the run in `runDirectory`.
    public init(runDirectory: String) throws {
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path
        let configuration = try JobConfiguration.load(runDirectory: path)
        self.configuration = configuration
        let text = (try? String(contentsOfFile: path + "/events.jsonl", encoding: .utf8)) ?? ""
        let events = text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        func named(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }
        func time(_ event: [String: Any]) -> Double { event["t"] as? Double ?? 0 }

        status = !named("job_finished").isEmpty ? "finished" : (!named("stopped").isEmpty ? "stopped" : "interrupted")
        if let last = named("stopped").last, let finished = named("job_finished").last, time(finished) < time(last) {
            status = "stopped"
        }
        elapsedSeconds = events.last.map(time) ?? 0
        let commitEvents = named("commit")
        commits = commitEvents.count
        aborts = named("abort").count
        checkpointBytes = commitEvents.saturatedSum { $0["bytes"] as? Int ?? 0 }
        let rankCheckpoints = named("checkpoint")
        independentCheckpoints = Array(repeating: 0, count: configuration.rankCount)
        for event in rankCheckpoints {
            if let rank = event["rank"] as? Int, independentCheckpoints.indices.contains(rank) { independentCheckpoints[rank] += 1 }
        }
        if configuration.checkpointing == .independent {
            checkpointBytes = rankCheckpoints.saturatedSum { $0["bytes"] as? Int ?? 0 }
        }
        var requested: [Int: Double] = [:]
        for event in named("checkpoint_request") { if let epoch = event["epoch"] as? Int { requested[epoch] = time(event) } }
        let durations = commitEvents.compactMap { event -> Double? in
            guard let epoch = event["epoch"] as? Int, let start = requested[epoch] else { return nil }
            return time(event) - start
        }
        checkpointSecondsMean = durations.isEmpty ? 0 : durations.reduce(0, +) / Double(durations.count)
        func ranks(_ field: Any?) -> [String] {
            (field as? String ?? "").split(separator: ",").map(String.init)
        }
        // A drain may complete several lines, each with its own event: the first says when.
        var drains: [Int: (afterCommitSeconds: Double, storedBytes: Int)] = [:]
        for event in named("drained") {
            guard let epoch = event["epoch"] as? Int, drains[epoch] == nil else { continue }
            drains[epoch] = (event["after_commit_s"] as? Double ?? 0, event["bytes"] as? Int ?? 0)
        }
        // By the round of the snapshot whose drain failed: a line holds it when the rank wrote
        // in that round, or (minimal checkpoints) kept its snapshot of that round.
        var drainFailures: [Int: Set<Int>] = [:]
        for event in named("drain_failed") {
            guard let epoch = event["epoch"] as? Int, let rank = event["rank"] as? Int else { continue }
            drainFailures[epoch, default: []].insert(rank)
        }
        drainsFailed = drainFailures.values.saturatedSum(\.count)
        drainedBytes = drains.values.saturatedSum(\.storedBytes)
        commitsDetail = commitEvents.map { event in
            let kept = zip(ranks(event["kept"]), ranks(event["kept_from"])).compactMap { rank, from in
                Int(rank).map { (rank: $0, from: Int(from)) }
            }
            let epoch = event["epoch"] as? Int ?? 0
            let wrote = ranks(event["wrote"]).compactMap { Int($0) }
            var failed = wrote.filter { drainFailures[epoch]?.contains($0) == true }
            for (rank, from) in kept {
                if let from, drainFailures[from]?.contains(rank) == true { failed.append(rank) }
            }
            return Commit(
                epoch: epoch, time: time(event), step: event["step"] as? Int ?? -1,
                wrote: wrote, kept: kept,
                logicalBytes: event["logical"] as? Int ?? 0, storedBytes: event["bytes"] as? Int ?? 0,
                chunks: event["chunks"] as? Int ?? 0, chunksReused: event["reused"] as? Int ?? 0,
                level: event["level"] as? String, drained: drains[epoch], drainFailedRanks: failed.sorted())
        }

        // Each failure takes the first recovery start and end not yet taken that name its rank,
        // or name none (a global rollback): ranks that replay side by side each end on their
        // own, in any order.
        var starts = named("recovery_start")
        var dones = named("recovery_done")
        let caughtUps = named("caught_up")
        func take(_ events: inout [[String: Any]], rank: Int) -> [String: Any]? {
            guard let index = events.firstIndex(where: { ($0["rank"] as? Int).map { $0 == rank } ?? true }) else { return nil }
            return events.remove(at: index)
        }
        failures = named("failure").map { event in
            let rank = event["rank"] as? Int ?? -1
            let start = take(&starts, rank: rank)
            return Failure(time: time(event), rank: rank, cause: event["cause"] as? String ?? "?",
                           recovery: start.map { $0["mode"] as? String ?? "?" } ?? "none",
                           level: configuration.memoryLevel == true ? start?["level"] as? String : nil,
                           recoverySeconds: take(&dones, rank: rank)?["duration_s"] as? Double,
                           caughtUpSeconds: nil)
        }
        // A `caught_up` belongs to its rank's latest failure before it: a failure followed by
        // another of the same rank before it was back (or by a dead supervisor) has none.
        for event in caughtUps {
            let rank = event["rank"] as? Int ?? -1
            guard let index = failures.lastIndex(where: { $0.rank == rank && $0.time <= time(event) }),
                  failures[index].caughtUpSeconds == nil else { continue }
            failures[index].caughtUpSeconds = event["duration_s"] as? Double
        }
        recoverySecondsTotal = failures.compactMap(\.recoverySeconds).reduce(0, +)

        // The shared root's logs when the other is each node's own folder (it holds them all).
        let shared = StorageRoots.nodeLocalMirror(configuration.storageRoots) == .a ? 1 : 0
        let logFolder = configuration.storageRoots[shared] + "/logs"
        logBytes = ((try? FileManager.default.contentsOfDirectory(atPath: logFolder)) ?? []).reduce(0) { total, name in
            let size = (try? FileManager.default.attributesOfItem(atPath: logFolder + "/" + name)[.size]) as? Int
            return total + (size ?? 0)
        }
        resizable = "no (the storage roots cannot be opened)"
        replayable = resizable
        do {
            let store = try StorageRoots.open(configuration.storageRoots, fills: false, creating: false)
            let report = store.verify(repair: false)
            storageProblems = report.problems
            storageFiles = report.healthyCount + report.damagedCount + report.unrecoverableCount + report.repairedCount
            resizable = Self.resizability(ManifestStore(store: store.readingOnly), partnered: StorageRoots.partnered(configuration.storageRoots))
            replayable = Self.replayability(configuration, store: store.readingOnly)
        } catch {
            storageProblems = ["\(error)"]
            storageFiles = 0
        }
    }

    /// `replayable`'s answer: per rank, the kept lines its message log still reaches back to.
    private static func replayability(_ configuration: JobConfiguration, store: MirroredStore) -> String {
        guard configuration.logging == .pessimistic || configuration.logging == .optimistic else {
            return "no (--logging \(configuration.logging.rawValue) logs no payloads; run with pessimistic or optimistic, and --keep-logs)"
        }
        let manifest: Manifest
        do {
            guard let loaded = try ManifestStore(store: store).load(repair: false) else { return "no (no manifest)" }
            manifest = loaded
        } catch {
            return "no (the manifest cannot be read: \(error))"
        }
        var groups: [(epochs: [UInt64], ranks: [Int])] = []
        for rank in 0..<manifest.rankCount {
            let epochs = (try? Job.replayableEpochs(of: rank, manifest: manifest, store: store)) ?? []
            if let index = groups.firstIndex(where: { $0.epochs == epochs }) {
                groups[index].ranks.append(rank)
            } else {
                groups.append((epochs, [rank]))
            }
        }
        let parts = groups.filter { !$0.epochs.isEmpty }.map { group in
            "ranks \(rankList(group.ranks)), from epochs \(group.epochs.map { "\($0)" }.joined(separator: ", "))"
        }
        return parts.isEmpty ? "no (no rank's log reaches back to a kept checkpoint)" : parts.joined(separator: "; ")
    }

    /// `resizable`'s answer from the manifest, read without repairing anything.
    private static func resizability(_ manifests: ManifestStore, partnered: Bool) -> String {
        let manifest: Manifest
        do {
            guard let loaded = try manifests.load(repair: false) else { return "no (no manifest)" }
            manifest = loaded
        } catch {
            return "no (the manifest cannot be read: \(error))"
        }
        if manifest.finished { return "no (the job finished)" }
        if manifest.independent != nil { return "no (independent checkpoints: no line is at one step)" }
        guard !manifest.committed.isEmpty else { return "yes (no line is committed: the job starts anew on any count)" }
        // The line `resume -n M` would restore: the newest whose snapshots are whole on disk.
        guard let line = partnered ? Supervisor.newestUnreadLine(manifest) : manifests.newestIntactLine(manifest).line else {
            return "yes (no committed line can be restored: the job starts anew on any count)"
        }
        if let reason = manifests.resizeRefusal(line, of: manifest) { return "no (\(reason))" }
        let written = "line \(line.epoch) at step \(line.step), written by \(manifest.rankCount(of: line)) ranks"
        let inFlight = manifests.inFlightBytes(line) ?? 0
        return inFlight == 0
            ? "yes (\(written); the program's state must conform to Redistributable)"
            : "yes (\(written), with \(inFlight) bytes of messages in flight; the program's state must conform to Redistributable and take them)"
    }

    /// The summary as readable lines.
    public var text: String {
        var lines = [
            "run          \(configuration.runDirectory)",
            "program      \(([configuration.program] + configuration.arguments).joined(separator: " "))",
            "ranks        \(configuration.rankCount)",
            "checkpoint   \(configuration.checkpointing.rawValue), every \(configuration.intervalSeconds) s; logging \(configuration.logging.rawValue)",
            "status       \(status) after \(String(format: "%.1f", elapsedSeconds)) s",
            "checkpoints  \(commits) committed, \(aborts) aborted, \(checkpointBytes) bytes stored, mean \(String(format: "%.3f", checkpointSecondsMean)) s from request to commit",
        ]
        if configuration.memoryLevel == true { lines.append(levelsLine) }
        if configuration.checkpointing == .independent {
            lines.append("  independent: \(independentCheckpoints.reduce(0, +)) rank checkpoints ("
                         + independentCheckpoints.enumerated().map { "rank \($0.offset): \($0.element)" }.joined(separator: ", ")
                         + "); each commit is a move of the checkpoint-only line (`lifeline recovery-line RUN_DIR` for the rest)")
        } else if !commitsDetail.isEmpty {
            let levels = configuration.memoryLevel == true
            // With levels, where each line was held follows in a column of its own.
            let header = "  epoch     time  step  wrote          kept                  logical     stored  ratio  chunks (reused)"
            func withLevel(_ row: String, _ level: String) -> String {
                levels ? row.padding(toLength: max(row.count, header.count), withPad: " ", startingAt: 0) + "  " + level : row
            }
            lines.append(withLevel(header, "level"))
            for commit in commitsDetail {
                let wrote = commit.wrote.isEmpty ? "-" : Self.rankList(commit.wrote)
                let kept = commit.kept.isEmpty ? "-" : commit.kept.map { "\($0.rank)@" + ($0.from.map { "e\($0)" } ?? "start") }
                    .joined(separator: ",")
                let ratio = commit.storedBytes > 0 ? String(format: "%.2f", Double(commit.logicalBytes) / Double(commit.storedBytes)) : "-"
                let row = String(format: "  %5d %8.2f %5d  %@ %@ %10d %10d %6@  %@", commit.epoch, commit.time, commit.step,
                                 wrote.padding(toLength: 14, withPad: " ", startingAt: 0),
                                 kept.padding(toLength: 20, withPad: " ", startingAt: 0),
                                 commit.logicalBytes, commit.storedBytes, ratio, "\(commit.chunks) (\(commit.chunksReused))")
                lines.append(withLevel(row, Self.levelText(commit)))
            }
        }
        lines.append("failures     \(failures.count), \(String(format: "%.2f", recoverySecondsTotal)) s spent recovering")
        for failure in failures {
            var recovered = failure.recoverySeconds.map { String(format: "recovered in %.3f s", $0) } ?? "not recovered"
            if let back = failure.caughtUpSeconds { recovered += String(format: ", back at its step in %.3f s", back) }
            let recovery = failure.recovery + (failure.level.map { " from \($0)" } ?? "")
            lines.append(String(format: "  %8.3f s  rank %d %@; %@ (%@)", failure.time, failure.rank, failure.cause,
                                recovery, recovered))
        }
        lines.append("logs         \(logBytes) bytes on mirror A")
        lines.append("resizable: \(resizable)")
        lines.append("replayable: \(replayable)")
        lines.append("mirrors      \(storageFiles) files, " + (storageProblems.isEmpty ? "healthy" : "\(storageProblems.count) problems"))
        lines += storageProblems.map { "  " + $0 }
        return lines.joined(separator: "\n")
    }

    /// With levels, what they held: the lines committed in memory and those drained to disk
    /// since, and the drains that failed.
    private var levelsLine: String {
        let every = configuration.drainEvery ?? 1
        let drainedEvery = every == 1 ? "every round drained" : "one round in \(every) drained"
        let inMemory = commitsDetail.filter { $0.level == "memory" }
        let drained = inMemory.compactMap(\.drained)
        var line = "levels       memory,disk, \(drainedEvery): \(inMemory.count) of \(commits) lines committed in memory alone, "
            + "\(drained.count) of them drained to disk since (\(drainedBytes) bytes"
        if let slowest = drained.map(\.afterCommitSeconds).max() {
            line += String(format: ", at most %.3f s after the commit", slowest)
        }
        line += ")"
        if drainsFailed > 0 { line += ", \(drainsFailed) drains failed" }
        return line
    }

    /// Where a committed line was held, as the commit table's last column (and the timeline's
    /// marks) say it.
    static func levelText(_ commit: Commit) -> String {
        switch commit.level {
        case "memory":
            if let drained = commit.drained { return String(format: "memory, on disk %.3f s later", drained.afterCommitSeconds) }
            if !commit.drainFailedRanks.isEmpty { return "memory alone (the drain failed: rank \(rankList(commit.drainFailedRanks)))" }
            return "memory alone"
        case "memory,disk": return "memory and disk"
        case let level?: return level
        case nil: return "-"
        }
    }

    /// `[0, 1, 2, 5]` as `0-2,5`.
    static func rankList(_ ranks: [Int]) -> String {
        var parts: [String] = []
        var index = 0
        while index < ranks.count {
            var end = index
            while end + 1 < ranks.count, ranks[end + 1] == ranks[end] + 1 { end += 1 }
            parts.append(end == index ? "\(ranks[index])" : "\(ranks[index])-\(ranks[end])")
            index = end + 1
        }
        return parts.joined(separator: ",")
    }

    /// The summary as one JSON object.
    public var json: String {
        let object: [String: Any] = [
            "runDirectory": configuration.runDirectory, "ranks": configuration.rankCount,
            "checkpoint": configuration.checkpointing.rawValue, "logging": configuration.logging.rawValue,
            "intervalSeconds": configuration.intervalSeconds, "status": status, "elapsedSeconds": elapsedSeconds,
            "commits": commits, "aborts": aborts, "checkpointBytes": checkpointBytes,
            "checkpointSecondsMean": checkpointSecondsMean, "recoverySecondsTotal": recoverySecondsTotal,
            "independentCheckpoints": independentCheckpoints,
            "levels": configuration.memoryLevel == true ? "memory,disk" : "disk", "drainedBytes": drainedBytes,
            "drainsFailed": drainsFailed,
            "logBytes": logBytes, "storageFiles": storageFiles, "storageProblems": storageProblems, "resizable": resizable,
            "replayable": replayable,
            "epochs": commitsDetail.map { commit -> [String: Any] in
                var entry: [String: Any] = [
                    "epoch": commit.epoch, "t": commit.time, "step": commit.step, "wrote": commit.wrote,
                    "kept": commit.kept.map { entry -> [String: Any] in
                        ["rank": entry.rank, "from": entry.from.map { $0 as Any } ?? NSNull()]
                    },
                    "logicalBytes": commit.logicalBytes, "storedBytes": commit.storedBytes, "chunks": commit.chunks,
                    "chunksReused": commit.chunksReused, "drainFailedRanks": commit.drainFailedRanks,
                ]
                if let level = commit.level { entry["level"] = level }
                if let drained = commit.drained {
                    entry["drainedAfterSeconds"] = drained.afterCommitSeconds
                    entry["drainedBytes"] = drained.storedBytes
                }
                return entry
            },
            "failures": failures.map { failure -> [String: Any] in
                var entry: [String: Any] = ["t": failure.time, "rank": failure.rank, "cause": failure.cause,
                                            "recovery": failure.recovery]
                if let seconds = failure.recoverySeconds { entry["recoverySeconds"] = seconds }
                if let seconds = failure.caughtUpSeconds { entry["caughtUpSeconds"] = seconds }
                if let level = failure.level { entry["level"] = level }
                return entry
            },
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
