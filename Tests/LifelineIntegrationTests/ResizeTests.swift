import Foundation
@testable import Lifeline
import LifelineCore
import LifelineStorage
import Testing

extension RecoveryTests {
    /// `lifeline resume RUN_DIR -n M` on another number of ranks: heat2d and the task farm are
    /// Redistributable and give the failure-free bits on any count; a program that does not opt
    /// in, a line with messages in flight the program does not take, and independent checkpoints
    /// are refused in one line with the run directory left as it was.
    @Suite struct Resize {
        /// Stops `program` on `ranks` ranks by the walltime (a checkpoint, then exit 128+SIGTERM).
        static func stopped(_ name: String, ranks: Int, options: [String] = [], walltime: String = "1500ms", _ program: [String]) throws -> String {
            let runDirectory = JobRunner.scratch(name) + "/run"
            let result = try JobRunner.lifeline(
                ["run", "-n", String(ranks), "--interval", "0.3", "--walltime", walltime, "--run-dir", runDirectory, "--quiet"]
                    + options + ["--"] + program,
                runDirectory: runDirectory)
            try #require(result.status == 128 + SIGTERM, "the run was not stopped by its walltime: \(result.stderr)")
            return runDirectory
        }

        /// Resumes on `ranks` ranks, with `options`, to the end of the job: `--walltime none`
        /// lifts the walltime that stopped it (on a loaded machine a resize's resume could spend
        /// most of 1.5 s starting, and be stopped again and again).
        static func resumeToTheEnd(_ runDirectory: String, ranks: Int, _ options: [String] = []) throws -> JobRunner.Result {
            let result = try JobRunner.lifeline(
                ["resume", runDirectory, "-n", String(ranks), "--walltime", "none"] + options, runDirectory: runDirectory)
            #expect(try JobConfiguration.load(runDirectory: runDirectory).walltimeSeconds == nil, "job.json kept the walltime")
            return result
        }

        /// The resize event of a run directory, checked to start from a committed line.
        static func expectResized(_ result: JobRunner.Result, from: Int, to: Int, sourceLocation: SourceLocation = #_sourceLocation) {
            let resizes = result.events("resize")
            #expect(resizes.count == 1, "\(resizes)", sourceLocation: sourceLocation)
            guard let resize = resizes.first else { return }
            #expect(resize["from"] as? Int == from && resize["to"] as? Int == to, "\(resize)", sourceLocation: sourceLocation)
            #expect((resize["epoch"] as? Int ?? 0) > 0 && (resize["step"] as? Int ?? 0) > 0,
                    "the resize did not start from a committed line: \(resize)", sourceLocation: sourceLocation)
        }

