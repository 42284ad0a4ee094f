// The program the liveness, nondeterminism and handshake tests run (Tests/
// LifelineIntegrationTests/LivenessTests.swift, NondeterminismTests.swift, HandshakeTests.swift),
// each mode a pattern that once hung a job or went unnoticed:
//
//   lifeline-liveness exchange BYTES ROUNDS
//       A ring shift written send-then-receive: every round each rank sends BYTES to its right
//       neighbour, then receives BYTES from its left one, then passes a safe point. With large
//       messages both sends fill their sockets before either rank receives.
//   lifeline-liveness deadlock
//       Every rank receives from its right neighbour before sending anything: a deadlock the
//       supervisor must find and explain.
//   lifeline-liveness stranger SECONDS NAME...
//       Not a rank: a stranger that, for SECONDS, keeps 50 connections open to each abstract
//       socket NAME, each with half a frame prefix sent and nothing more, opening a new one
//       whenever one is closed. Prints how many it opened.
//   lifeline-liveness random ROUNDS
//       A ring shift in which each message carries a random number drawn without `logged`:
//       not deterministic, which a replay after a kill must reveal.
//   lifeline-liveness forgetful ROUNDS
//       A ring shift that forgets to take its restored state (it never calls `restore`): after
//       a rollback it passes its first safe point again, which the runtime must name.
//   lifeline-liveness receiving-state ROUNDS
//       A ring shift whose safe point is given a state expression that receives the round's
//       message: refused at the first capture (what it delivered is no longer what it said).
//   lifeline-liveness backwards
//       Passes safe point 5, then 3: refused, alone as under `lifeline run`.
//   lifeline-liveness pause SECONDS
//       A ring shift of small messages for 6 rounds, but at round 3 rank 0 computes for SECONDS
//       (without calling the runtime) before it sends: a stall, not a deadlock.
//   lifeline-liveness collectives ROUNDS
//       Every round: a sendReceive around the ring, then a broadcast, a reduce and a scatter
//       from a root that moves each round, a scalar allreduce, a sum allreduce checked against
//       the reduction to rank 0 and a broadcast, and an exact sum; rank 0 also
//       prints `exact=<bits>`, an exact sum of 2,000 wide-ranging values split by index
//       between the ranks, which must not depend on the rank count.
//   lifeline-liveness requests ROUNDS
//       Every round each rank posts two irecvs from its left neighbour, sends two messages to
//       its right one, polls the second request with test() until it completes (the first
//       message then waits for the first request: requests match in posting order), then waits
//       for the first. Only the values go into the result, not how often test() polled.
//   lifeline-liveness crash ROUNDS AT [always]
//       A ring shift in which rank 1's first process (every one, with `always`) stops on a Swift
//       runtime error (`fatalError`) right after safe point AT: the failure must be reported at
//       step AT, and the same crash from the same line again ends the job.
//   lifeline-liveness garble ROUNDS AT
//       A ring shift in which rank 1's first process, right after safe point AT, writes a frame
//       of a kind that does not exist onto its control connection (found among its descriptors
//       as the one connected to the supervisor's socket): that rank must fail, not the job.
//   lifeline-liveness unfinished ROUNDS
//       A ring shift that returns without calling finish(): the runtime must name it.
//   lifeline-liveness steal
//       Posts an irecv, then receives from the same channel with a plain receive: refused.
//   lifeline-liveness misuse
//       Alone (rank 0 of 1), one mistake after another, each of which must be thrown in one
//       line, not trapped on or answered wrongly: restore called twice, a message of three
//       Floats received as Doubles, a receive from any source while an irecv with its tag
//       waits, a safe point while an irecv waits, a receive(all:) of nothing, a send after
//       finish(). Prints `refused: …` for each, then `misuse: done`.
//   lifeline-liveness drift ROUNDS AT
//       A ring shift whose ranks, from round AT on, mix a random draw (not `logged`) into their
//       state: nondeterministic on purpose, for `lifeline replay` to find.
//   lifeline-liveness inflight ROUNDS
//       A ring shift whose round-r message is received after safe point r + 1: every line has
//       one message in flight per rank. Its state is Redistributable but does not take messages
//       in flight, so a resize must be refused.
//
// Every mode but `stranger` ends with rank 0 printing `result sha256=…` over what the ring carried.
#if canImport(Glibc)
import Glibc
#endif
import ExampleSupport
import Lifeline

