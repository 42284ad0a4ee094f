#if canImport(Glibc)
import Glibc
#endif

/// Large buffers of a rank (its capture buffers) backed by transparent huge pages where the
/// system allows them. Touched for the first time, a 64 MiB buffer of 4 KiB pages costs 16,384
/// page faults; of 2 MiB pages, 32 (a copy of 64 MiB into fresh memory took 23 ms here, and 6 ms
/// into huge pages). Linux hands out huge pages to memory that asks for them
/// (`madvise(MADV_HUGEPAGE)`) under its `always` and `madvise` policies (`madvise` here); under
/// `never`, or on another system, the advice changes nothing.
enum HugePages {
    /// Buffers at least this large ask for huge pages.
    static let bytesMin = 4 << 20
    /// A huge page's bytes on x86-64 and arm64 with 4 KiB base pages.
    private static let pageBytes = 2 << 20

    /// Asks for huge pages behind the whole 2 MiB pages inside `memory`, before they are touched.
    static func advise(_ memory: UnsafeMutableRawBufferPointer) {
        #if os(Linux)
        guard memory.count >= bytesMin, let base = memory.baseAddress else { return }
        let start = (Int(bitPattern: base) + pageBytes - 1) & ~(pageBytes - 1)
        let end = (Int(bitPattern: base) + memory.count) & ~(pageBytes - 1)
        guard end > start, let aligned = UnsafeMutableRawPointer(bitPattern: start) else { return }
        _ = madvise(aligned, end - start, MADV_HUGEPAGE)
        #endif
    }

    /// A copy of `bytes` in new storage of at least `capacity` bytes, advised as above.
    static func array(copying bytes: [UInt8], capacity: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: max(capacity, bytes.count)) { storage, initialized in
            advise(UnsafeMutableRawBufferPointer(storage))
            bytes.withUnsafeBufferPointer { old in
                if let source = old.baseAddress { storage.baseAddress!.initialize(from: source, count: old.count) }
            }
            initialized = bytes.count
        }
    }

    /// `count` zero bytes in storage advised as above, every page written (so faulted in).
    static func zeroed(count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { storage, initialized in
            let raw = UnsafeMutableRawBufferPointer(storage)
            advise(raw)
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            initialized = count
        }
    }
}
