import Foundation

/// `lifeline timeline`: a self-contained HTML page with a space-time diagram of a run, as in the
/// textbook figures — one horizontal line per rank, checkpoints as marks, messages as arrows
/// (sampled when there are many, with the count shown), failures as crosses, the recovery line
/// restored after each failure drawn across the ranks, replayed and rolled-back intervals
/// shaded, and a legend. Inline SVG, no network; a zoom control stretches the time axis.
public struct Timeline {
    /// Arrows drawn at most; the rest are counted in the legend.
    public static let arrowsMax = 600

    private struct Mark {
        var rank: Int
        var time: Double
    }

    private struct Arrow {
        var from: Mark
        var to: Mark
        var replayed: Bool
    }

    private struct Shade {
        var rank: Int?
        var start: Double
        var end: Double
        var kind: String
    }

    private var rankCount = 0
    private var duration = 0.0
    private var title = ""
    private var checkpoints: [(Mark, epoch: Int, committed: Bool)] = []
    /// With levels: where each committed line was held (`RunSummary`'s words), and the lines
    /// held in memory alone to the end (never drained), drawn lighter.
    private var lineLevels: [Int: String] = [:]
    private var inMemoryAlone: Set<Int> = []
    private var levels = false
    private var failures: [(Mark, cause: String)] = []
    private var lines: [(time: Double, points: [Mark], epoch: Int, level: String?)] = []
    private var shades: [Shade] = []
    private var arrows: [Arrow] = []
    private var messageCount = 0

    /// Reads the run in `runDirectory` (its events, and its traces when it ran with
    /// `--trace-deliveries`).
    public init(runDirectory: String) throws {
        let summary = try RunSummary(runDirectory: runDirectory)
        let path = URL(fileURLWithPath: runDirectory).standardizedFileURL.path
        rankCount = summary.configuration.rankCount
        title = ([URL(fileURLWithPath: summary.configuration.program).lastPathComponent] + summary.configuration.arguments)
            .joined(separator: " ")
        let text = (try? String(contentsOfFile: path + "/events.jsonl", encoding: .utf8)) ?? ""
        let events = text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        duration = max(0.001, events.compactMap { $0["t"] as? Double }.max() ?? 0)
        levels = summary.configuration.memoryLevel == true
        if levels {
            for commit in summary.commitsDetail {
                lineLevels[commit.epoch] = RunSummary.levelText(commit)
                if commit.level == "memory", commit.drained == nil { inMemoryAlone.insert(commit.epoch) }
            }
        }
        readEvents(events)
        readTraces(path + "/trace")
    }

    private mutating func readEvents(_ events: [[String: Any]]) {
        var committed = Set<Int>()
        for event in events where event["event"] as? String == "commit" {
            if let epoch = event["epoch"] as? Int { committed.insert(epoch) }
        }
        var acks: [Int: [Mark]] = [:]
        var lastCommitted = 0
        // The recoveries under way: several when ranks replay side by side (each ends with a
        // `recovery_done` naming its rank; one without a rank ends them all).
        var openFailures: [(time: Double, mode: String, rank: Int)] = []
        for event in events {
            let time = event["t"] as? Double ?? 0
            let rank = event["rank"] as? Int ?? -1
            switch event["event"] as? String {
            case "ack":
                let epoch = event["epoch"] as? Int ?? 0
                acks[epoch, default: []].append(Mark(rank: rank, time: time))
                checkpoints.append((Mark(rank: rank, time: time), epoch, committed.contains(epoch)))
            case "commit":
                lastCommitted = event["epoch"] as? Int ?? lastCommitted
            case "failure":
                failures.append((Mark(rank: rank, time: time), event["cause"] as? String ?? "failure"))
            case "recovery_start":
                let mode = event["mode"] as? String ?? "global-rollback"
                openFailures.removeAll { $0.rank == rank || $0.mode != "replay" || mode != "replay" }
                openFailures.append((time, mode, rank))
                let restored = event["epoch"] as? Int ?? lastCommitted
                let points = restored == 0
                    ? (0..<rankCount).map { Mark(rank: $0, time: 0) }
                    : (acks[restored] ?? []).sorted { $0.rank < $1.rank }
                lines.append((time, points, restored, levels ? event["level"] as? String : nil))
            case "recovery_done":
                let ended = event["rank"] as? Int
                for failure in openFailures where ended == nil || failure.rank == ended {
                    shades.append(Shade(rank: failure.mode == "replay" ? failure.rank : nil,
                                        start: failure.time, end: time, kind: failure.mode))
                }
                openFailures.removeAll { ended == nil || $0.rank == ended }
            default:
                break
            }
        }
        for failure in openFailures {
            shades.append(Shade(rank: failure.mode == "replay" ? failure.rank : nil, start: failure.time, end: duration,
                                kind: failure.mode))
        }
    }

