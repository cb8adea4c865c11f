import Checkpoint
import Foundation
import LinearAlgebra

/// A symmetric statistic (H or G) to write: the whole matrix, or only its diagonal.
public enum CalibrationGram: Sendable {
    case full(Matrix<Float>)
    case diagonal([Float])

    public var width: Int {
        switch self {
        case let .full(m): m.rows
        case let .diagonal(d): d.count
        }
    }

    public var isDiagonal: Bool {
        if case .diagonal = self { return true }
        return false
    }

    fileprivate func payload(name: String) -> TensorPayload {
        switch self {
        case let .full(m):
            precondition(m.rows == m.columns, "\(name): a Gram matrix must be square, got \(m.rows) × \(m.columns)")
            return TensorPayload(name: name, dtype: .f32, shape: [m.rows, m.rows], contents: .floats(m.elements))
        case let .diagonal(d):
            return TensorPayload(name: name, dtype: .f32, shape: [d.count], contents: .floats(d))
        }
    }
}

/// One calibration entry to write: a module's input statistics and, optionally, its own output
/// statistics.
public struct CalibrationEntry: Sendable {
    public var module: String
    /// H = X Xᵀ, h_in × h_in, or its diagonal (written as a 1-D `.gram`: a format-2 file).
    public var gram: CalibrationGram
    public var tokenCount: Int
    /// Raw sample, h_in × n (one token per column), or nil.
    public var inputs: Matrix<Float>?
    /// G, h_out × h_out or its diagonal, or nil.
    public var outputGram: CalibrationGram?
    /// Gradient rows paired with `inputs`, h_out × n (column i pairs with input column i), or nil.
    public var grads: Matrix<Float>?

    public init(module: String, gram: Matrix<Float>, tokenCount: Int, inputs: Matrix<Float>? = nil,
                outputGram: CalibrationGram? = nil, grads: Matrix<Float>? = nil) {
        self.init(module: module, gram: .full(gram), tokenCount: tokenCount, inputs: inputs, outputGram: outputGram, grads: grads)
    }

    public init(module: String, gram: CalibrationGram, tokenCount: Int, inputs: Matrix<Float>? = nil,
                outputGram: CalibrationGram? = nil, grads: Matrix<Float>? = nil) {
        self.module = module
        self.gram = gram
        self.tokenCount = tokenCount
        self.inputs = inputs
        self.outputGram = outputGram
        self.grads = grads
    }

    /// True when only the diagonal of H is written.
    public var gramIsDiagonal: Bool { gram.isDiagonal }
}

/// The output statistics of a module without an entry of its own (it reads an aliased entry's
/// inputs, as k/v read q's): G and the gradient rows paired with that entry's input rows.
public struct CalibrationOutputs: Sendable {
    public var module: String
    public var outputGram: CalibrationGram?
    /// h_out × n.
    public var grads: Matrix<Float>?

    public init(module: String, outputGram: CalibrationGram? = nil, grads: Matrix<Float>? = nil) {
        self.module = module
        self.outputGram = outputGram
        self.grads = grads
    }
}

extension CalibrationSet {
    /// Writes entries, aliases (module → module with an entry), the output statistics of aliased
    /// modules and the file metadata as a calibration file, atomically and deterministically.
    ///
    /// A file with nothing beyond format 1 (full grams, counts, inputs, aliases) is written as
    /// version 1, byte for byte as before format 2 existed; any diagonal gram, output statistic or
    /// metadata makes it a version-2 file (`deltaplan.calibration_format` = "2"). Shapes are the
    /// caller's responsibility (checked with preconditions); the reader validates the rest.
    /// Memory: every entry at once; ``CalibrationWriter`` streams a format-1 file entry by entry.
    public static func write(
        _ entries: [CalibrationEntry], outputs: [CalibrationOutputs] = [], aliases: [String: String] = [:],
        metadata: CalibrationMetadata = CalibrationMetadata(), to url: URL
    ) throws(AnalysisError) {
        var payloads: [TensorPayload] = []
        var version2 = !outputs.isEmpty || !metadata.isEmpty
        for e in entries {
            let (tensors, needsVersion2) = e.payloads()
            payloads += tensors
            version2 = version2 || needsVersion2
        }
        for o in outputs {
            precondition(!entries.contains { $0.module == o.module && ($0.outputGram != nil || $0.grads != nil) },
                         "\(o.module): output statistics given twice")
            payloads += outputPayloads(o.module, o.outputGram, o.grads)
        }
        let values = headerMetadata(aliases: aliases, version2: version2, metadata: metadata)
        do { try SafetensorsFile.write(payloads, metadata: values, to: url) } catch { throw .checkpoint("\(error)") }
    }

