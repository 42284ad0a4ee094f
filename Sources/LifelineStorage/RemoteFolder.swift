#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mirror's folder that another process keeps, on another host's disk (SCR's PARTNER copy):
/// a `MirroredStore` opened with `init(rootA:remoteB:)` sends every operation on mirror B here.
///
/// Each operation means what the same operation on a local folder means: `write` returns once
/// every file is durable on the keeper's disk and read back intact there; a failure (the keeper
/// unreachable, its disk full) throws, and the store counts it against the mirror. The runtime
/// implements it over an authenticated TCP connection to a partner rank (`FolderRequest` and
/// `FolderReply` are the bytes it sends; `FolderService` is what the keeper runs).
package protocol RemoteFolder: Sendable {
    /// Where the folder is, for messages (`partner rank 3 on n2 (10.0.0.2:40112)`).
    var location: String { get }
    /// Writes the files as one mirror's copies are written (staged, fsynced, renamed, their
    /// folders fsynced, read back and verified).
    func write(_ files: [FileToWrite]) throws(StorageError)
    /// The bytes of `name`, or nil when there is no such file.
    func read(_ name: String) throws(StorageError) -> [UInt8]?
    /// Removes the file `name` (its folder fsynced); false when it was missing.
    func remove(_ name: String) throws(StorageError) -> Bool
    /// Removes the folder `name` with everything in it; missing is fine.
    func removeDirectory(_ name: String) throws(StorageError)
    /// The entries of the folder `directory` (`""`: the root), without temporary files.
    func entries(_ directory: String) throws(StorageError) -> [String]
    /// Whether a file called `name` is there.
    func isRegularFile(_ name: String) throws(StorageError) -> Bool
    /// The XXH3-128 of the bytes of `name` as the keeper's disk holds them, or nil when there
    /// is no such file: a copy checked against a local one without crossing the network.
    func digest(_ name: String) throws(StorageError) -> ContentHash?
    /// Appends `bytes` to the file `name`, which must hold `offset` bytes, and makes them
    /// durable (`fdatasync`) before it returns: a log segment's copy, growing batch by batch.
    func append(_ name: String, at offset: Int, _ bytes: [UInt8]) throws(StorageError)
    /// Takes the keeper's chunk lock shared, as a snapshot write on a local mirror does
    /// (`ChunkLock`): the collection of the keeper's folder waits until every holder releases
    /// it, so a chunk a write reuses is not removed under it. Held until `releaseChunkLock()`
    /// (each take released once) or the connection ends; false when it cannot be taken.
    func holdChunkLock() -> Bool
    /// Releases one `holdChunkLock()`; false when the lock lapsed since it was taken (the
    /// connection ended and another took it again), so that a collection may have run.
    func releaseChunkLock() -> Bool
}

