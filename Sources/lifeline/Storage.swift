#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Foundation
import Lifeline
import LifelineStorage

extension LifelineCommand {
    /// `lifeline storage verify|repair RUN_DIR` or `… DIR_A,DIR_B`
    struct Storage: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check or repair the two mirrors of a job's stable storage (exit codes as fsck).",
            subcommands: [Verify.self, Repair.self])
    }
}

extension LifelineCommand.Storage {
    /// Checks every file on both mirrors: 0 healthy, 4 problems found.
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every file on both mirrors; print what is healthy, repairable and lost. Exit 0 healthy, 4 problems.")
        @Argument(help: ArgumentHelp("A run directory, or the two storage roots.", valueName: "RUN_DIR|DIR_A,DIR_B"))
        var roots: String

        func run() throws {
            let report = try check(roots, repair: false)
            printReport(report)
            throw ExitCode(report.isClean ? 0 : 4)
        }
    }

    /// Repairs what can be repaired: 0 nothing to do, 1 all corrected, 4 something left.
    struct Repair: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Repair damaged or missing copies from the good mirror. Exit 0 nothing to do, 1 all corrected, 4 something left.")
        @Argument(help: ArgumentHelp("A run directory, or the two storage roots.", valueName: "RUN_DIR|DIR_A,DIR_B"))
        var roots: String

        func run() throws {
            let report = try check(roots, repair: true)
            printReport(report)
            if !report.isClean { throw ExitCode(4) }
            throw ExitCode(report.repairedCount + report.temporaryCount > 0 ? 1 : 0)
        }
    }
}

/// Checks (and with `repair`, repairs) every file and every reference of the manifest.
private func check(_ roots: String, repair: Bool) throws -> VerifyReport {
    let store = try openStore(roots)
    if repair { try lockAgainstJobs(store) }
    // With partner hosts this machine's two folders hold the manifest, side by side by design.
    if store.sameDevice, store.nodeLocal?.partnerHeld != true {
        FileHandle.standardError.write(Data(
            "warning: both roots are on the same device: mirroring protects against damaged files, not a lost disk\n".utf8))
    }
    let manifests = ManifestStore(store: store)
    if !manifests.holdsRanksFiles {
        print("the ranks' snapshots are on their hosts, each with a copy on its partner host ({partner}): checked here is the manifest")
    }
    return manifests.verify(repair: repair)
}

/// A repair rewrites files and removes temporary ones: never under a job that runs on these
/// roots (its writes in progress, its open log segments). Takes each root's job lock, as a job
/// does, and holds it until the process exits; refuses in one line when a job holds one.
private func lockAgainstJobs(_ store: MirroredStore) throws {
    for mirror in Mirror.allCases {
        let path = store.path(MirroredStore.jobLockFileName, on: mirror)
        guard FileManager.default.fileExists(atPath: store.root(mirror)) else { continue }  // another host's folder
        let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { continue }  // a read-only root: nothing there can be repaired either
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw LifelineError(.configuration,
                "\(store.root(mirror)) is in use by a running job: repair it once the job has ended or stopped (lifeline storage verify reads it now)")
        }
    }
}

private func openStore(_ roots: String) throws -> MirroredStore {
    var parts = roots.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    if parts.count == 1, !roots.isEmpty {
        // A run directory: its job.json names the roots (relative ones to the directory).
        guard FileManager.default.fileExists(atPath: roots + "/job.json") else {
            throw ValidationError("\(roots) is not a run directory (it has no job.json): give RUN_DIR or the two storage roots as DIR_A,DIR_B")
        }
        parts = try JobConfiguration.load(runDirectory: absolute(roots)).storageRoots
    }
    guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
        throw ValidationError("give a run directory, or the two storage roots as DIR_A,DIR_B")
    }
    // A node-local root ({host}, {partner}) need not exist on this machine: its ranks' files
    // are on their hosts.
    for root in parts where !root.contains(StorageRoots.placeholder) && !root.contains(StorageRoots.partnerPlaceholder)
        && !FileManager.default.fileExists(atPath: root) {
        throw LifelineError(.storage, "\(root) does not exist: give the storage roots of a run (RUN_DIR/storage-a,RUN_DIR/storage-b by default)")
    }
    do {
        return try StorageRoots.open(parts.map(absolute), fills: false, creating: false)
    } catch {
        throw LifelineError(.storage, "\(error)")
    }
}

private func printReport(_ report: VerifyReport) {
    for problem in report.problems { print(problem) }
    print("\(report.healthyCount) healthy, \(report.repairedCount) repaired, \(report.damagedCount) repairable, "
          + "\(report.unrecoverableCount) lost, \(report.temporaryCount) leftover temporary files, "
          + "\(report.unreferencedCount) unreferenced chunks left alone")
}