        /// Every file under `path` with its bytes: what a refused resume must not change.
        static func contents(of path: String) -> [String: Data] {
            var files: [String: Data] = [:]
            let enumerator = FileManager.default.enumerator(atPath: path)
            while let name = enumerator?.nextObject() as? String {
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path + "/" + name, isDirectory: &isFolder), !isFolder.boolValue,
                      name != "lock" else { continue }
                files[name] = FileManager.default.contents(atPath: path + "/" + name) ?? Data()
            }
            return files
        }

        @Test(arguments: [(4, 2), (4, 7), (3, 4)])
        func heatResumesOnAnotherRankCount(from: Int, to: Int) throws {
            let runDirectory = try Self.stopped("resize-\(from)-\(to)", ranks: from, JobRunner.heat)
            let resumed = try Self.resumeToTheEnd(runDirectory, ranks: to)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.oracle], "\(from) -> \(to): \(resumed.stdout)")
            Self.expectResized(resumed, from: from, to: to)
            let last = resumed.stdout.split(separator: "\n").last.map(String.init) ?? ""
            #expect(last.hasPrefix("lifeline: finished ranks=\(to) "), "\(last)")
        }

        /// The task farm resumes on fewer ranks (its rounds then hold fewer tasks).
        @Test func taskFarmResumesOnFewerRanks() throws {
            // The farm of the other tests, slowed down so that the walltime stops it part way
            // (about 10 s of tasks), after rounds past its start: under the whole suite's load
            // 1.5 s once held only a round at step 0.
            let farm = RecoveryTests.farm.map { $0 == "15" ? "60" : $0 }
            let runDirectory = try Self.stopped("resize-farm", ranks: 4, walltime: "3s", farm)
            let resumed = try Self.resumeToTheEnd(runDirectory, ranks: 3)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.farmOracle], "\(resumed.stdout)")
            Self.expectResized(resumed, from: 4, to: 3)
        }

        /// A resize after a kill, with a kill after the resize: heat2d with pessimistic logging
        /// loses rank 1 at step 60, is stopped, resumes on 2 ranks, and loses rank
        /// 1 again two steps after the resize, before any line of 2 ranks committed: no rank can
        /// restart alone from a line of 4, so every rank rolls back and is rebuilt again.
        @Test func aResizeAfterAKillAndAKillAfterTheResize() throws {
            let runDirectory = try Self.stopped(
                "resize-kills", ranks: 4, options: ["--logging", "pessimistic", "--inject", "kill:rank=1,step=60"], JobRunner.heat)
            let first = JobRunner.Result(status: 0, stdout: "", stderr: "", runDirectory: runDirectory)
            // (The walltime's stop may come before the lone replay ends: the line stands either way.
            // Step 60 comes well before the stop, which a slow machine brings forward to about
            // step 140: three rounds of reserve from 1.5 s.)
            #expect(first.events("failure").count == 1)
            let line = try #require(first.events("commit").last?["step"] as? Int)
            let resumed = try Self.resumeToTheEnd(runDirectory, ranks: 2, ["--inject", "kill:rank=1,step=\(line + 2)"])
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.resultLines == [RecoveryTests.oracle])
            Self.expectResized(resumed, from: 4, to: 2)
            #expect(resumed.events("failure").count == 2)
            let fallback = resumed.events("fallback_global_rollback").last?["reason"] as? String ?? ""
            #expect(fallback.contains("resized"), "\(resumed.events("fallback_global_rollback"))")
        }

        /// A program whose state is not Redistributable (cg) is refused in one line (exit 2, as
        /// every refusal before a change), nothing in the run directory changes, and it still
        /// resumes to the end on its own count.
        @Test func aProgramThatDoesNotOptInIsRefusedAndLosesNothing() throws {
            let runDirectory = try Self.stopped("resize-cg", ranks: 3, ["cg", "--size", "40", "--iterations", "400", "--sleep-ms", "6"])
            let before = Self.contents(of: runDirectory)
            let refused = try JobRunner.lifeline(["resume", runDirectory, "-n", "2"], runDirectory: runDirectory)
            #expect(refused.status == 2)
            let lines = refused.stderr.split(separator: "\n").filter { $0.contains("error:") }
            #expect(lines.count == 1 && lines[0].contains("does not conform to Redistributable"), "\(refused.stderr)")
            #expect(Self.contents(of: runDirectory) == before, "the refused resume changed the run directory")
            let inspect = try JobRunner.lifeline(["inspect", runDirectory], runDirectory: runDirectory)
            #expect(inspect.stdout.contains("resizable: yes (line "), "\(inspect.stdout)")
            let resumed = try Self.resumeToTheEnd(runDirectory, ranks: 3)
            #expect(resumed.status == 0, "\(resumed.stderr)")
            #expect(resumed.events("resize").isEmpty)
        }

        /// Messages in flight at the line that the program's state does not take, and a job of
        /// independent checkpoints, are refused before anything changes.
        @Test func messagesInFlightAndIndependentLinesAreRefused() throws {
            let inFlight = try Self.stopped("resize-inflight", ranks: 3, ["lifeline-liveness", "inflight", "2000"])
            let before = Self.contents(of: inFlight)
            let refused = try JobRunner.lifeline(["resume", inFlight, "-n", "2"], runDirectory: inFlight)
            #expect(refused.status == 2 && refused.stderr.contains("in flight"), "\(refused.stderr)")
            #expect(Self.contents(of: inFlight) == before)

            let independent = try Self.stopped("resize-independent", ranks: 2, options: ["--checkpoint", "independent"], JobRunner.heat)
            let inspect = try JobRunner.lifeline(["inspect", independent], runDirectory: independent)
            #expect(inspect.stdout.contains("resizable: no (independent checkpoints"), "\(inspect.stdout)")
            let refusedIndependent = try JobRunner.lifeline(["resume", independent, "-n", "3"], runDirectory: independent)
            #expect(refusedIndependent.status == 2 && refusedIndependent.stderr.contains("independent"), "\(refusedIndependent.stderr)")
        }
    }
}

/// What a resized rank reads: each old rank's state and the messages it had in flight, from
/// real snapshots in a real store.
@Suite struct PreviousRanksTests {
    @Test func oldStatesAndMessagesInFlightAreReadFromTheLinesSnapshots() throws {
        let folder = JobRunner.scratch("previous-ranks")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let store = try MirroredStore(rootA: folder + "/a", rootB: folder + "/b")
        let manifests = ManifestStore(store: store)
        for rank in 0..<3 {
            var ledger = MessageLedger(rank: RankID(rank), rankCount: 3)
            if rank == 1 {
                _ = ledger.send(to: RankID(2), tag: 7, epoch: Epoch(5), incarnation: 1, payload: [1, 2, 3])
                _ = ledger.send(to: RankID(0), tag: 8, epoch: Epoch(5), incarnation: 1, payload: [])
                _ = ledger.send(to: RankID(2), tag: 9, epoch: Epoch(5), incarnation: 1, payload: [4])
            }
            var writer = StateWriter()
            writer.write(Int64(rank * 100))
            let snapshot = RankSnapshot(epoch: Epoch(5), step: 30, incarnation: 1, logPosition: 0, ledger: ledger,
                                        programState: writer.bytes)
            _ = try ChunkedSnapshots(store: store).write(
                manifests.snapshotName(epoch: 5, rank: rank), segments: snapshot.encoded(), generation: 5)
        }
        let previous = PreviousRanks(size: 3, step: 30, epoch: Epoch(5), store: store)
        struct Value: Checkpointable {
            var value: Int64
            func encode(to writer: inout StateWriter) { writer.write(value) }
            init(from reader: inout StateReader) throws { value = try reader.read(Int64.self) }
        }
        #expect(try previous.state(of: 2, as: Value.self).value == 200)
        #expect(try previous.messagesInFlight(sentBy: 0).isEmpty)
        let sent = try previous.messagesInFlight(sentBy: 1)
        #expect(sent == [
            MessageInFlight(source: 1, destination: 0, tag: 8, bytes: []),
            MessageInFlight(source: 1, destination: 2, tag: 7, bytes: [1, 2, 3]),
            MessageInFlight(source: 1, destination: 2, tag: 9, bytes: [4]),
        ])
        #expect(throws: LifelineError.self) { try previous.state(of: 3, as: Value.self) }
    }
}
