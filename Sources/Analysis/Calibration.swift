import Checkpoint
import Foundation
import LinearAlgebra

/// Calibration statistics: per module (a weight name without `.weight`), the Gram matrix of its
/// inputs over all calibration tokens, H = Σ x xᵀ = X Xᵀ (X is h_in × tokens), and optionally a
/// sample of the raw input rows, kept for evaluation.
///
/// File format: one safetensors file with, per entry `M`,
/// - `M.gram`: F32 (or F64) `[h_in, h_in]`, symmetric;
/// - `M.count`: I64 `[1]`, the number of tokens summed into the Gram;
/// - `M.inputs` (optional): F32 `[n, h_in]`, raw input rows (tokens), row-major.
///
/// Modules that read the same input (q/k/v, gate/up) may share one entry: the metadata key
/// `deltaplan.aliases` holds a JSON object mapping a module to the module whose entry it uses,
/// e.g. `{"model.layers.0.self_attn.k_proj": "model.layers.0.self_attn.q_proj"}`.
public struct CalibrationSet: Sendable {
    public static let aliasesKey = "deltaplan.aliases"

    public let url: URL
    private let file: SafetensorsFile
    /// Entry name → width h_in.
    private let widths: [String: Int]
    private let counts: [String: Int]
    private let aliases: [String: String]

    public init(url: URL) throws(AnalysisError) {
        self.url = url
        do { file = try SafetensorsFile(contentsOf: url) } catch { throw .checkpoint("\(error)") }
        let path = url.path
        func fail(_ entry: String, _ reason: String) -> AnalysisError {
            .invalidCalibration(file: path, entry: entry, reason: reason)
        }
        var widths: [String: Int] = [:], counts: [String: Int] = [:]
        let byName = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, $0) })
        for info in file.tensors {
            if info.name.hasSuffix(".gram") {
                let entry = String(info.name.dropLast(".gram".count))
                guard info.shape.count == 2, info.shape[0] == info.shape[1], info.shape[0] > 0 else {
                    throw fail(entry, "\(info.name) must be a square [h_in, h_in] matrix, got \(info.shape)")
                }
                guard info.dtype == .f32 || info.dtype == .f64 else {
                    throw fail(entry, "\(info.name) must be F32 or F64, got \(info.dtype.rawValue)")
                }
                guard let count = byName[entry + ".count"] else { throw fail(entry, "\(entry).count is missing") }
                guard count.dtype == .i64, count.elementCount == 1 else {
                    throw fail(entry, "\(entry).count must be I64 with one element, got \(count.dtype.rawValue) \(count.shape)")
                }
                let n = try Self.int64(file, count.name, path: path)
                guard n >= 1 else { throw fail(entry, "\(entry).count must be at least 1, got \(n)") }
                widths[entry] = info.shape[0]
                counts[entry] = n
                if let inputs = byName[entry + ".inputs"] {
                    guard inputs.shape.count == 2, inputs.shape[1] == info.shape[0], inputs.shape[0] > 0 else {
                        throw fail(entry, "\(entry).inputs must be [n, \(info.shape[0])], got \(inputs.shape)")
                    }
                }
            } else if info.name.hasSuffix(".count") || info.name.hasSuffix(".inputs") {
                let entry = String(info.name.prefix(upTo: info.name.lastIndex(of: ".")!))
                guard byName[entry + ".gram"] != nil else { throw fail(entry, "\(info.name) has no \(entry).gram") }
            }
        }
        var aliases: [String: String] = [:]
        if let json = file.metadata[Self.aliasesKey] {
            guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: String] else {
                throw fail(Self.aliasesKey, "metadata must be a JSON object of module names to module names")
            }
            for (module, target) in object {
                guard widths[target] != nil else { throw fail(module, "alias points to \(target), which has no entry") }
                aliases[module] = target
            }
        }
        self.widths = widths
        self.counts = counts
        self.aliases = aliases
    }

    /// The entry a module's statistics come from (its own, or the one it shares), nil when none.
    public func entry(for module: String) -> String? {
        widths[module] != nil ? module : aliases[module]
    }

    /// The input width h_in of an entry.
    public func width(ofEntry entry: String) -> Int { widths[entry]! }

    /// Number of tokens summed into an entry's Gram.
    public func tokenCount(ofEntry entry: String) -> Int { counts[entry]! }

    /// H = Σ x xᵀ of an entry, h_in × h_in (symmetric, so row- and column-major agree).
    public func gram(ofEntry entry: String) throws(AnalysisError) -> Matrix<Float> {
        let h = widths[entry]!
        let values: [Float]
        do { values = try file.floats(entry + ".gram") } catch { throw .checkpoint("\(error)") }
        let gram = Matrix(rows: h, columns: h, elements: values)
        guard gram.isFinite else {
            throw .invalidCalibration(file: url.path, entry: entry, reason: "\(entry).gram has NaN or infinite values")
        }
        return gram
    }

    /// The raw input sample X (h_in × n, one token per column), when the entry has one.
    public func inputs(ofEntry entry: String) throws(AnalysisError) -> Matrix<Float>? {
        guard let info = try? file.info(entry + ".inputs") else { return nil }
        let values: [Float]
        do { values = try file.floats(info.name) } catch { throw .checkpoint("\(error)") }
        return Matrix(rows: info.shape[1], columns: info.shape[0], elements: values)
    }

    private static func int64(_ file: SafetensorsFile, _ name: String, path: String) throws(AnalysisError) -> Int {
        let bytes: [UInt8]
        do { bytes = try file.rawBytes(name) } catch { throw .checkpoint("\(error)") }
        var value: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { value |= UInt64(b) << (8 * UInt64(i)) }
        return Int(Int64(bitPattern: value))
    }
}

/// One calibration entry to write.
public struct CalibrationEntry: Sendable {
    public var module: String
    /// H = X Xᵀ, h_in × h_in.
    public var gram: Matrix<Float>
    public var tokenCount: Int
    /// Raw sample, h_in × n (one token per column), or nil.
    public var inputs: Matrix<Float>?

    public init(module: String, gram: Matrix<Float>, tokenCount: Int, inputs: Matrix<Float>? = nil) {
        self.module = module
        self.gram = gram
        self.tokenCount = tokenCount
        self.inputs = inputs
    }
}

extension CalibrationSet {
    /// Writes entries and aliases (module → module with an entry) as a calibration file, atomically.
    public static func write(_ entries: [CalibrationEntry], aliases: [String: String] = [:], to url: URL) throws(AnalysisError) {
        var payloads: [TensorPayload] = []
        for e in entries {
            let h = e.gram.rows
            payloads.append(TensorPayload(name: e.module + ".gram", dtype: .f32, shape: [h, h], contents: .floats(e.gram.elements)))
            var count = UInt64(e.tokenCount).littleEndian
            let bytes = withUnsafeBytes(of: &count) { Array($0) }
            payloads.append(TensorPayload(name: e.module + ".count", dtype: .i64, shape: [1], contents: .bytes(bytes)))
            if let x = e.inputs {
                payloads.append(TensorPayload(name: e.module + ".inputs", dtype: .f32, shape: [x.columns, x.rows],
                                              contents: .floats(x.elements)))
            }
        }
        var metadata: [String: String] = [:]
        if !aliases.isEmpty {
            let data = try! JSONSerialization.data(withJSONObject: aliases, options: [.sortedKeys])
            metadata[aliasesKey] = String(decoding: data, as: UTF8.self)
        }
        do { try SafetensorsFile.write(payloads, metadata: metadata, to: url) } catch { throw .checkpoint("\(error)") }
    }
}
