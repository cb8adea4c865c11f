import Checkpoint
import Foundation
import LinearAlgebra

/// Calibration statistics (Docs/calibration-format.md, versions 1 and 2): per entry (a module with
/// its own inputs), H = Σ x xᵀ over the calibration tokens, full or diagonal, the token count N
/// and optionally n sampled input rows; per module, optionally the output Gram G (full or
/// diagonal) and n gradient rows paired with the input rows. Modules reading the same input
/// (q/k/v, gate/up) may share one entry through `deltaplan.aliases`; their output statistics
/// stay their own.
///
/// Opening validates the whole file before any of it is used (format version, dtypes, shapes,
/// counts, aliases, the consistency of output statistics with their inputs, the metadata), each
/// violation its own `CalibrationError`; NaN and infinities are found when values are read.
/// Opening reads no tensor data except the counts.
public struct CalibrationSet: Sendable {
    public static let formatKey = "deltaplan.calibration_format"
    public static let aliasesKey = "deltaplan.aliases"
    public static let probesKey = "deltaplan.probes"
    public static let objectiveKey = "deltaplan.objective"
    public static let samplesKey = "deltaplan.samples"
    public static let sourceKey = "deltaplan.source"
    /// The newest format this build reads, and the one it writes when a file needs it.
    public static let currentFormatVersion = 2

    public let url: URL
    /// `deltaplan.calibration_format` (1 when absent).
    public let formatVersion: Int
    public let metadata: CalibrationMetadata
    /// Module → the entry whose inputs it uses (`deltaplan.aliases`).
    public let aliases: [String: String]
    private let file: SafetensorsFile
    private let entries: [String: Entry]
    private let outputs: [String: Outputs]

    /// An entry's input statistics, as validated.
    struct Entry: Sendable {
        var width: Int
        var count: Int
        var diagonal: Bool
        var inputRows: Int?
    }

    /// A module's output statistics, as validated.
    struct Outputs: Sendable {
        /// h_out, from `.out_gram` or `.grads`.
        var width: Int
        var outputGram: GramForm
        var gradRows: Int?
    }

    /// The tensors of one module or entry, by suffix.
    enum Role: CaseIterable {
        case outputGram, gram, count, inputs, grads

        var suffix: String {
            switch self {
            case .outputGram: ".out_gram"
            case .gram: ".gram"
            case .count: ".count"
            case .inputs: ".inputs"
            case .grads: ".grads"
            }
        }
    }

    public init(url: URL) throws(AnalysisError) {
        self.url = url
        do { file = try SafetensorsFile(contentsOf: url) } catch { throw .checkpoint("\(error)") }
        do throws(CalibrationError) {
            let path = url.path
            formatVersion = try Self.formatVersion(file.metadata, path: path)
            var byModule: [String: [Role: TensorInfo]] = [:]
            for info in file.tensors {
                guard let role = Role.allCases.first(where: { info.name.hasSuffix($0.suffix) }) else { continue }
                let module = String(info.name.dropLast(role.suffix.count))
                guard !module.isEmpty else { throw .emptyModuleName(file: path, tensor: info.name) }
                byModule[module, default: [:]][role] = info
            }
            var entries: [String: Entry] = [:], outputs: [String: Outputs] = [:]
            for (module, tensors) in byModule.sorted(by: { Analyzer.naturalOrder($0.key, $1.key) }) {
                if let entry = try Self.entry(module, tensors, file: file, version: formatVersion) { entries[module] = entry }
                if let out = try Self.outputs(module, tensors, path: path, version: formatVersion) { outputs[module] = out }
            }
            aliases = try Self.aliases(file.metadata[Self.aliasesKey], entries: entries, path: path)
            metadata = try Self.metadata(file.metadata, path: path)
            try Self.checkOutputs(outputs, entries: entries, aliases: aliases, metadata: metadata, path: path)
            self.entries = entries
            self.outputs = outputs
        } catch {
            throw .calibration(error)
        }
    }

    // MARK: Entries and modules

    /// The entry a module's input statistics come from (its own, or the one it shares), nil when none.
    public func entry(for module: String) -> String? {
        entries[module] != nil ? module : aliases[module]
    }

    /// Every entry (module with a `.gram`), in natural order.
    public var entryNames: [String] { entries.keys.sorted(by: Analyzer.naturalOrder) }

    /// Every module the file has statistics for: entries, aliased modules and modules with output
    /// statistics only, in natural order.
    public var moduleNames: [String] {
        Set(entries.keys).union(aliases.keys).union(outputs.keys).sorted(by: Analyzer.naturalOrder)
    }

