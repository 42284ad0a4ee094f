#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The Markdown report and its SVG chart, built as the suites go.
struct Report {
    var sections: [String] = []
    var bars: [(label: String, value: Double)] = []

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
        return "\(cores) cores, \(memory), disk \(String(format: "%.0f GB free of %.0f GB", free, total)), Linux \(kernel)"
    }

    /// A horizontal bar chart of `bars` (failure-free overhead per mode), readable without tools.
    func chartSVG(title: String) -> String {
        let height = 40 + 22 * bars.count
        let maximum = max(1, bars.map(\.value).max() ?? 1)
        var lines = ["<svg xmlns='http://www.w3.org/2000/svg' width='760' height='\(height)' font-family='sans-serif' font-size='12'>",
                     "<text x='10' y='20' font-size='14'>\(title)</text>"]
        for (index, bar) in bars.enumerated() {
            let y = 34 + 22 * index
            let width = max(1, 420 * bar.value / maximum)
            lines.append("<text x='10' y='\(y + 13)'>\(bar.label)</text>")
            lines.append("<rect x='300' y='\(y)' width='\(String(format: "%.1f", width))' height='16' fill='#2563eb'/>")
            lines.append("<text x='\(String(format: "%.1f", 306 + width))' y='\(y + 13)'>\(String(format: "%.1f%%", bar.value))</text>")
        }
        lines.append("</svg>")
        return lines.joined(separator: "\n")
    }
}
