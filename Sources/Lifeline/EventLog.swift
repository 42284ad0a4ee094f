import Foundation

/// A value in an event's fields.
enum EventValue {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)

    var json: String {
        switch self {
        case .int(let value): return String(value)
        case .double(let value): return value.isFinite ? String(format: "%.6f", value) : "null"
        case .bool(let value): return value ? "true" : "false"
        case .string(let value): return EventLog.quoted(value)
        }
    }
}

/// The job's `events.jsonl`: one JSON object a line, `t` (seconds since the job started)
/// first, then `event`, then the event's fields in the order given. Every line is written with
/// one `write(2)`, so a crash leaves whole lines.
final class EventLog {
    private let handle: FileHandle
    private let clock: () -> Double

    /// Appends to `path` (created if missing), stamping lines with `clock()`.
    init(path: String, clock: @escaping () -> Double) throws {
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
        }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw LifelineError(.configuration, "cannot write the event log \(path): check the run directory's permissions")
        }
        handle.seekToEndOfFile()
        self.handle = handle
        self.clock = clock
    }

    /// Records one event.
    func record(_ event: String, _ fields: KeyValuePairs<String, EventValue> = [:]) {
        var line = "{\"t\":\(String(format: "%.6f", clock())),\"event\":\(Self.quoted(event))"
        for (key, value) in fields { line += ",\(Self.quoted(key)):\(value.json)" }
        line += "}\n"
        handle.write(Data(line.utf8))
    }

    /// The last `t` in an existing log (so a resumed job's clock continues), or 0.
    static func lastTime(path: String) -> Double {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n").reversed() {
            guard let range = line.range(of: "\"t\":") else { continue }
            let number = line[range.upperBound...].prefix { $0.isNumber || $0 == "." }
            if let value = Double(number) { return value }
        }
        return 0
    }

    static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20: result += String(format: "\\u%04x", scalar.value)
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }
}
