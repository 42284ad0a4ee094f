// The README's example program, built with the package so that it stays true.
import Lifeline

struct Counter: Codable, Checkpointable {
    var step = 0
    var total = 0.0
}

let comm = try Communicator.join()
var state = try comm.restore(Counter.self) ?? Counter()   // nil on a fresh start
while state.step < 1000 {
    try comm.safePoint(step: state.step, state: state)    // a checkpoint may be taken here
    let right = (comm.rank + 1) % comm.size
    let left = (comm.rank + comm.size - 1) % comm.size
    try comm.send([Double(comm.rank + state.step)], to: right, tag: 1)
    let received = try comm.receive(Double.self, from: left, tag: 1)
    state.total += try comm.allreduce(received, .sum)[0]  // same bits every run
    state.step += 1
}
if comm.rank == 0 { print("total \(state.total)") }       // released once, after the barrier
try comm.finish()
