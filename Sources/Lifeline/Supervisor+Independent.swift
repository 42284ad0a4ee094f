#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// `--checkpoint independent`: ranks checkpoint on their own schedule and the supervisor keeps
/// the dependency records. Each checkpoint is recorded in the manifest; the committed line is
/// the line of checkpoints only (no recovery line can ever be older), which bounds retention,
/// logs and garbage collection. On a failure the supervisor freezes the survivors, computes the
/// latest consistent recovery line with their current intervals, and restarts exactly the ranks
/// whose entry is a checkpoint; the others keep their processes.
extension Supervisor {
    /// Whether the job checkpoints independently.
    var independent: Bool { configuration.checkpointing == .independent }

    /// The manifest's records, one list per rank.
    var records: [[IndependentCheckpoint]] {
        get { manifest.independent ?? Array(repeating: [], count: configuration.rankCount) }
        set { manifest.independent = newValue }
    }

    /// Rebuilds the records' decisions from the manifest (a new or resumed job).
    func loadIndependentRecords() {
        if manifest.independent == nil { manifest.independent = Array(repeating: [], count: configuration.rankCount) }
        checkpoints = IndependentCheckpoints(records: records.map {
            $0.map { (PerPeer($0.dependencies, absent: -1), $0.snapshot != nil) }
        })
    }

    /// Forgets the checkpoints of `rank` after index `entry` (its execution past them is lost)
    /// and deletes their snapshots.
    func truncateRecords(rank: Int, after entry: Int) {
        var all = records
        let dropped = all[rank].filter { $0.index > entry }
        all[rank].removeAll { $0.index > entry }
        records = all
        checkpoints.truncate(rank: rank, after: entry)
        for name in dropped.compactMap(\.snapshot) { try? store.remove(name) }
    }

    /// Every rank restarts from `line` (the committed checkpoint-only line, or older after a
    /// fallback): the records after each rank's entry go.
    func resetRecords(to line: CommittedLine?) {
        for rank in 0..<configuration.rankCount {
            let member = line?.members.first { $0.rank == rank }
            let entry = member.flatMap { manifests.epoch(ofSnapshot: $0.snapshot) }.map { Int($0) } ?? 0
            truncateRecords(rank: rank, after: entry)
        }
    }

    /// A rank's checkpoint is durable on both mirrors: record it, and move the checkpoint-only
    /// line (commit, output release, trimming, garbage collection) if it advanced.
    func handleIndependentCheckpoint(rank: Int, index: Int, _ ack: Acknowledgement) throws {
        if let refused = checkpoints.record(rank: rank, index: index, dependencies: ack.dependencies, delivered: ack.delivered) {
            events.record("protocol_error", ["rank": .int(rank), "detail": .string(refused)])
            return
        }
        let snapshot = manifests.independentSnapshotName(rank: rank, checkpoint: index, incarnation: machine.ranks[rank].incarnation)
        var onlyOn = machine.mirrors.commitMirror([ack.mirrors]).onlyOn?.mirrors.first
        if let only = onlyOn, store.mirrors.count == 2, copyToBothMirrors([snapshot], from: only) != nil {
            onlyOn = nil  // written while a mirror had failed, which has been resynchronised since
        }
        var all = records
        all[rank].append(IndependentCheckpoint(
            index: index, snapshot: snapshot, step: ack.step,
            incarnation: Int(machine.ranks[rank].incarnation), outputOffset: ack.outputOffset, snapshotBytes: ack.snapshotBytes,
            dependencies: ack.dependencies.dense, onlyOn: onlyOn))
        records = all
        lastCommitBytes = ack.snapshotBytes
        events.record("checkpoint", [
            "rank": .int(rank), "index": .int(index), "step": .int(ack.step), "bytes": .int(Int(clamping: ack.snapshotBytes)),
            "logical": .int(Int(clamping: ack.logicalBytes)), "chunks": .int(Int(clamping: ack.chunks)), "reused": .int(Int(clamping: ack.chunksReused)),
            "dependencies": .string(ack.dependencies.dense.map(String.init).joined(separator: ",")),
        ])
        if checkpoints.advanceDue { try advanceCheckpointOnlyLine() }
    }

