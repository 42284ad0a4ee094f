import Foundation
import LifelineCore
import Testing

extension RecoveryTests {
    /// A storage mirror that stops taking writes: the job commits on the other one alone,
    /// resynchronises the failed one when it comes back, and stops cleanly when both fail.
    /// Nested in `RecoveryTests` to run alone.
    @Suite struct MirrorFailure {
        /// heat2d long enough (about 6 s at 3 ms a step) for a 3 s failure between commits.
        static let longHeat = ["heat2d", "--size", "48", "--steps", "2000", "--broadcast-every", "25", "--sleep-ms", "3"]

        /// The failure-free result of `longHeat`: heat2d alone (it gives the same bits on any
        /// number of ranks), without the sleeps.
        static let longHeatOracle: String = {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: JobRunner.binDirectory + "/heat2d")
            process.arguments = Array(longHeat.dropFirst().dropLast(2))
            let out = Pipe()
            process.standardOutput = out
            try! process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
                .first { $0.hasPrefix("result sha256=") } ?? "no result from heat2d alone"
        }()

        /// Runs `longHeat` on 3 ranks, checkpoints every 0.25 s, with `options` and a kill at a
        /// step in `steps` drawn from a printed seed (`LIFELINE_TEST_SEED` replays it).
        static func runWithSeededKill(
            _ name: String, _ options: [String], steps: ClosedRange<Int>
        ) throws -> (seed: UInt64, result: JobRunner.Result) {
            let seed = Liveness.seed()
            var generator = SplitMix64(seed: seed)
            let kill = "kill:rank=\(Int.random(in: 0..<3, using: &generator)),step=\(Int.random(in: steps, using: &generator))"
            print("\(name): seed \(seed) (LIFELINE_TEST_SEED replays it): \(kill)")
            let runDirectory = JobRunner.scratch(name) + "/run"
            let result = try JobRunner.lifeline(
                ["run", "-n", "3", "--interval", "0.25", "--run-dir", runDirectory, "--quiet"] + options
                    + ["--inject", kill, "--"] + longHeat,
                runDirectory: runDirectory)
            return (seed, result)
        }

        /// `lifeline storage verify` on the run's two roots.
        static func verify(_ runDirectory: String) throws -> JobRunner.Result {
            try JobRunner.lifeline(
                ["storage", "verify", "\(runDirectory)/storage-a,\(runDirectory)/storage-b"], runDirectory: runDirectory)
        }

        /// `fail:mirror=X,epoch=2,for=3s`, with a rank killed at a step drawn from a printed seed
        /// (most often while the mirror has failed): the round after epoch 2 aborts, the next ones
        /// commit on the other mirror alone, the failed one is resynchronised once it takes
        /// writes, later commits are on both, the result is the failure-free one, and `storage
        /// verify` finds both mirrors whole.
        @Test(arguments: ["a", "b"])
        func aMirrorFailingForThreeSecondsDegradesAndResynchronises(mirror: String) throws {
            let (seed, result) = try Self.runWithSeededKill(
                "mirror-\(mirror)-fails", ["--inject", "fail:mirror=\(mirror),epoch=2,for=3s"], steps: 300...1000)
            #expect(result.status == 0, "seed \(seed): \(result.stderr)")
            #expect(result.resultLines == [Self.longHeatOracle], "seed \(seed)")
            let other = mirror == "a" ? "b" : "a"
            let degraded = result.events("mirror_degraded")
            #expect(degraded.count == 1 && degraded.first?["mirror"] as? String == mirror, "seed \(seed): \(degraded)")
            #expect(result.stderr.contains("mirror \(mirror.uppercased()) (") && result.stderr.contains("failed"), "\(result.stderr)")
            let commits = result.events("commit").compactMap { $0["mirrors"] as? String }
            #expect(commits.filter { $0 == other }.count >= 2, "seed \(seed): commits on \(commits)")
            let resynced = result.events("mirror_resynced")
            #expect(resynced.count == 1 && resynced.first?["mirror"] as? String == mirror, "seed \(seed): \(resynced)")
            #expect(commits.last == "ab", "seed \(seed): commits on \(commits)")
            #expect(result.events("fault_cleared").count == 1)
            let verify = try Self.verify(result.runDirectory)
            #expect(verify.status == 0, "seed \(seed): \(verify.stdout)\(verify.stderr)")
        }

