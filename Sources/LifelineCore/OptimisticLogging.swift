/// The decisions of optimistic logging (`--logging optimistic`, Strom and Yemini's scheme):
/// every delivery goes to the receiver's log, flushed in the background, so a crash loses the
/// deliveries that had not reached the disk, and the state the rank reached through them.
///
/// *State intervals.* A rank's state interval is the number of deliveries (and logged values)
/// in its execution since the job started: each starts a new interval. Every rank keeps a
/// *dependency vector*: per rank, the newest state interval of that rank its own state depends
/// on, transitively (its own entry is its current interval). A message carries its sender's
/// vector; delivering it takes the componentwise maximum and then counts one more interval.
///
/// *Orphans.* When rank f fails and its log lets it recover up to interval r (its checkpoint's
/// interval plus the records on disk after it), every rank whose vector has an entry for f
/// above r depends on a state of f that no longer exists: it is an orphan. It rolls back to its
/// checkpoint (which, in a committed line, depends on nothing lost) and replays its own log only
/// up to its last record that keeps its entry for f at or below r; what it delivered after that
/// is dropped, and so is everything it sent from there on (the receivers of that are orphans
/// too, since vectors are transitive).
package enum OptimisticLogging {
    /// The bytes a stamp takes for a vector of `entries` entries (a count, then rank, interval
    /// and epoch per entry).
    package static func prefixBytes(entries: Int) -> Int { 4 + 20 * entries }

    /// `vector` in front of `payload`, as it travels and as the receiver logs it. (Written in
    /// place: every optimistic message carries one, and at 10,000 simulated ranks writing
    /// field by field took a tenth of the simulator's time.)
    package static func stamp(_ payload: [UInt8], with vector: DependencyVector) -> [UInt8] {
        let entries = vector.entries
        let prefix = prefixBytes(entries: entries.count)
        return [UInt8](unsafeUninitializedCapacity: prefix + payload.count) { buffer, initializedCount in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: UInt32(entries.count).littleEndian, toByteOffset: 0, as: UInt32.self)
            var offset = 4
            for entry in entries {
                raw.storeBytes(of: UInt32(entry.rank).littleEndian, toByteOffset: offset, as: UInt32.self)
                raw.storeBytes(of: entry.interval.littleEndian, toByteOffset: offset + 4, as: UInt64.self)
                raw.storeBytes(of: entry.epoch.littleEndian, toByteOffset: offset + 12, as: UInt64.self)
                offset += 20
            }
            payload.withUnsafeBytes { source in
                guard let from = source.baseAddress, let to = raw.baseAddress else { return }
                (to + offset).copyMemory(from: from, byteCount: source.count)
            }
            initializedCount = prefix + payload.count
        }
    }

    /// Splits a stamped payload into its sender's vector and the program's bytes; nil when it
    /// does not begin with a vector over `rankCount` ranks.
    package static func split(_ stamped: [UInt8], rankCount: Int) -> (vector: DependencyVector, payload: [UInt8])? {
        stamped.withUnsafeBytes { raw -> (vector: DependencyVector, payload: [UInt8])? in
            guard raw.count >= 4 else { return nil }
            let count = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
            guard count <= (raw.count - 4) / 20 else { return nil }
            let entries = (0..<count).map { index in
                let offset = 4 + 20 * index
                return DependencyVector.Entry(
                    rank: Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self))),
                    interval: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt64.self)),
                    epoch: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt64.self)))
            }
            guard let vector = DependencyVector(entries: entries, rankCount: rankCount) else { return nil }
            return (vector, Array(raw[(4 + 20 * count)...]))
        }
    }

    /// The receiver's vector after delivering a message stamped with `sender`'s vector, the
    /// receiver having last captured round `epoch` (what its new interval's entry carries, for
    /// `forgetStable`).
    package static func afterDelivery(_ vector: DependencyVector, of rank: RankID, sender: DependencyVector,
                                      epoch: UInt64) -> DependencyVector {
        var result = vector
        result.merge(sender)
        result.advance(rank.rawValue, epoch: epoch)
        return result
    }

    /// Whether a rank with `vector` depends on a state of `failed` beyond `recoverable`.
    package static func isOrphan(_ vector: DependencyVector, failed: RankID, recoverable: UInt64) -> Bool {
        vector.dependsBeyond(recoverable, of: failed)
    }

    /// How many of `records` (logged after a checkpoint whose vector was `start`) rank `rank`
    /// replays when `failed` can recover only up to `recoverable`: all of them until the first
    /// delivery that would make it depend on a lost state of `failed`. Stamped delivery records
    /// carry their sender's vector; a value record starts an interval and depends on nothing.
    package static func replayLength(
        _ records: [LogRecord], start: DependencyVector, rank: RankID, rankCount: Int, failed: RankID, recoverable: UInt64
    ) -> Int {
        replayLength(records, start: start, rank: rank, rankCount: rankCount,
                     limit: RecoveryPlan.ReplayLimit(rank: failed.rawValue, recoverable: recoverable))
    }

    /// The same for several failed ranks, each recoverable as far as `limit` says.
    package static func replayLength(
        _ records: [LogRecord], start: DependencyVector, rank: RankID, rankCount: Int, limit: RecoveryPlan.ReplayLimit
    ) -> Int {
        var vector = start
        for (index, record) in records.enumerated() {
            switch record {
            case .delivery(_, let payload):
                guard let (sender, _) = split(payload, rankCount: rankCount) else { return index }
                // Only the intervals count here; the vector is not kept (epoch labels unused).
                let next = afterDelivery(vector, of: rank, sender: sender, epoch: 0)
                if limit.orphans(next) { return index }
                vector = next
            case .value:
                vector.advance(rank.rawValue, epoch: 0)
                if limit.orphans(vector) { return index }
            case .determinant:
                return index  // not an optimistic log
            }
        }
        return records.count
    }
}