struct Progress: Checkpointable {
    var round = 0
    var digest: UInt64 = 0xcbf2_9ce4_8422_2325

    init() {}

    func encode(to writer: inout StateWriter) {
        writer.write(round)
        writer.write(digest)
    }

    init(from reader: inout StateReader) throws {
        round = try reader.read(Int.self)
        digest = try reader.read(UInt64.self)
    }

    /// FNV-1a over a few bytes of each message: enough to tell one execution from another.
    mutating func mix(_ bytes: [UInt8]) {
        for byte in bytes.prefix(64) + bytes.suffix(64) {
            digest = (digest ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        digest = (digest ^ UInt64(bytes.count)) &* 0x100_0000_01b3
    }
}

/// BYTES of a rank's message in a round (rounded up to 8), a word at a time: cheap even in a
/// debug build.
func payload(bytes count: Int, rank: Int, round: Int) -> [UInt64] {
    var generator = UInt64(rank &* 1_000_003 &+ round &* 7919) | 1
    return (0..<(count + 7) / 8).map { _ in
        generator ^= generator << 13
        generator ^= generator >> 7
        generator ^= generator << 17
        return generator
    }
}

/// A connection to the abstract socket `name`, or nil.
func connectAbstract(_ name: String) -> Int32? {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return nil }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(name.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { path in
        path[0] = 0
        for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
    }
    guard connected == 0 else {
        close(fd)
        return nil
    }
    return fd
}

/// The stranger: 50 half-open connections per name, renewed as they are closed.
func holdHalfOpenConnections(seconds: Double, names: [String]) {
    let perName = 50
    var open: [[Int32]] = Array(repeating: [], count: names.count)
    var opened = 0
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let end = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
    while true {
        clock_gettime(CLOCK_MONOTONIC, &now)
        if Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 >= end { break }
        for (index, name) in names.enumerated() {
            open[index].removeAll { fd in
                var byte: UInt8 = 0
                let received = recv(fd, &byte, 1, Int32(MSG_DONTWAIT))
                guard received == 0 || (received < 0 && errno != EAGAIN) else { return false }
                close(fd)
                return true
            }
            while open[index].count < perName, let fd = connectAbstract(name) {
                let half: [UInt8] = [1, 0, 0, 0, 0]  // five of the twelve bytes of a handshake frame's prefix
                _ = half.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                open[index].append(fd)
                opened += 1
            }
        }
        usleep(50_000)
    }
    print("stranger opened \(opened) connections")
}

/// The state of `inflight`: Redistributable, without taking the messages in flight.
struct Carried: Checkpointable, Redistributable {
    var progress = Progress()

    init() {}
    func encode(to writer: inout StateWriter) { progress.encode(to: &writer) }
    init(from reader: inout StateReader) throws { progress = try Progress(from: &reader) }

    static func redistribute(rank: Int, of size: Int, from previous: PreviousRanks) throws -> Carried {
        try previous.state(of: rank % previous.size, as: Carried.self)
    }
}

/// `garble`: writes the 12-byte prefix of a frame of kind 0x7777 (no such kind) onto the
/// descriptor connected to the supervisor's abstract socket (`LIFELINE_ADDRESS` + `.s`).
func garbleControlConnection() {
    guard let raw = getenv("LIFELINE_ADDRESS") else { fatalError("no LIFELINE_ADDRESS") }
    let prefix = String(cString: raw)
    let wanted = [UInt8(0)] + Array((prefix + ".s").utf8)
    for fd in Int32(3)..<Int32(1024) {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) }
        }
        guard named == 0, address.sun_family == sa_family_t(AF_UNIX) else { continue }
        let pathLength = Int(length) - MemoryLayout.offset(of: \sockaddr_un.sun_path)!
        let path = withUnsafeBytes(of: address.sun_path) { Array($0.prefix(max(0, pathLength))) }
        guard path == wanted else { continue }
        var frame: [UInt8] = [0x77, 0x77, 0, 0] + [UInt8](repeating: 0, count: 8)
        _ = write(fd, &frame, frame.count)
        return
    }
    fatalError("no descriptor is connected to the supervisor")
}

