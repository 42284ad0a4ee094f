// taskfarm — a master/worker task farm whose receives are nondeterministic.
//
// Rank 0 (the master) hands out T independent tasks in rounds of R. Within a round it gives one
// task to each worker, then waits for results from any source (`receive(from: .any)`), and gives
// the next task of the round to whichever worker answered first. Which worker computes which
// task depends on timing; the result does not. At the end of a round the master tells every
// worker so, and every rank passes a safe point: the safe-point contract holds, since everything
// a rank needs to finish round r is sent before its sender finishes round r.
//
// A task is a deterministic computation from its seed (an integer hash iterated `--work` times).
// At the end the master prints the SHA-256 of the results in task order as
// `result sha256=<hex>`. `--idle-workers K` leaves workers 1…K without any message in the first and
// the last quarter of the rounds (under `--checkpoint minimal` they write no checkpoint there:
// at first they keep the start, at the end the checkpoint they wrote while working).
//
// With one rank the master computes every task itself.

import ExampleSupport
import Foundation
import Lifeline

struct Options {
    var tasks = 2000
    var round = 0
    var work = 20000
    var idleWorkers = 0
    var sleepMilliseconds = 0
    var verbose = false

    static let usage = "usage: taskfarm [--tasks T] [--round R] [--work N] [--idle-workers K] [--sleep-ms M] [--verbose]"

    /// Parses the command line; a bad option prints one line to stderr and exits 2.
    static func parse(_ arguments: [String]) -> Options {
        var options = Options()
        var index = 0
        func fail(_ message: String) -> Never {
            FileHandle.standardError.write(Data("taskfarm: \(message)\n\(usage)\n".utf8))
            exit(2)
        }
        while index < arguments.count {
            let name = arguments[index]
            if name == "--verbose" {
                options.verbose = true
                index += 1
                continue
            }
            guard index + 1 < arguments.count, let value = Int(arguments[index + 1]) else {
                fail("\(name) needs an integer value")
            }
            switch name {
            case "--tasks" where value > 0: options.tasks = value
            case "--round" where value > 0: options.round = value
            case "--work" where value > 0: options.work = value
            case "--idle-workers" where value >= 0: options.idleWorkers = value
            case "--sleep-ms" where value >= 0: options.sleepMilliseconds = value
            default: fail("unknown option or bad value: \(name) \(value)")
            }
            index += 2
        }
        return options
    }
}

/// What every rank saves at a round's end: the next round and its first task, and at the master
/// the results so far.
struct FarmState: Checkpointable {
    var round = 0
    /// The first task of `round`: tasks before it are done.
    var nextTask = 0
    var results: [UInt64] = []

    init(taskCount: Int, isMaster: Bool) {
        results = isMaster ? Array(repeating: 0, count: taskCount) : []
    }

    /// The rounds of the whole run, with `roundSize` tasks a round from `nextTask` on: the same
    /// number at every round of one run (a resize changes the round size, not the rounds done).
    func roundCount(tasks: Int, roundSize: Int) -> Int {
        round + (max(0, tasks - nextTask) + roundSize - 1) / roundSize
    }

    func encode(to writer: inout StateWriter) {
        writer.write(round)
        writer.write(nextTask)
        writer.write(results)
    }

    init(from reader: inout StateReader) throws {
        round = try reader.read(Int.self)
        nextTask = try reader.read(Int.self)
        results = try reader.readArray(of: UInt64.self)
    }
}

/// A resized job (`lifeline resume RUN_DIR -n M`): every rank continues at the old master's round
/// and next task, and the new master takes its results; rounds then hold as many tasks as the
/// new rank count gives. Which worker computes a task never changes a result, so the resized
/// run prints the same hash.
extension FarmState: Redistributable {
    static func redistribute(rank: Int, of size: Int, from previous: PreviousRanks) throws -> FarmState {
        var state = try previous.state(of: 0, as: FarmState.self)
        if rank != 0 { state.results = [] }
        return state
    }
}

/// Message kinds between master and workers (the first word of every payload).
enum Kind: UInt64 {
    case task = 1, roundEnd = 2, result = 3
}

let taskTag = 1
let resultTag = 2

/// The task: a hash of its seed iterated `work` times.
func compute(task: Int, work: Int) -> UInt64 {
    var value = UInt64(task) &* 0x9E37_79B9_7F4A_7C15 ^ 0xD1B5_4A32_D192_ED03
    for _ in 0..<work {
        value ^= value >> 31
        value &*= 0x7FB5_D329_728E_A185
        value ^= value >> 27
        value &*= 0x81DA_DEF4_BC2C_4A05
        value ^= value >> 33
    }
    return value
}

