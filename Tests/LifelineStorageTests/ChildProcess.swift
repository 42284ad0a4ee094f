import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The crash tests' helper executable, spawned with its stdout on a pipe.
struct ChildProcess {
    let pid: pid_t
    private let output: Int32
    /// What the child printed so far.
    private(set) var text = ""

    /// The folder holding the built executables (beside the test bundle).
    static let binDirectory: String = {
        var url = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("lifeline-storage-crasher").path),
              url.path != "/" {
            url = url.deletingLastPathComponent()
        }
        return url.path
    }()

    /// Starts `lifeline-storage-crasher` with `arguments`.
    init(_ arguments: [String]) throws {
        let program = Self.binDirectory + "/lifeline-storage-crasher"
        guard FileManager.default.isExecutableFile(atPath: program) else {
            throw ChildError("lifeline-storage-crasher is not built beside the tests (swift build first)")
        }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw ChildError("pipe failed: errno \(errno)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, program, &actions, nil, argv, environ)
        close(fds[1])
        guard status == 0 else {
            close(fds[0])
            throw ChildError("posix_spawn failed: \(status)")
        }
        pid = child
        output = fds[0]
    }

    /// Reads until the output contains `marker` or ends; returns whether it appeared.
    mutating func read(until marker: String) -> Bool {
        while !text.contains(marker) {
            guard readSome() else { return false }
        }
        return true
    }

    /// SIGKILLs the child, reaps it, and reads the rest of its output.
    mutating func kill() {
        _ = Glibc.kill(pid, SIGKILL)
        _ = wait()
    }

    /// Reads the output to its end and reaps the child; returns its wait status.
    mutating func wait() -> Int32 {
        while readSome() {}
        close(output)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status
    }

    private mutating func readSome() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(output, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { return false }
            text += String(decoding: buffer[0..<count], as: UTF8.self)
            return true
        }
    }
}

struct ChildError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
