#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The Markdown report and its SVG chart, built as the suites go.
struct Report {
    var sections: [String] = []
    var bars: [(label: String, value: Double)] = []
    /// Every target of the issues, with what was measured: (what, measured, target, met).
    var targets: [[String]] = []

    /// Records a target's outcome for the summary table at the end.
    /// `met` nil: the measure is below the noise of the run, so it is not judged.
    mutating func target(_ what: String, _ measured: String, _ goal: String, met: Bool?) {
        targets.append([what, measured, goal, met.map { $0 ? "met" : "**not met**" } ?? "not judged (below the noise)"])
    }

    /// Time lost to one crash per mode (largest rank count).
    var lostBars: [(label: String, value: Double)] = []

    /// A table; prints it at once too, so a user sees progress.
    mutating func table(_ title: String, note: String = "", header: [String], rows: [[String]]) {
        var lines = ["## \(title)", ""]
        if !note.isEmpty { lines += [note, ""] }
        lines.append("| " + header.joined(separator: " | ") + " |")
        lines.append("|" + header.map { _ in "---" }.joined(separator: "|") + "|")
        for row in rows { lines.append("| " + row.joined(separator: " | ") + " |") }
        let text = lines.joined(separator: "\n")
        sections.append(text)
        print(text + "\n")
    }

    mutating func paragraph(_ text: String) {
        sections.append(text)
        print(text + "\n")
    }

    /// The 1, 5 and 15 minute load averages.
    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// The machine line: cores, memory, disk of the results folder.
    static func machine(resultsFolder: String) -> String {
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        let memory = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("MemTotal") }.map { String($0).replacingOccurrences(of: " ", with: "") } ?? "?"
        var stats = statvfs()
        statvfs(resultsFolder, &stats)
        let free = Double(stats.f_bavail) * Double(stats.f_frsize) / 1e9
        let total = Double(stats.f_blocks) * Double(stats.f_frsize) / 1e9
        let kernel = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        let model = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.split(separator: "\n")
            .first { $0.hasPrefix("model name") }?.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces) ?? "?"
        return "\(cores) cores (\(model)), \(memory), disk \(String(format: "%.0f GB free of %.0f GB", free, total)), Linux \(kernel)"
    }

    /// Horizontal bar charts, one panel per titled group of bars, readable without tools; a bar
    /// starts at zero, so a negative value (noise) is drawn to the left of the axis.
    static func chartSVG(_ panels: [(title: String, unit: String, bars: [(label: String, value: Double)])]) -> String {
        let width = 820.0, labelWidth = 300.0, plotWidth = 400.0
        var lines: [String] = []
        var y = 10.0
        for panel in panels {
            let values = panel.bars.map(\.value).filter { $0.isFinite }
            let low = min(0, values.min() ?? 0), high = max(1e-9, values.max() ?? 1)
            let scale = plotWidth / (high - low)
            let zero = labelWidth + (0 - low) * scale
            lines.append("<text x='10' y='\(y + 14)' font-size='14' font-weight='bold'>\(escape(panel.title))</text>")
            y += 26
            let top = y
            for bar in panel.bars {
                let value = bar.value.isFinite ? bar.value : 0
                let x = value < 0 ? zero + value * scale : zero
                let length = max(1, abs(value) * scale)
                lines.append("<text x='10' y='\(y + 13)'>\(escape(bar.label))</text>")
                lines.append("<rect x='\(fmt(x))' y='\(y)' width='\(fmt(length))' height='16' fill='\(value < 0 ? "#9ca3af" : "#2563eb")'/>")
                lines.append("<text x='\(fmt(max(zero, x + length) + 6))' y='\(y + 13)'>\(String(format: "%.2f", bar.value))\(panel.unit)</text>")
                y += 22
            }
            lines.append("<line x1='\(fmt(zero))' y1='\(top - 2)' x2='\(fmt(zero))' y2='\(y)' stroke='#111' stroke-width='1'/>")
            y += 16
        }
        return (["<svg xmlns='http://www.w3.org/2000/svg' width='\(Int(width))' height='\(Int(y))' font-family='sans-serif' font-size='12'>",
                 "<rect width='100%' height='100%' fill='white'/>"] + lines + ["</svg>"]).joined(separator: "\n")
    }

    private static func fmt(_ value: Double) -> String { String(format: "%.1f", value) }
    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