        /// `--levels memory,disk` and mirror B failing after epoch 2 for 3 s: rounds go on
        /// committing in memory; the drain that meets the failure degrades the job to A, so the
        /// next drains reach disk there; B is resynchronised with what the drains wrote (a line
        /// in memory alone has nothing on disk to copy) and later lines are on both; a rank
        /// killed at a step drawn from a printed seed recovers to the failure-free result.
        @Test func levelsDegradeWhenADrainMeetsAFailedMirror() throws {
            let (seed, result) = try Self.runWithSeededKill(
                "mirror-levels", RecoveryTests.Levels.levels + ["--inject", "fail:mirror=b,epoch=2,for=3s"], steps: 300...1000)
            #expect(result.status == 0, "seed \(seed): \(result.stderr)")
            #expect(result.resultLines == [Self.longHeatOracle], "seed \(seed)")
            let degraded = result.events("mirror_degraded")
            #expect(degraded.count == 1 && degraded.first?["mirror"] as? String == "b", "seed \(seed): \(degraded)")
            #expect(!result.events("drain_failed").isEmpty, "seed \(seed): no drain met the failure")
            let resynced = result.events("mirror_resynced")
            #expect(resynced.count == 1 && resynced.first?["mirror"] as? String == "b", "seed \(seed): \(resynced)")
            let failedAt = degraded.first?["t"] as? Double ?? 0
            let resyncedAt = resynced.first?["t"] as? Double ?? .infinity
            let drainedWhileDegraded = result.events("drained").filter { ($0["t"] as? Double ?? 0) > failedAt && ($0["t"] as? Double ?? 0) < resyncedAt }
            #expect(!drainedWhileDegraded.isEmpty, "seed \(seed): no line reached disk while B had failed")
            let verify = try Self.verify(result.runDirectory)
            #expect(verify.status == 0, "seed \(seed): \(verify.stdout)\(verify.stderr)")
        }

        /// With message logging, mirror A (written first) fails after epoch 2 for 2 s and a rank
        /// is killed at a step drawn from a printed seed, most often while A is failed: the
        /// logs go on on B alone and the job degrades at once (no round aborts); the lone
        /// replay reads the log B holds, not the copy A was left with; A is resynchronised,
        /// logs included, and the result is the failure-free one.
        @Test(arguments: ["pessimistic", "optimistic"])
        func messageLogsGoOnOnTheOtherMirror(logging: String) throws {
            let (seed, result) = try Self.runWithSeededKill(
                "mirror-logs-\(logging)", ["--logging", logging, "--inject", "fail:mirror=a,epoch=2,for=2s"], steps: 250...650)
            #expect(result.status == 0, "seed \(seed): \(result.stderr)")
            #expect(result.resultLines == [Self.longHeatOracle], "seed \(seed)")
            #expect(result.events("failure").count == 1 && result.events("recovery_done").count == 1, "seed \(seed)")
            #expect(!result.events("log_mirror_failed").isEmpty && result.events("mirror_degraded").count == 1, "seed \(seed)")
            #expect(result.events("mirror_resynced").count == 1, "seed \(seed)")
            let verify = try Self.verify(result.runDirectory)
            #expect(verify.status == 0, "seed \(seed): \(verify.stdout)\(verify.stderr)")
        }

