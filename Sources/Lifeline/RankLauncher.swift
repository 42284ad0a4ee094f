#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport
import Foundation

/// How a rank process ended.
struct ProcessExit: Sendable, Equatable, CustomStringConvertible {
    /// The process.
    var pid: pid_t
    /// The exit code, when it exited by itself.
    var exitCode: Int32?
    /// The signal, when a signal ended it.
    var signal: Int32?

    var description: String {
        if let signal { return signal == SIGKILL ? "killed (SIGKILL)" : "ended by signal \(signal)" }
        return "exited with status \(exitCode ?? -1)"
    }
}

/// Starts rank processes with posix_spawn and reports their exits through a pipe the
/// supervisor's loop polls: one waiter thread per process, blocked in `waitpid`.
///
/// Spawn from the supervisor's main thread only: a rank's parent-death signal is tied to the
/// thread that spawned it.
final class RankLauncher {
    /// The read end of the exit pipe; readable when a process has ended.
    let exitFD: Int32
    private let writeFD: Int32

    init() throws {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw LifelineError(.environment, "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        exitFD = fds[0]
        writeFD = fds[1]
        _ = fcntl(exitFD, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeFD, F_SETFD, FD_CLOEXEC)
    }

    /// Starts `program` with `arguments`, adding `environment` to this process's environment,
    /// with standard output and error appended to the two files, and `input` (then the end of
    /// the stream) on its standard input (nil: /dev/null).
    func spawn(
        program: String, arguments: [String], environment: [String: String], input: [UInt8]? = nil,
        stdoutPath: String, stderrPath: String
    ) throws -> pid_t {
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        var pid: pid_t = 0
        var stage: Int32 = 0
        var inputFDs: [Int32] = [-1, -1]
        if let input {
            guard input.count <= 4096, pipe(&inputFDs) == 0 else {
                throw LifelineError(.environment, "cannot create a pipe: \(String(cString: strerror(errno)))")
            }
            for fd in inputFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            // A pipe holds at least a page: the whole input is in it before the child starts.
            _ = input.withUnsafeBytes { write(inputFDs[1], $0.baseAddress, $0.count) }
            close(inputFDs[1])
        }
        defer { if inputFDs[0] >= 0 { close(inputFDs[0]) } }
        let result = withExecArguments([program] + arguments, merged) { argv, envp in
            lifeline_spawn_input(&pid, &stage, program, argv, envp, inputFDs[0], stdoutPath, stderrPath)
        }
        guard result == 0 else {
            let reason = String(cString: strerror(result))
            switch Int(stage) {
            case Int(LIFELINE_SPAWN_STDOUT), Int(LIFELINE_SPAWN_STDERR):
                let path = Int(stage) == Int(LIFELINE_SPAWN_STDOUT) ? stdoutPath : stderrPath
                throw LifelineError(.environment, "cannot open the rank's output file \(path): \(reason); is the run directory intact?")
            case Int(LIFELINE_SPAWN_EXEC):
                throw LifelineError(.configuration, "cannot start \(program): \(reason)")
            default:
                throw LifelineError(.environment, "cannot start a process for \(program): \(reason)")
            }
        }
        let writeFD = self.writeFD
        let child = pid
        Thread.detachNewThread {
            let pid = child
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            var record: (pid_t, Int32) = (pid, status)
            _ = withUnsafeBytes(of: &record) { write(writeFD, $0.baseAddress, $0.count) }
        }
        return pid
    }

    /// Reads the exits reported so far (call when `exitFD` is readable).
    func readExits() -> [ProcessExit] {
        var record: (pid_t, Int32) = (0, 0)
        let size = MemoryLayout<(pid_t, Int32)>.size
        let count = withUnsafeMutableBytes(of: &record) { read(exitFD, $0.baseAddress, size) }
        guard count == size else { return [] }
        var detail: Int32 = 0
        switch lifeline_wait_status(record.1, &detail) {
        case 1: return [ProcessExit(pid: record.0, exitCode: detail, signal: nil)]
        case 2: return [ProcessExit(pid: record.0, exitCode: nil, signal: detail)]
        default: return [ProcessExit(pid: record.0, exitCode: nil, signal: nil)]
        }
    }
}

/// Calls `body` with `arguments` and `environment` as the NUL-terminated C arrays exec takes
/// (`argv`, and `envp` of `KEY=value`, sorted), freed when it returns.
func withExecArguments<Result>(
    _ arguments: [String], _ environment: [String: String],
    _ body: ([UnsafeMutablePointer<CChar>?], [UnsafeMutablePointer<CChar>?]) throws -> Result
) rethrows -> Result {
    let argv = arguments.map { strdup($0) } + [nil]
    let envp = environment.keys.sorted().map { strdup("\($0)=\(environment[$0]!)") } + [nil]
    defer {
        argv.forEach { free($0) }
        envp.forEach { free($0) }
    }
    return try body(argv, envp)
}
