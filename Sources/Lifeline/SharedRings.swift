#if canImport(Glibc)
import Glibc
#endif
import CLifelineSupport

/// The two byte rings of a connection between ranks on one host, in one shared mapping: one
/// ring for each direction (`lifeline_ring.h`). The connecting rank makes the mapping and passes
/// its descriptor with its handshake; the accepting rank maps it with the rings swapped. Data
/// then moves by plain loads and stores, without a system call; the socket beside the rings
/// carries the handshake, wake-ups of a side that sleeps in poll(2), and the end of the stream
/// when the peer dies (the kernel closes its end).
///
/// The file is sealed against resizing before it is passed, and the acceptor checks the seals
/// and the size before it maps it, so neither side can be made to touch memory past the end.
final class SharedRings {
    /// Each ring's data bytes in a small job: as much as a connection's read buffer holds.
    static let capacityDefault = 256 << 10
    /// The most a rank's outbound rings take together: past 17 ranks each ring is smaller, so
    /// that a host's rings stay under this much per rank however many of its pairs talk.
    static let bytesPerRankMax = 4 << 20

    /// Each ring's data bytes for a job of `rankCount` ranks: `capacityDefault`, or less with
    /// more ranks (a power of two, at least the smallest ring).
    static func capacity(forRanks rankCount: Int) -> Int {
        let share = bytesPerRankMax / max(1, rankCount - 1)
        var capacity = capacityDefault
        while capacity > share, capacity > capacityRange.lowerBound { capacity >>= 1 }
        return capacity
    }
    /// The smallest and largest ring a peer may pass.
    static let capacityRange = (4 << 10)...(64 << 20)

    /// Whether rings of `capacity` data bytes may be made or mapped: a power of two in
    /// `capacityRange`.
    static func isAcceptable(capacity: Int) -> Bool {
        capacityRange.contains(capacity) && capacity & (capacity - 1) == 0
    }

    /// The mapping.
    private let base: UnsafeMutableRawPointer
    private let mappedBytes: Int
    /// Each ring's data bytes (a power of two).
    let capacity: UInt64
    /// The ring this side writes.
    let outbound: UnsafeMutableRawPointer
    /// The ring this side reads.
    let inbound: UnsafeMutableRawPointer

    private init(base: UnsafeMutableRawPointer, mappedBytes: Int, capacity: Int, connector: Bool) {
        self.base = base
        self.mappedBytes = mappedBytes
        self.capacity = UInt64(capacity)
        let second = base + Int(LIFELINE_RING_HEADER_BYTES) + capacity
        outbound = connector ? base : second
        inbound = connector ? second : base
    }

    deinit { munmap(base, mappedBytes) }

    /// The mapping's size for rings of `capacity` bytes.
    private static func fileBytes(capacity: Int) -> Int { 2 * (Int(LIFELINE_RING_HEADER_BYTES) + capacity) }

    /// A new pair of rings for the connecting side, and the descriptor to pass to the peer (the
    /// caller closes it once sent). Nil when the system cannot make one: the connection then
    /// stays on its socket.
    static func create(capacity: Int = capacityDefault) -> (rings: SharedRings, descriptor: Int32)? {
        precondition(isAcceptable(capacity: capacity), "a ring is a power of two in capacityRange")
        let bytes = fileBytes(capacity: capacity)
        let fd = lifeline_shared_memory_create(bytes)
        guard fd >= 0 else { return nil }
        guard let base = map(fd, bytes: bytes) else {
            close(fd)
            return nil
        }
        return (SharedRings(base: base, mappedBytes: bytes, capacity: capacity, connector: true), fd)
    }

    /// Maps the rings a connecting peer passed (this side reads what it writes). Nil when the
    /// descriptor is not a sealed pair of rings of an accepted size. Does not close `fd`.
    static func map(passed fd: Int32) -> SharedRings? {
        var status = stat()
        guard fstat(fd, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return nil }
        guard lifeline_shared_memory_is_sealed(fd) != 0 else { return nil }
        let bytes = Int(status.st_size)
        let capacity = bytes / 2 - Int(LIFELINE_RING_HEADER_BYTES)
        guard bytes % 2 == 0, isAcceptable(capacity: capacity), let base = map(fd, bytes: bytes) else { return nil }
        return SharedRings(base: base, mappedBytes: bytes, capacity: capacity, connector: false)
    }

    private static func map(_ fd: Int32, bytes: Int) -> UnsafeMutableRawPointer? {
        let base = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let base, base != MAP_FAILED else { return nil }
        return base
    }
}
