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
