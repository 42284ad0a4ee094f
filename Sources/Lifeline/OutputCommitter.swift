#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The output commit problem: what a rank prints reaches the user once, only when no rollback
/// can undo it. Every incarnation's output stays in the run directory; the committer copies a
/// rank's bytes to standard output up to the offset its committed checkpoint recorded, and the
/// rest after the final barrier.
final class OutputCommitter {
    private let directory: String
    private var incarnations: [UInt32]
    private var released: [UInt64]
    /// Per rank, its current incarnation's output file, opened when the rank starts: what it
    /// printed stays readable even if the run directory's `output/` is deleted meanwhile. -1:
    /// not open.
    private var files: [Int32]

    /// A committer for `rankCount` ranks whose output files live in `directory`.
    init(directory: String, rankCount: Int) {
        self.directory = directory
        incarnations = Array(repeating: 0, count: rankCount)
        released = Array(repeating: 0, count: rankCount)
        files = Array(repeating: -1, count: rankCount)
    }

    deinit {
        for fd in files where fd >= 0 { close(fd) }
    }

    /// The file holding a rank's standard output in one incarnation.
    static func stdoutPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).out"
    }

    /// The file holding a rank's standard error in one incarnation.
    static func stderrPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).err"
    }

    /// A rank was (re)started (its output file created): its new output begins where its
    /// committed output ended.
    func started(rank: Int, incarnation: UInt32) {
        incarnations[rank] = incarnation
        released[rank] = 0
        if files[rank] >= 0 { close(files[rank]) }
        files[rank] = open(Self.stdoutPath(directory: directory, rank: rank, incarnation: incarnation), O_RDONLY | O_CLOEXEC)
    }

    /// Releases a rank's output up to `offset` of its current incarnation's file (nil: all of it).
    func release(rank: Int, upTo offset: UInt64?) {
        let fd = files[rank]
        guard fd >= 0 else { return }
        let end = offset ?? UInt64.max
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while released[rank] < end {
            let wanted = Int(min(UInt64(chunk.count), end - released[rank]))
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(released[rank])) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            FileHandle.standardOutput.write(Data(chunk[..<count]))
            released[rank] += UInt64(count)
        }
    }

    /// Releases everything every rank printed (after the final barrier).
    func releaseAll() {
        for rank in incarnations.indices { release(rank: rank, upTo: nil) }
    }
}
