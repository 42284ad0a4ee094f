#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation

/// One finished run of a program under `lifeline run`, with what its run directory says.
struct JobRun {
    var seconds: Double
    var status: Int32
    var stdout: String
    /// The largest resident set of the supervisor or any rank, in KiB (wait4's ru_maxrss).
    var peakRSSKiB: Int
    var events: [[String: Any]]
    var runDirectory: String
    /// The bytes of the files in each storage root when the run ended.
    var storageBytes: (a: Int, b: Int) = (0, 0)

    func events(_ name: String) -> [[String: Any]] { events.filter { $0["event"] as? String == name } }
    var result: String? { stdout.split(separator: "\n").first { $0.hasPrefix("result sha256=") }.map(String.init) }
    /// Bytes stored by committed rounds, or by every recorded checkpoint under independent
    /// checkpointing (where a commit only moves the line).
    var checkpointBytes: Int {
        let independent = events("checkpoint")
        if !independent.isEmpty { return independent.reduce(0) { $0 + ($1["bytes"] as? Int ?? 0) } }
        return events("commit").reduce(0) { $0 + ($1["bytes"] as? Int ?? 0) }
    }
    /// Per committed round: the snapshots' uncompressed bytes, and the bytes they had to hold —
    /// the program states plus the messages in flight across the line (the `commit` event's
    /// `logical`, `state` and `in_flight`). Empty under independent checkpointing.
    var commitContents: [(logical: Int, state: Int, inFlight: Int)] {
        events("commit").compactMap { event in
            guard let logical = event["logical"] as? Int, let state = event["state"] as? Int, logical > 0 else { return nil }
            return (logical, state, event["in_flight"] as? Int ?? 0)
        }
    }
    /// Per committed round, the seconds from its request to its commit.
    var requestToCommitSeconds: [Double] {
        let requests = Dictionary(events("checkpoint_request").compactMap { event -> (Int, Double)? in
            guard let epoch = event["epoch"] as? Int, let time = event["t"] as? Double else { return nil }
            return (epoch, time)
        }, uniquingKeysWith: { first, _ in first })
        return events("commit").compactMap { event -> Double? in
            guard let epoch = event["epoch"] as? Int, let time = event["t"] as? Double, let start = requests[epoch] else { return nil }
            return time - start
        }
    }
    /// The largest peak resident memory a rank reported at the final barrier, in MiB.
    var rankPeakMiB: Int { (events("rank_finished").compactMap { $0["resident_bytes_peak"] as? Int }.max() ?? 0) >> 20 }
    /// Committed rounds, or recorded checkpoints under independent checkpointing.
    var commits: Int {
        let independent = events("checkpoint").count
        return independent > 0 ? independent : events("commit").count
    }
    /// The fsyncs the ranks' message logs issued (each mirror counts), summed over the ranks.
    var logSyncs: Int { events("rank_finished").reduce(0) { $0 + ($1["log_syncs"] as? Int ?? 0) } }
    /// The seconds the slowest rank's log appends took to make records durable (each rank waits
    /// for its own): the floor of a rule that syncs before delivery.
    var logSyncSeconds: Double { events("rank_finished").compactMap { $0["log_sync_s"] as? Double }.max() ?? 0 }
    /// The seconds during which at least one rank was making log records durable (the union of
    /// the ranks' sync intervals, `job_finished`'s `log_sync_union_s`); nil when the run has none.
    var logSyncUnionSeconds: Double? { events("job_finished").last?["log_sync_union_s"] as? Double }
    /// The mean number of ranks that wrote a snapshot in a committed round, nil without rounds.
    var ranksPerRound: Double? {
        if !events("checkpoint").isEmpty { return 1 }
        let counts = events("commit").map { ($0["wrote"] as? String ?? "").split(separator: ",").count }
        return counts.isEmpty ? nil : Double(counts.reduce(0, +)) / Double(counts.count)
    }
}

/// Starts programs and collects their results; every path it needs is beside its executable.
struct JobLauncher {
    let binDirectory: String
    let scratch: String
    private var counter = 0

    init(scratch: String) {
        binDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
        self.scratch = scratch
    }