    private func validated(_ entry: String) -> Entry {
        guard let e = entries[entry] else { preconditionFailure("\(entry) is not an entry of \(url.path)") }
        return e
    }

    /// The input width h_in of an entry.
    public func width(ofEntry entry: String) -> Int { validated(entry).width }

    /// N, the number of tokens summed into an entry's H.
    public func tokenCount(ofEntry entry: String) -> Int { validated(entry).count }

    /// True when the file holds only the diagonal of the entry's H (a 1-D `.gram`).
    public func gramIsDiagonal(ofEntry entry: String) -> Bool { validated(entry).diagonal }

    /// n, the entry's sampled input rows, nil without `.inputs`.
    public func inputRows(ofEntry entry: String) -> Int? { validated(entry).inputRows }

    /// h_out of a module, from its `.out_gram` or `.grads`; nil without output statistics.
    public func outputWidth(ofModule module: String) -> Int? { outputs[module]?.width }

    /// How the module's output Gram G is stored (`absent` without one).
    public func outputGramForm(ofModule module: String) -> GramForm { outputs[module]?.outputGram ?? .absent }

    /// n, the module's paired gradient rows (0 without `.grads`).
    public func pairedRows(ofModule module: String) -> Int { outputs[module]?.gradRows ?? 0 }

    /// Which statistics the file has for a module; nil when it has no H (no entry, no alias).
    public func statistics(ofModule module: String) -> CalibrationStatistics? {
        guard let entry = entry(for: module) else { return nil }
        return CalibrationStatistics(inputGram: validated(entry).diagonal ? .diagonal : .full,
                                     outputGram: outputGramForm(ofModule: module), pairedRows: pairedRows(ofModule: module))
    }

    // MARK: Values

    /// H = Σ x xᵀ of an entry, h_in × h_in (symmetric, so row- and column-major agree). A diagonal
    /// entry gives diag(d), so every consumer sees the same matrix either way.
    public func gram(ofEntry entry: String) throws(AnalysisError) -> Matrix<Float> {
        let e = validated(entry)
        guard e.diagonal else { return try square(entry + ".gram", entry: entry, width: e.width) }
        return Matrix(diagonal: try values(entry + ".gram", entry: entry))
    }

    /// An entry's H as stored: the full matrix, or only its diagonal (h_in values instead of h_in²,
    /// for consumers that exploit it).
    public func inputGram(ofEntry entry: String) throws(AnalysisError) -> CalibrationGram {
        let e = validated(entry)
        guard e.diagonal else { return .full(try square(entry + ".gram", entry: entry, width: e.width)) }
        return .diagonal(try values(entry + ".gram", entry: entry))
    }

    /// The diagonal of an entry's H (read as stored for a diagonal entry).
    public func gramDiagonal(ofEntry entry: String) throws(AnalysisError) -> [Float] {
        let e = validated(entry)
        if e.diagonal { return try values(entry + ".gram", entry: entry) }
        let h = try square(entry + ".gram", entry: entry, width: e.width)
        return (0..<e.width).map { h[$0, $0] }
    }

    /// The raw input sample X (h_in × n, one token per column), when the entry has one.
    public func inputs(ofEntry entry: String) throws(AnalysisError) -> Matrix<Float>? {
        let e = validated(entry)
        guard let n = e.inputRows else { return nil }
        return Matrix(rows: e.width, columns: n, elements: try values(entry + ".inputs", entry: entry))
    }

    /// G of a module, h_out × h_out (a diagonal `.out_gram` expanded to diag(d)); nil when absent.
    public func outputGram(ofModule module: String) throws(AnalysisError) -> Matrix<Float>? {
        guard let out = outputs[module] else { return nil }
        switch out.outputGram {
        case .absent: return nil
        case .full: return try square(module + ".out_gram", entry: module, width: out.width)
        case .diagonal: return Matrix(diagonal: try values(module + ".out_gram", entry: module))
        }
    }

    /// The paired samples of a module: input rows X (h_in × n, from its entry, own or aliased) and
    /// gradient rows Γ (h_out × n), column i of both from the same (token, probe) sample. Nil
    /// without `.grads`.
    public func pairedSamples(ofModule module: String) throws(AnalysisError) -> (inputs: Matrix<Float>, grads: Matrix<Float>)? {
        guard let out = outputs[module], let n = out.gradRows, let entry = entry(for: module),
              let inputs = try inputs(ofEntry: entry)
        else { return nil }
        let grads = Matrix(rows: out.width, columns: n, elements: try values(module + ".grads", entry: module))
        return (inputs, grads)
    }