    /// Matches each delivery to the latest send of the same message (source, destination,
    /// sequence number) at or before it — a message sent again after a restart (re-executed or
    /// resent from retention) is drawn from where it was sent again, never from a send of an
    /// execution a rollback undid — and samples evenly when there are too many. A delivery
    /// whose send was not traced (lost with a killed rank's unflushed lines) gets no arrow.
    private mutating func readTraces(_ directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        var sends: [String: [Double]] = [:]
        var deliveries: [(key: String, source: Int, to: Mark, replayed: Bool)] = []
        for name in names.sorted() where name.hasSuffix(".tsv") {
            let parts = name.dropLast(4).split(separator: "-").last?.split(separator: ".") ?? []
            guard parts.count == 2, let rank = Int(parts[0]) else { continue }
            guard let text = try? String(contentsOfFile: directory + "/" + name, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: "\t")
                guard fields.count == 5, let time = Double(fields[0]) else { continue }
                switch fields[1] {
                case "S": sends["\(rank)>\(fields[2])#\(fields[3])", default: []].append(time)
                case "D", "R":
                    guard let source = Int(fields[2]) else { continue }
                    deliveries.append(("\(fields[2])>\(rank)#\(fields[3])", source, Mark(rank: rank, time: time), fields[1] == "R"))
                default: break
                }
            }
        }
        for key in sends.keys { sends[key]?.sort() }
        messageCount = deliveries.count
        let stride = max(1, deliveries.count / Self.arrowsMax)
        for (index, delivery) in deliveries.enumerated() where index % stride == 0 {
            guard let sent = Self.latest(sends[delivery.key] ?? [], atOrBefore: delivery.to.time) else { continue }
            arrows.append(Arrow(from: Mark(rank: delivery.source, time: sent), to: delivery.to, replayed: delivery.replayed))
        }
    }

    /// The largest of the ascending `times` that is at most `time`.
    static func latest(_ times: [Double], atOrBefore time: Double) -> Double? {
        var low = 0
        var high = times.count
        while low < high {
            let middle = (low + high) / 2
            if times[middle] <= time { low = middle + 1 } else { high = middle }
        }
        return low == 0 ? nil : times[low - 1]
    }

    /// The messages drawn, as (sent, delivered) times: what a test checks against the rollbacks.
    var arrowTimes: [(sent: Double, delivered: Double)] { arrows.map { ($0.from.time, $0.to.time) } }

    /// The page.
    public var html: String {
        let laneHeight = rankCount <= 8 ? 60.0 : max(12.0, 480.0 / Double(rankCount))
        let left = 70.0
        let width = 1100.0
        let height = laneHeight * Double(rankCount) + 40
        func x(_ time: Double) -> Double { left + time / duration * (width - left - 20) }
        func y(_ rank: Int) -> Double { 20 + laneHeight * (Double(rank) + 0.5) }
        func f(_ value: Double) -> String { String(format: "%.1f", value) }
        var svg: [String] = []
        for shade in shades {
            let color = shade.kind == "replay" ? "#fde68a" : "#fecaca"
            let top = shade.rank.map { y($0) - laneHeight / 2 } ?? 20
            let tall = shade.rank == nil ? laneHeight * Double(rankCount) : laneHeight
            svg.append("<rect x='\(f(x(shade.start)))' y='\(f(top))' width='\(f(max(1, x(shade.end) - x(shade.start))))' height='\(f(tall))' fill='\(color)' opacity='0.7'><title>\(shade.kind) \(String(format: "%.3f–%.3f s", shade.start, shade.end))</title></rect>")
        }
        for rank in 0..<rankCount {
            svg.append("<line x1='\(f(left))' y1='\(f(y(rank)))' x2='\(f(width - 20))' y2='\(f(y(rank)))' stroke='#111' stroke-width='1.5'/>")
            svg.append("<text x='8' y='\(f(y(rank) + 4))' font-size='12'>rank \(rank)</text>")
        }
        for arrow in arrows {
            let color = arrow.replayed ? "#b45309" : "#6b7280"
            svg.append("<line x1='\(f(x(arrow.from.time)))' y1='\(f(y(arrow.from.rank)))' x2='\(f(x(arrow.to.time)))' y2='\(f(y(arrow.to.rank)))' stroke='\(color)' stroke-width='0.7' marker-end='url(#head)' opacity='0.6'/>")
        }
        for (mark, epoch, committed) in checkpoints {
            let color = !committed ? "#9ca3af" : (inMemoryAlone.contains(epoch) ? "#93c5fd" : "#2563eb")
            let held = committed ? lineLevels[epoch].map { ": " + $0 } ?? "" : " (aborted)"
            svg.append("<rect x='\(f(x(mark.time) - 3))' y='\(f(y(mark.rank) - 9))' width='6' height='18' fill='\(color)'><title>rank \(mark.rank) checkpoint, epoch \(epoch)\(held)</title></rect>")
        }
        for line in lines where !line.points.isEmpty {
            let points = line.points.map { "\(f(x($0.time))),\(f(y($0.rank)))" }.joined(separator: " ")
            let read = line.level.map { ", read from \($0)" } ?? ""
            svg.append("<polyline points='\(points)' fill='none' stroke='#16a34a' stroke-width='2' stroke-dasharray='6 3'><title>recovery line: epoch \(line.epoch)\(read), restored at \(String(format: "%.3f", line.time)) s</title></polyline>")
        }
        for (mark, cause) in failures {
            let cx = x(mark.time), cy = y(mark.rank)
            svg.append("<path d='M\(f(cx - 7)),\(f(cy - 7)) L\(f(cx + 7)),\(f(cy + 7)) M\(f(cx - 7)),\(f(cy + 7)) L\(f(cx + 7)),\(f(cy - 7))' stroke='#dc2626' stroke-width='3'><title>rank \(mark.rank): \(Self.escaped(cause)) at \(String(format: "%.3f", mark.time)) s</title></path>")
        }
        let ticks = stride(from: 0.0, through: duration, by: Self.tickStep(duration)).map { time in
            "<text x='\(f(x(time)))' y='\(f(height - 4))' font-size='10' text-anchor='middle'>\(String(format: "%g", time)) s</text>"
        }
        let sampled = arrows.count < messageCount ? " (\(arrows.count) of \(messageCount) drawn)" : ""
        let messagesNote = messageCount == 0 ? "no messages traced (run with --trace-deliveries to draw them)" : "\(messageCount) messages\(sampled)"
        return """
        <!doctype html>
        <html><head><meta charset="utf-8"><title>Lifeline timeline: \(Self.escaped(title))</title>
        <style>body{font-family:sans-serif;margin:16px} #wrap{overflow-x:auto;border:1px solid #ddd}
        .legend span{display:inline-block;margin-right:18px} .key{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}</style>
        </head><body>
        <h2>Lifeline timeline — \(Self.escaped(title))</h2>
        <p>\(rankCount) ranks, \(String(format: "%.2f", duration)) s, \(checkpoints.count) checkpoint marks, \(failures.count) failures, \(Self.escaped(messagesNote)).
        Zoom <input id="zoom" type="range" min="1" max="40" value="1" oninput="document.getElementById('timeline').style.width=(this.value*100)+'%'"></p>
        <p class="legend"><span><i class="key" style="background:#2563eb"></i>checkpoint (committed\(levels ? "; on disk, now or after its drain" : ""))</span>
        \(levels ? "<span><i class=\"key\" style=\"background:#93c5fd\"></i>checkpoint committed in memory alone, never drained</span>" : "")
        <span><i class="key" style="background:#9ca3af"></i>checkpoint (aborted)</span>
        <span><i class="key" style="background:#dc2626"></i>failure</span>
        <span><i class="key" style="background:#16a34a"></i>recovery line restored</span>
        <span><i class="key" style="background:#fecaca"></i>global rollback</span>
        <span><i class="key" style="background:#fde68a"></i>replay of one rank</span>
        <span><i class="key" style="background:#6b7280"></i>message</span>
        <span><i class="key" style="background:#b45309"></i>replayed delivery</span></p>
        <div id="wrap"><svg id="timeline" viewBox="0 0 \(f(width)) \(f(height))" style="width:100%" xmlns="http://www.w3.org/2000/svg">
        <defs><marker id="head" markerWidth="6" markerHeight="6" refX="5" refY="3" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="#6b7280"/></marker></defs>
        \(svg.joined(separator: "\n"))
        \(ticks.joined(separator: "\n"))
        </svg></div>
        </body></html>
        """
    }

    private static func tickStep(_ duration: Double) -> Double {
        let rough = duration / 10
        let magnitude = pow(10, floor(log10(rough)))
        for factor in [1.0, 2, 5, 10] where factor * magnitude >= rough { return factor * magnitude }
        return 10 * magnitude
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "'", with: "&#39;")
    }
}
