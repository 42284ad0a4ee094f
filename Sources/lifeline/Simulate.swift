import ArgumentParser
import Foundation
import LifelineCore
import LifelineSimulation

extension LifelineCommand {
    /// `lifeline simulate --ranks N --seed S …` and `lifeline simulate --swarm --seconds T`
    struct Simulate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the protocol core on a virtual clock, network and disk, with seeded crashes.",
            discussion: """
            The supervisor's and the ranks' machines (LifelineCore) run a model program (halo exchange on a ring or \
            a 2-D grid, half the ranks idle, or a task farm whose master receives from any source) whose failure-free result \
            is known. After every event the simulator \
            checks that each delivered message is the one the failure-free run delivers there, and at the end that \
            every rank's state is the failure-free one. The last line is `simulate: ok ranks=N seed=S events=E \
            control_bytes_per_round=B trace=HEX` (the same seed gives the same trace), or `simulate: violation \
            seed=S: WHAT` with exit status 1. With --swarm, seeds run one after another for --seconds, each drawing \
            ranks 2–64, a scheme, a logging mode, a program and its steps; the last line is `simulate: swarm ok \
            seeds=K` or the first violation's. Simulated so far: checkpoints coordinated, blocking, minimal and independent; \
            logging none, pessimistic, sender-based and optimistic; crashes of ranks and of the supervisor, failing \
            snapshot writes and manifest commits, dropped connections between ranks and hung ranks.
            """)

        @Option(help: "The number of ranks.")
        var ranks = 8
        @Option(help: "The seed every draw of the run comes from.")
        var seed: UInt64 = 1
        @Option(help: "Checkpoint scheme: coordinated, blocking, minimal or independent.")
        var checkpoint = "coordinated"
        @Option(help: "Message logging: none, pessimistic, sender-based or optimistic.")
        var logging = "none"
        @Option(help: "Faults: none, crashes (ranks killed at seeded virtual times, also inside rounds and recoveries, and sometimes the supervisor), storage (snapshot writes and manifest commits failing), network (connections between ranks dropping, and a rank that hangs until the heartbeat timeout kills it) or all.")
        var faults = "crashes"
        @Option(help: "The steps each rank runs.")
        var steps = 20
        @Option(help: "The model program: ring, grid, idle or farm.")
        var program = "ring"
        @Flag(help: "Print every event as it is handled (to replay a seed and see what happened).")
        var trace = false
        @Flag(help: "Run seed after seed with drawn settings until --seconds have passed.")
        var swarm = false
        @Option(help: "With --swarm: how long to run (wall-clock seconds).")
        var seconds = 60.0
        @Option(help: "The checkpoint interval in virtual seconds (independent: each rank's mean period); drawn from the seed when not given.")
        var interval: Double?
        @Flag(help: "Make the model program nondeterministic on purpose: a rank launched again sends other bytes than it did before. The run then expects the runtime's nondeterminism check to catch it (nondeterminism_detected in the figures line) and stops there, as lifeline run does.")
        var nondeterministic = false
        @Flag(help: "Sender-based logging: put the ranks on other hosts than the supervisor, so that what a crashed process had in flight to it is lost and ranks wait for the event logger's acknowledgement before sending (by default they share its host, as under lifeline run).")
        var ranksOnOtherHosts = false
        @Option(help: "Spread the ranks over this many hosts (contiguous blocks); with crashes, a host may be lost: every rank on it crashes at the same instant, and what they had in flight to the supervisor is lost.")
        var hosts = 1
        @Flag(help: "Time every path with a cost model (the reference machine's floors unless given below) instead of wide random delays; the figures line then gives round and recovery times as they would be there.")
        var timed = false
        @Option(help: "Cost model: one-way latency of a small message, in µs (implies --timed).")
        var latencyUs: Double?
        @Option(help: "Cost model: link and disk bandwidth, in GB/s (implies --timed).")
        var bandwidthGbs: Double?
        @Option(help: "Cost model: one fdatasync, in ms (implies --timed).")
        var syncMs: Double?
        @Option(help: "Cost model: what sending or receiving one control message costs a node, in µs (implies --timed).")
        var messageUs: Double?
        @Option(help: "Cost model: a step's computation, in ms (implies --timed).")
        var stepMs: Double?
        @Option(help: "Cost model: a launched process until it is connected, in ms (implies --timed).")
        var launchMs: Double?
        @Option(help: "Cost model: a tree of coordinators with this fan-in (0: one flat coordinator; implies --timed).")
        var fanIn: Int?

        func validate() throws {
            guard (1...100_000).contains(ranks) else { throw ValidationError("--ranks \(ranks) is not in 1...100000") }
            guard steps > 0 else { throw ValidationError("--steps must be positive") }
            guard (1...ranks).contains(hosts) else { throw ValidationError("--hosts \(hosts) is not in 1...\(ranks) (the ranks are spread over them)") }
            guard seconds > 0 else { throw ValidationError("--seconds must be positive") }
            guard interval.map({ $0 > 0 && $0.isFinite }) ?? true else { throw ValidationError("--interval must be a positive number of seconds") }
            for (name, value) in [("--latency-us", latencyUs), ("--bandwidth-gbs", bandwidthGbs), ("--sync-ms", syncMs),
                                  ("--message-us", messageUs), ("--step-ms", stepMs), ("--launch-ms", launchMs)] {
                guard value.map({ $0 >= 0 && $0.isFinite }) ?? true else { throw ValidationError("\(name) must be a number ≥ 0") }
            }
            guard bandwidthGbs.map({ $0 > 0 }) ?? true else { throw ValidationError("--bandwidth-gbs must be positive") }
            guard fanIn.map({ $0 == 0 || $0 >= 2 }) ?? true else { throw ValidationError("--fan-in must be 0 (flat) or at least 2") }
            guard !swarm || costModel == nil else { throw ValidationError("--swarm draws its own timing: leave out --timed and the cost options") }
            guard let variant = CheckpointVariant(rawValue: checkpoint) else {
                throw ValidationError("--checkpoint \(checkpoint) is not one of coordinated, blocking, minimal, independent")
            }
            guard Simulation.simulatedVariants.contains(variant) else {
                throw ValidationError("--checkpoint \(checkpoint) is not simulated yet: use coordinated, blocking, minimal or independent")
            }
            guard let mode = LoggingMode(rawValue: logging) else {
                throw ValidationError("--logging \(logging) is not one of none, pessimistic, sender-based, optimistic")
            }
            guard Simulation.simulatedLoggings.contains(mode) else {
                throw ValidationError("--logging \(logging) is not simulated yet: use none, pessimistic, sender-based or optimistic")
            }
            guard Simulation.allows(variant, mode) else {
                throw ValidationError("--checkpoint independent goes with --logging none or pessimistic, as in lifeline run")
            }
            guard Simulation.FaultProfile(rawValue: faults) != nil else {
                throw ValidationError("--faults \(faults) is not one of none, crashes, storage, network, all")
            }
            guard ModelProgram.Pattern(rawValue: program) != nil else {
                throw ValidationError("--program \(program) is not one of ring, grid, idle, farm")
            }
        }

        func run() throws {
            if swarm {
                try runSwarm()
                return
            }
            let simulation = Simulation(Simulation.Settings(
                rankCount: ranks, seed: seed, variant: CheckpointVariant(rawValue: checkpoint)!,
                logging: LoggingMode(rawValue: logging)!, faults: Simulation.FaultProfile(rawValue: faults)!, stepCount: steps,
                pattern: ModelProgram.Pattern(rawValue: program)!, costModel: costModel, intervalSeconds: interval,
                nondeterministic: nondeterministic, ranksOnOtherHosts: ranksOnOtherHosts, hostCount: hosts))
            if trace { simulation.eventLog = { print($0) } }
            let report = simulation.run()
            if report.violation == nil { print(report.figuresLine + " peak_rss_mib=\(Self.peakResidentMiB())") }
            if report.violation != nil, !trace {
                // Said at once: the search for a shorter run takes long at many ranks, and past
                // a few thousand it is not made (each attempt reruns the job).
                let searched = ranks <= Self.shrinkRanksMax
                FileHandle.standardError.write(Data((report.summaryLine
                    + (searched ? " (looking for a shorter run that shows it)" : " (too many ranks to look for a shorter run: replay it with --trace)")
                    + "\n").utf8))
                if searched { showShortest(simulation.settings) }
            }
            print(report.summaryLine)
            if report.violation != nil { throw ExitCode(1) }
        }

        /// The most ranks whose violation is searched for a shorter run.
        static let shrinkRanksMax = 2048

        /// A violation: the smallest run found that still shows one (fewer ranks and steps,
        /// the same seed), named on stdout, its events on stderr.
        private func showShortest(_ settings: Simulation.Settings) {
            let shortest = Simulation.shrink(settings)
            print("simulate: shortest run found that shows a violation: \(shortest.replayArguments)"
                + (shortest.costModel != nil ? " (timed: same cost options)" : "")
                + " (its events on stderr)")
            let simulation = Simulation(shortest)
            simulation.eventLog = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }
            let report = simulation.run()
            FileHandle.standardError.write(Data((report.summaryLine + "\n").utf8))
        }

        /// This process's peak resident memory so far, in MiB (what the benchmark reports: a
        /// parent's view of a child also counts the parent's pages before the exec).
        static func peakResidentMiB() -> Int {
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return usage.ru_maxrss / 1024
        }

        /// The cost model the options ask for, if any.
        var costModel: CostModel? {
            guard timed || latencyUs != nil || bandwidthGbs != nil || syncMs != nil || messageUs != nil || stepMs != nil
                || launchMs != nil || fanIn != nil
            else { return nil }
            var model = CostModel.referenceMachine
            if let latencyUs { model.latencySeconds = latencyUs * 1e-6 }
            if let bandwidthGbs { model.bytesPerSecond = bandwidthGbs * 1e9 }
            if let syncMs { model.syncSeconds = syncMs * 1e-3 }
            if let messageUs { model.perMessageSeconds = messageUs * 1e-6 }
            if let stepMs { model.stepSeconds = stepMs * 1e-3 }
            if let launchMs { model.launchSeconds = launchMs * 1e-3 }
            if let fanIn { model.fanIn = fanIn }
            return model
        }

        /// Seed after seed from `--seed`, each drawing its settings, until the time is up.
        private func runSwarm() throws {
            let deadline = Date().addingTimeInterval(seconds)
            var count = 0
            var next = seed
            while Date() < deadline {
                let settings = Simulation.Settings.drawn(seed: next)
                if trace { FileHandle.standardError.write(Data("simulate: \(settings.replayArguments)\n".utf8)) }
                let report = Simulation(settings).run()
                count += 1
                if report.violation != nil {
                    showShortest(settings)
                    print("simulate: \(settings.replayArguments)")
                    print(report.summaryLine)
                    throw ExitCode(1)
                }
                next &+= 1
            }
            print("simulate: swarm ok seeds=\(count)")
        }
    }
}