    /// A tensor's values (row-major as stored), checked finite.
    private func values(_ tensor: String, entry: String) throws(AnalysisError) -> [Float] {
        let values: [Float]
        do { values = try file.floats(tensor) } catch { throw .checkpoint("\(error)") }
        guard values.allSatisfy(\.isFinite) else { throw .calibration(.nonFinite(file: url.path, entry: entry, tensor: tensor)) }
        return values
    }

    private func square(_ tensor: String, entry: String, width: Int) throws(AnalysisError) -> Matrix<Float> {
        Matrix(rows: width, columns: width, elements: try values(tensor, entry: entry))
    }
}

// MARK: Validation

extension CalibrationSet {
    static func formatVersion(_ metadata: [String: String], path: String) throws(CalibrationError) -> Int {
        guard let text = metadata[formatKey] else { return 1 }
        guard let version = Int(text), version >= 1 else { throw .invalidFormatVersion(file: path, value: text) }
        guard version <= currentFormatVersion else {
            throw .unsupportedFormatVersion(file: path, found: version, supported: currentFormatVersion)
        }
        return version
    }

    /// The entry `module` makes with its `.gram`, `.count` and `.inputs`; nil without `.gram`.
    static func entry(
        _ module: String, _ tensors: [Role: TensorInfo], file: SafetensorsFile, version: Int
    ) throws(CalibrationError) -> Entry? {
        let path = file.url.path
        guard let gram = tensors[.gram] else {
            if let orphan = tensors[.count] ?? tensors[.inputs] {
                throw .orphanTensor(file: path, entry: module, tensor: orphan.name)
            }
            return nil
        }
        try checkDType(gram, [.f32, .f64], entry: module, path: path)
        let diagonal = gram.shape.count == 1
        guard gram.shape.allSatisfy({ $0 > 0 }) && (diagonal || (gram.shape.count == 2 && gram.shape[0] == gram.shape[1])) else {
            throw .wrongShape(file: path, entry: module, tensor: gram.name, shape: gram.shape,
                              expected: "a square [h_in, h_in] matrix or its [h_in] diagonal, h_in ≥ 1")
        }
        if diagonal && version < 2 { throw .needsFormat2(file: path, tensor: gram.name) }
        let width = gram.shape[0]
        guard let count = tensors[.count] else { throw .missingCount(file: path, entry: module) }
        try checkDType(count, [.i64], entry: module, path: path)
        guard count.elementCount == 1 else {
            throw .wrongShape(file: path, entry: module, tensor: count.name, shape: count.shape, expected: "one element ([1])")
        }
        let bytes: [UInt8]
        do { bytes = try file.rawBytes(count.name) } catch { preconditionFailure("validated tensor \(count.name) unreadable: \(error)") }
        var raw: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { raw |= UInt64(b) << (8 * UInt64(i)) }
        let n = Int(Int64(bitPattern: raw))
        guard n >= 1 else { throw .invalidCount(file: path, entry: module, count: n) }
        var rows: Int?
        if let inputs = tensors[.inputs] {
            try checkDType(inputs, [.f32], entry: module, path: path)
            guard inputs.shape.count == 2, inputs.shape[0] > 0, inputs.shape[1] == width else {
                throw .wrongShape(file: path, entry: module, tensor: inputs.name, shape: inputs.shape, expected: "[n, \(width)], n ≥ 1")
            }
            rows = inputs.shape[0]
        }
        return Entry(width: width, count: n, diagonal: diagonal, inputRows: rows)
    }

    /// The output statistics of `module` (`.out_gram`, `.grads`), checked against each other; nil
    /// without either.
    static func outputs(_ module: String, _ tensors: [Role: TensorInfo], path: String, version: Int) throws(CalibrationError) -> Outputs? {
        let outGram = tensors[.outputGram], grads = tensors[.grads]
        guard outGram != nil || grads != nil else { return nil }
        if version < 2 { throw .needsFormat2(file: path, tensor: (outGram ?? grads!).name) }
        var form = GramForm.absent, width: Int?
        if let g = outGram {
            try checkDType(g, [.f32, .f64], entry: module, path: path)
            guard g.shape.allSatisfy({ $0 > 0 }) && (g.shape.count == 1 || (g.shape.count == 2 && g.shape[0] == g.shape[1])) else {
                throw .wrongShape(file: path, entry: module, tensor: g.name, shape: g.shape,
                                  expected: "a square [h_out, h_out] matrix or its [h_out] diagonal, h_out ≥ 1")
            }
            form = g.shape.count == 1 ? .diagonal : .full
            width = g.shape[0]
        }
        var rows: Int?
        if let r = grads {
            try checkDType(r, [.f32], entry: module, path: path)
            guard r.shape.count == 2, r.shape[0] > 0, r.shape[1] > 0 else {
                throw .wrongShape(file: path, entry: module, tensor: r.name, shape: r.shape, expected: "[n, h_out], n ≥ 1, h_out ≥ 1")
            }
            if let width, r.shape[1] != width {
                throw .outputWidthMismatch(file: path, module: module, tensor: r.name, columns: r.shape[1], outputGramWidth: width)
            }
            width = r.shape[1]
            rows = r.shape[0]
        }
        return Outputs(width: width!, outputGram: form, gradRows: rows)
    }

