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
