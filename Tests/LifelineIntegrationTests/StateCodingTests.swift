import Foundation
import Testing
@testable import Lifeline
import LifelineStorage

/// `Checkpointable` for `Codable` states: every shape `Codable` makes comes back equal, numeric
/// arrays take the raw, shuffled path, and damaged bytes are refused, in process.
@Suite struct StateCodingTests {
    enum Phase: String, Codable { case warmup, solve }
    enum Event: Codable, Equatable { case started(at: Int), stopped(reason: String, code: Int32?), idle }
    struct Inner: Codable, Equatable { var name: String; var weights: [Float]; var flag: Bool }

    struct State: Codable, Checkpointable, Equatable {
        var step = 0
        var residual = 0.0
        var field: [Double] = []
        var counts: [Int32] = []
        var label = ""
        var done = false
        var note: String?
        var limit: Int?
        var inner = Inner(name: "", weights: [], flag: false)
        var phase = Phase.warmup
        var events: [Event] = []
        var table: [String: Int] = [:]
        var seen: Set<Int> = []
        var rows: [[Double]] = []
        var gaps: [Int?] = []
        var nested: [Inner]? = nil
        var maybeField: [Double]? = nil
        var maybeRows: [[Double]?] = []
    }

    static let full = State(
        step: 42, residual: -1.5e-12, field: (0..<1000).map { sin(Double($0)) }, counts: [3, -7, Int32.max],
        label: "cg ✓", done: true, note: nil, limit: 17, inner: Inner(name: "halo", weights: [0.5, 2], flag: true),
        phase: .solve, events: [.started(at: 3), .stopped(reason: "converged", code: nil), .idle],
        table: ["a": 1, "bb": 22], seen: [5, 1, 9], rows: [[1, 2], [], [3]], gaps: [1, nil, 3],
        nested: [Inner(name: "x", weights: [], flag: false)],
        maybeField: Array(repeating: 0.25, count: 256), maybeRows: [nil, [1.5], Array(repeating: 2, count: 512)])

    @Test func everyShapeComesBackEqual() throws {
        for state in [Self.full, State()] {
            var writer = StateWriter()
            state.encode(to: &writer)
            var reader = StateReader(writer.bytes)
            #expect(try State(from: &reader) == state)
            #expect(reader.isAtEnd, "the decoder read exactly what the encoder wrote")
        }
    }

    /// States past `HugePages.bytesMin` grow into storage of their own (advised for huge pages):
    /// what was written before the growth, the large arrays and the fields after them all read
    /// back, into a fresh writer and into a recycled buffer alike.
    /// A Bool read from a byte that is neither 0 nor 1 (another type's state, or damage) is
    /// thrown as corrupt; loaded as it is it would be an invalid Bool.
    @Test func aBoolFromAByteThatIsNoBoolIsRefused() throws {
        var writer = StateWriter()
        writer.write(true)
        writer.write(UInt8(7))
        var reader = StateReader(writer.bytes)
        #expect(try reader.read(Bool.self) == true)
        #expect(throws: LifelineError.self) { _ = try reader.read(Bool.self) }
    }

