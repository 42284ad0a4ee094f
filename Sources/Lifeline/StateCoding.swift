/// `Checkpointable` for free: a `Codable` state is written with a compact binary coder instead
/// of hand-written `encode(to:)` and `init(from:)`.
///
/// ```swift
/// struct Solver: Codable, Checkpointable {
///     var step = 0
///     var field: [Double] = []
///     var name = "cg"
/// }
/// ```
///
/// Values are written in the order `Codable` visits them, without keys or type tags, so a
/// snapshot holds the data and little else; the decoder visits them in the same order. Arrays
/// of fixed-size numbers (`[Double]`, `[Float]`, `[Int]`, `[Int64]`, `[UInt64]`, `[Int32]`,
/// `[UInt32]`, `[UInt8]`…) are copied as raw bytes, and arrays of 8-byte numbers are declared
/// numeric, so the snapshot filters them (linear prediction, byte planes) before compressing — the fast path of
/// `StateWriter.write(numeric:)`, with no per-element encoding. Optionals, nested types,
/// enums (with raw or associated values), arrays, sets and dictionaries work as `Codable`
/// defines them; each field and element starts with a byte that says whether a value follows.
/// What does not: a type whose decoding asks which keys are present (`allKeys`, or `contains`
/// expecting another answer than "yes") other than a dictionary, and a custom `encodeNil()` in
/// a single-value container; such a type writes its own `encode(to:)`/`init(from:)` of
/// `Checkpointable`, which stay the path for full control. Decoding what was not written so
/// throws `LifelineError(.corruptState)` (or a `DecodingError`), never reads out of bounds.
extension Checkpointable where Self: Codable {
    /// Writes the state with the binary `Codable` coder.
    public func encode(to writer: inout StateWriter) {
        let storage = StateEncoder.Storage(writer)
        // The box alone holds the writer's storage while it encodes, so that a writer over
        // memory not its own (a capture into a copy in memory) keeps writing there.
        writer = StateWriter()
        do {
            try self.encode(to: StateEncoder(storage: storage))
        } catch {
            preconditionFailure("encoding \(Self.self) for a snapshot failed: \(error)")
        }
        writer = storage.writer
    }

    /// Reads the state written by `encode(to:)`.
    public init(from reader: inout StateReader) throws {
        let source = StateDecoder.Source(reader)
        self = try Self(from: StateDecoder(source: source))
        reader = source.reader
    }
}

// MARK: Fast paths and optionals

/// Arrays of fixed-size numbers the coder copies as raw bytes: written when `value` is one.
private func writeRawArray(_ value: Any, to writer: inout StateWriter) -> Bool {
    switch value {
    case let array as [Double]: writer.write(numeric: array)
    case let array as [Float]: writer.write(numeric: array)
    case let array as [Int]: writer.write(numeric: array)
    case let array as [Int64]: writer.write(numeric: array)
    case let array as [UInt64]: writer.write(numeric: array)
    case let array as [UInt]: writer.write(numeric: array)
    case let array as [Int32]: writer.write(numeric: array)
    case let array as [UInt32]: writer.write(numeric: array)
    case let array as [Int16]: writer.write(numeric: array)
    case let array as [UInt16]: writer.write(numeric: array)
    case let array as [Int8]: writer.write(numeric: array)
    case let array as [UInt8]: writer.write(numeric: array)
    default: return false
    }
    return true
}

/// The raw array of type `type` read back, or nil when `type` is not one of those
/// `writeRawArray` copies.
private func readRawArray(_ type: Any.Type, from reader: inout StateReader) throws -> Any? {
    switch type {
    case is [Double].Type: try reader.readArray(of: Double.self)
    case is [Float].Type: try reader.readArray(of: Float.self)
    case is [Int].Type: try reader.readArray(of: Int.self)
    case is [Int64].Type: try reader.readArray(of: Int64.self)
    case is [UInt64].Type: try reader.readArray(of: UInt64.self)
    case is [UInt].Type: try reader.readArray(of: UInt.self)
    case is [Int32].Type: try reader.readArray(of: Int32.self)
    case is [UInt32].Type: try reader.readArray(of: UInt32.self)
    case is [Int16].Type: try reader.readArray(of: Int16.self)
    case is [UInt16].Type: try reader.readArray(of: UInt16.self)
    case is [Int8].Type: try reader.readArray(of: Int8.self)
    case is [UInt8].Type: try reader.readArray(of: UInt8.self)
    default: nil
    }
}

/// An optional, seen through the type-erased coder: a presence byte, then the value.
private protocol OptionalValue {
    var wrappedEncodable: (any Encodable)? { get }
    static func decodeWrapped(from decoder: StateDecoder) throws -> Self
}