/// One operation on a `RemoteFolder`, as the keeper receives it.
package enum FolderRequest: Sendable {
    /// Write the files (each `FileToWrite.encoded` as it is to be stored).
    case write([FileToWrite])
    /// Send the bytes of a file.
    case read(String)
    /// Remove a file.
    case remove(String)
    /// Remove a folder and everything in it.
    case removeDirectory(String)
    /// List a folder.
    case entries(String)
    /// Say whether a file exists.
    case isRegularFile(String)
    /// Take (true) or release (false) the folder's chunk lock, shared, for this connection.
    case chunkLock(Bool)
    /// Send the XXH3-128 of a file's bytes.
    case digest(String)
    /// Append bytes to a file that holds `offset` bytes, and sync them.
    case append(String, offset: UInt64, bytes: [UInt8])
    /// Rename a file (in place of any file of the new name), and sync its folder: a file
    /// written in pieces under a name of its own takes its final name at once.
    case rename(String, to: String)
    /// Send at most `count` bytes of a file from `offset` (fewer at its end; nil when it is
    /// missing): a file longer than a reply is read in parts.
    case readPart(String, offset: UInt64, count: UInt32)

    /// The longest request a keeper takes: a batch of files larger than this is sent in
    /// several (`batches(_:)`); a stranger's length past it closes the connection.
    package static let bytesMax = 256 << 20

    /// The longest name taken.
    static let nameBytesMax = 4096

    /// The most bytes a part of a file written or read in parts holds (`append`, `readPart`):
    /// a quarter of the longest request.
    package static let partBytesMax = bytesMax / 4

    /// The files of a write split into requests of at most `bytesMax` each (a file larger than
    /// that alone in one, which the keeper refuses).
    package static func batches(_ files: [FileToWrite]) -> [[FileToWrite]] {
        var batches: [[FileToWrite]] = []
        var current: [FileToWrite] = []
        var bytes = 0
        for file in files {
            let size = file.encoded.count + file.name.utf8.count + 16
            if !current.isEmpty, bytes + size > bytesMax - 64 {
                batches.append(current)
                current = []
                bytes = 0
            }
            current.append(file)
            bytes += size
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }

    /// The request's bytes.
    package var encoded: [UInt8] {
        var writer = FolderWire.Writer()
        switch self {
        case .write(let files):
            writer.byte(1)
            writer.u32(UInt32(files.count))
            for file in files {
                writer.string(file.name)
                writer.bytes(file.encoded)
            }
        case .read(let name): writer.byte(2); writer.string(name)
        case .remove(let name): writer.byte(3); writer.string(name)
        case .removeDirectory(let name): writer.byte(4); writer.string(name)
        case .entries(let name): writer.byte(5); writer.string(name)
        case .isRegularFile(let name): writer.byte(6); writer.string(name)
        case .chunkLock(let take): writer.byte(7); writer.byte(take ? 1 : 0)
        case .digest(let name): writer.byte(8); writer.string(name)
        case .append(let name, let offset, let bytes):
            writer.byte(9)
            writer.string(name)
            writer.u64(offset)
            writer.bytes(bytes)
        case .rename(let name, let newName):
            writer.byte(10)
            writer.string(name)
            writer.string(newName)
        case .readPart(let name, let offset, let count):
            writer.byte(11)
            writer.string(name)
            writer.u64(offset)
            writer.u32(count)
        }
        return writer.bytes
    }

    /// Decodes a request; nil when the bytes are not one (a stranger's or a damaged stream).
    package static func decode(_ bytes: [UInt8]) -> FolderRequest? {
        var reader = FolderWire.Reader(bytes)
        guard let operation = reader.byte() else { return nil }
        let request: FolderRequest
        switch operation {
        case 1:
            guard let count = reader.u32(), Int(count) <= bytes.count / 8 else { return nil }
            var files: [FileToWrite] = []
            for _ in 0..<count {
                guard let name = reader.string(), let encoded = reader.bytes() else { return nil }
                files.append(FileToWrite(name, encoded: encoded))
            }
            request = .write(files)
        case 2...6:
            guard let name = reader.string() else { return nil }
            request = [2: .read(name), 3: .remove(name), 4: .removeDirectory(name), 5: .entries(name),
                       6: .isRegularFile(name)][operation]!
        case 7:
            guard let take = reader.byte(), take <= 1 else { return nil }
            request = .chunkLock(take == 1)
        case 8:
            guard let name = reader.string() else { return nil }
            request = .digest(name)
        case 9:
            guard let name = reader.string(), let offset = reader.u64(), let appended = reader.bytes() else { return nil }
            request = .append(name, offset: offset, bytes: appended)
        case 10:
            guard let name = reader.string(), let newName = reader.string() else { return nil }
            request = .rename(name, to: newName)
        case 11:
            guard let name = reader.string(), let offset = reader.u64(), let count = reader.u32(),
                  Int(count) <= FolderRequest.partBytesMax else { return nil }
            request = .readPart(name, offset: offset, count: count)
        default:
            return nil
        }
        return reader.isAtEnd ? request : nil
    }
}

/// A keeper's answer to a `FolderRequest`.
package enum FolderReply: Sendable, Equatable {
    /// Done, with nothing to say (a write, a folder removed).
    case done
    /// A yes or no (a file removed, a file there).
    case flag(Bool)
    /// A file's bytes, or nil when it is missing.
    case file([UInt8]?)
    /// A folder's entries.
    case entries([String])
    /// A file's XXH3-128, or nil when it is missing.
    case digest(ContentHash?)
    /// The operation failed on the keeper's side: its error, which the requester throws.
    case failed(code: StorageError.Code, path: String, message: String)

    /// The reply's bytes.
    package var encoded: [UInt8] {
        var writer = FolderWire.Writer()
        switch self {
        case .done: writer.byte(0)
        case .flag(let value): writer.byte(1); writer.byte(value ? 1 : 0)
        case .file(nil): writer.byte(2); writer.byte(0)
        case .file(let bytes?): writer.byte(2); writer.byte(1); writer.bytes(bytes)
        case .entries(let names):
            writer.byte(3)
            writer.u32(UInt32(names.count))
            names.forEach { writer.string($0) }
        case .digest(nil): writer.byte(5); writer.byte(0)
        case .digest(let hash?): writer.byte(5); writer.byte(1); writer.u64(hash.high); writer.u64(hash.low)
        case .failed(let code, let path, let message):
            writer.byte(4)
            writer.byte(UInt8(FolderWire.codes.firstIndex(of: code) ?? 0))
            writer.string(path)
            writer.string(message)
        }
        return writer.bytes
    }

    /// Decodes a reply; nil when the bytes are not one.
    package static func decode(_ bytes: [UInt8]) -> FolderReply? {
        var reader = FolderWire.Reader(bytes)
        let reply: FolderReply
        switch reader.byte() {
        case 0: reply = .done
        case 1:
            guard let value = reader.byte() else { return nil }
            reply = .flag(value != 0)
        case 2:
            switch reader.byte() {
            case 0: reply = .file(nil)
            case 1:
                guard let file = reader.bytes() else { return nil }
                reply = .file(file)
            default: return nil
            }
        case 3:
            guard let count = reader.u32(), Int(count) <= bytes.count / 4 else { return nil }
            var names: [String] = []
            for _ in 0..<count {
                guard let name = reader.string() else { return nil }
                names.append(name)
            }
            reply = .entries(names)
        case 4:
            guard let code = reader.byte(), Int(code) < FolderWire.codes.count,
                  let path = reader.string(), let message = reader.string() else { return nil }
            reply = .failed(code: FolderWire.codes[Int(code)], path: path, message: message)
        case 5:
            switch reader.byte() {
            case 0: reply = .digest(nil)
            case 1:
                guard let high = reader.u64(), let low = reader.u64() else { return nil }
                reply = .digest(ContentHash(high: high, low: low))
            default: return nil
            }
        default:
            return nil
        }
        return reader.isAtEnd ? reply : nil
    }

    /// The error a `.failed` reply carries (nil otherwise).
    package var error: StorageError? {
        guard case .failed(let code, let path, let message) = self else { return nil }
        return StorageError(code, path: path, message: message)
    }
}

/// What a keeper runs: each `FolderRequest` carried out on its local folder `root`, as a
/// mirror's operations are carried out on a local root. Every name is checked as the store
/// checks its own (relative, no `.`, `..` or hidden component), so a request can neither leave
/// the folder nor touch a temporary file; a bad name or a failing disk is a `.failed` reply,
/// never a crash. A `readOnly` service (the supervisor's, which lends its manifest to the
/// ranks) refuses every change.
package struct FolderService: Sendable {
    /// The local folder kept.
    package let root: String
    /// Whether writes and removals are refused.
    package let readOnly: Bool

    /// A service keeping `root`, created if missing.
    package init(root: String, readOnly: Bool = false) throws(StorageError) {
        try PosixFile.makeRoot(root)
        self.root = root
        self.readOnly = readOnly
    }

    /// What one connection holds between its requests: the chunk lock, while its writer
    /// holds it. Ending the session (the connection closed) releases it.
    package final class Session {
        /// The service it uses.
        package let service: FolderService
        private var lockFD: Int32 = -1

        /// A session on `service`.
        package init(_ service: FolderService) { self.service = service }

        deinit { end() }

        /// Carries out `request` (the chunk lock here, the rest by the service).
        package func handle(_ request: FolderRequest) -> FolderReply {
            guard case .chunkLock(let take) = request else { return service.handle(request) }
            if service.readOnly { return .flag(false) }
            if !take {
                end()
                return .done
            }
            guard lockFD < 0 else { return .flag(true) }
            let fd = open(service.root + "/" + ChunkLock.fileName, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return .flag(false) }
            while flock(fd, LOCK_SH) != 0 {
                if errno != EINTR {
                    close(fd)
                    return .flag(false)
                }
            }
            lockFD = fd
            return .flag(true)
        }

        /// Releases the chunk lock if this session holds it.
        package func end() {
            guard lockFD >= 0 else { return }
            flock(lockFD, LOCK_UN)
            close(lockFD)
            lockFD = -1
        }
    }

    /// Carries out `request` and says how it went (a chunk lock needs a `Session`).
    package func handle(_ request: FolderRequest) -> FolderReply {
        do throws(StorageError) {
            switch request {
            case .write, .remove, .removeDirectory, .append, .rename:
                if readOnly { throw StorageError(.permissionDenied, path: root, message: "this folder is lent for reading only") }
            default:
                break
            }
            switch request {
            case .chunkLock:
                throw StorageError(.invalidArgument, path: root, message: "a chunk lock is taken in a session")
            case .write(let files):
                for file in files { try Self.validate(file.name) }
                guard Set(files.map(\.name)).count == files.count else {
                    throw StorageError(.invalidArgument, path: root, message: "a batch names a file twice")
                }
                try MirroredStore.writeVerified(files, root: root)
                return .done
            case .read(let name):
                try Self.validate(name)
                return .file(try PosixFile.readAll(root + "/" + name, dropCache: false))
            case .remove(let name):
                try Self.validate(name)
                let removed = try PosixFile.removeFile(root + "/" + name)
                if removed { try PosixFile.fsyncDirectory(folder(of: name)) }
                return .flag(removed)
            case .removeDirectory(let name):
                try Self.validate(name)
                try PosixFile.removeTree(root + "/" + name)
                let parent = folder(of: name)
                if PosixFile.isDirectory(parent) { try PosixFile.fsyncDirectory(parent) }
                return .done
            case .entries(let name):
                if !name.isEmpty { try Self.validate(name) }
                let folder = name.isEmpty ? root : root + "/" + name
                return .entries(PosixFile.entries(folder).filter { !PosixFile.isHidden($0) }.sorted())
            case .isRegularFile(let name):
                try Self.validate(name)
                return .flag(PosixFile.isRegularFile(root + "/" + name))
            case .digest(let name):
                try Self.validate(name)
                return .digest(try PosixFile.readAll(root + "/" + name, dropCache: false).map { bytes in
                    bytes.withUnsafeBytes { ContentHash(of: $0) }
                })
            case .append(let name, let offset, let bytes):
                try Self.validate(name)
                try Self.append(bytes, to: root + "/" + name, at: offset)
                return .done
            case .rename(let name, let newName):
                try Self.validate(name)
                try Self.validate(newName)
                guard Glibc.rename(root + "/" + name, root + "/" + newName) == 0 else {
                    guard errno == ENOENT else { throw StorageError(errno: errno, operation: "rename", path: root + "/" + name) }
                    // A request sent again after its connection broke before the reply: done.
                    if PosixFile.isRegularFile(root + "/" + newName) { return .done }
                    throw StorageError(.notFound, path: root + "/" + name, message: "no such file to rename")
                }
                try PosixFile.fsyncDirectory(folder(of: newName))
                return .done
            case .readPart(let name, let offset, let count):
                try Self.validate(name)
                try Self.checkRange(offset: offset, count: Int(count), path: root + "/" + name)
                return .file(try PosixFile.readPart(of: root + "/" + name, offset: Int(offset), count: Int(count)))
            }
        } catch {
            return .failed(code: error.code, path: error.path, message: error.message)
        }
    }

    /// Refuses a range past what a file offset holds (a stranger's numbers, not a file's).
    private static func checkRange(offset: UInt64, count: Int, path: String) throws(StorageError) {
        guard offset <= UInt64(Int64.max) - UInt64(count) else {
            throw StorageError(.invalidArgument, path: path, message: "a range past the largest file offset")
        }
    }

    /// Appends `bytes` to the file at `path`, which must exist and hold `offset` bytes, and
    /// syncs them. A file that holds them already (a request sent again after its connection
    /// broke before the reply) is left as it is, and synced; any other length is refused, so a copy never
    /// grows a gap or a record twice.
    private static func append(_ bytes: [UInt8], to path: String, at offset: UInt64) throws(StorageError) {
        try checkRange(offset: offset, count: bytes.count, path: path)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw StorageError(errno: errno, operation: "open", path: path) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw StorageError(errno: errno, operation: "fstat", path: path) }
        let size = UInt64(info.st_size)
        if size == offset + UInt64(bytes.count), size > offset {
            var held = [UInt8](repeating: 0, count: bytes.count)
            let count = held.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(offset)) }
            if count == bytes.count, held == bytes {
                // The first request may have died between its write and its sync: the bytes are
                // acknowledged as durable only once synced.
                if fdatasync(fd) != 0 { throw StorageError(errno: errno, operation: "fdatasync", path: path) }
                return
            }
        }
        guard size == offset else {
            throw StorageError(.corrupt, path: path, message: "holds \(size) bytes, not the \(offset) this append continues")
        }
        guard lseek(fd, off_t(offset), SEEK_SET) >= 0 else { throw StorageError(errno: errno, operation: "lseek", path: path) }
        try PosixFile.writeAll(fd, bytes, path: path)
        if fdatasync(fd) != 0 { throw StorageError(errno: errno, operation: "fdatasync", path: path) }
    }

    /// The folder holding `name`, as a path.
    private func folder(of name: String) -> String {
        let (folder, _) = MirroredStore.split(name)
        return folder.isEmpty ? root : root + "/" + folder
    }

    /// Checks a name as the store does, the probe's file (`MirroredStore.probe`) let through.
    private static func validate(_ name: String) throws(StorageError) {
        if name == MirroredStore.probeName { return }
        guard name.utf8.count <= FolderRequest.nameBytesMax else {
            throw StorageError(.invalidArgument, path: String(name.prefix(64)), message: "a name longer than \(FolderRequest.nameBytesMax) bytes")
        }
        try MirroredStore.validate(name: name)
    }
}

