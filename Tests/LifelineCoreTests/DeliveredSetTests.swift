#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import LifelineCore

/// The delivered set of one channel: a watermark plus the exceptions above it.
struct DeliveredSetTests {
    private func seq(_ value: UInt64) -> SequenceNumber { SequenceNumber(value) }

    private func roundTrip(_ set: DeliveredSet) throws -> DeliveredSet {
        var writer = ByteWriter()
        set.encode(into: &writer)
        var reader = ByteReader(writer.bytes)
        let decoded = try DeliveredSet.decode(from: &reader)
        #expect(reader.isAtEnd, "decode left \(reader.remainingCount) bytes")
        return decoded
    }

    @Test func emptySetContainsNothing() {
        let set = DeliveredSet()
        #expect(set.count == 0)
        #expect(set.watermark == seq(0))
        #expect(set.above.isEmpty)
        #expect(!set.contains(seq(0)))
        #expect(!set.contains(seq(UInt64.max)))
    }

    @Test func inOrderInsertsOnlyMoveTheWatermark() {
        var set = DeliveredSet()
        for value in UInt64(0)..<100 {
            #expect(set.insert(seq(value)) == true, "in-order insert \(value) rejected")
            #expect(set.watermark == seq(value + 1))
            #expect(set.above.isEmpty, "in-order insert \(value) left exceptions \(set.above)")
        }
        #expect(set.count == 100)
        #expect(set.contains(seq(99)))
        #expect(!set.contains(seq(100)))
    }