extension Optional: OptionalValue where Wrapped: Codable {
    fileprivate var wrappedEncodable: (any Encodable)? { self }
    fileprivate static func decodeWrapped(from decoder: StateDecoder) throws -> Wrapped? {
        try decoder.source.reader.read(UInt8.self) == 0 ? nil : try decoder.decode(Wrapped.self)
    }
}

/// A dictionary: its count, then key and value after key and value (decoding a dictionary
/// asks for its keys, which a positional format cannot answer).
private protocol DictionaryValue {
    func encodeEntries(to encoder: StateEncoder) throws
    static func decodeEntries(from decoder: StateDecoder) throws -> Self
}

extension Dictionary: DictionaryValue where Key: Codable, Value: Codable {
    fileprivate func encodeEntries(to encoder: StateEncoder) throws {
        encoder.storage.writer.write(Int64(count))
        for (key, value) in self {
            try encoder.encode(key)
            try encoder.encode(value)
        }
    }

    fileprivate static func decodeEntries(from decoder: StateDecoder) throws -> [Key: Value] {
        let count = try decoder.source.reader.read(Int64.self)
        guard count >= 0 else { throw LifelineError(.corruptState, "the saved state claims a dictionary of \(count) entries") }
        var result: [Key: Value] = [:]
        for _ in 0..<count { result[try decoder.decode(Key.self)] = try decoder.decode(Value.self) }
        return result
    }
}

// MARK: Encoder

/// Writes `Encodable` values, in the order they come, into a `StateWriter`.
private struct StateEncoder: Encoder {
    /// The writer every container of one state writes to.
    final class Storage {
        var writer: StateWriter
        init(_ writer: StateWriter) { self.writer = writer }
    }

    let storage: Storage
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// Encodes one value: a raw array, an optional, a dictionary or a string by its fast path,
    /// anything else by its own `encode(to:)`.
    func encode<T: Encodable>(_ value: T) throws {
        // Optionals first: a cast from `Any` looks through one, so `[Double]?` would pass for
        // a raw array without its presence byte.
        if !(value is any OptionalValue), writeRawArray(value, to: &storage.writer) { return }
        switch value {
        case let optional as any OptionalValue:
            if let wrapped = optional.wrappedEncodable {
                storage.writer.write(UInt8(1))
                try encode(wrapped)
            } else {
                storage.writer.write(UInt8(0))
            }
        case let dictionary as any DictionaryValue: try dictionary.encodeEntries(to: self)
        case let string as String: storage.writer.write(string)
        case let bool as Bool: storage.writer.write(UInt8(bool ? 1 : 0))
        default: try value.encode(to: self)
        }
    }

    func container<Key: CodingKey>(keyedBy _: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(KeyedContainer<Key>(encoder: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let countOffset = storage.writer.count
        storage.writer.holdHashing(from: countOffset)
        storage.writer.write(Int64(0))  // the count, updated as elements come
        return UnkeyedContainer(encoder: self, countOffset: countOffset)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleValueContainer(encoder: self) }

    /// Every field of a keyed container starts with a byte — 1 a value follows, 0 nil — and
    /// its key, so `decodeNil(forKey:)` can tell, an enum's decoding can ask which case it is
    /// (`allKeys`), and a state read with other fields than it was written with is refused.
    private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: StateEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        private func begin(_ present: Bool, _ key: Key) { begin(present, key.stringValue) }

        private func begin(_ present: Bool, _ keyName: String) {
            encoder.storage.writer.write(UInt8(present ? 1 : 0))
            let name = Array(keyName.utf8.prefix(Int(UInt16.max)))
            encoder.storage.writer.write(UInt16(name.count))
            for byte in name { encoder.storage.writer.write(byte) }
        }

        private func field<T: Encodable>(_ value: T?, _ key: Key) throws {
            begin(value != nil, key)
            if let value { try encoder.encode(value) }
        }

        mutating func encodeNil(forKey key: Key) throws { begin(false, key) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: String, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Double, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Float, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Int, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { try field(value, key) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Float?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Int8?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Int16?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Int32?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: Int64?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: UInt?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: UInt8?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: UInt16?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: UInt32?, forKey key: Key) throws { try field(value, key) }
        mutating func encodeIfPresent(_ value: UInt64?, forKey key: Key) throws { try field(value, key) }
        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) -> KeyedEncodingContainer<NestedKey> {
            begin(true, key)
            return encoder.container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            begin(true, key)
            return encoder.unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            begin(true, "super")
            return encoder
        }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            begin(true, key)
            return encoder
        }
    }

    private struct UnkeyedContainer: UnkeyedEncodingContainer {
        let encoder: StateEncoder
        let countOffset: Int
        var codingPath: [any CodingKey] { encoder.codingPath }
        private(set) var count = 0

