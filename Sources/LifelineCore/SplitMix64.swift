/// A small seeded random generator (SplitMix64), so every schedule drawn from a seed repeats.
package struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// A generator whose whole sequence is fixed by `seed`.
    package init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// An exponentially distributed draw with the given mean (inverse transform sampling).
    package mutating func exponential(mean: Double) -> Double {
        let uniform = Double.random(in: Double.leastNonzeroMagnitude..<1, using: &self)
        return -naturalLogarithm(uniform) * mean
    }
}

/// ln(x) for x > 0 with the standard library alone: x = m·2^e with m in [1, 2), and
/// ln(m) = 2·atanh((m − 1)/(m + 1)) by its series, which converges fast for that range.
package func naturalLogarithm(_ x: Double) -> Double {
    precondition(x > 0 && x.isFinite)
    let exponent = Double(x.exponent)
    let mantissa = x.significand
    let z = (mantissa - 1) / (mantissa + 1)
    let zSquared = z * z
    var term = z
    var sum = 0.0
    var denominator = 1.0
    while abs(term / denominator) > 1e-17 {
        sum += term / denominator
        term *= zSquared
        denominator += 2
    }
    return exponent * 0.693_147_180_559_945_309_417_232 + 2 * sum
}