/// `inflight`: each round's message crosses the next safe point.
func passMessagesAcrossSafePoints(rounds: Int) throws {
    let comm = try Communicator.join()
    var state = try comm.restore(Carried.self) ?? Carried()
    let right = (comm.rank + 1) % comm.size, left = (comm.rank + comm.size - 1) % comm.size
    func message(_ round: Int) -> [UInt8] { bytes([UInt64(comm.rank &* 1_000 &+ round)]) }
    if state.progress.round == 0 { try comm.send(message(0), to: right, tag: 4) }
    while state.progress.round < rounds {
        try comm.safePoint(step: state.progress.round, state: state)
        state.progress.mix(try comm.receive(from: left, tag: 4).bytes)
        state.progress.round += 1
        if state.progress.round < rounds { try comm.send(message(state.progress.round), to: right, tag: 4) }
        usleep(2_000)
    }
    if comm.rank == 0 { print("result sha256=\(String(state.progress.digest, radix: 16))") }
    try comm.finish()
}

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: lifeline-liveness exchange BYTES ROUNDS | exits STATUS AT | deadlock | pause SECONDS | random ROUNDS | forgetful ROUNDS | collectives ROUNDS | requests ROUNDS | steal | stranger SECONDS NAME...")
    exit(2)
}
if arguments[1] == "stranger" {
    holdHalfOpenConnections(seconds: Double(arguments[2]) ?? 5, names: Array(arguments.dropFirst(3)))
    exit(0)
}
if arguments[1] == "inflight" {
    try passMessagesAcrossSafePoints(rounds: Int(arguments[2]) ?? 300)
    exit(0)
}
let comm = try Communicator.join()
var state = arguments[1] == "forgetful" ? Progress() : try comm.restore(Progress.self) ?? Progress()
let right = (comm.rank + 1) % comm.size
let left = (comm.rank + comm.size - 1) % comm.size

/// Every round: a safe point, `prepare` (rank 0 may stall there), a message to the right
/// neighbour, one from the left, mixed into the state. On the main actor, where the top-level
/// `comm` and `state` live.
@MainActor func shiftAroundTheRing(rounds: Int, pauseMicroseconds: UInt32 = 0, prepare: (Int) -> Void = { _ in },
                        message: (Int) -> [UInt8]) throws {
    while state.round < rounds {
        try comm.safePoint(step: state.round, state: state)
        prepare(state.round)
        try comm.send(message(state.round), to: right, tag: 1)
        state.mix(try comm.receive(from: left, tag: 1).bytes)
        state.round += 1
        if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
    }
}

/// The bytes of a word array.
func bytes(_ words: [UInt64]) -> [UInt8] { words.withUnsafeBytes { Array($0) } }

switch arguments[1] {
case "exchange":
    let count = Int(arguments[2]) ?? 16 << 20
    try shiftAroundTheRing(rounds: Int(arguments[3]) ?? 2) { bytes(payload(bytes: count, rank: comm.rank, round: $0)) }
case "drift":
    // Made nondeterministic on purpose: from round AT on, every rank mixes a random draw (not
    // `logged`) into its state; `lifeline replay` must find the first checkpoint after AT.
    let from = Int(arguments[3]) ?? 100
    try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 300, pauseMicroseconds: 2_000, prepare: { round in
        if round >= from { state.mix(bytes([UInt64.random(in: 0...UInt64.max)])) }
    }) { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 8) }
case "exits":
    // The last rank ends its process itself with STATUS at round AT (`exit`, as a program that
    // gives up does), on every attempt.
    let status = Int32(arguments[2]) ?? 3
    let at = Int(arguments[3]) ?? 10
    try shiftAroundTheRing(rounds: at + 20, pauseMicroseconds: 2_000, prepare: { round in
        if comm.rank == comm.size - 1, round == at { exit(status) }
    }) { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 8) }
case "pause":
    let seconds = Double(arguments[2]) ?? 6
    try shiftAroundTheRing(rounds: 6, prepare: { round in
        if comm.rank == 0, round == 3 { usleep(UInt32(seconds * 1_000_000)) }
    }) { [UInt8](repeating: UInt8(truncatingIfNeeded: $0), count: 64) }
case "random":
    try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 300, pauseMicroseconds: 1_000) { _ in
        bytes([UInt64.random(in: 0...UInt64.max)])
    }
