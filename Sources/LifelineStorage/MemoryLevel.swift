#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Synchronization

/// Level 1 of multi-level checkpoints (`--levels memory,disk`): each rank's snapshot of a
/// round, uncompressed, in a folder of the host's memory (a tmpfs such as `/dev/shm`). A copy
/// there outlives the process that wrote it, so a rank killed on this host restores from memory
/// with no disk read; it does not outlive the host, a wiped tmpfs, or (by the job's rule) the
/// supervisor that committed it, after which recovery reads level 2, the mirrored disks.
///
/// One file per rank and round, `RRRRRR-EEEEEEEEEEEEEEEEEEEE.l1`, written under a temporary
/// name and renamed: no fsync, since memory holds it either way. It begins with a 72-byte
/// header (magic `LLM1`, version 2, the rank, the round, the lengths of the program state and
/// of the snapshot's metadata, and the XXH3-128 of each), then the state, then the metadata.
/// The state comes first because it is known first: a rank captures it straight into the file
/// (`openCapture`, over its spare) or copies it there as soon as it is captured (`begin`), and
/// the metadata — which messages the snapshot stores — only at the round's cut
/// (`finish`). A copy that was cut short, changed, or belongs to another rank or round is
/// refused when read.
package struct MemoryLevel: Sendable {
    /// The folder that holds the job's level-1 copies on this host.
    package let folder: String
    /// A rank's writer: its copies' files kept mapped from round to round (`CopyMappings`).
    let mappings: CopyMappings?

    static let magic: [UInt8] = Array("LLM1".utf8)
    static let version: UInt16 = 2
    /// The header's size in bytes.
    package static let headerByteCount = 72
    /// The bytes copied and hashed at a time: the hash reads what was just copied while it is
    /// still in the cache, so the copy costs one pass over memory instead of two.
    package static let copyPieceBytes = 1 << 20

    /// A copy under way: its program state is in the temporary file, its metadata not yet.
    package struct PendingCopy: Sendable {
        /// The rank whose copy it is.
        package let rank: Int
        /// The round it belongs to.
        package let epoch: UInt64
        let fd: Int32
        let temporary: String
        let stateLength: Int
        let stateHash: ContentHash
    }

    /// The store in `folder` (created by `create()`, or by the job's supervisor). A rank that
    /// writes its own copies passes `mapsCopies`: its spare and its copies stay mapped into the
    /// process (`CopyMappings`), so a copy written over a spare is a `memcpy` into pages that
    /// are mapped already.
    package init(folder: String, mapsCopies: Bool = false) {
        self.folder = folder
        self.mappings = mapsCopies ? CopyMappings() : nil
    }

    /// The job's level-1 folder under `root` (a memory file system): one per job, named by
    /// the job's ID, so a later supervisor of the same job finds it.
    package static func folder(root: String, jobID: String) -> String {
        (root.hasSuffix("/") ? String(root.dropLast()) : root) + "/lifeline-" + jobID
    }

    /// The level-1 folder under `root` of the job's ranks on `host`, on a job whose ranks run on
    /// several hosts: named by the host too, so that hosts whose memory file system is one
    /// (test hosts on one machine) keep apart what each host's memory holds. A `/` in the name
    /// becomes `_`.
    package static func folder(root: String, jobID: String, host: String) -> String {
        folder(root: root, jobID: jobID) + "-" + host.replacingOccurrences(of: "/", with: "_")
    }

    /// What is said of a `--memory-root` (`root`) that `isMemoryFileSystem` finds on a disk.
    package static func notInMemory(root: String) -> String {
        "--memory-root \(root) is not a memory file system (tmpfs): level 1 is a copy on that disk, not in memory"
    }

    /// Whether `path` is on a memory file system (tmpfs or ramfs): what level 1 is meant for.
    /// Read from `/proc/self/mounts`: the file system of the longest mount point `path` is under.
    package static func isMemoryFileSystem(_ path: String) -> Bool {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var best: (point: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let point = String(fields[1]), type = String(fields[2])
            let under = point == "/" || resolved == point || resolved.hasPrefix(point + "/")
            if under, point.count >= (best?.point.count ?? -1) { best = (point, type) }
        }
        return best.map { $0.type == "tmpfs" || $0.type == "ramfs" } ?? false
    }

    /// Makes the folder (and its parents) if it is not there.
    package func create() throws(StorageError) {
        try PosixFile.makeRoot(folder)
    }

    /// Removes the folder and everything in it.
    package func removeAll() {
        try? PosixFile.removeTree(folder)
    }

    /// Removes every copy in the folder, which stays (with its owner lock, `ownerLockName`).
    package func removeCopies() {
        for name in PosixFile.entries(folder) where name != Self.ownerLockName { unlink(folder + "/" + name) }
    }

    /// The file that a one-host job's supervisor holds locked (`flock(2)`) in the job's folder
    /// for as long as it lives (`holdOwnerLock`): a folder whose lock another process can take
    /// was left by a supervisor that died without removing it — killed — and nothing of the
    /// job reads it again (a `resume` restarts from disk), so `reclaimAbandoned` removes it.
    /// Hidden, and named as no copy is.
    static let ownerLockName = ".supervisor-lock"

    /// The file that the ranks of a job on a host hold locked, each with a shared `flock(2)`, in
    /// the job's folder there for as long as each lives (`holdRanksLock`), on a job whose ranks
    /// run on several hosts (no supervisor runs there to hold `ownerLockName`). Its time of
    /// change is kept fresh by the ranks that hold it (`touchRanksLock`, every
    /// `ranksLockTouchSeconds`). A folder whose lock another process can take whole has no live
    /// rank of its job on the host; when the lock was also left untouched for
    /// `ranksLockIdleSeconds`, no rank of it is about to be relaunched there either (a rank
    /// dies and is relaunched within seconds): its supervisor was killed (its ranks exit when it
    /// goes, and leave their copies for a relaunch that never comes), and `reclaimAbandoned`
    /// removes it. Hidden, and named as no copy is.
    static let ranksLockName = ".ranks-lock"
    /// How often a rank holding its folder's lock marks it fresh.
    package static let ranksLockTouchSeconds = 10.0
    /// How long a free ranks' lock stays untouched before its folder is taken for abandoned.
    package static let ranksLockIdleSeconds = 60.0

    /// The name a folder being reclaimed takes before it is removed (`reclaimAbandoned`).
    static let reclaimingPrefix = "lifeline-reclaiming-"

    /// Whether the lock file open as `fd` is still the one named `path`: not one that a folder
    /// renamed aside took with it, nor one made in its place since.
    private static func isStillNamed(_ fd: Int32, _ path: String) -> Bool {
        var held = stat(), named = stat()
        return fstat(fd, &held) == 0 && lstat(path, &named) == 0 && held.st_ino == named.st_ino && held.st_dev == named.st_dev
    }

    /// Makes the folder if it is not there and holds its ranks' lock (`ranksLockName`), shared
    /// with the job's other ranks on the host, until this process ends or `releaseRanksLock`
    /// (close-on-exec: what the program starts does not hold it). A process removing the
    /// folder as abandoned holds the lock alone while it renames the folder aside: the lock is
    /// waited for (up to `patienceSeconds`), and taken again in a folder made anew if the
    /// folder was moved meanwhile. The lock is marked fresh as it is taken. Nil when it cannot
    /// be held (the caller says so): a folder in which no rank of the job holds the lock may
    /// then be taken for abandoned once the lock is stale, this rank's copies with it, and the
    /// rank's restore reads disk.
    package func holdRanksLock(patienceSeconds: Double = 5) -> Int32? {
        let path = folder + "/" + Self.ranksLockName
        let deadline = monotonicSeconds() + patienceSeconds
        while monotonicSeconds() < deadline {
            guard (try? create()) != nil else { return nil }
            let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
            guard fd >= 0 else {
                guard errno == ENOENT else { return nil }
                usleep(1_000)  // the folder was moved aside since it was made: make it again
                continue
            }
            var locked = flock(fd, LOCK_SH | LOCK_NB) == 0
            while !locked, errno == EWOULDBLOCK, monotonicSeconds() < deadline {
                usleep(10_000)
                locked = flock(fd, LOCK_SH | LOCK_NB) == 0
            }
            if locked, Self.isStillNamed(fd, path) {
                Self.touchRanksLock(fd)
                return fd
            }
            close(fd)
            guard locked else { return nil }
            // The folder was reclaimed while this process waited: make it anew and lock that.
        }
        return nil
    }

    /// Marks the ranks' lock open as `fd` fresh (its times set to now): the folder's job lives.
    package static func touchRanksLock(_ fd: Int32) {
        _ = futimens(fd, nil)
    }

    /// Lets go of the lock `holdRanksLock` gave (`fd`). The last of the job's ranks on the host
    /// to let go — the one that can then take the lock whole — removes the lock and the folder
    /// when nothing else is in it (every rank removed its copies as the job ended); a folder
    /// that still holds copies keeps its lock file, free, for `reclaimAbandoned`.
    package func releaseRanksLock(_ fd: Int32) {
        defer { close(fd) }
        let path = folder + "/" + Self.ranksLockName
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, Self.isStillNamed(fd, path),
              PosixFile.entries(folder) == [Self.ranksLockName] else { return }
        unlink(path)
        rmdir(folder)
    }

    /// Locks the folder for this process until it ends or closes the descriptor returned
    /// (close-on-exec: the ranks it starts do not hold it). The lock file is made and locked
    /// under a name of its own, then renamed into place, so that no other process finds the
    /// folder's lock file before it is held. Throws when another process holds the folder's
    /// lock.
    package func holdOwnerLock() throws(StorageError) -> Int32 {
        let current = open(folder + "/" + Self.ownerLockName, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if current >= 0 {
            defer { close(current) }
            guard flock(current, LOCK_EX | LOCK_NB) == 0 else {
                throw StorageError(errno: EWOULDBLOCK, operation: "lock (another supervisor holds the folder)",
                                   path: folder + "/" + Self.ownerLockName)
            }
        }
        let staged = folder + "/" + Self.ownerLockName + ".\(getpid())"
        let fd = open(staged, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: staged) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, rename(staged, folder + "/" + Self.ownerLockName) == 0 else {
            let error = errno
            close(fd)
            unlink(staged)
            throw StorageError(errno: error, operation: "lock", path: staged)
        }
        return fd
    }

    /// What `takeOver` found.
    package enum TakeOver: Sendable {
        /// The folder is made anew, and locked for this process through the descriptor given
        /// (nil when the lock could not be made: the folder is then removed as the job ends,
        /// but not after a kill).
        case taken(lock: Int32?)
        /// Another process held the folder's lock past the patience given: a supervisor
        /// removing it (`reclaimAbandoned`), or one still running the job.
        case held
    }

    /// Makes the folder anew for a supervisor of its job, and locks it for this process
    /// (`holdOwnerLock`). The folder's lock, if it has one, is taken first: a process removing
    /// an abandoned folder (`reclaimAbandoned`) holds it until the folder is out of the way, so
    /// the new folder is not removed with the old one. Throws when the folder cannot be made.
    package func takeOver(patienceSeconds: Double = 5) throws(StorageError) -> TakeOver {
        let previous = open(folder + "/" + Self.ownerLockName, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        defer { if previous >= 0 { close(previous) } }
        if previous >= 0 {
            let deadline = monotonicSeconds() + patienceSeconds
            // Only a lock held elsewhere is waited for; a file system that cannot lock is not.
            while flock(previous, LOCK_EX | LOCK_NB) != 0, errno == EWOULDBLOCK {
                guard monotonicSeconds() < deadline else { return .held }
                usleep(10_000)
            }
        }
        removeAll()
        try create()
        return .taken(lock: try? holdOwnerLock())
    }

    /// The job a folder named `name` belongs to: `lifeline-<job>` on one host,
    /// `lifeline-<job>-<host>` on several (a job's ID holds no `-`).
    static func jobName(ofFolder name: String) -> Substring {
        name.dropFirst("lifeline-".count).prefix { $0 != "-" }
    }

    /// Removes the job folders under `root` that were left when their supervisor died: those
    /// whose lock this process can take whole — the supervisor's (`ownerLockName`) on a job of
    /// one host; the ranks' (`ranksLockName`) on a job of several, when also untouched for
    /// `ranksIdleSeconds` — but the folders of the job `own` (the caller's folder) belongs to.
    /// A folder with no lock is left alone: one made before the locks were, or one whose
    /// process could not make its lock. Each folder is first renamed out of the job's name
    /// (`reclaimingPrefix`), its lock still held, then removed, so that a new process of the
    /// job finds the whole old folder or none; one that a process died removing is removed by
    /// the next (one still being removed, by a process that lives, is left to it). Returns
    /// each folder removed (by its job's name), with the bytes its files held. The locks must
    /// be the kernel's (a local file system: the caller reclaims in a memory file system only).
    package static func reclaimAbandoned(
        root: String, sparingJobOf own: String? = nil, ranksIdleSeconds: Double = ranksLockIdleSeconds
    ) -> [(folder: String, bytes: Int)] {
        var reclaimed: [(folder: String, bytes: Int)] = []
        let root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root
        let base = root == "/" ? "" : root
        func removed(_ path: String) -> Int? {
            let bytes = PosixFile.entries(path).reduce(0) { total, entry in
                var status = stat()
                return total + (lstat(path + "/" + entry, &status) == 0 ? Int(status.st_blocks) * 512 : 0)
            }
            return (try? PosixFile.removeTree(path)) != nil ? bytes : nil
        }
        let spared = own.map { jobName(ofFolder: ($0 as NSString).lastPathComponent) }
        for name in PosixFile.entries(root) where name.hasPrefix("lifeline-") {
            let folder = base + "/" + name
            guard spared == nil || jobName(ofFolder: name) != spared, PosixFile.isDirectory(folder) else { continue }
            if name.hasPrefix(reclaimingPrefix) {
                // Named by the process removing it: only one that died doing so leaves it. It
                // is claimed by renaming it to this process's name, so that of several
                // processes finding it at once one removes it.
                let rest = name.dropFirst(reclaimingPrefix.count)
                let remover = rest.prefix { $0 != "-" }
                guard let pid = pid_t(remover), kill(pid, 0) != 0, errno == ESRCH else { continue }
                let claimed = base + "/" + reclaimingPrefix + "\(getpid())" + rest.dropFirst(remover.count)
                guard rename(folder, claimed) == 0, let bytes = removed(claimed) else { continue }
                reclaimed.append((folder, bytes))
                continue
            }
            var lock: (fd: Int32, path: String, ofRanks: Bool)?
            for lockName in [ownerLockName, ranksLockName] {
                let path = folder + "/" + lockName
                let fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
                if fd >= 0 {
                    lock = (fd, path, lockName == ranksLockName)
                    break
                }
            }
            guard let lock else { continue }
            defer { close(lock.fd) }
            guard flock(lock.fd, LOCK_EX | LOCK_NB) == 0 else { continue }  // its supervisor, or a rank of it, lives
            // Still the folder's lock: not one that a new process of the job put there since.
            guard isStillNamed(lock.fd, lock.path) else { continue }
            if lock.ofRanks {
                // A rank of the job may be about to be relaunched on this host.
                var status = stat()
                guard fstat(lock.fd, &status) == 0,
                      Double(time(nil)) - Double(status.st_mtim.tv_sec) >= ranksIdleSeconds else { continue }
            }
            let aside = base + "/" + reclaimingPrefix + "\(getpid())-" + name.dropFirst("lifeline-".count)
            guard rename(folder, aside) == 0, let bytes = removed(aside) else { continue }
            reclaimed.append((folder, bytes))
        }
        return reclaimed
    }

    /// Removes `rank`'s copies but that of round `except`, its spare and its copies in progress;
    /// with no `except`, then the folder too if nothing else is in it. On another host than the
    /// supervisor's, no other process of the job removes them: a rank removes its own as it
    /// exits after the job (no `except`), and as it starts, those but the one it restores (what
    /// an earlier rank of it, or one under a supervisor killed since, left there).
    package func removeCopies(of rank: Int, except: UInt64? = nil) {
        for name in PosixFile.entries(folder) {
            let copy = Self.parse(name)
            let owner = (name == Self.spareName(rank: rank) ? rank : nil) ?? Self.owner(of: name)
            if owner == rank, copy == nil || copy?.epoch != except { unlink(folder + "/" + name) }
        }
        if except == nil { rmdir(folder) }
    }

    /// Removes the copies (and copies in progress) of every rank but `ranks`: on a job on
    /// several hosts, as the job ends, those this host kept in memory for its partner host's
    /// ranks (`ranks`: the ranks on this host, who remove their own).
    package func removeCopies(ofRanksOtherThan ranks: Set<Int>) {
        for name in PosixFile.entries(folder) {
            if let owner = Self.owner(of: name), !ranks.contains(owner) { unlink(folder + "/" + name) }
        }
    }

    /// The rank whose copy, copy in progress (its temporary name) or copy sent in parts
    /// (`partialName(of:)`, or its first part's temporary name) the file `name` is; nil for any
    /// other file.
    static func owner(of name: String) -> Int? {
        parse(name)?.rank
            ?? parse(partial: name)?.rank
            ?? (PosixFile.isHidden(name)
                ? name.dropFirst().components(separatedBy: ".tmp.").first.flatMap { parse($0) ?? parse(partial: $0) }?.rank : nil)
    }

    /// The file name of `rank`'s copy of round `epoch`.
    package static func fileName(rank: Int, epoch: UInt64) -> String {
        ManifestStore.zeroPadded(UInt64(rank), digits: 6) + "-" + ManifestStore.zeroPadded(epoch, digits: 20) + ".l1"
    }

    /// The name of `rank`'s spare: an obsolete copy kept to be written over by its next one.
    /// Hidden, and named so that no reader takes it for a copy.
    static func spareName(rank: Int) -> String {
        ".spare-" + ManifestStore.zeroPadded(UInt64(rank), digits: 6)
    }

    /// The rank and round a file name names, or nil for any other name.
    package static func parse(_ name: String) -> (rank: Int, epoch: UInt64)? {
        guard name.hasSuffix(".l1") else { return nil }
        let parts = name.dropLast(3).split(separator: "-")
        guard parts.count == 2, parts[0].count == 6, parts[1].count == 20,
              let rank = Int(parts[0]), let epoch = UInt64(parts[1]) else { return nil }
        return (rank, epoch)
    }

    /// Starts `rank`'s copy of round `epoch`: creates its temporary file and writes `state`
    /// into it, hashing as it copies. Throws when the memory file system is full or gone (the
    /// temporary file is removed).
    package func begin(rank: Int, epoch: UInt64, state: UnsafeRawBufferPointer) throws(StorageError) -> PendingCopy {
        let name = Self.fileName(rank: rank, epoch: epoch)
        let temporary = folder + "/" + PosixFile.temporaryName(for: name)
        // The rank's spare file, when it has one, is written over: its pages are in memory
        // already, and writing into them costs a third less than into new ones.
        let recycled = rename(folder + "/" + Self.spareName(rank: rank), temporary) == 0
        let fd = open(temporary, (recycled ? 0 : O_CREAT | O_TRUNC) | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError(errno: errno, operation: "create", path: temporary) }
        do throws(StorageError) {
            let hash: ContentHash
            if recycled, let mappings, let mapping = mappings.take(fd: fd, covering: Self.headerByteCount + state.count) {
                defer { mappings.put(mapping) }
                hash = try Self.copyHashing(state, into: mapping, at: Self.headerByteCount, fd: fd, path: temporary)
            } else {
                hash = try Self.copyHashing(state, to: fd, at: Self.headerByteCount, path: temporary)
            }
            return PendingCopy(rank: rank, epoch: epoch, fd: fd, temporary: temporary, stateLength: state.count, stateHash: hash)
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
    }

    /// A capture written straight into a rank's spare (`openCapture`): the spare, renamed to
    /// the round's temporary file, with its pages mapped in this process; the program state
    /// goes at `state`, after the header's place.
    package struct CaptureTarget: @unchecked Sendable {
        // Unchecked: the mapping is the capturing thread's alone until `beginCaptured` or
        // `cancelCapture` gives it back.
        /// The rank whose copy it is.
        package let rank: Int
        /// The round it belongs to.
        package let epoch: UInt64
        let fd: Int32
        let temporary: String
        let mapping: CopyMappings.Mapping

        /// Where the program state goes, and how much room there is.
        package var state: UnsafeMutableRawBufferPointer {
            UnsafeMutableRawBufferPointer(start: mapping.base + MemoryLevel.headerByteCount, count: mapping.length - MemoryLevel.headerByteCount)
        }
    }

    /// Starts `rank`'s copy of round `epoch` before its state is captured, so that the capture
    /// writes the state straight into the copy and there is nothing to copy: the rank's spare
    /// becomes the round's temporary file, its mapping handed out (`CaptureTarget.state`). Nil
    /// when the rank has no spare mapped in this process (its first copies; the copy is then
    /// made from the capture, `begin`). The capture ends with `beginCaptured`, or
    /// `cancelCapture` when the state did not fit or is not to be kept.
    package func openCapture(rank: Int, epoch: UInt64) -> CaptureTarget? {
        guard let mappings else { return nil }
        let spare = folder + "/" + Self.spareName(rank: rank)
        let temporary = folder + "/" + PosixFile.temporaryName(for: Self.fileName(rank: rank, epoch: epoch))
        guard rename(spare, temporary) == 0 else { return nil }
        let fd = open(temporary, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            if rename(temporary, spare) != 0 { unlink(temporary) }
            return nil
        }
        guard let mapping = mappings.take(fd: fd, covering: Self.headerByteCount + 1) else {
            close(fd)
            if rename(temporary, spare) != 0 { unlink(temporary) }
            return nil
        }
        return CaptureTarget(rank: rank, epoch: epoch, fd: fd, temporary: temporary, mapping: mapping)
    }

    /// A capture into `target` wrote `stateLength` bytes of program state: returns the copy
    /// under way, to be completed by `finish` as `begin`'s is. `stateHash` is their XXH3-128
    /// when the capture took it as it wrote (while each piece was still in the cache); without
    /// it they are hashed here, where they are.
    package func beginCaptured(_ target: CaptureTarget, stateLength: Int, stateHash: ContentHash? = nil) -> PendingCopy {
        precondition(stateLength <= target.state.count, "the state lies within the spare")
        let hash = stateHash ?? ContentHash(of: UnsafeRawBufferPointer(rebasing: target.state[0..<stateLength]))
        mappings?.put(target.mapping)
        return PendingCopy(rank: target.rank, epoch: target.epoch, fd: target.fd, temporary: target.temporary,
                           stateLength: stateLength, stateHash: hash)
    }

    /// Gives up a capture into `target`: the file is the rank's spare again (what was written
    /// into it is not kept; a caller that needs the state copies it out first).
    package func cancelCapture(_ target: CaptureTarget) {
        mappings?.put(target.mapping)
        close(target.fd)
        let spare = folder + "/" + Self.spareName(rank: target.rank)
        if PosixFile.isRegularFile(spare) || rename(target.temporary, spare) != 0 {
            unlink(target.temporary)
            mappings?.keepOnly(inodes: inodes(of: target.rank))
        }
    }

    /// Makes `rank` a spare of `bytes` bytes when it has none, its pages allocated now
    /// (posix_fallocate(3) on the memory file system): a rank's first copy finds no spare, nor does
    /// its second, since the first stays until the second commits, and a copy written into new
    /// pages pays for allocating each (here 256 MiB took 0.09 s of a core to fault in against
    /// 0.007 s to write over, and a second round over 4 ranks committed 0.1–0.8 s after its
    /// first capture instead of 0.04 s). Called after a round's acknowledgement, so the commit
    /// does not wait for it. A spare there already (a relaunched rank finds its predecessor's)
    /// is mapped into this process if it is not yet. False when there was a spare already or
    /// the file system refused (nothing is left behind; the next copy makes its file as before).
    @discardableResult
    package func prepareSpare(rank: Int, bytes: Int) -> Bool {
        let spare = folder + "/" + Self.spareName(rank: rank)
        guard bytes > 0 else { return false }
        guard !PosixFile.isRegularFile(spare) else {
            mappings?.map(path: spare)
            return false
        }
        let temporary = folder + "/" + PosixFile.temporaryName(for: Self.spareName(rank: rank))
        let fd = open(temporary, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return false }
        let allocated = posix_fallocate(fd, 0, off_t(bytes)) == 0
        if allocated { mappings?.map(fd: fd) }
        close(fd)
        guard allocated, rename(temporary, spare) == 0 else {
            unlink(temporary)
            mappings?.keepOnly(inodes: inodes(of: rank))
            return false
        }
        return true
    }

    /// Completes `copy` with the snapshot's `metadata` and the header, and renames it into
    /// place. Returns the copy's bytes. Throws as `begin` does (the copy is then abandoned).
    @discardableResult
    package func finish(_ copy: PendingCopy, metadata: UnsafeRawBufferPointer) throws(StorageError) -> Int {
        let path = folder + "/" + Self.fileName(rank: copy.rank, epoch: copy.epoch)
        do throws(StorageError) {
            let metadataHash = try Self.copyHashing(metadata, to: copy.fd, at: Self.headerByteCount + copy.stateLength, path: copy.temporary)
            var header: [UInt8] = Self.magic
            FileFormat.appendLittleEndian(Self.version, to: &header)
            FileFormat.appendLittleEndian(UInt16(0), to: &header)
            FileFormat.appendLittleEndian(UInt32(copy.rank), to: &header)
            FileFormat.appendLittleEndian(UInt32(0), to: &header)
            FileFormat.appendLittleEndian(copy.epoch, to: &header)
            FileFormat.appendLittleEndian(UInt64(copy.stateLength), to: &header)
            FileFormat.appendLittleEndian(UInt64(metadata.count), to: &header)
            for word in [copy.stateHash.high, copy.stateHash.low, metadataHash.high, metadataHash.low] {
                FileFormat.appendLittleEndian(word, to: &header)
            }
            _ = try Self.withBytes(header) { raw throws(StorageError) in try Self.copyHashing(raw, to: copy.fd, at: 0, path: copy.temporary) }
            // A spare written over may have been longer.
            let length = Self.headerByteCount + copy.stateLength + metadata.count
            guard ftruncate(copy.fd, off_t(length)) == 0 else { throw StorageError(errno: errno, operation: "ftruncate", path: copy.temporary) }
        } catch {
            abandon(copy)
            throw error
        }
        close(copy.fd)
        guard rename(copy.temporary, path) == 0 else {
            let error = StorageError(errno: errno, operation: "rename", path: path)
            unlink(copy.temporary)
            throw error
        }
        return Self.headerByteCount + copy.stateLength + metadata.count
    }

    /// Drops `copy` (its round was aborted, or its write failed): the temporary file goes.
    package func abandon(_ copy: PendingCopy) {
        close(copy.fd)
        unlink(copy.temporary)
        mappings?.keepOnly(inodes: inodes(of: copy.rank))
    }

    /// Writes `rank`'s copy of round `epoch` whole: `begin`, then `finish`.
    @discardableResult
    package func write(rank: Int, epoch: UInt64, state: [UInt8], metadata: [UInt8]) throws(StorageError) -> Int {
        let copy = try Self.withBytes(state) { raw throws(StorageError) in try begin(rank: rank, epoch: epoch, state: raw) }
        return try Self.withBytes(metadata) { raw throws(StorageError) in try finish(copy, metadata: raw) }
    }

    /// `body` over `bytes`' storage, with its typed error (`withUnsafeBytes` rethrows untyped).
    package static func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(StorageError) -> T) throws(StorageError) -> T {
        let result: Result<T, StorageError> = bytes.withUnsafeBytes { raw in
            do throws(StorageError) {
                return .success(try body(raw))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// Writes `bytes` to `fd` from offset `offset` a piece at a time, and returns their XXH3-128,
    /// each piece hashed right after it is written.
    static func copyHashing(_ bytes: UnsafeRawBufferPointer, to fd: Int32, at offset: Int, path: String) throws(StorageError) -> ContentHash {
        try hashingPieces(of: bytes) { (start, piece) throws(StorageError) in
            var written = 0
            while written < piece {
                let count = pwrite(fd, bytes.baseAddress! + start + written, piece - written, off_t(offset + start + written))
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { throw StorageError(errno: count < 0 ? errno : ENOSPC, operation: "write", path: path) }
                written += count
            }
        }
    }

    /// The XXH3-128 of `bytes`, taken a piece (`copyPieceBytes`) at a time, each piece right
    /// after `copy(start, count)` has copied it, while it is still in the cache.
    static func hashingPieces(of bytes: UnsafeRawBufferPointer, copy: (Int, Int) throws(StorageError) -> Void) throws(StorageError) -> ContentHash {
        let hasher = ContentHasher()
        var done = 0
        while done < bytes.count {
            let piece = min(copyPieceBytes, bytes.count - done)
            try copy(done, piece)
            hasher.update(UnsafeRawBufferPointer(rebasing: bytes[done..<(done + piece)]))
            done += piece
        }
        return hasher.digest
    }

    /// Writes `bytes` into `fd`'s file from offset `offset` through `mapping`, the file's pages
    /// mapped in this process, a piece at a time, and returns their XXH3-128 as `copyHashing`
    /// does. The file is made long enough first: a spare written over may be shorter.
    static func copyHashing(_ bytes: UnsafeRawBufferPointer, into mapping: CopyMappings.Mapping, at offset: Int, fd: Int32, path: String) throws(StorageError) -> ContentHash {
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw StorageError(errno: errno, operation: "fstat", path: path) }
        if Int(status.st_size) < offset + bytes.count {
            // Allocated, not just lengthened: a page past the file's blocks would fault in here.
            let error = posix_fallocate(fd, 0, off_t(offset + bytes.count))
            guard error == 0 else { throw StorageError(errno: error, operation: "fallocate", path: path) }
        }
        return try hashingPieces(of: bytes) { start, piece in
            memcpy(mapping.base + offset + start, bytes.baseAddress! + start, piece)
        }
    }

    /// The inodes of `rank`'s files here: its copies, its spare and its temporary files.
    func inodes(of rank: Int) -> Set<UInt64> {
        let spare = Self.spareName(rank: rank)
        var found: Set<UInt64> = []
        for name in PosixFile.entries(folder) {
            let owned: Bool
            if let (owner, _) = Self.parse(name) {
                owned = owner == rank
            } else if name == spare {
                owned = true
            } else if PosixFile.isHidden(name), let inner = name.dropFirst().components(separatedBy: ".tmp.").first {
                owned = Self.parse(inner)?.rank == rank || inner == spare
            } else {
                owned = false
            }
            var info = stat()
            if owned, stat(folder + "/" + name, &info) == 0 { found.insert(UInt64(info.st_ino)) }
        }
        return found
    }

    /// Writes `rank`'s copy of round `epoch` as another host's memory holds it, here under its
    /// name, from its parts: `part(offset)` returns the bytes from `offset` (fewer than a whole
    /// part, or none, at the end; nil: the copy is missing there). Written under a temporary
    /// name and renamed once whole, so no reader finds a part of it; checked when it is mapped,
    /// as any copy. A copy too large for one reply is fetched so, one part in memory at a time.
    package func adopt(
        rank: Int, epoch: UInt64, partBytes: Int, part: (Int) throws(StorageError) -> [UInt8]?
    ) throws(StorageError) {
        let name = Self.fileName(rank: rank, epoch: epoch)
        let temporary = folder + "/" + PosixFile.temporaryName(for: name)
        let fd = open(temporary, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StorageError(errno: errno, operation: "create", path: temporary) }
        var descriptor: Int32? = fd
        do throws(StorageError) {
            var offset = 0
            while true {
                guard let bytes = try part(offset) else {
                    throw StorageError(.notFound, path: name, message: "no copy \(name) there")
                }
                try PosixFile.writeAll(fd, bytes, path: temporary)
                offset += bytes.count
                if bytes.count < partBytes { break }
            }
            close(fd)
            descriptor = nil
            guard Glibc.rename(temporary, folder + "/" + name) == 0 else {
                throw StorageError(errno: errno, operation: "rename", path: temporary)
            }
        } catch {
            if let descriptor { close(descriptor) }
            unlink(temporary)
            throw error
        }
    }

    /// At most `count` bytes of the copy (or other file) `name` here from `offset`, fewer at its
    /// end; nil when it is gone: a copy sent to another host in parts, one part in memory at a
    /// time.
    package func part(of name: String, offset: Int, count: Int) throws(StorageError) -> [UInt8]? {
        try PosixFile.readPart(of: folder + "/" + name, offset: offset, count: count)
    }

    /// The name under which a copy named `name` is written in parts to another host's memory
    /// (`FolderRequest.append`), until it is whole and renamed: not a copy to any reader, and
    /// its owner's all the same (`owner(of:)`).
    package static func partialName(of name: String) -> String { name + ".part" }

    /// The rank and round of the copy whose partial name is `name` (`partialName(of:)`), or nil
    /// for any other name.
    package static func parse(partial name: String) -> (rank: Int, epoch: UInt64)? {
        name.hasSuffix(".part") ? parse(String(name.dropLast(5))) : nil
    }

    /// Whether `rank`'s copy of round `epoch` is there (not read).
    package func has(rank: Int, epoch: UInt64) -> Bool {
        PosixFile.isRegularFile(folder + "/" + Self.fileName(rank: rank, epoch: epoch))
    }

    /// `rank`'s copy of round `epoch`, checked against its header: nil when there is none;
    /// throws when it is there but cut short, changed, or not this rank's copy of this round.
    /// The copy stays mapped as long as the value returned lives, and is not copied.
    /// With `verifying` false the hashes are not checked (for a copy this process has just
    /// written): the rest of the header is.
    package func map(rank: Int, epoch: UInt64, verifying: Bool = true) throws(StorageError) -> MappedCopy? {
        let path = folder + "/" + Self.fileName(rank: rank, epoch: epoch)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw StorageError(errno: errno, operation: "open", path: path)
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw StorageError(errno: errno, operation: "fstat", path: path) }
        let size = Int(status.st_size)
        guard size >= Self.headerByteCount else {
            throw StorageError(.corrupt, path: path, message: "\(size) bytes, shorter than the level-1 header")
        }
        // Populated at once: one call maps every page, instead of a fault per page.
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0), mapped != MAP_FAILED else {
            throw StorageError(errno: errno, operation: "mmap", path: path)
        }
        let copy = MappedCopy(base: UnsafeRawPointer(mapped), size: size)
        let header = Array(UnsafeRawBufferPointer(start: mapped, count: Self.headerByteCount))
        guard Array(header[0..<4]) == Self.magic else {
            throw StorageError(.corrupt, path: path, message: "not a level-1 snapshot copy")
        }
        let version: UInt16 = FileFormat.readLittleEndian(header, at: 4)
        guard version == Self.version else {
            throw StorageError(.badFormat, path: path, message: "level-1 format version \(version), this build reads \(Self.version)")
        }
        let storedRank: UInt32 = FileFormat.readLittleEndian(header, at: 8)
        let storedEpoch: UInt64 = FileFormat.readLittleEndian(header, at: 16)
        let stateLength: UInt64 = FileFormat.readLittleEndian(header, at: 24)
        let metadataLength: UInt64 = FileFormat.readLittleEndian(header, at: 32)
        guard storedRank == UInt32(rank), storedEpoch == epoch else {
            throw StorageError(.corrupt, path: path, message: "holds rank \(storedRank)'s round \(storedEpoch), not rank \(rank)'s round \(epoch)")
        }
        let body = UInt64(size - Self.headerByteCount)
        guard stateLength <= body, metadataLength == body - stateLength else {
            throw StorageError(.corrupt, path: path, message: "body is \(body) bytes, header says \(stateLength) + \(metadataLength)")
        }
        copy.split = Self.headerByteCount + Int(stateLength)
        for (part, at) in [(copy.state, 40), (copy.metadata, 56)] where verifying {
            let hash = ContentHash(of: part)
            guard hash.high == FileFormat.readLittleEndian(header, at: at) as UInt64,
                  hash.low == FileFormat.readLittleEndian(header, at: at + 8) as UInt64 else {
                throw StorageError(.corrupt, path: path, message: "\(at == 40 ? "state" : "metadata") hash mismatch")
            }
        }
        return copy
    }

    /// Checks `rank`'s copy of round `epoch` as `map` does without copying it: false when
    /// there is none; throws when it does not check.
    package func verify(rank: Int, epoch: UInt64) throws(StorageError) -> Bool {
        try map(rank: rank, epoch: epoch) != nil
    }

    /// Removes `rank`'s copies of rounds before `epoch` (the line `epoch` committed), and its
    /// temporary files of those rounds: a write that died with its process, or a copy of a
    /// round that was aborted, leaves one. A later round's temporary file may be a copy under
    /// way (begun at its capture), and stays. One of the copies removed is kept as the rank's
    /// spare, which its next copy is written over (`begin`). The copy of round `keeping` stays:
    /// under minimal checkpoints a rank that kept its checkpoint is the line's member through a
    /// copy of an older round. So do copies pinned by a reader in this process (`pin`: a drain
    /// reading the copy in place), until a later call after the reader let go.
    package func removeOlder(rank: Int, than epoch: UInt64, keeping: UInt64? = nil) {
        let spare = folder + "/" + Self.spareName(rank: rank)
        var spareKept = PosixFile.isRegularFile(spare)
        for name in PosixFile.entries(folder) {
            if let (owner, round) = Self.parse(name) {
                guard owner == rank, round < epoch, round != keeping, !(mappings?.isPinned(round) ?? false) else { continue }
                if !spareKept, rename(folder + "/" + name, spare) == 0 {
                    spareKept = true
                    mappings?.map(path: spare)
                } else {
                    unlink(folder + "/" + name)
                }
            } else if PosixFile.isHidden(name), let inner = name.dropFirst().components(separatedBy: ".tmp.").first,
                      let (owner, round) = Self.parse(inner), owner == rank, round < epoch {
                unlink(folder + "/" + name)
            }
        }
        mappings?.keepOnly(inodes: inodes(of: rank))
    }

    /// Keeps this process's copy of round `epoch` from being removed or made the spare, and so
    /// written over, while it is read in place (`map`), until `unpin`. Only for a store that
    /// maps its copies (`mapsCopies`); pins nest.
    package func pin(_ epoch: UInt64) { mappings?.pin(epoch) }

    /// Ends one `pin` of round `epoch`.
    package func unpin(_ epoch: UInt64) { mappings?.unpin(epoch) }

    /// The bytes of `rank`'s copies here, but for its copy of round `epoch` and any of a round
    /// before `from` other than `keeping` (copies its last commit made obsolete, which its
    /// writer removes after the drain under way; `keeping`: its entry in that commit's line).
    package func bytesHeld(rank: Int, except epoch: UInt64, from: UInt64 = 0, keeping: UInt64? = nil) -> Int {
        PosixFile.entries(folder).reduce(0) { total, name in
            guard let (owner, round) = Self.parse(name), owner == rank, round != epoch, round >= from || round == keeping
            else { return total }
            var info = stat()
            return stat(folder + "/" + name, &info) == 0 ? total + Int(info.st_size) : total
        }
    }

    /// The rounds of which `rank` holds a copy here.
    package func rounds(of rank: Int) -> [UInt64] {
        PosixFile.entries(folder).compactMap { Self.parse($0) }.filter { $0.rank == rank }.map(\.epoch).sorted()
    }
}

/// A level-1 copy mapped read-only (`MemoryLevel.map`): its program state and metadata, read in
/// place. The mapping ends when the last reference goes. The file's pages are not copied, so a
/// later write to the file would show through: a copy is written over only once it is obsolete
/// (older than its rank's last committed round, kept as the rank's spare), and a holder must let
/// go of it before then (a restored rank's state is copied out by the time it captures again).
package final class MappedCopy: @unchecked Sendable {
    // Unchecked: the mapping is read-only and immutable for the object's life.
    private let base: UnsafeRawPointer
    private let size: Int
    /// Where the state ends and the metadata begins (set once, by `MemoryLevel.map`).
    fileprivate(set) var split: Int = MemoryLevel.headerByteCount

    fileprivate init(base: UnsafeRawPointer, size: Int) {
        self.base = base
        self.size = size
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
    }

    /// The program state's bytes.
    package var state: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + MemoryLevel.headerByteCount, count: split - MemoryLevel.headerByteCount)
    }

    /// The snapshot's metadata (everything but the program state).
    package var metadata: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + split, count: size - split)
    }
}

