#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineCore
import LifelineStorage

/// `--trace-deliveries`: each rank writes what it sends, delivers and captures to
/// `RUN/trace/rank-R.I.tsv` (R the rank, I the incarnation), one tab-separated line each:
///
/// | field | meaning |
/// |---|---|
/// | `t` | seconds since the job started (the supervisor's clock; one host's monotonic clock) |
/// | `kind` | `S` a send (also a retained message sent again after a restart), `D` a delivery, `R` a delivery replayed from the log, `C` a capture |
/// | `peer` | the destination of a send, the source of a delivery; `-` for a capture |
/// | `seq` | the message's sequence number on its channel; the round (epoch) of a capture |
/// | `tag` | the message's tag; the step of a capture |
///
/// Lines are buffered and written at every safe point and at the final barrier, so a rank
/// killed between two safe points loses the lines of that stretch.
final class DeliveryTrace {
    private let fd: Int32
    private let origin: Double
    private var buffer: [UInt8] = []

    /// Opens the trace file of this rank and incarnation, or returns nil when tracing is off.
    init?(launch: LaunchEnvironment) {
        guard let directory = launch.traceDirectory else { return nil }
        mkdir(directory, 0o755)
        let path = "\(directory)/rank-\(launch.rank.rawValue).\(launch.incarnation).tsv"
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        origin = launch.clockOrigin
        buffer.reserveCapacity(1 << 16)
    }

    deinit {
        flush()
        close(fd)
    }

    private func line(_ kind: String, _ peer: String, _ sequence: UInt64, _ tag: Int64) {
        let time = String(format: "%.6f", monotonicSeconds() - origin)
        buffer.append(contentsOf: "\(time)\t\(kind)\t\(peer)\t\(sequence)\t\(tag)\n".utf8)
        if buffer.count > 1 << 16 { flush() }
    }

    /// A message sent.
    func sent(_ header: DataHeader, to destination: RankID) {
        line("S", String(destination.rawValue), header.sequence.rawValue, header.tag)
    }

    /// A message delivered to the program (replayed from the log or live).
    func delivered(_ header: DataHeader, replayed: Bool) {
        line(replayed ? "R" : "D", String(header.source.rawValue), header.sequence.rawValue, header.tag)
    }

    /// A capture for a round.
    func captured(epoch: Epoch, step: Int) {
        line("C", "-", epoch.rawValue, Int64(step))
    }

    /// Writes the buffered lines.
    func flush() {
        var offset = 0
        while offset < buffer.count {
            let written = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, buffer.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { break }
            offset += written
        }
        buffer.removeAll(keepingCapacity: true)
    }
}