        /// Mirror B fails after epoch 1 and A after epoch 3: the job stops with exit 3 and a line
        /// that says why and how to go on, leaves no rank running, and `resume` (the faults
        /// over) finishes with the failure-free result and both mirrors whole again.
        @Test func bothMirrorsFailingStopsTheJobCleanly() throws {
            let runDirectory = JobRunner.scratch("mirrors-fail") + "/run"
            let stopped = try JobRunner.lifeline(
                ["run", "-n", "2", "--interval", "0.2", "--run-dir", runDirectory, "--quiet",
                 "--inject", "fail:mirror=b,epoch=1", "--inject", "fail:mirror=a,epoch=3", "--"] + JobRunner.heat,
                runDirectory: runDirectory)
            #expect(stopped.status == 3, "\(stopped.stderr)")
            #expect(stopped.stderr.contains("both storage mirrors failed")
                    && stopped.stderr.contains("lifeline resume \(runDirectory)"), "\(stopped.stderr)")
            #expect(stopped.resultLines.isEmpty)
            #expect(stopped.events("mirrors_failed").count == 1)
            let pids = (try? String(contentsOfFile: runDirectory + "/pids", encoding: .utf8)) ?? ""
            for line in pids.split(separator: "\n") {
                guard let pid = line.split(separator: " ").last.flatMap({ Int32($0) }) else { continue }
                #expect(!JobRunner.isRunning(pid), "rank process \(pid) outlived the stop")
            }
            let resumed = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.oracle])
            #expect(resumed.events("mirror_resynced").count >= 1)
            let verify = try Self.verify(runDirectory)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }

        /// A real read-only disk: mirror B, a bind mount, is remounted read-only once epoch 1 has
        /// committed, and read-write again once two commits went to A alone. The job degrades on
        /// the real EROFS, resynchronises B when it takes writes, and finishes with the
        /// failure-free result. Needs root (mount); skipped without it.
        @Test func aMirrorRemountedReadOnlyDegradesAndResynchronises() throws {
            let scratch = JobRunner.scratch("mirror-readonly")
            let runDirectory = scratch + "/run"
            let mirrorB = scratch + "/b"
            try FileManager.default.createDirectory(atPath: mirrorB, withIntermediateDirectories: true)
            guard getuid() == 0, Self.mount(["--bind", mirrorB, mirrorB]) else {
                print("skipped: making a read-only mirror needs root and mount(8) (uid \(getuid()))")
                return
            }
            defer { _ = Self.mount(["-u", mirrorB]) }
            nonisolated(unsafe) var remounted = true
            let result = try JobRunner.lifeline(
                ["run", "-n", "3", "--interval", "0.25", "--run-dir", runDirectory, "--storage",
                 "\(scratch)/a,\(mirrorB)", "--quiet", "--"] + Self.longHeat,
                runDirectory: runDirectory
            ) { _ in
                JobRunner.waitForEvents(runDirectory, containing: "\"event\":\"commit\"")
                guard Self.remount(mirrorB, readOnly: true) else {
                    remounted = false  // this kernel or container does not allow it: the job just finishes
                    return
                }
                Self.waitForCommits(runDirectory, onlyOn: "a", count: 2)
                try #require(Self.remount(mirrorB, readOnly: false), "cannot remount \(mirrorB) read-write")
            }
            guard remounted else {
                print("skipped: \(mirrorB) could not be remounted read-only here")
                return
            }
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines == [Self.longHeatOracle])
            let degraded = result.events("mirror_degraded").first
            #expect((degraded?["reason"] as? String)?.contains("Read-only file system") == true, "\(String(describing: degraded))")
            #expect(result.events("mirror_resynced").count == 1, "\(result.stderr)")
            let verify = try JobRunner.lifeline(["storage", "verify", "\(scratch)/a,\(mirrorB)"], runDirectory: runDirectory)
            #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        }

        /// Runs `mount ARGUMENTS` (or `umount` for `-u PATH`); whether it succeeded.
        static func mount(_ arguments: [String]) -> Bool {
            let process = Process()
            let unmount = arguments.first == "-u"
            process.executableURL = URL(fileURLWithPath: unmount ? "/bin/umount" : "/bin/mount")
            process.arguments = unmount ? Array(arguments.dropFirst()) : arguments
            process.standardError = FileHandle.nullDevice
            guard (try? process.run()) != nil else { return false }
            process.waitUntilExit()
            return process.terminationStatus == 0
        }

        /// Remounts the bind mount `path` read-only or read-write; retried for a few seconds
        /// while a write in progress keeps it busy.
        static func remount(_ path: String, readOnly: Bool) -> Bool {
            for _ in 0..<200 {
                if mount(["-o", "remount,bind," + (readOnly ? "ro" : "rw"), path, path]) { return true }
                usleep(20_000)
            }
            return false
        }

        /// Waits (at most 60 s) until `count` commits went to mirror `onlyOn` alone.
        static func waitForCommits(_ runDirectory: String, onlyOn mirror: String, count: Int) {
            let deadline = Date().addingTimeInterval(60)
            let marker = "\"mirrors\":\"\(mirror)\""
            while Date() < deadline {
                let text = (try? String(contentsOfFile: runDirectory + "/events.jsonl", encoding: .utf8)) ?? ""
                if text.components(separatedBy: marker).count - 1 >= count { return }
                usleep(20_000)
            }
        }
    }
}
