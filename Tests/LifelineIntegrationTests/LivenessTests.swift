import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// Jobs that once hung: ranks that send large messages before receiving, a program that
    /// deadlocks, a rank that computes while the others wait. Runs `lifeline-liveness`
    /// (Tests/LivenessProbe) under `lifeline run`; nested in `RecoveryTests` to run alone.
    @Suite struct Liveness {
        /// Runs `lifeline-liveness ARGUMENTS` on `ranks` ranks with `options`.
        static func probe(_ name: String, ranks: Int, _ options: [String] = [], _ arguments: [String],
                          timeoutSeconds: Double = 120) throws -> JobRunner.Result {
            let runDirectory = JobRunner.scratch(name) + "/run"
            return try JobRunner.lifeline(
                ["run", "-n", String(ranks), "--run-dir", runDirectory, "--quiet"] + options + ["--", "lifeline-liveness"]
                    + arguments,
                runDirectory: runDirectory, timeoutSeconds: timeoutSeconds)
        }

        /// The seed of a randomized test: `LIFELINE_TEST_SEED` replays one, else the clock.
        static func seed() -> UInt64 {
            if let text = ProcessInfo.processInfo.environment["LIFELINE_TEST_SEED"], let seed = UInt64(text) { return seed }
            return UInt64(Date().timeIntervalSince1970 * 1000) % 100_000
        }

        /// Each rank sends 16 MiB to its neighbour before it receives (a ring shift written
        /// send-then-receive): both sockets fill and each rank reads the other's message while
        /// its own write waits. Two ranks used to deadlock in a blocking read. With a rank killed
        /// at a round drawn from the seed, the result is the failure-free one, bit for bit.
        @Test func sendsOfAnySizeBeforeReceivesFinish() throws {
            let exchange = ["exchange", String(16 << 20), "4"]
            let pair = try Self.probe("exchange2", ranks: 2, ["--interval", "0.5"], exchange, timeoutSeconds: 90)
            #expect(pair.status == 0, "two ranks: \(pair.stderr)")
            #expect(pair.resultLines.count == 1, "two ranks: \(pair.stdout)")

            let oracle = try Self.probe("exchange3", ranks: 3, ["--interval", "0.5"], exchange, timeoutSeconds: 90)
            try #require(oracle.status == 0 && oracle.resultLines.count == 1, "three ranks: \(oracle.stderr)")
            let seed = Self.seed()
            var generator = SplitMix64(seed: seed)
            let injection = "kill:rank=\(Int.random(in: 0..<3, using: &generator)),step=\(Int.random(in: 1...3, using: &generator))"
            print("liveness seed \(seed) (LIFELINE_TEST_SEED=\(seed) replays it): \(injection)")
            let killed = try Self.probe(
                "exchange3-kill", ranks: 3, ["--interval", "0.5", "--inject", injection], exchange, timeoutSeconds: 90)
            #expect(killed.status == 0, "seed \(seed), \(injection): \(killed.stderr)")
            #expect(killed.resultLines == oracle.resultLines, "seed \(seed), \(injection)")
            #expect(killed.events("failure").count == 1, "seed \(seed), \(injection)")
        }

        /// Every rank receives before it sends: the supervisor asks the ranks where they wait,
        /// finds that each waits for another with nothing in flight, stops the job (exit 1) and
        /// says who waits for whom, with no rank left running.
        @Test func aDeadlockStopsTheJobAndSaysWhoWaitsForWhom() throws {
            let result = try Self.probe(
                "deadlock", ranks: 3, ["--stall-seconds", "1", "--interval", "0.4"], ["deadlock"], timeoutSeconds: 60)
            #expect(result.status == 1, "exit \(result.status): \(result.stderr)")
            let expected = "rank 0 waits to receive from rank 1 (tag 7), rank 1 waits to receive from rank 2 (tag 7), "
                + "rank 2 waits to receive from rank 0 (tag 7)"
            #expect(result.stderr.contains("error: deadlock: " + expected), "stderr: \(result.stderr)")
            #expect(result.events("deadlock").first?["waits"] as? String == expected)
            #expect(result.events("stall").isEmpty, "a deadlock was reported as a stall first")
            let pids = ((try? String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)) ?? "")
                .split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int32($0) } }
            #expect(pids.count == 3)
            #expect(pids.allSatisfy { !JobRunner.isRunning($0) }, "a rank outlived the deadlocked job")
        }

        /// A rank that computes for 6 s while the others wait for it is a stall (past 10 times the
        /// job's pace, as heartbeats see it: 2.5 s), said once with each rank's wait, and the job
        /// then finishes as usual.
        @Test func aStallIsReportedAndTheJobGoesOn() throws {
            let result = try Self.probe("pause", ranks: 3, ["--stall-seconds", "1"], ["pause", "6"], timeoutSeconds: 60)
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines.count == 1)
            let stalls = result.events("stall")
            #expect(stalls.count == 1, "stall events: \(stalls)")
            let waits = stalls.first?["waits"] as? String ?? ""
            #expect(waits.contains("rank 0 computes (it did not answer)"), "waits: \(waits)")
            #expect(waits.contains("rank 1 waits to receive from rank 0 (tag 1)"), "waits: \(waits)")
            #expect(result.events("deadlock").isEmpty)
        }

        /// A program that never joins is killed after `--join-timeout` and the job fails at once
        /// with the explanation; one that exits 0 without joining, the same. Neither is
        /// restarted ten times.
        @Test func aProgramThatNeverJoinsIsExplained() throws {
            let sleeper = JobRunner.scratch("never-joins") + "/run"
            let slept = try JobRunner.lifeline(
                ["run", "-n", "2", "--run-dir", sleeper, "--quiet", "--join-timeout", "1s", "--", "/bin/sleep", "60"],
                runDirectory: sleeper, timeoutSeconds: 30)
            #expect(slept.status == 1)
            #expect(slept.stderr.contains("did not connect within 1 s of its launch: is /bin/sleep a Lifeline program"),
                    "\(slept.stderr)")
            #expect(slept.events("rank_launched").count == 2, "the ranks were restarted")
            let quitter = JobRunner.scratch("exits-at-once") + "/run"
            let quit = try JobRunner.lifeline(
                ["run", "-n", "2", "--run-dir", quitter, "--quiet", "--", "/bin/true"], runDirectory: quitter, timeoutSeconds: 30)
            #expect(quit.status == 1)
            #expect(quit.stderr.contains("exited with status 0 without joining the job: is /bin/true a Lifeline program"),
                    "\(quit.stderr)")
        }

        /// Ranks die with their supervisor even when they never joined (the parent-death signal
        /// is set between fork and exec).
        @Test func ranksThatNeverJoinedDieWithTheSupervisor() throws {
            let runDirectory = JobRunner.scratch("orphans") + "/run"
            var sleepers: [Int32] = []
            _ = try JobRunner.lifeline(
                ["run", "-n", "2", "--run-dir", runDirectory, "--quiet", "--", "/bin/sleep", "61"], runDirectory: runDirectory,
                timeoutSeconds: 30
            ) { pid in
                // The pids file is replaced once every rank of a launch is spawned.
                let deadline = Date().addingTimeInterval(30)
                while sleepers.filter({ $0 > 0 }).count < 2, Date() < deadline {
                    usleep(20_000)
                    let text = (try? String(contentsOfFile: runDirectory + "/pids", encoding: .utf8)) ?? ""
                    sleepers = text.split(separator: "\n").compactMap { $0.split(separator: " ").last.flatMap { Int32($0) } }
                }
                kill(pid, SIGKILL)
            }
            try #require(sleepers.count == 2 && sleepers.allSatisfy { $0 > 0 }, "pids: \(sleepers)")
            var waited = 0
            while sleepers.contains(where: JobRunner.isRunning), waited < 100 {
                usleep(20_000)
                waited += 1
            }
            #expect(!sleepers.contains(where: JobRunner.isRunning), "a rank that never joined outlived its supervisor")
        }

        /// The checkpoint a SIGINT asks for cannot commit when the ranks never reach a safe
        /// point; past `--stop-timeout` the job stops at once on the last committed line.
        @Test func aStopIsBoundedByTheStopTimeout() throws {
            let runDirectory = JobRunner.scratch("stop-timeout") + "/run"
            let result = try JobRunner.lifeline(
                ["run", "-n", "2", "--run-dir", runDirectory, "--quiet", "--stall-seconds", "10m", "--stop-timeout", "1s", "--",
                 "lifeline-liveness", "deadlock"],
                runDirectory: runDirectory, timeoutSeconds: 60
            ) { pid in
                JobRunner.waitForEvents(runDirectory, containing: "ranks_started")
                usleep(300_000)
                kill(pid, SIGINT)
            }
            #expect(result.status == 128 + SIGINT, "\(result.stderr)")
            #expect(result.events("stop_now").first?["reason"] as? String == "stop-timeout")
            #expect(result.stderr.contains("did not commit within 1 s (--stop-timeout): stopping at once"))
        }
    }
}

