#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The transport between two hosts: two ranks on two test hosts made of network namespaces
/// (`scripts/testbed.sh`), talking over TCP after the host handshake, beside a raw TCP
/// ping-pong (C) between the same two namespaces in the same run. Needs root; without it the
/// report says so.
extension Suites {
    mutating func transportBetweenHosts() throws {
        let title = "Transport between hosts"
        let environment = ["LIFELINE_TESTBED_PREFIX": "lb", "LIFELINE_TESTBED_SUBNET": "10.79.0"]
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter"),
              let script = Self.testbedScript(near: launcher.binDirectory)
        else {
            report.table(title, note: "Skipped: two test hosts need root, nsenter and scripts/testbed.sh.", header: ["measure"], rows: [])
            return
        }
        guard Self.shell([script, "up", "2"], environment: environment) == 0 else {
            _ = Self.shell([script, "down"], environment: environment)
            report.table(title, note: "Skipped: the test hosts could not be made (scripts/testbed.sh up 2).", header: ["measure"], rows: [])
            return
        }
        defer { _ = Self.shell([script, "down"], environment: environment) }
        let bytes = 1 << 20
        let arguments = [String(scale.transportTrips), String(scale.transportMessages), String(bytes)]
        let port = "47\(100 + Int.random(in: 0..<800))"
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        server.arguments = ["--net=/run/netns/lbh2", launcher.binDirectory + "/raw-pingpong"] + arguments
            + ["tcp-server", "10.79.0.2", port]
        try server.run()
        let raw = try JobLauncher.spawn(
            "/usr/bin/nsenter",
            ["--net=/run/netns/lbh1", launcher.binDirectory + "/raw-pingpong"] + arguments + ["tcp-client", "10.79.0.2", port],
            scratch: launcher.scratch, tag: 9201)
        server.waitUntilExit()
        let lifeline = try launcher.run(
            ranks: 2,
            options: ["--interval", "1e9", "--launcher", "ssh", "--hosts", "lbh1,lbh2",
                      "--launch-command", "nsenter --net=/run/netns/{host} sh -c {cmd}"],
            program: ["lifeline-pingpong"] + arguments, wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lbh1"])
        let floor = keyValues(raw.2)
        let measured = keyValues(lifeline.stdout)
        func row(_ what: String, _ key: String, _ target: String, limit: Double?, higherIsBetter: Bool) -> [String] {
            let ours = measured[key] ?? .nan
            let base = floor[key] ?? .nan
            let ratio = ours / base
            let met = limit.map { higherIsBetter ? ratio >= $0 : ratio <= $0 }
            return [what, String(format: "%.2f", ours), String(format: "%.2f", base), String(format: "%.2f×", ratio), target,
                    met.map { $0 ? "met" : "**not met**" } ?? "—"]
        }
        var rows = [
            row("64 B round trip, median (µs)", "rtt_us_median", "≤ 1.3×", limit: 1.3, higherIsBetter: false),
            row("64 B round trip, p99 (µs)", "rtt_us_p99", "—", limit: nil, higherIsBetter: false),
            row("1 MiB messages, bandwidth (GB/s)", "bandwidth_gbps", "≥ 0.8×", limit: 0.8, higherIsBetter: true),
        ]
        report.target("hosts: TCP 64 B round trip, Lifeline / raw", rows[0][3], rows[0][4], met: rows[0][5] == "met")
        report.target("hosts: TCP 1 MiB bandwidth, Lifeline / raw", rows[2][3], rows[2][4], met: rows[2][5] == "met")
        if let blocking = floor["rtt_blocking_us_median"] {
            rows.insert(["64 B round trip, median, raw TCP waiting in read(2) (µs)", "—", String(format: "%.2f", blocking), "—", "—", "—"], at: 2)
        }
        if lifeline.status != 0 || raw.1 != 0 {
            rows.append(["a run failed", "exit \(lifeline.status)", "exit \(raw.1)", "—", "—", "**failed**"])
        }
        report.table(title, note: "Two ranks on two test hosts (network namespaces joined by a bridge, `scripts/testbed.sh`; the supervisor on the first), through Lifeline over TCP after the mutual handshake (`lifeline-pingpong` under `lifeline run --launcher ssh`, no checkpoint), beside two plain processes on a TCP connection between the same namespaces (`raw-pingpong tcp-server|tcp-client`, C, TCP_NODELAY), in the same run. The raw round trip busy-polls as a Lifeline rank does when every rank has a core; its round trip waiting in read(2) is shown beside it.",
                     header: ["measure", "Lifeline", "raw TCP", "ratio", "target", ""], rows: rows)
        try partnerCopies(rawBandwidth: floor["bandwidth_gbps"])
    }

    /// Partner copies (SCR's PARTNER scheme, `{partner}` in `--storage`) on the two test hosts
    /// already up: the same job with its second copy in a folder both hosts share, and sent to
    /// the partner host, each with one rank killed and restored; beside the floor
    /// of sending a rank's state over raw TCP at the bandwidth measured just before.
    private mutating func partnerCopies(rawBandwidth: Double?) throws {
        let ranks = 2
        let stateMiB = max(2, scale.levelsMiB / 2)
        let size = Int((Double(stateMiB << 20) / 8).squareRoot())
        // A step of this heat2d takes about 5 ms per 16 MiB of a rank's field here: steps for
        // some 6 s, six rounds or so.
        let steps = max(scale.levelsSteps, 1200 * 16 / max(1, stateMiB / ranks))
        let program = ["heat2d", "--size", String(size), "--steps", String(steps), "--broadcast-every", "1000"]
        let hosts = ["--launcher", "ssh", "--hosts", "lbh1,lbh2", "--launch-command", "nsenter --net=/run/netns/{host} sh -c {cmd}"]
        let storage = launcher.scratch + "/partner-storage"
        var rows: [[String]] = []
        var results: Set<String> = []
        var captures: [String: Double] = [:]
        for (label, roots) in [("second copy in a shared folder", "\(storage)/{host}/a,\(storage)/shared"),
                               ("second copy on the partner host", "\(storage)/{host}/a,\(storage)/{partner}/b")] {
            progress("hosts: partner copies, \(stateMiB) MiB over \(ranks) ranks, \(label)")
            try? FileManager.default.removeItem(atPath: storage)
            let run = try launcher.run(
                ranks: ranks, options: ["--interval", "1", "--storage", roots, "--inject", "kill:rank=1,epoch=2"] + hosts,
                program: program, wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lbh1"])
            guard run.status == 0, let result = run.result else {
                throw BenchError("partner copies, \(label): the job failed: \(run.stdout)")
            }
            results.insert(result)
            let fromCapture = run.events("commit").compactMap { $0["from_capture_s"] as? Double }
            let restores = run.events("rank_finished").compactMap { $0["restore_s"] as? Double }.filter { $0 > 0 }
            let state = run.events("commit").compactMap { $0["state"] as? Int }.max() ?? 0
            captures[label] = median(fromCapture)
            rows.append([label, String(format: "%.0f", Double(state) / 1048576), String(fromCapture.count),
                         String(format: "%.3f", median(run.requestToCommitSeconds)), String(format: "%.3f", median(fromCapture)),
                         restores.isEmpty ? "—" : String(format: "%.3f", median(restores)), String(format: "%.2f", run.seconds)])
        }
        try? FileManager.default.removeItem(atPath: storage)
        if let rawBandwidth, rawBandwidth > 0 {
            let perRank = Double(stateMiB << 20) / Double(ranks)
            rows.append(["floor: one rank's state over raw TCP (\(String(format: "%.2f", rawBandwidth)) GB/s, above)",
                         String(format: "%.0f", perRank / 1048576), "—", "—", String(format: "%.3f", perRank / (rawBandwidth * 1e9)), "—", "—"])
        }
        if results.count != 1 { rows.append(["the runs' results differ", "—", "—", "—", "—", "—", "**failed**"]) }
        let ratio = (captures["second copy on the partner host"] ?? .nan) / (captures["second copy in a shared folder"] ?? .nan)
        report.table("Partner copies between hosts", note: """
            heat2d on \(ranks) ranks, one on each test host, with a field of \(stateMiB) MiB (\(size)²), a round every second \
            and rank 1 killed right after round 2 commits. First the second copy in a folder the hosts share \
            (`--storage DIR/{host}/a,DIR/shared`), then kept by the partner host \
            (`DIR/{host}/a,DIR/{partner}/b`): sent over TCP, written, fsynced and read back there before the rank \
            acknowledges. Both hosts are namespaces of this one machine, so every copy lands on its one disk and the \
            network is a bridge in memory. Capture → commit is the median over the rounds from the first capture to the \
            commit: with the partner copy it is \(String(format: "%.2f", ratio))× that with the shared folder. Restore: the killed rank reading its \
            snapshot (the partner's copy checked by its digest, not sent back). Results equal across the runs: \
            \(results.count == 1 ? "yes" : "**no**").
            """, header: ["second copy", "state (MiB)", "rounds", "request → commit (s)", "capture → commit (s)",
                          "restore (s)", "run (s)"], rows: rows)
    }

    /// `scripts/testbed.sh` of the checkout this benchmark was built in (its binary lies in
    /// `.build/…/release`), or of the current folder.
    static func testbedScript(near binDirectory: String) -> String? {
        var folder = URL(fileURLWithPath: binDirectory)
        for _ in 0..<5 {
            let candidate = folder.appendingPathComponent("scripts/testbed.sh").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            folder = folder.deletingLastPathComponent()
        }
        let here = FileManager.default.currentDirectoryPath + "/scripts/testbed.sh"
        return FileManager.default.isExecutableFile(atPath: here) ? here : nil
    }

    /// Runs `command` with `environment` added, its output discarded; its exit status.
    static func shell(_ command: [String], environment: [String: String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
