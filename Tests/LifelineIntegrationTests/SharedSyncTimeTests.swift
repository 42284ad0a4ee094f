#if canImport(Glibc)
import Glibc
#endif
import Foundation
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
        mapped.measure { usleep(20_000) }
        let seconds = try #require(made.seconds)
        #expect(seconds >= 0.02 && seconds < 5)
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
