import Foundation
import ModelProfiles
import Reporting

/// Strategies compared at several budgets on one set of matrices: one row per strategy × budget.
public struct Comparison: Codable, Sendable, Equatable {
    public struct Row: Codable, Sendable, Equatable {
        public var strategy: String
        /// The budget as given (`1/16`).
        public var budget: String
        /// Who shared the budget; null for the `bitdelta` baseline (one bit per parameter, no plan).
        @EncodedAsNull public var scope: Scope?
        public var budgetBits: Int
        public var storageBits: Int
        /// Achieved α = storageBits / dense F16 bits.
        public var alpha: Double
        public var predictedError: Double
        public var predictedRelativeError: Double
        /// Relative predicted error per layer type (`attention`, `mlp`).
        public var relativeErrorByType: [String: Double]
        public var seconds: Double
        /// (error − exact error) / exact error; null when exact was not run or for exact itself.
        @EncodedAsNull public var gapToExact: Double?

        public init(strategy: String, budget: String, scope: Scope?, budgetBits: Int, storageBits: Int, alpha: Double,
                    predictedError: Double, predictedRelativeError: Double, relativeErrorByType: [String: Double],
                    seconds: Double, gapToExact: Double? = nil) {
            self.strategy = strategy
            self.budget = budget
            self.scope = scope
            self.budgetBits = budgetBits
            self.storageBits = storageBits
            self.alpha = alpha
            self.predictedError = predictedError
            self.predictedRelativeError = predictedRelativeError
            self.relativeErrorByType = relativeErrorByType
            self.seconds = seconds
            self.gapToExact = gapToExact
        }
    }

    /// What was compared (store or profile name).
    public var title: String
    public var accounting: Accounting
    /// The objective every row's predicted error measures (null for shape-only comparisons).
    @EncodedAsNull public var objective: ErrorObjective?
    public var rows: [Row]

    /// Strategies that could not run at a budget, with the reason (an infeasible preset, say).
    public var notes: [String]

    public init(title: String, accounting: Accounting, objective: ErrorObjective? = nil, rows: [Row], notes: [String] = []) {
        self.title = title
        self.objective = objective
        self.accounting = accounting
        self.rows = rows
        self.notes = notes
    }

    /// Layer types present in any row, sorted.
    var types: [String] { Set(rows.flatMap(\.relativeErrorByType.keys)).sorted() }
}

public enum ComparisonFormat: String, Sendable, CaseIterable, Codable {
    case table, markdown, json, svg
}

extension Comparison {
    public func render(_ format: ComparisonFormat) -> String {
        switch format {
        case .table: textTable()
        case .markdown: markdown()
        case .json: json()
        case .svg: svg()
        }
    }

    private var header: [String] {
        let error = objective.map { "\($0.rawValue) error" } ?? "error"
        return ["strategy", "budget", "scope", "storage", "α", error, "rel. error"] + types.map { "rel. \($0)" } + ["time", "gap to exact"]
    }

    private var cells: [[String]] {
        rows.map { r in
            [r.strategy, r.budget, r.scope?.rawValue ?? "–", Format.bytes(Double(r.storageBits) / 8), formatAlpha(r.alpha),
             formatScientific(r.predictedError), formatScientific(r.predictedRelativeError)]
                + types.map { r.relativeErrorByType[$0].map(formatScientific) ?? "–" }
                + [String(format: "%.2f s", r.seconds), r.gapToExact.map { String(format: "%+.2f%%", 100 * $0) } ?? "–"]
        }
    }

    /// The rows as a table: text columns left-aligned, numeric columns right-aligned.
    public func table() -> TextTable {
        var table = TextTable(headers: header, alignments: header.indices.map { $0 < 3 ? .left : .right })
        for row in cells { table.append(row) }
        return table
    }

    /// Aligned plain text, then the notes.
    public func textTable() -> String { table().text() + notes.map { "note: \($0)\n" }.joined() }

    /// A GitHub-flavoured markdown table, one row per strategy × budget, then the notes.
    public func markdown() -> String { table().markdown() + notes.map { "\n_note: \($0)_\n" }.joined() }

    /// Deterministic JSON (sorted keys).
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        // Finite Doubles, strings and integers only: encoding cannot fail unless a value is NaN.
        guard let data = try? encoder.encode(self) else { return "{}\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

/// "1/16" when 1/α is (nearly) an integer, else three significant digits.
func formatAlpha(_ alpha: Double) -> String {
    guard alpha > 0 else { return "0" }
    let inverse = 1 / alpha
    if abs(inverse - inverse.rounded()) < 0.005 * inverse { return "1/\(Int(inverse.rounded()))" }
    return String(format: "%.4g", alpha)
}

func formatScientific(_ x: Double) -> String { String(format: "%.3e", x) }
