/// The exit statuses a rank's runtime ends its process with on another host, apart from the
/// program's own. The runtime says 4, 5 and 6 to its supervisor before it exits (the control
/// message `stopping`); a lost link cannot say anything. A program that ends its process itself
/// with a status other than 0 has it said by the process's exit handler (`exiting`), which the
/// runtime's own exits skip.
package enum RuntimeExitStatus {
    /// A rank that lost its link to the supervisor (its lease ran out, or it could not connect).
    package static let linkLost: Int32 = 3
    /// A rank that cannot read the snapshot it was launched to restore (its copy in memory gone
    /// or damaged, and no intact copy on disk): its supervisor takes its copies in memory for
    /// gone and decides its recovery again.
    package static let restoreFailed: Int32 = 4
    /// A rank with partner copies relaunched to replay its message log that finds the log unfit
    /// (unreadable on its host and its partner, ending before its checkpoint's position, or
    /// holding less than the supervisor read of it for an optimistic recovery): its supervisor,
    /// which took the log for fit, takes it for lost and rolls every rank back.
    package static let logUnfit: Int32 = 5
    /// A rank with partner copies whose message log could not be appended to on its partner
    /// host (lost or unreachable): the records are on the rank's host; its supervisor relaunches
    /// it to replay them, and its log is written to the partner its host has then.
    package static let logCopyFailed: Int32 = 6

    /// Every status of the runtime's own.
    package static let all: [Int32] = [linkLost, restoreFailed, logUnfit, logCopyFailed]
}

/// How a rank's process ended, as the supervisor judges it: the program's own failure (the same
/// again from the same line ends the job), or something else — a kill from outside, a lost
/// link, one of the runtime's own stops, a move — and whether it counts against
/// `--max-restarts`.
package enum ExitJudgement {
    /// What ended the process, as its supervisor heard of it.
    package struct Exit: Sendable, Equatable {
        /// Its exit status, when it exited by itself (or its launch command did).
        package var status: Int32?
        /// The signal that ended it, when one did.
        package var signal: Int32?
        /// The status its runtime said it ends the process with (`stopping`), if it did.
        package var runtimeSaid: Int32?
        /// The status its program said it ends the process with (`exiting`), if it did.
        package var programSaid: Int32?

        /// An exit with every field given.
        package init(status: Int32?, signal: Int32?, runtimeSaid: Int32? = nil, programSaid: Int32? = nil) {
            self.status = status
            self.signal = signal
            self.runtimeSaid = runtimeSaid
            self.programSaid = programSaid
        }

        /// Whether a status of the runtime's own is what its runtime said.
        func saidByRuntime(_ status: Int32) -> Bool { signal == nil && self.status == status && runtimeSaid == status }
    }

    /// The job around the exit.
    package struct Context: Sendable, Equatable {
        /// Ranks on several hosts (`--launcher ssh|slurm|mpirun`).
        package var onHosts = false
        /// Under mpirun: the status is the whole launch's.
        package var mpirun = false
        /// The rank's process was ordered to end to move to another host (`ranks_moved`).
        package var orderedToMove = false
        /// Levels (`--levels memory,disk`).
        package var levels = false
        /// Partner copies (`{partner}` in `--storage`).
        package var partnered = false
        /// The rank was launched before the last host loss (its log's partner may be that host).
        package var launchedBeforeHostLoss = false

        /// A context with nothing set: one host, no levels, no partner copies.
        package init() {}
    }

    /// What the exit was.
    package enum Verdict: Sendable, Equatable {
        /// Not the program's failure: a kill from outside, mpirun's launch status, a lost link;
        /// counted as a failure when `counted`.
        case notTheProgram(counted: Bool)
        /// Ordered to end and killed, to restart on another host: not counted.
        case moved
        /// A rank on another host that could not read the snapshot it was to restore: its
        /// copies in memory are gone, and its recovery is decided again.
        case restoreFailed
        /// A rank relaunched to replay a log that it found unfit: every rank rolls back.
        case logUnfit
        /// The program's own failure: an exit status, or a crash (a Swift runtime error, a bad
        /// access: `crash`) at the step its report named.
        case program(crash: Bool)
    }

    /// The signals that are a program's crash, not a kill from outside.
    package static let crashSignals: Set<Int32> = [4, 5, 6, 7, 8, 11]  // SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV

    /// Judges `exit` in `context`.
    package static func judge(_ exit: Exit, _ context: Context) -> Verdict {
        if context.mpirun { return .notTheProgram(counted: true) }
        if context.orderedToMove, killed(exit) { return .moved }
        if context.onHosts, exit.signal == nil, exit.status == RuntimeExitStatus.linkLost,
           exit.programSaid != RuntimeExitStatus.linkLost {
            return .notTheProgram(counted: true)
        }
        if context.onHosts, context.levels, exit.saidByRuntime(RuntimeExitStatus.restoreFailed) { return .restoreFailed }
        if context.partnered, exit.saidByRuntime(RuntimeExitStatus.logUnfit) { return .logUnfit }
        if context.partnered, exit.saidByRuntime(RuntimeExitStatus.logCopyFailed) {
            return .notTheProgram(counted: !context.launchedBeforeHostLoss)
        }
        if exit.signal == nil { return .program(crash: false) }
        if let signal = exit.signal, crashSignals.contains(signal) { return .program(crash: true) }
        return .notTheProgram(counted: true)
    }

    /// Whether `exit` is a kill: SIGKILL, or a launch command's word for it (ssh: 255; a shell or
    /// srun: 128 + 9).
    static func killed(_ exit: Exit) -> Bool {
        exit.signal == 9 || exit.status == 255 || exit.status == 128 + 9
    }
}
