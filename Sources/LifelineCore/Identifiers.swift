/// The index of one rank of a job, `0..<rankCount`.
package struct RankID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The rank's index.
    package var rawValue: Int
    /// Wraps a rank index.
    package init(rawValue: Int) { self.rawValue = rawValue }
    /// Wraps a rank index.
    package init(_ rawValue: Int) { self.rawValue = rawValue }
    package static func < (lhs: RankID, rhs: RankID) -> Bool { lhs.rawValue < rhs.rawValue }
    package var description: String { "rank \(rawValue)" }
}

/// The number of a checkpoint round. Round numbers only grow; committed rounds form recovery lines.
/// Epoch 0 is the job's start (the implicit initial line).
package struct Epoch: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The round number.
    package var rawValue: UInt64
    /// Wraps a round number.
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Wraps a round number.
    package init(_ rawValue: UInt64) { self.rawValue = rawValue }
    /// The start of the job, before any checkpoint.
    package static let start = Epoch(0)
    /// The round after this one.
    package var next: Epoch { Epoch(rawValue + 1) }
    package static func < (lhs: Epoch, rhs: Epoch) -> Bool { lhs.rawValue < rhs.rawValue }
    package var description: String { "epoch \(rawValue)" }
}

/// The position of a message in its (source, destination) channel, starting at 0.
package struct SequenceNumber: RawRepresentable, Hashable, Comparable, Sendable {
    /// The position.
    package var rawValue: UInt64
    /// Wraps a position.
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Wraps a position.
    package init(_ rawValue: UInt64) { self.rawValue = rawValue }
    /// The position after this one.
    package var next: SequenceNumber { SequenceNumber(rawValue + 1) }
    package static func < (lhs: SequenceNumber, rhs: SequenceNumber) -> Bool { lhs.rawValue < rhs.rawValue }
}