/// A rank's level-1 files mapped into its process (`MemoryLevel(folder:mapsCopies:)`), by inode,
/// so that a copy written over its spare goes through pages already mapped: a `memcpy`, where
/// `pwrite(2)` finds and locks each 4 KiB page of the file in turn (64 MiB: 3 ms against 9–10
/// here), and where mapping the file anew each round costs as much again. A file is mapped once
/// it is the rank's spare or about to be (off the round's path: after the ACK or the commit);
/// mappings of files that are gone are dropped after each commit (`keepOnly`), or their pages
/// would stay allocated. One writer at a time takes a mapping (`take`) and gives it back.
final class CopyMappings: Sendable {
    /// A file's pages mapped shared, read and write.
    struct Mapping: @unchecked Sendable {
        // Unchecked: the pages belong to one writer at a time (`take`, `put`).
        let inode: UInt64
        let base: UnsafeMutableRawPointer
        let length: Int
    }

    private let mapped = Mutex<[UInt64: Mapping]>([:])
    /// The rounds whose copies are read in place, with how many readers each (`MemoryLevel.pin`).
    private let pinned = Mutex<[UInt64: Int]>([:])

    /// Pins round `epoch` (`MemoryLevel.pin`).
    func pin(_ epoch: UInt64) { pinned.withLock { $0[epoch, default: 0] += 1 } }

