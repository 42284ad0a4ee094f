/// The set of sequence numbers a rank has delivered on one channel.
///
/// Receiving by tag can deliver a channel's messages out of order, so the set is kept compactly
/// as a high-water mark (every number below it is delivered) plus the delivered numbers above it.
///
/// Invariant: every element of `above` is greater than `watermark`, so the watermark cannot be
/// advanced further (`watermark` itself is not in `above`).
package struct DeliveredSet: Sendable, Equatable {
    /// Every sequence number below this one has been delivered.
    package private(set) var watermark: SequenceNumber
    /// Delivered sequence numbers at or above the watermark, sorted ascending.
    package private(set) var above: [SequenceNumber]

    /// The empty set.
    package init() {
        watermark = SequenceNumber(0)
        above = []
    }

    /// A set restored from its parts; `above` must be sorted and above the watermark.
    package init(watermark: SequenceNumber, above: [SequenceNumber]) {
        precondition(zip(above, above.dropFirst()).allSatisfy { $0 < $1 }, "delivered set not sorted")
        precondition(above.first.map { $0 > watermark } ?? true, "delivered set below watermark")
        self.watermark = watermark
        self.above = above
    }

    /// Whether `sequence` has been delivered.
    package func contains(_ sequence: SequenceNumber) -> Bool {
        sequence < watermark || binarySearch(sequence) != nil
    }

    /// Records a delivery; returns false when it was already delivered (a duplicate).
    @discardableResult
    package mutating func insert(_ sequence: SequenceNumber) -> Bool {
        if contains(sequence) { return false }
        if sequence == watermark {
            watermark = watermark.next
            var dropCount = 0
            while dropCount < above.count, above[dropCount] == watermark {
                watermark = watermark.next
                dropCount += 1
            }
            above.removeFirst(dropCount)
        } else {
            let index = above.firstIndex { $0 > sequence } ?? above.endIndex
            above.insert(sequence, at: index)
        }
        return true
    }

    /// Whether no sequence number is in the set.
    package var isEmpty: Bool { watermark.rawValue == 0 && above.isEmpty }

    /// The number of delivered sequence numbers.
    package var count: Int { Int(watermark.rawValue) + above.count }

    private func binarySearch(_ sequence: SequenceNumber) -> Int? {
        var low = 0
        var high = above.count
        while low < high {
            let middle = (low + high) / 2
            if above[middle] == sequence { return middle }
            if above[middle] < sequence { low = middle + 1 } else { high = middle }
        }
        return nil
    }

    /// Appends the set to `writer`.
    package func encode(into writer: inout ByteWriter) {
        writer.write(watermark.rawValue)
        writer.write(UInt32(above.count))
        for sequence in above { writer.write(sequence.rawValue) }
    }

    /// Reads a set written by `encode(into:)`, checking its invariant.
    package static func decode(from reader: inout ByteReader) throws(WireError) -> DeliveredSet {
        let watermark = SequenceNumber(try reader.read(UInt64.self))
        let count = Int(try reader.read(UInt32.self))
        guard count <= reader.remainingCount / 8 else { throw WireError("delivered set claims \(count) entries") }
        var above: [SequenceNumber] = []
        above.reserveCapacity(count)
        for _ in 0..<count { above.append(SequenceNumber(try reader.read(UInt64.self))) }
        guard zip(above, above.dropFirst()).allSatisfy({ $0 < $1 }),
              above.first.map({ $0 > watermark }) ?? true
        else { throw WireError("delivered set out of order") }
        return DeliveredSet(watermark: watermark, above: above)
    }
}

/// Bytes from a peer or a file that do not decode: a protocol event, not a bug.
package struct WireError: Error, Sendable, CustomStringConvertible {
    /// What was wrong.
    package var description: String
    /// Describes a decoding failure.
    package init(_ description: String) { self.description = description }
}
