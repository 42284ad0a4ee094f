import Foundation
import LifelineCore
import LifelineStorage
import Testing

extension RecoveryTests {
    /// `--levels memory,disk`: heat2d on 4 ranks, rounds committed in the hosts' memory and
    /// drained to disk behind them; each recovery ends with the failure-free bits.
    @Suite struct Levels {
        /// The manifest of a run, as its supervisor committed it (mirror A).
        static func manifest(_ runDirectory: String) throws -> Manifest {
            let store = try MirroredStore(rootA: runDirectory + "/storage-a", rootB: runDirectory + "/storage-b")
            return try #require(try ManifestStore(store: store).load(repair: false))
        }

        /// Where the tests' copies go: /dev/shm, or a scratch folder on a machine without one
        /// (the job then warns that it is not a memory file system, and works the same).
        static let memoryRoot: String = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : JobRunner.scratch("memory-root")

        /// `--levels memory,disk` with the tests' memory root.
        static let levels = ["--levels", "memory,disk", "--memory-root", memoryRoot]

        /// The job's level-1 folder.
        static func memoryFolder(_ manifest: Manifest) -> String {
            MemoryLevel.folder(root: memoryRoot, jobID: manifest.jobID)
        }

        /// A rank killed right after a round drawn from the seed commits restores from that
        /// round's copies in memory: no round is ever drained (`--drain-every 1000`), so no
        /// snapshot exists on disk to read. The memory folder is gone when the job ends.
        @Test func aRankKilledRestoresFromMemoryWithNoDiskRead() throws {
            let seed = JobRunner.seed("levels-memory")
            var generator = SplitMix64(seed: seed)
            let rank = Int.random(in: 0..<4, using: &generator)
            let epoch = Int.random(in: 1...3, using: &generator)
            let injection = "kill:rank=\(rank),epoch=\(epoch)"
            print("levels-memory: \(injection)")
            let result = try JobRunner.runHeat("levels-memory", Self.levels + ["--drain-every", "1000", "--inject", injection])
            #expect(result.status == 0, "seed \(seed): \(result.stderr)")
            #expect(result.resultLines == [RecoveryTests.oracle], "seed \(seed): \(injection)")
            let starts = result.events("recovery_start")
            #expect(starts.count == 1)
            #expect(starts.first?["level"] as? String == "memory", "seed \(seed): \(starts)")
            #expect(starts.first?["epoch"] as? Int == epoch, "seed \(seed): \(starts)")
            #expect(result.events("commit").allSatisfy { $0["level"] as? String == "memory" })
            #expect(result.events("drained").isEmpty)
            for mirror in ["a", "b"] {
                let epochs = result.runDirectory + "/storage-\(mirror)/epochs"
                #expect(((try? FileManager.default.contentsOfDirectory(atPath: epochs)) ?? []).isEmpty,
                        "a snapshot reached disk on mirror \(mirror)")
            }
            let manifest = try Self.manifest(result.runDirectory)
            #expect(manifest.committed.allSatisfy { $0.levels == "memory" })
            #expect(!FileManager.default.fileExists(atPath: Self.memoryFolder(manifest)), "the memory folder outlived the job")
        }

