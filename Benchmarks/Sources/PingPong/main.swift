// The transport benchmark's program: rank 0 and rank 1 exchange 64-byte messages (round trip),
// then rank 0 streams large messages to rank 1 (bandwidth), through Lifeline's Communicator.
// Prints `rtt_us_median=… rtt_us_p99=… bandwidth_gbps=…` at rank 0.
//
// usage (under lifeline run -n 2): lifeline-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES
//    or (under lifeline run -n N): lifeline-pingpong allreduce ITERATIONS
//    or: lifeline-pingpong start
import Foundation
import Lifeline

// lifeline-pingpong start: exits at once (the launch floor of the scale suite: a Swift program
// linked with Lifeline, loaded and started).
if CommandLine.arguments.dropFirst().first == "start" { exit(0) }

// lifeline-pingpong allreduce ITERATIONS (under lifeline run -n N): every rank takes part in
// ITERATIONS scalar allreduces of a Double; rank 0 prints `allreduce_us_median=… allreduce_us_p99=…`.
if CommandLine.arguments.dropFirst().first == "allreduce" {
    let iterations = CommandLine.arguments.dropFirst(2).first.flatMap { Int($0) } ?? 1000
    let comm = try Communicator.join()
    for index in 0..<100 { _ = try comm.allreduce(Double(index), .sum) }  // warm-up: connections, caches
    var samples: [Double] = []
    samples.reserveCapacity(iterations)
    for index in 0..<iterations {
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try comm.allreduce(Double(index), .sum)
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
    }
    if comm.rank == 0 {
        samples.sort()
        print(String(format: "allreduce_us_median=%.3f allreduce_us_p99=%.3f", samples[samples.count / 2],
                     samples[Int(Double(samples.count) * 0.99)]))
    }
    try comm.finish()
    exit(0)
}

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
guard arguments.count == 3 else {
    FileHandle.standardError.write(Data("usage: lifeline-pingpong ROUND_TRIPS BANDWIDTH_MESSAGES MESSAGE_BYTES\n".utf8))
    exit(2)
}
let (trips, messages, bytes) = (arguments[0], arguments[1], arguments[2])
let comm = try Communicator.join()
let peer = 1 - comm.rank
let small = [UInt8](repeating: 7, count: 64)
let big = [UInt8](repeating: 1, count: bytes)
var samples: [Double] = []
samples.reserveCapacity(trips)
for _ in 0..<trips {
    if comm.rank == 0 {
        let start = DispatchTime.now().uptimeNanoseconds
        try comm.send(small, to: peer)
        _ = try comm.receive(from: peer)
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
    } else {
        _ = try comm.receive(from: peer)
        try comm.send(small, to: peer)
    }
}
let start = DispatchTime.now().uptimeNanoseconds
for _ in 0..<messages {
    if comm.rank == 0 { try comm.send(big, to: peer, tag: 1) } else { _ = try comm.receive(from: peer, tag: 1) }
}
if comm.rank == 1 { try comm.send([1], to: peer, tag: 2) } else { _ = try comm.receive(from: peer, tag: 2) }
let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
if comm.rank == 0 {
    samples.sort()
    print(String(format: "rtt_us_median=%.3f rtt_us_p99=%.3f bandwidth_gbps=%.3f", samples[samples.count / 2],
                 samples[Int(Double(samples.count) * 0.99)], Double(bytes * messages) / seconds / 1e9))
}
try comm.finish()
