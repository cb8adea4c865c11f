import Foundation

/// Tick positions and labels shared by the plots' axes and the colour bars' scales.
enum Axis {
    /// Tick positions in transformed units (log₁₀ of the value on a log axis): whole decades on a
    /// log axis (every n-th when there are more than eight), 1-2-5 steps on a linear one.
    static func ticks(_ a: Double, _ b: Double, log: Bool) -> [Double] {
        if log {
            let step = max(1, ((b - a) / 8).rounded(.up))
            return stride(from: a.rounded(.up), through: b + 1e-9, by: step).map { $0 }
        }
        let raw = (b - a) / 6, magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        return stride(from: (a / step).rounded(.up) * step, through: b + 1e-9 * step, by: step).map { $0 }
    }

    /// `1e-3` for a decade on a log axis, `%g` on a linear one.
    static func label(_ value: Double, log: Bool) -> String {
        if log { return value == 0 ? "1" : "1e\(Int(value))" }
        return abs(value) < 1e-12 ? "0" : String(format: "%g", value)
    }

    /// Ticks of a log scale from `low` to `high` (values, not logarithms): whole decades when
    /// at least four fall in the range, else 1-2-5 (or, inside a decade, 1…9) times powers of ten,
    /// no two closer than a seventh of the range on the log scale (powers of ten kept first, then
    /// 2 and 5 times them, then the others), so that their labels never run into each other.
    static func logTicks(_ low: Double, _ high: Double) -> [(value: Double, label: String)] {
        let decades = ticks(log10(low), log10(high), log: true)
        if decades.count >= 4 { return decades.map { (pow(10, $0), label($0, log: true)) } }
        let powers: [Double] = (Int(floor(log10(low)))...Int(ceil(log10(high)))).map { pow(10, Double($0)) }
        let range = low * (1 - 1e-9)...high * (1 + 1e-9)
        var found: [Double] = []
        for mantissas: [Double] in [[1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]] {
            found = powers.flatMap { p in mantissas.map { m in m * p } }.filter(range.contains)
            if found.count >= 3 { break }
        }
        let gap = (log10(high) - log10(low)) / 7 - 1e-9
        var kept: [Double] = []
        for priority in [[1.0], [2, 5], [3, 4, 6, 7, 8, 9]] {
            for value in found where priority.contains((value / pow(10, floor(log10(value) + 1e-9))).rounded()) {
                if kept.allSatisfy({ abs(log10($0) - log10(value)) >= gap }) { kept.append(value) }
            }
        }
        return kept.sorted().map { value in
            let k = Int(floor(log10(value) + 1e-9))
            let text = (-3...3).contains(k) ? String(format: "%g", value) : "\(Int((value / pow(10, Double(k))).rounded()))e\(k)"
            return (value, text)
        }
    }

    /// A log axis's range around data from 10^`low` to 10^`high` (logarithms in, logarithms out):
    /// out to the nearest 1, 2 or 5 times a power of ten on each side, so that the data fill the
    /// plot and ``logTicks(_:_:)`` has ticks at both ends.
    static func logBounds(_ low: Double, _ high: Double) -> (Double, Double) {
        let mantissas = [1.0, 2, 5, 10]
        let a = floor(low), b = floor(high)
        let lower = mantissas.last { log10($0) + a <= low + 1e-12 } ?? 1
        let upper = mantissas.first { log10($0) + b >= high - 1e-12 } ?? 10
        return (a + log10(lower), b + log10(upper))
    }
}
