#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What the user sees while the job runs: a status line redrawn in place on a terminal, a
/// plain line every few seconds otherwise (CI logs); and the checkpoint interval, fixed or
/// following the Young/Daly optimum for the measured checkpoint cost.
extension Supervisor {
    /// Shows step reached (min..max over ranks), rate, epochs committed, the last checkpoint's
    /// time and size, failures, recoveries under way, and the time to the next checkpoint.
    func showProgress() {
        guard !configuration.quiet else { return }
        let terminal = isatty(STDERR_FILENO) != 0
        let period = terminal ? 0.5 : 5
        guard now - lastProgressAt >= period else { return }
        let steps = machine.ranks.map(\.step)
        let stepMin = steps.min() ?? 0
        let rate = now > lastProgressAt && lastProgressAt > 0 ? Double(stepMin - lastProgressStep) / (now - lastProgressAt) : 0
        lastProgressAt = now
        lastProgressStep = stepMin
        var parts = [
            String(format: "%.1fs", now), "step \(stepMin)..\(steps.max() ?? 0)", String(format: "%.0f steps/s", max(0, rate)),
            "epochs \(manifest.commits)",
        ]
        if manifest.commits > 0 {
            parts.append(String(format: "last checkpoint %.2fs %@", lastRoundSeconds, Self.bytesText(lastCommitBytes)))
        }
        parts.append("failures \(failures)")
        if let failedMirror {
            parts.append(machine.mirrors.holdsManifestOnly ? "folder \(failedMirror.mirror.label) of the manifest failed"
                : "mirror \(failedMirror.mirror.label) failed: commits on \(failedMirror.mirror.other.label) alone")
        }
        if machine.recoveryStartedAt != nil { parts.append("recovering") }
        if let due = coordinator.nextDeadline { parts.append(String(format: "next in %.1fs", max(0, due - now))) }
        let line = "lifeline: " + parts.joined(separator: " | ")
        FileHandle.standardError.write(Data((terminal ? "\r\u{1B}[K" + line : line + "\n").utf8))
    }

    /// `--interval auto`: after each commit, the interval becomes sqrt(2·C·MTBF) for the
    /// measured cost C of a checkpoint (request to commit).
    func adaptInterval() {
        guard let mtbf = configuration.mtbfSeconds, configuration.intervalAuto, lastRoundSeconds > 0 else { return }
        let optimum = (2 * lastRoundSeconds * mtbf).squareRoot()
        coordinator.intervalSeconds = max(0.05, optimum)
        events.record("interval", [
            "seconds": .double(coordinator.intervalSeconds), "cost_s": .double(lastRoundSeconds), "mtbf_s": .double(mtbf),
        ])
    }

    static func bytesText(_ bytes: UInt64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
    }
}
