import Foundation
@testable import Lifeline
import Testing

extension RecoveryTests {
    /// Reads the (source, sequence, tag) of every delivery in a trace file, with its kind.
    private func deliveries(_ path: String) throws -> [(kind: String, key: String)] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: "\t").map(String.init)
            guard fields.count == 5, fields[1] == "D" || fields[1] == "R" else { return nil }
            return (fields[1], "\(fields[2])#\(fields[3])#\(fields[4])")
        }
    }

    /// Across a global rollback the timeline draws each delivery from the latest send of its
    /// message before it: no arrow joins a send of the execution the rollback undid to a
    /// delivery after it (in-transit messages are resent after the restore, and drawn from
    /// there). It once matched by channel and sequence number alone, the send of whichever
    /// trace file sorted last by name: past incarnation 9 ("rank-2.10" before "rank-2.6"), a
    /// send the rollback undid.
    @Test func timelineArrowsDoNotCrossAGlobalRollback() throws {
        let result = try JobRunner.runHeat("timeline-rollback", [
            "--trace-deliveries", "--inject", "kill:rank=1,step=300", "--inject", "kill:rank=2,step=500",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let rollbacks = result.events("recovery_start").compactMap { $0["t"] as? Double }
        try #require(rollbacks.count == 2)
        let arrows = try Timeline(runDirectory: result.runDirectory).arrowTimes
        #expect(arrows.count > 100, "\(arrows.count) arrows")
        for rollback in rollbacks {
            let crossing = arrows.filter { $0.sent < rollback && $0.delivered > rollback }
            #expect(crossing.isEmpty, "\(crossing.count) arrows cross the rollback at \(rollback) s: \(crossing.prefix(3))")
        }
        #expect(arrows.allSatisfy { $0.sent <= $0.delivered })
        #expect(Timeline.latest([1, 2, 3], atOrBefore: 2.5) == 2 && Timeline.latest([1, 2], atOrBefore: 0.5) == nil
                && Timeline.latest([1, 2], atOrBefore: 2) == 2)
    }

    /// With pessimistic logging the master of the task farm, killed, replays its any-source
    /// deliveries in the order it made them before the crash; the timeline draws the run.
    @Test(arguments: ["pessimistic", "sender-based"])
    func replayedDeliveriesKeepTheirOrderAndTheTimelineShowsThem(logging: String) throws {
        let runDirectory = JobRunner.scratch("trace-\(logging)") + "/run"
        let result = try JobRunner.lifeline(
            ["run", "-n", "4", "--interval", "0.5", "--run-dir", runDirectory, "--quiet", "--logging", logging,
             "--trace-deliveries", "--inject", "kill:rank=0,step=25", "--"] + Self.farm,
            runDirectory: runDirectory)
        #expect(result.resultLines == [Self.farmOracle], "\(result.stderr)")
        let launches = result.events("rank_launched").filter { $0["rank"] as? Int == 0 }.compactMap { $0["incarnation"] as? Int }
        try #require(launches.count == 2, "rank 0 was launched \(launches)")
        let before = try deliveries(runDirectory + "/trace/rank-0.\(launches[0]).tsv").map(\.key)
        let after = try deliveries(runDirectory + "/trace/rank-0.\(launches[1]).tsv")
        let replayed = after.filter { $0.kind == "R" }.map(\.key)
        try #require(!replayed.isEmpty, "nothing was replayed")
        if let start = before.firstIndex(of: replayed[0]) {
            let overlap = min(replayed.count, before.count - start)
            #expect(Array(replayed.prefix(overlap)) == Array(before[start..<start + overlap]),
                    "the replay delivered in another order than before the crash")
        } else {
            // The checkpoint came right before the kill, and what the log holds after it was
            // logged and not yet delivered (a delivery is logged first): none of it was made.
            #expect(replayed.allSatisfy { !before.contains($0) }, "the replay skipped deliveries made before the crash")
        }

        let timeline = try JobRunner.lifeline(["timeline", runDirectory, "-o", runDirectory + "/t.html"], runDirectory: runDirectory)
        #expect(timeline.status == 0, "\(timeline.stderr)")
        let page = try String(contentsOfFile: runDirectory + "/t.html", encoding: .utf8)
        #expect(page.contains("<svg") && page.contains("</html>"))
        #expect(page.components(separatedBy: "<title>rank 0: killed").count == 2, "one failure cross for rank 0")
        #expect(page.contains("replay of one rank") && page.contains("messages"))
        let inspect = try JobRunner.lifeline(["inspect", runDirectory, "--json"], runDirectory: runDirectory)
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        #expect(summary["status"] as? String == "finished")
        #expect((summary["failures"] as? [[String: Any]])?.first?["recovery"] as? String == "replay")
        #expect((summary["logBytes"] as? Int ?? 0) > 0 || logging == "sender-based")
    }
}
