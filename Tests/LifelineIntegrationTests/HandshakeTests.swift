import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// Connections without the job's token are refused, by the supervisor and by the ranks,
    /// and the job goes on to the failure-free result.
    @Test func connectionWithWrongTokenIsRefused() throws {
        let runDirectory = JobRunner.scratch("token") + "/run"
        nonisolated(unsafe) var result: JobRunner.Result?
        let job = Thread {
            result = try? JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
                runDirectory: runDirectory)
        }
        job.start()
        let deadline = Date().addingTimeInterval(60)
        var names: [String] = []
        while names.count < 5, Date() < deadline {
            usleep(100_000)
            let table = (try? String(contentsOfFile: "/proc/net/unix", encoding: .utf8)) ?? ""
            names = table.split(separator: "\n").compactMap { line in
                guard let name = line.split(separator: " ").last, name.hasPrefix("@lifeline.") else { return nil }
                return String(name.dropFirst())
            }
            names = Array(Set(names)).sorted()
        }
        try #require(names.count >= 5, "the job's sockets did not appear: \(names)")
        for name in names.filter({ $0.hasSuffix(".s") || $0.hasSuffix(".0") }) {
            #expect(try refusesWrongToken(name), "\(name) accepted a connection with a wrong token")
        }
        while job.isExecuting || result == nil, Date() < deadline.addingTimeInterval(120) { usleep(100_000) }
        let finished = try #require(result)
        #expect(finished.status == 0, "\(finished.stderr)")
        #expect(finished.resultLines == [Self.oracle])
        #expect(!finished.events("connection_refused").isEmpty)
    }

    /// Connects to an abstract socket, sends a handshake with a wrong token, and reports whether
    /// the other side closed the connection without a welcome.
    private func refusesWrongToken(_ name: String) throws -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else { return true }
        let role: Handshake.Role = name.hasSuffix(".s") ? .control : .peer
        let frame = Handshake(token: "not-the-token", role: role, rank: RankID(1), incarnation: 0, pid: getpid()).frame()
        _ = frame.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 64)
        let received = recv(fd, &buffer, buffer.count, 0)
        return received == 0
    }
}
