import Foundation
import ModelProfiles

/// A malformed budget or bits-menu string: names the option, quotes the value and lists the accepted forms.
public enum BudgetError: Error, Equatable, CustomStringConvertible {
    case malformed(field: String, value: String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(field, value, reason):
            "invalid \(field) '\(value)': \(reason)"
        }
    }
}

/// A storage budget as the user states it.
///
/// Accepted forms (case-insensitive units, no spaces needed):
/// - α, relative to the F16 size of the planned deltas (`16 · h_out · h_in` bits per matrix):
///   `1/16` or `0.0625`. α must lie in (0, 1]: α = 1 is as large as the dense F16 delta, beyond
///   which compression is pointless, so larger values are rejected rather than warned about.
/// - bytes: `123456B`; `KiB`, `MiB`, `GiB` are 1024-based (2¹⁰, 2²⁰, 2³⁰ bytes); `KB`, `MB`, `GB`
///   are 1000-based (10³, 10⁶, 10⁹ bytes). Fractions allowed (`1.2GB`), rounded down to whole bytes.
/// - bits per delta parameter: `1.0bpp`, in (0, 16]. `1bpp` equals α = 1/16.
public enum Budget: Sendable, Equatable, CustomStringConvertible {
    case ratio(Double)
    case bytes(Int)
    case bitsPerParameter(Double)

    /// The accepted forms, for error messages and `--help`.
    public static let acceptedForms =
        "a ratio α in (0, 1] ('1/16', '0.0625'), a size ('850MiB', '1.2GB', '123456B'; KiB/MiB/GiB are 1024-based, KB/MB/GB 1000-based), or bits per parameter in (0, 16] ('1.0bpp')"

    /// Parses `text`; `field` names the option in errors (e.g. `--budget`).
    public init(parsing text: String, field: String = "--budget") throws(BudgetError) {
        let s = text.trimmingCharacters(in: .whitespaces)
        func fail(_ reason: String) -> BudgetError {
            .malformed(field: field, value: text, reason: "\(reason); expected \(Self.acceptedForms)")
        }
        func number(_ t: Substring) -> Double? {
            let t = t.trimmingCharacters(in: .whitespaces)
            guard !t.isEmpty, t.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
                  let v = Double(t), v.isFinite else { return nil }
            return v
        }
        guard !s.isEmpty else { throw fail("empty") }
        let lower = s.lowercased()
        if lower.hasSuffix("bpp") {
            guard let v = number(lower.dropLast(3)) else { throw fail("not a number before 'bpp'") }
            guard v > 0, v <= 16 else { throw fail("bits per parameter must be in (0, 16], got \(v)") }
            self = .bitsPerParameter(v)
            return
        }
        let units: [(String, Double)] = [
            ("kib", 1024), ("mib", 1024 * 1024), ("gib", 1024 * 1024 * 1024),
            ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("b", 1),
        ]
        if let (suffix, scale) = units.first(where: { lower.hasSuffix($0.0) }) {
            guard let v = number(lower.dropLast(suffix.count)) else { throw fail("not a number before '\(suffix)'") }
            let bytes = (v * scale).rounded(.down)
            guard bytes >= 1 else { throw fail("a size must be at least 1 byte") }
            guard bytes < Double(Int.max / 8) else { throw fail("size too large") }
            self = .bytes(Int(bytes))
            return
        }
        let alpha: Double
        if let slash = s.firstIndex(of: "/") {
            guard let n = number(s[..<slash]), let d = number(s[s.index(after: slash)...]) else {
                throw fail("a fraction needs two numbers, like '1/16'")
            }
            guard d > 0 else { throw fail("the denominator must be positive") }
            alpha = n / d
        } else {
            guard let v = number(Substring(s)) else { throw fail("not a ratio, size or bpp value") }
            alpha = v
        }
        guard alpha > 0, alpha <= 1 else { throw fail("α must be in (0, 1], got \(alpha)") }
        self = .ratio(alpha)
    }