/// The little-endian fields of folder requests and replies.
enum FolderWire {
    /// The error codes in the order their byte numbers them.
    static let codes: [StorageError.Code] = [
        .ioFailure, .noSpace, .permissionDenied, .rootMissing, .corrupt, .lost, .notFound, .badFormat, .invalidArgument,
        .fenced,
    ]

    struct Writer {
        var bytes: [UInt8] = []

        mutating func byte(_ value: UInt8) { bytes.append(value) }

        mutating func u32(_ value: UInt32) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

        mutating func u64(_ value: UInt64) { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }

        mutating func bytes(_ value: [UInt8]) {
            u64(UInt64(value.count))
            bytes += value
        }

        mutating func string(_ value: String) {
            u32(UInt32(value.utf8.count))
            bytes += value.utf8
        }
    }

    struct Reader {
        private let source: [UInt8]
        private var offset = 0

        init(_ source: [UInt8]) { self.source = source }

        var isAtEnd: Bool { offset == source.count }

        mutating func byte() -> UInt8? {
            guard offset < source.count else { return nil }
            defer { offset += 1 }
            return source[offset]
        }

        mutating func u32() -> UInt32? { integer(UInt32.self) }

        mutating func u64() -> UInt64? { integer(UInt64.self) }

        mutating func bytes() -> [UInt8]? {
            guard let count = integer(UInt64.self), count <= UInt64(source.count - offset) else { return nil }
            defer { offset += Int(count) }
            return Array(source[offset..<offset + Int(count)])
        }

        mutating func string() -> String? {
            guard let count = u32(), Int(count) <= min(source.count - offset, FolderRequest.nameBytesMax * 16) else {
                return nil
            }
            defer { offset += Int(count) }
            return String(validating: source[offset..<offset + Int(count)], as: UTF8.self)
        }

        private mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            let size = MemoryLayout<T>.size
            guard source.count - offset >= size else { return nil }
            var value: T = 0
            for index in 0..<size { value |= T(source[offset + index]) << (8 * index) }
            offset += size
            return value
        }
    }
}
