#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The output commit problem: what a rank prints reaches the user once, only when no rollback
/// can undo it. Every incarnation's output stays in the run directory; the committer copies a
/// rank's bytes to standard output up to the offset its committed checkpoint recorded, and the
/// rest after the final barrier.
///
/// Per rank the output is one stream, made of its incarnations' files: an incarnation restored
/// from a checkpoint continues the stream where that checkpoint's output ended (its *base*), and
/// cuts off what the incarnations after the checkpoint printed. What was released is a position
/// in that stream, so a restart from a line older than what was released (a fallback to an
/// older line, a lost memory level) does not print the re-executed output again, and a restart
/// from a line newer than what was released (a line in memory, not yet on disk) leaves the
/// output up to it in the earlier incarnation's file, released when a line covers it.
final class OutputCommitter {
    /// One incarnation's part of a rank's stream: positions `base..<end` are its file's bytes
    /// from 0 (`end` nil: the current incarnation, open-ended).
    private struct Segment {
        var incarnation: UInt32
        var base: UInt64
        var end: UInt64?
        /// Its output file, opened when the incarnation started: what it printed stays
        /// readable even if the run directory's `output/` is deleted meanwhile. -1: not open.
        var fd: Int32
    }

    private let directory: String
    /// Per rank, the segments of its stream in order, contiguous from 0, the current last.
    private var lineage: [[Segment]]
    /// Per rank, the base of every incarnation started in this run.
    private var bases: [[UInt32: UInt64]]
    /// Per rank, the stream position up to which its output was released.
    private var released: [UInt64]

    /// A committer for `rankCount` ranks whose output files live in `directory`.
    init(directory: String, rankCount: Int) {
        self.directory = directory
        lineage = Array(repeating: [], count: rankCount)
        bases = Array(repeating: [:], count: rankCount)
        released = Array(repeating: 0, count: rankCount)
    }

    deinit {
        for segment in lineage.joined() where segment.fd >= 0 { close(segment.fd) }
    }

    /// The file holding a rank's standard output in one incarnation.
    static func stdoutPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).out"
    }

    /// The file holding a rank's standard error in one incarnation.
    static func stderrPath(directory: String, rank: Int, incarnation: UInt32) -> String {
        "\(directory)/rank-\(rank).\(incarnation).err"
    }

    /// A rank was (re)started (its output file created), restored from the checkpoint that
    /// incarnation `restored.incarnation` wrote when its output was `restored.offset` bytes long
    /// (nil: from the start of the job): its new output continues the stream from there. A
    /// checkpoint of an incarnation this run did not start (an earlier supervisor's, whose run
    /// released the output up to it) starts the stream anew.
    func started(rank: Int, incarnation: UInt32, restored: (incarnation: UInt32, offset: UInt64)? = nil) {
        let base = restored.flatMap { checkpoint in bases[rank][checkpoint.incarnation].map { $0 + checkpoint.offset } } ?? 0
        for segment in lineage[rank] where segment.base >= base && segment.fd >= 0 { close(segment.fd) }
        lineage[rank].removeAll { $0.base >= base }
        if let last = lineage[rank].indices.last {
            lineage[rank][last].end = min(lineage[rank][last].end ?? .max, base)
        }
        let fd = open(Self.stdoutPath(directory: directory, rank: rank, incarnation: incarnation), O_RDONLY | O_CLOEXEC)
        lineage[rank].append(Segment(incarnation: incarnation, base: base, end: nil, fd: fd))
        bases[rank][incarnation] = base
    }

    /// Releases a rank's output up to `offset` of its current incarnation's file (nil: all of it).
    func release(rank: Int, upTo offset: UInt64?) {
        guard let current = lineage[rank].last else { return }
        release(rank: rank, toPosition: offset.map { current.base + $0 } ?? .max)
    }

    /// Releases a rank's output up to `offset` of incarnation `incarnation`'s file: a
    /// checkpoint that incarnation wrote is committed now.
    func release(rank: Int, incarnation: UInt32, upTo offset: UInt64) {
        guard let base = bases[rank][incarnation] else { return }
        release(rank: rank, toPosition: base + offset)
    }

    /// Releases everything every rank printed (after the final barrier).
    func releaseAll() {
        for rank in lineage.indices { release(rank: rank, upTo: nil) }
    }

    /// Copies the rank's stream from what was released up to `position` (or the end of what
    /// its files hold) to standard output.
    private func release(rank: Int, toPosition position: UInt64) {
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        for segment in lineage[rank] where segment.fd >= 0 {
            let end = min(position, segment.end ?? .max)
            while released[rank] >= segment.base, released[rank] < end {
                let offset = released[rank] - segment.base
                let wanted = Int(min(UInt64(chunk.count), end - released[rank]))
                let count = chunk.withUnsafeMutableBytes { pread(segment.fd, $0.baseAddress, wanted, off_t(offset)) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else {
                    // The current incarnation has printed no more yet; an earlier one's file
                    // shorter than its part (it cannot be: its checkpoint flushed it) is skipped.
                    guard let end = segment.end, end < .max else { return }
                    released[rank] = end
                    break
                }
                FileHandle.standardOutput.write(Data(chunk[..<count]))
                released[rank] += UInt64(count)
            }
        }
    }
}
