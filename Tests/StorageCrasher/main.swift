// The child process of the storage crash tests (Tests/LifelineStorageTests/CrashTests.swift).
//
//   lifeline-storage-crasher loop DIR_A DIR_B
//       Opens the store (creating the manifest if there is none), prints `ready EPOCH`, then
//       writes epochs forever: both ranks' snapshots (chunks + index), the manifest commit
//       (printing `committed EPOCH` once it returned), garbage collection, and a batch of
//       four batches of records appended to the message log `logs/crash` (printing
//       `logged NEXT_INDEX` after each, once durable), which every third epoch cuts back by 10
//       records (`cutting` before) and every fourth trims. The test SIGKILLs it at a random moment.
//   lifeline-storage-crasher disk-full DIR_A DIR_B LIMIT_BYTES
//       Sets RLIMIT_FSIZE to LIMIT_BYTES with SIGXFSZ ignored and tries to write and commit the
//       next epoch with incompressible 64 KiB chunks. Prints `error CODE: DESCRIPTION` and
//       exits 3 if the write failed with `.noSpace`, 2 for any other error, 0 if it succeeded.
#if canImport(Glibc)
import Glibc
#endif
import LifelineStorage

/// The crash tests' snapshot contents; the test holds the same function.
enum CrashContent {
    static let rankCount = 2
    static let chunkBytes = 4096
    static let chunkCount = 7

    /// Chunk k of rank r changes every 2^k epochs; the last chunk is the same for every rank
    /// and epoch (shared). The first 16 bytes are the epoch and the rank.
    static func bytes(epoch: UInt64, rank: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: epoch.littleEndian) { bytes += $0 }
        withUnsafeBytes(of: UInt64(rank).littleEndian) { bytes += $0 }
        for chunk in 0..<chunkCount {
            let shared = chunk == chunkCount - 1
            var state = shared ? 0xC0FFEE : (UInt64(rank) << 40) ^ (UInt64(chunk) << 32) ^ (epoch >> UInt64(chunk))
            for _ in 0..<(chunkBytes / 8) {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                withUnsafeBytes(of: (z ^ (z >> 31)).littleEndian) { bytes += $0 }
            }
        }
        return bytes
    }

    /// The snapshot's segments: the 16-byte header apart from the state.
    static func segments(epoch: UInt64, rank: Int) -> [ChunkedSnapshots.Segment] {
        let all = bytes(epoch: epoch, rank: rank)
        return [.init(Array(all[0..<16])), .init(Array(all[16...]))]
    }
}

/// The crash tests' message log: record i holds `payload(i)`; the test holds the same function.
enum CrashLog {
    static let name = "crash"
    static let batchCount = 5
    /// Small segments, so appends roll over and trims delete segments often.
    static let segmentBytes = 2048

    /// 1 to 300 bytes that depend on the index.
    static func payload(_ index: UInt64) -> [UInt8] {
        (0...(index % 300)).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0 &* 7) }
    }
}

/// Appends four batches to the log, saying after each how far it is durable; every third
/// epoch cuts the last 10 records (saying `cutting NEXT_INDEX` before and `logged NEXT_INDEX`
/// after), and every fourth trims all but the last 20 records.
func logEpoch(_ epoch: UInt64, log: MessageLog) throws(StorageError) {
    for _ in 0..<4 {
        try log.append((0..<UInt64(CrashLog.batchCount)).map { CrashLog.payload(log.nextIndex + $0) })
        say("logged \(log.nextIndex)")
    }
    if epoch % 3 == 0, log.nextIndex >= log.firstIndex + 12 {
        say("cutting \(log.nextIndex - 10)")
        try log.truncate(from: log.nextIndex - 10)
        say("logged \(log.nextIndex)")
    }
    if epoch % 4 == 0, log.nextIndex > 20 {
        try log.trim(before: log.nextIndex - 20)
    }
}

/// Writes one line to stdout unbuffered (the test reads it through a pipe until the kill).
func say(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    var written = 0
    while written < bytes.count {
        let count = bytes[written...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return }
        written += count
    }
}

func fail(_ error: StorageError) -> Never {
    say("error \(error.code): \(error)")
    exit(error.code == .noSpace ? 3 : 2)
}

func openManifest(_ manifests: ManifestStore) throws(StorageError) -> Manifest {
    if let manifest = try manifests.load() { return manifest }
    var manifest = Manifest(jobID: "crash-test", rankCount: CrashContent.rankCount)
    try manifests.commit(&manifest)
    return manifest
}

func writeEpoch(_ epoch: UInt64, manifest: inout Manifest, manifests: ManifestStore, random: Bool) throws(StorageError) {
    let snapshots = ChunkedSnapshots(store: manifests.store)
    var members: [Member] = []
    for rank in 0..<CrashContent.rankCount {
        let name = manifests.snapshotName(epoch: epoch, rank: rank)
        let written: ChunkedSnapshots.Written
        if random {
            let noise = (0..<(64 << 10)).map { _ in UInt8.random(in: 0...255) }
            written = try snapshots.write(name, bytes: noise, generation: epoch, chunkBytes: 64 << 10)
        } else {
            written = try snapshots.write(name, segments: CrashContent.segments(epoch: epoch, rank: rank),
                                          generation: epoch, chunkBytes: CrashContent.chunkBytes)
        }
        members.append(Member(rank: rank, snapshot: name, step: Int(epoch), incarnation: 0, outputOffset: 0,
                              snapshotBytes: UInt64(written.storedBytes)))
    }
    manifest.appendCommitted(CommittedLine(epoch: epoch, step: Int(epoch), members: members), keep: 2)
    try manifests.commit(&manifest)
}

let arguments = CommandLine.arguments
guard arguments.count >= 4 else {
    say("usage: lifeline-storage-crasher loop|disk-full DIR_A DIR_B [LIMIT_BYTES]")
    exit(64)
}
do throws(StorageError) {
    let manifests = ManifestStore(store: try MirroredStore(rootA: arguments[2], rootB: arguments[3]))
    var manifest = try openManifest(manifests)
    var epoch = manifest.newestLine?.epoch ?? 0
    switch arguments[1] {
    case "loop":
        let log = try MessageLog(store: manifests.store, name: CrashLog.name, segmentBytesMax: CrashLog.segmentBytes)
        say("ready \(epoch)")
        while true {
            epoch += 1
            try writeEpoch(epoch, manifest: &manifest, manifests: manifests, random: false)
            say("committed \(epoch)")
            try manifests.garbageCollect(keeping: manifest)
            try logEpoch(epoch, log: log)
        }
    case "disk-full":
        guard arguments.count == 5, let limit = UInt64(arguments[4]) else { exit(64) }
        signal(SIGXFSZ, SIG_IGN)
        var bound = rlimit(rlim_cur: rlim_t(limit), rlim_max: rlim_t(limit))
        guard setrlimit(Int32(RLIMIT_FSIZE.rawValue), &bound) == 0 else { exit(65) }
        try writeEpoch(epoch + 1, manifest: &manifest, manifests: manifests, random: true)
        say("committed \(epoch + 1)")
    default:
        exit(64)
    }
} catch {
    fail(error)
}
