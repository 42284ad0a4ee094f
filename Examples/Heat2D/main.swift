// heat2d — an explicit finite-difference solver for 2D advection–diffusion of a temperature
// field, written against Lifeline's public API the way an MPI user would write it.
//
// The model. u(x, y) on the unit square, N×N cells of side h = 1/N, cell (i, j) at
// x = (j + ½)h, y = (i + ½)h (i is the row, j the column). Boundaries are PERIODIC in both
// directions: the grid is a torus, so row N−1's neighbour below is row 0 and column N−1's right
// neighbour is column 0. Each step computes
//
//     u' = u + dt·(κ∇²u − v·∇u)
//
// with the 5-point Laplacian and first-order upwind differences for the advection term. The
// constants are κ = h (cell Péclet number |v|h/κ ≤ 1) and dt = 0.15·h²/κ, so with |vx| ≤ 0.75 and
// |vy| ≤ 0.25 every coefficient of the update is non-negative (4·κdt/h² + (|vx|+|vy|)dt/h ≤ 0.75):
// the scheme is monotone, hence stable, for any N.
//
// The velocity. Every K steps (--broadcast-every) the ranks compute the field's energy Σu² in a
// way that does not depend on the decomposition: each rank sums u² along each of its rows, the
// row sums are allgathered, and every rank adds them in global row order. Rank 0 derives
// (vx, vy) from it and broadcasts them; the other ranks check the broadcast against their own
// computation (a cheap determinism check).
//
// The decomposition. Rank r owns a contiguous block of rows (horizontal strips, as even as
// possible: the first N mod P ranks own one row more). Every step each rank sends its first row
// to the rank above and its last row to the rank below, then receives the two ghost rows, so a
// cell's update reads exactly the same neighbour values whatever the rank count: the result is
// bit-identical for every rank count from 1 to N.
//
// The result. At the end rank 0 gathers the whole field in global row order and prints the
// SHA-256 of its bytes (little-endian float64) as `result sha256=<hex>`.

import ExampleSupport
import Foundation
import Lifeline

// MARK: - Options

struct Options {
    var size = 1024
    var steps = 2000
    var broadcastEvery = 50
    var sleepMilliseconds = 0
    var printEvery = 0

    static let usage = "usage: heat2d [--size N] [--steps S] [--broadcast-every K] [--sleep-ms M] [--print-every K]"

    /// Parses the command line; a bad option prints one line to stderr and exits 2.
    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var index = 0
        while index < arguments.count {
            var name = arguments[index]
            var value: String?
            if let equals = name.firstIndex(of: "="), name.hasPrefix("--") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if name == "--help" || name == "-h" {
                print(usage)
                print("  --size N             grid of N×N cells (default 1024)")
                print("  --steps S            time steps (default 2000)")
                print("  --broadcast-every K  new velocity from the field's energy every K steps (default 50)")
                print("  --sleep-ms M         sleep M milliseconds per step, to slow a small run down (default 0)")
                print("  --print-every K      rank 0 prints a line (the step and the velocity) every K steps (default 0: none)")
                exit(0)
            }
            let known = ["--size", "--steps", "--broadcast-every", "--sleep-ms", "--print-every"]
            guard known.contains(name) else {
                fail("unknown option '\(arguments[index])'; \(usage)")
            }
            if value == nil {
                index += 1
                guard index < arguments.count else { fail("\(name) needs a value; \(usage)") }
                value = arguments[index]
            }
            let text = value!
            let minimum = (name == "--size" || name == "--broadcast-every") ? 1 : 0
            guard let number = Int(text), number >= minimum else {
                let kind = minimum == 1 ? "a positive integer" : "a non-negative integer"
                fail("\(name) needs \(kind), not '\(text)'")
            }
            switch name {
            case "--size": options.size = number
            case "--steps": options.steps = number
            case "--broadcast-every": options.broadcastEvery = number
            case "--print-every": options.printEvery = number
            default: options.sleepMilliseconds = number
            }
            index += 1
        }
        return options
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("heat2d: \(message)\n".utf8))
        exit(2)
    }
}

// MARK: - Decomposition

/// The rows `first..<first + count` that a rank owns: blocks as even as possible.
struct Strip: Equatable {
    let first: Int
    let count: Int

