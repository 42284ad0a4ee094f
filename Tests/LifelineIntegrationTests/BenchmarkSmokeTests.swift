import Foundation
import Testing

extension RecoveryTests {
    /// `lifeline-bench --smoke` runs every suite at its smallest size and writes a well-formed
    /// report and chart. Its timings are never checked here.
    @Test func benchmarkSmokeRunWritesItsReport() throws {
        let folder = JobRunner.scratch("bench") + "/report"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: JobRunner.binDirectory + "/lifeline-bench")
        process.arguments = ["--smoke", "--output", folder]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let report = try String(contentsOfFile: folder + "/report.md", encoding: .utf8)
        for heading in ["# Lifeline benchmark report", "## Transport", "## Collectives", "## Snapshot", "## Snapshot, incremental", "## Strategies, failure-free",
                        "## Strategies, one crash", "## Checkpoint schemes with idle ranks", "## Checkpoint interval", "## A failed mirror",
                        "## Levels: a round committed in memory, drained to disk behind it", "## Levels: failure-free overhead",
                        "## Scale-out (simulated)", "## Targets"] {
            #expect(report.contains(heading + "\n"), "missing \(heading)")
        }
        for line in report.split(separator: "\n") where line.hasPrefix("|") {
            #expect(line.hasSuffix("|"), "a broken table row: \(line)")
        }
        #expect(!report.contains("| **no** |"), "a mode gave a different result after a crash, or a failed mirror changed the result")
        let chart = try String(contentsOfFile: folder + "/chart.svg", encoding: .utf8)
        #expect(chart.hasPrefix("<svg") && chart.hasSuffix("</svg>"))
    }
}
