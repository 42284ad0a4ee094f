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
    /// The bytes a dependency vector takes in front of a payload on the wire and in the log.
    package static func prefixBytes(rankCount: Int) -> Int { 8 * rankCount }

    /// `vector` in front of `payload`, as it travels and as the receiver logs it.
    package static func stamp(_ payload: [UInt8], with vector: [UInt64]) -> [UInt8] {
        var writer = ByteWriter(capacity: 8 * vector.count + payload.count)
        for entry in vector { writer.write(entry) }
        writer.writeRaw(payload)
        return writer.bytes
    }

    /// Splits a stamped payload into its sender's vector and the program's bytes; nil when it
    /// is too short to hold a vector for `rankCount` ranks.
    package static func split(_ stamped: [UInt8], rankCount: Int) -> (vector: [UInt64], payload: [UInt8])? {
        let prefix = prefixBytes(rankCount: rankCount)
        guard stamped.count >= prefix else { return nil }
        var reader = ByteReader(Array(stamped[..<prefix]))
        var vector: [UInt64] = []
        vector.reserveCapacity(rankCount)
        for _ in 0..<rankCount {
            guard let entry = try? reader.read(UInt64.self) else { return nil }
            vector.append(entry)
        }
        return (vector, Array(stamped[prefix...]))
    }

    /// The receiver's vector after delivering a message stamped with `sender`'s vector.
    package static func afterDelivery(_ vector: [UInt64], of rank: RankID, sender: [UInt64]) -> [UInt64] {
        precondition(vector.count == sender.count)
        var result = zip(vector, sender).map { max($0, $1) }
        result[rank.rawValue] += 1
        return result
    }

    /// Whether a rank with `vector` depends on a state of `failed` beyond `recoverable`.
    package static func isOrphan(_ vector: [UInt64], failed: RankID, recoverable: UInt64) -> Bool {
        vector[failed.rawValue] > recoverable
    }

    /// How many of `records` (logged after a checkpoint whose vector was `start`) rank `rank`
    /// replays when `failed` can recover only up to `recoverable`: all of them until the first
    /// delivery that would make it depend on a lost state of `failed`. Stamped delivery records
    /// carry their sender's vector; a value record starts an interval and depends on nothing.
    package static func replayLength(
        _ records: [LogRecord], start: [UInt64], rank: RankID, failed: RankID, recoverable: UInt64
    ) -> Int {
        var vector = start
        for (index, record) in records.enumerated() {
            switch record {
            case .delivery(_, let payload):
                guard let (sender, _) = split(payload, rankCount: vector.count) else { return index }
                let next = afterDelivery(vector, of: rank, sender: sender)
                if isOrphan(next, failed: failed, recoverable: recoverable) { return index }
                vector = next
            case .value:
                vector[rank.rawValue] += 1
                if isOrphan(vector, failed: failed, recoverable: recoverable) { return index }
            case .determinant:
                return index  // not an optimistic log
            }
        }
        return records.count
    }
}
