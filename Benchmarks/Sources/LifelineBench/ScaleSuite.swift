#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The scale-out suite: `lifeline simulate` (the protocol core on a virtual clock) from 4 to
/// 10,000 ranks for every checkpoint scheme and logging mode, timed by a cost model whose
/// floors — a small message's round trip, socket bandwidth, one fdatasync — are measured in
/// this run, with a flat coordinator beside a tree of coordinators; and the wall-clock time and
/// memory of the simulator itself at 10,000 ranks × 100 steps.
extension Suites {
    /// The schemes and logging modes `lifeline simulate` runs (independent takes none or pessimistic).
    static let simulatedModes: [(checkpoint: String, logging: String)] = ["coordinated", "blocking", "minimal", "independent"]
        .flatMap { checkpoint in
            ["none", "pessimistic", "sender-based", "optimistic"]
                .filter { checkpoint != "independent" || $0 == "none" || $0 == "pessimistic" }
                .map { (checkpoint, $0) }
        }

    /// The fan-in of the tree of coordinators beside the flat one.
    static let treeFanIn = 16

    mutating func scaleOut() throws {
        // Floors, in this run.
        let raw = try JobLauncher.spawn(launcher.binDirectory + "/raw-pingpong", ["20000", "256", String(1 << 20)],
                                        scratch: launcher.scratch, tag: 9201)
        let floors = keyValues(raw.2)
        // The supervisor waits in poll(2): the round trip of processes that block in a read.
        guard let roundTrip = floors["rtt_blocking_us_median"] ?? floors["rtt_us_median"], let bandwidth = floors["bandwidth_gbps"] else {
            throw BenchError("raw-pingpong gave no round trip or bandwidth: \(raw.2.prefix(200))")
        }
        let sync = try measureSync()
        let launch = try measureLaunch()
        let model = [
            "--latency-us", String(format: "%.3f", roundTrip / 2), "--message-us", String(format: "%.3f", roundTrip / 2),
            "--bandwidth-gbs", String(format: "%.3f", bandwidth), "--sync-ms", String(format: "%.4f", sync * 1e3),
            "--launch-ms", String(format: "%.3f", launch * 1e3), "--step-ms", "10", "--interval", "0.05",
        ]
        var rows: [[String]] = []
        var growth: [String] = []
        for (checkpoint, logging) in Self.simulatedModes {
            var byRanks: [Int: (flat: [String: Double], tree: [String: Double], wall: Double, rss: Int)] = [:]
            for ranks in scale.simulatedRanks {
                progress("scale: \(checkpoint) + \(logging), \(ranks) ranks")
                let flat = try simulate(ranks: ranks, steps: scale.simulatedSteps, checkpoint: checkpoint, logging: logging,
                                        extra: model + ["--fan-in", "0"])
                let tree = try simulate(ranks: ranks, steps: scale.simulatedSteps, checkpoint: checkpoint, logging: logging,
                                        extra: model + ["--fan-in", String(Self.treeFanIn)])
                byRanks[ranks] = (flat.figures, tree.figures, flat.seconds, flat.rss)
                let perRound = { (figures: [String: Double], key: String) in
                    (figures[key] ?? .nan) / max(1, figures["rounds"] ?? 1)
                }
                rows.append([
                    "\(checkpoint) + \(logging)", String(ranks),
                    String(format: "%.0f", flat.figures["rounds"] ?? .nan),
                    String(format: "%.0f", flat.figures["control_messages_per_round"] ?? .nan),
                    String(format: "%.1f", (flat.figures["control_bytes_per_round"] ?? .nan) / 1024),
                    String(format: "%.0f", perRound(flat.figures, "supervisor_messages")),
                    String(format: "%.0f", perRound(tree.figures, "supervisor_messages")),
                    milliseconds(flat.figures, "round_ms", "commits"), milliseconds(tree.figures, "round_ms", "commits"),
                    milliseconds(flat.figures, "recovery_ms", "recoveries"), milliseconds(tree.figures, "recovery_ms", "recoveries"),
                    milliseconds(flat.figures, "caught_up_ms", "caught_up"),
                    String(format: "%.2f", (flat.figures["log_bytes"] ?? 0) / 1_048_576),
                    String(format: "%.2f", flat.seconds), String(flat.rss / 1024),
                ])
            }
            growth += faster(than: byRanks, mode: "\(checkpoint) + \(logging)")
        }
        let fsyncNote = String(format: "%.2f ms", sync * 1e3)
        report.table(
            "Scale-out (simulated)",
            note: """
            `lifeline simulate` runs the supervisor's and the ranks' machines — the code `lifeline run` drives — on a virtual \
            clock: a ring halo exchange of \(scale.simulatedSteps) steps, seed 1, one to three rank crashes drawn from the seed \
            (and, for some seeds, a supervisor crash and resume), a checkpoint interval of 0.05 virtual s (under \
            independent checkpoints each rank's mean period; its rounds are the moves of the checkpoint-only line, and it \
            has no round to time). Virtual time comes \
            from a cost model whose floors were measured in this run: a 64 B round trip of \(String(format: "%.1f", roundTrip)) µs \
            (raw-pingpong, waiting in read(2) as the supervisor waits in poll(2); one way is half), \(String(format: "%.2f", bandwidth)) GB/s, one 4 KiB write + fdatasync \
            \(fsyncNote); a control message costs the node that sends or receives it one one-way latency, a step computes \
            10 ms, a snapshot or a manifest costs its bytes and one sync per mirror, a pessimistic record or a determinant \
            one sync before its delivery, and a launch \(String(format: "%.1f", launch * 1e3)) ms until the process is connected (the median \
            start of a Swift program linked with Lifeline, to its exit, measured here: the floor of a rank's launch; the \
            handshake adds its round trips) (docs/protocol.md, *Simulation*). **Flat**: one coordinator handles every control \
            message; **tree**: aggregators of fan-in \(Self.treeFanIn) gather each round's step reports and ACKs and pass the \
            supervisor's messages down. Rounds: requested (committed or aborted; under independent checkpoints, moves of the checkpoint-only line). \
            Control messages and bytes per round: a round's own traffic, both ways (request, step reports, S, ACKs, DONEs, \
            aborts, trims); supervisor messages per round: every control message the coordinator itself sent or handled in \
            the run (launches, recoveries and the final barrier too), divided by the rounds. Round: from the request to the \
            commit; recovery: from the failure to the end of its recovery; back at step: from the failure to the \
            relaunched rank back at the safe point it had reached (`caught_up`; after a lone replay, the steps its log does \
            not cover are re-executed live, a step's 10 ms each). Wall and peak: the simulator's own time and \
            peak resident memory (its own `getrusage`) for the flat run (one core).
            """,
            header: ["scheme + logging", "ranks", "rounds", "control msgs / round", "control KiB / round",
                     "supervisor msgs / round, flat", "…, tree", "round ms, flat", "round ms, tree", "recovery ms, flat",
                     "recovery ms, tree", "back at step ms, flat", "log MiB", "wall s", "peak MiB"],
            rows: rows)
        report.paragraph(growth.isEmpty
            ? "**Growth.** From \(scale.simulatedRanks.dropLast().last ?? 0) to \(scale.simulatedRanks.last ?? 0) ranks no figure per round grows faster than the ranks."
            : "**Where a figure grows faster than the ranks** (from \(scale.simulatedRanks.dropLast().last ?? 0) to \(scale.simulatedRanks.last ?? 0) ranks, exponent of the growth; 1 is linear): "
                + growth.joined(separator: "; ") + ".")
        if let steps = scale.targetSteps { try scaleTarget(steps: steps, model: model) }
    }

