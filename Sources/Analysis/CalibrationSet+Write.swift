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
    public static func write(
        _ entries: [CalibrationEntry], outputs: [CalibrationOutputs] = [], aliases: [String: String] = [:],
        metadata: CalibrationMetadata = CalibrationMetadata(), to url: URL
    ) throws(AnalysisError) {
        var payloads: [TensorPayload] = []
        var version2 = !outputs.isEmpty || !metadata.isEmpty
        func appendOutputs(_ module: String, _ outputGram: CalibrationGram?, _ grads: Matrix<Float>?) {
            if let g = outputGram {
                payloads.append(g.payload(name: module + ".out_gram"))
                version2 = true
            }
            if let r = grads {
                if let g = outputGram { precondition(r.rows == g.width, "\(module): grads have \(r.rows) rows, G is \(g.width) wide") }
                payloads.append(TensorPayload(name: module + ".grads", dtype: .f32, shape: [r.columns, r.rows], contents: .floats(r.elements)))
                version2 = true
            }
        }
        for e in entries {
            payloads.append(e.gram.payload(name: e.module + ".gram"))
            version2 = version2 || e.gram.isDiagonal
            var count = UInt64(e.tokenCount).littleEndian
            let bytes = withUnsafeBytes(of: &count) { Array($0) }
            payloads.append(TensorPayload(name: e.module + ".count", dtype: .i64, shape: [1], contents: .bytes(bytes)))
            if let x = e.inputs {
                precondition(x.rows == e.gram.width, "\(e.module): inputs are \(x.rows) wide, H is \(e.gram.width)")
                payloads.append(TensorPayload(name: e.module + ".inputs", dtype: .f32, shape: [x.columns, x.rows],
                                              contents: .floats(x.elements)))
            }
            if let r = e.grads { precondition(r.columns == e.inputs?.columns, "\(e.module): grads need as many input rows") }
            appendOutputs(e.module, e.outputGram, e.grads)
        }
        for o in outputs {
            precondition(!entries.contains { $0.module == o.module && ($0.outputGram != nil || $0.grads != nil) },
                         "\(o.module): output statistics given twice")
            appendOutputs(o.module, o.outputGram, o.grads)
        }
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
        do { try SafetensorsFile.write(payloads, metadata: values, to: url) } catch { throw .checkpoint("\(error)") }
    }
}
