extension FixedWidthInteger {
    /// `self + other`, or the bound of the type the sum would pass: a total of figures that came
    /// from elsewhere (events read back from a file, the counts a rank reports) reads "at least
    /// this much" instead of trapping on an overflow.
    package func addingSaturated(_ other: Self) -> Self {
        let (sum, overflow) = addingReportingOverflow(other)
        guard overflow else { return sum }
        return other > 0 ? .max : .min
    }
}

extension Sequence {
    /// The sum of `value` over the elements, saturated at the bounds of `Total` (`addingSaturated`).
    package func saturatedSum<Total: FixedWidthInteger>(_ value: (Element) throws -> Total) rethrows -> Total {
        try reduce(0) { $0.addingSaturated(try value($1)) }
    }
}
