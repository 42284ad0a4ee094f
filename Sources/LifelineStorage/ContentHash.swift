import CXXHash

/// The identity of a snapshot chunk: XXH3-128 of its bytes (from libxxhash), as 32 hex digits.
/// 128 bits make an accidental collision between two chunks of a job negligible.
package struct ContentHash: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The high and low 64 bits.
    package var high: UInt64
    package var low: UInt64

    /// A hash from its two halves.
    package init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The hash of `bytes`.
    package init(of bytes: UnsafeRawBufferPointer) {
        let hash = lifeline_xxh3_128(bytes.baseAddress, bytes.count)
        self.init(high: hash.high64, low: hash.low64)
    }

    package static func < (lhs: ContentHash, rhs: ContentHash) -> Bool { (lhs.high, lhs.low) < (rhs.high, rhs.low) }

    /// 32 lowercase hex digits.
    package var description: String { Self.hex(high) + Self.hex(low) }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

/// An XXH3-128 taken over bytes that arrive in pieces (`update`), equal to `ContentHash(of:)`
/// of them all: for bytes hashed while they are still in the cache after they were written.
package final class ContentHasher {
    private let state: OpaquePointer

    /// A hasher that has seen no bytes.
    package init() {
        guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
        XXH3_128bits_reset(state)
        self.state = state
    }

    deinit { XXH3_freeState(state) }

    /// Adds `bytes` after those added before.
    package func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        _ = lifeline_xxh3_128_update(state, bytes.baseAddress, bytes.count)
    }

    /// The hash of every byte added so far.
    package var digest: ContentHash {
        let digest = XXH3_128bits_digest(state)
        return ContentHash(high: digest.high64, low: digest.low64)
    }
}
