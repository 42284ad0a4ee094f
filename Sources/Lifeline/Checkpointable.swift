import LifelineStorage

/// A program state that Lifeline can capture at a safe point and hand back after a restart.
///
/// Encode every field that the rest of the run depends on, in a fixed order, and decode them in
/// the same order. Large arrays go through `StateWriter.write(_:)` for arrays, which copies
/// their bytes at once instead of encoding element by element; floating-point fields go through
/// `write(numeric:)`, which also tells the snapshot codec to filter them before zstd (linear
/// prediction, then byte planes).
///
/// ```swift
/// struct Solver: Checkpointable {
///     var step: Int
///     var field: [Double]
///     func encode(to writer: inout StateWriter) {
///         writer.write(step)
///         writer.write(numeric: field)
///     }
///     init(from reader: inout StateReader) throws {
///         step = try reader.read(Int.self)
///         field = try reader.readArray(of: Double.self)
///     }
/// }
/// ```
public protocol Checkpointable {
    /// Appends the state to `writer`.
    func encode(to writer: inout StateWriter)
    /// Rebuilds the state from what `encode(to:)` wrote.
    init(from reader: inout StateReader) throws
}

/// Collects the bytes of a program state. Values are stored in the machine's own byte order:
/// a snapshot is restored on the same kind of machine that wrote it.
public struct StateWriter: Sendable {
    /// The bytes written, when the writer writes into an array of its own (`external` is nil).
    private var storage: [UInt8] = []
    /// Memory outside the writer that it writes into instead (a rank's level-1 copy in the
    /// host's memory: the capture is the copy), or nil. A writer that outgrows it, or a copy of
    /// the writer that writes after the copying, moves what it holds into an array of its own.
    private var external: ExternalBytes?
    /// The byte ranges of `bytes` written by `write(numeric:)`: arrays of 8-byte numbers,
    /// which snapshots filter before compressing (`delta2Shuffle8`: linear prediction, then
    /// byte planes as Blosc's shuffle).
    public private(set) var numericRanges: [Range<Int>] = []

    /// The bytes written so far. (Inside Lifeline's capture of a round with a memory level,
    /// the writer may write straight into the rank's copy in memory; this is then a copy.)
    public var bytes: [UInt8] {
        guard let external else { return storage }
        return Array(external.written)
    }

    /// How many bytes were written so far.
    public var count: Int { external?.count ?? storage.count }

    /// An empty writer.
    public init() {}

    /// An empty writer that writes into `buffer`'s storage when nothing else holds it (its
    /// pages are already mapped, so a capture costs a copy and no page faults).
    init(recycling buffer: consuming [UInt8]) {
        storage = consume buffer
        storage.removeAll(keepingCapacity: true)
    }

    /// An empty writer that writes into `external` as long as it has room.
    init(into external: ExternalBytes) {
        self.external = external
    }

    /// The bytes written, in an array (none while `writesExternally`).
    var array: [UInt8] { storage }

    /// Whether everything written so far went into the memory the writer was made over
    /// (`init(into:)`), and nothing outgrew it.
    var writesExternally: Bool { external != nil }

    /// While `writesExternally`: the XXH3-128 of the bytes written, taken as they were written
    /// (`ExternalBytes`), or nil when it must be taken over them all again.
    func takeExternalHash() -> ContentHash? { external?.takeHash() }

    /// Says that the bytes from `offset` on may still be overwritten (`patch`): while writing
    /// into external memory, they are hashed only once writing ends (`ExternalBytes`).
    mutating func holdHashing(from offset: Int) {
        guard external != nil, isKnownUniquelyReferenced(&external) else { return }
        external?.holdHashing(from: offset)
    }

    /// Appends one value of a trivial type (an integer, a float, a tuple or struct of them).
    public mutating func write<T: BitwiseCopyable>(_ value: T) {
        withUnsafeBytes(of: value) { append($0) }
    }

    /// Appends an array of a trivial type: its count, then its bytes in one copy.
    public mutating func write<T: BitwiseCopyable>(_ values: [T]) {
        write(Int64(values.count))
        values.withUnsafeBytes { append($0) }
    }

    /// Appends an array of 8-byte numbers (`Double`, `Int64`, `UInt64`…) like `write(_:)` —
    /// `StateReader.readArray(of:)` reads it back — and declares it numeric: a snapshot
    /// replaces each value by its difference from a linear prediction (from the two before it)
    /// and groups the bytes by significance before zstd, which makes a smooth float64 field
    /// compress better and faster (heat2d's state: 1.6× instead of 1.3× with the bytes grouped
    /// alone). Other element sizes are written as plain arrays.
    public mutating func write<T: BitwiseCopyable & Numeric>(numeric values: [T]) {
        write(Int64(values.count))
        let start = count
        values.withUnsafeBytes { append($0) }
        if MemoryLayout<T>.stride == 8, count > start { numericRanges.append(start..<count) }
    }

