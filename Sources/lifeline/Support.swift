import Foundation
import Lifeline

/// Prints a job's summary line last on standard output.
func finish(_ outcome: JobOutcome) {
    FileHandle.standardOutput.write(Data((outcome.summaryLine + "\n").utf8))
    if let signal = outcome.stoppedBySignal { exit(128 + signal) }
}


/// Prints one line on standard error, prefixed with `lifeline:`.
func note(_ text: String) {
    FileHandle.standardError.write(Data("lifeline: \(text)\n".utf8))
}

/// A path made absolute against the current folder.
func absolute(_ path: String) -> String {
    URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        .standardizedFileURL.path
}

/// A new run directory name under ./lifeline-runs/.
func defaultRunDirectory() -> String {
    let formatter = DateFormatter()
    formatter.dateFormat = "yyyyMMdd-HHmmss"
    formatter.locale = Locale(identifier: "en_US_POSIX")
    let suffix = String(UInt16.random(in: 0...UInt16.max), radix: 16)
    return "lifeline-runs/\(formatter.string(from: Date()))-\(suffix)"
}