    /// Lets `IndependentCheckpoints` recompute the line of checkpoints only and what no line
    /// can use any more; records that in the manifest, commits the line when it moved, then
    /// releases output, deletes the collected snapshots and sends each sender its trim.
    private func advanceCheckpointOnlyLine() throws {
        // While some checkpoints are on one mirror, none is deleted: which line a second
        // failure would fall back to is not known.
        let advance = checkpoints.advance(
            collecting: failedMirror == nil && !manifest.hasDegradedCommits, keepNewest: configuration.logging != .none)
        let line = advance.line
        var all = records
        for collected in advance.collected {
            if let position = all[collected.rank].firstIndex(where: { $0.index == collected.index }) {
                all[collected.rank][position].snapshot = nil
            }
        }
        let deleted = advance.collected.map { "\($0.rank):\($0.index)" }
        records = all
        var next = manifest
        let previous = manifest.newestLine
        if advance.moved {
            let members = (0..<configuration.rankCount).compactMap { rank -> Member? in
                guard line[rank] > 0, let record = all[rank].first(where: { $0.index == line[rank] }),
                      let snapshot = record.snapshot ?? previous?.members.first(where: { $0.rank == rank })?.snapshot
                else { return nil }
                return Member(rank: rank, snapshot: snapshot, step: record.step, incarnation: record.incarnation,
                              outputOffset: record.outputOffset, snapshotBytes: record.snapshotBytes)
            }
            let onlyOn = (0..<configuration.rankCount).lazy.compactMap { rank in
                all[rank].first { $0.index == line[rank] }?.onlyOn
            }.first
            next.appendCommitted(CommittedLine(
                epoch: (manifest.newestLine?.epoch ?? 0) + 1, step: members.map(\.step).min() ?? -1, members: members,
                onlyOn: onlyOn), keep: configuration.keep ?? Manifest.keepDefault)
        }
        do {
            try commitManifest(&next)
        } catch let error as LifelineError {
            throw error
        } catch {
            warn("cannot record an independent checkpoint: \(error); the previous records stand")
            events.record("commit_failed", ["reason": .string("\(error)")])
            return
        }
        manifest = next
        guard advance.moved else {
            if !deleted.isEmpty { try collectGarbage(deleted: deleted) }
            return
        }
        checkpoints.lineCommitted(line)
        lineInForce = manifest.newestLine
        events.record("commit", [
            "epoch": .int(Int(clamping: manifest.newestLine?.epoch ?? 0)), "step": .int(manifest.newestLine?.step ?? -1),
            "bytes": .int(Int(clamping: lastCommitBytes)), "line": .string(line.map(String.init).joined(separator: ",")),
            "commits": .int(manifest.commits),
        ])
        fireStorageFaults(committed: manifest.newestLine?.epoch ?? 0)
        for rank in 0..<configuration.rankCount {
            guard let record = all[rank].first(where: { $0.index == line[rank] }) else { continue }
            output.release(rank: rank, incarnation: UInt32(clamping: record.incarnation), upTo: record.outputOffset)
        }
        try collectGarbage(deleted: deleted)
        for (sender, trim) in advance.trims.enumerated() {
            send(.trim(checkpoint: trim.checkpoint, coveredByReceiver: trim.coveredByReceiver), to: sender)
        }
    }

    private func collectGarbage(deleted: [String]) throws {
        if !deleted.isEmpty {
            events.record("checkpoints_collected", ["checkpoints": .string(deleted.joined(separator: ","))])
        }
        collectGarbage()
        guard !deleted.isEmpty, let hostJob else { return }
        // What this supervisor deleted is on its own mirrors; a host's folders (a node-local
        // mirror, the folder kept for a partner) are collected by a rank there, against the
        // manifest just committed: the lowest running rank of each host.
        var asked: Set<String> = []
        for (rank, host) in hostJob.rankHosts.enumerated() where machine.ranks[rank].alive && !asked.contains(host) {
            asked.insert(host)
            send(.collectHostGarbage, to: rank)
        }
    }

    /// Says the recovery line `IndependentPartialRollback` found: which ranks roll back to
    /// which checkpoint and how many steps each loses, and the domino effect when every rank
    /// that rolls back goes back to the start.
    func reportRecoveryLine(_ line: IndependentPartialRollback.Line) {
        func stepLost(_ rank: Int) -> (step: Int, lost: Int) {
            let entry = line.entries[rank] ?? 0
            let step = entry == 0 ? -1 : records[rank].first { $0.index == entry }?.step ?? -1
            return (step, max(0, machine.ranks[rank].step - step))
        }
        let describe = line.entries.enumerated().map { rank, entry -> String in
            guard let entry else { return "rank \(rank) keeps its state" }
            let (step, lost) = stepLost(rank)
            return entry == 0 ? "rank \(rank) → the start (\(lost) steps lost)" : "rank \(rank) → checkpoint \(entry) at step \(step) (\(lost) steps lost)"
        }
        warn("recovery line: " + describe.joined(separator: "; "))
        if line.domino { warn("domino effect: every rank that rolls back goes back to the start of the job") }
        events.record("recovery_line", [
            "line": .string(line.entries.map { $0.map(String.init) ?? "keep" }.joined(separator: ",")),
            "rolled_back": .string(line.rolledBack.map(String.init).joined(separator: ",")),
            "steps_lost": .int(line.rolledBack.reduce(0) { $0 + stepLost($1).lost }),
            "domino": .bool(line.domino),
        ])
    }
}

extension IntervalDependencies {
    /// The planner for the dependency records of a manifest (`Manifest.independent`).
    init(records: [[IndependentCheckpoint]]) {
        self.init(rankCount: records.count)
        for (rank, list) in records.enumerated() {
            for record in list { recordCheckpoint(rank: rank, dependencies: record.dependencies) }
        }
    }
}