    @Test func largeStatesGrowIntoNewStorageAndReadBack() throws {
        let small = (0..<100).map { Double($0) * 0.5 }
        let large = (0..<(HugePages.bytesMin / 8 + 12_345)).map { Double($0).squareRoot() }
        let larger = [UInt32]((0..<(HugePages.bytesMin / 2)).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) })
        for recycled in [[UInt8](), HugePages.zeroed(count: HugePages.bytesMin + 3)] {
            var writer = StateWriter(recycling: recycled)
            writer.write(Int64(7))
            writer.write(numeric: small)
            writer.write(numeric: large)
            writer.write(Int64(8))
            writer.write(larger)
            writer.write(Int64(9))
            #expect(writer.bytes.capacity >= writer.bytes.count)
            var reader = StateReader(writer.bytes)
            #expect(try reader.read(Int64.self) == 7)
            #expect(try reader.readArray(of: Double.self) == small)
            #expect(try reader.readArray(of: Double.self) == large)
            #expect(try reader.read(Int64.self) == 8)
            #expect(try reader.readArray(of: UInt32.self) == larger)
            #expect(try reader.read(Int64.self) == 9)
            #expect(reader.isAtEnd)
            #expect(writer.numericRanges.map(\.count) == [small.count * 8, large.count * 8])
        }
        #expect(HugePages.zeroed(count: HugePages.bytesMin + 3).allSatisfy { $0 == 0 })
    }

    /// A writer over memory that is not its own (a level-1 copy's pages): every shape writes
    /// the bytes an array-backed writer writes, in place while they fit (patches included); a
    /// state that outgrows the memory moves into an array with what was written; and a copy of
    /// the writer that writes on gets storage of its own rather than writing over the other's.
    @Test func aWriterOverExternalMemoryWritesTheSameBytes() throws {
        var plain = StateWriter()
        Self.full.encode(to: &plain)
        let expected = plain.bytes
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: expected.count + 100, alignment: 16)
        defer { memory.deallocate() }
        for room in [expected.count + 100, expected.count, expected.count / 2, 3] {
            memory.initializeMemory(as: UInt8.self, repeating: 0xEE)
            // No other reference to the memory's box: a writer that shares it moves out.
            var writer = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: room))
            Self.full.encode(to: &writer)
            #expect(writer.bytes == expected, "room \(room)")
            #expect(writer.count == expected.count)
            #expect(writer.numericRanges == plain.numericRanges)
            #expect(writer.writesExternally == (room >= expected.count), "room \(room): in place exactly when it fits")
            if writer.writesExternally {
                #expect(Array(memory[0..<expected.count]) == expected, "the bytes are in the external memory")
                #expect(memory[expected.count..<room].allSatisfy { $0 == 0xEE }, "nothing written past the state")
            }
            var reader = StateReader(writer.bytes)
            #expect(try State(from: &reader) == Self.full)
        }
        // Value semantics: a copy that writes moves out; the original's bytes stay its own.
        var first = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: memory.count))
        first.write(Int64(1))
        var second = first
        second.write(Int64(2))
        first.write(Int64(3))
        #expect(first.bytes == (withUnsafeBytes(of: Int64(1)) { Array($0) } + withUnsafeBytes(of: Int64(3)) { Array($0) }))
        #expect(second.bytes == (withUnsafeBytes(of: Int64(1)) { Array($0) } + withUnsafeBytes(of: Int64(2)) { Array($0) }))
        #expect(first.writesExternally != second.writesExternally, "one of them moved out")
    }

    @Test func aStateWrittenIntoExternalMemoryIsHashedAsItIsWritten() {
        let piece = MemoryLevel.copyPieceBytes
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 * piece, alignment: 16)
        defer { memory.deallocate() }
        func written(_ writer: StateWriter) -> ContentHash {
            ContentHash(of: UnsafeRawBufferPointer(start: memory.baseAddress, count: writer.count))
        }
        // A small write, an array that spans pieces, a piece's worth of small writes, a tail.
        var writer = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: memory.count))
        writer.write(Int32(7))
        writer.write(numeric: (0..<(piece / 8 + 1000)).map { Double($0) * 0.5 })
        for index in 0..<(piece / 8 + 3) { writer.write(UInt64(index)) }
        writer.write("tail")
        #expect(writer.writesExternally)
        #expect(writer.count > 2 * piece)
        #expect(writer.takeExternalHash() == written(writer))
        // A patch of bytes not hashed yet keeps the hash taken as they were written.
        var patched = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: memory.count))
        patched.write(Int64(0))
        patched.write(Int64(5))
        patched.patch(Int64(9), at: 0)
        #expect(patched.takeExternalHash() == written(patched))
        // A patch of bytes hashed already leaves the hash to be taken over them all.
        var late = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: memory.count))
        late.write(Int64(0))
        late.write([UInt8](repeating: 1, count: piece + 1))
        late.patch(Int64(9), at: 0)
        #expect(late.takeExternalHash() == nil)
        // A `Codable` state: an unkeyed container's count, rewritten after each element, holds
        // the hash back from there, so the hash taken as it was written is still whole.
        struct Lines: Codable, Checkpointable { var lines: [String] }
        var coded = StateWriter(into: ExternalBytes(base: memory.baseAddress!, capacity: memory.count))
        Lines(lines: (0..<1500).map { String(repeating: "x", count: 1000) + "\($0)" }).encode(to: &coded)
        #expect(coded.writesExternally && coded.count > piece)
        #expect(coded.takeExternalHash() == written(coded))
        // A writer of its own has no such hash.
        var own = StateWriter()
        own.write(Int64(1))
        #expect(own.takeExternalHash() == nil)
    }

    @Test func numericArraysAreWrittenRawAndShuffled() {
        var writer = StateWriter()
        Self.full.encode(to: &writer)
        let fieldBytes = Self.full.field.count * 8
        #expect(writer.numericRanges.contains { $0.count == fieldBytes }, "\(writer.numericRanges)")
        // Optional arrays too: raw, after their presence byte.
        #expect(writer.numericRanges.contains { $0.count == 256 * 8 } && writer.numericRanges.contains { $0.count == 512 * 8 })
        // About the numbers' bytes and little else: no per-element tags or keys.
        let numbers = (Self.full.field.count + 256 + 513) * 8
        #expect(writer.bytes.count < numbers + 800, "\(writer.bytes.count) bytes")
    }

    @Test func damagedOrShortBytesAreRefused() {
        var writer = StateWriter()
        Self.full.encode(to: &writer)
        for length in [0, 1, 9, writer.bytes.count / 2, writer.bytes.count - 1] {
            var reader = StateReader(Array(writer.bytes.prefix(length)))
            #expect(throws: (any Error).self, "\(length) bytes decoded") { try State(from: &reader) }
        }
        var marker = writer.bytes
        marker[0] = 7  // the first field's marker
        var reader = StateReader(marker)
        #expect(throws: LifelineError.self) { try State(from: &reader) }
    }

    struct Renamed: Codable, Checkpointable { var iteration = 0 }
    struct Original: Codable, Checkpointable { var step = 0 }

    @Test func aStateWrittenWithOtherFieldsIsRefusedByName() {
        var writer = StateWriter()
        Original(step: 3).encode(to: &writer)
        var reader = StateReader(writer.bytes)
        #expect {
            _ = try Renamed(from: &reader)
        } throws: { error in
            "\(error)".contains("field step where iteration was expected")
        }
    }
}