    init(rank: Int, ranks: Int, rows: Int) {
        let base = rows / ranks
        let extra = rows % ranks
        first = rank * base + min(rank, extra)
        count = base + (rank < extra ? 1 : 0)
    }

    /// Whether the two strips share a row.
    func overlaps(_ other: Strip) -> Bool {
        max(first, other.first) < min(first + count, other.first + other.count)
    }
}

// MARK: - State

/// What a rank needs to go on from a safe point: the step, the current velocity, its rows.
struct HeatState: Checkpointable {
    /// The next step to compute.
    var step: Int
    /// The velocity in force (set at every broadcast step, used until the next one).
    var vx: Double
    var vy: Double
    /// The grid size and this rank's strip, kept to check that a restored state fits the job.
    var size: Int
    var firstRow: Int
    var rowCount: Int
    /// The rank's rows, row-major: `rowCount × size` values.
    var rows: [Double]

    /// The initial field, a smooth function of the global cell, so it does not depend on the
    /// rank count: a Gaussian blob plus two periodic waves.
    init(size: Int, strip: Strip) {
        step = 0
        vx = 0.5
        vy = 0
        self.size = size
        firstRow = strip.first
        rowCount = strip.count
        let h = 1.0 / Double(size)
        var values = [Double](repeating: 0, count: strip.count * size)
        for local in 0..<strip.count {
            let y = (Double(strip.first + local) + 0.5) * h
            for j in 0..<size {
                let x = (Double(j) + 0.5) * h
                let dx = x - 0.35, dy = y - 0.4
                let blob = exp(-(dx * dx + dy * dy) / (2 * 0.08 * 0.08))
                let waves = 0.25 * sin(2 * Double.pi * x) * cos(4 * Double.pi * y)
                    + 0.1 * sin(6 * Double.pi * (x + y))
                values[local * size + j] = blob + waves
            }
        }
        rows = values
    }

    func encode(to writer: inout StateWriter) {
        writer.write(Int64(step))
        writer.write(vx)
        writer.write(vy)
        writer.write(Int64(size))
        writer.write(Int64(firstRow))
        writer.write(Int64(rowCount))
        writer.write(numeric: rows)
    }

    init(from reader: inout StateReader) throws {
        step = Int(try reader.read(Int64.self))
        vx = try reader.read(Double.self)
        vy = try reader.read(Double.self)
        size = Int(try reader.read(Int64.self))
        firstRow = Int(try reader.read(Int64.self))
        rowCount = Int(try reader.read(Int64.self))
        rows = try reader.readArray(of: Double.self)
    }
}

/// A resized job (`lifeline resume RUN_DIR -n M`): new rank `rank` of `size` takes its rows from
/// the old ranks whose strips overlap its own, reading only those (and at most one more, which
/// tells the grid size); the step and the velocity are the same on every old rank. The field does
/// not depend on the decomposition, so the resized run ends with the same bits.
extension HeatState: Redistributable {
    static func redistribute(rank: Int, of size: Int, from previous: PreviousRanks) throws -> HeatState {
        // The old rank at the same relative place most likely holds rows this rank needs.
        let sampleRank = rank * previous.size / size
        let sample = try previous.state(of: sampleRank, as: HeatState.self)
        let n = sample.size
        guard size <= n else {
            throw HeatError("a grid of \(n) rows cannot be spread over \(size) ranks; every rank needs at least one row")
        }
        let strip = Strip(rank: rank, ranks: size, rows: n)
        var state = sample
        state.firstRow = strip.first
        state.rowCount = strip.count
        state.rows = []
        state.rows.reserveCapacity(strip.count * n)
        for old in 0..<previous.size {
            let owned = Strip(rank: old, ranks: previous.size, rows: n)
            guard owned.overlaps(strip) else { continue }
            let part = old == sampleRank ? sample : try previous.state(of: old, as: HeatState.self)
            guard part.size == n, part.firstRow == owned.first, part.rowCount == owned.count,
                  part.rows.count == owned.count * n, part.step == sample.step,
                  part.vx.bitPattern == sample.vx.bitPattern, part.vy.bitPattern == sample.vy.bitPattern
            else {
                throw HeatError("old rank \(old) saved rows \(part.firstRow)+\(part.rowCount) of a \(part.size)-grid at step \(part.step); expected rows \(owned.first)+\(owned.count) of \(n) at step \(sample.step)")
            }
            state.rows += part.rows(overlapping: strip)
        }
        return state
    }

