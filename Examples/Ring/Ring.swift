// The README's example program, built with the package so that it stays true. Under Swift 6
// (this package's language mode) it is a @main type that passes its communicator to the
// functions that communicate: the communicator is not Sendable and lives in no global.
import Lifeline

/// The state a checkpoint captures: Codable, so Checkpointable needs nothing more.
struct Counter: Codable, Checkpointable {
    var step = 0
    var total = 0.0
}

@main
struct Ring {
    static func main() throws {
        let comm = try Communicator.join()
        var state = try comm.restore(Counter.self) ?? Counter()   // nil on a fresh start
        while state.step < 1000 {
            try comm.safePoint(step: state.step, state: state)    // a checkpoint may be taken here
            state.total += try shift(comm, Double(comm.rank + state.step))
            state.step += 1
        }
        if comm.rank == 0 { print("total \(state.total)") }       // released once, after the barrier
        try comm.finish()
    }

    /// Sends `value` to the right neighbour, receives the left one's, and sums what was
    /// received over every rank (the same bits every run).
    static func shift(_ comm: Communicator, _ value: Double) throws -> Double {
        let right = (comm.rank + 1) % comm.size
        let left = (comm.rank + comm.size - 1) % comm.size
        try comm.send([value], to: right, tag: 1)
        let received = try comm.receive(Double.self, from: left, tag: 1)
        return try comm.allreduce(received, .sum)[0]
    }
}
