/// A value per rank of the job, stored only for the ranks where it differs from `absent`: what a
/// rank keeps per peer (sequence numbers, delivered sets, retained messages, an inbox, obsolete
/// incarnations) costs memory for the peers it talks to, not for every rank of the job. At
/// 10,000 ranks a dense array per peer per rank is 10⁸ entries.
///
/// A job of `denseRanksMax` ranks or fewer stores every rank's value in an array instead: a
/// message reads and writes several of these, and an array access costs no hashing (with a
/// dictionary, hashing was a sixth of a message's cost in the runtime), while 64 values per
/// rank cost little.
///
/// It reads and writes like an array indexed by rank (`count` is the rank count); `used` lists
/// the ranks with a value, ascending, for loops that should cost what is used.
package struct PerPeer<Value: Sendable & Equatable>: RandomAccessCollection, MutableCollection, Sendable, Equatable {
    /// The value of a rank with none stored.
    package let absent: Value
    /// The number of ranks.
    package let rankCount: Int
    /// Whether every rank's value is stored (`values`) rather than those other than `absent`
    /// (`stored`): a job of `denseRanksMax` ranks or fewer.
    private let isDense: Bool
    /// Every rank's value, when dense (empty otherwise).
    private var values: [Value]
    /// The values other than `absent`, by rank, when sparse (empty otherwise).
    private var stored: [Int: Value]

    /// The most ranks for which every rank's value is stored.
    package static var denseRanksMax: Int { 64 }

    /// `absent` for each of `rankCount` ranks.
    package init(rankCount: Int, absent: Value) {
        self.rankCount = rankCount
        self.absent = absent
        self.isDense = rankCount <= Self.denseRanksMax
        self.values = isDense ? Array(repeating: absent, count: rankCount) : []
        self.stored = [:]
    }

    /// The values of an array (one per rank), `absent` where the array holds it.
    package init(_ values: [Value], absent: Value) {
        self.init(rankCount: values.count, absent: absent)
        if isDense {
            self.values = values
        } else {
            for (rank, value) in values.enumerated() where value != absent { stored[rank] = value }
        }
    }

    /// The first rank, 0.
    package var startIndex: Int { 0 }
    /// One past the last rank: the rank count.
    package var endIndex: Int { rankCount }

    /// The value of `rank` (`absent` where none is stored).
    package subscript(rank: Int) -> Value {
        get {
            precondition(rank >= 0 && rank < rankCount, "rank \(rank) of \(rankCount)")
            return isDense ? values[rank] : stored[rank] ?? absent
        }
        set {
            precondition(rank >= 0 && rank < rankCount, "rank \(rank) of \(rankCount)")
            if isDense {
                values[rank] = newValue
            } else if newValue == absent {
                stored[rank] = nil
            } else {
                stored[rank] = newValue
            }
        }
        _modify {
            precondition(rank >= 0 && rank < rankCount, "rank \(rank) of \(rankCount)")
            if isDense {
                yield &values[rank]
            } else {
                // The value moves out and back: appending to a rank's array does not copy it.
                var value = stored.removeValue(forKey: rank) ?? absent
                defer { if value != absent { stored[rank] = value } }
                yield &value
            }
        }
    }

    /// How many elements `rank`'s value holds, read in place.
    package func count(of rank: Int) -> Int where Value: Collection {
        isDense ? values[rank].count : stored[rank]?.count ?? absent.count
    }

    /// The ranks with a value other than `absent`, ascending.
    package var used: [Int] {
        isDense ? values.indices.filter { values[$0] != absent } : stored.keys.sorted()
    }

    /// The stored values (those other than `absent`) combined, in no particular order: a sum or
    /// a count that costs what is used.
    package func reduceUsed<Result>(_ initial: Result, _ combine: (Result, Value) -> Result) -> Result {
        isDense ? values.lazy.filter { $0 != absent }.reduce(initial, combine) : stored.values.reduce(initial, combine)
    }

    /// How many ranks have a value other than `absent`.
    package var usedCount: Int {
        isDense ? values.reduce(0) { $1 == absent ? $0 : $0 + 1 } : stored.count
    }

    /// Every rank's value (dense: for a small job, a test, or the wire's old layout).
    package var dense: [Value] { isDense ? values : (0..<rankCount).map { self[$0] } }

    /// Equal when they hold the same value for every rank.
    package static func == (lhs: PerPeer, rhs: PerPeer) -> Bool {
        guard lhs.rankCount == rhs.rankCount, lhs.absent == rhs.absent else { return false }
        return lhs.isDense ? lhs.values == rhs.values : lhs.stored == rhs.stored
    }
}

extension PerPeer where Value == DeliveredSet {
    /// Empty delivered sets for `rankCount` ranks.
    package init(rankCount: Int) { self.init(rankCount: rankCount, absent: DeliveredSet()) }
    /// The delivered sets of an array, one per rank.
    package init(_ sets: [DeliveredSet]) { self.init(sets, absent: DeliveredSet()) }
}

/// Per source (or per receiver) rank, a delivered set: what an ACK, a DONE and a TRIM carry.
package typealias DeliveredSets = PerPeer<DeliveredSet>

/// A value that stands for "none" where a `PerPeer` is written as an array literal.
package protocol PerPeerLiteralValue: Sendable, Equatable {
    /// The value of a rank with none stored, in a literal.
    static var absentInLiteral: Self { get }
}

extension DeliveredSet: PerPeerLiteralValue {
    /// The empty set.
    package static var absentInLiteral: DeliveredSet { DeliveredSet() }
}

extension Int: PerPeerLiteralValue {
    /// -1: no interval (a dependency vector's "none").
    package static var absentInLiteral: Int { -1 }
}

extension PerPeer: ExpressibleByArrayLiteral where Value: PerPeerLiteralValue {
    /// One value per rank, in rank order.
    package init(arrayLiteral values: Value...) { self.init(values, absent: .absentInLiteral) }
}
