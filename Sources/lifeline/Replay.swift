import ArgumentParser
import Foundation
import Lifeline

extension LifelineCommand {
    /// `lifeline replay RUN_DIR --rank R [--from EPOCH] [--until STEP] [-- DEBUGGER ARGS…]`
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run one rank of a job again, alone, from a committed checkpoint and its message log, and check it against later checkpoints.",
            discussion: """
                The rank's deliveries come from its message log in the logged order (the job must have run with \
                --logging pessimistic or optimistic; with --keep-logs the logs reach back to every kept line) and its \
                sends go nowhere. At each later checkpoint's step its state is compared with what the checkpoint stored. \
                The last line says `match`, `nothing to compare` (exit 0) or `diverged at step S` (exit 1); when the \
                rank's log lost records (damaged on both mirrors) or is missing, it says so after what was checked up \
                to there (exit 4). After `--`, \
                a debugger command runs the program: `-- lldb --` or `-- gdb --args`.
                """)

        @Argument(help: "The run directory of the job.")
        var runDirectory: String
        @Option(help: "The rank to run again.")
        var rank: Int
        @Option(help: ArgumentHelp("The line to start from (0: the start of the job; default: the oldest kept line the log reaches back to).", valueName: "EPOCH"))
        var from: UInt64?
        @Option(help: ArgumentHelp("Stop at the first safe point at or past this step (default: the end of the log).", valueName: "STEP"))
        var until: Int?
        @Argument(parsing: .postTerminator, help: "A debugger command to run the program under, e.g. lldb --")
        var debugger: [String] = []

        func run() throws {
            let outcome = try Job.replay(
                runDirectory: absolute(runDirectory), rank: rank, fromEpoch: from, untilStep: until, debugger: debugger)
            for line in outcome.notes { note("replay: \(line)") }
            print(outcome.line)
            if outcome.exitStatus != 0 { throw ExitCode(outcome.exitStatus) }
        }
    }
}