extension RecoveryTests {
    /// The README's program (`Examples/Ring`), whose state is a plain `Codable` struct,
    /// restores it after a kill and prints the failure-free total.
    @Test func theReadmeProgramWithACodableStateRecovers() throws {
        let scratch = JobRunner.scratch("ring")
        let free = try JobRunner.lifeline(
            ["run", "-n", "3", "--interval", "0.05", "--run-dir", scratch + "/free", "--quiet", "--", "ring"],
            runDirectory: scratch + "/free")
        let total = free.stdout.split(separator: "\n").filter { $0.hasPrefix("total ") }
        #expect(free.status == 0 && total.count == 1, "\(free.stdout)\(free.stderr)")
        let killed = try JobRunner.lifeline(
            ["run", "-n", "3", "--interval", "0.05", "--run-dir", scratch + "/killed", "--quiet",
             "--inject", "kill:rank=1,step=700", "--", "ring"],
            runDirectory: scratch + "/killed")
        #expect(killed.status == 0, "\(killed.stderr)")
        #expect(killed.stdout.split(separator: "\n").filter { $0.hasPrefix("total ") } == total)
        // A line committed before the kill is restored (from its Codable snapshots).
        let failedAt = killed.events("failure").first?["t"] as? Double ?? 0
        if killed.events("commit").contains(where: { ($0["t"] as? Double ?? .infinity) < failedAt }) {
            let restored = killed.events("rank_launched").compactMap { $0["step"] as? Int }.filter { $0 > 0 }
            #expect(restored.count == 3, "the ranks restarted from the beginning: no Codable state was restored")
        }
    }
}

extension RecoveryTests {
    /// The README's program is `Examples/Ring/Ring.swift` from `import Lifeline` on, so the
    /// code a newcomer copies is the code CI compiles (Swift 6 language mode) and runs above.
    @Test func theReadmeProgramIsTheRingExample() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        let ring = try String(contentsOf: root.appendingPathComponent("Examples/Ring/Ring.swift"), encoding: .utf8)
        let program = try #require(ring.range(of: "import Lifeline")).lowerBound
        let expected = "```swift\n" + ring[program...].trimmingCharacters(in: .whitespacesAndNewlines) + "\n```"
        #expect(readme.contains(expected), "README.md's program differs from Examples/Ring/Ring.swift")
    }
}

extension StateCodingTests {
    class Base: Codable { var id = 7 }
    final class Derived: Base, @unchecked Sendable {
        var extra = [1.0, 2.0]
        enum Keys: String, CodingKey { case extra }
        override init() { super.init() }
        required init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Keys.self)
            extra = try container.decode([Double].self, forKey: .extra)
            try super.init(from: container.superDecoder())
        }
        override func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: Keys.self)
            try container.encode(extra, forKey: .extra)
            try super.encode(to: container.superEncoder())
        }
    }
    struct Holder: Codable, Checkpointable { var object = Derived() }

    @Test func aSubclassEncodesItsSuperclassThroughSuperEncoder() throws {
        let holder = Holder()
        holder.object.id = 99
        var writer = StateWriter()
        holder.encode(to: &writer)
        var reader = StateReader(writer.bytes)
        let back = try Holder(from: &reader)
        #expect(back.object.id == 99 && back.object.extra == [1.0, 2.0] && reader.isAtEnd)
    }
}