case "receiving-state":
    // The state given to a safe point is an expression that receives a message, which runs
    // only when the runtime captures: refused there, said, and exit 1.
    func receivedIntoState() -> Progress {
        state.mix((try? comm.receive(from: left, tag: 1).bytes) ?? [])
        return state
    }
    do {
        while state.round < (Int(arguments[2]) ?? 300) {
            try comm.send([UInt8(truncatingIfNeeded: state.round)], to: right, tag: 1)
            try comm.safePoint(step: state.round, state: receivedIntoState())
            state.round += 1
            usleep(2_000)
        }
        try comm.finish()
    } catch {
        let line = Array("lifeline-liveness: \(error)\n".utf8)
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        exit(1)
    }
case "forgetful", "backwards":
    // The runtime refuses these programs: say why and exit 1, as a program handles its errors
    // (not a crash, whose backtrace would keep the process alive for seconds).
    do {
        if arguments[1] == "forgetful" {
            try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 300, pauseMicroseconds: 2_000) { _ in [1, 2, 3] }
        } else {
            try comm.safePoint(step: 5, state: state)
            try comm.safePoint(step: 3, state: state)
        }
    } catch {
        let line = Array("lifeline-liveness: \(error)\n".utf8)
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        exit(1)
    }
case "collectives":
    // The global values the exact sums split between the ranks (index i goes to rank i % size).
    func term(_ index: Int, round: Int) -> Double {
        let magnitude = Double(sign: .plus, exponent: (index &* 37 &+ round) % 120 - 60, significand: 1.0 + Double(index % 97) / 97)
        return index % 3 == 0 ? -magnitude : magnitude
    }
    func mine(_ round: Int) -> ExactSum {
        ExactSum(stride(from: comm.rank, to: 2_000, by: comm.size).map { term($0, round: round) })
    }
    func bits(_ value: Double) -> [UInt8] { bytes([value.bitPattern]) }
    let rounds = Int(arguments[2]) ?? 200
    while state.round < rounds {
        try comm.safePoint(step: state.round, state: state)
        let round = state.round
        let root = round % comm.size
        let fromLeft = try comm.sendReceive([UInt64(comm.rank &* 1_000 &+ round)], to: right, from: left, tag: 2)
        guard fromLeft == [UInt64(left &* 1_000 &+ round)] else { fatalError("sendReceive gave \(fromLeft)") }
        state.mix(bytes(fromLeft))
        let broadcast = try comm.broadcast(comm.rank == root ? payload(bytes: 24, rank: root, round: round) : [], root: root)
        guard broadcast == payload(bytes: 24, rank: root, round: round) else { fatalError("broadcast from \(root) differs") }
        state.mix(bytes(broadcast))
        let reduced = try comm.reduce((0..<3).map { Double(comm.rank) * 0.1 + Double(round * $0) / 7 }, .sum, root: root)
        if let reduced { state.mix(bytes(reduced.map(\.bitPattern))) }
        // What each collective must return, checked against the values every rank can compute.
        let counted = try comm.reduce([Int64(comm.rank + round)], .sum, root: root)
        let expectedSum = Int64((0..<comm.size).reduce(0) { $0 + $1 + round })
        guard (comm.rank == root) == (counted != nil), counted.map({ $0 == [expectedSum] }) ?? true else {
            fatalError("reduce to \(root) gave \(String(describing: counted)), not \(expectedSum)")
        }
        let chunks = comm.rank == root ? (0..<comm.size).map { payload(bytes: 8 * ($0 + 1), rank: $0, round: round) } : nil
        let chunk = try comm.scatter(chunks, root: root)
        guard chunk == payload(bytes: 8 * (comm.rank + 1), rank: comm.rank, round: round) else {
            fatalError("scatter from \(root) gave rank \(comm.rank) another rank's chunk")
        }
        state.mix(bytes(chunk))
        let largest = try comm.allreduce(Double(comm.rank) * 0.37 - Double(round), .max)
        guard largest == Double(comm.size - 1) * 0.37 - Double(round) else { fatalError("allreduce max gave \(largest)") }
        state.mix(bits(largest))
        // A sum whose bits depend on how its terms associate: allreduce gives every rank the
        // bits of the reduction to rank 0 (recursive doubling on 2, 4, 8… ranks, the tree else).
        let terms = (0..<4).map { index -> Double in
            let magnitude = Double(sign: .plus, exponent: (comm.rank &* 13 &+ round &+ index &* 7) % 80 - 40,
                                   significand: 1 + Double(comm.rank + index) / 9)
            return (comm.rank + index) % 2 == 0 ? magnitude : -magnitude
        }
        let summed = try comm.allreduce(terms, .sum)
        let rooted = try comm.broadcast(try comm.reduce(terms, .sum, root: 0) ?? [], root: 0)
        guard summed.map(\.bitPattern) == rooted.map(\.bitPattern) else { fatalError("allreduce gave \(summed), reduce to 0 \(rooted)") }
        state.mix(bytes(summed.map(\.bitPattern)))
        state.mix(bits(try comm.allreduce(exactSum: mine(round))))
        state.round += 1
        usleep(1_000)
    }
    let exact = try comm.allreduce(exactSum: mine(rounds))
    if comm.rank == 0 { print("exact=\(String(exact.bitPattern, radix: 16))") }
