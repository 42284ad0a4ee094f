/// The result of checking every file on both mirrors (`MirroredStore.verify(repair:)`).
package struct VerifyReport: Sendable, Equatable {
    /// Files whose two copies are good and equal.
    package var healthyCount = 0
    /// Files that had a missing, damaged or older copy and were rewritten from the good one.
    package var repairedCount = 0
    /// Files that have a missing, damaged or older copy and were not repaired (verify without
    /// repair, or the repair failed).
    package var damagedCount = 0
    /// Files with no good copy left.
    package var unrecoverableCount = 0
    /// Leftover temporary files from interrupted writes (removed when repairing).
    package var temporaryCount = 0
    /// Chunks no committed line references (written by a round that aborted, or by one still
    /// under way): neither checked nor repaired, and never counted as damaged or missing.
    package var unreferencedCount = 0
    /// One line per problem, naming the file and the mirror.
    package var problems: [String] = []

    /// Whether nothing needs attention: every copy good (or repaired) and none lost.
    package var isClean: Bool { damagedCount == 0 && unrecoverableCount == 0 }

    /// An empty report.
    package init() {}
}
