import Foundation
@testable import Lifeline
import LifelineCore
import Testing

extension RecoveryTests {
    /// Connections without the job's token are refused, by the supervisor and by the ranks,
    /// and the job goes on to the failure-free result.
    @Test func connectionWithWrongTokenIsRefused() throws {
        let finished = try runHeatWhile("token") { names in
            for name in names.filter({ $0.hasSuffix(".s") || $0.hasSuffix(".0") }) {
                let answer = try answerToWrongToken(name)
                #expect(answer == nil, "\(name) did not refuse a connection with a wrong token: \(answer ?? "")")
            }
        }
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(finished.resultLines == [Self.oracle])
        #expect(!finished.events("connection_refused").isEmpty)
    }

    /// Strangers hold 50 half-open connections against the supervisor and each rank for the
    /// whole job, opening a new one for each that is closed: once as the job's own user (at
    /// most 32 wait at once, the oldest closed first, and none past its handshake deadline), once, where root can drop to another user, as `nobody` (refused
    /// before a byte is read, by SO_PEERCRED). The job finishes with the failure-free result,
    /// and refusals are counted in a few events, not one per connection.
    @Test func halfOpenConnectionsFromStrangersDoNotStallTheJob() throws {
        let nobody = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
        if !nobody { print("halfOpenConnectionsFromStrangersDoNotStallTheJob: not root or no setpriv: the other-user case is skipped") }
        for asNobody in nobody ? [false, true] : [false] {
            let stranger = Process()
            let finished = try runHeatWhile("strangers") { names in
                let probe = JobRunner.binDirectory + "/lifeline-liveness"
                stranger.executableURL = URL(fileURLWithPath: asNobody ? "/usr/bin/setpriv" : probe)
                stranger.arguments = (asNobody ? ["--reuid=65534", "--regid=65534", "--clear-groups", "--", probe] : [])
                    + ["stranger", "20"] + names
                stranger.standardOutput = FileHandle.nullDevice
                try stranger.run()
            }
            kill(stranger.processIdentifier, SIGKILL)  // Foundation starts it with SIGTERM blocked
            stranger.waitUntilExit()
            #expect(finished.status == 0, "as nobody: \(asNobody): \(finished.stderr)")
            #expect(finished.resultLines == [Self.oracle], "as nobody: \(asNobody)")
            let seconds = finished.events("job_finished").first?["t"] as? Double ?? 0
            print("halfOpenConnectionsFromStrangersDoNotStallTheJob: as nobody \(asNobody): the job took \(seconds) s")
            let refusals = finished.events("connection_refused")
            #expect(!refusals.isEmpty, "as nobody: \(asNobody): no refusal recorded")
            #expect(refusals.count <= 10, "as nobody: \(asNobody): \(refusals.count) refusal events")
            let reasons = refusals.compactMap { $0["reasons"] as? String }
            let expected = asNobody ? ["a process of another user"] : ["no handshake within", "more than 32 connections waiting"]
            #expect(expected.contains { reason in reasons.contains { $0.contains(reason) } },
                    "as nobody: \(asNobody): \(reasons)")
        }
    }

    /// Runs heat2d on 4 ranks on a thread of its own; once its five listeners are up, calls
    /// `during` with their names; returns the job's result when it ended.
    private func runHeatWhile(_ name: String, during: ([String]) throws -> Void) throws -> JobRunner.Result {
        let runDirectory = JobRunner.scratch(name) + "/run"
        nonisolated(unsafe) var result: JobRunner.Result?
        let job = Thread {
            result = try? JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
                runDirectory: runDirectory)
        }
        job.start()
        try during(try jobSocketNames(runDirectory: runDirectory))
        let deadline = Date().addingTimeInterval(240)
        while job.isExecuting || result == nil, Date() < deadline { usleep(100_000) }
        return try #require(result, "the job did not end")
    }

    /// The abstract names of this job's listeners (the supervisor's `….s`, each rank's `….R`),
    /// once all five are there. The name's prefix is read from rank 0's environment (its pid is
    /// in the run's `pids` file): other tests' jobs may be listening at the same time, and a
    /// stranger's connection to one of them that ends while the handshake waits unread reads as
    /// a reset, not a refusal.
    private func jobSocketNames(runDirectory: String) throws -> [String] {
        let deadline = Date().addingTimeInterval(60)
        var prefix: String?
        var names: [String] = []
        while names.count < 5, Date() < deadline {
            usleep(100_000)
            if prefix == nil { prefix = addressPrefix(runDirectory: runDirectory) }
            guard let prefix else { continue }
            let table = (try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? ""
            names = Array(Set(table.split(separator: "\n").compactMap { line -> String? in
                guard let name = line.split(separator: " ").last, name.hasPrefix("@\(prefix).") else { return nil }
                return String(name.dropFirst())
            })).sorted()
        }
        try #require(names.count >= 5, "the job's sockets did not appear: \(names) (prefix \(prefix ?? "not found"))")
        return names
    }

    /// The job's socket-name prefix (`lifeline.<hex>`), from rank 0's environment, once the
    /// run's `pids` file names it.
    private func addressPrefix(runDirectory: String) -> String? {
        guard let pids = try? String(contentsOfFile: runDirectory + "/pids", encoding: .utf8),
              let first = pids.split(separator: "\n").first,
              let pid = first.split(separator: " ").dropFirst().first,
              let environment = FileManager.default.contents(atPath: "/proc/\(pid)/environ")
        else { return nil }
        let key = LaunchEnvironment.Key.addressPrefix + "="
        return environment.split(separator: 0).lazy.map { String(decoding: $0, as: UTF8.self) }
            .first { $0.hasPrefix(key) }.map { String($0.dropFirst(key.count)) }
    }

    /// Connects to an abstract socket and sends a handshake with a wrong token. Nil when the
    /// other side refused it: it closed the connection without a welcome (an end of stream, or a
    /// reset when it closed before it had read all that was sent), or the listener was already
    /// gone; otherwise what came back instead. The wait is long (the listener answers within
    /// its 2 s handshake deadline once its process runs): on 2 cores shared with the other tests
    /// a rank can be off its core for seconds.
    private func answerToWrongToken(_ name: String) throws -> String? {
        guard let fd = try Socket.connectUnlessRefused(abstractName: name) else { return nil }
        defer { close(fd) }
        let role: Handshake.Role = name.hasSuffix(".s") ? .control : .peer
        let frame = Handshake(token: "not-the-token", role: role, rank: RankID(1), incarnation: 0, pid: getpid()).frame()
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 64)
        let received = recv(fd, &buffer, buffer.count, 0)
        if received == 0 || (received < 0 && errno == ECONNRESET) { return nil }
        return received > 0 ? "\(received) bytes" : "recv: \(String(cString: strerror(errno)))"
    }
}