case "requests":
    let rounds = Int(arguments[2]) ?? 200
    while state.round < rounds {
        try comm.safePoint(step: state.round, state: state)
        let round = state.round
        let first = try comm.irecv(UInt64.self, from: left, tag: 3)
        let second = try comm.irecv(UInt64.self, from: left, tag: 3)
        try comm.isend([UInt64(comm.rank &* 7 &+ round)], to: right, tag: 3)
        try comm.isend(payload(bytes: 16, rank: comm.rank, round: round), to: right, tag: 3).wait()
        var polled: [UInt64]?
        while polled == nil {
            polled = try second.test()
            if polled == nil { usleep(100) }
        }
        state.mix(bytes(try first.wait()))
        state.mix(bytes(polled!))
        state.round += 1
        usleep(500)
    }
case "crash":
    let crashAt = Int(arguments[3]) ?? 10
    try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 40, prepare: { round in
        if comm.rank == 1, round == crashAt, comm.incarnation < comm.size || arguments.count > 4 {
            fatalError("the probe's runtime error")
        }
    }) { [UInt8(truncatingIfNeeded: $0)] }
case "garble":
    let garbleAt = Int(arguments[3]) ?? 10
    try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 40, prepare: { round in
        if comm.rank == 1, round == garbleAt, comm.incarnation < comm.size { garbleControlConnection() }
    }) { [UInt8(truncatingIfNeeded: $0)] }
case "unfinished":
    try shiftAroundTheRing(rounds: Int(arguments[2]) ?? 20) { [UInt8(truncatingIfNeeded: $0)] }
    exit(0)
case "misuse":
    func refused(_ what: String, _ mistake: () throws -> Void) {
        do {
            try mistake()
            print("accepted: \(what)")
        } catch {
            print("refused: \(what): \(error)")
        }
    }
    refused("restore twice") { _ = try comm.restore(Progress.self) }
    refused("floats as doubles") {
        try comm.send([Float](repeating: 1, count: 3), to: 0, tag: 1)
        _ = try comm.receive(Double.self, from: 0, tag: 1)
    }
    let pending = try comm.irecv(UInt64.self, from: 0, tag: 2)
    refused("any source beside an irecv") { _ = try comm.receive(from: .any, tag: 2) }
    refused("safe point beside an irecv") { try comm.safePoint(step: 1, state: state) }
    try comm.send([UInt64(7)], to: 0, tag: 2)
    _ = try pending.wait()
    refused("receive all of nothing") { _ = try comm.receive(all: [(source: 0, tag: 3)]) }
    try comm.finish()
    refused("send after finish") { try comm.send([1], to: 0, tag: 4) }
    print("misuse: done")
    exit(0)
case "steal":
    do {
        _ = try comm.irecv(UInt64.self, from: left, tag: 3)
        _ = try comm.receive(from: left, tag: 3)
    } catch {
        let line = Array("lifeline-liveness: \(error)\n".utf8)
        _ = line.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        exit(1)
    }
case "deadlock":
    try comm.safePoint(step: 0, state: state)
    state.mix(try comm.receive(from: right, tag: 7).bytes)
    try comm.send([1, 2, 3], to: left, tag: 7)
default:
    print("lifeline-liveness: unknown mode \(arguments[1])")
    exit(2)
}
let digests = try comm.allgather([state.digest])
if comm.rank == 0 {
    var hasher = SHA256()
    for digest in digests { hasher.update(digest.flatMap { value in (0..<8).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) } }) }
    print("result sha256=\(SHA256.hex(hasher.finalize()))")
}
try comm.finish()
