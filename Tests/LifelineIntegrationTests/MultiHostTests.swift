#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineStorage
import Testing

/// Jobs on several hosts (`--launcher ssh`): ranks on two hosts talk over TCP after the mutual
/// handshake, and a rank killed on the second host recovers to the failure-free bits. On loopback
/// (two addresses of this machine, no root needed) and on test hosts made of network namespaces
/// (`scripts/testbed.sh`, root only; skipped with a line elsewhere).
@Suite(.serialized) struct MultiHostTests {
    /// The failure-free result of the test problem on 4 ranks.
    static let failureFree: String? = {
        let result = try? JobRunner.runHeat("multihost-reference")
        return result?.resultLines.last
    }()
    /// The same on 8 ranks.
    static let failureFree8: String? = {
        let result = try? JobRunner.runHeat("multihost-reference-8", ranks: 8)
        return result?.resultLines.last
    }()

    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Runs the test problem on 4 ranks over `hosts` with `options`.
    static func run(
        _ name: String, hosts: String, launchCommand: String, _ options: [String], wrapper: [String] = [],
        environment: [String: String] = [:], program: [String] = JobRunner.heat, whileRunning: ((String) throws -> Void)? = nil
    ) throws -> JobRunner.Result {
        try run(name, ranks: 4, ["--launcher", "ssh", "--hosts", hosts, "--launch-command", launchCommand] + options,
                wrapper: wrapper, environment: environment, program: program, whileRunning: whileRunning)
    }

    /// Runs the test problem on `ranks` ranks with `options`.
    static func run(
        _ name: String, ranks: Int, _ options: [String], wrapper: [String] = [], environment: [String: String] = [:],
        program: [String] = JobRunner.heat, whileRunning: ((String) throws -> Void)? = nil
    ) throws -> JobRunner.Result {
        let runDirectory = JobRunner.scratch(name) + "/run"
        return try JobRunner.lifeline(
            ["run", "-n", String(ranks), "--interval", "0.5", "--run-dir", runDirectory, "--quiet"] + options
                + ["--"] + program,
            runDirectory: runDirectory, wrapper: wrapper, environment: environment,
            whileRunning: whileRunning.map { body in { _ in try body(runDirectory) } })
    }

    /// Where each rank that finished restored its last snapshot from (`rank_finished`'s
    /// `restored_from`: memory, disk or start), by rank.
    static func restoredFrom(_ result: JobRunner.Result) -> [Int: String] {
        Dictionary(uniqueKeysWithValues: result.events("rank_finished").compactMap { event in
            (event["rank"] as? Int).map { ($0, event["restored_from"] as? String ?? "") }
        })
    }

