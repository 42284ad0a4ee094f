import LifelineCore

/// Collectives, built on point-to-point messages so that checkpoints and replay cover them.
/// Each uses its own reserved (negative) tag; all go through rank order, so reductions give the
/// same bits on every run.
extension Communicator {
    private enum CollectiveTag: Int64 {
        case broadcast = -1, gather = -2
    }

    /// Sends `values` from `root` to every rank; every rank returns root's values.
    public func broadcast<T: BitwiseCopyable>(_ values: [T], root: Int) throws -> [T] {
        let rootID = try checkedRank(root)
        if rank == root {
            let bytes = valuesToBytes(values)
            for destination in 0..<size where destination != root {
                try runtime.send(bytes, to: RankID(destination), tag: CollectiveTag.broadcast.rawValue)
            }
            return values
        }
        return try runtime.receive(from: rootID, tag: CollectiveTag.broadcast.rawValue).values(as: T.self)
    }

    /// Collects every rank's `values` at `root`, in rank order; other ranks get nil.
    public func gather<T: BitwiseCopyable>(_ values: [T], root: Int) throws -> [[T]]? {
        let rootID = try checkedRank(root)
        guard rank == root else {
            try runtime.send(valuesToBytes(values), to: rootID, tag: CollectiveTag.gather.rawValue)
            return nil
        }
        // One batch: with pessimistic logging the contributions share one log write.
        let others = (0..<size).filter { $0 != root }
        var received = try runtime.receive(all: others.map { (RankID($0), CollectiveTag.gather.rawValue) })
            .map { $0.values(as: T.self) }
        received.insert(values, at: root)
        return received
    }

    /// Collects every rank's `values` at every rank, in rank order.
    public func allgather<T: BitwiseCopyable>(_ values: [T]) throws -> [[T]] {
        let gathered = try gather(values, root: 0)
        let lengths = try broadcast(gathered?.map { Int64($0.count) } ?? [], root: 0)
        let flat = try broadcast(gathered?.flatMap { $0 } ?? [], root: 0)
        var result: [[T]] = []
        var start = 0
        for length in lengths {
            result.append(Array(flat[start..<start + Int(length)]))
            start += Int(length)
        }
        return result
    }

    /// Combines every rank's `values` element by element and returns the result on every rank.
    /// Rank 0 combines them in rank order, so the result is the same bits on every run.
    public func allreduce<T: BitwiseCopyable & AdditiveArithmetic & Comparable>(
        _ values: [T], _ operation: ReduceOperation
    ) throws -> [T] {
        let gathered = try gather(values, root: 0)
        var combined: [T] = []
        if let gathered {
            guard gathered.allSatisfy({ $0.count == values.count }) else {
                throw LifelineError(.usage, "allreduce needs the same number of values on every rank")
            }
            combined = gathered[0]
            for contribution in gathered.dropFirst() {
                for index in combined.indices {
                    switch operation {
                    case .sum: combined[index] += contribution[index]
                    case .min: combined[index] = Swift.min(combined[index], contribution[index])
                    case .max: combined[index] = Swift.max(combined[index], contribution[index])
                    }
                }
            }
        }
        return try broadcast(combined, root: 0)
    }

    /// Waits until every rank has reached the barrier.
    public func barrier() throws {
        _ = try allreduce([Int64(0)], .sum)
    }
}
