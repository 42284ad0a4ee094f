/// One of the two storage roots. A is always written first.
package enum Mirror: String, Sendable, CaseIterable, Codable {
    /// The first root, written and verified before B.
    case a
    /// The second root, written only after A's copy was read back and verified.
    case b
}