    /// Cuts test host lth2's link (and kills its ranks' processes, `killToo`) once the job's
    /// first line committed.
    static func cutSecondHost(_ runDirectory: String, killToo: Bool) throws {
        JobRunner.waitForEvents(runDirectory, containing: "\"commit\"")
        _ = try shell(["/usr/sbin/ip", "-n", "ltsw", "link", "set", "v-lth2", "down"])
        guard killToo else { return }
        let pids = (try? String(contentsOfFile: runDirectory + "/pids", encoding: .utf8)) ?? ""
        for line in pids.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, fields[2] == "lth2", let pid = Int32(fields[1]) { kill(pid, SIGKILL) }
        }
    }

    /// Two addresses of this machine as two hosts: ranks 0–1 on one, 2–3 on the other, a rank of
    /// the second killed, in each way of recovering (global rollback, alone with its log, alone
    /// with the event logger).
    @Test(arguments: ["none", "pessimistic", "sender-based"])
    func aRankKilledOnAnotherHostRecovers(logging: String) throws {
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-loopback-\(logging)", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", logging, "--inject", "kill:rank=3,step=400"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.events.contains { $0["event"] as? String == "failure" && $0["rank"] as? Int == 3 })
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" }
            == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"])
        let listening = try #require(result.events.first { $0["event"] as? String == "listening" })
        #expect(listening["address"] as? String == "127.0.0.1")
    }

    /// `--levels memory,disk` on two addresses of this machine as two hosts: each rank's copies
    /// go to a folder of its own host's (named by the host, as test hosts share one memory
    /// file system) and of its partner host's, no round is drained (`--drain-every 1000`), and a rank of the second host
    /// killed restores from its host's memory, alone with its log (optimistic logging's orphan
    /// search taking its checkpoint from its ACK) or with every rank, to the failure-free bits.
    /// The ranks remove their folders as the job ends. With partner copies too (the log read
    /// for the orphan search where the killed rank's host keeps it).
    @Test(arguments: [("none", false), ("pessimistic", false), ("optimistic", false), ("optimistic", true)])
    func aRankKilledOnAnotherHostRestoresFromItsHostsMemory(logging: String, partner: Bool) throws {
        let reference = try #require(Self.failureFree)
        let memoryRoot = try Self.memoryRoot("multihost-levels")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let listing = memoryRoot + ".seen"
        defer { try? FileManager.default.removeItem(atPath: listing) }
        let storage = JobRunner.scratch("multihost-levels-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-levels-\(logging)", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", logging, "--levels", "memory,disk", "--memory-root", memoryRoot, "--drain-every", "1000",
             "--inject", "kill:rank=3,step=400"]
                + (partner ? ["--storage", storage + "/local/{host}," + storage + "/kept/{partner}"] : [])
        ) { runDirectory in
            // Once a line committed, each host's folder holds its own ranks' copies and its
            // partner's.
            JobRunner.waitForEvents(runDirectory, containing: "\"commit\"")
            var seen: [String] = []
            for folder in (try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? [] {
                let ranks = Set(((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot + "/" + folder)) ?? [])
                    .filter { $0.hasSuffix(".l1") }.compactMap { Int($0.prefix(6)) })
                seen.append(String(folder.split(separator: "-").last ?? "") + ":" + ranks.sorted().map(String.init).joined(separator: ","))
            }
            try seen.sorted().joined(separator: " ").write(toFile: listing, atomically: true, encoding: .utf8)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let starts = result.events("recovery_start")
        #expect(!starts.isEmpty && starts.allSatisfy { $0["level"] as? String == "memory" }, "\(starts)")
        #expect(starts.allSatisfy { $0["mode"] as? String == (logging == "none" ? "global-rollback" : "replay") }, "\(starts)")
        // Optimistic logging's orphan search took the killed rank's checkpoint from its ACK.
        #expect(result.events("fallback_global_rollback").isEmpty, "\(result.stderr)")
        #expect(result.events("commit").allSatisfy { $0["level"] as? String == "memory" })
        #expect((try? String(contentsOfFile: listing, encoding: .utf8)) == "127.0.0.1:0,1,2,3 127.0.0.2:0,1,2,3")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? []).isEmpty,
                "the ranks' folders in memory outlived the job")
    }

    /// A supervisor killed on a job of several hosts: its ranks exit as their links drop and
    /// leave their folders in each host's memory, which no supervisor runs there to remove.
    /// Once no rank of that job holds a folder's lock (and the lock went untouched for a
    /// minute), a rank of the next job on the host removes it and says so
    /// (`memory_reclaimed`, with the host it ran on); a folder whose ranks' lock is held (here
    /// by this process, as a live job's rank holds it) stays; the next job ends with the
    /// failure-free bits and leaves no folder of its own.
    @Test func aKilledSupervisorsFoldersOnHostsAreReclaimedByTheNextJobsRanks() throws {
        let reference = try #require(Self.failureFree)
        let memoryRoot = try Self.memoryRoot("multihost-reclaim")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let killed = try Self.run(
            "multihost-reclaim-killed", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--levels", "memory,disk", "--memory-root", memoryRoot, "--drain-every", "1000", "--inject", "kill:supervisor,epoch=2"])
        #expect(killed.status != 0)
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? []).sorted()
        #expect(left.count == 2 && left.allSatisfy { folder in
            ((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot + "/" + folder)) ?? []).contains { $0.hasSuffix(".l1") }
        }, "each host's folder holds the killed job's copies: \(left)")
        // The killed job's ranks exit once they find their links gone: wait (20 s at most)
        // until none holds its folder's lock. A rank of it could be relaunched on the host
        // within a minute of the lock's last touch: the locks are made older than that.
        let deadline = Date().addingTimeInterval(20)
        for folder in left {
            let path = memoryRoot + "/" + folder + "/.ranks-lock"
            let fd = open(path, O_RDWR | O_CLOEXEC)
            #expect(fd >= 0, "\(folder) has no ranks' lock")
            guard fd >= 0 else { continue }
            defer { close(fd) }
            while flock(fd, LOCK_EX | LOCK_NB) != 0, Date() < deadline { usleep(20_000) }
            let minutesAgo = Date().addingTimeInterval(-120)
            try FileManager.default.setAttributes([.modificationDate: minutesAgo], ofItemAtPath: path)
        }
        let live = MemoryLevel(folder: MemoryLevel.folder(root: memoryRoot, jobID: "0123456789abcdef", host: "127.0.0.2"))
        let lock = try #require(live.holdRanksLock())
        defer { close(lock) }
        let next = try Self.run(
            "multihost-reclaim-next", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--levels", "memory,disk", "--memory-root", memoryRoot])
        #expect(next.status == 0, "\(next.stderr)")
        #expect(next.resultLines.last == reference)
        let reclaimed = next.events("memory_reclaimed")
        #expect(reclaimed.compactMap { $0["folder"] as? String }.sorted() == left.map { memoryRoot + "/" + $0 }, "\(reclaimed)")
        #expect(reclaimed.allSatisfy { ($0["bytes"] as? Int ?? 0) > 0 && !($0["host"] as? String ?? "").isEmpty }, "\(reclaimed)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? []) == [(live.folder as NSString).lastPathComponent])
    }

    /// A copy damaged in another host's memory, which the supervisor took for held unread: with
    /// no round drained, rank 3 (on the second host) is stopped once a line committed, every
    /// copy of it there damaged, and it is killed. Every rank rolls back to that line from
    /// memory; rank 3 finds its copy damaged and none on disk, and exits with status 4; the
    /// supervisor takes its copies for gone and restarts the job from the beginning, which
    /// ends with the failure-free bits.
    @Test func aCopyDamagedOnAnotherHostIsTakenForGoneAndTheJobRestartsFromWhatIsLeft() throws {
        let reference = try #require(Self.failureFree)
        let memoryRoot = try Self.memoryRoot("multihost-levels-damaged")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let result = try Self.run(
            "multihost-levels-damaged", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--levels", "memory,disk", "--memory-root", memoryRoot, "--drain-every", "1000"]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"commit\"")
            let pid = try #require(Self.pid(ofRank: 3, mentioning: memoryRoot))
            kill(pid, SIGSTOP)
            let folders = try FileManager.default.contentsOfDirectory(atPath: memoryRoot).filter { $0.hasSuffix("-127.0.0.2") }
            var damaged = 0
            for folder in folders {
                for name in try FileManager.default.contentsOfDirectory(atPath: memoryRoot + "/" + folder)
                where name.hasPrefix("000003-") && name.hasSuffix(".l1") {
                    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: memoryRoot + "/" + folder + "/" + name))
                    try handle.seek(toOffset: 80)
                    try handle.write(contentsOf: Data(repeating: 0xA5, count: 64))
                    try handle.close()
                    damaged += 1
                }
            }
            kill(pid, SIGKILL)
            #expect(damaged >= 1, "no copy of rank 3 in \(folders)")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let starts = result.events("recovery_start").map { ($0["level"] as? String ?? "?") + "@" + String($0["epoch"] as? Int ?? -1) }
        #expect(starts.count == 2 && starts.first?.hasPrefix("memory@") == true && starts.last == "start@0", "\(starts)")
        #expect(result.events("failure").filter { $0["rank"] as? Int == 3 }.count == 2, "\(result.stderr)")
    }

    /// A memory root that is not a memory file system on the hosts (a scratch folder on the
    /// disk) is said once per host, by its lowest rank, as the supervisor says it of its own
    /// folder on one host; the job runs on, to the failure-free bits.
    @Test func aMemoryRootOnDiskIsSaidOncePerHost() throws {
        let reference = try #require(Self.failureFree)
        let memoryRoot = JobRunner.scratch("multihost-levels-on-disk-memory")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        guard !MemoryLevel.isMemoryFileSystem(memoryRoot) else {
            print("aMemoryRootOnDiskIsSaidOncePerHost skipped: the scratch folder is on a memory file system here")
            return
        }
        let result = try Self.run(
            "multihost-levels-on-disk", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--levels", "memory,disk", "--memory-root", memoryRoot])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let said = result.stderr.split(separator: "\n").filter { $0.contains("is not a memory file system") }
        #expect(said.count == 2 && said.contains { $0.contains("on host 127.0.0.1,") } && said.contains { $0.contains("on host 127.0.0.2,") },
                "\(result.stderr)")
    }

    /// A folder of this test's own on the memory file system (`/dev/shm`, else a scratch
    /// folder), for `--memory-root`.
    static func memoryRoot(_ name: String) throws -> String {
        let root = (FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm/" : NSTemporaryDirectory())
            + "lifeline-it-\(name)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        return root
    }

    /// The pid of the process of rank `rank` whose environment mentions `text` (its memory
    /// folder names the test's own root), or nil.
    static func pid(ofRank rank: Int, mentioning text: String) -> pid_t? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            let variables = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("LIFELINE_RANK=\(rank)"), variables.contains(where: { $0.contains(text) }) { return pid }
        }
        return nil
    }

    /// `--storage LOCAL/{host},SHARED` on two addresses of this machine as two hosts: each
    /// rank writes its snapshots and its log to its own host's folder and to the shared one; a
    /// rank killed replays from its host's copies to the failure-free bits. Each host's folder
    /// holds its own ranks' files alone and is collected as lines commit; the supervisor's
    /// folder (this machine's name) holds the manifest; `storage verify` finds nothing wrong.
    @Test func eachHostKeepsItsRanksFilesInItsOwnFolder() throws {
        let storage = JobRunner.scratch("multihost-node-local-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.runWithRank3Killed(
            "multihost-node-local", logging: "pessimistic", storage: storage + "/local/{host}," + storage + "/shared")
        #expect(result.events("recovery_start").first?["mode"] as? String == "replay", "\(result.events("recovery_start"))")
        for (host, ranks) in [("127.0.0.1", [0, 1]), ("127.0.0.2", [2, 3])] {
            let files = Self.files(under: storage + "/local/" + host)
            let snapshots = files.filter { $0.hasPrefix("epochs/") }
            #expect(!snapshots.isEmpty && snapshots.allSatisfy { name in ranks.contains { name.hasSuffix("rank-000\($0).snap") } },
                    "\(host): \(files)")
            #expect(Set(files.filter { $0.hasPrefix("logs/") }.map { $0.split(separator: "/")[1] }) == Set(ranks.map { "rank-\($0)" }),
                    "\(host): \(files)")
            // Collected: the kept lines and a round in progress at most, of some 20 committed.
            let epochs = Set(snapshots.map { $0.split(separator: "/")[1] })
            #expect(epochs.count <= 3, "\(host): \(epochs.sorted())")
        }
        let commits = result.events("commit").count
        #expect(commits >= 5, "\(commits) commits")
        #expect(Set(Self.files(under: storage + "/shared").filter { $0.hasPrefix("epochs/") }.map { String($0.suffix(14)) })
            == ["rank-0000.snap", "rank-0001.snap", "rank-0002.snap", "rank-0003.snap"])
        // The supervisor's own folder, named for this machine, holds the manifest.
        let folders = try FileManager.default.contentsOfDirectory(atPath: storage + "/local").sorted()
        let supervisors = folders.filter { !$0.hasPrefix("127.0.0.") }
        #expect(supervisors.count == 1 && FileManager.default.fileExists(atPath: storage + "/local/" + supervisors[0] + "/manifest"),
                "\(folders)")
        let verify = try JobRunner.lifeline(["storage", "verify", result.runDirectory], runDirectory: result.runDirectory)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    /// Second copies on partner hosts (`--storage LOCAL/{host},KEPT/{partner}`), no folder
    /// shared: each host's ranks write their own folder and send the second copy to the other
    /// host, which keeps it in its folder; both are collected as lines commit. A rank killed
    /// replays alone with the event logger, and the job ends with the failure-free bits.
    @Test func eachHostsSecondCopiesAreKeptByItsPartnerHost() throws {
        let storage = JobRunner.scratch("multihost-partner-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.runWithRank3Killed(
            "multihost-partner", logging: "sender-based", storage: storage + "/local/{host}," + storage + "/kept/{partner}")
        let commits = result.events("commit").count
        #expect(commits >= 3, "\(commits) commits")
        // The killed rank restarted alone from the newest line, which the supervisor took from
        // the manifest without reading a snapshot it has no copy of.
        #expect(result.events("recovery_start").map { $0["mode"] as? String } == ["replay"], "\(result.events("recovery_start"))")
        #expect(result.events("fallback").isEmpty && result.events("fallback_global_rollback").isEmpty, "\(result.stderr)")
        // 127.0.0.2 keeps 127.0.0.1's ranks' second copies, and 127.0.0.1 the other's.
        for (host, ranks, keeper) in [("127.0.0.1", [0, 1], "127.0.0.2"), ("127.0.0.2", [2, 3], "127.0.0.1")] {
            for folder in [storage + "/local/" + host, storage + "/kept/" + keeper] {
                let snapshots = Self.files(under: folder).filter { $0.hasPrefix("epochs/") }
                #expect(!snapshots.isEmpty && snapshots.allSatisfy { name in ranks.contains { name.hasSuffix("rank-000\($0).snap") } },
                        "\(folder): \(snapshots)")
                // Collected: the kept lines and a round in progress at most.
                let epochs = Set(snapshots.map { $0.split(separator: "/")[1] })
                #expect(epochs.count <= 3 && (commits < 4 || !epochs.contains("000001")),
                        "\(folder): \(epochs.sorted()) of \(commits) lines")
            }
            // Each chunk a host's ranks wrote is in both its folder and its partner's, byte for byte.
            let local = Self.files(under: storage + "/local/" + host).filter { $0.hasPrefix("chunks/") }
            let kept = Set(Self.files(under: storage + "/kept/" + keeper).filter { $0.hasPrefix("chunks/") })
            #expect(!local.isEmpty)
            for chunk in local where kept.contains(chunk) {
                #expect(FileManager.default.contents(atPath: storage + "/local/" + host + "/" + chunk)
                    == FileManager.default.contents(atPath: storage + "/kept/" + keeper + "/" + chunk))
            }
        }
        // The supervisor keeps the manifest in its machine's two folders.
        let supervisors = try FileManager.default.contentsOfDirectory(atPath: storage + "/local").filter { !$0.hasPrefix("127.0.0.") }
        #expect(supervisors.count == 1, "\(supervisors)")
        for root in ["/local/", "/kept/"] {
            #expect(FileManager.default.fileExists(atPath: storage + root + (supervisors.first ?? "?") + "/manifest"), "\(root)")
        }
        // `storage verify` on this machine checks the manifest and says where the rest is.
        let verify = try JobRunner.lifeline(["storage", "verify", result.runDirectory], runDirectory: result.runDirectory)
        #expect(verify.status == 0 && verify.stdout.contains("checked here is the manifest"), "\(verify.stdout)\(verify.stderr)")
    }

    /// Receiver logs with partner copies: each delivery of pessimistic logging is durable on
    /// the rank's host and on its partner before it is made; optimistic logging's records reach
    /// the partner behind the host's own copy, in the background. A rank killed replays alone
    /// from its log on its host (under optimistic logging as far as the copy its partner host
    /// keeps, which the supervisor reads over the network to find the orphans), and the job
    /// ends with the failure-free bits; each host's logs are on its partner too, segment for
    /// segment.
    @Test(arguments: ["pessimistic", "optimistic"])
    func aReceiverLogIsKeptByThePartnerHostToo(logging: String) throws {
        let storage = JobRunner.scratch("multihost-partner-log-storage-" + logging)
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.runWithRank3Killed(
            "multihost-partner-log-" + logging, logging: logging,
            storage: storage + "/local/{host}," + storage + "/kept/{partner}")
        #expect(result.events("recovery_start").map { $0["mode"] as? String } == ["replay"], "\(result.events("recovery_start"))")
        #expect(result.events("fallback").isEmpty && result.events("fallback_global_rollback").isEmpty, "\(result.stderr)")
        // Optimistic: the orphan search ran on the log read from the hosts (no fallback above).
        #expect(result.events("orphans").count == (logging == "optimistic" ? 1 : 0), "\(result.events("orphans"))")
        for (host, ranks, keeper) in [("127.0.0.1", [0, 1], "127.0.0.2"), ("127.0.0.2", [2, 3], "127.0.0.1")] {
            let local = Self.files(under: storage + "/local/" + host).filter { $0.hasPrefix("logs/") }
            let kept = Self.files(under: storage + "/kept/" + keeper).filter { $0.hasPrefix("logs/") }
            #expect(Set(local.map { $0.split(separator: "/")[1] }) == Set(ranks.map { "rank-\($0)" }), "\(host): \(local)")
            #expect(local == kept, "\(host): \(local), kept by \(keeper): \(kept)")
            for file in local where kept.contains(file) {
                #expect(FileManager.default.contents(atPath: storage + "/local/" + host + "/" + file)
                    == FileManager.default.contents(atPath: storage + "/kept/" + keeper + "/" + file), "\(file)")
            }
        }
    }

    /// A log lost on its host and on its partner, which the supervisor cannot check before a
    /// lone replay (it has no copy): once a line committed, rank 3 is stopped, its log deleted
    /// from both folders, and it is killed. Its relaunch finds no copy of its log as new as its
    /// checkpoint, on its host or another, and exits with status 5; every rank rolls back to
    /// the line, and the job ends with the failure-free bits.
    @Test func aPartneredLogThatCannotBeReplayedRollsEveryRankBack() throws {
        let reference = try #require(Self.failureFree)
        let storage = JobRunner.scratch("multihost-partner-log-lost-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-partner-log-lost", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", "pessimistic", "--storage", storage + "/local/{host}," + storage + "/kept/{partner}"]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"commit\"")
            guard let pid = Self.pid(ofRank: 3, mentioning: storage) else { return }
            kill(pid, SIGSTOP)
            for folder in [storage + "/local/127.0.0.2/logs/rank-3", storage + "/kept/127.0.0.1/logs/rank-3"] {
                try FileManager.default.removeItem(atPath: folder)
            }
            kill(pid, SIGKILL)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.events("recovery_start").map { $0["mode"] as? String } == ["replay", "global-rollback"],
                "\(result.events("recovery_start"))")
        let fallbacks = result.events("fallback_global_rollback")
        #expect(fallbacks.count == 1 && fallbacks.first?["rank"] as? Int == 3
                && (fallbacks.first?["reason"] as? String)?.contains("found it unfit") == true, "\(result.stderr)")
        #expect(result.stderr.contains("no copy of the message log as new as the checkpoint"), "\(result.stderr)")
    }

    /// A program of its own that exits with status 5, which is also the runtime's status for a
    /// log it cannot replay: the runtime says its own stops to the supervisor (`stopping`)
    /// before it exits, so rank 3's exit is taken for the program's failure, the same on every
    /// attempt, and not for a log found unfit (which would roll every rank back each time).
    @Test func aProgramsOwnExitStatusIsNotTakenForTheRuntimes() throws {
        let storage = JobRunner.scratch("multihost-program-status-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let heat = ([JobRunner.binDirectory + "/heat2d"] + JobRunner.heat.dropFirst()).joined(separator: " ")
        let result = try Self.run(
            "multihost-program-status", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", "pessimistic", "--storage", storage + "/local/{host}," + storage + "/kept/{partner}"],
            program: ["/bin/sh", "-c", "if [ \"$LIFELINE_RANK\" = 3 ]; then exit 5; fi; exec " + heat])
        #expect(result.status != 0)
        #expect(result.stderr.contains("rank 3 exited with status 5 on every attempt"), "\(result.stderr)")
        #expect(!result.events("fallback_global_rollback").contains { ($0["reason"] as? String)?.contains("unfit") == true },
                "\(result.stderr)")
    }

    /// A program that ends its process with status 3 itself on another host, where 3 is also a
    /// rank that lost its link to the supervisor: the process's exit handler says the
    /// program's status first (`exiting`), so rank 3's exit is the program's failure, the same
    /// on every attempt, and the job fails saying so, instead of relaunching the rank as a lost
    /// link until `--max-restarts`.
    @Test func aProgramsOwnStatus3OnAnotherHostIsTheProgramsFailure() throws {
        let result = try Self.run(
            "multihost-program-status-3", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}", [],
            program: [JobRunner.binDirectory + "/lifeline-liveness", "exits", "3", "10"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("rank 3 exited with status 3 on every attempt"), "\(result.stderr)")
    }

    /// With partner copies the supervisor's two folders hold the manifest alone: one of them
    /// failing for 2 s (`fail:mirror=b`) changes nothing the ranks write. The lines committed
    /// meanwhile are on the ranks' hosts and partners (not marked with one mirror), a rank of
    /// the second host killed then recovers to the failure-free bits, and once the folder takes
    /// writes the manifest is written to both again, copying no file.
    @Test func aFailedFolderOfTheSupervisorLeavesThePartnerCopiesAlone() throws {
        let storage = JobRunner.scratch("multihost-partner-supervisor-folder-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-partner-supervisor-folder", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", "sender-based", "--inject", "fail:mirror=b,epoch=2,for=2s", "--inject", "kill:rank=3,step=800",
             "--storage", storage + "/local/{host}," + storage + "/kept/{partner}"],
            program: RecoveryTests.MirrorFailure.longHeat)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines == [RecoveryTests.MirrorFailure.longHeatOracle])
        let names = result.events.map { $0["event"] as? String ?? "" }
        let degraded = try #require(names.firstIndex(of: "mirror_degraded"), "\(result.stderr)")
        let resynced = try #require(names.firstIndex(of: "mirror_resynced"), "\(result.stderr)")
        #expect(result.events[degraded]["mirror"] as? String == "b" && result.events[resynced]["files"] as? Int == 0)
        #expect(result.stderr.contains("the manifest is written to") && result.stderr.contains("go on as before"), "\(result.stderr)")
        let commitsWhileDegraded = names[degraded..<resynced].filter { $0 == "commit" }.count
        #expect(commitsWhileDegraded >= 2, "\(commitsWhileDegraded) lines committed while the folder failed")
        let mirrors = result.events("commit").map { $0["mirrors"] as? String ?? "?" }
        #expect(mirrors.allSatisfy { $0 == "ab" }, "\(mirrors)")
        #expect(result.events("recovery_start").count == 1)
        // The newest line's snapshots are on each host and its partner.
        let newest = try #require(result.events("commit").last?["epoch"] as? Int)
        let epoch = "epochs/" + String(repeating: "0", count: max(0, 6 - String(newest).count)) + String(newest) + "/"
        for (host, keeper) in [("127.0.0.1", "127.0.0.2"), ("127.0.0.2", "127.0.0.1")] {
            for folder in [storage + "/local/" + host, storage + "/kept/" + keeper] {
                #expect(Self.files(under: folder).filter { $0.hasPrefix(epoch) && $0.hasSuffix(".snap") }.count == 2,
                        "\(folder): \(Self.files(under: folder).filter { $0.hasPrefix("epochs/") })")
            }
        }
        // The supervisor's two folders end with the same manifest.
        let supervisor = try #require(
            try FileManager.default.contentsOfDirectory(atPath: storage + "/local").first { !$0.hasPrefix("127.0.0.") })
        let manifests = ["/local/", "/kept/"].map { FileManager.default.contents(atPath: storage + $0 + supervisor + "/manifest") }
        #expect(manifests[0] != nil && manifests[0] == manifests[1])
    }

    /// With partner copies the supervisor keeps the manifest on its machine: killed at the
    /// third commit, `lifeline resume` restarts every rank from the newest line on their hosts'
    /// folders, to the failure-free bits.
    @Test func aResumeWithPartnerCopiesRestartsFromTheManifestOnThisMachine() throws {
        let reference = try #require(Self.failureFree)
        let storage = JobRunner.scratch("multihost-partner-resume-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-partner-resume", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--inject", "kill:supervisor,epoch=3", "--storage", storage + "/local/{host}," + storage + "/kept/{partner}"])
        #expect(result.status != 0)
        #expect(result.resultLines.isEmpty)
        let resumed = try JobRunner.lifeline(["resume", result.runDirectory], runDirectory: result.runDirectory)
        #expect(resumed.status == 0, "resume failed: \(resumed.stderr)")
        #expect(resumed.resultLines.last == reference)
        let launched = resumed.events("rank_launched").filter { ($0["incarnation"] as? Int ?? 0) >= 4 }
        #expect(launched.count == 4 && launched.allSatisfy { (2...3).contains($0["epoch"] as? Int ?? 0) }, "\(launched)")
        #expect(resumed.events("fallback").isEmpty, "\(resumed.stderr)")
    }

    /// Independent checkpoints on two loopback hosts, each host's folder its own (`{host}`),
    /// the second copies in a shared folder or kept by the partner host: rank 3 killed restarts
    /// alone from its checkpoint and replays its log, to the failure-free bits. The hosts'
    /// folders do not keep every checkpoint: when the supervisor collects what no line can use,
    /// a rank of each host collects its folders against the manifest (`collectHostGarbage`),
    /// so at the end they hold a few per rank, not one per checkpoint taken, and their chunks
    /// alone (a collection that found the chunk lock held runs again after the rank's next write).
    @Test(arguments: [false, true])
    func independentCheckpointsOnHostsRecoverAndTheHostsFoldersAreCollected(partner: Bool) throws {
        let reference = try #require(Self.failureFree)
        let storage = JobRunner.scratch("multihost-independent-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-independent", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--checkpoint", "independent", "--logging", "pessimistic", "--interval", "0.1", "--inject", "kill:rank=3,step=400",
             "--storage", storage + "/local/{host}," + storage + (partner ? "/kept/{partner}" : "/shared")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let starts = result.events("recovery_start")
        #expect(starts.count == 1 && starts.allSatisfy { $0["mode"] as? String == "replay" }, "\(starts) \(result.stderr)")
        let taken = result.events("checkpoint").count
        for folder in ["local", partner ? "kept" : nil].compactMap({ $0 }) {
            for host in ["127.0.0.1", "127.0.0.2"] {
                let files = Self.files(under: storage + "/\(folder)/" + host)
                let held = files.filter { $0.hasSuffix(".snap") }
                #expect(taken >= 16 && held.count <= 6, "\(folder)/\(host) holds \(held.count) of \(taken) checkpoints: \(held)")
                // Their chunks go too, even when a write held the lock at the collection.
                let chunks = files.filter { $0.hasSuffix(".chunk") }
                #expect(chunks.count <= 4 * held.count + 4, "\(folder)/\(host) holds \(chunks.count) chunks for \(held.count) checkpoints")
            }
        }
    }

    /// What partner copies do not work with yet is refused in one line (exit 2) before anything
    /// is made.
    @Test func partnerStorageRefusesWhatItCannotCarry() throws {
        let storage = JobRunner.scratch("multihost-partner-refused")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let partnered = storage + "/local/{host}," + storage + "/kept/{partner}"
        let cases: [(options: [String], hosts: String?, says: String)] = [
            (["--storage", partnered], nil, "needs --launcher ssh or slurm"),
            (["--storage", partnered], "127.0.0.1", "needs ranks on two hosts"),
            (["--storage", storage + "/kept/{partner}," + storage + "/local/{host}"], "127.0.0.1,127.0.0.2",
             "{partner} goes in the second root"),
            (["--storage", storage + "/shared," + storage + "/kept/{partner}"], "127.0.0.1,127.0.0.2", "give DIR_A with {host}"),
            (["--storage", storage + "/local/{host}," + storage + "/local/{partner}"], "127.0.0.1,127.0.0.2",
             "would be one folder"),
            (["--storage", partnered, "--chunk-kib", "262144"], "127.0.0.1,127.0.0.2", "give at most 131072 KiB"),
            (["--storage", partnered, "--inject", "corrupt:mirror=b,epoch=2"], "127.0.0.1,127.0.0.2", "out of the supervisor's reach"),
        ]
        for (index, refusal) in cases.enumerated() {
            let hosts = refusal.hosts.map { ["--launcher", "ssh", "--hosts", $0, "--launch-command", "sh -c {cmd}"] } ?? []
            let result = try Self.run("multihost-partner-refused-\(index)", ranks: 4, hosts + refusal.options)
            #expect(result.status == 2, "\(refusal.options): \(result.stderr)")
            let errors = result.stderr.split(separator: "\n").filter { $0.contains("error:") }
            #expect(errors.count == 1 && errors[0].contains(refusal.says), "\(refusal.options): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: result.runDirectory))
        }
        #expect(!FileManager.default.fileExists(atPath: storage + "/local"))
    }

    /// The test problem on two addresses of this machine as two hosts (ranks 0–1 and 2–3),
    /// with `--logging logging --storage storage`, rank 3 killed at step 400; checked to end
    /// with the failure-free bits.
    static func runWithRank3Killed(_ name: String, logging: String, storage: String) throws -> JobRunner.Result {
        let reference = try #require(failureFree)
        let result = try run(
            name, hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}",
            ["--logging", logging, "--inject", "kill:rank=3,step=400", "--storage", storage])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        return result
    }

    /// Every file under `root`, relative to it, without the lock files.
    static func files(under root: String) -> [String] {
        let names = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? []
        return names.filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: root + "/" + name, isDirectory: &isDirectory) && !isDirectory.boolValue
                && !name.hasSuffix(".lock")
        }.sorted()
    }

    /// An injected hang reaches a rank on another host through its runtime, not through the
    /// launch command's process here: the launch command stays a parent of the rank, as an ssh
    /// client does (stopping it would leave the rank beating). The hang is detected, and the job
    /// ends with the failure-free bits.
    @Test func anInjectedHangReachesARankBehindItsLaunchCommand() throws {
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-hang", hosts: "127.0.0.1,127.0.0.2", launchCommand: "setsid --fork --wait sh -c {cmd}",
            ["--logging", "pessimistic", "--inject", "hang:rank=3,after=1500ms", "--heartbeat-timeout-ms", "1500"])
        // The stopped rank outlives its killed launch command, as on a real remote host: end it.
        Self.killProcesses(mentioning: result.runDirectory)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let hang = try #require(result.events("hang_detected").first, "\(result.stderr)")
        #expect(hang["rank"] as? Int == 3)
    }

    /// SIGKILLs the processes whose environment names `text` (the ranks of one test's job).
    static func killProcesses(mentioning text: String) {
        let needle = Array(text.utf8)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != getpid(),
                  let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ").map(Array.init),
                  environment.count >= needle.count,
                  (0...(environment.count - needle.count)).contains(where: { environment[$0..<$0 + needle.count].elementsEqual(needle) })
            else { continue }
            kill(pid, SIGKILL)
        }
    }

    /// Hosts made of network namespaces: the supervisor on the first, two ranks on each, each
    /// started by `nsenter`. A rank killed on the second host recovers, and strangers on the
    /// second host that connect to the supervisor (one sends junk, one stays silent) are
    /// refused and counted while the job goes on.
    @Test func onTestHostsARankKilledRecoversAndStrangersAreRefused() throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-netns", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--logging", "pessimistic", "--inject", "kill:rank=3,step=400"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"],
            // Slower steps (the same bits): the job outlasts the silent stranger's 2 s deadline.
            program: JobRunner.heat.dropLast() + ["10"]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"listening\"")
            let events = (try? String(contentsOfFile: runDirectory + "/events.jsonl", encoding: .utf8)) ?? ""
            let line = try #require(events.split(separator: "\n").first { $0.contains("\"listening\"") })
            let port = try #require(line.split(separator: ",").first { $0.contains("\"port\"") }?.split(separator: ":").last)
            // From the second host: one stranger sends junk, another connects and says nothing.
            _ = try Self.shell([
                "/usr/bin/nsenter", "--net=/run/netns/lth2", "/bin/bash", "-c",
                // The silent one first; the junk one may be closed under its writer (no SIGPIPE).
                "trap '' PIPE; exec 4<>/dev/tcp/10.78.0.1/\(port) && exec 3<>/dev/tcp/10.78.0.1/\(port) && "
                    + "{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3; sleep 3; }",
            ])
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth2", "lth2"])
        let refusals = result.events.filter { $0["event"] as? String == "connection_refused" && $0["transport"] as? String == "tcp" }
        #expect(refusals.reduce(0) { $0 + ($1["count"] as? Int ?? 0) } == 2, "\(refusals)")
        let reasons = refusals.compactMap { $0["reasons"] as? String }.joined(separator: ", ")
        #expect(reasons.contains("no valid handshake") && reasons.contains("no handshake within"), "\(reasons)")
    }

    /// A host cut off mid-run (its link down; in the second case its processes killed too) is
    /// found lost within the heartbeat timeout, its ranks move to the other host (under
    /// pessimistic logging each replays its log alone, side by side), and the job ends with the
    /// failure-free bits.
    @Test(arguments: [("pessimistic", false), ("none", true)])
    func aHostCutOffIsLostAndItsRanksMoveToTheOther(logging: String, killToo: Bool) throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-cut-\(logging)", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--logging", logging, "--heartbeat-timeout-ms", "2000"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: killToo)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let lost = try #require(result.events.first { $0["event"] as? String == "host_lost" }, "\(result.stderr)")
        #expect(lost["host"] as? String == "lth2" && lost["ranks"] as? String == "2,3")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth1", "lth1"])
        if logging == "pessimistic" {
            // The lost host's ranks each replay their own log, side by side: the others run on.
            let modes = result.events("recovery_start").compactMap { $0["mode"] as? String }
            #expect(!modes.isEmpty && modes.allSatisfy { $0 == "replay" }, "\(modes)")
            #expect(result.events("fallback_global_rollback").isEmpty, "\(result.events("fallback_global_rollback"))")
        }
    }

    /// A lost host that answers again takes its ranks back. Test host lth2 is cut off and its
    /// processes killed after the first commit, and its ranks double up on lth1; once
    /// `host_lost` is out, lth2's link comes back up. The supervisor's probe (the program started
    /// on lth2 by the launch command, proving itself to the supervisor) finds it back
    /// (`host_back`), and ranks 2 and 3 are ordered to end and restart there (`ranks_moved`),
    /// which is not counted as a failure: the job ends with the failure-free bits and every rank
    /// where it began. With one folder shared by both hosts they move after the next commit;
    /// with partner copies (`partner`), where no line commits while lth1 is alone, at once.
    @Test(arguments: [("none", false), ("pessimistic", false), ("none", true)])
    func aLostHostThatAnswersAgainTakesItsRanksBack(logging: String, partner: Bool) throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let program = ["heat2d", "--size", "48", "--steps", "2500", "--broadcast-every", "25", "--sleep-ms", "3"]
        let reference = try #require(try Self.run("multihost-back-reference", ranks: 4, [], program: program).resultLines.last)
        let storage = JobRunner.scratch("multihost-back-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let storageOptions = partner ? ["--storage", storage + "/local/{host}," + storage + "/kept/{partner}"] : []
        let result = try Self.run(
            "multihost-back-\(logging)-\(partner)", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--logging", logging, "--heartbeat-timeout-ms", "2000"] + storageOptions,
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"], program: program
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: true)
            JobRunner.waitForEvents(runDirectory, containing: "\"host_lost\"")
            _ = try Self.shell(["/usr/sbin/ip", "-n", "ltsw", "link", "set", "v-lth2", "up"])
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.events("host_lost").first?["moved_to"] as? String == "2:lth1,3:lth1", "\(result.stderr)")
        #expect(result.events("host_back").first?["host"] as? String == "lth2", "\(result.stderr)")
        let moved = try #require(result.events("ranks_moved").first, "\(result.stderr)")
        #expect(moved["host"] as? String == "lth2" && moved["ranks"] as? String == "2,3", "\(moved)")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth2", "lth2"])
        // A move is said as a rank's end (one for both under a global rollback), and is not
        // counted as a failure.
        let ends = result.events("failure").compactMap { $0["cause"] as? String }
        let moves = ends.filter { $0 == "moved to host lth2" }.count
        #expect(moves >= 1, "\(ends)")
        let failures = try #require(result.events("job_finished").first?["failures"] as? Int)
        #expect(failures == ends.count - moves, "\(ends)")
    }

    /// `--levels memory,disk` and a host lost: test host lth2 cut off and its processes killed
    /// after a line was drained to disk. Each rank's copies are in its host's memory and in its
    /// partner host's, so once lth2 is found lost its ranks, moved to lth1 (its partner), restore
    /// from the copies lth1 holds for them: every recovery after the loss says `level` memory,
    /// ranks 2 and 3 finish `restored_from` memory, and the job ends with the failure-free bits.
    /// With `secondCopyLost`, lth1's copies of them are deleted as lth2 goes (a host and the
    /// second copy lost together): the moved ranks find none and restore from disk. With partner
    /// copies on disk too (`partner`), lth2's own folder is deleted: they read what lth1 kept.
    /// The hosts' folders in memory do not outlive the job.
    @Test(arguments: [(false, false), (true, false), (false, true), (true, true)])
    func aLostHostsRanksRestoreFromTheSecondCopyInTheirPartnersMemory(partner: Bool, secondCopyLost: Bool) throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let memoryRoot = JobRunner.scratch("multihost-levels-lost-memory")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let storage = JobRunner.scratch("multihost-levels-lost-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-levels-lost", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--heartbeat-timeout-ms", "2000", "--levels", "memory,disk", "--memory-root", memoryRoot]
                + (partner ? ["--storage", storage + "/local/{host}," + storage + "/kept/{partner}"] : []),
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"drained\"")
            try Self.cutSecondHost(runDirectory, killToo: true)
            if partner { try FileManager.default.removeItem(atPath: storage + "/local/lth2") }
            guard secondCopyLost else { return }
            for folder in (try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? [] where folder.hasSuffix("-lth1") {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: memoryRoot + "/" + folder)) ?? []
                where name.hasPrefix("000002-") || name.hasPrefix("000003-") {
                    try FileManager.default.removeItem(atPath: memoryRoot + "/" + folder + "/" + name)
                }
            }
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        #expect(lost["ranks"] as? String == "2,3", "\(lost)")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth1", "lth1"])
        let restored = Self.restoredFrom(result)
        #expect(restored[2] == (secondCopyLost ? "disk" : "memory") && restored[3] == restored[2], "\(restored)")
        if !secondCopyLost {
            // The ranks' deaths may be seen before the host is found lost, and a first recovery
            // then restores on lth2 (whose ranks cannot start); every one after the loss reads
            // the copies in memory.
            let lostAt = try #require(lost["t"] as? Double)
            let starts = result.events("recovery_start").filter { ($0["t"] as? Double ?? 0) >= lostAt }
            #expect(!starts.isEmpty && starts.allSatisfy { $0["level"] as? String == "memory" },
                    "\(result.events("recovery_start"))")
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? []).allSatisfy { $0.hasSuffix("-lth2") },
                "lth1's folder in memory outlived the job")
    }

    /// `--levels memory,disk` on three hosts, a spare among them: lth2 cut off and its
    /// processes killed, its ranks move to the spare lth3 (the partner, lth1, has no free slot),
    /// fetch their copies from lth1's memory, where they were kept, and restore from them with
    /// no disk read (`restored_from` memory, the recovery after the loss at `level` memory), to
    /// the failure-free bits. With `inParts` every copy goes to the partner and comes back from
    /// it in parts of 4 KiB, as a copy over 64 MiB does.
    @Test(arguments: [false, true])
    func aLostHostsRanksPlacedOnASpareFetchTheirCopiesFromThePartnersMemory(inParts: Bool) throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let memoryRoot = JobRunner.scratch("multihost-levels-spare-memory")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let result = try Self.run(
            "multihost-levels-spare", hosts: "lth1,lth2,lth3", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--heartbeat-timeout-ms", "2000", "--levels", "memory,disk", "--memory-root", memoryRoot],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"],
            environment: inParts ? ["LIFELINE_PARTNER_PART_BYTES": "4096"] : [:]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"drained\"")
            try Self.cutSecondHost(runDirectory, killToo: true)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        #expect(lost["moved_to"] as? String == "2:lth3,3:lth3", "\(lost)")
        let restored = Self.restoredFrom(result)
        #expect(restored[2] == "memory" && restored[3] == "memory", "\(restored) \(result.stderr)")
        let lostAt = try #require(lost["t"] as? Double)
        let starts = result.events("recovery_start").filter { ($0["t"] as? Double ?? 0) >= lostAt }
        #expect(!starts.isEmpty && starts.allSatisfy { $0["level"] as? String == "memory" }, "\(result.events("recovery_start"))")
    }

    /// A node and its disk lost: with `--storage LOCAL/{host},SHARED`, test host lth2 cut off,
    /// its ranks' processes killed and its own folder deleted; its ranks restart on lth1 from
    /// the shared copies (their log replays too), fill lth1's folder, and the job ends with the
    /// failure-free bits.
    @Test func aLostHostsOwnFolderGoesWithItAndTheSharedCopiesRecoverItsRanks() throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let storage = JobRunner.scratch("multihost-lost-disk-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-lost-disk", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--logging", "pessimistic", "--heartbeat-timeout-ms", "2000",
             "--storage", storage + "/local/{host}," + storage + "/shared"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: true)
            try FileManager.default.removeItem(atPath: storage + "/local/lth2")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        #expect(lost["ranks"] as? String == "2,3", "\(lost)")
        let files = Self.files(under: storage + "/local/lth1")
        #expect(files.contains { $0.hasPrefix("epochs/") && $0.hasSuffix("rank-0003.snap") }, "\(files)")
        #expect(files.contains { $0.hasPrefix("logs/rank-3/") }, "\(files)")
    }

    /// A node and both its folders lost, with no folder shared (`--storage
    /// LOCAL/{host},KEPT/{partner}`): test host lth2 cut off, its ranks' processes killed, its
    /// own folder and the one it kept for lth1 deleted. Its ranks restart on the spare host
    /// lth3 from the copies lth1 kept for them; lth1's ranks, whose second copies went with
    /// lth2, write them to their new partner. The job ends with the failure-free bits.
    @Test func aLostHostsRanksRecoverFromTheCopiesItsPartnerKept() throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let storage = JobRunner.scratch("multihost-partner-lost-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (result, lost) = try Self.loseSecondHostAndItsFolders(
            "multihost-partner-lost", ranks: 4, storage: storage, reference: try #require(Self.failureFree))
        #expect(lost["moved_to"] as? String == "2:lth3,3:lth3", "\(lost)")
        #expect(!result.events("recovery_start").isEmpty)
        // lth3 read its ranks' snapshots from lth1's kept folder and holds them now; lth1's
        // later second copies went to lth3, its new partner.
        let moved = Self.files(under: storage + "/local/lth3")
        #expect(moved.contains { $0.hasPrefix("epochs/") && $0.hasSuffix("rank-0003.snap") }, "\(moved)")
        let keptByLth3 = Self.files(under: storage + "/kept/lth3")
        #expect(keptByLth3.contains { $0.hasPrefix("epochs/") && $0.hasSuffix("rank-0000.snap") }, "\(keptByLth3)")
    }

    /// A lost host's ranks under pessimistic logging with partner copies: moved to the spare
    /// host lth3, which kept lth2's copies as its partner, they copy their logs from there into
    /// their new host's folder (and its partner's), and replay alone while lth1's ranks keep
    /// running; the job ends with the failure-free bits. Also when lth2's ranks are cut off and
    /// not killed (they run on until they find their link gone). Under optimistic logging the
    /// supervisor reads the lost ranks' logs where lth1 kept them, passing over the cut host's
    /// keepers in bounded time, and lth1's ranks, whose log partner is gone, go on with one copy
    /// (those that do not answer the freeze meanwhile replay with the group).
    @Test(arguments: [("pessimistic", true), ("pessimistic", false), ("optimistic", true)])
    func aLostHostsRanksReplayTheLogsTheirPartnerKept(logging: String, killToo: Bool) throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let storage = JobRunner.scratch("multihost-partner-lost-log-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (result, lost) = try Self.loseSecondHostAndItsFolders(
            "multihost-partner-lost-log", ranks: 4, storage: storage, reference: try #require(Self.failureFree),
            logging: logging, killToo: killToo)
        #expect(lost["moved_to"] as? String == "2:lth3,3:lth3", "\(lost)")
        let starts = result.events("recovery_start")
        #expect(!starts.isEmpty && starts.allSatisfy { $0["mode"] as? String == "replay" }, "\(starts)")
        #expect(result.events("fallback_global_rollback").isEmpty, "\(result.stderr)")
        let moved = Set(Self.files(under: storage + "/local/lth3").filter { $0.hasPrefix("logs/") }.map { $0.split(separator: "/")[1] })
        #expect(moved == ["rank-2", "rank-3"], "\(moved)")
    }

    /// Independent checkpoints with partner copies and a host lost: lth2 cut off, its processes
    /// killed and both its folders deleted; its ranks, moved to the spare lth3, find their
    /// checkpoints and logs where lth1 kept them and replay alone while lth1's ranks run on, to
    /// the failure-free bits.
    @Test func independentCheckpointsWithPartnerCopiesSurviveALostHost() throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let storage = JobRunner.scratch("multihost-partner-independent-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (result, lost) = try Self.loseSecondHostAndItsFolders(
            "multihost-partner-independent", ranks: 4, storage: storage, reference: try #require(Self.failureFree),
            logging: "pessimistic", options: ["--checkpoint", "independent"])
        #expect(lost["moved_to"] as? String == "2:lth3,3:lth3", "\(lost)")
        let starts = result.events("recovery_start")
        #expect(!starts.isEmpty && starts.allSatisfy { $0["mode"] as? String == "replay" }, "\(starts) \(result.stderr)")
    }

    /// Partner copies when a lost host's ranks double up on the hosts left: eight ranks on
    /// three test hosts (three, three, two), lth2 cut off with its processes and both its
    /// folders deleted. Its ranks go to lth1 and lth3: on lth1 they find their snapshots as
    /// their new mirror B (lth1's partner is now lth3, which kept lth2's copies), on lth3 in the
    /// folder lth3 itself kept for lth2. The job ends with the failure-free bits. Under
    /// pessimistic logging they find their logs the same way, and replay alone; lth1's ranks,
    /// whose log partner was lth2, stop at their next write there and replay, and those stops
    /// do not count toward `--max-restarts` (lth2's three ranks killed and relaunched there
    /// once before it is found lost count six; with lth1's three it would be nine).
    @Test(arguments: ["none", "pessimistic"])
    func ranksThatDoubleUpFindTheirCopiesWhereverTheyWereKept(logging: String) throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let storage = JobRunner.scratch("multihost-partner-double-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let (result, lost) = try Self.loseSecondHostAndItsFolders(
            "multihost-partner-double", ranks: 8, storage: storage, reference: try #require(Self.failureFree8), logging: logging,
            options: logging == "none" ? [] : ["--max-restarts", "7"])
        let moved = (lost["moved_to"] as? String ?? "").split(separator: ",").map { $0.split(separator: ":").last ?? "" }
        #expect(Set(moved) == ["lth1", "lth3"], "\(lost)")
        let starts = result.events("recovery_start").map { $0["mode"] as? String }
        #expect(!starts.isEmpty && starts.allSatisfy { $0 == (logging == "none" ? "global-rollback" : "replay") }, "\(starts)")
        if logging != "none" {
            #expect(result.events("failure").contains { $0["cause"] as? String == "exited with status 6" }, "\(result.stderr)")
        }
    }

    /// The test problem on `ranks` ranks over test hosts lth1–lth3 with partner copies under
    /// `storage`: lth2 cut off once a line committed, its ranks' processes killed and both its
    /// folders deleted (its disk lost). Checked to end with the bits of `reference`, every rank
    /// back at the newest line (none at an older one or at the start); returns the result and
    /// its `host_lost` event.
    static func loseSecondHostAndItsFolders(
        _ name: String, ranks: Int, storage: String, reference: String, logging: String = "none", killToo: Bool = true,
        options: [String] = []
    ) throws -> (JobRunner.Result, [String: Any]) {
        let result = try run(
            name, ranks: ranks,
            ["--launcher", "ssh", "--hosts", "lth1,lth2,lth3", "--launch-command", "nsenter --net=/run/netns/{host} sh -c {cmd}",
             "--heartbeat-timeout-ms", "2000", "--storage", storage + "/local/{host}," + storage + "/kept/{partner}",
             "--logging", logging] + options,
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            try cutSecondHost(runDirectory, killToo: killToo)
            try FileManager.default.removeItem(atPath: storage + "/local/lth2")
            try FileManager.default.removeItem(atPath: storage + "/kept/lth2")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.events("fallback").isEmpty, "\(result.stderr)")
        #expect(result.events("fallback_global_rollback").isEmpty, "\(result.stderr)")
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        return (result, lost)
    }

    /// A spare host takes a lost host's place: three hosts for four ranks put two on each of
    /// the first two (an even share is two) and none on the third; the second cut off, its
    /// ranks move to the third under the default policy, and the first keeps its two.
    @Test func aSpareHostTakesTheLostHostsRanks() throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-spare", hosts: "lth1,lth2,lth3", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--logging", "pessimistic", "--heartbeat-timeout-ms", "2000"], wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: false)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        #expect(lost["moved_to"] as? String == "2:lth3,3:lth3", "\(lost)")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth3", "lth3"])
    }

    /// Two hosts with no spare: the second cut off, whose ranks the first has no slots for.
    /// Under `--on-host-loss shrink` the job continues on the first host's two ranks, rebuilt
    /// from the newest line by heat2d's `Redistributable` state; under `fail` it stops with
    /// exit 1 and one line that says how to resume, and `lifeline resume -n 2 --hosts lth1`
    /// finishes it. Either way the failure-free bits (heat2d's are the same on every rank count).
    @Test(arguments: ["shrink", "fail"])
    func aLostHostWithoutASpareShrinksTheJobOrStopsIt(policy: String) throws {
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let wrapper = ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        let result = try Self.run(
            "multihost-\(policy)", hosts: "lth1,lth2", launchCommand: "nsenter --net=/run/netns/{host} sh -c {cmd}",
            ["--heartbeat-timeout-ms", "2000", "--on-host-loss", policy], wrapper: wrapper
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: false)
        }
        let lost = try #require(result.events("host_lost").first, "\(result.stderr)")
        #expect(lost["host"] as? String == "lth2" && lost["policy"] as? String == policy)
        #expect(lost["moved_to"] == nil, "no rank moved: the first host has no free slot")
        var final = result
        if policy == "fail" {
            #expect(result.status == 1)
            let errors = result.stderr.split(separator: "\n").filter { $0.contains("error:") }
            #expect(errors.count == 1 && errors[0].contains("lifeline resume \(result.runDirectory) -n 2 --hosts lth1"), "\(result.stderr)")
            #expect(result.resultLines.isEmpty)
            final = try JobRunner.lifeline(
                ["resume", result.runDirectory, "-n", "2", "--hosts", "lth1"], runDirectory: result.runDirectory, wrapper: wrapper)
        } else {
            let shrink = try #require(result.events("shrink").first)
            #expect(shrink["from"] as? Int == 4 && shrink["to"] as? Int == 2 && shrink["hosts"] as? String == "lth1")
        }
        #expect(final.status == 0, "\(final.stderr)")
        #expect(final.resultLines.last == reference)
        #expect(final.stdout.contains("finished ranks=2"), "\(final.stdout)")
        let resize = try #require(final.events("resize").first)
        #expect(resize["from"] as? Int == 4 && resize["to"] as? Int == 2)
        let pids = try String(contentsOfFile: final.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1"])
    }

    /// `--on-host-loss shrink` with partner copies and no shared folder: six ranks on three
    /// test hosts, two on each, lth2 cut off with its processes and both its folders deleted.
    /// The hosts left have no free slot, so the job goes on with four ranks on lth1 and lth3,
    /// each new rank reading the old ranks' snapshots wherever a host kept them: lth2's ranks'
    /// where lth3 kept them, lth1's in lth1's own folder (its partner's copies went with lth2),
    /// lth3's where lth1 kept them. The job ends with the failure-free bits.
    @Test func aShrinkWithPartnerCopiesReadsEveryOldRanksSnapshotWhereverItIsKept() throws {
        guard Self.testHostsUp(3) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let storage = JobRunner.scratch("multihost-partner-shrink-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-partner-shrink", ranks: 6,
            ["--launcher", "ssh", "--hosts", "lth1,lth2,lth3", "--launch-command", "nsenter --net=/run/netns/{host} sh -c {cmd}",
             "--heartbeat-timeout-ms", "2000", "--on-host-loss", "shrink",
             "--storage", storage + "/local/{host}," + storage + "/kept/{partner}"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"]
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: true)
            try FileManager.default.removeItem(atPath: storage + "/local/lth2")
            try FileManager.default.removeItem(atPath: storage + "/kept/lth2")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let shrink = try #require(result.events("shrink").first, "\(result.stderr)")
        #expect(shrink["from"] as? Int == 6 && shrink["to"] as? Int == 4, "\(shrink)")
        #expect(result.stdout.contains("finished ranks=4"), "\(result.stdout)")
    }

    /// `--on-host-loss shrink` asks the program at the start whether its state can be
    /// redistributed: cg's cannot, so the job is refused in one line (exit 2) and leaves no run
    /// directory behind; the policy needs hosts to lose.
    @Test func shrinkingIsRefusedAtTheStartForAProgramThatCannot() throws {
        let refused = try Self.run(
            "multihost-shrink-cg", hosts: "127.0.0.1,127.0.0.2", launchCommand: "sh -c {cmd}", ["--on-host-loss", "shrink"],
            program: ["cg", "--size", "40", "--iterations", "100"])
        #expect(refused.status == 2)
        let errors = refused.stderr.split(separator: "\n").filter { $0.contains("error:") }
        #expect(errors.count == 1 && errors[0].contains("does not conform to Redistributable"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: refused.runDirectory))
        let local = try Self.run("multihost-shrink-local", ranks: 4, ["--on-host-loss", "fail"])
        #expect(local.status == 2)
        #expect(local.stderr.contains("--on-host-loss fail needs --launcher ssh or slurm"), "\(local.stderr)")
    }

    /// The issue's own bar: `lifeline run --launcher slurm -n 8` inside an allocation of the two
    /// test hosts' Slurm cluster, each rank a job step, one storage root each node's own folder
    /// (`{host}`); a rank killed (its step ends, the others run on) and then the second host cut
    /// off with its folder, its ranks moved to the first; the failure-free bits.
    @Test func underSlurmARankKillAndAHostLossEndWithTheFailureFreeBits() throws {
        guard Self.testHostsUp(slurm: true) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree8)
        let storage = JobRunner.scratch("multihost-slurm-storage")
        defer { try? FileManager.default.removeItem(atPath: storage) }
        let result = try Self.run(
            "multihost-slurm", ranks: 8,
            ["--launcher", "slurm", "--logging", "pessimistic", "--heartbeat-timeout-ms", "2000",
             "--inject", "kill:rank=5,step=150", "--storage", storage + "/node/{host}," + storage + "/shared"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1", "salloc", "--no-kill", "--overcommit", "--nodes=2", "--ntasks=8"],
            environment: ["SLURM_CONF": Self.slurmConf]
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"recovery_done\"")
            // The node goes with its disk: its folder of the node-local root too.
            try Self.cutSecondHost(runDirectory, killToo: false)
            try? FileManager.default.removeItem(atPath: storage + "/node/lth2")
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.events.contains { $0["event"] as? String == "failure" && $0["rank"] as? Int == 5 })
        let lost = try #require(result.events.first { $0["event"] as? String == "host_lost" }, "\(result.stderr)")
        #expect(lost["host"] as? String == "lth2" && lost["ranks"] as? String == "4,5,6,7")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == Array(repeating: "lth1", count: 8))
    }

    /// `--levels memory,disk` under Slurm: four ranks as job steps on the allocation's two
    /// nodes, each rank's copies in its node's memory, no round drained; a rank killed on the
    /// second node is a new step there, restores from that node's memory, replays its log
    /// alone, and the job ends with the failure-free bits.
    @Test func underSlurmAKilledRankRestoresFromItsNodesMemory() throws {
        guard Self.testHostsUp(slurm: true) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        let memoryRoot = JobRunner.scratch("multihost-slurm-levels-memory")
        defer { try? FileManager.default.removeItem(atPath: memoryRoot) }
        let result = try Self.run(
            "multihost-slurm-levels", ranks: 4,
            ["--launcher", "slurm", "--logging", "pessimistic", "--levels", "memory,disk", "--memory-root", memoryRoot,
             "--drain-every", "1000", "--inject", "kill:rank=3,step=400"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1", "salloc", "--no-kill", "--overcommit", "--nodes=2", "--ntasks=4"],
            environment: ["SLURM_CONF": Self.slurmConf])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let starts = result.events("recovery_start")
        #expect(starts.count == 1 && starts.first?["level"] as? String == "memory" && starts.first?["mode"] as? String == "replay",
                "\(starts)")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == ["lth1", "lth1", "lth2", "lth2"])
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: memoryRoot)) ?? []).isEmpty,
                "the ranks' folders in memory outlived the job")
    }

    /// `--on-host-loss shrink` under Slurm: eight ranks on the allocation's two nodes (four
    /// slots each), the second node cut off; the job goes on as four ranks on the first node,
    /// each a job step there, to the failure-free bits of eight.
    @Test func underSlurmALostNodeShrinksTheJobToTheNodeLeft() throws {
        guard Self.testHostsUp(slurm: true) else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree8)
        let result = try Self.run(
            "multihost-slurm-shrink", ranks: 8,
            ["--launcher", "slurm", "--heartbeat-timeout-ms", "2000", "--on-host-loss", "shrink"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1", "salloc", "--no-kill", "--overcommit", "--nodes=2", "--ntasks=8"],
            environment: ["SLURM_CONF": Self.slurmConf]
        ) { runDirectory in
            try Self.cutSecondHost(runDirectory, killToo: false)
        }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.stdout.contains("finished ranks=4"), "\(result.stdout)")
        let shrink = try #require(result.events("shrink").first, "\(result.stderr)")
        #expect(shrink["from"] as? Int == 8 && shrink["to"] as? Int == 4 && shrink["hosts"] as? String == "lth1")
        let pids = try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
        #expect(pids.split(separator: "\n").map { $0.split(separator: " ").last ?? "" } == Array(repeating: "lth1", count: 4))
    }

    /// `--launcher mpirun` on this host: Open MPI starts the four ranks, and each of two ranks
    /// killed (mpirun takes the launch down) restarts every rank from the last line, to the
    /// failure-free bits; logging is refused with one line, since a lone
    /// restart cannot be made there.
    @Test func underMpirunAFailureRestartsTheWholeLaunch() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else {
            print("skipped: --launcher mpirun needs Open MPI (apt-get install openmpi-bin)")
            return
        }
        let reference = try #require(Self.failureFree)
        let result = try Self.run(
            "multihost-mpirun", ranks: 4,
            ["--launcher", "mpirun", "--inject", "kill:rank=2,step=300", "--inject", "kill:rank=1,step=600"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        #expect(result.stderr.contains("under --launcher mpirun a failure restarts every rank"))
        let recoveries = result.events.filter { $0["event"] as? String == "recovery_start" }
        #expect(recoveries.count == 2 && recoveries.allSatisfy { $0["mode"] as? String == "global-rollback" }, "\(recoveries)")
        let pids = Set(try String(contentsOfFile: result.runDirectory + "/pids", encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: " ")[1] })
        #expect(pids.count == 1, "one mpirun holds every rank")
        #expect(!FileManager.default.fileExists(atPath: result.runDirectory + "/token"), "the token file outlived the job")
        let refused = try Self.run("multihost-mpirun-logging", ranks: 4, ["--launcher", "mpirun", "--logging", "pessimistic"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("--launcher mpirun restarts every rank after any failure"), "\(refused.stderr)")
    }

    /// `--launcher mpirun` over the two test hosts: Open MPI starts its daemon on each by the
    /// test bed's remote launcher (`scripts/testbed.sh rsh`, nsenter for ssh), two ranks run in
    /// the second host's namespace, and one of them killed there restarts the whole launch from
    /// the last line, to the failure-free bits.
    @Test func underMpirunOnTwoTestHostsARankKilledOnTheSecondRestartsTheLaunch() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun") else {
            print("skipped: --launcher mpirun needs Open MPI (apt-get install openmpi-bin)")
            return
        }
        guard Self.testHostsUp() else { return }
        defer { Self.testHostsDown() }
        let reference = try #require(Self.failureFree)
        var onSecondHost: [Int32] = []
        let result = try Self.run(
            "multihost-mpirun-hosts", ranks: 4, ["--launcher", "mpirun", "--hosts", "lth1,lth2"],
            wrapper: ["/usr/bin/nsenter", "--net=/run/netns/lth1"],
            environment: ["OMPI_MCA_plm_rsh_agent": Self.repository + "/scripts/testbed.sh rsh"].merging(Self.testbedEnvironment) { $1 }
        ) { runDirectory in
            JobRunner.waitForEvents(runDirectory, containing: "\"commit\"")
            let listed = try Self.shell(["/usr/sbin/ip", "netns", "pids", "lth2"]).output
            onSecondHost = listed.split(separator: "\n").compactMap { Int32($0) }.filter { pid in
                (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix("heat2d") == true
            }
            if let victim = onSecondHost.first { kill(victim, SIGKILL) }
        }
        #expect(onSecondHost.count == 2, "the ranks in the second host's namespace: \(onSecondHost)")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.resultLines.last == reference)
        let recoveries = result.events("recovery_start")
        #expect(recoveries.count == 1 && recoveries.allSatisfy { $0["mode"] as? String == "global-rollback" }, "\(recoveries)")
    }

    static let testbedEnvironment = ["LIFELINE_TESTBED_PREFIX": "lt", "LIFELINE_TESTBED_SUBNET": "10.78.0"]
    static let slurmConf = "/run/lifeline-testbed-lt/slurm.conf"

    /// Makes `count` test hosts, lth1, lth2… (10.78.0.1…), with a Slurm cluster over them when
    /// asked; false, with a line saying why, where they cannot be made.
    static func testHostsUp(_ count: Int = 2, slurm: Bool = false) -> Bool {
        if slurm, !["/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/srun", "/usr/bin/salloc", "/usr/sbin/munged"]
            .allSatisfy(FileManager.default.isExecutableFile) {
            print("skipped: the Slurm test cluster needs slurm-wlm and munge (apt-get install slurm-wlm munge)")
            return false
        }
        guard getuid() == 0 else {
            print("skipped: the test hosts need root (network namespaces)")
            return false
        }
        guard ["/usr/sbin/ip", "/usr/bin/nsenter", "/bin/bash"].allSatisfy(FileManager.default.isExecutableFile) else {
            print("skipped: the test hosts need ip (iproute2), nsenter (util-linux) and bash")
            return false
        }
        let up = try? shell([repository + "/scripts/testbed.sh", "up", String(count)] + (slurm ? ["--slurm"] : []), environment: testbedEnvironment)
        guard let up, up.status == 0 else {
            testHostsDown()
            print("skipped: the test hosts could not be made: \(up?.output.split(separator: "\n").last ?? "")")
            return false
        }
        return true
    }

    static func testHostsDown() {
        _ = try? shell([repository + "/scripts/testbed.sh", "down"], environment: testbedEnvironment)
    }

    static func shell(_ command: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Output to a file, not a pipe: a daemon the command starts may keep a pipe open for
        // ever, and reading it to its end would wait with it.
        let path = NSTemporaryDirectory() + "lifeline-it-shell-\(UUID().uuidString.prefix(8)).txt"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? out.close() }
        process.standardOutput = out
        process.standardError = out
        try process.run()
        process.waitUntilExit()
        let data = FileManager.default.contents(atPath: path) ?? Data()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
