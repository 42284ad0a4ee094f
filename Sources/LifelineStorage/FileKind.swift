/// What a stored file holds; written in every file header.
package enum FileKind: UInt16, Sendable {
    /// A rank's checkpoint of its state.
    case snapshot = 1
    /// The job manifest, the source of truth for what is committed.
    case manifest = 2
    /// A message or determinant log segment.
    case log = 3
    /// Anything else.
    case other = 4
}
