import LifelineCore
import LifelineStorage

/// One rank's local checkpoint: where it was, its channels (retained messages and delivered
/// sets), and the program's own state bytes.
///
/// Layout (before compression): magic `LLSN`, version (4), rank, rank count, epoch, step,
/// incarnation, message-log position, the dependency vector (UInt32 word count, then rank,
/// interval and epoch per entry as UInt64 words — `DependencyVector.words`; optimistic logging,
/// else empty; version 2 held one interval per rank, version 1 none), the ledger (only the
/// peers used — `MessageLedger.encode`; versions 1–3 held every rank), then the program state
/// with its length.
struct RankSnapshot: Equatable {
    private static let magic: UInt32 = 0x4E53_4C4C  // "LLSN"
    private static let version: UInt16 = 4

    /// The round it was captured for.
    var epoch: Epoch
    /// The safe point it was captured at.
    var step: Int
    /// The incarnation that captured it.
    var incarnation: UInt32
    /// The index of the next record of the rank's message log at capture: replay starts there.
    var logPosition: UInt64
    /// Optimistic logging: the rank's dependency vector at capture (see `DependencyVector`);
    /// empty otherwise.
    var dependencies = DependencyVector()
    /// Channel state.
    var ledger: MessageLedger
    /// What the program's `Checkpointable.encode(to:)` wrote.
    var programState: [UInt8]
    /// The ranges of `programState` the program declared numeric (`StateWriter.write(numeric:)`):
    /// written as their own segments, filtered by `delta2Shuffle8`. Not stored: the chunks'
    /// filters record it.
    var numericRanges: [Range<Int>] = []
    /// The length of a program state captured straight into the rank's copy in memory
    /// (`MemoryLevel.openCapture`), which `programState` then does not hold; nil otherwise.
    var stateInMemoryCopy: Int?

    /// Everything but the program state: the layout above up to and including the state's
    /// length (the first segment of `encoded()`; a level-1 copy stores it after the state).
    func metadata() -> [UInt8] {
        var writer = ByteWriter(capacity: ledger.retainedBytes + 256)
        writer.write(Self.magic)
        writer.write(Self.version)
        writer.write(UInt32(ledger.rank.rawValue))
        writer.write(UInt32(ledger.rankCount))
        writer.write(epoch.rawValue)
        writer.write(Int64(step))
        writer.write(incarnation)
        writer.write(logPosition)
        let words = dependencies.words
        writer.write(UInt32(words.count))
        for word in words { writer.write(word) }
        ledger.encode(into: &writer)
        writer.write(UInt64(stateInMemoryCopy ?? programState.count))
        return writer.bytes
    }

    /// The uncompressed bytes, as segments to be chunked apart: the header and ledger (up to
    /// and including the state's length), then the program state — cut at the ranges declared
    /// numeric, which are filtered (linear prediction, then byte planes). The state's chunks thus start at its own offset 0 and
    /// stay the same when the ledger before it changes length. Put together, the segments are
    /// the layout above. `metadata` is `metadata()` where the caller has it already.
    func encoded(metadata: [UInt8]? = nil) -> [ChunkedSnapshots.Segment] {
        precondition(stateInMemoryCopy == nil, "a state captured into memory is cut from its copy there")
        return Self.segments(metadata: metadata ?? self.metadata(), state: .array(programState), numericRanges: numericRanges)
    }

    /// `encoded()`'s segments over `metadata` and a program state held in `state`, with its
    /// ranges `numericRanges` declared numeric.
    static func segments(metadata: [UInt8], state: ChunkedSnapshots.Segment.Bytes, numericRanges: [Range<Int>]) -> [ChunkedSnapshots.Segment] {
        // The state's segments share its bytes: cutting them copies nothing.
        var segments = [ChunkedSnapshots.Segment(metadata)]
        var position = 0
        for range in numericRanges where range.lowerBound >= position && range.upperBound <= state.count {
            if range.lowerBound > position {
                segments.append(ChunkedSnapshots.Segment(state, range: position..<range.lowerBound))
            }
            segments.append(ChunkedSnapshots.Segment(state, range: range, filter: .delta2Shuffle8))
            position = range.upperBound
        }
        if position < state.count || position == 0 {
            segments.append(ChunkedSnapshots.Segment(state, range: position..<state.count))
        }
        return segments
    }

    /// The message-log position stored in snapshot `name`, read from its first chunk alone (the
    /// header leads the first segment).
    static func logPosition(of name: String, store: MirroredStore) throws -> UInt64 {
        let snapshots = ChunkedSnapshots(store: store)
        guard let first = try snapshots.index(name).chunks.first else { throw WireError("an empty snapshot") }
        var reader = ByteReader(try snapshots.readChunk(first))
        guard try reader.read(UInt32.self) == magic else { throw WireError("not a rank snapshot") }
        _ = try reader.read(UInt16.self)  // version: every one keeps this prefix
        _ = try reader.read(UInt32.self)  // rank
        _ = try reader.read(UInt32.self)  // rank count
        _ = try reader.read(UInt64.self)  // epoch
        _ = try reader.read(Int64.self)  // step
        _ = try reader.read(UInt32.self)  // incarnation
        return try reader.read(UInt64.self)
    }