    @Test func outOfOrderInsertsAreKeptSortedAboveTheWatermark() {
        var set = DeliveredSet()
        for value in [UInt64(7), 3, 5, 9, 4] { #expect(set.insert(seq(value)) == true) }
        #expect(set.watermark == seq(0))
        #expect(set.above == [3, 4, 5, 7, 9].map(seq))
        #expect(set.count == 5)
        for value in UInt64(0)..<12 {
            #expect(set.contains(seq(value)) == [3, 4, 5, 7, 9].contains(value), "contains \(value)")
        }
    }

    @Test func watermarkAdvanceAbsorbsTheRunAbove() {
        var set = DeliveredSet()
        for value in [UInt64(1), 2, 3, 5, 6, 9] { set.insert(seq(value)) }
        #expect(set.insert(seq(0)) == true)
        #expect(set.watermark == seq(4), "0 filled the gap below 1…3: the watermark must pass them")
        #expect(set.above == [5, 6, 9].map(seq))
        #expect(set.insert(seq(4)) == true)
        #expect(set.watermark == seq(7))
        #expect(set.above == [seq(9)])
        #expect(set.insert(seq(8)) == true)
        #expect(set.watermark == seq(7), "8 is not the watermark: it must not move")
        #expect(set.above == [seq(8), seq(9)])
        #expect(set.insert(seq(7)) == true)
        #expect(set.watermark == seq(10))
        #expect(set.above.isEmpty)
        #expect(set.count == 10)
    }

    @Test func duplicatesAreRejectedBelowAndAboveTheWatermark() {
        var set = DeliveredSet()
        for value in [UInt64(0), 1, 2, 6] { set.insert(seq(value)) }
        let before = set
        #expect(set.insert(seq(1)) == false, "a delivery below the watermark was accepted twice")
        #expect(set.insert(seq(6)) == false, "an exception above the watermark was accepted twice")
        #expect(set == before, "a rejected duplicate changed the set")
        #expect(set.count == 4)
    }

    @Test func restoredSetKeepsItsParts() throws {
        let set = DeliveredSet(watermark: seq(10), above: [seq(12), seq(40)])
        #expect(set.count == 12)
        #expect(set.contains(seq(9)) && !set.contains(seq(10)) && set.contains(seq(12)) && !set.contains(seq(13)))
        #expect(try roundTrip(set) == set)
        #expect(try roundTrip(DeliveredSet()) == DeliveredSet())
    }

    @Test func encodingIsWatermarkCountThenEntriesLittleEndian() {
        var writer = ByteWriter()
        DeliveredSet(watermark: seq(2), above: [seq(4)]).encode(into: &writer)
        #expect(writer.bytes == [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0])
    }

    /// Hand-written encodings: watermark (UInt64), count (UInt32), entries (UInt64 each).
    private func encoded(watermark: UInt64, count: UInt32, entries: [UInt64]) -> [UInt8] {
        var writer = ByteWriter()
        writer.write(watermark)
        writer.write(count)
        for entry in entries { writer.write(entry) }
        return writer.bytes
    }

    private func decodes(_ bytes: [UInt8]) -> Bool {
        var reader = ByteReader(bytes)
        return (try? DeliveredSet.decode(from: &reader)) != nil
    }

    @Test func decodeRejectsUnsortedOrBelowWatermarkEntries() {
        #expect(decodes(encoded(watermark: 3, count: 2, entries: [5, 8])), "a valid encoding was refused")
        #expect(!decodes(encoded(watermark: 3, count: 2, entries: [8, 5])), "unsorted entries accepted")
        #expect(!decodes(encoded(watermark: 3, count: 2, entries: [5, 5])), "a repeated entry accepted")
        #expect(!decodes(encoded(watermark: 3, count: 1, entries: [3])), "an entry equal to the watermark accepted")
        #expect(!decodes(encoded(watermark: 3, count: 1, entries: [1])), "an entry below the watermark accepted")
    }

    @Test func decodeRejectsShortInput() {
        let valid = encoded(watermark: 3, count: 2, entries: [5, 8])
        for length in 0..<valid.count {
            #expect(!decodes(Array(valid.prefix(length))), "a set cut to \(length) of \(valid.count) bytes decoded")
        }
        #expect(!decodes(encoded(watermark: 0, count: UInt32.max, entries: [1])), "a huge claimed count decoded")
    }

    /// Thousands of random inserts against `Set<UInt64>`, in bursts near the watermark (as
    /// receives by tag produce) and far above it; every query, count and round trip agrees.
    @Test func seededRandomOperationsMatchASetModel() throws {
        let seedCount = getenv("LIFELINE_SIM_SEEDS").flatMap { UInt64(String(cString: $0)) }.map { max($0 / 10, 50) } ?? 50
        for seed in UInt64(1)...seedCount {
            var generator = SplitMix64(seed: seed &* 0x9E37)
            var set = DeliveredSet()
            var model = Set<UInt64>()
            var lowest: UInt64 = 0  // the model's watermark
            for operation in 0..<4000 {
                let value: UInt64
                switch Int.random(in: 0..<10, using: &generator) {
                case 0..<6: value = lowest + UInt64.random(in: 0..<8, using: &generator)
                case 6..<9: value = UInt64.random(in: 0..<(lowest + 64), using: &generator)
                default: value = lowest + UInt64.random(in: 0..<10_000, using: &generator)
                }
                let inserted = set.insert(seq(value))
                let expected = model.insert(value).inserted
                guard inserted == expected else {
                    Issue.record("seed \(seed) op \(operation): insert \(value) returned \(inserted), model \(expected)")
                    return
                }
                while model.contains(lowest) { lowest += 1 }
                let probe = UInt64.random(in: 0..<(lowest + 100), using: &generator)
                guard set.contains(seq(probe)) == model.contains(probe), set.count == model.count,
                      set.watermark == seq(lowest)
                else {
                    Issue.record("seed \(seed) op \(operation): contains(\(probe)) \(set.contains(seq(probe))), count \(set.count) vs \(model.count), watermark \(set.watermark.rawValue) vs \(lowest)")
                    return
                }
                if operation % 500 == 0 {
                    #expect(try roundTrip(set) == set, "seed \(seed) op \(operation): round trip")
                }
            }
            #expect(set.above == model.filter { $0 > lowest }.sorted().map(seq), "seed \(seed): exceptions")
            #expect(zip(set.above, set.above.dropFirst()).allSatisfy { $0 < $1 }, "seed \(seed): exceptions unsorted")
            #expect(try roundTrip(set) == set, "seed \(seed): final round trip")
        }
    }
}