    /// The issue's target: 10,000 ranks × `steps` steps with crashes, under a minute on one core
    /// and 4 GiB, for every mode.
    private mutating func scaleTarget(steps: Int, model: [String]) throws {
        var rows: [[String]] = []
        var met = 0
        for (checkpoint, logging) in Self.simulatedModes {
            progress("scale: 10,000 ranks × \(steps) steps, \(checkpoint) + \(logging)")
            let run = try simulate(ranks: 10_000, steps: steps, checkpoint: checkpoint, logging: logging, extra: model + ["--fan-in", "0"])
            let ok = run.seconds < 60 && run.rss < 4 << 20
            if ok { met += 1 }
            rows.append(["\(checkpoint) + \(logging)", String(format: "%.1f", run.seconds), String(run.rss / 1024),
                         String(format: "%.0f", run.figures["events"] ?? .nan), String(format: "%.0f", run.figures["crashes"] ?? .nan),
                         ok ? "met" : "**not met**"])
        }
        report.table(
            "Scale-out target: 10,000 ranks × \(steps) steps",
            note: "The simulator's own wall-clock time (one core) and peak resident memory for a ring of 10,000 ranks and \(steps) steps with rank crashes (seed 1), timed by the same cost model with a flat coordinator. Target: under 60 s and 4 GiB for every mode.",
            header: ["scheme + logging", "wall s", "peak MiB", "events", "crashes", "< 60 s, < 4 GiB"], rows: rows)
        report.target("scale: 10,000 ranks × \(steps) steps in < 60 s and < 4 GiB", "\(met) of \(rows.count) modes", "every mode",
                      met: met == rows.count)
    }