/// Whether `--idle-workers` leaves its workers without messages in `round`: the first and the
/// last quarter of the rounds.
func isIdleRound(_ round: Int, _ roundCount: Int) -> Bool {
    round < roundCount / 4 || round >= roundCount - roundCount / 4
}

func runMaster(_ comm: Communicator, _ state: inout FarmState, _ options: Options, roundSize: Int, roundCount: Int) throws {
    let workers = Array(1..<comm.size)
    while state.nextTask < options.tasks {
        try comm.safePoint(step: state.round, state: state)
        // A value from outside the messages: logged, so a replay reads the same clock.
        let startedAt = try comm.logged { Date().timeIntervalSince1970 }
        let first = state.nextTask
        var pending = Array(first..<min(first + roundSize, options.tasks)).reversed() as [Int]
        let active = isIdleRound(state.round, roundCount) ? workers.filter { $0 > options.idleWorkers } : workers
        if active.isEmpty {
            while let task = pending.popLast() { state.results[task] = compute(task: task, work: options.work) }
        }
        var outstanding = 0
        for worker in active {
            guard let task = pending.popLast() else { break }
            try comm.send([Kind.task.rawValue, UInt64(task)], to: worker, tag: taskTag)
            outstanding += 1
        }
        while outstanding > 0 {
            let message = try comm.receive(from: .any, tag: resultTag)
            let words = try message.values(as: UInt64.self)
            guard words.count == 3, words[0] == Kind.result.rawValue else {
                throw FarmError("rank 0: a malformed result from rank \(message.source)")
            }
            state.results[Int(words[1])] = words[2]
            outstanding -= 1
            if let task = pending.popLast() {
                try comm.send([Kind.task.rawValue, UInt64(task)], to: message.source, tag: taskTag)
                outstanding += 1
            }
        }
        for worker in active { try comm.send([Kind.roundEnd.rawValue, 0], to: worker, tag: taskTag) }
        if options.verbose {
            FileHandle.standardError.write(Data("round \(state.round) took \(Date().timeIntervalSince1970 - startedAt) s\n".utf8))
        }
        state.round += 1
        state.nextTask = min(first + roundSize, options.tasks)
        if options.sleepMilliseconds > 0 { Thread.sleep(forTimeInterval: Double(options.sleepMilliseconds) / 1000) }
    }
}

func runWorker(_ comm: Communicator, _ state: inout FarmState, _ options: Options, roundSize: Int, roundCount: Int) throws {
    while state.nextTask < options.tasks {
        try comm.safePoint(step: state.round, state: state)
        // An idle worker's round passes without a message (the master's rule, run here too).
        let idle = isIdleRound(state.round, roundCount) && comm.rank <= options.idleWorkers
        while !idle {
            let words = try comm.receive(UInt64.self, from: 0, tag: taskTag)
            guard let kind = words.first.flatMap(Kind.init(rawValue:)), words.count == 2 else {
                throw FarmError("rank \(comm.rank): a malformed message from the master")
            }
            if kind == .roundEnd { break }
            let task = Int(words[1])
            try comm.send([Kind.result.rawValue, UInt64(task), compute(task: task, work: options.work)], to: 0, tag: resultTag)
        }
        state.round += 1
        state.nextTask = min(state.nextTask + roundSize, options.tasks)
        if options.sleepMilliseconds > 0 { Thread.sleep(forTimeInterval: Double(options.sleepMilliseconds) / 1000) }
    }
}

struct FarmError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func run(_ options: Options) throws {
    let comm = try Communicator.join()
    let roundSize = options.round > 0 ? options.round : max(1, 4 * (comm.size - 1))
    var state = try comm.restore(FarmState.self) ?? FarmState(taskCount: options.tasks, isMaster: comm.rank == 0)
    let roundCount = state.roundCount(tasks: options.tasks, roundSize: roundSize)
    if comm.rank == 0 {
        try runMaster(comm, &state, options, roundSize: roundSize, roundCount: roundCount)
        var hasher = SHA256()
        state.results.map(\.littleEndian).withUnsafeBytes { hasher.update($0) }
        print("result sha256=\(SHA256.hex(hasher.finalize()))")
    } else {
        try runWorker(comm, &state, options, roundSize: roundSize, roundCount: roundCount)
    }
    try comm.finish()
}

do {
    try run(Options.parse(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write(Data("taskfarm: \(error)\n".utf8))
    exit(1)
}
