import Foundation
@testable import LifelineStorage

/// A uniquely named folder under the temporary directory, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init() {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("lifeline-storage-test-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() {
        for _ in 0..<3 where FileManager.default.fileExists(atPath: path) {
            do {
                try FileManager.default.removeItem(atPath: path)
            } catch {
                FileHandle.standardError.write(Data("cleanup of \(path) failed: \(error)\n".utf8))
            }
        }
    }

    /// A mirrored store with roots `path/a` and `path/b`.
    func store() throws -> MirroredStore {
        try MirroredStore(rootA: path + "/a", rootB: path + "/b")
    }
}

/// Raw file surgery, as a failing disk would do it.
enum Disk {
    static func bytes(_ path: String) -> [UInt8] {
        [UInt8](FileManager.default.contents(atPath: path)!)
    }

    static func put(_ bytes: [UInt8], at path: String) {
        try! Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func flipBit(_ path: String, byte offset: Int) {
        var contents = bytes(path)
        contents[offset] ^= 0x10
        put(contents, at: path)
    }

    static func truncate(_ path: String, to length: Int) {
        put(Array(bytes(path).prefix(length)), at: path)
    }

    static func delete(_ path: String) {
        try! FileManager.default.removeItem(atPath: path)
    }
}

/// SplitMix64: a seeded generator, so failures reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs `body`, returning the `StorageError` it throws, or nil if it does not throw.
func storageError<T>(_ body: () throws(StorageError) -> T) -> StorageError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
