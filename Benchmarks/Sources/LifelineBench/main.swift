// lifeline-bench: compares Lifeline's checkpointing and logging strategies, each beside its
// physical floor measured in the same run. See Benchmarks/README.md.
//
// usage: swift run -c release lifeline-bench [--smoke | --quick] [--output DIR] [--suites transport,hosts,snapshot,strategies,interval,mirror,levels,scale]
//        [--ranks 4,16] [--modes "coordinated,coordinated + sender-based"] [--heat "heat2d --size 4096 --steps 2000"]
import CLifelineSupport
import Foundation

// The allocator setting of a rank process (RankRuntime.join), so the snapshot suite measures
// the runtime's path as a rank runs it: large buffers reuse the heap instead of fresh mmaps.
lifeline_tune_allocator()

var scale = Scale.full
var output: String?
var suites = ["transport", "hosts", "snapshot", "strategies", "interval", "mirror", "levels", "scale"]
var rankCounts: [Int]?
var modeNames: [String]?
var heatProgram: [String]?
var arguments = Array(CommandLine.arguments.dropFirst())
while let argument = arguments.first {
    arguments.removeFirst()
    switch argument {
    case "--smoke": scale = .smoke
    case "--quick": scale = .quick
    case "--output" where !arguments.isEmpty: output = arguments.removeFirst()
    case "--suites" where !arguments.isEmpty: suites = arguments.removeFirst().split(separator: ",").map(String.init)
    case "--ranks" where !arguments.isEmpty:
        let counts = arguments.removeFirst().split(separator: ",").compactMap { Int($0) }.filter { $0 >= 2 }
        guard !counts.isEmpty else {
            FileHandle.standardError.write(Data("lifeline-bench: --ranks takes rank counts of 2 or more, such as 4,16\n".utf8))
            exit(2)
        }
        rankCounts = counts
    case "--heat" where !arguments.isEmpty:
        heatProgram = arguments.removeFirst().split(separator: " ").map(String.init)
    case "--modes" where !arguments.isEmpty:
        modeNames = arguments.removeFirst().split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        if let unknown = modeNames?.first(where: { name in !Suites.modes.contains { $0.name == name } }) {
            FileHandle.standardError.write(Data("lifeline-bench: --modes: no mode \"\(unknown)\"; the modes are \(Suites.modes.map(\.name).joined(separator: ", "))\n".utf8))
            exit(2)
        }
    default:
        FileHandle.standardError.write(Data("lifeline-bench: unknown argument \(argument)\nusage: lifeline-bench [--smoke|--quick] [--output DIR] [--suites LIST] [--ranks LIST] [--modes LIST] [--heat ARGS]\n".utf8))
        exit(2)
    }
}
if let rankCounts { scale.rankCounts = rankCounts }
if let heatProgram {
    guard heatProgram.first == "heat2d" else {
        FileHandle.standardError.write(Data("lifeline-bench: --heat takes a heat2d command line, such as \"heat2d --size 4096 --steps 2000\"\n".utf8))
        exit(2)
    }
    scale.heat = heatProgram
    // The one-crash runs kill rank 1 three quarters of the way through the given steps (the
    // scale's step may lie past their end: then nothing would be killed).
    if let index = heatProgram.firstIndex(of: "--steps"), index + 1 < heatProgram.count, let steps = Int(heatProgram[index + 1]) {
        scale.crashStep.heat = max(1, steps * 3 / 4)
    }
}

let formatter = DateFormatter()
formatter.dateFormat = "yyyy-MM-dd-HHmmss"
formatter.locale = Locale(identifier: "en_US_POSIX")
let stamp = formatter.string(from: Date())
let folder = output ?? FileManager.default.currentDirectoryPath + "/Benchmarks/results/\(stamp)-\(scale.name)"
let scratch = NSTemporaryDirectory() + "lifeline-bench-\(stamp)-\(getpid())"
do {
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
} catch {
    FileHandle.standardError.write(Data("lifeline-bench: cannot create \(folder) or \(scratch): \(error)\n".utf8))
    exit(1)
}
defer { try? FileManager.default.removeItem(atPath: scratch) }

let machine = Report.machine(resultsFolder: scratch)
var bench = Suites(scale: scale, launcher: JobLauncher(scratch: scratch))
if let modeNames { bench.modes = Suites.modes.filter { modeNames.contains($0.name) } }
bench.report.paragraph("""
# Lifeline benchmark report

Date: \(ISO8601DateFormatter().string(from: Date())). Machine: \(machine). Scale: `\(scale.name)` \
(repeats \(scale.repeats), ranks \(scale.rankCounts.map(String.init).joined(separator: ", "))). \
Options: `lifeline-bench \(CommandLine.arguments.dropFirst().joined(separator: " "))`, suites \(suites.joined(separator: ", ")). \
Build: release. Load average at the start: \(Report.loadAverage()). Every Lifeline number stands beside a floor \
measured in the same run; read the ratios, not the absolute times.
""")
let started = monotonic()
do {
    for suite in suites {
        FileHandle.standardError.write(Data("lifeline-bench: \(suite)…\n".utf8))
        switch suite {
        case "transport":
            try bench.transport()
            try bench.collectives()
        case "hosts": try bench.transportBetweenHosts()
        case "snapshot": try bench.snapshot()
        case "filters": try bench.numericFilterTable()
        case "strategies": try bench.strategies()
        case "interval": try bench.interval()
        case "mirror": try bench.mirror()
        case "levels": try bench.levels()
        case "scale": try bench.scaleOut()
        default: throw BenchError("unknown suite \(suite)")
        }
    }
} catch {
    FileHandle.standardError.write(Data("lifeline-bench: \(error)\n".utf8))
    exit(1)
}
if !bench.report.targets.isEmpty {
    let met = bench.report.targets.filter { $0[3] == "met" }.count
    let rows = bench.report.targets
    bench.report.table("Targets", note: "Every target of the issues in this run: \(met) of \(rows.count) met. A ratio of times from one noisy run; the tables above give the detail.",
                       header: ["what", "measured", "target", ""], rows: rows)
}
bench.report.paragraph(String(format: "Total benchmark time: %.0f s. Load average at the end: %@ (above the core count means other work shared the machine and the absolute times are inflated).", monotonic() - started, Report.loadAverage()))
let largest = scale.rankCounts.last ?? 2
let chart = Report.chartSVG([
    ("Failure-free overhead over the no-checkpoint floor, \(largest) ranks (%)", "%", bench.report.bars),
    ("One crash: from the kill to the job back at the step it had reached, \(largest) ranks (s)", " s", bench.report.lostBars),
])
do {
    try Data((bench.report.sections.joined(separator: "\n\n") + "\n\n![overhead](chart.svg)\n").utf8)
        .write(to: URL(fileURLWithPath: folder + "/report.md"))
    try Data(chart.utf8).write(to: URL(fileURLWithPath: folder + "/chart.svg"))
} catch {
    FileHandle.standardError.write(Data("lifeline-bench: cannot write the report: \(error)\n".utf8))
    exit(1)
}
print("report: \(folder)/report.md")
