#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failing environment seen by the storage layer: an I/O error, a full disk, a missing root,
/// or a damaged file.
///
/// Every failure of `LifelineStorage` is thrown as this type. `description` is one line that
/// names the file and says what the user can do about it.
package struct StorageError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is. New cases may be added; switch with a `default`.
    package enum Code: Sendable, Equatable {
        /// An I/O call failed for a reason not covered by a more specific code.
        case ioFailure
        /// The disk is full or a file size limit was reached (ENOSPC, EFBIG).
        case noSpace
        /// The process may not read or write there (EACCES, EPERM, EROFS).
        case permissionDenied
        /// A storage root does not exist and could not be created.
        case rootMissing
        /// A file exists but its contents fail a check (length, checksum, read-back).
        case corrupt
        /// Both mirrors of a file are damaged (or one is damaged and the other missing).
        case lost
        /// The file exists on neither mirror.
        case notFound
        /// A file is not a Lifeline storage file, or has a format this build does not read.
        case badFormat
        /// The caller asked for something unusable: the same folder as both roots, a store name
        /// that is absolute or contains `..`.
        case invalidArgument
        /// A newer incarnation of the writing process owns the file: this one was replaced
        /// (fencing; see `MessageLog`).
        case fenced
    }

    /// What kind of failure this is.
    package let code: Code
    /// The file or folder concerned (absolute, or store-relative for mirrored names).
    package let path: String
    /// What went wrong, in words (without the advice, which `description` adds).
    package let message: String
    /// The mirror a write failed on, when the failure is that mirror's (set by the store's
    /// writes); nil otherwise.
    package var mirror: Mirror?

    /// Whether this is a mirror's environment failing (a full, read-only, missing or failing
    /// disk) rather than bad input: a failure the store can go on without, on the other mirror.
    package var isMirrorFailure: Bool {
        guard mirror != nil else { return false }
        switch code {
        case .ioFailure, .noSpace, .permissionDenied, .rootMissing, .corrupt: return true
        case .lost, .notFound, .badFormat, .invalidArgument, .fenced: return false
        }
    }

    /// Whether the failure found the file damaged or absent (its bytes fail their checks, or
    /// no copy exists), rather than failing to read it (an I/O error, a refusal): reading again
    /// finds the same.
    package var isDamage: Bool {
        switch code {
        case .corrupt, .lost, .notFound, .badFormat: return true
        case .ioFailure, .noSpace, .permissionDenied, .rootMissing, .invalidArgument, .fenced: return false
        }
    }

    /// Creates an error with the given code, path and message.
    package init(_ code: Code, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    /// Maps an `errno` value from `operation` on `path` to an error.
    ///
    /// ENOSPC/EFBIG → `.noSpace`, EACCES/EPERM/EROFS → `.permissionDenied`, ENOENT on a
    /// storage root (`isRoot`) → `.rootMissing`, ENOTDIR/EEXIST/ENAMETOOLONG/ELOOP (a path that
    /// cannot be a folder) → `.invalidArgument`, anything else → `.ioFailure`. The message
    /// includes `strerror(errnoValue)`.
    package init(errno errnoValue: Int32, operation: String, path: String, isRoot: Bool = false) {
        let reason = String(cString: strerror(errnoValue))
        let code: Code
        switch errnoValue {
        case ENOSPC, EFBIG: code = .noSpace
        case EACCES, EPERM, EROFS: code = .permissionDenied
        case ENOENT where isRoot: code = .rootMissing
        case ENOTDIR, EEXIST, ENAMETOOLONG, ELOOP: code = .invalidArgument  // the path, not the disk
        default: code = .ioFailure
        }
        self.init(code, path: path, message: "\(operation) failed: \(reason) (errno \(errnoValue))")
    }

    /// This error, naming `mirror` as the one it happened on.
    package func on(_ mirror: Mirror) -> StorageError {
        var tagged = self
        tagged.mirror = mirror
        return tagged
    }

    /// One line: the code, the file, what happened and what to do.

    package var description: String {
        "storage \(Self.label(code)): \(path): \(message); \(Self.advice(code))"
    }

    private static func label(_ code: Code) -> String {
        switch code {
        case .ioFailure: "I/O failure"
        case .noSpace: "no space"
        case .permissionDenied: "permission denied"
        case .rootMissing: "storage root missing"
        case .corrupt: "corrupt file"
        case .lost: "file lost"
        case .notFound: "file not found"
        case .badFormat: "bad format"
        case .invalidArgument: "invalid argument"
        case .fenced: "fenced off"
        }
    }

    private static func advice(_ code: Code) -> String {
        switch code {
        case .ioFailure:
            "check the disk and the system log (dmesg), then retry"
        case .noSpace:
            "free space on that disk, raise the file size limit, or choose another storage root"
        case .permissionDenied:
            "make the folder writable by this user (or remount read-write), or choose another storage root"
        case .rootMissing:
            "create the folder or correct the storage root path"
        case .corrupt:
            "the copy is damaged; run `lifeline storage repair` to restore it from the other mirror"
        case .lost:
            "both mirrors are damaged; the runtime falls back to an older recovery line (or the start)"
        case .notFound:
            "the file is on neither mirror; check that the run directory is the right one"
        case .badFormat:
            "this is not a Lifeline storage file or was written by another version; check the run directory and the Lifeline version"
        case .invalidArgument:
            "correct the storage configuration or the name passed to the store"
        case .fenced:
            "this process was replaced by a newer one; it must stop"
        }
    }
}
