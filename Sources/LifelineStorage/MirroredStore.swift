#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files kept in two roots, A and B, so that losing or damaging one copy loses nothing.
///
/// A write goes to A (temporary name, fsync, rename, fsync of the folder), is read back and
/// verified, and only then goes to B the same way; so at any moment at least one complete copy
/// exists, and B is never newer than A. Reads check both copies and repair the bad one (see
/// `read(_:)`).
///
/// What the read-back proves: the bytes went through the file system and the device driver and
/// come back intact. The kernel's cached pages are dropped first (`posix_fadvise(DONTNEED)`) so
/// the read reaches the device on file systems that honour the advice; it does not reach past a
/// drive's volatile write cache, and on tmpfs it proves only that memory holds the bytes.
///
/// Names are store-relative paths such as `epochs/000003/rank-0001.snap`: no leading `/`, no
/// `.` or `..` component, and no component starting with `.` (those are temporary files). Only
/// one writer per name at a time (the temporary name carries the process id).
///
/// A store can write to one mirror alone (`writing(only:)`): the supervisor's degraded state,
/// when the other mirror failed (a full, read-only or failing disk). Writes and removals then
/// leave the failed mirror alone, and reads do not try to repair it; `B is never newer than A`
/// no longer holds while A is the failed one, which reads settle by generation.
///
/// One mirror can be *node-local* (`{host}` in `--storage`, see `NodeLocal`): its root is a
/// folder of each host's own, so a file is on the node-local mirror of the host whose rank wrote
/// it and on the other, shared, mirror. A process on another host finds the node-local copy
/// missing, which is then not damage: reads take the shared copy, and only a store that
/// `fills` its host's copies (a rank's) writes the missing one.
package struct MirroredStore: Sendable {
    /// The folder of mirror A, as given.
    package let rootA: String
    /// The folder of mirror B, as given; never the same folder as `rootA`.
    package let rootB: String
    /// Whether both roots are on the same device (one disk failure then loses both copies).
    package let sameDevice: Bool
    /// The mirrors this store writes, in the order it writes them: both (A first) unless
    /// `writing(only:)` chose one.
    package private(set) var mirrors: [Mirror] = Mirror.allCases
    /// The node-local mirror, if one is (see `NodeLocal`).
    package private(set) var nodeLocal: NodeLocal?
    /// The mirror held by another process over a connection (a partner host's disk), if one is
    /// (see `RemoteFolder`).
    package private(set) var remote: Remote?
    /// Where a file neither mirror holds intact may still be found (`withFallback(_:)`).
    private(set) var fallback: (@Sendable (String) -> [UInt8]?)?

    /// A mirror whose folder another process holds: every operation on that mirror goes to it.
    package struct Remote: Sendable {
        /// Which mirror it is.
        package var mirror: Mirror
        /// The folder's keeper.
        package var folder: any RemoteFolder
    }

    /// A mirror whose root is a folder of each host's own (a node's local disk): files there are
    /// on the host of the process that wrote them, and nowhere else.
    package struct NodeLocal: Sendable, Equatable {
        /// Which mirror is node-local; the other is shared by every host.
        package var mirror: Mirror
        /// Whether a read writes a missing node-local copy from the shared one: true for a rank
        /// (its host's copies are its to keep; a rank restarted on another host fills that
        /// host's), false for the supervisor and the tools, which only read ranks' files.
        package var fills: Bool
        /// The one mirror the store sees, when it sees one alone: the node-local one for a host
        /// collecting its own garbage (it lists, reads and removes its folder and never the
        /// shared one), the shared one for reading the manifest the supervisor committed.
        package var seen: Mirror?
        /// Whether the other mirror is no shared folder either but a partner host's (`{partner}`
        /// in `--storage`): to a process that does not fill, a copy missing there is expected
        /// too (the supervisor's and the tools' view holds the manifest and no rank's file).
        package var partnerHeld: Bool
        /// Whether the store sees the node-local mirror alone.
        package var confined: Bool { seen == mirror }

        /// A node-local `mirror`, filled or not, seen with the other or alone, the other held
        /// by a partner host or shared.
        package init(mirror: Mirror, fills: Bool, seen: Mirror? = nil, partnerHeld: Bool = false) {
            self.mirror = mirror
            self.fills = fills
            self.seen = seen
            self.partnerHeld = partnerHeld
        }
    }

    /// Opens (creating if needed) the two roots.
    ///
    /// Throws `.invalidArgument` if both are the same folder after resolving symlinks, or the
    /// error that prevented creating either root.
    ///
    /// `missingAllowed`: a root that may be missing and is then not created (it reads as empty):
    /// a node-local root on a machine where no rank ran, opened by a tool.
    package init(rootA: String, rootB: String, missingAllowed: Mirror? = nil) throws(StorageError) {
        var statusA = stat()
        var statusB = stat()
        for (mirror, root) in [(Mirror.a, rootA), (.b, rootB)] {
            if mirror == missingAllowed, !PosixFile.isDirectory(root) { continue }  // its status stays zero
            try PosixFile.makeRoot(root)
            if mirror == .a ? stat(root, &statusA) != 0 : stat(root, &statusB) != 0 {
                throw StorageError(errno: errno, operation: "stat storage root", path: root, isRoot: true)
            }
        }
        if statusA.st_dev == statusB.st_dev && statusA.st_ino == statusB.st_ino {
            throw StorageError(.invalidArgument, path: rootB, message:
                "mirror B is the same folder as mirror A (\(rootA)), so a mirror would protect nothing")
        }
        self.rootA = rootA
        self.rootB = rootB
        self.sameDevice = statusA.st_dev == statusB.st_dev
    }

    /// Opens (creating if needed) the folder `rootA` as mirror A, with mirror B the folder that
    /// `remoteB` holds on another host (a partner's disk): B's copies are written, read,
    /// listed and removed through it, and a failure there is mirror B's.
    package init(rootA: String, remoteB: any RemoteFolder) throws(StorageError) {
        try PosixFile.makeRoot(rootA)
        self.rootA = rootA
        self.rootB = remoteB.location
        self.sameDevice = false
        self.remote = Remote(mirror: .b, folder: remoteB)
    }

    /// This store writing to `mirrors` alone (in that order), reading both as before but
    /// repairing only those; `[]` is not allowed.
    package func writing(only mirrors: [Mirror]) -> MirroredStore {
        precondition(!mirrors.isEmpty, "a store writes at least one mirror")
        var store = self
        store.mirrors = Mirror.allCases.filter(mirrors.contains)
        return store
    }

    /// This store with `mirror` node-local (see `NodeLocal`), filling missing copies or not,
    /// the other mirror a partner host's (`partnerHeld`) or shared.
    package func withNodeLocal(_ mirror: Mirror, fills: Bool, partnerHeld: Bool = false) -> MirroredStore {
        var store = self
        store.nodeLocal = NodeLocal(mirror: mirror, fills: fills, partnerHeld: partnerHeld)
        return store
    }

    /// This store reading, for a file neither mirror holds intact, the copy `elsewhere` finds
    /// (nil: none): a rank restarted away from the host it wrote on finds its files with that
    /// host's partner. A copy found there is written to both mirrors when the read repairs.
    package func withFallback(_ elsewhere: @escaping @Sendable (String) -> [UInt8]?) -> MirroredStore {
        var store = self
        store.fallback = elsewhere
        return store
    }

    /// This store confined to its node-local mirror: it lists, reads, writes and removes only
    /// this host's folder (a host's garbage collection). Nil when no mirror is node-local.
    package var confinedToNodeLocal: MirroredStore? {
        guard var local = nodeLocal else { return nil }
        local.seen = local.mirror
        var store = self
        store.nodeLocal = local
        store.mirrors = [local.mirror]
        return store
    }

    /// This store reading the shared mirror alone and writing nothing (what the supervisor
    /// committed, whatever a host's folder holds). Nil when no mirror is node-local.
    package var sharedReadOnly: MirroredStore? {
        guard var local = nodeLocal else { return nil }
        local.seen = local.mirror.other
        var store = self
        store.nodeLocal = local
        store.mirrors = []
        return store
    }

    /// The mirrors this store sees: both, or one alone (see `NodeLocal.seen`).
    package var visibleMirrors: [Mirror] {
        if let seen = nodeLocal?.seen { return [seen] }
        return Mirror.allCases
    }

    /// Whether a copy missing from `mirror` is expected rather than damage: on the node-local
    /// mirror when this store does not fill it (it holds only what its host's ranks wrote), and
    /// on the shared one when the store is confined to its host's folder and does not look.
    func missingIsExpected(on mirror: Mirror) -> Bool {
        guard let nodeLocal else { return false }
        if let seen = nodeLocal.seen, seen != mirror { return true }
        return (nodeLocal.mirror == mirror || nodeLocal.partnerHeld) && !nodeLocal.fills
    }

    /// For A and B, whether reading a message log looks at that mirror's copy: a trusted one
    /// that this store sees.
    var logMirrorsRead: [Bool] {
        Mirror.allCases.map { trustedMirrors.contains($0) && visibleMirrors.contains($0) }
    }

    /// For A and B, whether a message log's copy missing there is expected (see
    /// `missingIsExpected(on:)`).
    var logMirrorsExpectedMissing: [Bool] { Mirror.allCases.map { missingIsExpected(on: $0) } }

    /// This store reading both mirrors and repairing nothing (`lifeline replay` and `inspect`
    /// read a run without changing it). Never write through it: it writes no mirror.
    package var readingOnly: MirroredStore {
        var store = self
        store.mirrors = []
        return store
    }

    /// The mirrors whose copies a read trusts: those this store writes (a failed mirror's
    /// copies are stale), or both for a reading-only view.
    package var trustedMirrors: [Mirror] { mirrors.isEmpty ? Mirror.allCases : mirrors }

    /// The folder of `mirror`.
    package func root(_ mirror: Mirror) -> String {
        switch mirror {
        case .a: rootA
        case .b: rootB
        }
    }

    /// The lock file a job's supervisor holds in each root while it drives the job (`flock`):
    /// no two jobs share a pair of mirrors. Not a stored file: `verify` leaves it alone.
    package static let jobLockFileName = ".job.lock"

    /// The absolute path of `name` on `mirror`.
    package func path(_ name: String, on mirror: Mirror) -> String {
        name.isEmpty ? root(mirror) : root(mirror) + "/" + name
    }

    /// Writes `body` as `name` to A, verifies A's copy by reading it back, then does the same
    /// for B. Creates subfolders as needed.
    ///
    /// When this returns, both copies are durable and verified. If it throws, A may hold the
    /// new version and B the old one; a later `read` then returns A's (higher or equal
    /// generation) and repairs B.
    package func write(_ name: String, kind: FileKind, generation: UInt64, body: [UInt8]) throws(StorageError) {
        try write([FileToWrite(name, kind: kind, generation: generation, body: body)])
    }

    /// Writes several files as `write(_:kind:generation:body:)` writes one, with the cost of
    /// durability shared: on A every file is staged under its temporary name with its
    /// write-back started, then each is fsynced and renamed, each folder is fsynced once, and
    /// every copy is read back and verified; only then B, the same way.
    ///
    /// When this returns, every file is durable and verified on both mirrors. If it throws,
    /// each file is as `write(_:kind:generation:body:)` leaves it on failure: old or new on A,
    /// and never newer on B than on A. Names must be distinct.
    package func write(_ files: [FileToWrite]) throws(StorageError) {
        for file in files { try Self.validate(name: file.name) }
        precondition(Set(files.map(\.name)).count == files.count, "a batch writes each name once")
        for mirror in mirrors {
            try writeCopies(files, on: mirror)
        }
    }

    /// Removes `name` from the mirrors this store writes; a copy that is already missing is fine.
    package func remove(_ name: String) throws(StorageError) {
        try Self.validate(name: name)
        let (folder, _) = Self.split(name)
        for mirror in mirrors {
            if let remote, remote.mirror == mirror {
                do throws(StorageError) { _ = try remote.folder.remove(name) } catch { throw error.on(mirror) }
                continue
            }
            if try PosixFile.removeFile(path(name, on: mirror)) {
                try PosixFile.fsyncDirectory(path(folder, on: mirror))
            }
        }
    }

    /// Removes the folder `name` and everything in it from the mirrors this store writes;
    /// missing is fine.
    package func removeDirectory(_ name: String) throws(StorageError) {
        try Self.validate(name: name)
        let (parent, _) = Self.split(name)
        for mirror in mirrors {
            if let remote, remote.mirror == mirror {
                do throws(StorageError) { try remote.folder.removeDirectory(name) } catch { throw error.on(mirror) }
                continue
            }
            try PosixFile.removeTree(path(name, on: mirror))
            if PosixFile.isDirectory(path(parent, on: mirror)) {
                try PosixFile.fsyncDirectory(path(parent, on: mirror))
            }
        }
    }

    /// The sorted union of the entries (files and subfolders) of the folder `directory` on both
    /// mirrors, without temporary files; `""` lists the roots. Empty when the folder is missing.
    package func list(_ directory: String) -> [String] {
        if !directory.isEmpty && (try? Self.validate(name: directory)) == nil { return [] }
        let names = visibleMirrors.flatMap { mirror in
            if let remote, remote.mirror == mirror { return (try? remote.folder.entries(directory)) ?? [] }
            return PosixFile.entries(path(directory, on: mirror))
        }
        return Array(Set(names.filter { !PosixFile.isHidden($0) })).sorted()
    }

    /// Whether either mirror has a file called `name` (it may still be damaged).
    package func exists(_ name: String) -> Bool {
        guard (try? Self.validate(name: name)) != nil else { return false }
        return visibleMirrors.contains { mirror in
            if let remote, remote.mirror == mirror { return (try? remote.folder.isRegularFile(name)) ?? false }
            return PosixFile.isRegularFile(path(name, on: mirror))
        }
    }

    /// Writes the files to one mirror atomically and verifies each by reading it back: all are
    /// staged (written under temporary names, write-back started), then each is fsynced and
    /// renamed, then each folder is fsynced once, then every copy is read back. An error it
    /// throws names `mirror` (`StorageError.mirror`).
    func writeCopies(_ files: [FileToWrite], on mirror: Mirror) throws(StorageError) {
        do throws(StorageError) {
            if access(root(mirror) + "/" + Self.failWritesMarker, F_OK) == 0 {
                throw StorageError(errno: ENOSPC, operation: "write (a fault injected by --inject fail:mirror=\(mirror.rawValue))",
                                   path: root(mirror))
            }
            try writeCopiesUnmarked(files, on: mirror)
        } catch {
            throw error.on(mirror)
        }
    }

    /// A file whose presence in a root makes every write to that mirror fail as on a full disk
    /// (`--inject fail:mirror=…`); the supervisor creates and removes it. Hidden, so listings and
    /// `verify` leave it alone.
    package static let failWritesMarker = ".fail-writes"

    /// Whether `mirror` takes writes now: writes a small file to its root, fsyncs it, reads it
    /// back and removes it. Throws what the write met (the error names the mirror).
    package func probe(_ mirror: Mirror) throws(StorageError) {
        let file = FileToWrite(Self.probeName, kind: .manifest, generation: 0, body: [UInt8](repeating: 0x5A, count: 4096))
        try writeCopies([file], on: mirror)
        if let remote, remote.mirror == mirror {
            _ = try? remote.folder.remove(Self.probeName)
        } else {
            _ = try? PosixFile.removeFile(path(Self.probeName, on: mirror))
        }
    }

    /// The probe's file name in a root (hidden: listings skip it).
    static let probeName = ".probe"

    private func writeCopiesUnmarked(_ files: [FileToWrite], on mirror: Mirror) throws(StorageError) {
        if let remote, remote.mirror == mirror {
            try remote.folder.write(files)
            return
        }
        try Self.writeVerified(files, root: root(mirror))
    }

    /// Writes the files into the folder `root` as one mirror's copies are written: all staged,
    /// each fsynced and renamed, each folder fsynced once, every copy read back and verified.
    /// What a partner's `FolderService` does with the files it is sent.
    static func writeVerified(_ files: [FileToWrite], root: String) throws(StorageError) {
        let folders = Set(files.map { Self.split($0.name).folder }).sorted()
        for folder in folders {
            try PosixFile.makeDirectories(root: root, relative: folder)
        }
        for start in stride(from: 0, to: files.count, by: Self.stagedFilesMax) {
            try stageAndCommit(files[start..<min(files.count, start + Self.stagedFilesMax)], root: root)
        }
        for folder in folders {
            try PosixFile.fsyncDirectory(folder.isEmpty ? root : root + "/" + folder)
        }
        for file in files {
            try verifyCopy(file, root: root)
        }
    }

    /// Files held open at once by a batch (a window of small chunks could otherwise reach the
    /// process's descriptor limit).
    static let stagedFilesMax = 64

    /// Stages the files (temporary names, write-back started), then fsyncs and renames each.
    private static func stageAndCommit(_ files: ArraySlice<FileToWrite>, root: String) throws(StorageError) {
        var staged: [PosixFile.StagedFile] = []
        staged.reserveCapacity(files.count)
        do throws(StorageError) {
            for file in files {
                let (folder, fileName) = Self.split(file.name)
                staged.append(try PosixFile.stage(file.encoded, directory: folder.isEmpty ? root : root + "/" + folder,
                                                  fileName: fileName))
            }
        } catch {
            staged.forEach(PosixFile.abandon)
            throw error
        }
        for (position, file) in staged.enumerated() {
            do throws(StorageError) {
                try PosixFile.commit(file)
            } catch {
                staged[(position + 1)...].forEach(PosixFile.abandon)
                throw error
            }
        }
    }

    /// Reads a copy just written back from the device (its cached pages dropped first) and
    /// checks it byte for byte against what was written, which also proves its checksums.
    private static func verifyCopy(_ file: FileToWrite, root: String) throws(StorageError) {
        let filePath = root + "/" + file.name
        guard let readBack = try PosixFile.readAll(filePath, dropCache: true) else {
            throw StorageError(.ioFailure, path: filePath, message: "file vanished right after it was written")
        }
        if !bytesEqual(readBack, file.encoded) {
            throw StorageError(.corrupt, path: filePath, message: "read-back after write differs from what was written")
        }
    }

    /// Checks that `name` is a store-relative path the store accepts.
    static func validate(name: String) throws(StorageError) {
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        // A NUL ends the name where the C library reads it: "a/\0" would name the folder "a".
        let valid = !name.isEmpty && !name.utf8.contains(0) && components.allSatisfy { !$0.isEmpty && !$0.hasPrefix(".") }
        if !valid {
            throw StorageError(.invalidArgument, path: name, message:
                "not a valid store name (relative path, no empty, '.' or '..' or hidden components, no NUL)")
        }
    }

    /// Splits `name` into its folder (possibly empty) and its file name.
    static func split(_ name: String) -> (folder: String, fileName: String) {
        guard let slash = name.lastIndex(of: "/") else { return ("", name) }
        return (String(name[..<slash]), String(name[name.index(after: slash)...]))
    }
}

/// One file of a `MirroredStore.write(_:)` batch: its store name and its encoded bytes.
package struct FileToWrite: Sendable {
    /// The store-relative name.
    package let name: String
    /// Header and body, as `FileFormat.encode` makes them.
    package let encoded: [UInt8]

    /// The file `name` holding `body`, of `kind` at `generation`.
    package init(_ name: String, kind: FileKind, generation: UInt64, body: [UInt8]) {
        self.init(name, encoded: FileFormat.encode(kind: kind, generation: generation, body: body))
    }

    /// The file `name` holding bytes already encoded.
    package init(_ name: String, encoded: [UInt8]) {
        self.name = name
        self.encoded = encoded
    }
}

/// Whether two byte arrays are equal, compared with `memcmp` (the generic `==` goes byte by
/// byte, which costs more than the disk on the snapshot path).
func bytesEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
    left.count == right.count && left.withUnsafeBytes { a in
        right.withUnsafeBytes { b in a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
    }
}

