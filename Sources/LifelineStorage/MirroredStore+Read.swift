/// What one mirror holds for a name.
enum MirrorCopy {
    /// No file of that name.
    case missing
    /// A file that cannot be read or fails a check.
    case bad(StorageError)
    /// A file that passed every check.
    case good(StoredFile)
}

extension MirroredStore {
    /// Reads `name`, checking both copies and repairing a bad one.
    ///
    /// - Both good and equal: returns it.
    /// - One missing or failing a check: returns the other and rewrites the bad one from it.
    /// - Both good but different: the higher generation wins (A when equal, since A is written
    ///   first); the other is rewritten.
    /// - Neither good: throws `.lost` (naming the file and both reasons), or `.notFound` if both
    ///   are missing, or the environment error (e.g. `.permissionDenied`) if a copy could not be
    ///   read at all, since the file may then be intact.
    ///
    /// A repair that fails does not fail the read: it is reported in `problems` and the mirror
    /// is not listed in `repaired`. A copy on a mirror the store does not write
    /// (`writing(only:)`) is neither repaired nor reported.
    package func read(_ name: String) throws(StorageError) -> StoredFile {
        try inspect(name, repair: true)
    }

    /// Reads both copies of `name` and decides which one holds; repairs only when `repair`.
    func inspect(_ name: String, repair: Bool) throws(StorageError) -> StoredFile {
        try Self.validate(name: name)
        let (copyA, copyB) = readCopies(name)
        if let found = foundElsewhere(name, copyA, copyB, repair: repair) { return found }
        switch (copyA, copyB) {
        case (.good(let fileA), .good(let fileB)):
            if fileA == fileB { return fileA }
            // Equal generations: A (written first), unless this store writes one mirror alone —
            // the other failed, and what it holds under a name written again since is stale —
            // or one mirror is node-local: the shared copy is the one every process wrote last
            // (a host's folder keeps what its ranks wrote even where the shared root was written
            // again since; round numbers are not reused, so this is a defence).
            let tie: Mirror = mirrors.count == 1 ? mirrors[0] : nodeLocal?.mirror.other ?? .a
            let winner: Mirror = fileB.generation == fileA.generation ? tie : fileB.generation > fileA.generation ? .b : .a
            let kept = winner == .a ? fileA : fileB
            let reason = "generation \(winner == .a ? fileB.generation : fileA.generation) differs from "
                + "\(winner.label)'s generation \(kept.generation)"
            return settle(name, kept: kept, from: winner, damaged: winner.other, reason: reason, repair: repair)
        case (.good(let fileA), .missing) where missingIsExpected(on: .b):
            return fileA
        case (.missing, .good(let fileB)) where missingIsExpected(on: .a):
            return fileB
        case (.good(let fileA), _):
            return settle(name, kept: fileA, from: .a, damaged: .b, reason: Self.reason(copyB), repair: repair)
        case (_, .good(let fileB)):
            return settle(name, kept: fileB, from: .b, damaged: .a, reason: Self.reason(copyA), repair: repair)
        case (.missing, .missing):
            throw StorageError(.notFound, path: name, message: "missing on both mirrors (\(rootA), \(rootB))")
        default:
            throw lostError(name, copyA, copyB)
        }
    }

    /// Makes `target`'s copy of `name` equal to `source`'s, which must read intact: the copy of
    /// a mirror resynchronised from the one written while it had failed. Returns whether it
    /// wrote (false: the copies were equal already).
    package func copy(_ name: String, from source: Mirror, to target: Mirror) throws(StorageError) -> Bool {
        try Self.validate(name: name)
        switch readCopy(name, on: source) {
        case .good(let file):
            if case .good(let existing) = readCopy(name, on: target), existing == file { return false }
            try writeCopies([FileToWrite(name, kind: file.kind, generation: file.generation, body: file.body)], on: target)
            return true
        case .missing:
            throw StorageError(.notFound, path: path(name, on: source), message: "missing on the mirror to copy from")
        case .bad(let error):
            throw error
        }
    }

    /// Both mirrors' copies of `name`. A partner's copy crosses the network only when it may
    /// differ from the local one: when the local copy reads intact, the keeper's digest of its
    /// copy is compared with the local bytes' first, and the same bytes are the same good copy
    /// (a reused chunk is checked on both hosts each round without being sent back).
    private func readCopies(_ name: String) -> (MirrorCopy, MirrorCopy) {
        guard let remote, visibleMirrors.contains(remote.mirror) else {
            return (readCopy(name, on: .a), readCopy(name, on: .b))
        }
        let local = remote.mirror.other
        var localBytes: [UInt8]?
        let localCopy = readCopy(name, on: local, bytes: &localBytes)
        let remoteCopy: MirrorCopy
        if case .good = localCopy, let localBytes, let digest = try? remote.folder.digest(name),
           digest == localBytes.withUnsafeBytes({ ContentHash(of: $0) }) {
            remoteCopy = localCopy
        } else {
            remoteCopy = readCopy(name, on: remote.mirror)
        }
        return local == .a ? (localCopy, remoteCopy) : (remoteCopy, localCopy)
    }