    /// Appends a string as UTF-8 with its length.
    public mutating func write(_ string: String) {
        write(Array(string.utf8))
    }

    /// Appends `raw`: into the external memory while it has room and this writer alone
    /// holds it, else into `storage`.
    private mutating func append(_ raw: UnsafeRawBufferPointer) {
        if external != nil {
            if isKnownUniquelyReferenced(&external), external!.append(raw) { return }
            leaveExternal(reserving: raw.count)
        }
        reserve(raw.count)
        storage.append(contentsOf: raw)
    }

    /// Moves what was written into external memory into `storage`, with room for `count`
    /// more bytes; the external memory is let go.
    private mutating func leaveExternal(reserving count: Int) {
        guard let held = external else { return }
        external = nil
        let needed = held.count + count
        storage = [UInt8](unsafeUninitializedCapacity: max(needed + needed / 8, 64)) { buffer, initialized in
            HugePages.advise(UnsafeMutableRawBufferPointer(buffer))
            if let base = buffer.baseAddress, held.count > 0 {
                UnsafeMutableRawPointer(base).copyMemory(from: held.base, byteCount: held.count)
            }
            initialized = held.count
        }
    }

    /// Makes room for `count` more bytes. A state past `HugePages.bytesMin` grows into storage
    /// advised for huge pages before any of it is touched, so that a capture into fresh memory
    /// — a job's first, or one that outgrows its buffer — faults its pages in 2 MiB at a time
    /// rather than 4 KiB. It grows by an eighth more than it needs (or doubles), so that the small
    /// fields a program writes after a large array do not make it grow again.
    private mutating func reserve(_ count: Int) {
        let needed = storage.count + count
        guard needed > storage.capacity, needed >= HugePages.bytesMin else { return }
        storage = HugePages.array(copying: storage, capacity: max(needed + needed / 8, 2 * storage.capacity))
    }

    /// Overwrites the bytes of `value` at `offset` (a count written before its elements).
    mutating func patch<T: BitwiseCopyable>(_ value: T, at offset: Int) {
        if external != nil, !isKnownUniquelyReferenced(&external) { leaveExternal(reserving: 0) }
        withUnsafeBytes(of: value) { source in
            if let external {
                external.overwrite(at: offset, with: source)
            } else {
                for (index, byte) in source.enumerated() { storage[offset + index] = byte }
            }
        }
    }
}

/// Memory a `StateWriter` writes into without owning it: `capacity` bytes at `base`, of which
/// the first `count` are written. Whoever made it keeps the memory mapped while a writer holds it.
///
/// It hashes what is written as it goes (XXH3-128, `takeHash`), a piece
/// (`MemoryLevel.copyPieceBytes`) at a time while the piece is still in the cache: a large
/// array is copied and hashed piece by piece, small writes once a piece's worth has gathered.
/// A level-1 copy is thus hashed without a second pass over memory (64 MiB copied, then
/// hashed: 7.4 ms here; piece by piece: 6.2 ms).
final class ExternalBytes: @unchecked Sendable {
    // Unchecked: one writer at a time writes (a copy of the writer that would write too moves
    // out first, `StateWriter.append`), and the capture's owner reads only once it is done.
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private(set) var count = 0
    /// The hash of the first `hashedCount` bytes, or nil once bytes it covers were overwritten.
    private var hasher: ContentHasher? = ContentHasher()
    private var hashedCount = 0
    /// Where bytes that may still be overwritten begin (`holdHashing`): hashing stops there
    /// until `takeHash`.
    private var hashLimit = Int.max