    /// Ends one pin of round `epoch`.
    func unpin(_ epoch: UInt64) {
        pinned.withLock { pins in
            guard let count = pins[epoch] else { return }
            pins[epoch] = count > 1 ? count - 1 : nil
        }
    }

    /// Whether round `epoch` is pinned.
    func isPinned(_ epoch: UInt64) -> Bool { pinned.withLock { $0[epoch] != nil } }

    deinit {
        mapped.withLock { for mapping in $0.values { munmap(mapping.base, mapping.length) } }
    }

    /// Maps `fd`'s file whole, every page at once (`MAP_POPULATE`), unless it is mapped already.
    /// Nothing happens when it cannot be mapped: its copy is then written with `pwrite`.
    func map(fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { return }
        let inode = UInt64(info.st_ino), length = Int(info.st_size)
        if let old = mapped.withLock({ $0[inode] }), old.length >= length { return }
        guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0), base != MAP_FAILED else { return }
        let replaced = mapped.withLock { $0.updateValue(Mapping(inode: inode, base: base, length: length), forKey: inode) }
        if let replaced { munmap(replaced.base, replaced.length) }
    }

    /// Maps the file at `path` as `map(fd:)` does.
    func map(path: String) {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return }
        map(fd: fd)
        close(fd)
    }

    /// The mapping of `fd`'s file, taken out until `put`, when it covers `bytes` bytes.
    func take(fd: Int32, covering bytes: Int) -> Mapping? {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        return mapped.withLock { mappings in
            guard let mapping = mappings[UInt64(info.st_ino)], mapping.length >= bytes else { return nil }
            mappings[mapping.inode] = nil
            return mapping
        }
    }

    /// Gives back a mapping `take` handed out.
    func put(_ mapping: Mapping) {
        let replaced = mapped.withLock { $0.updateValue(mapping, forKey: mapping.inode) }
        if let replaced, replaced.base != mapping.base { munmap(replaced.base, replaced.length) }
    }

    /// Drops the mappings of files other than `inodes` (removed, so their pages would stay).
    func keepOnly(inodes: Set<UInt64>) {
        let dropped = mapped.withLock { mappings in
            let gone = mappings.values.filter { !inodes.contains($0.inode) }
            for mapping in gone { mappings[mapping.inode] = nil }
            return gone
        }
        for mapping in dropped { munmap(mapping.base, mapping.length) }
    }

    /// How many files are mapped (for tests).
    var count: Int { mapped.withLock { $0.count } }
}
