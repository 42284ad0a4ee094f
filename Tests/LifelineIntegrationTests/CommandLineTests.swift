import Foundation
import Testing

extension RecoveryTests {
    /// Runs lifeline with arguments that must be refused: a non-zero exit and one clear line.
    private func expectRefused(_ arguments: [String], mentioning text: String,
                               sourceLocation: SourceLocation = #_sourceLocation) throws {
        let runDirectory = JobRunner.scratch("refused") + "/run"
        let result = try JobRunner.lifeline(arguments, runDirectory: runDirectory, timeoutSeconds: 60)
        #expect(result.status != 0, "\(arguments) was accepted", sourceLocation: sourceLocation)
        #expect(result.stderr.contains(text), "\(arguments): stderr was \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"),
                "\(arguments) crashed", sourceLocation: sourceLocation)
    }

    @Test func badInputIsRefusedWithOneClearLine() throws {
        let scratch = JobRunner.scratch("bad")
        try expectRefused(["run", "--frobnicate", "--", "heat2d"], mentioning: "Unknown option")
        try expectRefused(["run", "--checkpoint", "sideways", "--", "heat2d"], mentioning: "--checkpoint sideways")
        try expectRefused(["run", "--logging", "eager", "--", "heat2d"], mentioning: "--logging eager")
        try expectRefused(["run", "--checkpoint", "independent", "--logging", "sender-based", "--", "heat2d"],
                          mentioning: "--checkpoint independent works with --logging none or pessimistic")
        try expectRefused(["run", "--logging", "optimistic", "--log-flush-ms", "0", "--", "heat2d"], mentioning: "--log-flush-ms")
        try expectRefused(["run", "--run-dir", scratch + "/k", "--keep", "0", "--", "heat2d"], mentioning: "--keep 0")
        try expectRefused(["run", "--run-dir", scratch + "/l", "--chunk-kib", "2", "--", "heat2d"], mentioning: "--chunk-kib 2")
        try expectRefused(["run", "--run-dir", scratch + "/m", "--zstd-level", "30", "--", "heat2d"], mentioning: "--zstd-level 30")
        for ranks in ["0", "-3"] {
            try expectRefused(["run", "--ranks", ranks, "--", "heat2d"], mentioning: "--ranks must be at least 1")
        }
        try expectRefused(["run", "-n", "100000", "--", "heat2d"], mentioning: "--ranks 100000 is more than 4096")
        for option in ["--stall-seconds", "--join-timeout", "--stop-timeout"] {
            try expectRefused(["run", option, "-2s", "--", "heat2d"], mentioning: "\(option) -2s is not a duration")
        }
        for interval in ["0", "-1", "soon"] {
            try expectRefused(["run", "--interval", interval, "--", "heat2d"], mentioning: "--interval")
        }
        try expectRefused(["run", "--run-dir", scratch + "/a", "--inject", "kill:rank=1", "--", "heat2d"], mentioning: "bad --inject")
        #expect(!FileManager.default.fileExists(atPath: scratch + "/a"), "a refused run left its run directory behind")
        try expectRefused(["run", "--run-dir", scratch + "/b", "--inject", "kill:rank=7,step=3", "--", "heat2d"], mentioning: "rank=7")
        try expectRefused(["run", "--run-dir", scratch + "/c", "--storage", "\(scratch)/s,\(scratch)/s", "--", "heat2d"],
                          mentioning: "same folder")
        try expectRefused(["run", "--run-dir", scratch + "/d", "--", "no-such-program-here"], mentioning: "was not found")
        let notExecutable = scratch + "/plain.txt"
        _ = FileManager.default.createFile(atPath: notExecutable, contents: Data("hello".utf8))
        try expectRefused(["run", "--run-dir", scratch + "/e", "--", notExecutable], mentioning: "not executable")
        try expectRefused(["resume", scratch], mentioning: "not a Lifeline run directory")
    }

    @Test func unwritableStorageRootIsRefused() throws {
        // A root beneath a regular file can be created by nobody, root included.
        let scratch = JobRunner.scratch("unwritable")
        _ = FileManager.default.createFile(atPath: scratch + "/plain", contents: Data("x".utf8))
        try expectRefused(["run", "--run-dir", scratch + "/run", "--storage", "\(scratch)/plain/a,\(scratch)/b", "--", "heat2d"],
                          mentioning: "plain/a")
        #expect(!FileManager.default.fileExists(atPath: scratch + "/run/job.json"), "a job was started on an unusable root")
    }

    @Test func stopOnSignalThenResumeFinishesBitExact() throws {
        let runDirectory = JobRunner.scratch("sigint") + "/run"
        let arguments = ["run", "-n", "4", "--interval", "30", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat
        let stopped = try JobRunner.lifeline(arguments, runDirectory: runDirectory) { pid in
            JobRunner.waitForEvents(runDirectory, containing: "ranks_started")
            usleep(500_000)
            kill(pid, SIGINT)
        }
        #expect(stopped.status == 128 + SIGINT)
        let resumed = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        #expect(resumed.events("stopped").count == 1)
        #expect((resumed.events("commit").first?["epoch"] as? Int) != nil, "the stop took no checkpoint")
        let again = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
        #expect(again.status != 0 && again.stderr.contains("already finished"), "\(again.stderr)")
    }

    @Test func walltimeStopsWithACheckpoint() throws {
        let runDirectory = JobRunner.scratch("walltime") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "30", "--walltime", "2s", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
            runDirectory: runDirectory)
        #expect(result.status == 128 + SIGTERM, "\(result.stderr)")
        #expect(result.events("commit").count == 1)
        // A walltime that is not a duration is refused in one line before anything changes.
        let job = try Data(contentsOf: URL(fileURLWithPath: runDirectory + "/job.json"))
        let refused = try JobRunner.lifeline(["resume", runDirectory, "--walltime", "soon"], runDirectory: runDirectory)
        #expect(refused.status != 0 && refused.stderr.contains("--walltime soon is not a duration"), "\(refused.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: runDirectory + "/job.json")) == job)
        // Each resume gets the walltime anew (a new allocation): it stops again with a
        // checkpoint further on, until one reaches the end.
        let resumed = try resumeToTheEnd(runDirectory)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        #expect(resumed.events("resume").count >= 1)
    }

    /// `corrupt:mirror=a,epoch=1` flips a byte of rank 0's first chunk on mirror A right after
    /// round 1 commits (here: the checkpoint of a walltime stop). The resume restores from that
    /// line, reads the chunk from B and repairs A's copy: the result is the failure-free one and
    /// `storage verify` finds both mirrors healthy afterwards (`--keep 5` keeps the line).
    @Test func aCorruptedChunkIsRepairedByTheRestoreThatReadsIt() throws {
        let runDirectory = JobRunner.scratch("corrupt-chunk") + "/run"
        let stopped = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "30", "--walltime", "2s", "--keep", "5", "--run-dir", runDirectory, "--quiet",
             "--inject", "corrupt:mirror=a,epoch=1", "--"] + JobRunner.heat,
            runDirectory: runDirectory)
        try #require(stopped.status == 128 + SIGTERM, "\(stopped.stderr)")
        let fault = stopped.events("fault_injected").first
        let chunk = try #require(fault?["file"] as? String, "\(stopped.events("fault_injected"))")
        #expect(chunk.hasPrefix("chunks/") && fault?["flipped"] as? Bool == true, "\(String(describing: fault))")
        let resumed = try resumeToTheEnd(runDirectory)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        let roots = "\(runDirectory)/storage-a,\(runDirectory)/storage-b"
        let verify = try JobRunner.lifeline(["storage", "verify", roots], runDirectory: runDirectory)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let a = FileManager.default.contents(atPath: "\(runDirectory)/storage-a/\(chunk)")
        #expect(a != nil && a == FileManager.default.contents(atPath: "\(runDirectory)/storage-b/\(chunk)"), "A's copy not repaired")
    }

    /// With mirror B deleted between a stop and a resume, the resume restores the newest line
    /// from A, repairs B, and does not call it a fallback (it said a newer checkpoint was
    /// damaged when the one it used was the newest).
    @Test func aDeletedMirrorIsRepairedWithoutAFallback() throws {
        let runDirectory = JobRunner.scratch("mirror-deleted") + "/run"
        let stopped = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "0.3", "--walltime", "2s", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
            runDirectory: runDirectory)
        try #require(stopped.status == 128 + SIGTERM, "\(stopped.stderr)")
        try FileManager.default.removeItem(atPath: runDirectory + "/storage-b")
        let resumed = try resumeToTheEnd(runDirectory)
        #expect(resumed.status == 0, "\(resumed.stderr)")
        #expect(resumed.resultLines == [Self.oracle])
        #expect(resumed.events("fallback").isEmpty && !resumed.stderr.contains("falling back"), "\(resumed.stderr)")
    }

    /// A second job on the storage roots of a running one is refused with one line, leaves no
    /// run directory behind, and the first finishes as usual (two started at once both ran).
    @Test func aSecondJobOnTheSameStorageIsRefused() throws {
        let scratch = JobRunner.scratch("shared-storage")
        let storage = "\(scratch)/a,\(scratch)/b"
        let first = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "0.5", "--run-dir", scratch + "/one", "--storage", storage, "--quiet", "--"]
                + JobRunner.heat,
            runDirectory: scratch + "/one"
        ) { _ in
            JobRunner.waitForEvents(scratch + "/one", containing: "ranks_started")
            let second = try JobRunner.lifeline(
                ["run", "-n", "2", "--run-dir", scratch + "/two", "--storage", storage, "--quiet", "--"] + JobRunner.heat,
                runDirectory: scratch + "/two", timeoutSeconds: 60)
            #expect(second.status == 2 && second.stderr.contains("is in use by another job"), "\(second.stderr)")
            #expect(!FileManager.default.fileExists(atPath: scratch + "/two"), "the refused job left its run directory")
        }
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.resultLines == [Self.oracle])
    }

    /// The run directory's `output/` deleted while the job runs: the committed output still
    /// reaches stdout once (the supervisor reads each rank's output through a file it opened
    /// when the rank started); it used to end "finished" without the result line.
    @Test func outputDeletedMidRunStillReachesStdout() throws {
        let runDirectory = JobRunner.scratch("output-deleted") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
            runDirectory: runDirectory
        ) { _ in
            JobRunner.waitForEvents(runDirectory, containing: "ranks_started")
            try FileManager.default.removeItem(atPath: runDirectory + "/output")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [Self.oracle], "\(result.stdout)")
    }

    /// A fault that never fires (a step the program never reaches) is said at the end, on
    /// stderr and as an event, instead of passing for a run with it.
    @Test func aFaultThatNeverFiredIsSaid() throws {
        let result = try JobRunner.runHeat("never-fired", ranks: 2, ["--inject", "kill:rank=1,step=100000"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("--inject kill:rank=1,step=100000 never fired"), "\(result.stderr)")
        #expect(result.events("fault_not_fired").first?["spec"] as? String == "kill:rank=1,step=100000")
    }

    /// Resumes the two-rank job in `runDirectory` until it finishes (each resume may stop at its
    /// walltime).
    private func resumeToTheEnd(_ runDirectory: String) throws -> JobRunner.Result {
        var resumed = try JobRunner.lifeline(["resume", runDirectory, "-n", "2"], runDirectory: runDirectory)
        var resumes = 1
        while resumed.status == 128 + SIGTERM, resumes < 8 {
            // Five parts under the job's walltime; then, on a machine too loaded for them to reach
            // the end, the rest without one.
            let lift = resumes >= 5 ? ["--walltime", "none"] : []
            resumed = try JobRunner.lifeline(["resume", runDirectory, "-n", "2"] + lift, runDirectory: runDirectory)
            resumes += 1
        }
        return resumed
    }

    /// A run directory is the user's alone (0700 folders, 0600 files) and can be copied or
    /// moved: a resume drives the folder it is given, with its own storage roots; the original
    /// of a copy is left as it was, and nothing is created where a moved folder used to be.
    @Test func aCopiedOrMovedRunDirectoryResumesWhereItIs() throws {
        let scratch = JobRunner.scratch("relocate")
        let original = scratch + "/run"
        let stopped = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "30", "--walltime", "2s", "--run-dir", original, "--quiet", "--"] + JobRunner.heat,
            runDirectory: original)
        try #require(stopped.status == 128 + SIGTERM, "\(stopped.stderr)")
        for path in [original, original + "/job.json", original + "/storage-a", original + "/output/rank-0.0.out"] {
            let mode = ((try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int) ?? 0o777
            #expect(mode & 0o077 == 0, "\(path) is open to others: \(String(mode, radix: 8))")
        }
        let eventsBefore = try String(contentsOfFile: original + "/events.jsonl", encoding: .utf8)

        let copy = scratch + "/copy"
        try FileManager.default.copyItem(atPath: original, toPath: copy)
        let fromCopy = try resumeToTheEnd(copy)
        #expect(fromCopy.status == 0, "\(fromCopy.stderr)")
        #expect(fromCopy.resultLines == [Self.oracle])
        #expect(try String(contentsOfFile: original + "/events.jsonl", encoding: .utf8) == eventsBefore,
                "resuming the copy drove the original")

        // A job.json whose rank count was edited is refused with one line, and nothing changes.
        let edited = scratch + "/edited"
        try FileManager.default.copyItem(atPath: original, toPath: edited)
        let json = try String(contentsOfFile: edited + "/job.json", encoding: .utf8)
        try json.replacingOccurrences(of: "\"rankCount\" : 2", with: "\"rankCount\" : 3")
            .write(toFile: edited + "/job.json", atomically: true, encoding: .utf8)
        let refused = try JobRunner.lifeline(["resume", edited], runDirectory: edited)
        #expect(refused.status == 2 && refused.stderr.contains("says 3 ranks but the job's manifest 2"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("Fatal error"))

        let moved = scratch + "/moved"
        try FileManager.default.moveItem(atPath: original, toPath: moved)
        let fromMoved = try resumeToTheEnd(moved)
        #expect(fromMoved.status == 0, "\(fromMoved.stderr)")
        #expect(fromMoved.resultLines == [Self.oracle])
        #expect(!FileManager.default.fileExists(atPath: original), "resuming the moved folder recreated the old one")
    }

    @Test func runDirectoryInUseIsRefused() throws {
        let runDirectory = JobRunner.scratch("lock") + "/run"
        nonisolated(unsafe) var first: JobRunner.Result?
        let thread = Thread {
            first = try? JobRunner.lifeline(
                ["run", "-n", "2", "--interval", "30", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
                runDirectory: runDirectory)
        }
        thread.start()
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: runDirectory + "/job.json"), Date() < deadline { usleep(20_000) }
        let second = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
        #expect(second.status == 2)
        #expect(second.stderr.contains("in use by another lifeline"), "\(second.stderr)")
        // A repair would remove the job's writes in progress and rewrite its open log: refused.
        let repair = try JobRunner.lifeline(["storage", "repair", runDirectory], runDirectory: runDirectory)
        #expect(repair.status == 2 && repair.stderr.contains("is in use by a running job"), "\(repair.status): \(repair.stderr)")
        while first == nil, Date() < deadline.addingTimeInterval(120) { usleep(100_000) }
        #expect(first?.resultLines == [Self.oracle], "the first job was disturbed")
    }
}