    /// `capacity` bytes at `base`, none written yet.
    init(base: UnsafeMutableRawPointer, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// The bytes written.
    var written: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// Appends `raw` if it fits; false, with nothing written, if not.
    func append(_ raw: UnsafeRawBufferPointer) -> Bool {
        guard raw.count <= capacity - count else { return false }
        guard let source = raw.baseAddress, raw.count > 0 else { return true }
        var done = 0
        while done < raw.count {
            let piece = min(MemoryLevel.copyPieceBytes, raw.count - done)
            (base + count).copyMemory(from: source + done, byteCount: piece)
            count += piece
            done += piece
            hashWritten(all: false)
        }
        return true
    }

    /// Overwrites bytes written before, from `offset`, with `source`.
    func overwrite(at offset: Int, with source: UnsafeRawBufferPointer) {
        precondition(offset >= 0 && offset + source.count <= count, "a patch overwrites bytes written")
        guard let bytes = source.baseAddress, source.count > 0 else { return }
        if offset < hashedCount { hasher = nil }
        (base + offset).copyMemory(from: bytes, byteCount: source.count)
    }

    /// Holds the hash back from `offset` on: those bytes may still be overwritten (a count
    /// written before its elements), and are hashed when writing ends (`takeHash`).
    func holdHashing(from offset: Int) {
        hashLimit = min(hashLimit, max(offset, hashedCount))
    }

    /// The XXH3-128 of every byte written, hashing those not hashed yet; nil when an overwrite
    /// changed bytes already hashed (the caller then hashes them all where they are).
    func takeHash() -> ContentHash? {
        hashWritten(all: true)
        return hasher?.digest
    }

    /// Hashes the bytes written since the last hash, up to any held back, once a piece's worth
    /// has gathered (with `all`, every byte written, whatever has).
    private func hashWritten(all: Bool) {
        guard let hasher else { return }
        let end = all ? count : min(count, hashLimit)
        let pending = end - hashedCount
        guard pending >= MemoryLevel.copyPieceBytes || (all && pending > 0) else { return }
        hasher.update(UnsafeRawBufferPointer(start: base + hashedCount, count: pending))
        hashedCount = end
    }
}

/// The bytes of a program state to read back: an array, or a level-1 copy read in place from
/// the memory it is mapped from (`MappedCopy`), which a restore does not copy.
enum StateBytes: Sendable {
    case array([UInt8])
    case mapped(MappedCopy)

    var count: Int {
        switch self {
        case .array(let bytes): bytes.count
        case .mapped(let copy): copy.state.count
        }
    }

    func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        switch self {
        case .array(let bytes): try bytes.withUnsafeBytes(body)
        case .mapped(let copy): try body(copy.state)
        }
    }
}

/// Reads back what a `StateWriter` wrote, checking lengths as it goes.
public struct StateReader: Sendable {
    private let bytes: StateBytes
    private let count: Int
    private var offset: Int

    /// A reader over `bytes`.
    public init(_ bytes: [UInt8]) {
        self.init(.array(bytes))
    }

    /// A reader over `bytes`, an array or a mapped copy.
    init(_ bytes: StateBytes) {
        self.bytes = bytes
        self.count = bytes.count
        self.offset = 0
    }

    /// Whether every byte has been read.
    public var isAtEnd: Bool { offset == count }

    /// Reads one value of a trivial type.
    public mutating func read<T: BitwiseCopyable>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        try need(size, for: "\(T.self)")
        defer { offset += size }
        return bytes.withUnsafeBytes { [offset] in $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }

    /// Reads a Bool, checked: a byte other than 0 or 1 (state saved by another type, or
    /// damaged) is thrown as corrupt, where loading it as a Bool would be undefined.
    public mutating func read(_: Bool.Type) throws -> Bool {
        switch try read(UInt8.self) {
        case 0: return false
        case 1: return true
        case let byte: throw LifelineError(.corruptState, "the saved state holds \(byte) where a Bool (0 or 1) was written")
        }
    }

    /// Reads an array of a trivial type written by `StateWriter.write(_:)`.
    public mutating func readArray<T: BitwiseCopyable>(of _: T.Type) throws -> [T] {
        let count = try read(Int64.self)
        let stride = MemoryLayout<T>.stride
        guard count >= 0, count <= Int64((self.count - offset) / max(stride, 1)) else {
            throw LifelineError(.corruptState, "the saved state claims an array of \(count) \(T.self) values")
        }
        let byteCount = Int(count) * stride
        try need(byteCount, for: "[\(T.self)]")
        let values = [T](unsafeUninitializedCapacity: Int(count)) { [offset] buffer, initialized in
            bytes.withUnsafeBytes { source in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(
                    from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + byteCount]))
            }
            initialized = Int(count)
        }
        offset += byteCount
        return values
    }

    /// Reads a string written by `StateWriter.write(_:)`.
    public mutating func readString() throws -> String {
        String(decoding: try readArray(of: UInt8.self), as: UTF8.self)
    }

    /// The next byte, not consumed.
    mutating func peekByte() throws -> UInt8 {
        try need(1, for: "a field marker")
        return bytes.withUnsafeBytes { [offset] in $0[offset] }
    }

    private func need(_ count: Int, for what: String) throws {
        guard self.count - offset >= count else {
            throw LifelineError(.corruptState, "the saved state ends early while reading \(what)")
        }
    }
}
