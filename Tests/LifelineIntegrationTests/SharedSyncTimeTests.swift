#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization
@testable import Lifeline
import Testing

/// The page in which a host's ranks sum their log syncs as one union: two mappings of it see
/// each other's intervals, and a link planted at its path is refused, its target left untouched.
struct SharedSyncTimeTests {
    private func directory() throws -> String {
        let path = NSTemporaryDirectory() + "lifeline-sync-time-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func twoMappingsShareOneUnion() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try #require(SharedSyncTime.create(path: dir + "/sync-time"))
        let mapped = try #require(SharedSyncTime.open(path: dir + "/sync-time"))
        #expect(made.seconds == 0)
        mapped.measure { _ = usleep(20_000) }
        let seconds = try #require(made.seconds)
        #expect(seconds >= 0.02 && seconds < 5)
    }

    /// Four writers enter and leave at once, each through its own mapping, as ranks do: the
    /// union is at least the longest writer's own time inside and at most the wall time. (A
    /// count kept apart from the start of its span once let a leaving writer add the span
    /// before, up to the whole run, when two entries and a leave interleaved.)
    @Test func concurrentIntervalsAddUpToTheirUnion() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let made = try #require(SharedSyncTime.create(path: dir + "/sync-time"))
        let writers = try (0..<4).map { _ in try #require(SharedSyncTime.open(path: dir + "/sync-time")) }
        let inside = Mutex([Double](repeating: 0, count: writers.count))
        let started = DispatchTime.now().uptimeNanoseconds
        DispatchQueue.concurrentPerform(iterations: writers.count) { index in
            var own = 0.0
            for turn in 0..<300 {
                let entered = DispatchTime.now().uptimeNanoseconds
                writers[index].measure { if (turn + index) % 3 == 0 { _ = usleep(200) } }
                own += Double(DispatchTime.now().uptimeNanoseconds - entered) / 1e9
            }
            inside.withLock { $0[index] = own }
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let union = try #require(made.seconds)
        let longest = inside.withLock { $0.max()! }
        #expect(union <= wall + 0.001 && union >= longest * 0.5, "union \(union), wall \(wall), longest writer \(longest)")
    }

    @Test func aLinkAtThePathIsNeitherFollowedNorMapped() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: victim))
        try FileManager.default.createSymbolicLink(atPath: dir + "/sync-time", withDestinationPath: victim)
        #expect(SharedSyncTime.create(path: dir + "/sync-time") == nil)
        #expect(SharedSyncTime.open(path: dir + "/sync-time") == nil)
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious")
    }
}
