/// One injected fault, parsed from the `--inject SPEC` grammar of the design:
///
/// `kill:rank=R,after=DURATION` · `kill:rank=R,step=S` · `kill:rank=R,epoch=E` ·
/// `kill:rank=R,phase=checkpoint|recovery|finish` ·
/// `hang:rank=R,after=DURATION` · `kill:supervisor,epoch=E|after=DURATION` · `chaos:seed=N,mtbf=DURATION` ·
/// `corrupt:mirror=a|b,epoch=E|after=DURATION[,file=chunk|index|manifest|log]` ·
/// `fail:mirror=a|b,epoch=E|after=DURATION[,for=DURATION]` · `lose:memory,epoch=E|after=DURATION`.
///
/// Each fault fires once per job; `after=` counts from the start of the job, across restarts.
package enum FaultSpec: Sendable, Equatable, CustomStringConvertible {
    /// Where in a rank's life a phase-triggered kill fires.
    package enum Phase: String, Sendable, CaseIterable {
        /// Between the rank's capture and its ACK.
        case checkpoint
        /// While the rank restores its state after a restart.
        case recovery
        /// At the final barrier, after the rank's output is flushed and before it reports.
        case finish
    }

    /// SIGKILL of a rank `afterSeconds` into the job.
    case killAfter(RankID, seconds: Double)
    /// Which committed file a storage fault damages.
    package enum StoredFile: String, Sendable, CaseIterable {
        /// The first chunk of rank 0's snapshot in the line.
        case chunk
        /// Rank 0's snapshot index in the line.
        case index
        /// The manifest.
        case manifest
        /// The oldest segment of rank 0's message log (with logging).
        case log
    }

    /// When a fault the supervisor fires on a line (a storage fault, its own kill) fires.
    package enum Trigger: Sendable, Equatable {
        /// Right after round `epoch` commits (on the line it committed).
        case epoch(UInt64)
        /// `seconds` into the job (on the newest committed line).
        case after(seconds: Double)
    }

    /// Bytes flipped in one committed file of a kind on one mirror (`a` when `mirrorA`), as a
    /// failing disk would: reading it must notice, repair it from the other mirror, and go on.
    case corrupt(mirrorA: Bool, Trigger, StoredFile)
    /// Every write to one mirror (`a` when `mirrorA`) fails as on a full disk, from the
    /// trigger on, for `seconds` (nil: until the job ends).
    case failMirror(mirrorA: Bool, Trigger, seconds: Double?)
    /// SIGKILL of a rank when it first reaches safe point `step`, before any checkpoint there.
    case killAtStep(RankID, step: Int)
    /// SIGKILL of a rank in a phase of its life.
    case killInPhase(RankID, Phase)
    /// SIGKILL of a rank by the supervisor right after round `epoch` commits (before the
    /// next round can start): a failure at a known line.
    case killAtCommit(RankID, epoch: UInt64)
    /// SIGSTOP of a rank `afterSeconds` into the job (found by the heartbeat timeout).
    case hangAfter(RankID, seconds: Double)
    /// SIGKILL of the supervisor itself: right after round `epoch` commits (before it can do
    /// anything else: under `--levels memory,disk`, before that line's drain is recorded), or
    /// `seconds` into the job.
    case killSupervisor(Trigger)
    /// SIGKILL of random ranks at exponentially distributed intervals of mean `mtbfSeconds`.
    case chaos(seed: UInt64, mtbfSeconds: Double)
    /// `--levels memory,disk`: every copy the job holds in the host's memory (level 1) is gone,
    /// as when a host's memory is lost; the processes live on. A recovery after it reads disk.
    case loseMemory(Trigger)

    /// Whether the rank process itself fires this fault (it knows its steps and phases).
    package var firesInRank: Bool {
        switch self {
        case .killAtStep, .killInPhase: return true
        case .killAfter, .hangAfter, .killSupervisor, .chaos, .corrupt, .failMirror, .loseMemory, .killAtCommit: return false
        }
    }

    /// The rank a rank-side fault belongs to.
    package var rank: RankID? {
        switch self {
        case .killAfter(let rank, _), .killAtStep(let rank, _), .killInPhase(let rank, _), .hangAfter(let rank, _),
             .killAtCommit(let rank, _):
            return rank
        case .killSupervisor, .chaos, .corrupt, .failMirror, .loseMemory:
            return nil
        }
    }

    /// The spec in the grammar it was parsed from.
    package var description: String {
        switch self {
        case .killAfter(let rank, let seconds): return "kill:rank=\(rank.rawValue),after=\(Self.format(seconds))"
        case .killAtStep(let rank, let step): return "kill:rank=\(rank.rawValue),step=\(step)"
        case .killInPhase(let rank, let phase): return "kill:rank=\(rank.rawValue),phase=\(phase.rawValue)"
        case .killAtCommit(let rank, let epoch): return "kill:rank=\(rank.rawValue),epoch=\(epoch)"
        case .hangAfter(let rank, let seconds): return "hang:rank=\(rank.rawValue),after=\(Self.format(seconds))"
        case .killSupervisor(let trigger): return "kill:supervisor,\(Self.format(trigger))"
        case .chaos(let seed, let mtbf): return "chaos:seed=\(seed),mtbf=\(Self.format(mtbf))"
        case .corrupt(let mirrorA, let trigger, let file):
            return "corrupt:mirror=\(mirrorA ? "a" : "b"),\(Self.format(trigger))" + (file == .chunk ? "" : ",file=\(file.rawValue)")
        case .failMirror(let mirrorA, let trigger, let seconds):
            return "fail:mirror=\(mirrorA ? "a" : "b"),\(Self.format(trigger))" + (seconds.map { ",for=\(Self.format($0))" } ?? "")
        case .loseMemory(let trigger):
            return "lose:memory,\(Self.format(trigger))"
        }
    }

    private static func format(_ trigger: Trigger) -> String {
        switch trigger {
        case .epoch(let epoch): "epoch=\(epoch)"
        case .after(let seconds): "after=\(format(seconds))"
        }
    }

    /// Parses one spec; `rankCount` bounds the rank numbers.
    package static func parse(_ text: String, rankCount: Int) throws(FaultSpecError) -> FaultSpec {
        let (kind, fields) = try split(text)
        func rank() throws(FaultSpecError) -> RankID {
            guard let raw = fields["rank"] else { throw FaultSpecError(text, "it names no rank=R") }
            guard let value = Int(raw), (0..<rankCount).contains(value) else {
                throw FaultSpecError(text, "rank=\(raw) is not a rank of 0..<\(rankCount)")
            }
            return RankID(value)
        }
        func duration(_ key: String) throws(FaultSpecError) -> Double {
            guard let raw = fields[key] else { throw FaultSpecError(text, "it needs \(key)=DURATION") }
            guard let seconds = parseDuration(raw) else {
                throw FaultSpecError(text, "\(key)=\(raw) is not a duration such as 250ms, 2s, 1.5s or 1m")
            }
            return seconds
        }
        func trigger() throws(FaultSpecError) -> Trigger {
            switch (fields["epoch"], fields["after"]) {
            case (let raw?, nil):
                guard let epoch = UInt64(raw), epoch >= 1 else { throw FaultSpecError(text, "epoch=\(raw) is not a round ≥ 1") }
                return .epoch(epoch)
            case (nil, _?):
                return .after(seconds: try duration("after"))
            case (nil, nil):
                throw FaultSpecError(text, "it needs epoch=E or after=DURATION")
            case (_?, _?):
                throw FaultSpecError(text, "it takes epoch=E or after=DURATION, not both")
            }
        }
        func only(_ keys: Set<String>) throws(FaultSpecError) {
            if let stray = fields.keys.sorted().first(where: { !keys.contains($0) }) {
                throw FaultSpecError(text, "\(stray)= does not belong in a \(kind) spec")
            }
        }
        switch kind {
        case "kill" where fields["supervisor"] != nil:
            try only(["supervisor", "epoch", "after"])
            return .killSupervisor(try trigger())
        case "kill":
            let target = try rank()
            if fields["after"] != nil {
                try only(["rank", "after"])
                return .killAfter(target, seconds: try duration("after"))
            }
            if let raw = fields["step"] {
                try only(["rank", "step"])
                guard let step = Int(raw), step >= 0 else { throw FaultSpecError(text, "step=\(raw) is not a step ≥ 0") }
                return .killAtStep(target, step: step)
            }
            if let raw = fields["epoch"] {
                try only(["rank", "epoch"])
                guard let epoch = UInt64(raw), epoch >= 1 else { throw FaultSpecError(text, "epoch=\(raw) is not a round ≥ 1") }
                return .killAtCommit(target, epoch: epoch)
            }
            if let raw = fields["phase"] {
                try only(["rank", "phase"])
                guard let phase = Phase(rawValue: raw) else {
                    throw FaultSpecError(text, "phase=\(raw) is not one of checkpoint, recovery, finish")
                }
                return .killInPhase(target, phase)
            }
            throw FaultSpecError(text, "a kill needs after=, step=, epoch= or phase=")
        case "hang":
            try only(["rank", "after"])
            return .hangAfter(try rank(), seconds: try duration("after"))
        case "chaos":
            try only(["seed", "mtbf"])
            guard let raw = fields["seed"], let seed = UInt64(raw) else { throw FaultSpecError(text, "it needs seed=N") }
            return .chaos(seed: seed, mtbfSeconds: try duration("mtbf"))
        case "lose":
            try only(["memory", "epoch", "after"])
            guard fields["memory"] != nil else { throw FaultSpecError(text, "it needs memory (lose:memory,epoch=E)") }
            return .loseMemory(try trigger())
        case "corrupt", "fail":
            try only(kind == "fail" ? ["mirror", "epoch", "after", "for"] : ["mirror", "epoch", "after", "file"])
            guard let mirror = fields["mirror"], mirror == "a" || mirror == "b" else {
                throw FaultSpecError(text, "it needs mirror=a or mirror=b")
            }
            let when = try trigger()
            if kind == "fail" {
                return .failMirror(mirrorA: mirror == "a", when, seconds: fields["for"] == nil ? nil : try duration("for"))
            }
            let file = try fields["file"].map { raw throws(FaultSpecError) in
                guard let file = StoredFile(rawValue: raw) else {
                    throw FaultSpecError(text, "file=\(raw) is not one of chunk, index, manifest, log")
                }
                return file
            } ?? .chunk
            return .corrupt(mirrorA: mirror == "a", when, file)
        default:
            throw FaultSpecError(text, "\(kind) is not kill, hang, chaos, corrupt, fail or lose")
        }
    }

    private static func split(_ text: String) throws(FaultSpecError) -> (String, [String: String]) {
        guard let colon = text.firstIndex(of: ":") else {
            throw FaultSpecError(text, "expected KIND:KEY=VALUE,... such as kill:rank=1,step=40")
        }
        var fields: [String: String] = [:]
        for item in text[text.index(after: colon)...].split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 1, parts[0] == "supervisor" || parts[0] == "memory" {
                fields[String(parts[0])] = ""
                continue
            }
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw FaultSpecError(text, "'\(item)' is not KEY=VALUE")
            }
            guard fields.updateValue(String(parts[1]), forKey: String(parts[0])) == nil else {
                throw FaultSpecError(text, "\(parts[0])= is given twice")
            }
        }
        return (String(text[..<colon]), fields)
    }

    private static func format(_ seconds: Double) -> String {
        seconds < 1 ? "\(Int((seconds * 1000).rounded()))ms" : "\(seconds)s"
    }
}

/// A malformed `--inject` spec.
package struct FaultSpecError: Error, Sendable, CustomStringConvertible {
    /// The spec as given.
    package var spec: String
    /// What is wrong with it.
    package var reason: String
    /// Describes what is wrong with `spec`.
    package init(_ spec: String, _ reason: String) {
        self.spec = spec
        self.reason = reason
    }
    package var description: String { "bad --inject '\(spec)': \(reason)" }
}

/// Parses a duration with a unit: `250ms`, `2s`, `1.5s`, `1m`, `1h`. Returns nil otherwise.
package func parseDuration(_ text: String) -> Double? {
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
    for (suffix, scale) in units where text.hasSuffix(suffix) {
        guard let value = Double(text.dropLast(suffix.count)), value.isFinite, value >= 0 else { return nil }
        return value * scale
    }
    return nil
}