    /// The values of this state's rows that `strip` owns too, row-major.
    func rows(overlapping strip: Strip) -> ArraySlice<Double> {
        let first = max(firstRow, strip.first)
        let end = max(first, min(firstRow + rowCount, strip.first + strip.count))
        return rows[(first - firstRow) * size..<(end - firstRow) * size]
    }
}

struct HeatError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - Numerics

/// Tags of the halo exchange: a rank's first row travels up, its last row travels down. With
/// two ranks both neighbours are the same rank, so the tags tell the two rows apart.
let tagFirstRow = 1
let tagLastRow = 2

/// The velocity derived from the field's energy Σu² (the same function on every rank).
func velocity(energy: Double, size: Int) -> (vx: Double, vy: Double) {
    let meanSquare = energy / (Double(size) * Double(size))
    return (0.5 + 0.25 * sin(200 * meanSquare), 0.25 * cos(200 * meanSquare))
}

/// Σu² along each of the rank's rows, each summed left to right.
func rowEnergies(_ rows: [Double], size: Int, count: Int) -> [Double] {
    var sums = [Double](repeating: 0, count: count)
    rows.withUnsafeBufferPointer { u in
        for local in 0..<count {
            var sum = 0.0
            let base = local * size
            for j in 0..<size { sum += u[base + j] * u[base + j] }
            sums[local] = sum
        }
    }
    return sums
}

/// One explicit step: `next` = the update of `rows` given the ghost rows above and below.
func advance(
    _ rows: [Double], into next: inout [Double], above: [Double], below: [Double],
    size n: Int, count: Int, vx: Double, vy: Double
) {
    let h = 1.0 / Double(n)
    let kappa = h
    let dt = 0.15 * h * h / kappa
    let d = kappa * dt / (h * h)
    let cx = vx * dt / h
    let cy = vy * dt / h
    let forwardX = vx < 0, forwardY = vy < 0
    rows.withUnsafeBufferPointer { u in
        above.withUnsafeBufferPointer { ghostAbove in
            below.withUnsafeBufferPointer { ghostBelow in
                next.withUnsafeMutableBufferPointer { out in
                    for local in 0..<count {
                        let row = UnsafeBufferPointer(rebasing: u[local * n..<(local + 1) * n])
                        let up = local == 0
                            ? ghostAbove : UnsafeBufferPointer(rebasing: u[(local - 1) * n..<local * n])
                        let down = local == count - 1
                            ? ghostBelow : UnsafeBufferPointer(rebasing: u[(local + 1) * n..<(local + 2) * n])
                        let target = UnsafeMutableBufferPointer(rebasing: out[local * n..<(local + 1) * n])
                        // The same formula for every cell; west and east wrap around at the edges.
                        @inline(__always) func cell(_ j: Int, _ west: Double, _ east: Double) {
                            let c = row[j]
                            let north = up[j]
                            let south = down[j]
                            let laplacian = east + west + north + south - 4 * c
                            let gradX = forwardX ? east - c : c - west
                            let gradY = forwardY ? south - c : c - north
                            target[j] = c + d * laplacian - cx * gradX - cy * gradY
                        }
                        if n == 1 {
                            cell(0, row[0], row[0])
                            continue
                        }
                        cell(0, row[n - 1], row[1])
                        for j in 1..<n - 1 { cell(j, row[j - 1], row[j + 1]) }
                        cell(n - 1, row[n - 2], row[0])
                    }
                }
            }
        }
    }
}

// MARK: - The program

