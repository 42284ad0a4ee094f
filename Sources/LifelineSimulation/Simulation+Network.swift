import LifelineCore

/// Network faults (`FaultProfile.network`): connections between ranks that drop, and ranks
/// that fall silent. A dropped connection loses what was in flight on it; both ends reconnect
/// after a while and each sends again what it retains for the other (`RankMachine.connectionLost`),
/// which the receiver drops where it has it already. A hung rank is found by the supervisor
/// machine's heartbeat timeout, killed and recovered like a crashed one.
extension Simulation {
    /// Draws the run's network faults before its horizon, from a generator of their own (the
    /// other faults of a seed stay where they were): one to four dropped connections, each
    /// between a rank and a peer it talks to, and in one run of two a hung rank.
    func scheduleNetworkFaults() {
        var draws = SplitMix64(seed: settings.seed ^ 0x4E45_5457_4F52_4B00)
        if settings.rankCount >= 2 {
            for _ in 0..<Int.random(in: 1...4, using: &draws) {
                let rank = Int.random(in: 0..<settings.rankCount, using: &draws)
                let step = Int.random(in: 0..<settings.stepCount, using: &draws)
                let peers = program.operations(of: rank, step: step).compactMap { operation -> Int? in
                    switch operation {
                    case .send(let peer): peer
                    case .receive(let source?, _): source
                    default: nil
                    }
                }.filter { $0 != rank }
                var peer = peers.isEmpty ? Int.random(in: 0..<settings.rankCount - 1, using: &draws) : peers[0]
                if peers.isEmpty, peer >= rank { peer += 1 }
                schedule(.dropConnection(rank, peer), after: Double.random(in: 0.01...horizon, using: &draws))
            }
        }
        if Bool.random(using: &draws) {
            schedule(.hang(rank: Int.random(in: 0..<settings.rankCount, using: &draws)),
                     after: Double.random(in: 0.01...horizon, using: &draws))
        }
    }

    /// The connection between `first` and `second` drops: messages in flight on it either way
    /// are lost, it carries nothing until it is back, and each end will send what it retains
    /// for the other again.
    func dropConnection(_ first: Int, _ second: Int) {
        report.connectionDrops += 1
        let back = now + Double.random(in: Self.reconnectSeconds, using: &generator)
        for (from, to) in [(first, second), (second, first)] {
            let key = from * settings.rankCount + to
            linkGeneration[key, default: 0] += 1
            linkDownUntil[key] = back
            dataBusyUntil[key] = back
            guard processes[from].alive, !processes[from].hung, processes[from].machine != nil else { continue }
            processes[from].machine!.connectionLost(to: RankID(to))
        }
        schedule(.reconnect(first, second), at: back)
    }

    /// The connection is back: each end that has not sent since sends its retained messages now.
    func reconnect(_ first: Int, _ second: Int) {
        for (from, to) in [(first, second), (second, first)] {
            guard processes[from].alive, !processes[from].hung, processes[from].machine != nil else { continue }
            flushResend(from, to: RankID(to))
        }
    }

    /// Every connected rank that is not hung has sent its heartbeat; the supervisor machine
    /// judges the silent ones.
    func checkHeartbeats() throws {
        for rank in 0..<settings.rankCount
        where processes[rank].alive && !processes[rank].hung && supervisor.ranks[rank].connected {
            supervisor.heard(from: rank, now: now)
        }
        try perform(supervisor.checkHeartbeats(now: now, facts: DiskFacts(self)))
    }
}