        init(encoder: StateEncoder, countOffset: Int) {
            self.encoder = encoder
            self.countOffset = countOffset
        }

        /// Counts one more element: written after a marker byte (1 a value follows, 0 nil),
        /// as a keyed container's fields are.
        private mutating func element<T: Encodable>(_ value: T?) throws {
            let encoder = self.encoder
            if let value {
                encoder.storage.writer.write(UInt8(1))
                try encoder.encode(value)
            } else {
                encoder.storage.writer.write(UInt8(0))
            }
            count += 1
            encoder.storage.writer.patch(Int64(count), at: countOffset)
        }

        /// Counts one more element that a nested container or encoder writes.
        private mutating func nested() -> StateEncoder {
            encoder.storage.writer.write(UInt8(1))
            count += 1
            encoder.storage.writer.patch(Int64(count), at: countOffset)
            return encoder
        }

        mutating func encodeNil() throws { try element(Int?.none) }
        mutating func encode<T: Encodable>(_ value: T) throws { try element(value) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            nested().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { nested().unkeyedContainer() }
        mutating func superEncoder() -> any Encoder { nested() }
    }

    private struct SingleValueContainer: SingleValueEncodingContainer {
        let encoder: StateEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        mutating func encodeNil() throws { encoder.storage.writer.write(UInt8(0)) }
        mutating func encode(_ value: Bool) throws { try encoder.encode(value) }
        mutating func encode(_ value: String) throws { try encoder.encode(value) }
        mutating func encode(_ value: Double) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: Float) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: Int) throws { encoder.storage.writer.write(Int64(value)) }
        mutating func encode(_ value: Int8) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: Int16) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: Int32) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: Int64) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: UInt) throws { encoder.storage.writer.write(UInt64(value)) }
        mutating func encode(_ value: UInt8) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: UInt16) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: UInt32) throws { encoder.storage.writer.write(value) }
        mutating func encode(_ value: UInt64) throws { encoder.storage.writer.write(value) }
        mutating func encode<T: Encodable>(_ value: T) throws { try encoder.encode(value) }
    }
}

// MARK: Decoder

/// Reads back, in the same order, what `StateEncoder` wrote.
private struct StateDecoder: Decoder {
    /// The reader every container of one state reads from.
    final class Source {
        var reader: StateReader
        init(_ reader: StateReader) { self.reader = reader }
    }

    let source: Source
    var codingPath: [any CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    /// Decodes one value the way `StateEncoder.encode(_:)` wrote it.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if !(type is any OptionalValue.Type), let array = try readRawArray(type, from: &source.reader) { return array as! T }
        switch type {
        case let optional as any OptionalValue.Type: return try optional.decodeWrapped(from: self) as! T
        case let dictionary as any DictionaryValue.Type: return try dictionary.decodeEntries(from: self) as! T
        case is String.Type: return try source.reader.readString() as! T
        case is Bool.Type: return try readBool() as! T
        default: return try T(from: self)
        }
    }

    func readBool() throws -> Bool {
        switch try source.reader.read(UInt8.self) {
        case 0: return false
        case 1: return true
        case let byte: throw LifelineError(.corruptState, "the saved state holds \(byte) where a Bool was written")
        }
    }

    func container<Key: CodingKey>(keyedBy _: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(KeyedContainer<Key>(decoder: self))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let count = try source.reader.read(Int64.self)
        guard count >= 0 else { throw LifelineError(.corruptState, "the saved state claims a sequence of \(count) values") }
        return UnkeyedContainer(decoder: self, count: Int(count))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleValueContainer(decoder: self) }

