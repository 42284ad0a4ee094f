import Foundation
import Testing

extension RecoveryTests {
    /// `lifeline storage verify|repair` exit like fsck: 0 healthy or nothing to do, 1 corrected,
    /// 4 problems found (verify) or left (repair).
    @Test func storageVerifyAndRepairExitLikeFsck() throws {
        let result = try JobRunner.runHeat("storage", ranks: 2)
        let roots = "\(result.runDirectory)/storage-a,\(result.runDirectory)/storage-b"
        func storage(_ verb: String) throws -> JobRunner.Result {
            try JobRunner.lifeline(["storage", verb, roots], runDirectory: result.runDirectory)
        }
        #expect(try storage("verify").status == 0)
        // A chunk no line references, on A only (an aborted round's): no damage, not copied.
        let garbage = "chunks/ff/" + String(repeating: "f", count: 32) + ".chunk"
        let existing = try #require(FileManager.default.enumerator(atPath: result.runDirectory + "/storage-a/chunks")?
            .compactMap { $0 as? String }.first { $0.hasSuffix(".chunk") })
        try FileManager.default.createDirectory(atPath: result.runDirectory + "/storage-a/chunks/ff", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: result.runDirectory + "/storage-a/chunks/" + existing,
                                         toPath: result.runDirectory + "/storage-a/" + garbage)
        let withGarbage = try storage("verify")
        #expect(withGarbage.status == 0 && withGarbage.stdout.contains("1 unreferenced chunks left alone"), "\(withGarbage.stdout)")
        #expect(try storage("repair").status == 0)
        #expect(!FileManager.default.fileExists(atPath: result.runDirectory + "/storage-b/" + garbage), "repair copied garbage")
        let manifestB = result.runDirectory + "/storage-b/manifest"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: manifestB)))
        bytes[bytes.count / 2] ^= 0x01
        try Data(bytes).write(to: URL(fileURLWithPath: manifestB))
        let damaged = try storage("verify")
        #expect(damaged.status == 4)
        #expect(damaged.stdout.contains("manifest"), "\(damaged.stdout)")
        // The run directory names its roots (job.json); a folder that is not one is refused.
        let byRunDirectory = try JobRunner.lifeline(["storage", "verify", result.runDirectory], runDirectory: result.runDirectory)
        #expect(byRunDirectory.status == 4 && byRunDirectory.stdout == damaged.stdout, "\(byRunDirectory.stdout)")
        let notARun = try JobRunner.lifeline(["storage", "verify", result.runDirectory + "/output"], runDirectory: result.runDirectory)
        #expect(notARun.status == 64 && notARun.stderr.contains("is not a run directory"), "\(notARun.stderr)")
        #expect(try storage("repair").status == 1)
        #expect(try storage("repair").status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: manifestB))
                == Data(contentsOf: URL(fileURLWithPath: result.runDirectory + "/storage-a/manifest")))
        // Both copies of one file damaged: repair cannot fix it.
        for root in ["storage-a", "storage-b"] {
            let path = result.runDirectory + "/\(root)/manifest"
            var damagedBytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            damagedBytes[damagedBytes.count - 2] ^= 0x80
            try Data(damagedBytes).write(to: URL(fileURLWithPath: path))
        }
        let lost = try storage("repair")
        #expect(lost.status == 4, "\(lost.stdout)")
        #expect(lost.stdout.contains("1 lost"), "\(lost.stdout)")
    }
}

extension RecoveryTests {
    /// Message logs are checked too: a copy cut short is repaired from the other; a log damaged
    /// on both mirrors is reported lost and left alone.
    @Test func storageVerifyAndRepairCoverMessageLogs() throws {
        let result = try JobRunner.runHeat("storage-logs", ranks: 2, ["--logging", "pessimistic"])
        #expect(result.status == 0, "\(result.stderr)")
        let roots = "\(result.runDirectory)/storage-a,\(result.runDirectory)/storage-b"
        func storage(_ verb: String) throws -> JobRunner.Result {
            try JobRunner.lifeline(["storage", verb, roots], runDirectory: result.runDirectory)
        }
        #expect(try storage("verify").status == 0)
        func damage(_ root: String, _ change: (inout [UInt8]) -> Void) throws {
            let path = try #require(JobRunner.logSegments(result.runDirectory, root: root, rank: 1).last)
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            change(&bytes)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        try damage("storage-b") { $0.removeLast(3) }
        let torn = try storage("verify")
        #expect(torn.status == 4 && torn.stdout.contains("logs/rank-1/") && torn.stdout.contains("1 repairable"), "\(torn.stdout)")
        #expect(try storage("repair").status == 1)
        #expect(try storage("verify").status == 0)
        for root in ["storage-a", "storage-b"] {
            try damage(root) { $0[8] ^= 0x01 }
        }
        let lost = try storage("repair")
        #expect(lost.status == 4 && lost.stdout.contains("1 lost") && lost.stdout.contains("are lost"), "\(lost.stdout)")
    }
}