    /// Reads and decodes one copy.
    func readCopy(_ name: String, on mirror: Mirror) -> MirrorCopy {
        var bytes: [UInt8]?
        return readCopy(name, on: mirror, bytes: &bytes)
    }

    /// Reads and decodes one copy; `bytes` gets what the file holds (nil when it is missing or
    /// cannot be read).
    private func readCopy(_ name: String, on mirror: Mirror, bytes: inout [UInt8]?) -> MirrorCopy {
        guard visibleMirrors.contains(mirror) else { return .missing }
        let filePath = path(name, on: mirror)
        do {
            let read = if let remote, remote.mirror == mirror {
                try remote.folder.read(name)
            } else {
                try PosixFile.readAll(filePath, dropCache: false)
            }
            bytes = read
            guard let read else { return .missing }
            let decoded = try FileFormat.decode(read, path: filePath)
            return .good(StoredFile(kind: decoded.kind, generation: decoded.generation, body: decoded.body))
        } catch {
            return .bad(error)
        }
    }

    /// The copy the fallback finds for `name` when neither mirror's copy is good (nil
    /// otherwise, or when it finds none that reads intact), written to the mirrors this store
    /// writes when `repair`.
    private func foundElsewhere(_ name: String, _ copyA: MirrorCopy, _ copyB: MirrorCopy, repair: Bool) -> StoredFile? {
        guard let fallback else { return nil }
        if case .good = copyA { return nil }
        if case .good = copyB { return nil }
        guard let bytes = fallback(name), let decoded = try? FileFormat.decode(bytes, path: name) else { return nil }
        var result = StoredFile(kind: decoded.kind, generation: decoded.generation, body: decoded.body)
        guard repair else { return result }
        let file = FileToWrite(name, encoded: bytes)
        for mirror in mirrors {
            let copy = "mirror \(mirror.label) copy of \(name): missing here; "
            rewrite(file, on: mirror, into: &result, done: copy + "written from a partner's copy",
                    failed: copy + "writing a partner's copy failed")
        }
        return result
    }

    /// Writes `file` as `mirror`'s copy and notes in `result` that it was repaired (`done`),
    /// or that the repair failed (`failed`, with the error).
    private func rewrite(_ file: FileToWrite, on mirror: Mirror, into result: inout StoredFile, done: String, failed: String) {
        do {
            try writeCopies([file], on: mirror)
            result.repaired.append(mirror)
            result.problems.append(done)
        } catch {
            result.problems.append("\(failed): \(error)")
        }
    }

    private func settle(
        _ name: String, kept: StoredFile, from winner: Mirror, damaged: Mirror, reason: String, repair: Bool
    ) -> StoredFile {
        var result = kept
        // A mirror this store does not write (it failed: the supervisor's degraded state) is
        // resynchronised as a whole later; each read does not try it again.
        guard mirrors.contains(damaged) else { return result }
        let copy = "mirror \(damaged.label) copy of \(name) (\(path(name, on: damaged)))"
        guard repair else {
            result.problems.append("\(copy): \(reason); needs repair from mirror \(winner.label)")
            return result
        }
        let file = FileToWrite(name, kind: kept.kind, generation: kept.generation, body: kept.body)
        rewrite(file, on: damaged, into: &result, done: "\(copy): \(reason); repaired from mirror \(winner.label)",
                failed: "\(copy): \(reason); repair failed")
        return result
    }

    private func lostError(_ name: String, _ copyA: MirrorCopy, _ copyB: MirrorCopy) -> StorageError {
        for case .bad(let error) in [copyA, copyB] where ![.corrupt, .badFormat].contains(error.code) {
            return error  // could not read a copy at all: the file may be intact
        }
        return StorageError(.lost, path: name, message:
            "both mirrors are damaged: A: \(Self.reason(copyA)); B: \(Self.reason(copyB))")
    }

    private static func reason(_ copy: MirrorCopy) -> String {
        switch copy {
        case .missing: "missing"
        case .bad(let error): "\(error.message) (\(error.path))"
        case .good: "good"
        }
    }
}

extension Mirror {
    /// "A" or "B", as messages name the mirrors.
    package var label: String { rawValue.uppercased() }

    /// The other mirror.
    package var other: Mirror { self == .a ? .b : .a }
}
