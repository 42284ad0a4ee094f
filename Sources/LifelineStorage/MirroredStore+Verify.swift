extension MirroredStore {
    /// Checks every file on both mirrors and, when `repair`, rewrites each missing, damaged or
    /// older copy from the good one and removes leftover temporary files.
    ///
    /// Meant for `lifeline storage verify` (no repair) and `lifeline storage repair`.
    package func verify(repair: Bool) -> VerifyReport {
        var report = VerifyReport()
        let names = Set(PosixFile.walkFiles(root: rootA) + PosixFile.walkFiles(root: rootB)).sorted()
        // Message logs have their own record format and are checked and cut by `MessageLog`.
        for name in names where !name.hasPrefix(MessageLog.folder + "/") && name != ChunkLock.fileName {
            let (_, fileName) = Self.split(name)
            if PosixFile.isHidden(fileName) {
                checkTemporary(name, repair: repair, into: &report)
            } else {
                check(name, repair: repair, into: &report)
            }
        }
        return report
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