    /// Reads the fields `StateEncoder`'s keyed container wrote, each after its marker byte.
    private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let decoder: StateDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }
        /// The next field's key (an enum's decoding asks which case was written); empty at the end.
        var allKeys: [Key] {
            var probe = decoder.source.reader
            guard let (_, name) = try? Self.begin(&probe) else { return [] }
            return Key(stringValue: name).map { [$0] } ?? []
        }

        /// Reads a field's marker and key.
        private static func begin(_ reader: inout StateReader) throws -> (present: Bool, key: String) {
            let marker = try reader.read(UInt8.self)
            guard marker <= 1 else { throw LifelineError(.corruptState, "the saved state holds \(marker) where a field begins") }
            let length = Int(try reader.read(UInt16.self))
            var name: [UInt8] = []
            name.reserveCapacity(length)
            for _ in 0..<length { name.append(try reader.read(UInt8.self)) }
            return (marker == 1, String(decoding: name, as: UTF8.self))
        }

        /// Reads the field `key` begins: true when a value follows. Another key is refused.
        private func present(_ key: Key) throws -> Bool {
            let (present, name) = try Self.begin(&decoder.source.reader)
            guard name == key.stringValue else {
                throw LifelineError(.corruptState, "the saved state has field \(name) where \(key.stringValue) was expected: was it written by another version of the program?")
            }
            return present
        }

        private func field<T: Decodable>(_ type: T.Type, _ key: Key) throws -> T {
            guard try present(key) else {
                throw DecodingError.valueNotFound(type, .init(codingPath: codingPath + [key], debugDescription: "saved as nil"))
            }
            return try decoder.decode(type)
        }

        func contains(_: Key) -> Bool { true }
        func decodeNil(forKey key: Key) throws -> Bool {
            guard try decoder.source.reader.peekByte() == 0 else { return false }
            return try !present(key)
        }
        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try field(type, key) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try field(type, key) }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try field(type, key) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try field(type, key) }
        func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try field(type, key) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try field(type, key) }
        func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try field(type, key) }
        func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try field(type, key) }
        func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try field(type, key) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try field(type, key) }
        func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try field(type, key) }
        func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try field(type, key) }
        func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try field(type, key) }
        func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try field(type, key) }
        func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try field(type, key) }
        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            _ = try present(key)
            return try decoder.container(keyedBy: type)
        }
        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            _ = try present(key)
            return try decoder.unkeyedContainer()
        }
        func superDecoder() throws -> any Decoder {
            _ = try Self.begin(&decoder.source.reader)
            return decoder
        }
        func superDecoder(forKey key: Key) throws -> any Decoder {
            _ = try present(key)
            return decoder
        }
    }

    private struct UnkeyedContainer: UnkeyedDecodingContainer {
        let decoder: StateDecoder
        let total: Int
        var codingPath: [any CodingKey] { decoder.codingPath }
        var count: Int? { total }
        var isAtEnd: Bool { currentIndex >= total }
        private(set) var currentIndex = 0

        init(decoder: StateDecoder, count: Int) {
            self.decoder = decoder
            self.total = count
        }

        /// Takes the next element's marker: true when a value follows.
        private mutating func next() throws -> Bool {
            guard !isAtEnd else { throw LifelineError(.corruptState, "the saved state's sequence ends early") }
            currentIndex += 1
            switch try decoder.source.reader.read(UInt8.self) {
            case 0: return false
            case 1: return true
            case let byte: throw LifelineError(.corruptState, "the saved state holds \(byte) where an element begins")
            }
        }

        mutating func decodeNil() throws -> Bool {
            guard !isAtEnd, try decoder.source.reader.peekByte() == 0 else { return false }
            return try !next()
        }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
            guard try next() else {
                throw DecodingError.valueNotFound(type, .init(codingPath: codingPath, debugDescription: "saved as nil"))
            }
            return try decoder.decode(type)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
            _ = try next()
            return try decoder.container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
            _ = try next()
            return try decoder.unkeyedContainer()
        }
        mutating func superDecoder() throws -> any Decoder {
            _ = try next()
            return decoder
        }
    }

    private struct SingleValueContainer: SingleValueDecodingContainer {
        let decoder: StateDecoder
        var codingPath: [any CodingKey] { decoder.codingPath }

        func decodeNil() -> Bool { false }
        func decode(_: Bool.Type) throws -> Bool { try decoder.readBool() }
        func decode(_: String.Type) throws -> String { try decoder.source.reader.readString() }
        func decode(_: Double.Type) throws -> Double { try decoder.source.reader.read(Double.self) }
        func decode(_: Float.Type) throws -> Float { try decoder.source.reader.read(Float.self) }
        func decode(_: Int.Type) throws -> Int { Int(try decoder.source.reader.read(Int64.self)) }
        func decode(_: Int8.Type) throws -> Int8 { try decoder.source.reader.read(Int8.self) }
        func decode(_: Int16.Type) throws -> Int16 { try decoder.source.reader.read(Int16.self) }
        func decode(_: Int32.Type) throws -> Int32 { try decoder.source.reader.read(Int32.self) }
        func decode(_: Int64.Type) throws -> Int64 { try decoder.source.reader.read(Int64.self) }
        func decode(_: UInt.Type) throws -> UInt { UInt(try decoder.source.reader.read(UInt64.self)) }
        func decode(_: UInt8.Type) throws -> UInt8 { try decoder.source.reader.read(UInt8.self) }
        func decode(_: UInt16.Type) throws -> UInt16 { try decoder.source.reader.read(UInt16.self) }
        func decode(_: UInt32.Type) throws -> UInt32 { try decoder.source.reader.read(UInt32.self) }
        func decode(_: UInt64.Type) throws -> UInt64 { try decoder.source.reader.read(UInt64.self) }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(type) }
    }
}
