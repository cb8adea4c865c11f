import Foundation
import ModelProfiles
import Reporting

/// What a calibration file holds, per module and in all: what `deltaplan calibration inspect`
/// prints. Built from a validated `CalibrationSet` without reading any tensor data.
public struct CalibrationSummary: Codable, Sendable, Equatable {
    public struct Module: Codable, Sendable, Equatable {
        public var module: String
        /// The entry whose inputs the module shares (`deltaplan.aliases`), nil for its own.
        public var aliasOf: String?
        public var inputWidth: Int
        /// h_out, from `.out_gram` or `.grads`; nil without output statistics.
        public var outputWidth: Int?
        /// N, the tokens summed into H.
        public var tokens: Int
        /// n, the sampled input rows of its entry; nil without `.inputs`.
        public var inputRows: Int?
        public var gram: GramForm
        public var outputGram: GramForm
        /// n, the gradient rows paired with the input rows; nil without `.grads`.
        public var gradRows: Int?
    }

    public var file: String
    public var formatVersion: Int
    public var metadata: CalibrationMetadata
    /// The strongest error objective the statistics of every module support.
    public var objective: ErrorObjective?
    public var modules: [Module]

    public init(_ set: CalibrationSet) {
        file = set.url.path
        formatVersion = set.formatVersion
        metadata = set.metadata
        modules = set.moduleNames.compactMap { name -> Module? in
            guard let entry = set.entry(for: name) else { return nil }
            return Module(
                module: name, aliasOf: entry == name ? nil : entry, inputWidth: set.width(ofEntry: entry),
                outputWidth: set.outputWidth(ofModule: name), tokens: set.tokenCount(ofEntry: entry),
                inputRows: set.inputRows(ofEntry: entry), gram: set.gramIsDiagonal(ofEntry: entry) ? .diagonal : .full,
                outputGram: set.outputGramForm(ofModule: name),
                gradRows: set.pairedRows(ofModule: name) > 0 ? set.pairedRows(ofModule: name) : nil)
        }
        objective = CalibrationStatistics.commonObjective(modules.map {
            CalibrationStatistics(inputGram: $0.gram, outputGram: $0.outputGram, pairedRows: $0.gradRows ?? 0)
        })
    }

    /// One row per module: alias target, h_in, h_out, tokens, sampled rows, and which statistics.
    public func table() -> TextTable {
        var t = TextTable(headers: ["module", "alias of", "h_in", "h_out", "tokens", "H", "G", "inputs", "grads"],
                          alignments: [.left, .left, .right, .right, .right, .left, .left, .right, .right])
        for m in modules {
            t.append([m.module, m.aliasOf ?? "-", "\(m.inputWidth)", m.outputWidth.map(String.init) ?? "-", "\(m.tokens)",
                      m.gram.rawValue, m.outputGram == .absent ? "-" : m.outputGram.rawValue,
                      m.inputRows.map(String.init) ?? "-", m.gradRows.map(String.init) ?? "-"])
        }
        return t
    }

    /// The file-level lines: format, metadata, the objective the statistics support.
    public var headerLines: [String] {
        var lines = ["calibration \(file): format \(formatVersion), \(modules.count) modules"]
        if let p = metadata.probes { lines.append("probes: \(p)" + (metadata.objective.map { " (\($0.rawValue))" } ?? "")) }
        else if let o = metadata.objective { lines.append("probe objective: \(o.rawValue)") }
        if let s = metadata.samples {
            lines.append("samples: \(s.rows) rows of \(s.tokens) tokens, \(s.probes) probes, seed \(s.seed)")
        }
        if let source = metadata.source { lines.append("source: \(source)") }
        lines.append("objective supported by every module: \(objective?.rawValue ?? "none")")
        return lines
    }

    public func text() -> String { headerLines.joined(separator: "\n") + "\n\n" + table().text() }

    /// JSON with sorted keys.
    public func json() -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return String(decoding: try! encoder.encode(self), as: UTF8.self) + "\n"
    }
}
