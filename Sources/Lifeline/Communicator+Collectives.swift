import LifelineCore

/// Collectives, built on point-to-point messages so that checkpoints and replay cover them.
/// Each uses its own reserved (negative) tag, and every rank must call the same collectives in
/// the same order, as in MPI.
///
/// Reductions combine along a binomial tree of fixed shape rooted at `root` (rank `root + i`
/// combines what ranks `root + i + 2^k` bring, for k upwards, the lower ranks' part on the left):
/// no rank handles more than ⌈log₂ N⌉ messages, and a floating-point sum gives the same bits on
/// every run with the same rank count and root. Another rank count (or root) associates the
/// terms differently, so its bits may differ; `allreduce(exactSum:)` gives the same bits on any.
///
/// An allreduce on a power-of-two rank count goes by recursive doubling: in step k each rank
/// swaps what it holds with rank `rank ^ 2^k` and both combine the two, the lower ranks' part on
/// the left — the same terms in the same association as the tree rooted at 0, so the same bits,
/// on every rank, in ⌈log₂ N⌉ exchanges instead of the 2⌈log₂ N⌉ message steps of a reduction
/// followed by a broadcast (as MPI libraries do for short vectors). On other rank counts it is
/// the reduction to rank 0, then the broadcast.
extension Communicator {
    private enum CollectiveTag: Int64 {
        case broadcast = -1, gather = -2, reduce = -3, scatter = -4, exactSum = -5, allreduce = -6
    }

    /// The position of `rank` in a tree rooted at `root`.
    private func relative(_ rank: Int, root: Int) -> Int { (rank - root + size) % size }
    /// The rank at `position` of a tree rooted at `root`.
    private func absolute(_ position: Int, root: Int) -> Int { (position + root) % size }

    /// Sends `values` from `root` to every rank along a binomial tree; every rank returns root's
    /// values.
    public func broadcast<T: BitwiseCopyable>(_ values: [T], root: Int) throws -> [T] {
        _ = try checkedRank(root)
        return try bytesToValues(try treeBroadcast(rank == root ? valuesToBytes(values) : [], root: root))
    }

    /// Root's `payload` at every rank: each rank receives it from its parent, then passes it to
    /// its children, farthest first.
    private func treeBroadcast(_ payload: [UInt8], root: Int) throws -> [UInt8] {
        let position = relative(rank, root: root)
        var bytes = payload
        var mask = 1
        while mask < size {
            if position & mask != 0 {
                bytes = try runtime.receive(from: RankID(absolute(position - mask, root: root)), tag: CollectiveTag.broadcast.rawValue).bytes
                break
            }
            mask <<= 1
        }
        mask >>= 1
        while mask > 0 {
            if position + mask < size {
                try runtime.send(bytes, to: RankID(absolute(position + mask, root: root)), tag: CollectiveTag.broadcast.rawValue)
            }
            mask >>= 1
        }
        return bytes
    }

    /// Combines every rank's `payload` at `root` along the binomial tree; nil on other ranks.
    /// `combine(lower, upper)` merges what a rank holds with what the next subtree brings.
    private func treeReduce(_ payload: [UInt8], root: Int, tag: CollectiveTag,
                            combine: ([UInt8], [UInt8]) throws -> [UInt8]) throws -> [UInt8]? {
        let position = relative(rank, root: root)
        var held = payload
        var mask = 1
        while mask < size {
            if position & mask != 0 {
                try runtime.send(held, to: RankID(absolute(position - mask, root: root)), tag: tag.rawValue)
                return nil
            }
            if position + mask < size {
                let upper = try runtime.receive(from: RankID(absolute(position + mask, root: root)), tag: tag.rawValue).bytes
                held = try combine(held, upper)
            }
            mask <<= 1
        }
        return held
    }