    /// The `__metadata__` of a calibration file: the aliases (sorted JSON) and, for format 2, the
    /// version and the metadata fields.
    static func headerMetadata(aliases: [String: String], version2: Bool, metadata: CalibrationMetadata) -> [String: String] {
        var values: [String: String] = [:]
        if !aliases.isEmpty {
            let data = try! JSONSerialization.data(withJSONObject: aliases, options: [.sortedKeys])
            values[aliasesKey] = String(decoding: data, as: UTF8.self)
        }
        if version2 {
            values[formatKey] = String(currentFormatVersion)
            if let p = metadata.probes { values[probesKey] = String(p) }
            if let o = metadata.objective { values[objectiveKey] = o.rawValue }
            if let s = metadata.samples { values[samplesKey] = String(decoding: try! JSONEncoder.sorted.encode(s), as: UTF8.self) }
            if let s = metadata.source { values[sourceKey] = s }
        }
        return values
    }

    /// `.out_gram` and `.grads` of one module.
    fileprivate static func outputPayloads(_ module: String, _ outputGram: CalibrationGram?, _ grads: Matrix<Float>?) -> [TensorPayload] {
        var payloads: [TensorPayload] = []
        if let g = outputGram { payloads.append(g.payload(name: module + ".out_gram")) }
        if let r = grads {
            if let g = outputGram { precondition(r.rows == g.width, "\(module): grads have \(r.rows) rows, G is \(g.width) wide") }
            payloads.append(TensorPayload(name: module + ".grads", dtype: .f32, shape: [r.columns, r.rows], contents: .floats(r.elements)))
        }
        return payloads
    }
}

extension CalibrationEntry {
    /// The entry's tensors (`.gram`, `.count`, `.inputs`, `.out_gram`, `.grads`) and whether they
    /// need format 2 (a diagonal gram or output statistics).
    fileprivate func payloads() -> (payloads: [TensorPayload], version2: Bool) {
        var payloads = [gram.payload(name: module + ".gram")]
        var count = UInt64(tokenCount).littleEndian
        let bytes = withUnsafeBytes(of: &count) { Array($0) }
        payloads.append(TensorPayload(name: module + ".count", dtype: .i64, shape: [1], contents: .bytes(bytes)))
        if let x = inputs {
            precondition(x.rows == gram.width, "\(module): inputs are \(x.rows) wide, H is \(gram.width)")
            payloads.append(TensorPayload(name: module + ".inputs", dtype: .f32, shape: [x.columns, x.rows], contents: .floats(x.elements)))
        }
        if let r = grads { precondition(r.columns == inputs?.columns, "\(module): grads need as many input rows") }
        payloads += CalibrationSet.outputPayloads(module, outputGram, grads)
        return (payloads, gram.isDiagonal || outputGram != nil || grads != nil)
    }
}

/// Streams a format-1 calibration file (full Grams, token counts, optional input rows, aliases)
/// one entry at a time: the header is declared up front from each module's width and sample
/// rows, so memory holds one entry rather than all of them (a 7B model's 32 layers of Grams are
/// about 22 GB). The bytes equal those of ``CalibrationSet/write(_:outputs:aliases:metadata:to:)``
/// for the same entries; the file appears atomically on ``finish()``.
///
/// A class because it owns the open temporary file.
public final class CalibrationWriter {
    /// What the header needs of an entry before its statistics exist.
    public struct Layout: Sendable, Hashable {
        public var module: String
        /// h_in: the Gram is width × width.
        public var width: Int
        /// Sampled input rows written as `.inputs` (0: none).
        public var inputRows: Int

        public init(module: String, width: Int, inputRows: Int) {
            self.module = module
            self.width = width
            self.inputRows = inputRows
        }
    }

    private let writer: SafetensorsWriter
    private let layouts: [String: Layout]

    public init(url: URL, entries: [Layout], aliases: [String: String] = [:]) throws(AnalysisError) {
        var declarations: [TensorDeclaration] = []
        for e in entries {
            declarations.append(TensorDeclaration(name: e.module + ".gram", dtype: .f32, shape: [e.width, e.width]))
            declarations.append(TensorDeclaration(name: e.module + ".count", dtype: .i64, shape: [1]))
            if e.inputRows > 0 {
                declarations.append(TensorDeclaration(name: e.module + ".inputs", dtype: .f32, shape: [e.inputRows, e.width]))
            }
        }
        let metadata = CalibrationSet.headerMetadata(aliases: aliases, version2: false, metadata: CalibrationMetadata())
        do {
            writer = try SafetensorsWriter(url: url, tensors: declarations, metadata: metadata)
        } catch {
            throw .checkpoint("\(error)")
        }
        layouts = Dictionary(entries.map { ($0.module, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// Writes one declared entry: a full Gram, its count and, as declared, its input rows.
    public func write(_ entry: CalibrationEntry) throws(AnalysisError) {
        let layout = layouts[entry.module]
        precondition(layout != nil && !entry.gram.isDiagonal && entry.outputGram == nil && entry.grads == nil
                     && entry.gram.width == layout!.width && (entry.inputs?.columns ?? 0) == layout!.inputRows,
                     "\(entry.module): not the format-1 entry declared")
        do {
            for payload in entry.payloads().payloads { try writer.write(payload) }
        } catch {
            throw .checkpoint("\(error)")
        }
    }

    /// Checks every entry was written and publishes the file.
    public func finish() throws(AnalysisError) {
        do { try writer.finish() } catch { throw .checkpoint("\(error)") }
    }
}
