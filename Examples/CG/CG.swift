// cg — the conjugate-gradient method on the 2-D Poisson problem, the classic of the field: each
// iteration exchanges halo rows with the neighbours and takes two global dot products.
//
// The N×N interior of the unit square (zero on the boundary) is split into blocks of rows, one
// per rank. Each iteration multiplies the search direction p by the 5-point Laplacian (which needs
// the row above and the row below each block: `sendReceive` shifts them up and down), takes
// p·Ap and r·r with `allreduce(exactSum:)`, and updates x, r and p element by element. Every
// cell's arithmetic reads the same values whatever the rank count, and the dot products are
// exact sums rounded once, so the solution has the same bits on any number of ranks and under
// every checkpoint scheme and logging mode. The state (the iteration and the rank's rows of x, r
// and p) is a plain `Codable` struct.
//
// At the end rank 0 prints the residual norm and `result sha256=<hex>` over the whole solution in
// row order.
//
//   cg [--size N] [--iterations K] [--sleep-ms M]

import ExampleSupport
import Foundation
import Lifeline

struct Options {
    var size = 512
    var iterations = 800
    var sleepMilliseconds = 0

    static let usage = "usage: cg [--size N] [--iterations K] [--sleep-ms M]"

    /// Parses the command line; a bad option prints one line to stderr and exits 2.
    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var index = 0
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data("cg: \(message)\n\(usage)\n".utf8))
            exit(2)
        }
        while index < arguments.count {
            let name = arguments[index]
            guard index + 1 < arguments.count, let value = Int(arguments[index + 1]) else {
                fail("\(name) needs an integer value")
            }
            switch name {
            case "--size" where value >= 2: options.size = value
            case "--iterations" where value >= 1: options.iterations = value
            case "--sleep-ms" where value >= 0: options.sleepMilliseconds = value
            default: fail("unknown option or bad value: \(name) \(value)")
            }
            index += 2
        }
        return options
    }
}

/// What a checkpoint captures: where the iteration is, and this rank's rows of the solution x,
/// the residual r and the search direction p (row-major), with r·r.
struct Solver: Codable, Checkpointable {
    var iteration = 0
    var x: [Double]
    var r: [Double]
    var p: [Double]
    var rr: Double
}

@main
struct CG {
    static func main() throws {
        let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
        let comm = try Communicator.join()
        let n = options.size
        guard comm.size <= n else {
            FileHandle.standardError.write(Data("cg: \(comm.size) ranks for \(n) rows: use --size \(comm.size) or more\n".utf8))
            exit(2)
        }
        let rows = comm.rank * n / comm.size..<(comm.rank + 1) * n / comm.size
        var solver = try comm.restore(Solver.self) ?? start(comm, rows: rows, n: n)
        while solver.iteration < options.iterations {
            try comm.safePoint(step: solver.iteration, state: solver)
            try iterate(comm, &solver, rows: rows, n: n)
            if options.sleepMilliseconds > 0 { usleep(UInt32(options.sleepMilliseconds * 1000)) }
        }
        let solution = try comm.gather(solver.x, root: 0)
        if let solution {
            var hasher = SHA256()
            for part in solution { part.withUnsafeBytes { hasher.update($0) } }
            print("residual \(solver.rr.squareRoot())")
            print("result sha256=\(SHA256.hex(hasher.finalize()))")
        }
        try comm.finish()
    }

    /// The right-hand side at interior point (i, j): a smooth bump and a point source.
    static func source(_ i: Int, _ j: Int, n: Int) -> Double {
        let u = Double(i + 1) / Double(n + 1)
        let v = Double(j + 1) / Double(n + 1)
        return u * (1 - u) * v * (1 - v) + (i == n / 3 && j == n / 2 ? 1 : 0)
    }

    /// x = 0, so r = p = b.
    static func start(_ comm: Communicator, rows: Range<Int>, n: Int) throws -> Solver {
        let b = rows.flatMap { i in (0..<n).map { j in source(i, j, n: n) } }
        let rr = try comm.allreduce(exactSum: ExactSum(b.map { $0 * $0 }))
        return Solver(x: Array(repeating: 0, count: b.count), r: b, p: b, rr: rr)
    }

    /// One iteration of CG.
    static func iterate(_ comm: Communicator, _ solver: inout Solver, rows: Range<Int>, n: Int) throws {
        let (above, below) = try halo(comm, solver.p, n: n)
        let count = rows.count
        var ap = [Double](repeating: 0, count: count * n)
        solver.p.withUnsafeBufferPointer { p in
            for row in 0..<count {
                for j in 0..<n {
                    let up = row > 0 ? p[(row - 1) * n + j] : above.map { $0[j] } ?? 0
                    let down = row + 1 < count ? p[(row + 1) * n + j] : below.map { $0[j] } ?? 0
                    let left = j > 0 ? p[row * n + j - 1] : 0
                    let right = j + 1 < n ? p[row * n + j + 1] : 0
                    ap[row * n + j] = 4 * p[row * n + j] - up - down - left - right
                }
            }
        }
        var products = ExactSum()
        for index in ap.indices { products.add(solver.p[index] * ap[index]) }
        let alpha = solver.rr / (try comm.allreduce(exactSum: products))
        var squares = ExactSum()
        for index in ap.indices {
            solver.x[index] += alpha * solver.p[index]
            solver.r[index] -= alpha * ap[index]
            squares.add(solver.r[index] * solver.r[index])
        }
        let rr = try comm.allreduce(exactSum: squares)
        let beta = rr / solver.rr
        for index in ap.indices { solver.p[index] = solver.r[index] + beta * solver.p[index] }
        solver.rr = rr
        solver.iteration += 1
    }

    /// The row above this rank's block and the row below it (nil at the boundary): every rank
    /// shifts its first row up, then its last row down.
    static func halo(_ comm: Communicator, _ p: [Double], n: Int) throws -> (above: [Double]?, below: [Double]?) {
        let up = comm.rank > 0 ? comm.rank - 1 : nil
        let down = comm.rank + 1 < comm.size ? comm.rank + 1 : nil
        let first = Array(p.prefix(n))
        let last = Array(p.suffix(n))
        var below: [Double]?
        var above: [Double]?
        switch (up, down) {
        case (let up?, let down?):
            below = try comm.sendReceive(first, to: up, from: down, tag: 1)
            above = try comm.sendReceive(last, to: down, from: up, tag: 2)
        case (let up?, nil):
            try comm.send(first, to: up, tag: 1)
            above = try comm.receive(Double.self, from: up, tag: 2)
        case (nil, let down?):
            below = try comm.receive(Double.self, from: down, tag: 1)
            try comm.send(last, to: down, tag: 2)
        case (nil, nil):
            break
        }
        return (above, below)
    }
}