    /// Every rank's `payload` combined as `treeReduce` rooted at 0 combines them, on every rank:
    /// by recursive doubling on a power-of-two rank count (see above), else the reduction to
    /// rank 0 and the broadcast. `tag` is the reduction's; the exchanges have their own.
    private func treeAllreduce(_ payload: [UInt8], tag: CollectiveTag,
                               combine: ([UInt8], [UInt8]) throws -> [UInt8]) throws -> [UInt8] {
        guard size & (size - 1) == 0 else {
            return try treeBroadcast(try treeReduce(payload, root: 0, tag: tag, combine: combine) ?? [], root: 0)
        }
        var held = payload
        var mask = 1
        while mask < size {
            // Rank and partner hold the two halves of the same aligned block of 2·mask ranks.
            let partner = rank ^ mask
            try runtime.send(held, to: RankID(partner), tag: CollectiveTag.allreduce.rawValue)
            let theirs = try runtime.receive(from: RankID(partner), tag: CollectiveTag.allreduce.rawValue).bytes
            held = rank < partner ? try combine(held, theirs) : try combine(theirs, held)
            mask <<= 1
        }
        return held
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
            .map { try $0.values(as: T.self) }
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

    /// Combines every rank's `values` element by element at `root` (along the tree; see above);
    /// other ranks get nil. Every rank must give as many values.
    public func reduce<T: BitwiseCopyable & AdditiveArithmetic & Comparable>(
        _ values: [T], _ operation: ReduceOperation, root: Int
    ) throws -> [T]? {
        _ = try checkedRank(root)
        return try treeReduce(valuesToBytes(values), root: root, tag: .reduce, combine: combiner(T.self, operation)).map { try bytesToValues($0) }
    }

    /// `operation` element by element over two ranks' values of type `T`, as bytes (the lower
    /// ranks' on the left), combined in place in a copy of the lower ones: no array of `T` is
    /// made, which from code not specialized for `T` would cost a metadata lookup each.
    private func combiner<T: BitwiseCopyable & AdditiveArithmetic & Comparable>(
        _ type: T.Type, _ operation: ReduceOperation
    ) -> ([UInt8], [UInt8]) throws -> [UInt8] {
        { lower, upper in
            let width = MemoryLayout<T>.stride
            guard lower.count == upper.count else {
                throw LifelineError(.usage,
                    "reduce needs the same number of values on every rank (\(lower.count / width) and \(upper.count / width))")
            }
            var combined = lower
            combined.withUnsafeMutableBytes { left in
                upper.withUnsafeBytes { right in
                    for offset in stride(from: 0, to: left.count - left.count % width, by: width) {
                        let a = left.loadUnaligned(fromByteOffset: offset, as: T.self)
                        let b = right.loadUnaligned(fromByteOffset: offset, as: T.self)
                        let value: T
                        switch operation {
                        case .sum: value = a + b
                        case .min: value = Swift.min(a, b)
                        case .max: value = Swift.max(a, b)
                        }
                        left.storeBytes(of: value, toByteOffset: offset, as: T.self)
                    }
                }
            }
            return combined
        }
    }

    /// Combines every rank's `values` element by element and returns the result on every rank:
    /// the bits `reduce` to rank 0 gives, by recursive doubling on a power-of-two rank count
    /// (see above), else by that reduction and a broadcast along the tree.
    public func allreduce<T: BitwiseCopyable & AdditiveArithmetic & Comparable>(
        _ values: [T], _ operation: ReduceOperation
    ) throws -> [T] {
        try bytesToValues(try treeAllreduce(valuesToBytes(values), tag: .reduce, combine: combiner(T.self, operation)))
    }

    /// Combines one value from every rank and returns the result on every rank.
    ///
    /// ```swift
    /// let residual = try comm.allreduce(localResidual, .max)
    /// ```
    public func allreduce<T: BitwiseCopyable & AdditiveArithmetic & Comparable>(_ value: T, _ operation: ReduceOperation) throws -> T {
        let combined = try allreduce([value], operation)
        guard let first = combined.first else { throw LifelineError(.corruptState, "allreduce returned no value") }
        return first
    }

    /// The exact sum of every rank's `sum`, rounded once, on every rank: the same bits whatever
    /// the rank count and however the terms were split between ranks (see `ExactSum`).
    ///
    /// ```swift
    /// let energy = try comm.allreduce(exactSum: ExactSum(localSquares))
    /// ```
    public func allreduce(exactSum sum: ExactSum) throws -> Double {
        let words: [UInt64] = try bytesToValues(try treeAllreduce(valuesToBytes(sum.words), tag: .exactSum) { lower, upper in
            guard var left = ExactSum(words: try bytesToValues(lower)), let right = ExactSum(words: try bytesToValues(upper)) else {
                throw LifelineError(.corruptState, "an exact sum from another rank does not decode")
            }
            left.add(right)
            return valuesToBytes(left.words)
        })
        guard let exact = ExactSum(words: words) else { throw LifelineError(.corruptState, "an exact sum does not decode") }
        return exact.value
    }

    /// Sends `chunks[r]` from `root` to each rank r; every rank returns its chunk. Only root's
    /// `chunks` are read (others may pass nil); it must hold one chunk per rank.
    public func scatter<T: BitwiseCopyable>(_ chunks: [[T]]?, root: Int) throws -> [T] {
        let rootID = try checkedRank(root)
        guard rank == root else { return try runtime.receive(from: rootID, tag: CollectiveTag.scatter.rawValue).values(as: T.self) }
        guard let chunks, chunks.count == size else {
            throw LifelineError(.usage, "scatter at root \(root) needs one chunk per rank (\(size)), got \(chunks?.count ?? 0)")
        }
        for destination in 0..<size where destination != root {
            try runtime.send(valuesToBytes(chunks[destination]), to: RankID(destination), tag: CollectiveTag.scatter.rawValue)
        }
        return chunks[root]
    }

    /// Sends `values` to `destination` and receives from `source` with the same `tag`, as
    /// MPI's `sendrecv`: the exchange cannot deadlock, whatever the sizes and whoever sends
    /// first, because a send never waits for its receiver — it returns once its bytes are in
    /// the kernel, reading the incoming messages meanwhile while the socket is full.
    ///
    /// ```swift
    /// let fromLeft = try comm.sendReceive(rightEdge, to: right, from: left, tag: 1)
    /// ```
    public func sendReceive<T: BitwiseCopyable>(_ values: [T], to destination: Int, from source: Int, tag: Int = 0) throws -> [T] {
        try send(values, to: destination, tag: tag)
        return try receive(T.self, from: source, tag: tag)
    }

    /// Waits until every rank has reached the barrier.
    public func barrier() throws {
        _ = try allreduce([Int64(0)], .sum)
    }
}
