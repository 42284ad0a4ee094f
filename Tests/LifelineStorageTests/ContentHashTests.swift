import CXXHash
import Testing
@testable import LifelineStorage

/// The hash every chunk and level-1 copy is named and checked by: XXH3-128 through the
/// library's vector dispatcher must give the bits of plain XXH3-128, or snapshots written by
/// one build (or on one CPU) would not check on another.
struct ContentHashTests {
    @Test func dispatchedHashIsPlainXXH3() throws {
        let seed: UInt64 = 0x5eed_4a54
        print("ContentHashTests seed \(seed)")
        var generator = seed
        let bytes: [UInt8] = (0..<(3 << 20)).map { _ in
            generator = generator &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: generator >> 56)
        }
        try bytes.withUnsafeBytes { all in
            // Every length up to 300 (the short-input paths), then lengths and offsets past the
            // vector paths' block and stripe sizes, unaligned.
            let cases = (0...300).map { (0, $0) } + [(1, 1024), (3, 4096), (5, 65_537), (7, 1 << 20), (0, 3 << 20)]
            for (offset, length) in cases {
                let slice = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + length)])
                let plain = XXH3_128bits(slice.baseAddress, slice.count)
                let hash = ContentHash(of: slice)
                #expect(hash == ContentHash(high: plain.high64, low: plain.low64), "length \(length) at offset \(offset)")
                // Streamed a piece at a time, as a copy in memory is hashed.
                let streamed = try MemoryLevel.hashingPieces(of: slice) { _, _ in }
                #expect(streamed == hash, "streamed, length \(length)")
            }
        }
        // The vector dispatcher's one-shot entry leaves the upper halves of the vector
        // registers in use, which slows every SSE instruction after it (a program's loops) until
        // something clears them: each hash here clears them. (-1: this CPU cannot tell.)
        if lifeline_vector_upper_in_use() >= 0 {
            try bytes.withUnsafeBytes { all in
                _ = ContentHash(of: all)
                #expect(lifeline_vector_upper_in_use() == 0, "one-shot hash left the vector registers' upper halves in use")
                _ = try MemoryLevel.hashingPieces(of: all) { _, _ in }
                #expect(lifeline_vector_upper_in_use() == 0, "streamed hash left the vector registers' upper halves in use")
            }
        } else {
            print("ContentHashTests: this CPU does not report which vector state is in use; the vzeroupper check is skipped")
        }
        // The published XXH3-128 of no bytes.
        #expect(ContentHash(of: UnsafeRawBufferPointer(start: nil, count: 0)).description == "99aa06d3014798d86001c324468d497f")
    }
}