    /// The budget in bits for matrices of the given shapes `(rows, columns)`:
    /// ratio → `⌊α · Σ 16·h_out·h_in⌋`; bytes → `8 · bytes`; bpp → `⌊bpp · Σ h_out·h_in⌋`.
    public func bits(forShapes shapes: [(rows: Int, columns: Int)]) -> Int {
        let parameters = shapes.reduce(0) { $0 + $1.rows * $1.columns }
        switch self {
        case let .ratio(alpha): return Int((alpha * Double(16 * parameters)).rounded(.down))
        case let .bytes(bytes): return 8 * bytes
        case let .bitsPerParameter(bpp): return Int((bpp * Double(parameters)).rounded(.down))
        }
    }

    public var description: String {
        switch self {
        case let .ratio(alpha):
            let inverse = 1 / alpha
            return abs(inverse - inverse.rounded()) < 1e-9 ? "1/\(Int(inverse.rounded()))" : "\(alpha)"
        case let .bytes(bytes): return "\(bytes)B"
        case let .bitsPerParameter(bpp): return "\(bpp)bpp"
        }
    }
}

/// A budget as the user wrote it and as parsed: plans record the text (`budget.given`).
public struct GivenBudget: Sendable, Equatable, CustomStringConvertible {
    public let budget: Budget
    /// The text it was parsed from, as given.
    public let text: String

    /// Parses `text` (``Budget/init(parsing:field:)``) and keeps it.
    public init(parsing text: String, field: String = "--budget") throws(BudgetError) {
        budget = try Budget(parsing: text, field: field)
        self.text = text
    }

    /// A budget made in code: its text is its canonical form (``Budget/description``).
    public init(_ budget: Budget) {
        self.budget = budget
        text = budget.description
    }

    public static func ratio(_ alpha: Double) -> GivenBudget { GivenBudget(.ratio(alpha)) }
    public static func bytes(_ bytes: Int) -> GivenBudget { GivenBudget(.bytes(bytes)) }
    public static func bitsPerParameter(_ bpp: Double) -> GivenBudget { GivenBudget(.bitsPerParameter(bpp)) }

    public var description: String { text }
}

/// The bit-widths a search may use: parsed and printed here, for the CLI and the service alike.
public enum BitMenu {
    /// Every width the quantizers offer (16, 8, 4, 3, 2, 1), descending; dropping (0) is always
    /// allowed besides.
    public static let `default` = ProfileLibrary.bitWidths.sorted(by: >)

    /// Parses a menu such as `16,8,4,3,2,0` into distinct positive widths, descending.
    ///
    /// `0` (dropping) is accepted and ignored: dropping is always allowed. Widths must be among
    /// ``ProfileLibrary/bitWidths`` (16, 8, 4, 3, 2, 1); duplicates and empty menus are rejected.
    public static func parse(_ text: String, field: String = "--bits") throws(BudgetError) -> [Int] {
        var widths: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let t = part.trimmingCharacters(in: .whitespaces)
            guard let k = Int(t) else { throw failure(text, field, "'\(t)' is not an integer bit-width") }
            widths.append(k)
        }
        return try check(widths, given: text, field: field)
    }

    /// Checks a menu given as a list of widths (as the service takes it), with the rules of
    /// ``parse(_:field:)``.
    public static func parse(_ widths: [Int], field: String = "bits") throws(BudgetError) -> [Int] {
        try check(widths, given: text(widths), field: field)
    }

    private static func check(_ widths: [Int], given: String, field: String) throws(BudgetError) -> [Int] {
        var seen = Set<Int>()
        for k in widths {
            guard k == 0 || ProfileLibrary.bitWidths.contains(k) else { throw failure(given, field, "unsupported bit-width \(k)") }
            guard seen.insert(k).inserted else { throw failure(given, field, "bit-width \(k) is listed twice") }
        }
        let menu = seen.filter { $0 > 0 }.sorted(by: >)
        guard !menu.isEmpty else { throw failure(given, field, "no positive bit-width") }
        return menu
    }

    private static func failure(_ given: String, _ field: String, _ reason: String) -> BudgetError {
        .malformed(field: field, value: given, reason: "\(reason); expected a comma-separated list of \(text(Self.default + [0]))")
    }

    /// `16,8,4`: the form ``parse(_:field:)`` reads (and the CLI's `--bits` takes).
    public static func text(_ widths: [Int]) -> String { widths.map(String.init).joined(separator: ",") }
}
