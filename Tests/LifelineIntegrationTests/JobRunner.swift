import Foundation
import Testing

/// Runs the built `lifeline` on a real job and collects what it printed.
struct JobRunner {
    /// What one `lifeline` invocation printed and how it ended.
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var runDirectory: String

        /// The `result sha256=` lines on standard output.
        var resultLines: [String] { stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("result sha256=") } }
        /// The events of the run, one dictionary a line.
        var events: [[String: Any]] {
            let text = (try? String(contentsOfFile: runDirectory + "/events.jsonl", encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
        }
        /// The events named `name`.
        func events(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }
    }

    /// The folder holding the built executables (beside the test bundle).
    static let binDirectory: String = {
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("lifeline").path), url.path != "/" {
            url = url.deletingLastPathComponent()
        }
        return url.path
    }()

    /// A fresh scratch folder for one test.
    /// The seed of a randomized test, printed with its name: `LIFELINE_TEST_SEED` replays one,
    /// else the clock draws it below `bound`.
    static func seed(_ name: String, below bound: UInt64 = 100_000) -> UInt64 {
        let seed = ProcessInfo.processInfo.environment["LIFELINE_TEST_SEED"].flatMap { UInt64($0) }
            ?? UInt64(Date().timeIntervalSince1970 * 1000) % bound
        print("\(name): seed \(seed) (LIFELINE_TEST_SEED=\(seed) replays it)")
        return seed
    }

    static func scratch(_ name: String) -> String {
        let path = NSTemporaryDirectory() + "lifeline-it-\(name)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The heat2d arguments of the small test problem.
    static let heat = ["heat2d", "--size", "48", "--steps", "700", "--broadcast-every", "25", "--sleep-ms", "3"]

    /// Runs `lifeline ARGS`, killing it after `timeoutSeconds`. `whileRunning` is called with
    /// its pid once it started (to wait for an event, damage a file, send a signal); if it
    /// throws, the run is killed and the error rethrown. `wrapper` is a command that execs
    /// lifeline (`nsenter --net=…`: the supervisor on a test host).
    static func lifeline(
        _ arguments: [String], runDirectory: String, timeoutSeconds: Double = 240, wrapper: [String] = [],
        environment extra: [String: String] = [:], whileRunning: ((Int32) throws -> Void)? = nil
    ) throws -> Result {
        let process = Process()
        let command = wrapper + [binDirectory + "/lifeline"] + arguments
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        environment["PATH"] = binDirectory + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let timer = DispatchSource.makeTimerSource()
        timer.schedule(deadline: .now() + timeoutSeconds)
        timer.setEventHandler { kill(process.processIdentifier, SIGKILL) }
        timer.resume()
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        do {
            try whileRunning?(process.processIdentifier)
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            group.wait()
            timer.cancel()
            throw error
        }
        process.waitUntilExit()
        group.wait()
        timer.cancel()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self), runDirectory: runDirectory)
    }

    /// Waits (at most 60 s) until the run's event log contains `text`.
    static func waitForEvents(_ runDirectory: String, containing text: String) {
        let eventsPath = runDirectory + "/events.jsonl"
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline,
              !((try? String(contentsOfFile: eventsPath, encoding: .utf8))?.contains(text) ?? false) {
            usleep(20_000)
        }
    }

    /// The paths of a rank's message log segments on one mirror (`root`: `storage-a` or
    /// `storage-b`), oldest first.
    static func logSegments(_ runDirectory: String, root: String, rank: Int) -> [String] {
        let folder = runDirectory + "/" + root + "/logs/rank-\(rank)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { $0.hasSuffix(".seg") }.sorted().map { folder + "/" + $0 }
    }

    /// Runs heat2d under `lifeline run` with `options`.
    static func runHeat(_ name: String, ranks: Int = 4, _ options: [String] = [], timeoutSeconds: Double = 240) throws -> Result {
        let runDirectory = scratch(name) + "/run"
        return try lifeline(
            ["run", "-n", String(ranks), "--interval", "0.5", "--run-dir", runDirectory, "--quiet"] + options + ["--"] + heat,
            runDirectory: runDirectory, timeoutSeconds: timeoutSeconds)
    }

    /// Whether a process is running (not gone, not a zombie).
    static func isRunning(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }
}