func run(_ options: Options) throws {
    let comm = try Communicator.join()
    let (rank, ranks, n) = (comm.rank, comm.size, options.size)
    guard ranks <= n else {
        Options.fail("--size \(n) gives fewer rows than the \(ranks) ranks; every rank needs at least one row")
    }
    let strip = Strip(rank: rank, ranks: ranks, rows: n)

    var state: HeatState
    if let restored = try comm.restore(HeatState.self) {
        guard restored.size == n, restored.firstRow == strip.first, restored.rowCount == strip.count,
              restored.rows.count == strip.count * n
        else {
            throw HeatError("rank \(rank): the restored state is for another grid (size \(restored.size), rows \(restored.firstRow)+\(restored.rowCount)); expected size \(n), rows \(strip.first)+\(strip.count)")
        }
        state = restored
    } else {
        state = HeatState(size: n, strip: strip)
    }

    let above = (rank - 1 + ranks) % ranks
    let below = (rank + 1) % ranks
    var next = [Double](repeating: 0, count: strip.count * n)

    while state.step < options.steps {
        try comm.safePoint(step: state.step, state: state)

        // Halo exchange: send both rows first, then receive, so it never deadlocks.
        let firstRow = Array(state.rows[0..<n])
        let lastRow = Array(state.rows[(strip.count - 1) * n..<strip.count * n])
        var ghostAbove: [Double], ghostBelow: [Double]
        if ranks == 1 {
            ghostAbove = lastRow
            ghostBelow = firstRow
        } else {
            try comm.send(firstRow, to: above, tag: tagFirstRow)
            try comm.send(lastRow, to: below, tag: tagLastRow)
            // Both ghost rows at once: with pessimistic logging they share one log write.
            let ghosts = try comm.receive(all: [(above, tagLastRow), (below, tagFirstRow)])
            ghostAbove = try ghosts[0].values(as: Double.self)
            ghostBelow = try ghosts[1].values(as: Double.self)
            guard ghostAbove.count == n, ghostBelow.count == n else {
                throw HeatError("rank \(rank): step \(state.step): a ghost row has \(ghostAbove.count) and \(ghostBelow.count) values, not \(n)")
            }
        }

        // A new velocity from the energy, summed in global row order on every rank.
        if state.step % options.broadcastEvery == 0 {
            let energies = try comm.allgather(rowEnergies(state.rows, size: n, count: strip.count))
            var energy = 0.0
            for part in energies { for value in part { energy += value } }
            let local = velocity(energy: energy, size: n)
            let shared = try comm.broadcast(rank == 0 ? [local.vx, local.vy] : [], root: 0)
            guard shared.count == 2 else {
                throw HeatError("rank \(rank): step \(state.step): the velocity broadcast has \(shared.count) values, not 2")
            }
            guard shared[0].bitPattern == local.vx.bitPattern, shared[1].bitPattern == local.vy.bitPattern else {
                throw HeatError("rank \(rank): step \(state.step): broadcast velocity (\(shared[0]), \(shared[1])) differs from this rank's (\(local.vx), \(local.vy)); the run is not deterministic")
            }
            state.vx = shared[0]
            state.vy = shared[1]
        }

        advance(state.rows, into: &next, above: ghostAbove, below: ghostBelow,
                size: n, count: strip.count, vx: state.vx, vy: state.vy)
        swap(&state.rows, &next)
        state.step += 1
        // Output along the way, to show each line reaches the user once across rollbacks.
        if rank == 0, options.printEvery > 0, state.step % options.printEvery == 0 {
            print("step \(state.step) vx \(String(state.vx.bitPattern, radix: 16)) vy \(String(state.vy.bitPattern, radix: 16))")
        }

        if options.sleepMilliseconds > 0 {
            Thread.sleep(forTimeInterval: Double(options.sleepMilliseconds) / 1000)
        }
    }

    // The whole field at rank 0, in global row order (ranks own consecutive strips).
    if let parts = try comm.gather(state.rows, root: 0) {
        var hasher = SHA256()
        var total = 0
        for part in parts {
            total += part.count
            #if _endian(little)
            part.withUnsafeBytes { hasher.update($0) }
            #else
            let little = part.map { $0.bitPattern.littleEndian }
            little.withUnsafeBytes { hasher.update($0) }
            #endif
        }
        guard total == n * n else {
            throw HeatError("rank 0: the gathered field has \(total) values, not \(n * n)")
        }
        print("result sha256=\(SHA256.hex(hasher.finalize()))")
    }
    try comm.finish()
}

let options = Options.parse(Array(CommandLine.arguments.dropFirst()))
do {
    try run(options)
} catch {
    FileHandle.standardError.write(Data("heat2d: \(error)\n".utf8))
    exit(1)
}
