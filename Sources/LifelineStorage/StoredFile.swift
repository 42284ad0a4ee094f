/// A file read from the mirrored store, after checks and repairs.
package struct StoredFile: Sendable, Equatable {
    /// The kind written in the header.
    package var kind: FileKind
    /// The generation written in the header; of two differing good copies, the higher wins.
    package var generation: UInt64
    /// The body, whose checksum and length were verified.
    package var body: [UInt8]
    /// The mirrors whose copy was missing, damaged or older, and was rewritten from the good one.
    package var repaired: [Mirror]
    /// One line per problem found (a damaged copy, a repair that failed); empty when both
    /// copies were good and equal.
    package var problems: [String]

    /// Creates a stored file.
    package init(kind: FileKind, generation: UInt64, body: [UInt8], repaired: [Mirror] = [], problems: [String] = []) {
        self.kind = kind
        self.generation = generation
        self.body = body
        self.repaired = repaired
        self.problems = problems
    }
}

extension StoredFile {
    /// Equal when every field is; bodies are compared with `memcmp`.
    package static func == (left: StoredFile, right: StoredFile) -> Bool {
        left.kind == right.kind && left.generation == right.generation && bytesEqual(left.body, right.body)
            && left.repaired == right.repaired && left.problems == right.problems
    }
}
