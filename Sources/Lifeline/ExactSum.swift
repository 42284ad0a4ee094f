/// A sum of `Double`s that is exact until it is read: every finite double is a whole multiple of
/// 2⁻¹⁰⁷⁴, so the sum is kept as one integer of that unit, wide enough for every double and 2⁶⁴
/// of them (a Kulisch accumulator), and rounded to the nearest double (ties to even) once, by
/// `value`. Adding and merging are integer additions, so the result does not depend on the order
/// of the terms nor on how they were split between ranks: the same bits on any rank count.
/// `Communicator.allreduce(exactSum:)` sums one over every rank.
///
/// Infinities and NaN are carried beside the integer: any NaN, or both infinities, make the sum
/// NaN; one infinity makes it that infinity.
public struct ExactSum: Sendable, Equatable {
    /// The integer, two's complement, least significant limb first; bit 0 weighs 2⁻¹⁰⁷⁴.
    private var limbs: [UInt64]
    private var positiveInfinity = false
    private var negativeInfinity = false
    private var notANumber = false

    /// 2098 bits hold every finite double (2⁻¹⁰⁷⁴ … 2¹⁰²⁴), 64 more hold 2⁶⁴ of them, one the sign.
    static let limbCount = 35

    /// An empty sum (0).
    public init() {
        limbs = Array(repeating: 0, count: Self.limbCount)
    }

    /// The sum of `values`.
    public init(_ values: some Sequence<Double>) {
        self.init()
        for value in values { add(value) }
    }

    /// Adds `value` exactly.
    public mutating func add(_ value: Double) {
        guard value.isFinite else {
            if value.isNaN { notANumber = true } else if value > 0 { positiveInfinity = true } else { negativeInfinity = true }
            return
        }
        guard value != 0 else { return }
        // value = significand × 2^(exponent) with a whole significand below 2⁵³, and the
        // exponent at least -1074: its bits start at position exponent + 1074.
        let significand = value.significandBitPattern | (value.isNormal ? 1 << 52 : 0)
        let position = Int(value.isNormal ? value.exponentBitPattern : 1) - 1075 + 1074
        let low = significand << UInt64(position % 64)
        let high = position % 64 == 0 ? 0 : significand >> UInt64(64 - position % 64)
        apply(low: low, high: high, at: position / 64, subtracting: value.sign == .minus)
    }

    /// Adds another sum exactly.
    public mutating func add(_ other: ExactSum) {
        var carry: UInt64 = 0
        for index in limbs.indices {
            let (partial, overflow1) = limbs[index].addingReportingOverflow(other.limbs[index])
            let (sum, overflow2) = partial.addingReportingOverflow(carry)
            limbs[index] = sum
            carry = (overflow1 ? 1 : 0) + (overflow2 ? 1 : 0)
        }
        positiveInfinity = positiveInfinity || other.positiveInfinity
        negativeInfinity = negativeInfinity || other.negativeInfinity
        notANumber = notANumber || other.notANumber
    }

    /// Adds (or subtracts) the 128-bit magnitude `high:low` at limb `index`, carrying (or
    /// borrowing) as far as it goes.
    private mutating func apply(low: UInt64, high: UInt64, at index: Int, subtracting: Bool) {
        let step: (UInt64, UInt64) -> (partialValue: UInt64, overflow: Bool) = subtracting
            ? { $0.subtractingReportingOverflow($1) } : { $0.addingReportingOverflow($1) }
        var carry: UInt64 = 0
        var operand = low
        var next = high
        var position = index
        while position < limbs.count, position == index || operand != 0 || carry != 0 {
            let (partial, overflow1) = step(limbs[position], operand)
            let (result, overflow2) = step(partial, carry)
            limbs[position] = result
            carry = (overflow1 ? 1 : 0) + (overflow2 ? 1 : 0)
            operand = next
            next = 0
            position += 1
        }
    }

    /// The sum, rounded once to the nearest double (ties to even).
    public var value: Double {
        if notANumber || (positiveInfinity && negativeInfinity) { return .nan }
        if positiveInfinity { return .infinity }
        if negativeInfinity { return -.infinity }
        var magnitude = limbs
        let negative = magnitude[magnitude.count - 1] >> 63 == 1
        if negative {  // two's complement: invert and add one
            var carry: UInt64 = 1
            for index in magnitude.indices {
                let (sum, overflow) = (~magnitude[index]).addingReportingOverflow(carry)
                magnitude[index] = sum
                carry = overflow ? 1 : 0
            }
        }
        guard let top = magnitude.lastIndex(where: { $0 != 0 }) else { return 0 }
        let highest = top * 64 + (63 - magnitude[top].leadingZeroBitCount)  // the highest set bit
        func bit(_ position: Int) -> UInt64 { position < 0 ? 0 : magnitude[position / 64] >> UInt64(position % 64) & 1 }
        var result: Double
        if highest < 53 {
            // Below 2⁻¹⁰²¹: a subnormal or the smallest normals, exact.
            result = Double(sign: .plus, exponent: -1074, significand: Double(magnitude[0]))
        } else {
            // The 53 bits from the highest, then round to nearest, ties to even.
            var significand: UInt64 = 0
            for position in stride(from: highest, to: highest - 53, by: -1) { significand = significand << 1 | bit(position) }
            let guardBit = bit(highest - 53)
            var sticky = false
            let below = highest - 54
            if below >= 0 {
                for index in 0...(below / 64) {
                    let word = index == below / 64 ? magnitude[index] & (below % 64 == 63 ? .max : (1 << UInt64(below % 64 + 1)) - 1)
                        : magnitude[index]
                    if word != 0 { sticky = true; break }
                }
            }
            var exponent = highest - 52 - 1074
            if guardBit == 1, sticky || significand & 1 == 1 {
                significand += 1
                if significand == 1 << 53 {
                    significand >>= 1
                    exponent += 1
                }
            }
            result = Double(sign: .plus, exponent: exponent, significand: Double(significand))
        }
        return negative ? -result : result
    }

    /// The sum as words, to send (`limbCount` limbs, then the flags).
    var words: [UInt64] {
        limbs + [(positiveInfinity ? 1 : 0) | (negativeInfinity ? 2 : 0) | (notANumber ? 4 : 0)]
    }

    /// A sum from `words`; nil when they are not one.
    init?(words: [UInt64]) {
        guard words.count == Self.limbCount + 1, words[Self.limbCount] < 8 else { return nil }
        limbs = Array(words[..<Self.limbCount])
        positiveInfinity = words[Self.limbCount] & 1 != 0
        negativeInfinity = words[Self.limbCount] & 2 != 0
        notANumber = words[Self.limbCount] & 4 != 0
    }
}
