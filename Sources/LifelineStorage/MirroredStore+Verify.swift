extension MirroredStore {
    /// Checks every file on both mirrors and, when `repair`, rewrites each missing, damaged or
    /// older copy from the good one and removes leftover temporary files. Files `isGarbage`
    /// names (chunks no committed line references) are only counted.
    ///
    /// Meant for `lifeline storage verify` (no repair) and `lifeline storage repair`.
    package func verify(repair: Bool, isGarbage: (String) -> Bool = { _ in false }) -> VerifyReport {
        var report = VerifyReport()
        // A partner's folder is listed by its keeper, not walked here: its files are checked
        // as the local mirror names them.
        let walked = Mirror.allCases.filter { $0 != remote?.mirror }.flatMap { PosixFile.walkFiles(root: root($0)) }
        let names = Set(walked).sorted()
        var logsChecked = Set<String>()
        for name in names where name != ChunkLock.fileName && name != Self.jobLockFileName {
            if isGarbage(name) {
                report.unreferencedCount += 1
                continue
            }
            let (folder, fileName) = Self.split(name)
            let logName = Self.logName(folder: folder)
            if PosixFile.isHidden(fileName) {
                checkTemporary(name, repair: repair, into: &report)
            } else if let logName {
                if logsChecked.insert(logName).inserted { checkLog(logName, repair: repair, into: &report) }
            } else {
                check(name, repair: repair, into: &report)
            }
        }
        return report
    }

    /// The log a folder holds segments of (`logs/NAME`), or nil.
    private static func logName(folder: String) -> String? {
        let parts = folder.split(separator: "/")
        return parts.count == 2 && parts[0] == MessageLog.folder ? String(parts[1]) : nil
    }

    /// A message log has its own record format: a copy torn at its end, missing or shorter is
    /// rewritten from the other (by opening the log); when neither copy is intact, records are
    /// lost and the log is left as it is (the runtime cuts it to its valid prefix and, having
    /// lost what a replay needs, rolls every rank back instead).
    private func checkLog(_ logName: String, repair: Bool, into report: inout VerifyReport) {
        do {
            let inspection = try MessageLog.inspect(store: self, name: logName)
            if inspection.isHealthy {
                report.healthyCount += 1
                return
            }
            if inspection.recordsLost {
                report.unrecoverableCount += 1
                report.problems += inspection.problems
                report.problems.append("\(MessageLog.folder)/\(logName): damaged on both mirrors; records past \(inspection.kept.upperBound) are lost")
                return
            }
            guard repair else {
                report.damagedCount += 1
                report.problems += inspection.problems.map { $0 + "; needs repair" }
                return
            }
            _ = try MessageLog(store: self, name: logName)
            report.repairedCount += 1
            report.problems += inspection.problems.map { $0 + "; repaired" }
        } catch {
            report.unrecoverableCount += 1
            report.problems.append("\(MessageLog.folder)/\(logName): \(error)")
        }
    }

    private func check(_ name: String, repair: Bool, into report: inout VerifyReport) {
        do {
            let file = try inspect(name, repair: repair)
            report.problems += file.problems
            if file.problems.isEmpty {
                report.healthyCount += 1
            } else if repair && file.repaired.count == file.problems.count {
                report.repairedCount += 1
            } else {
                report.damagedCount += 1
            }
        } catch {
            report.unrecoverableCount += 1
            report.problems.append("\(name): \(error)")
        }
    }

    private func checkTemporary(_ name: String, repair: Bool, into report: inout VerifyReport) {
        report.temporaryCount += 1
        guard repair else {
            report.problems.append("\(name): leftover temporary file from an interrupted write")
            return
        }
        for mirror in Mirror.allCases {
            do {
                try PosixFile.removeFile(path(name, on: mirror))
            } catch {
                report.problems.append("\(name): could not remove temporary file: \(error)")
                return
            }
        }
        report.problems.append("\(name): removed leftover temporary file")
    }
}