/// An optimistic rank's dependency vector, sparse: per rank, the newest state interval of that
/// rank its own state depends on, stored only where it is above 0 (the start, which every
/// checkpoint covers) and not yet stable. Each entry also records the round its rank had last
/// captured when it reached that interval (its *epoch*): once a later round commits, that rank's
/// checkpoint in the committed line comes after the interval, so no failure can lose it and
/// the entry is dropped (`forgetStable`). A vector then names the ranks whose unstable states
/// reached this one since the last commit, not every rank of the job: on a halo exchange a few
/// neighbours, at any rank count (Strom and Yemini's vectors omit stable states the same way).
package struct DependencyVector: Sendable, Equatable, ExpressibleByArrayLiteral {
    /// One rank's entry.
    package struct Entry: Sendable, Equatable {
        /// The rank.
        package var rank: Int
        /// The newest state interval of it depended on (above 0).
        package var interval: UInt64
        /// The round that rank had last captured when it reached the interval.
        package var epoch: UInt64
    }

    /// The entries, by ascending rank.
    package private(set) var entries: [Entry]

    /// No dependency: the start.
    package init() { entries = [] }

    /// The vector of a dense array (one interval per rank, every epoch 0): for tests and small jobs.
    package init(arrayLiteral intervals: UInt64...) { self.init(dense: intervals) }

    /// The vector of a dense array (one interval per rank, every epoch `epoch`).
    package init(dense intervals: [UInt64], epoch: UInt64 = 0) {
        entries = intervals.enumerated().compactMap { $0.element == 0 ? nil : Entry(rank: $0.offset, interval: $0.element, epoch: epoch) }
    }

    /// The interval of `rank` depended on (0: none beyond the start).
    package subscript(rank: Int) -> UInt64 {
        guard let index = position(of: rank) else { return 0 }
        return entries[index].interval
    }

    /// The ranks named, ascending.
    package var ranks: [Int] { entries.map(\.rank) }

    /// The index of `rank`'s entry.
    private func position(of rank: Int) -> Int? {
        var low = 0, high = entries.count
        while low < high {
            let middle = (low + high) / 2
            if entries[middle].rank < rank { low = middle + 1 } else { high = middle }
        }
        return low < entries.count && entries[low].rank == rank ? low : nil
    }

    /// `rank` enters its next state interval, having last captured round `epoch`.
    package mutating func advance(_ rank: Int, epoch: UInt64) {
        if let index = position(of: rank) {
            entries[index].interval += 1
            entries[index].epoch = epoch
        } else {
            let index = entries.firstIndex { $0.rank > rank } ?? entries.count
            entries.insert(Entry(rank: rank, interval: 1, epoch: epoch), at: index)
        }
    }

    /// The componentwise maximum with `other` (an equal interval keeps the later epoch).
    package mutating func merge(_ other: DependencyVector) {
        guard !other.entries.isEmpty else { return }
        var merged: [Entry] = []
        merged.reserveCapacity(entries.count + other.entries.count)
        var left = 0, right = 0
        while left < entries.count || right < other.entries.count {
            if right == other.entries.count || (left < entries.count && entries[left].rank < other.entries[right].rank) {
                merged.append(entries[left])
                left += 1
            } else if left == entries.count || other.entries[right].rank < entries[left].rank {
                merged.append(other.entries[right])
                right += 1
            } else {
                let (mine, theirs) = (entries[left], other.entries[right])
                merged.append(mine.interval != theirs.interval ? (mine.interval > theirs.interval ? mine : theirs)
                              : Entry(rank: mine.rank, interval: mine.interval, epoch: max(mine.epoch, theirs.epoch)))
                left += 1
                right += 1
            }
        }
        entries = merged
    }

    /// Round `committed` committed: every entry reached before its rank captured a round from
    /// `committed` on is inside that rank's committed checkpoint, and goes (`rank`'s own entry
    /// stays: it is stamped on what the rank sends).
    package mutating func forgetStable(committed: Epoch, except rank: Int) {
        entries.removeAll { $0.epoch < committed.rawValue && $0.rank != rank }
    }

    /// The entries as words, three per entry (rank, interval, epoch): how a snapshot stores them.
    package var words: [UInt64] { entries.flatMap { [UInt64($0.rank), $0.interval, $0.epoch] } }

    /// The vector a snapshot's words describe, or nil when they do not describe one for
    /// `rankCount` ranks.
    package init?(words: [UInt64], rankCount: Int) {
        guard words.count % 3 == 0, words.indices.allSatisfy({ $0 % 3 != 0 || words[$0] < UInt64(rankCount) }) else { return nil }
        self.init(entries: stride(from: 0, to: words.count, by: 3).map {
            Entry(rank: Int(words[$0]), interval: words[$0 + 1], epoch: words[$0 + 2])
        }, rankCount: rankCount)
    }

    /// The vector of `entries`, or nil unless they name ranks of the job in ascending order,
    /// each with an interval above 0.
    init?(entries: [Entry], rankCount: Int) {
        var previous = -1
        for entry in entries {
            guard entry.rank > previous, entry.rank < rankCount, entry.interval > 0 else { return nil }
            previous = entry.rank
        }
        self.entries = entries
    }

    /// Whether this vector depends on a state of `failed` beyond `recoverable`.
    package func dependsBeyond(_ recoverable: UInt64, of failed: RankID) -> Bool {
        self[failed.rawValue] > recoverable
    }

    /// The intervals depended on, by rank (what a freeze answers).
    package func intervals(rankCount: Int) -> PerPeer<Int> {
        var result = PerPeer(rankCount: rankCount, absent: -1)
        for entry in entries where entry.rank < rankCount { result[entry.rank] = Int(clamping: entry.interval) }
        return result
    }
}
