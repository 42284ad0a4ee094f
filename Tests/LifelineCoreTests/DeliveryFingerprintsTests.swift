import Testing
@testable import LifelineCore

/// The delivered-payload hashes: a duplicate with other bytes differs, the same bytes or an
/// unknown message do not, a commit forgets what came before its capture, and the maximum is
/// a limit on memory, never a source of false reports.
struct DeliveryFingerprintsTests {
    private let source = RankID(1)

    @Test func aDuplicateDiffersOnlyWhenItsBytesDo() {
        var fingerprints = DeliveryFingerprints(rankCount: 3)
        fingerprints.record(source: source, sequence: SequenceNumber(rawValue: 4), hash: 99, epoch: 0)
        #expect(!fingerprints.differs(source: source, sequence: SequenceNumber(rawValue: 4), hash: 99))
        #expect(fingerprints.differs(source: source, sequence: SequenceNumber(rawValue: 4), hash: 98))
        #expect(!fingerprints.differs(source: RankID(2), sequence: SequenceNumber(rawValue: 4), hash: 98), "another channel")
        #expect(!fingerprints.differs(source: source, sequence: SequenceNumber(rawValue: 5), hash: 98), "never delivered")
    }

    @Test func aCommitForgetsTheDeliveriesBeforeItsCapture() {
        var fingerprints = DeliveryFingerprints(rankCount: 2)
        for sequence in 0..<10 as Range<UInt64> {
            fingerprints.record(source: source, sequence: SequenceNumber(rawValue: sequence), hash: sequence, epoch: sequence / 4)
        }
        fingerprints.trim(before: 2)
        #expect(fingerprints.count == 2)
        #expect(!fingerprints.differs(source: source, sequence: SequenceNumber(rawValue: 3), hash: 0), "kept past its commit")
        #expect(fingerprints.differs(source: source, sequence: SequenceNumber(rawValue: 8), hash: 0))
    }

    @Test func pastTheMaximumDeliveriesGoUncheckedUntilACommit() {
        var fingerprints = DeliveryFingerprints(rankCount: 2)
        for sequence in 0..<UInt64(DeliveryFingerprints.entriesMax) {
            fingerprints.record(source: source, sequence: SequenceNumber(rawValue: sequence), hash: 1, epoch: 0)
        }
        let beyond = SequenceNumber(rawValue: UInt64(DeliveryFingerprints.entriesMax))
        fingerprints.record(source: source, sequence: beyond, hash: 1, epoch: 1)
        #expect(fingerprints.unchecked == 1)
        #expect(!fingerprints.differs(source: source, sequence: beyond, hash: 2), "an unrecorded delivery was reported")
        fingerprints.trim(before: 1)
        fingerprints.record(source: source, sequence: beyond, hash: 1, epoch: 1)
        #expect(fingerprints.differs(source: source, sequence: beyond, hash: 2))
    }
}
