import Foundation
import Testing

extension RecoveryTests {
    /// `lifeline replay RUN_DIR --rank R`: one rank run again, alone, from a checkpoint and its
    /// message log; its state at every later checkpoint must be the bytes that checkpoint stored.
    @Suite struct Replay {
        /// Runs `program` on 3 ranks with `options`, keeping every line and the whole logs.
        static func run(_ name: String, _ options: [String], _ program: [String]) throws -> JobRunner.Result {
            let runDirectory = JobRunner.scratch(name) + "/run"
            let result = try JobRunner.lifeline(
                ["run", "-n", "3", "--keep-logs", "--keep", "50", "--interval", "0.25", "--run-dir", runDirectory, "--quiet"]
                    + options + ["--"] + program,
                runDirectory: runDirectory)
            try #require(result.status == 0, "\(result.stderr)")
            return result
        }

        static func replay(_ runDirectory: String, _ arguments: [String]) throws -> JobRunner.Result {
            try JobRunner.lifeline(["replay", runDirectory] + arguments, runDirectory: runDirectory)
        }

        /// The last line of standard output.
        static func last(_ result: JobRunner.Result) -> String {
            result.stdout.split(separator: "\n").last.map(String.init) ?? ""
        }

        /// From the start and from a later line, under both logging modes whose logs hold the
        /// payloads: every later checkpoint matches.
        @Test(arguments: ["pessimistic", "optimistic"])
        func aReplayReproducesTheLaterCheckpoints(logging: String) throws {
            let job = try Self.run("replay-\(logging)", ["--logging", logging], JobRunner.heat)
            let steps = job.events("commit").compactMap { $0["step"] as? Int }
            try #require(steps.count >= 3, "too few commits: \(steps)")
            let fromStart = try Self.replay(job.runDirectory, ["--rank", "1"])
            #expect(fromStart.status == 0, "\(fromStart.stderr)")
            #expect(Self.last(fromStart) == "replay: rank 1 from epoch 0 to step 699: match", "\(fromStart.stdout)\(fromStart.stderr)")
            #expect(fromStart.stderr.contains("\(steps.count) later checkpoints to compare"), "\(fromStart.stderr)")
            let fromLine = try Self.replay(job.runDirectory, ["--rank", "2", "--from", "2", "--until", "\(steps[2])"])
            #expect(fromLine.status == 0, "\(fromLine.stderr)")
            #expect(Self.last(fromLine) == "replay: rank 2 from epoch 2 to step \(steps[2]): match", "\(fromLine.stdout)")
        }

        /// A log damaged on both mirrors ends the replay where its damage begins: the last line
        /// says what was checked up to there and that the log lost records, with exit status 4,
        /// instead of passing for a clean match.
        @Test func aReplayOfADamagedLogSaysSo() throws {
            let job = try Self.run("replay-damaged", ["--logging", "pessimistic"], JobRunner.heat)
            let segment = try #require(JobRunner.logSegments(job.runDirectory, root: "storage-a", rank: 1).last)
            for root in ["storage-a", "storage-b"] {
                let path = segment.replacingOccurrences(of: "/storage-a/", with: "/\(root)/")
                var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
                bytes[bytes.count / 2] ^= 0x5A
                try Data(bytes).write(to: URL(fileURLWithPath: path))
            }
            let replayed = try Self.replay(job.runDirectory, ["--rank", "1"])
            #expect(replayed.status == 4, "\(replayed.stdout)\(replayed.stderr)")
            #expect(Self.last(replayed).hasPrefix("replay: rank 1 from epoch 0 to step "), "\(replayed.stdout)")
            #expect(Self.last(replayed).contains("but its message log lost records after record"), "\(replayed.stdout)")
            #expect(replayed.stderr.contains("message log of rank 1: "), "\(replayed.stderr)")
        }

        /// A rank that mixes a random draw into its state from round 150 on is reported at the
        /// first checkpoint after it (the finest the stored states allow), and a replay that
        /// stops before it matches.
        @Test func aNondeterministicRankIsReportedWhereItFirstDiffers() throws {
            let job = try Self.run("replay-drift", ["--logging", "pessimistic"], ["lifeline-liveness", "drift", "400", "150"])
            let steps = job.events("commit").compactMap { $0["step"] as? Int }
            let first = try #require(steps.first { $0 > 150 }, "no commit after round 150: \(steps)")
            let diverged = try Self.replay(job.runDirectory, ["--rank", "1", "--from", "0"])
            #expect(diverged.status == 1)
            #expect(Self.last(diverged) == "replay: rank 1: diverged at step \(first)", "\(diverged.stdout)\(diverged.stderr)")
            let before = try Self.replay(job.runDirectory, ["--rank", "0", "--until", "150"])
            #expect(before.status == 0 && Self.last(before).hasPrefix("replay: rank 0 from epoch 0 to step 150: "), "\(before.stdout)")
        }

