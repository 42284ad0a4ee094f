#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Copies what ranks write to their standard error to the supervisor's, live, a line at a
/// time as `[rank R] line`. Diagnostics, not committed output: the lines of an incarnation that
/// a rollback undid show too (its `output/rank-R.I.err` keeps them as well). `--quiet-ranks`
/// turns it off.
final class RankErrorForwarder {
    /// A line longer than this is forwarded in pieces (a rank that never ends its line cannot
    /// fill the supervisor's memory).
    static let lineBytesMax = 4096
    /// The least time between two looks at the files: the supervisor's loop turns far more
    /// often when control traffic is heavy, and a line may wait this long.
    static let periodSeconds = 0.1
    /// When the files were last read (the caller's clock).
    private var lastForward = -Double.infinity

    private let directory: String
    /// Per rank: its current incarnation's error file (-1: none), how far it was read, and the
    /// start of a line not ended yet.
    private var files: [Int32]
    private var offsets: [UInt64]
    private var partial: [[UInt8]]

    /// A forwarder for `rankCount` ranks whose error files live in `directory`.
    init(directory: String, rankCount: Int) {
        self.directory = directory
        files = Array(repeating: -1, count: rankCount)
        offsets = Array(repeating: 0, count: rankCount)
        partial = Array(repeating: [], count: rankCount)
    }

    deinit {
        for fd in files where fd >= 0 { close(fd) }
    }

    /// A rank was (re)started: the rest of its previous incarnation's file is forwarded, then
    /// its new file is followed.
    func started(rank: Int, incarnation: UInt32) {
        finish(rank)
        files[rank] = open(OutputCommitter.stderrPath(directory: directory, rank: rank, incarnation: incarnation),
                           O_RDONLY | O_CLOEXEC)
        offsets[rank] = 0
    }

    /// Forwards every line the ranks ended since the last look, at most every `periodSeconds`.
    func forward(now: Double) {
        guard now - lastForward >= Self.periodSeconds else { return }
        lastForward = now
        for rank in files.indices { read(rank) }
    }

    /// Forwards everything, an unended last line too (the job is over).
    func finishAll() {
        for rank in files.indices { finish(rank) }
    }

    private func finish(_ rank: Int) {
        read(rank)
        if !partial[rank].isEmpty { emit(rank, partial[rank]) }
        partial[rank] = []
        if files[rank] >= 0 { close(files[rank]) }
        files[rank] = -1
    }

    private func read(_ rank: Int) {
        let fd = files[rank]
        guard fd >= 0 else { return }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offsets[rank])) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { return }
            offsets[rank] += UInt64(count)
            for byte in chunk[..<count] {
                if byte == UInt8(ascii: "\n") {
                    emit(rank, partial[rank])
                    partial[rank] = []
                } else {
                    partial[rank].append(byte)
                    if partial[rank].count >= Self.lineBytesMax {
                        emit(rank, partial[rank])
                        partial[rank] = []
                    }
                }
            }
        }
    }

    private func emit(_ rank: Int, _ line: [UInt8]) {
        FileHandle.standardError.write(Data("[rank \(rank)] ".utf8) + Data(line) + Data("\n".utf8))
    }
}