    /// Decodes a snapshot and checks that it belongs to `rank` of `rankCount` at `epoch`. The
    /// program state, which ends the snapshot, keeps the storage of `bytes` (its head moved
    /// off in place) when the caller gives it up: a restore copies the state once, not twice.
    static func decode(_ bytes: consuming [UInt8], rank: RankID, rankCount: Int, epoch: Epoch) throws -> RankSnapshot {
        var owned = bytes
        var reader = ByteReader(owned)
        var (snapshot, stateCount) = try decodeMetadata(&reader, rank: rank, rankCount: rankCount, epoch: epoch)
        let stateOffset = reader.offset
        try checkStateLength(stateCount, remaining: reader.remainingCount, at: stateOffset, rank: rank, epoch: epoch)
        reader = ByteReader([])  // the reader's hold on the bytes ends here
        owned.removeSubrange(0..<stateOffset)
        snapshot.programState = owned
        return snapshot
    }

    /// Decodes a snapshot whose metadata (`metadata()`) and program state of `stateCount` bytes
    /// are stored apart (a level-1 copy), without its state, which the caller reads in place.
    static func decode(metadata: UnsafeRawBufferPointer, stateCount: Int, rank: RankID, rankCount: Int, epoch: Epoch) throws -> RankSnapshot {
        var reader = ByteReader(Array(metadata))
        let (snapshot, stored) = try decodeMetadata(&reader, rank: rank, rankCount: rankCount, epoch: epoch)
        guard reader.remainingCount == 0 else {
            throw LifelineError(.corruptState, "snapshot of \(rank) at \(epoch) does not decode: \(reader.remainingCount) stray bytes after its metadata")
        }
        try checkStateLength(stored, remaining: stateCount, at: 0, rank: rank, epoch: epoch)
        return snapshot
    }

    /// Checks that the state's length as stored is the `remaining` bytes there are.
    private static func checkStateLength(_ stored: UInt64, remaining: Int, at offset: Int, rank: RankID, epoch: Epoch) throws {
        guard stored != UInt64(remaining) else { return }
        let error = WireError(stored > UInt64(remaining)
            ? "length \(stored) at offset \(offset) runs past the end"
            : "\(UInt64(remaining) - stored) stray bytes at its end")
        throw LifelineError(.corruptState, "snapshot of \(rank) at \(epoch) does not decode: \(error)")
    }

    /// Reads everything up to and including the state's length; the snapshot returned has no
    /// program state yet.
    private static func decodeMetadata(_ reader: inout ByteReader, rank: RankID, rankCount: Int, epoch: Epoch) throws -> (RankSnapshot, stateCount: UInt64) {
        do {
            guard try reader.read(UInt32.self) == magic else { throw WireError("not a rank snapshot") }
            let version = try reader.read(UInt16.self)
            guard (1...Self.version).contains(version) else {
                throw WireError("snapshot format \(version) is not \(Self.version) (or 1, 2 or 3)")
            }
            let storedRank = Int(try reader.read(UInt32.self))
            let storedCount = Int(try reader.read(UInt32.self))
            let storedEpoch = Epoch(try reader.read(UInt64.self))
            guard storedRank == rank.rawValue, storedCount == rankCount, storedEpoch == epoch else {
                throw WireError("it holds rank \(storedRank) of \(storedCount) at \(storedEpoch), not rank \(rank.rawValue) of \(rankCount) at \(epoch)")
            }
            let step = Int(try reader.read(Int64.self))
            let incarnation = try reader.read(UInt32.self)
            let logPosition = try reader.read(UInt64.self)
            var dependencies = DependencyVector()
            if version >= 2 {
                let count = Int(try reader.read(UInt32.self))
                guard count <= reader.remainingCount / 8 else { throw WireError("a dependency vector of \(count) words") }
                var words: [UInt64] = []
                for _ in 0..<count { words.append(try reader.read(UInt64.self)) }
                if version == 2 {
                    // Dense, one interval per rank, without epochs: kept until the end (never
                    // taken for stable).
                    guard count == 0 || count == rankCount else { throw WireError("a dependency vector of \(count) entries") }
                    dependencies = DependencyVector(dense: words, epoch: .max)
                } else {
                    guard let vector = DependencyVector(words: words, rankCount: rankCount) else {
                        throw WireError("a dependency vector that is not ascending ranks of the job")
                    }
                    dependencies = vector
                }
            }
            let ledger = try MessageLedger.decode(from: &reader, rank: rank, rankCount: rankCount, dense: version < 4)
            let stateCount = try reader.read(UInt64.self)
            return (RankSnapshot(
                epoch: epoch, step: step, incarnation: incarnation, logPosition: logPosition, dependencies: dependencies,
                ledger: ledger, programState: []), stateCount)
        } catch let error as WireError {
            throw LifelineError(.corruptState, "snapshot of \(rank) at \(epoch) does not decode: \(error)")
        }
    }
}