    /// A figure in milliseconds, or a dash where there is nothing to time (no round committed
    /// under independent checkpoints, no recovery).
    private func milliseconds(_ figures: [String: Double], _ key: String, _ count: String) -> String {
        guard (figures[count] ?? 0) > 0, key != "round_ms" || (figures[key] ?? 0) > 0 else { return "—" }
        return String(format: "%.1f", figures[key] ?? .nan)
    }

    /// One `lifeline simulate` run: its figures and summary, wall seconds and peak KiB.
    private func simulate(ranks: Int, steps: Int, checkpoint: String, logging: String, extra: [String])
        throws -> (figures: [String: Double], seconds: Double, rss: Int)
    {
        let arguments = ["simulate", "--ranks", String(ranks), "--seed", "1", "--checkpoint", checkpoint, "--logging", logging,
                         "--steps", String(steps), "--program", "ring", "--faults", "crashes"] + extra
        let (seconds, status, stdout, rss) = try JobLauncher.spawn(launcher.binDirectory + "/lifeline", arguments,
                                                                    scratch: launcher.scratch, tag: 9300)
        guard status == 0, stdout.contains("simulate: ok") else {
            throw BenchError("lifeline \(arguments.joined(separator: " ")) failed (\(status)): \(stdout.suffix(300))")
        }
        // The simulator's own peak: the child's rusage also counts this process's pages in the
        // forked child before its exec.
        let figures = keyValues(stdout)
        return (figures, seconds, figures["peak_rss_mib"].map { Int($0) * 1024 } ?? rss)
    }

    /// The median of 50 writes of 4 KiB each followed by fdatasync, in seconds.
    /// The launch floor: the median time to spawn a Swift program linked with Lifeline and
    /// see it exit (`lifeline-pingpong start`), of 7.
    private func measureLaunch() throws -> Double {
        let samples = try (0..<7).map { index in
            try JobLauncher.spawn(launcher.binDirectory + "/lifeline-pingpong", ["start"], scratch: launcher.scratch, tag: 9301 + index).0
        }
        return samples.sorted()[samples.count / 2]
    }

    private func measureSync() throws -> Double {
        let path = launcher.scratch + "/sync-floor"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw BenchError("cannot create \(path)") }
        defer {
            close(fd)
            unlink(path)
        }
        let block = [UInt8](repeating: 0x5A, count: 4096)
        var times: [Double] = []
        for _ in 0..<50 {
            let start = monotonic()
            guard block.withUnsafeBytes({ write(fd, $0.baseAddress, 4096) }) == 4096, fdatasync(fd) == 0 else {
                throw BenchError("write + fdatasync failed on \(path)")
            }
            times.append(monotonic() - start)
        }
        return times.sorted()[times.count / 2]
    }

    /// The figures of one mode that grow faster than the ranks between its two largest runs.
    private func faster(than byRanks: [Int: (flat: [String: Double], tree: [String: Double], wall: Double, rss: Int)],
                        mode: String) -> [String] {
        let counts = byRanks.keys.sorted()
        guard counts.count >= 2, let small = byRanks[counts[counts.count - 2]], let large = byRanks[counts.last!] else { return [] }
        let factor = log(Double(counts.last!) / Double(counts[counts.count - 2]))
        func exponent(_ a: Double, _ b: Double) -> Double? { a > 0 && b > 0 ? log(b / a) / factor : nil }
        var found: [String] = []
        let measures: [(String, Double, Double)] = [
            ("control bytes / round", small.flat["control_bytes_per_round"] ?? 0, large.flat["control_bytes_per_round"] ?? 0),
            ("control messages / round", small.flat["control_messages_per_round"] ?? 0, large.flat["control_messages_per_round"] ?? 0),
            ("round time, flat", small.flat["round_ms"] ?? 0, large.flat["round_ms"] ?? 0),
            ("round time, tree", small.tree["round_ms"] ?? 0, large.tree["round_ms"] ?? 0),
            ("simulator wall time", small.wall, large.wall),
            ("simulator memory", Double(small.rss), Double(large.rss)),
        ]
        for (what, a, b) in measures {
            if let power = exponent(a, b), power > 1.15 { found.append("\(mode): \(what) ×\(String(format: "%.2f", power))") }
        }
        return found
    }
}
