#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation

/// Before `lifeline resume -n M` changes anything, it asks the program whether its state can
/// be redistributed: it starts the program once as rank 0 of M with `LIFELINE_RESIZE_PROBE` set
/// to a file, and the program's `Communicator.restore(_:)` writes there whether the state type
/// conforms to `Redistributable` (and takes messages in flight), then exits. The program does
/// no work: any other call of the runtime before `restore` ends the probe with that answer.
enum ResizeProbe {
    /// The environment variable naming the answer file.
    static let variable = "LIFELINE_RESIZE_PROBE"
    /// How long the program may take to reach `restore(_:)`.
    static let timeoutSeconds = 30.0

    /// What the program said.
    enum Answer: Equatable {
        /// Its state conforms to `Redistributable`.
        case redistributable(takesMessagesInFlight: Bool)
        /// Its state, of the type named, does not.
        case notRedistributable(type: String)
        /// It called the runtime (the call named) before `restore(_:)`.
        case calledFirst(String)

        var line: String {
            switch self {
            case .redistributable(let takes): "redistributable \(takes ? 1 : 0)"
            case .notRedistributable(let type): "not-redistributable \(type)"
            case .calledFirst(let call): "called-first \(call)"
            }
        }

        init?(line: String) {
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { return nil }
            switch parts[0] {
            case "redistributable": self = .redistributable(takesMessagesInFlight: parts[1] == "1")
            case "not-redistributable": self = .notRedistributable(type: parts[1])
            case "called-first": self = .calledFirst(parts[1])
            default: return nil
            }
        }
    }

    /// In a probed program: the answer file and the rank count asked about, or nil when this
    /// process is not a probe.
    static func current() -> (path: String, size: Int)? {
        guard let path = getenv(variable).map({ String(cString: $0) }), !path.isEmpty else { return nil }
        let size = getenv(LaunchEnvironment.Key.size).flatMap { Int(String(cString: $0)) } ?? 1
        return (path, max(1, size))
    }

    /// In a probed program: writes `answer` and ends the process.
    static func answer(_ answer: Answer, path: String) -> Never {
        try? Data((answer.line + "\n").utf8).write(to: URL(fileURLWithPath: path))
        exit(0)
    }

    /// Runs `program` as a probe for `size` ranks and returns its answer, or throws a
    /// `LifelineError` that says why there is none (it failed, exited or hung before `restore`).
    static func ask(program: String, arguments: [String], size: Int) throws -> Answer {
        let folder = FileManager.default.temporaryDirectory.path + "/lifeline-probe-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let answerPath = folder + "/answer", errorPath = folder + "/stderr"
        var environment = ProcessInfo.processInfo.environment
        environment[variable] = answerPath
        environment[LaunchEnvironment.Key.size] = "\(size)"
        environment[LaunchEnvironment.Key.rank] = nil
        var pid: pid_t = 0
        var stage: Int32 = 0
        let result = withExecArguments([program] + arguments, environment) { argv, envp in
            lifeline_spawn(&pid, &stage, program, argv, envp, "/dev/null", errorPath)
        }
        guard result == 0 else {
            throw LifelineError(.configuration, "cannot start \(program) to ask whether it can be resized: \(String(cString: strerror(result)))")
        }
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw LifelineError(.configuration,
                    "\(program) did not call comm.restore(_:) within \(Int(timeoutSeconds)) s of starting, so it cannot be resized")
            }
            usleep(10_000)
        }
        if let text = try? String(contentsOfFile: answerPath, encoding: .utf8),
           let answer = Answer(line: text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            return answer
        }
        let lastError = ((try? String(contentsOfFile: errorPath, encoding: .utf8)) ?? "")
            .split(separator: "\n").last.map { ": \($0)" } ?? ""
        throw LifelineError(.configuration,
            "\(program) exited before calling comm.restore(_:), so whether it can be resized is unknown\(lastError)")
    }
}
