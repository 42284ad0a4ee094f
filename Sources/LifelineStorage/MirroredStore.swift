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
package struct MirroredStore: Sendable {
    /// The folder of mirror A, as given.
    package let rootA: String
    /// The folder of mirror B, as given; never the same folder as `rootA`.
    package let rootB: String
    /// Whether both roots are on the same device (one disk failure then loses both copies).
    package let sameDevice: Bool

    /// Opens (creating if needed) the two roots.
    ///
    /// Throws `.invalidArgument` if both are the same folder after resolving symlinks, or the
    /// error that prevented creating either root.
    package init(rootA: String, rootB: String) throws(StorageError) {
        try PosixFile.makeRoot(rootA)
        try PosixFile.makeRoot(rootB)
        var statusA = stat()
        var statusB = stat()
        if stat(rootA, &statusA) != 0 {
            throw StorageError(errno: errno, operation: "stat storage root", path: rootA, isRoot: true)
        }
        if stat(rootB, &statusB) != 0 {
            throw StorageError(errno: errno, operation: "stat storage root", path: rootB, isRoot: true)
        }
        if statusA.st_dev == statusB.st_dev && statusA.st_ino == statusB.st_ino {
            throw StorageError(.invalidArgument, path: rootB, message:
                "mirror B is the same folder as mirror A (\(rootA)), so a mirror would protect nothing")
        }
        self.rootA = rootA
        self.rootB = rootB
        self.sameDevice = statusA.st_dev == statusB.st_dev
    }

    /// The folder of `mirror`.
    package func root(_ mirror: Mirror) -> String {
        switch mirror {
        case .a: rootA
        case .b: rootB
        }
    }

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
        try Self.validate(name: name)
        let encoded = FileFormat.encode(kind: kind, generation: generation, body: body)
        for mirror in Mirror.allCases {
            try writeCopy(encoded, name: name, on: mirror)
        }
    }

    /// Removes `name` from both mirrors; a copy that is already missing is fine.
    package func remove(_ name: String) throws(StorageError) {
        try Self.validate(name: name)
        let (folder, _) = Self.split(name)
        for mirror in Mirror.allCases {
            if try PosixFile.removeFile(path(name, on: mirror)) {
                try PosixFile.fsyncDirectory(path(folder, on: mirror))
            }
        }
    }

    /// Removes the folder `name` and everything in it from both mirrors; missing is fine.
    package func removeDirectory(_ name: String) throws(StorageError) {
        try Self.validate(name: name)
        let (parent, _) = Self.split(name)
        for mirror in Mirror.allCases {
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
        let names = PosixFile.entries(path(directory, on: .a)) + PosixFile.entries(path(directory, on: .b))
        return Array(Set(names.filter { !PosixFile.isHidden($0) })).sorted()
    }

    /// Whether either mirror has a file called `name` (it may still be damaged).
    package func exists(_ name: String) -> Bool {
        guard (try? Self.validate(name: name)) != nil else { return false }
        return Mirror.allCases.contains { PosixFile.isRegularFile(path(name, on: $0)) }
    }

    /// Writes the encoded file to one mirror atomically and verifies it by reading it back.
    func writeCopy(_ encoded: [UInt8], name: String, on mirror: Mirror) throws(StorageError) {
        let (folder, fileName) = Self.split(name)
        try PosixFile.makeDirectories(root: root(mirror), relative: folder)
        try PosixFile.writeAtomically(encoded, directory: path(folder, on: mirror), fileName: fileName)
        let filePath = path(name, on: mirror)
        guard let readBack = try PosixFile.readAll(filePath, dropCache: true) else {
            throw StorageError(.ioFailure, path: filePath, message: "file vanished right after it was written")
        }
        let decoded = try FileFormat.decode(readBack, path: filePath)
        if readBack != encoded || decoded.body.count + FileFormat.headerByteCount != encoded.count {
            throw StorageError(.corrupt, path: filePath, message: "read-back after write differs from what was written")
        }
    }

    /// Checks that `name` is a store-relative path the store accepts.
    static func validate(name: String) throws(StorageError) {
        let components = name.split(separator: "/", omittingEmptySubsequences: false)
        let valid = !name.isEmpty && components.allSatisfy { !$0.isEmpty && !$0.hasPrefix(".") }
        if !valid {
            throw StorageError(.invalidArgument, path: name, message:
                "not a valid store name (relative path, no empty, '.' or '..' or hidden components)")
        }
    }

    /// Splits `name` into its folder (possibly empty) and its file name.
    static func split(_ name: String) -> (folder: String, fileName: String) {
        guard let slash = name.lastIndex(of: "/") else { return ("", name) }
        return (String(name[..<slash]), String(name[name.index(after: slash)...]))
    }
}