extension RecoveryTests {
    /// `--interval auto --mtbf D`: after a commit the interval is sqrt(2·C·MTBF) for the
    /// measured cost C, and the event log says so.
    @Test func automaticIntervalFollowsYoungDaly() throws {
        let runDirectory = JobRunner.scratch("auto") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "2", "--interval", "auto", "--mtbf", "2s", "--run-dir", runDirectory, "--quiet", "--"] + JobRunner.heat,
            runDirectory: runDirectory)
        #expect(result.resultLines == [Self.oracle])
        let interval = try #require(result.events("interval").first)
        let seconds = try #require(interval["seconds"] as? Double)
        let cost = try #require(interval["cost_s"] as? Double)
        #expect(abs(seconds - (2 * cost * 2).squareRoot()) < 1e-3, "interval \(seconds) for cost \(cost)")
    }

    /// A run directory whose manifest is damaged on both mirrors: resume refuses with one clear
    /// line and changes nothing.
    @Test func resumeWithManifestLostOnBothMirrorsIsRefused() throws {
        let result = try JobRunner.runHeat("manifest", ["--inject", "kill:supervisor,epoch=1"])
        for root in ["storage-a", "storage-b"] {
            let path = result.runDirectory + "/" + root + "/manifest"
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count - 3] ^= 0xFF
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: result.runDirectory + "/storage-a/manifest"))
        let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(resumed.status == 3, "storage lost exits 3: \(resumed.status)")
        #expect(resumed.stderr.contains("its manifest is lost on both mirrors"), "\(resumed.stderr)")
        #expect(!resumed.stderr.contains("falls back"), "a refusal that speaks of falling back: \(resumed.stderr)")
        #expect(resumed.stderr.split(separator: "\n").count <= 2, "\(resumed.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: result.runDirectory + "/storage-a/manifest")) == before)
    }
}

