import Foundation

/// The output commit problem: what a rank prints reaches the user once, only when no rollback
/// can undo it. Every incarnation's output stays in the run directory; the committer copies a
/// rank's bytes to standard output up to the offset its committed checkpoint recorded, and the
/// rest after the final barrier.
final class OutputCommitter {
    private let directory: String
    private var incarnations: [UInt32]
    private var released: [UInt64]

    /// A committer for `rankCount` ranks whose output files live in `directory`.
    init(directory: String, rankCount: Int) {
        self.directory = directory
        incarnations = Array(repeating: 0, count: rankCount)
        released = Array(repeating: 0, count: rankCount)
    }

    /// The file holding a rank's standard output in one incarnation.
    static func stdoutPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).out"
    }

    /// The file holding a rank's standard error in one incarnation.
    static func stderrPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).err"
    }

    /// A rank was (re)started: its new output begins where its committed output ended.
    func started(rank: Int, incarnation: UInt32) {
        incarnations[rank] = incarnation
        released[rank] = 0
    }

    /// Releases a rank's output up to `offset` of its current incarnation's file.
    func release(rank: Int, upTo offset: UInt64?) {
        let path = Self.stdoutPath(directory: directory, rank: rank, incarnation: incarnations[rank])
        guard let handle = FileHandle(forReadingAtPath: path) else { return }
        defer { try? handle.close() }
        handle.seek(toFileOffset: released[rank])
        let data: Data
        if let offset {
            guard offset > released[rank] else { return }
            data = handle.readData(ofLength: Int(offset - released[rank]))
        } else {
            data = handle.readDataToEndOfFile()
        }
        released[rank] += UInt64(data.count)
        FileHandle.standardOutput.write(data)
    }

    /// Releases everything every rank printed (after the final barrier).
    func releaseAll() {
        for rank in incarnations.indices { release(rank: rank, upTo: nil) }
    }
}
