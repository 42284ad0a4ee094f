#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LifelineStorage

/// The two storage roots of `--storage A,B`, where one may hold `{host}`: a folder on each host
/// of its own (a node's local disk, `/local/{host}/lifeline`), while the other is a folder
/// every host shares (a cluster's parallel file system).
///
/// Each process expands `{host}` with the name of the host it runs on: a rank with its host's
/// name as the job gives it (`--hosts`, the hostfile, the Slurm node), the supervisor and the
/// tools with this machine's host name. A rank writes its snapshots and logs to its host's
/// folder and to the shared root; so losing a host and its disk loses only copies the shared
/// root also holds, and a rank restarted elsewhere reads the shared copy (and fills its new
/// host's folder as it goes). The manifest lives on the supervisor's pair: the folder of its own
/// host and the shared root. Both roots holding `{host}` is refused: a host's loss would take
/// both copies.
///
/// The second root may instead hold `{partner}` (with `{host}` in the first): the second copy
/// of what a host's ranks write goes over the network to its partner host, the next host of
/// the job, which keeps it in that folder with `{partner}` standing for its own name (SCR's
/// PARTNER scheme; `PartnerFolder`). No folder is shared then; the supervisor keeps the
/// manifest in its machine's two folders and lends it to the ranks to read.
package enum StorageRoots {
    /// The placeholder for the host's name.
    package static let placeholder = "{host}"
    /// The placeholder, in the second root, for the partner host that keeps the second copy.
    package static let partnerPlaceholder = "{partner}"

    /// Whether the second copies go to partner hosts (`{partner}` in root B).
    package static func partnered(_ roots: [String]) -> Bool {
        roots.count == 2 && roots[1].contains(partnerPlaceholder)
    }

    /// Which of the roots `[A, B]` is node-local (holds `{host}`), if one is.
    package static func nodeLocalMirror(_ roots: [String]) -> Mirror? {
        if roots.count == 2, roots[0].contains(placeholder) { return .a }
        if roots.count == 2, roots[1].contains(placeholder) { return .b }
        return nil
    }

    /// `root` with `{host}` (and `{partner}`: the folder that host keeps for its partner)
    /// replaced by `host`.
    package static func expand(_ root: String, host: String) -> String {
        root.replacingOccurrences(of: placeholder, with: host).replacingOccurrences(of: partnerPlaceholder, with: host)
    }

    /// Opens the store of roots `[A, B]` as a process on `host` sees it (`{host}` expanded), the
    /// node-local mirror marked; `fills`: this process keeps its host's copies (a rank).
    /// `creating`: the roots are made if missing (a job's processes); a tool (false) reads a
    /// node-local folder that is not there as empty and makes none.
    package static func open(
        _ roots: [String], host: String = localHost, fills: Bool, creating: Bool = true
    ) throws(StorageError) -> MirroredStore {
        precondition(roots.count == 2, "two storage roots")
        let local = nodeLocalMirror(roots)
        let store = try MirroredStore(rootA: expand(roots[0], host: host), rootB: expand(roots[1], host: host),
                                      missingAllowed: creating ? nil : local)
        guard let local else { return store }
        return store.withNodeLocal(local, fills: fills, partnerHeld: partnered(roots))
    }

    /// Why `name` cannot stand for a host in a storage path (nil: it can): it is empty, `.` or
    /// `..`, starts with a dot, or holds a `/`.
    package static func problem(hostName name: String) -> String? {
        if name.isEmpty { return "an empty host name" }
        if name.hasPrefix(".") { return "host name '\(name)' starts with a dot" }
        if name.contains("/") { return "host name '\(name)' holds a /" }
        return nil
    }

    /// This machine's host name (`gethostname`), or `localhost` if it has none.
    package static var localHost: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return problem(hostName: name) == nil ? name : "localhost"
    }
}