        /// A rank that sends random numbers without `logged` is found at its first send: under
        /// pessimistic logging each send is compared with what its receiver delivered.
        @Test func aRankWhoseSendsDriftIsReportedAtTheFirstOne() throws {
            let job = try Self.run("replay-random", ["--logging", "pessimistic"], ["lifeline-liveness", "random", "200"])
            let replayed = try Self.replay(job.runDirectory, ["--rank", "1", "--from", "0"])
            #expect(replayed.status == 1)
            #expect(Self.last(replayed) == "replay: rank 1: diverged at step 0", "\(replayed.stdout)\(replayed.stderr)")
            #expect(replayed.stderr.contains("its message 0 to rank 2 differs from what rank 2 delivered"), "\(replayed.stderr)")
        }

        /// After a resize (4 → 2) a rank replays only from lines its new self wrote: not from the
        /// start of the job, whose log records were dropped with the old ranks' channels.
        @Test func aResizedJobReplaysFromTheLinesAfterTheResize() throws {
            let runDirectory = try RecoveryTests.Resize.stopped(
                "replay-resized", ranks: 4, options: ["--logging", "pessimistic", "--keep-logs", "--keep", "50"], JobRunner.heat)
            let resumed = try RecoveryTests.Resize.resumeToTheEnd(runDirectory, ranks: 2)
            try #require(resumed.status == 0 && resumed.resultLines == [RecoveryTests.oracle], "\(resumed.stderr)")
            let resizedFrom = try #require(resumed.events("resize").first?["epoch"] as? Int)
            let inspect = try JobRunner.lifeline(["inspect", runDirectory], runDirectory: runDirectory)
            let replayable = inspect.stdout.split(separator: "\n").first { $0.hasPrefix("replayable: ") }.map(String.init) ?? ""
            #expect(replayable.hasPrefix("replayable: ranks 0-1, from epochs \(resizedFrom + 1)"), "\(replayable)")
            let replayed = try Self.replay(runDirectory, ["--rank", "1"])
            #expect(replayed.status == 0, "\(replayed.stderr)")
            #expect(Self.last(replayed).hasPrefix("replay: rank 1 from epoch \(resizedFrom + 1) to step 699: "), "\(replayed.stdout)")
            let refused = try Self.replay(runDirectory, ["--rank", "1", "--from", "0"])
            #expect(refused.status == 2 && refused.stderr.contains("cannot start from a line of that epoch"), "\(refused.stderr)")
        }

        /// Jobs whose logs hold no payloads are refused in one line, and so is `--keep-logs` there.
        @Test func aJobWithoutPayloadsInItsLogsIsRefused() throws {
            let job = try JobRunner.runHeat("replay-none", ranks: 2, ["--logging", "sender-based"])
            #expect(job.status == 0)
            let refused = try Self.replay(job.runDirectory, ["--rank", "0"])
            #expect(refused.status == 2 && refused.stderr.contains("--logging pessimistic or optimistic"), "\(refused.stderr)")
            let inspect = try JobRunner.lifeline(["inspect", job.runDirectory], runDirectory: job.runDirectory)
            #expect(inspect.stdout.contains("replayable: no (--logging sender-based"), "\(inspect.stdout)")
            let keep = try JobRunner.lifeline(
                ["run", "-n", "2", "--keep-logs", "--run-dir", JobRunner.scratch("replay-keep") + "/run", "--"] + JobRunner.heat,
                runDirectory: "")
            #expect(keep.status == 2 && keep.stderr.contains("--keep-logs"), "\(keep.stderr)")
        }

        /// Under a debugger (gdb in batch mode, which runs the program and exits), the replay
        /// is the same.
        @Test func aReplayRunsUnderADebugger() throws {
            guard let gdb = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first(where: FileManager.default.isExecutableFile) else {
                print("skipped: gdb is not installed")
                return
            }
            let job = try Self.run("replay-gdb", ["--logging", "pessimistic"], JobRunner.heat)
            let replayed = try Self.replay(job.runDirectory, ["--rank", "0", "--", gdb, "-q", "-batch", "-ex", "run", "--args"])
            if replayed.stdout.contains("ptrace") || replayed.stderr.contains("ptrace") {
                print("skipped: gdb may not trace here: \(replayed.stderr.split(separator: "\n").first ?? "")")
                return
            }
            #expect(replayed.status == 0, "\(replayed.stderr)")
            #expect(Self.last(replayed) == "replay: rank 0 from epoch 0 to step 699: match", "\(replayed.stdout)")
        }
    }
}