        /// Every round drained: each is recorded on disk after its commit — round 2 too, whose
        /// drains the rollback right after its commit cuts short: the relaunched ranks that had
        /// not drained it do so from the copies they restored — the stored snapshots verify, and
        /// the old ones are collected as on disk alone.
        @Test func everyDrainedRoundIsRecordedOnDiskAndVerifies() throws {
            let result = try JobRunner.runHeat("levels-drain", Self.levels + ["--inject", "kill:rank=2,epoch=2"])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines == [RecoveryTests.oracle])
            let commits = result.events("commit").compactMap { $0["epoch"] as? Int }
            let drained = result.events("drained").compactMap { $0["epoch"] as? Int }
            #expect(commits.count >= 3)
            // (and the last round, whose drain may end after the final barrier)
            // A line whose drains were all in before its commit is on disk at once (no `drained`).
            let inMemoryAlone = result.events("commit").filter { $0["level"] as? String == "memory" }.compactMap { $0["epoch"] as? Int }
            // From round 2 on, every such line is drained, round 2 by the relaunched ranks; an
            // older line may have lost a drain with the killed rank (rare: drains of this state
            // take milliseconds), since the rollback restores round 2, not it.
            #expect(Set(inMemoryAlone.filter { $0 >= 2 }).isSubset(of: drained), "committed in memory alone \(inMemoryAlone), drained \(drained)")
            #expect(Set(drained).isSubset(of: inMemoryAlone))
            // The ranks' drains end before the final barrier: every kept line is on disk.
            let manifest = try Self.manifest(result.runDirectory)
            #expect(manifest.committed.allSatisfy { $0.isOnDisk }, "\(manifest.committed.map(\.levels))")
            #expect(manifest.newestLine?.levels == "memory,disk")
            // The rollback SIGKILLs ranks that may be draining round 2: a temporary file a killed
            // write leaves is said, nothing committed is damaged or lost.
            let verify = try JobRunner.lifeline(["storage", "verify", result.runDirectory], runDirectory: result.runDirectory)
            #expect(verify.stdout.contains(" 0 repairable, 0 lost,"), "\(verify.stdout)\(verify.stderr)")
        }

        /// The memory lost right after round 3 commits, then a rank killed: round 3 was held in
        /// memory alone (only even rounds drain), so the job falls back to round 2 on disk and
        /// says why. `lifeline inspect` and `lifeline timeline` say where each line was held, which
        /// drains put it on disk, and where the recovery read.
        @Test func lostMemoryFallsBackToTheNewestLineOnDisk() throws {
            let result = try JobRunner.runHeat("levels-lost", Self.levels + [
                "--drain-every", "2", "--inject", "lose:memory,epoch=3", "--inject", "kill:rank=1,epoch=3",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines == [RecoveryTests.oracle])
            let start = result.events("recovery_start").first
            #expect(start?["epoch"] as? Int == 2, "\(String(describing: start))")
            #expect(start?["level"] as? String == "disk")
            #expect(result.stderr.contains("falling back to epoch 2: a newer line was held in memory alone"), "\(result.stderr)")

            let inspect = try JobRunner.lifeline(["inspect", result.runDirectory, "--json"], runDirectory: result.runDirectory)
            let summary = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
            #expect(summary["levels"] as? String == "memory,disk")
            let failures = try #require(summary["failures"] as? [[String: Any]])
            #expect(failures.map { $0["level"] as? String } == ["disk"], "\(failures)")
            let epochs = try #require(summary["epochs"] as? [[String: Any]])
            let drained = Set(result.events("drained").compactMap { $0["epoch"] as? Int })
            #expect(epochs.count == result.events("commit").count)
            for (line, commit) in zip(epochs, result.events("commit")) {
                #expect(line["level"] as? String == commit["level"] as? String, "\(line)")
                #expect((line["drainedAfterSeconds"] is Double) == drained.contains(commit["epoch"] as? Int ?? -1), "\(line)")
            }
            // Round 2, which the recovery read from disk, got there: by its drains (a line in
            // memory alone at its commit), or before its commit; round 3, odd, never did.
            let two = try #require(epochs.first { $0["epoch"] as? Int == 2 })
            #expect(two["level"] as? String == "memory,disk" || (two["drainedBytes"] as? Int ?? 0) > 0, "\(two)")
            let three = try #require(epochs.first { $0["epoch"] as? Int == 3 })
            #expect(three["level"] as? String == "memory" && three["drainedAfterSeconds"] == nil, "\(three)")
            let text = try JobRunner.lifeline(["inspect", result.runDirectory], runDirectory: result.runDirectory).stdout
            #expect(text.contains("global-rollback from disk"), "\(text)")
            let rowThree = text.split(separator: "\n").first { $0.hasPrefix("      3 ") }
            #expect(rowThree?.hasSuffix("memory alone") == true, "\(text)")
            #expect(text.contains("levels       memory,disk, one round in 2 drained"), "\(text)")
            // And the timeline marks them so.
            let page = result.runDirectory + "/timeline.html"
            _ = try JobRunner.lifeline(["timeline", result.runDirectory, "-o", page], runDirectory: result.runDirectory)
            let html = (try? String(contentsOfFile: page, encoding: .utf8)) ?? ""
            #expect(html.contains("checkpoint, epoch 3: memory alone</title>"), "\(html.count) bytes")
            #expect(html.contains("recovery line: epoch 2, read from disk"), "\(html.count) bytes")
        }

        /// Under every logging mode a rank killed right after a round commits in memory recovers
        /// alone from its copy there and replays its log; with the memory lost, its line in
        /// memory alone cannot be read, and since the survivors kept only what that line does not
        /// cover, every rank rolls back to the newest line on disk, saying why.
        @Test(arguments: ["pessimistic", "sender-based", "optimistic"])
        func loggingRecoversAloneFromMemoryAndRollsBackWhenItIsLost(logging: String) throws {
            let alone = try JobRunner.runHeat("levels-\(logging)", Self.levels + [
                "--drain-every", "1000", "--logging", logging, "--inject", "kill:rank=1,epoch=2",
            ])
            #expect(alone.status == 0, "\(logging): \(alone.stderr)")
            #expect(alone.resultLines == [RecoveryTests.oracle], "\(logging)")
            let start = alone.events("recovery_start").first
            #expect(start?["mode"] as? String == "replay", "\(logging): \(String(describing: start))")
            #expect(start?["level"] as? String == "memory", "\(logging): \(String(describing: start))")
            #expect(start?["epoch"] as? Int == 2)

            let lost = try JobRunner.runHeat("levels-\(logging)-lost", Self.levels + [
                "--drain-every", "2", "--logging", logging,
                "--inject", "lose:memory,epoch=3", "--inject", "kill:rank=1,epoch=3",
            ])
            #expect(lost.status == 0, "\(logging): \(lost.stderr)")
            #expect(lost.resultLines == [RecoveryTests.oracle], "\(logging)")
            // (Under optimistic logging the recovery starts as a replay, and its plan falls back.)
            let rollback = lost.events("recovery_start").first
            #expect(rollback?["mode"] as? String == (logging == "optimistic" ? "replay" : "global-rollback"),
                    "\(logging): \(String(describing: rollback))")
            #expect(rollback?["epoch"] as? Int == 2 && rollback?["level"] as? String == "disk", "\(logging): \(String(describing: rollback))")
            let reasons = lost.events("fallback_global_rollback").compactMap { $0["reason"] as? String }
            #expect(reasons.count == 1, "\(logging): \(lost.stderr)")
            #expect(logging != "pessimistic" || reasons.contains { $0.contains("held in memory alone") }, "\(reasons)")
            #expect(lost.events("failure").count == 1, "\(logging): a rank failed in the recovery: \(lost.stderr)")
        }

        /// The supervisor killed between a commit in memory and its drain (round 3, which
        /// `--drain-every 2` never drains): `resume` trusts no copy in memory, says why, and
        /// restarts from the newest line its manifest has on disk, to the failure-free bits; the
        /// memory folder is gone after it.
        @Test func aResumeRestartsFromTheNewestLineOnDisk() throws {
            let result = try JobRunner.runHeat("levels-resume", Self.levels + [
                "--drain-every", "2", "--inject", "kill:supervisor,epoch=3",
            ])
            #expect(result.status != 0)
            let manifest = try Self.manifest(result.runDirectory)
            let newest = try #require(manifest.newestLine)
            #expect(newest.epoch == 3 && !newest.isOnDisk, "the kill came at \(newest.epoch) (\(newest.levels))")
            let onDisk = manifest.committed.last { $0.isOnDisk }?.epoch ?? 0
            let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
            #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.oracle])
            let launched = resumed.events("rank_launched").filter { ($0["incarnation"] as? Int ?? 0) >= 4 }
            #expect(launched.count == 4 && launched.allSatisfy { $0["epoch"] as? Int == Int(onDisk) },
                    "manifest lines \(manifest.committed.map { "\($0.epoch):\($0.levels)" }): \(launched)")
            #expect(resumed.stderr.contains("does not outlive its supervisor"), "\(resumed.stderr)")
            #expect(!FileManager.default.fileExists(atPath: Self.memoryFolder(manifest)))
        }

        /// A supervisor killed never takes its copies out of memory, and no `resume` may come:
        /// the next job on the host removes its folder (`memory_reclaimed`), since its owner lock
        /// is free, and leaves the folder of a supervisor that lives (its lock held, here by this
        /// process) and one with no lock (made before the locks were). A memory
        /// root of the test's own, so that no other test's job reclaims the killed one's first.
        @Test func aKilledSupervisorsCopiesInMemoryAreReclaimedByTheNextJob() throws {
            let root = (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory())
                + "/lltest-reclaim-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: root) }
            let killed = try JobRunner.runHeat("levels-reclaim-killed", [
                "--levels", "memory,disk", "--memory-root", root, "--inject", "kill:supervisor,epoch=2",
            ])
            #expect(killed.status != 0)
            let abandoned = MemoryLevel.folder(root: root, jobID: try Self.manifest(killed.runDirectory).jobID)
            let left = (try? FileManager.default.contentsOfDirectory(atPath: abandoned)) ?? []
            #expect(left.contains { $0.hasSuffix(".l1") }, "the killed job's copies are in memory: \(left)")
            // A live supervisor's folder (its lock held by this process) and one with no lock.
            let live = MemoryLevel(folder: MemoryLevel.folder(root: root, jobID: "live"))
            try live.create()
            let lock = try live.holdOwnerLock()
            defer { close(lock) }
            let unlocked = MemoryLevel.folder(root: root, jobID: "ranks-on-hosts-host1")
            try FileManager.default.createDirectory(atPath: unlocked, withIntermediateDirectories: true)
            let next = try JobRunner.runHeat("levels-reclaim-next", ["--levels", "memory,disk", "--memory-root", root])
            #expect(next.status == 0)
            #expect(next.resultLines == [RecoveryTests.oracle])
            let reclaimed = next.events("memory_reclaimed")
            #expect(reclaimed.count == 1 && reclaimed.first?["folder"] as? String == abandoned
                        && (reclaimed.first?["bytes"] as? Int ?? 0) > 0, "\(reclaimed)")
            #expect(!FileManager.default.fileExists(atPath: abandoned))
            #expect(FileManager.default.fileExists(atPath: live.folder + "/.supervisor-lock"))
            #expect(FileManager.default.fileExists(atPath: unlocked))
        }

        /// Drains that fall behind the rounds read their copies intact. A round's state is
        /// captured straight into its copy in memory, over a spare that an older copy became; a
        /// copy still being drained must not become that spare. Rounds every 50 ms and slow drains
        /// (zstd 19, chunks of 16 KiB, each read as it is compressed) leave drains two rounds
        /// behind; the supervisor is killed and the job resumed from the newest line on disk,
        /// which was drained while later rounds captured: the failure-free bits. (With the copy
        /// made the spare while its drain read it, the resumed results differed here.)
        @Test func drainsBehindTheRoundsReadTheirCopiesIntact() throws {
            let heat = ["heat2d", "--size", "512", "--steps", "300", "--broadcast-every", "25", "--sleep-ms", "3"]
            let referenceDirectory = JobRunner.scratch("levels-lag-reference") + "/run"
            let reference = try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "1e9", "--run-dir", referenceDirectory, "--quiet", "--"] + heat,
                runDirectory: referenceDirectory)
            let expected = try #require(reference.resultLines.last)
            let runDirectory = JobRunner.scratch("levels-lag") + "/run"
            let result = try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.05", "--run-dir", runDirectory, "--quiet"] + Self.levels + [
                    "--zstd-level", "19", "--chunk-kib", "16", "--inject", "kill:supervisor,epoch=8", "--",
                ] + heat, runDirectory: runDirectory)
            #expect(result.status != 0)
            // The drains' lag: a round drained only after two later rounds committed.
            var committed = 0, lagged = false
            for event in result.events {
                guard let epoch = event["epoch"] as? Int else { continue }
                if event["event"] as? String == "commit" { committed = max(committed, epoch) }
                if event["event"] as? String == "drained", committed >= epoch + 2 { lagged = true }
            }
            #expect(lagged, "no drain fell two rounds behind: the test did not exercise a drain reading a copy in memory as later rounds captured")
            let resumed = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
            #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
            #expect(resumed.resultLines == [expected])
        }

        /// A `--memory-max` below a rank's snapshot: each rank's process says so in one line and
        /// writes to disk alone; the lines are on disk at commit and a failure restores from there.
        @Test func aMemoryMaxTooSmallRunsOnDiskAlone() throws {
            let result = try JobRunner.runHeat("levels-max", Self.levels + [
                "--memory-max", "1k", "--inject", "kill:rank=0,epoch=2",
            ])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines == [RecoveryTests.oracle])
            let said = result.stderr.split(separator: "\n").filter { $0.contains("do not fit --memory-max 1024") }
            #expect(said.count == result.events("rank_launched").count, "one line per rank process: \(result.stderr)")
            #expect(result.events("commit").allSatisfy { $0["level"] as? String == "disk" })
            #expect(result.events("recovery_start").first?["level"] as? String == "disk")
            #expect(try Self.manifest(result.runDirectory).committed.allSatisfy { $0.levels == "disk" })
        }

        /// Output along the way reaches the user once, in order, whatever a rollback restores:
        /// rank 0 prints a line every 10 steps; the lines of a run restored from memory, and of
        /// one that falls back from a line in memory to an older line on disk (its output is
        /// released only once a line is on disk), are those of the failure-free run.
        @Test func outputReachesTheUserOnceAcrossMemoryRestoresAndFallbacks() throws {
            func lines(_ result: JobRunner.Result) -> [String] {
                result.stdout.split(separator: "\n").map(String.init).filter { $0.hasPrefix("step ") || $0.hasPrefix("result ") }
            }
            // Longer than the other tests' heat2d, so that round 3, where the faults fire,
            // comes well before the end on a fast machine too.
            let program = ["heat2d", "--size", "48", "--steps", "1000", "--broadcast-every", "25", "--sleep-ms", "3", "--print-every", "10"]
            func run(_ name: String, _ options: [String]) throws -> JobRunner.Result {
                let runDirectory = JobRunner.scratch(name) + "/run"
                return try JobRunner.lifeline(
                    ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet"] + options + ["--"] + program,
                    runDirectory: runDirectory)
            }
            let free = try run("levels-output-free", [])
            #expect(lines(free).count == 101, "\(free.stdout)")
            for options in [
                Self.levels + ["--inject", "kill:rank=0,epoch=3"],
                Self.levels + ["--drain-every", "2", "--inject", "lose:memory,epoch=3", "--inject", "kill:rank=2,epoch=3"],
                ["--inject", "kill:rank=0,epoch=2"],
            ] {
                let result = try run("levels-output", options)
                #expect(result.status == 0, "\(options): \(result.stderr)")
                #expect(result.events("recovery_start").count == 1, "\(options)")
                #expect(lines(result) == lines(free), "\(options): \(result.stdout)")
            }
            // The supervisor killed, then `resume`: what the killed run printed and what the
            // resume prints are the failure-free lines, once each — the killed run released
            // output only up to lines on disk, where the resume restarts.
            let killed = try run("levels-output-resume", Self.levels + ["--drain-every", "2", "--inject", "kill:supervisor,epoch=3"])
            #expect(killed.status != 0)
            let resumed = try JobRunner.lifeline(["resume", killed.runDirectory], runDirectory: killed.runDirectory)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(lines(killed) + lines(resumed) == lines(free), "killed: \(killed.stdout)\nresumed: \(resumed.stdout)")
        }

        /// The task farm with two idle workers (the minimal checkpoint tests' job) under minimal
        /// checkpoints with levels, a round every 0.15 s, with the fault `inject`.
        static func minimalFarm(_ name: String, inject: String) throws -> JobRunner.Result {
            let farm = ["taskfarm", "--tasks", "480", "--work", "20000", "--sleep-ms", "80", "--idle-workers", "2"]
            let runDirectory = JobRunner.scratch(name) + "/run"
            return try JobRunner.lifeline(
                ["run", "-n", "4", "--interval", "0.15", "--run-dir", runDirectory, "--quiet", "--checkpoint", "minimal"]
                    + levels + ["--inject", inject, "--"] + farm,
                runDirectory: runDirectory)
        }

        /// Minimal checkpoints with levels: the task farm's idle workers keep older checkpoints
        /// in the lines (at first the start, at the end the one they wrote while working). Their
        /// copies in memory outlive the rounds they did not write, so the kill in the last quarter
        /// restores every rank from memory, the kept ones from their older copies; each line is
        /// recorded on disk once the drains of all its members' snapshots are in, whichever round
        /// wrote them, and the stored snapshots verify.
        @Test func minimalCheckpointsKeepOlderCopiesInMemoryAndOnDisk() throws {
            let result = try Self.minimalFarm("levels-minimal", inject: "kill:rank=3,step=39")
            let runDirectory = result.runDirectory
            #expect(result.status == 0, "\(result.stderr)")
            #expect(result.resultLines == [RecoveryTests.farmOracle])
            let failure = result.events("failure").first?["t"] as? Double ?? .infinity
            let keptOlder = result.events("commit").filter { commit in
                (commit["t"] as? Double ?? .infinity) < failure && commit["kept"] as? String == "1,2"
                    && (commit["kept_from"] as? String ?? "").split(separator: ",").allSatisfy { Int($0) ?? 0 > 0 }
            }
            #expect(!keptOlder.isEmpty, "no line before the kill kept an older checkpoint: \(result.events("commit"))")
            let start = result.events("recovery_start").first
            #expect(start?["level"] as? String == "memory", "\(String(describing: start))")
            let manifest = try Self.manifest(runDirectory)
            #expect(manifest.committed.allSatisfy { $0.isOnDisk }, "\(manifest.committed.map { "\($0.epoch):\($0.levels)" })")
            #expect(manifest.committed.contains { $0.members.count == 4 && Set($0.members.map(\.snapshot)).count == 4 })
            let verify = try JobRunner.lifeline(["storage", "verify", runDirectory], runDirectory: runDirectory)
            #expect(verify.stdout.contains(" 0 repairable, 0 lost,"), "\(verify.stdout)\(verify.stderr)")
        }

        /// Minimal checkpoints with levels, the supervisor killed part way (right after round 8
        /// commits): the resume restarts from the newest line on disk, kept entries and all, to
        /// the failure-free bits.
        @Test func minimalCheckpointsResumeFromTheNewestLineOnDisk() throws {
            let killed = try Self.minimalFarm("levels-minimal-resume", inject: "kill:supervisor,epoch=8")
            let runDirectory = killed.runDirectory
            #expect(killed.status != 0)
            let manifest = try Self.manifest(runDirectory)
            #expect(manifest.newestLine?.epoch == 8, "\(manifest.committed.map { "\($0.epoch):\($0.levels)" })")
            let onDisk = try #require(manifest.committed.last { $0.isOnDisk }, "no line reached disk: \(manifest.committed.map(\.levels))")
            let resumed = try JobRunner.lifeline(["resume", runDirectory], runDirectory: runDirectory)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.farmOracle])
            let launched = resumed.events("rank_launched").filter { ($0["incarnation"] as? Int ?? 0) >= 4 }
            #expect(launched.count == 4 && launched.allSatisfy { $0["epoch"] as? Int == Int(onDisk.epoch) }, "\(launched)")
        }

        /// Two addresses of this machine as two hosts.
        static let twoHosts = ["--launcher", "ssh", "--hosts", "127.0.0.1,127.0.0.2", "--launch-command", "sh -c {cmd}"]

        /// What levels do not take yet is refused in one line, before anything is written or a
        /// run directory announced.
        @Test func unsupportedCombinationsAreRefusedInOneLine() throws {
            for (options, expected) in [
                (Self.levels + ["--checkpoint", "independent"], "works with --checkpoint coordinated, blocking or minimal"),
                (Self.levels + ["--checkpoint", "minimal", "--drain-every", "2"], "minimal checkpoints drain every round"),
                (["--drain-every", "2"], "need --levels memory,disk"),
                (Self.levels + ["--drain-every", "0"], "--drain-every 0"),
                (["--levels", "memory,disk", "--memory-root", "/nonexistent-lifeline"], "is not a folder"),
                (["--levels", "memory"], "is not one of disk, memory,disk"),
                (["--inject", "lose:memory,epoch=2"], "needs --levels memory,disk"),
                (Self.levels + ["--launcher", "mpirun"], "does not work with --launcher mpirun"),
                (Self.levels + Self.twoHosts + ["--inject", "lose:memory,epoch=2"], "on several hosts a memory is lost with its host"),
            ] {
                let runDirectory = JobRunner.scratch("levels-refused") + "/run"
                let result = try JobRunner.lifeline(
                    ["run", "-n", "2", "--run-dir", runDirectory] + options + ["--"] + JobRunner.heat,
                    runDirectory: runDirectory)
                #expect(result.status != 0, "\(options) was accepted")
                #expect(result.stderr.contains(expected), "\(options): \(result.stderr)")
                #expect(!result.stderr.contains("run directory"), "\(options): a run directory announced before the refusal")
                #expect(!FileManager.default.fileExists(atPath: runDirectory + "/job.json"), "\(options) left a job behind")
            }
        }
    }
}