    static func checkDType(_ info: TensorInfo, _ allowed: [DType], entry: String, path: String) throws(CalibrationError) {
        guard allowed.contains(info.dtype) else {
            throw .wrongDType(file: path, entry: entry, tensor: info.name, dtype: info.dtype.rawValue,
                              expected: allowed.map(\.rawValue).joined(separator: " or "))
        }
    }

    /// `deltaplan.aliases`: a JSON object of module → entry; every target an entry, no module both
    /// an entry and aliased, no chains.
    static func aliases(_ json: String?, entries: [String: Entry], path: String) throws(CalibrationError) -> [String: String] {
        guard let json else { return [:] }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String] else {
            throw .invalidMetadata(file: path, key: aliasesKey, reason: "must be a JSON object of module names to module names")
        }
        for (module, target) in object.sorted(by: { Analyzer.naturalOrder($0.key, $1.key) }) {
            guard entries[module] == nil else { throw .aliasShadowsEntry(file: path, module: module, target: target) }
            if let next = object[target] { throw .aliasChain(file: path, module: module, target: target, next: next) }
            guard entries[target] != nil else { throw .aliasToMissingEntry(file: path, module: module, target: target) }
        }
        return object
    }

    static func metadata(_ values: [String: String], path: String) throws(CalibrationError) -> CalibrationMetadata {
        var m = CalibrationMetadata(source: values[sourceKey])
        if let text = values[probesKey] {
            guard let p = Int(text), p >= 1 else {
                throw .invalidMetadata(file: path, key: probesKey, reason: "must be a positive integer, got '\(text)'")
            }
            m.probes = p
        }
        if let text = values[objectiveKey] {
            guard let objective = ProbeObjective(rawValue: text) else {
                throw .invalidMetadata(file: path, key: objectiveKey, reason: "must be one of "
                    + ProbeObjective.allCases.map(\.rawValue).joined(separator: ", ") + ", got '\(text)'")
            }
            m.objective = objective
        }
        if let text = values[samplesKey] {
            let expected = #"a JSON object {"rows": n, "tokens": N, "probes": P, "seed": s} of non-negative integers"#
            guard let samples = try? JSONDecoder().decode(CalibrationSamples.self, from: Data(text.utf8)),
                  samples.rows >= 0, samples.tokens >= 0, samples.probes >= 0
            else { throw .invalidMetadata(file: path, key: samplesKey, reason: "must be \(expected), got '\(text)'") }
            if let p = m.probes, samples.probes != p {
                throw .invalidMetadata(file: path, key: samplesKey, reason: "probes \(samples.probes) differs from \(probesKey) \(p)")
            }
            m.samples = samples
        }
        return m
    }

    /// Output statistics need an H (own or aliased); `.grads` need that entry's input rows, as many.
    static func checkOutputs(
        _ outputs: [String: Outputs], entries: [String: Entry], aliases: [String: String], metadata: CalibrationMetadata,
        path: String
    ) throws(CalibrationError) {
        for (module, out) in outputs.sorted(by: { Analyzer.naturalOrder($0.key, $1.key) }) {
            let gradsName = module + Role.grads.suffix
            guard let entryName = entries[module] != nil ? module : aliases[module], let entry = entries[entryName] else {
                if out.outputGram == .absent { throw .gradsWithoutInputs(file: path, module: module, tensor: gradsName) }
                throw .outputStatisticsWithoutGram(file: path, module: module, tensor: module + Role.outputGram.suffix)
            }
            guard let rows = out.gradRows else { continue }
            guard let inputRows = entry.inputRows else { throw .gradsWithoutInputs(file: path, module: module, tensor: gradsName) }
            guard rows == inputRows else {
                throw .sampleRowMismatch(file: path, module: module, tensor: gradsName, rows: rows,
                                         inputs: entryName + Role.inputs.suffix, inputRows: inputRows)
            }
            if let samples = metadata.samples, samples.rows != rows {
                throw .invalidMetadata(file: path, key: samplesKey, reason: "rows \(samples.rows), but \(gradsName) has \(rows) rows")
            }
        }
    }
}
