#if canImport(Glibc)
import Glibc
#endif

extension MessageLog {
    /// One mirror's copy of a log's folder: a folder on this machine, or one a partner host
    /// keeps (a store opened with `MirroredStore.init(rootA:remoteB:)`), reached through its
    /// `RemoteFolder`. Every operation means the same on both: a segment written whole is
    /// staged, synced and renamed; an append is durable before it returns.
    enum Folder {
        /// The local folder `root/relative`; `root` must exist (a missing one is a failed disk).
        case local(root: String, relative: String)
        /// The folder `path` (relative to the keeper's root) of a partner's folder.
        case remote(any RemoteFolder, String)

        /// Log `name`'s folder on each mirror of `store`: `ROOT/logs/NAME`.
        static func of(_ store: MirroredStore, name: String) -> [Folder] {
            [Mirror.a, Mirror.b].map { mirror in
                if let remote = store.remote, remote.mirror == mirror {
                    return .remote(remote.folder, MessageLog.folder + "/" + name)
                }
                return .local(root: store.root(mirror), relative: MessageLog.folder + "/" + name)
            }
        }

        /// Where it is, for messages.
        var path: String {
            switch self {
            case .local(let root, let relative): root + "/" + relative
            case .remote(let folder, let path): "\(folder.location):\(path)"
            }
        }

        /// Whether a partner keeps it.
        var isRemote: Bool {
            if case .remote = self { return true }
            return false
        }

        /// The folder, created if missing (a partner's is created by its first write).
        func create() throws(StorageError) {
            if case .local(let root, let relative) = self { try PosixFile.makeDirectories(root: root, relative: relative) }
        }

        /// The segment files' names in it (a missing folder has none).
        func entries() throws(StorageError) -> [String] {
            switch self {
            case .local: PosixFile.entries(path)
            case .remote(let folder, let path): try folder.entries(path)
            }
        }

        /// The bytes of `file`, or nil when it is missing.
        func read(_ file: String) throws(StorageError) -> [UInt8]? {
            switch self {
            case .local: try PosixFile.readAll(path + "/" + file, dropCache: false)
            case .remote(let folder, let path): try folder.read(path + "/" + file)
            }
        }

        /// Writes `file` whole, atomically, its folder synced.
        func write(_ image: [UInt8], as file: String) throws(StorageError) {
            switch self {
            case .local: try PosixFile.writeAtomically(image, directory: path, fileName: file)
            case .remote(let folder, let path): try folder.write([FileToWrite(path + "/" + file, encoded: image)])
            }
        }

        /// Removes `file` and syncs its folder; false when it was missing.
        func remove(_ file: String) throws(StorageError) -> Bool {
            switch self {
            case .local:
                guard try PosixFile.removeFile(path + "/" + file) else { return false }
                try PosixFile.fsyncDirectory(path)
                return true
            case .remote(let folder, let path):
                return try folder.remove(path + "/" + file)
            }
        }

        /// Syncs the folder (a partner's is synced by each change).
        func sync() throws(StorageError) {
            if case .local = self { try PosixFile.fsyncDirectory(path) }
        }
    }
}

// MARK: A log kept on another host

extension MessageLog {
    /// The newest incarnation that wrote a segment of the log `name` in the local root `root`
    /// (nil: no segment there). A process claims its log with a segment of its own when it opens
    /// it, and a log trimmed to a checkpoint keeps the segment that holds its position, so a
    /// copy fit to replay from a checkpoint holds a segment of the incarnation that took it, or
    /// of a later one.
    package static func newestIncarnation(root: String, name: String) -> UInt32? {
        PosixFile.entries(root + "/" + folder + "/" + name).compactMap { segmentID($0)?.incarnation }.max()
    }

    /// How a copy of a log's folder, found on one of several hosts, ranks (higher first,
    /// compared in order): by the newest incarnation that wrote one of its segments (a rank that
    /// ran on several hosts left a copy on each, and its newest process wrote the one in
    /// force), then by where that incarnation's newest segment starts, then by its segments'
    /// count.
    package static func newness(ofFiles names: [String]) -> [UInt64] {
        let ids = names.compactMap(segmentID)
        guard let newest = ids.map(\.incarnation).max() else { return [0, 0, 0] }
        let start = ids.filter { $0.incarnation == newest }.map(\.index).max() ?? 0
        return [UInt64(newest), start, UInt64(ids.count)]
    }

    /// Puts `files` — the segment files of log `name` as another host kept them — in place of
    /// its folder under the local root `root` (an older copy, or none): written into a hidden
    /// folder beside it, each file synced, and renamed into place, so that a crash part way
    /// leaves the old folder or none, never a part of the copy taken for the whole. Other names
    /// are skipped. Opening the log then checks them as it checks any copy (a record is
    /// returned only when its checksum holds) and writes them to the other mirror.
    package static func adopt(_ files: [(name: String, bytes: [UInt8])], root: String, name: String) throws(StorageError) {
        let logs = root + "/" + folder
        let staging = "." + name + ".adopting"
        try PosixFile.removeTree(logs + "/" + staging)
        try PosixFile.makeDirectories(root: root, relative: folder + "/" + staging)
        for file in files where segmentID(file.name) != nil {
            try PosixFile.writeAtomically(file.bytes, directory: logs + "/" + staging, fileName: file.name)
        }
        try PosixFile.removeTree(logs + "/" + name)
        guard rename(logs + "/" + staging, logs + "/" + name) == 0 else {
            throw StorageError(errno: errno, operation: "rename", path: logs + "/" + name)
        }
        try PosixFile.fsyncDirectory(logs)
    }
}