extension RecoveryTests {
    /// `resume` of a finished run, on its own or another rank count, is refused and changes nothing.
    @Test func resumeOfFinishedRunOrOtherRankCountIsRefused() throws {
        let result = try JobRunner.runHeat("finished", ranks: 2)
        #expect(result.status == 0)
        let manifest = try Data(contentsOf: URL(fileURLWithPath: result.runDirectory + "/storage-a/manifest"))
        let finished = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(finished.status == 2 && finished.stderr.contains("already finished"), "\(finished.stderr)")
        let other = try JobRunner.lifeline(["resume", result.runDirectory, "-n", "3"], runDirectory: result.runDirectory)
        #expect(other.status == 2 && other.stderr.contains("already finished"), "\(other.stderr)")
        let again = try JobRunner.lifeline(["run", "--run-dir", result.runDirectory, "--", "heat2d"], runDirectory: result.runDirectory)
        #expect(again.status == 2 && again.stderr.contains("already holds a job"), "\(again.stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: result.runDirectory + "/storage-a/manifest")) == manifest)
    }
}

extension RecoveryTests {
    /// A rank's standard error reaches the terminal live as `[rank R] line` (the farm's master
    /// prints one line a round with `--verbose`), and stays in `output/` only with
    /// `--quiet-ranks`; committed output is unchanged either way.
    @Test func ranksStandardErrorIsForwardedLineByLine() throws {
        let program = ["taskfarm", "--tasks", "48", "--round", "8", "--verbose"]
        let scratch = JobRunner.scratch("rank-stderr")
        let forwarded = try JobRunner.lifeline(
            ["run", "-n", "3", "--interval", "0.3", "--run-dir", scratch + "/one", "--quiet", "--"] + program,
            runDirectory: scratch + "/one")
        #expect(forwarded.status == 0, "\(forwarded.stderr)")
        let lines = forwarded.stderr.split(separator: "\n").filter { $0.hasPrefix("[rank 0] round ") }
        #expect(lines.count == 6, "\(forwarded.stderr)")
        #expect(!forwarded.stderr.contains("[rank 1]"), "workers print nothing")
        let quiet = try JobRunner.lifeline(
            ["run", "-n", "3", "--interval", "0.3", "--run-dir", scratch + "/two", "--quiet", "--quiet-ranks", "--"] + program,
            runDirectory: scratch + "/two")
        #expect(quiet.status == 0 && !quiet.stderr.contains("[rank"), "\(quiet.stderr)")
        #expect(quiet.resultLines == forwarded.resultLines && quiet.resultLines.count == 1)
        let kept = try String(contentsOfFile: scratch + "/two/output/rank-0.0.err", encoding: .utf8)
        #expect(kept.split(separator: "\n").count == 6, "the file keeps what was not forwarded: \(kept)")
    }
}