extension RecoveryTests.Liveness {
    /// A program that never takes its restored state passes its first safe point again after
    /// a rollback: the error names the missing `restore` (it said "steps must increase"), and
    /// the rank's line reaches the terminal.
    @Test func aProgramThatForgetsRestoreIsToldSo() throws {
        let result = try Self.probe(
            "forgetful", ranks: 2, ["--interval", "0.2", "--max-restarts", "2", "--inject", "kill:rank=1,step=250"],
            ["forgetful", "400"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("] lifeline-liveness: safe point 0 comes before step")
                && result.stderr.contains("must call comm.restore(State.self) after join()"), "\(result.stderr)")
        #expect(result.stderr.contains("on every attempt"), "the same error from the same line ends the job: \(result.stderr)")
    }

    /// A state expression that receives a message while the runtime captures it is refused by
    /// name: a rank says what it delivered as its capture begins, so a delivery during the
    /// capture would make the round's cut wrong.
    @Test func aStateThatReceivesWhileItIsCapturedIsRefused() throws {
        let result = try Self.probe("receiving-state", ranks: 2, ["--interval", "0.2"], ["receiving-state", "400"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("must not call the communicator (compute it before the call)"), "\(result.stderr)")
        #expect(result.events("commit").isEmpty, "no round commits on such a capture")
    }

    /// A program that returns without calling `finish()` is told so at once, by name, with the
    /// last safe point it passed (not restarted until its restarts run out).
    @Test func aProgramThatForgetsFinishIsToldSo() throws {
        let result = try Self.probe("unfinished", ranks: 2, ["--interval", "0.2"], ["unfinished", "20"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("exited with status 0 without calling finish()")
                && result.stderr.contains("call comm.finish() last"), "\(result.stderr)")
        #expect(result.events("recovery_start").isEmpty, "a restart would do the same")
    }

    /// A kill injected at a step is reported at that step, not at the one before.
    @Test func aKillAtAStepIsReportedAtThatStep() throws {
        let result = try Self.probe("kill-step", ranks: 2, ["--interval", "0.2", "--inject", "kill:rank=1,step=30"], ["exchange", "64", "60"])
        #expect(result.status == 0, "\(result.stderr)")
        let failure = result.events("failure").first
        #expect(failure?["step"] as? Int == 30, "\(String(describing: failure))")
    }

    /// A rank that stops on a Swift runtime error (a trap, not an exit) right after a safe
    /// point is reported at that step: its crash handler tells the supervisor first.
    @Test func aCrashIsReportedAtItsStep() throws {
        let result = try Self.probe("crash-step", ranks: 2, ["--interval", "0.2"], ["crash", "40", "7"])
        #expect(result.status == 0, "\(result.stderr)")
        let failure = result.events("failure").first
        #expect(failure?["step"] as? Int == 7, "\(String(describing: failure))")
    }

    /// A rank whose control connection carries a frame that cannot be read (a runtime whose
    /// memory the program corrupted, a stray write) fails alone: it is killed and recovered, and
    /// the job ends with the failure-free result, instead of the supervisor ending with it.
    @Test func aMalformedControlFrameFailsTheRankNotTheJob() throws {
        let oracle = try Self.probe("garble-oracle", ranks: 2, ["--interval", "0.2"], ["crash", "40", "1000"])
        let result = try Self.probe("garble", ranks: 2, ["--interval", "0.2"], ["garble", "40", "7"])
        #expect(oracle.status == 0 && !oracle.resultLines.isEmpty, "\(oracle.stderr)")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == oracle.resultLines)
        #expect(result.stderr.contains("rank 1 sent a control frame that cannot be read ("), "\(result.stderr)")
        #expect(result.events("protocol_error").contains { $0["rank"] as? Int == 1 }, "\(result.events("protocol_error"))")
        #expect(result.events("failure").compactMap { $0["rank"] as? Int } == [1], "\(result.events("failure"))")
    }

    /// A rank that crashes the same way at the same step from the same line again ends the
    /// job after its second failure, by name, instead of spending every restart.
    @Test func theSameCrashAgainEndsTheJob() throws {
        let result = try Self.probe("crash-always", ranks: 2, ["--interval", "60", "--max-restarts", "5"], ["crash", "40", "7", "always"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("at step 7 on every attempt"), "\(result.stderr)")
        #expect(result.events("failure").count == 2, "\(result.events("failure"))")
    }

    /// A program's mistakes with the API are thrown in one clear line each, not trapped on
    /// (a send after finish) or answered wrongly (a message of Floats read as fewer Doubles, a
    /// receive from any source taking an irecv's message, a safe point that would lose one, a
    /// second restore that starts the program over, a receive(all:) that waits forever).
    @Test func mistakesWithTheAPIAreThrownInOneLine() throws {
        let (status, text) = try Self.runAlone("misuse", reading: .output)
        #expect(status == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        for (mistake, said) in [
            ("restore twice", "restore(_:) was called twice"),
            ("floats as doubles", "is not a whole number of Double"),
            ("any source beside an irecv", "receive from any source (tag 2) while 1 irecv requests"),
            ("safe point beside an irecv", "irecv requests from rank 0 (tag 2) are not yet waited for"),
            ("receive all of nothing", "receive would wait forever"),
            ("send after finish", "send after finish()"),
        ] {
            let line = lines.first { $0.contains(": \(mistake)") }
            #expect(line?.hasPrefix("refused: \(mistake): ") == true && line?.contains(said) == true, "\(mistake): \(text)")
        }
        #expect(lines.last == "misuse: done", "\(text)")
    }

    /// Steps that do not increase are refused when the program runs alone, as under `lifeline run`.
    @Test func stepsMustIncreaseAlsoAlone() throws {
        let (status, text) = try Self.runAlone("backwards", reading: .error)
        #expect(status == 1)
        #expect(text.contains("safe point 3 does not come after 5: steps must increase"), "\(text)")
    }

    /// Which stream of a probe run alone to read.
    enum Stream { case output, error }

    /// Runs the probe in `mode` alone (not under `lifeline run`: rank 0 of 1): its exit status
    /// and what it wrote on `stream` (the other is discarded).
    static func runAlone(_ mode: String, reading stream: Stream) throws -> (status: Int32, text: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: JobRunner.binDirectory + "/lifeline-liveness")
        process.arguments = [mode]
        let pipe = Pipe()
        process.standardOutput = stream == .output ? pipe : FileHandle.nullDevice
        process.standardError = stream == .error ? pipe : FileHandle.nullDevice
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }
}