    /// Runs `lifeline run OPTIONS -- PROGRAM…` and waits for it; `wrapper` is a command that
    /// execs lifeline (`nsenter --net=…`: the supervisor on a test host).
    mutating func run(ranks: Int, options: [String], program: [String], wrapper: [String] = []) throws -> JobRun {
        counter += 1
        let runDirectory = "\(scratch)/run-\(counter)"
        let arguments = ["run", "-n", String(ranks), "--run-dir", runDirectory, "--quiet"] + options + ["--"] + program
        let command = wrapper + [binDirectory + "/lifeline"] + arguments
        let (seconds, status, stdout, rss) = try Self.spawn(command[0], Array(command.dropFirst()), scratch: scratch, tag: counter)
        let text = (try? String(contentsOfFile: runDirectory + "/events.jsonl", encoding: .utf8)) ?? ""
        let events = text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        var run = JobRun(seconds: seconds, status: status, stdout: stdout, peakRSSKiB: rss, events: events, runDirectory: runDirectory)
        run.storageBytes = (Self.bytes(under: runDirectory + "/storage-a"), Self.bytes(under: runDirectory + "/storage-b"))
        try? FileManager.default.removeItem(atPath: runDirectory + "/storage-a")
        try? FileManager.default.removeItem(atPath: runDirectory + "/storage-b")
        return run
    }

    /// The total size of the files under `folder`.
    static func bytes(under folder: String) -> Int {
        guard let walk = FileManager.default.enumerator(atPath: folder) else { return 0 }
        var total = 0
        while let name = walk.nextObject() as? String {
            let attributes = try? FileManager.default.attributesOfItem(atPath: folder + "/" + name)
            if attributes?[.type] as? FileAttributeType == .typeRegular { total += attributes?[.size] as? Int ?? 0 }
        }
        return total
    }

    /// Spawns a command with its output in files; returns wall seconds, exit status, stdout and
    /// the peak RSS of it and its descendants.
    static func spawn(_ path: String, _ arguments: [String], scratch: String, tag: Int) throws -> (Double, Int32, String, Int) {
        let out = "\(scratch)/out-\(tag).txt"
        let err = "\(scratch)/err-\(tag).txt"
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        var environment = ProcessInfo.processInfo.environment
        environment["PATH"] = URL(fileURLWithPath: path).deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin")
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let start = monotonic()
        var stage: Int32 = 0
        let result = lifeline_spawn(&pid, &stage, path, argv, envp, out, err)
        guard result == 0 else { throw BenchError("cannot start \(path): \(String(cString: strerror(result)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let seconds = monotonic() - start
        var detail: Int32 = 0
        let kind = lifeline_wait_status(status, &detail)
        let stdout = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        if kind != 1 || detail != 0 {
            let stderr = (try? String(contentsOfFile: err, encoding: .utf8)) ?? ""
            FileHandle.standardError.write(Data("lifeline-bench: \(path) \(arguments.joined(separator: " ")) ended with \(detail): \(stderr.suffix(400))\n".utf8))
        }
        return (seconds, kind == 1 ? detail : 128 + detail, stdout, Int(usage.ru_maxrss))
    }
}

func monotonic() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    return sorted[sorted.count / 2]
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Parses `key=value` pairs of a baseline's output line.
func keyValues(_ text: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for item in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
        let parts = item.split(separator: "=", maxSplits: 1)
        if parts.count == 2, let value = Double(parts[1]) { result[String(parts[0])] = value }
    }
    return result
}

/// Progress on stderr, so a user watching a long run sees where it is.
func progress(_ text: String) {
    FileHandle.standardError.write(Data("lifeline-bench:   \(text)\n".utf8))
}

/// This process's resident memory from /proc/self/status.
enum Memory {
    /// Resets the peak resident set (Linux: `5` into clear_refs) and returns the current one, in KiB.
    static func resetPeak() -> Int {
        if let file = fopen("/proc/self/clear_refs", "w") {
            fputs("5", file)
            fclose(file)
        }
        return field("VmRSS:")
    }

    /// The peak resident set since the last reset, in KiB.
    static func peakKiB() -> Int { field("VmHWM:") }

    private static func field(_ name: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }) else { return 0 }
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "0") ?? 0
    }
}
