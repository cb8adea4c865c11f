import Foundation

/// Budgets spaced evenly in log α between two ends: `compare --sweep 1/64:1/4`.
///
/// Text: `FROM:TO` or `FROM:TO:COUNT`, the ends as α (`1/64`, `0.015625`) or bits per parameter
/// (`0.25bpp` = α 1/64), FROM < TO, COUNT in 3…65 (default ``defaultCount``: 9 points from 1/64 to
/// 1/4 are the powers of √2). Point i is α_i = FROM · (TO / FROM)^(i / (COUNT − 1)), written
/// `1/n` with n to four significant digits (`1/45.25`) and parsed back from that text, so that a
/// comparison's budget strings are the budgets it ran.
public struct BudgetSweep: Sendable, Equatable {
    public static let defaultCount = 9
    public static let counts = 3...65

    public var from: Double
    public var to: Double
    public var count: Int

    /// Parses `text`; `field` names the option in errors.
    public init(parsing text: String, field: String = "--sweep") throws(BudgetError) {
        func fail(_ reason: String) -> BudgetError {
            .malformed(field: field, value: text, reason: "\(reason); expected FROM:TO[:COUNT] with two ratios α or bpp values, FROM < TO, e.g. '1/64:1/4' or '1/64:1/4:9'")
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3 else { throw fail("needs two or three parts separated by ':'") }
        var ends: [Double] = []
        for part in parts.prefix(2) {
            let budget: Budget
            do { budget = try Budget(parsing: part, field: field) } catch { throw fail("'\(part)' is not a budget") }
            switch budget {
            case let .ratio(alpha): ends.append(alpha)
            case let .bitsPerParameter(bpp): ends.append(bpp / 16)
            case .bytes: throw fail("'\(part)' is a size; a sweep runs over α")
            }
        }
        guard ends[0] < ends[1] else { throw fail("FROM must be below TO") }
        var count = Self.defaultCount
        if parts.count == 3 {
            guard let n = Int(parts[2].trimmingCharacters(in: .whitespaces)), Self.counts.contains(n) else {
                throw fail("COUNT must be a whole number in \(Self.counts.lowerBound)…\(Self.counts.upperBound), got '\(parts[2])'")
            }
            count = n
        }
        from = ends[0]
        to = ends[1]
        self.count = count
    }

    /// The budgets, ascending.
    public var budgets: [GivenBudget] {
        (0..<count).map { i in
            let alpha = from * pow(to / from, Double(i) / Double(count - 1))
            let inverse = 1 / alpha
            let text = inverse >= 1000 ? "1/\(Int(inverse.rounded()))" : "1/" + String(format: "%.4g", inverse)
            // "1/n" with n ≥ 1 and finite parses; the fallback keeps the exact value.
            return (try? GivenBudget(parsing: text)) ?? .ratio(alpha)
        }
    }
}
