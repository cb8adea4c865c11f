import Checkpoint
import Foundation
import ModelProfiles

/// Why a llama.cpp imatrix could not be imported; every case names the file and the tensor.
public enum ImatrixError: Error, Equatable, Sendable {
    /// `general.type` is missing or not `imatrix`.
    case notAnImatrix(file: String, type: String?)
    /// A weight with `.in_sum2` but no `.counts`, or the reverse.
    case incompleteEntry(file: String, weight: String, missing: String)
    /// A mixture-of-experts weight: one sum and count per expert (n_mat > 1).
    case mixtureOfExperts(file: String, tensor: String, experts: Int)
    /// `shape` in ggml's `ne` order (innermost first).
    case wrongShape(file: String, tensor: String, dimensions: [Int], expected: String)
    case wrongType(file: String, tensor: String, type: String)
    /// A count that is not a finite number ≥ 1 (0: the weight saw no activations).
    case invalidCount(file: String, tensor: String, value: Float)
    /// A sum of squares that is negative or not finite.
    case invalidSum(file: String, tensor: String, index: Int, value: Float)
    /// Weights whose names map to no Hugging Face module, all of them (use --skip-unknown to skip them).
    case unknownNames(file: String, names: [String])
    /// The profile is not of the Llama family, whose names the import knows.
    case profileNotSupported(profile: String, family: String)
    /// The module is not a matrix of the profile (a layer past its last one, say).
    case notInProfile(file: String, tensor: String, module: String, profile: String)
    /// The sums' length differs from the profile's h_in for the module.
    case widthMismatch(file: String, tensor: String, module: String, expected: Int, found: Int, profile: String)
    /// Nothing was left to import.
    case nothingImported(file: String)
}

extension ImatrixError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .notAnImatrix(file, type):
            "\(file): not a llama.cpp imatrix (general.type is \(type.map { "'\($0)'" } ?? "missing"), not 'imatrix')"
        case let .incompleteEntry(file, weight, missing): "\(file): \(weight) has no \(weight)\(missing)"
        case let .mixtureOfExperts(file, tensor, experts):
            "\(file): \(tensor) holds \(experts) experts (a mixture-of-experts weight): importing MoE imatrices is not supported"
        case let .wrongShape(file, tensor, dimensions, expected): "\(file): \(tensor) has ne \(dimensions), expected \(expected)"
        case let .wrongType(file, tensor, type): "\(file): \(tensor) is \(type), expected F32"
        case let .invalidCount(file, tensor, value):
            "\(file): \(tensor) is \(value); a count must be a finite number of at least 1 (0 means no activations were seen)"
        case let .invalidSum(file, tensor, index, value):
            "\(file): \(tensor)[\(index)] is \(value); a sum of squares must be finite and non-negative"
        case let .unknownNames(file, names):
            "\(file): \(names.count) weight(s) have no Hugging Face module name: \(names.joined(separator: ", "))"
                + " (--skip-unknown skips and lists them)"
        case let .profileNotSupported(profile, family):
            "profile \(profile) is of the \(family) family; the imatrix import knows the names of the llama family only"
        case let .notInProfile(file, tensor, module, profile): "\(file): \(tensor) maps to \(module), which profile \(profile) does not have"
        case let .widthMismatch(file, tensor, module, expected, found, profile):
            "\(file): \(tensor) has \(found) input channels, but \(module) of profile \(profile) has h_in \(expected)"
        case let .nothingImported(file): "\(file): no weight left to import"
        }
    }
}

/// `deltaplan calibration import-imatrix`: a llama.cpp importance matrix (the GGUF imatrix that
/// `llama-imatrix` writes) as a diagonal calibration file.
///
/// llama.cpp's imatrix (tools/imatrix/imatrix.cpp) holds, per weight `W` (`blk.N.attn_q.weight`):
/// `W.in_sum2`, F32 `ne = [n_embd]` (`[n_embd, n_mat]` for experts), the **sum** over every
/// activation x of x² per input channel — not a mean: the GGUF format stores the running sums, and
/// only the legacy `.dat` format divided by the count — and `W.counts`, F32 `[1]` (`[1, n_mat]`),
/// the number of activations (token rows) summed; an optional `W.in_sum` (Σ x) is not needed for
/// H and is ignored. So diag(H) = Σ x x² = `in_sum2` exactly, and N = `counts`: each weight
/// becomes an entry with a 1-D `.gram` (F32, as stored) and `.count` (I64, the count rounded as
/// llama.cpp rounds it when it reads one). q/k/v and gate/up each have their own sums in the file
/// (the same input, summed once per weight); they are kept per weight, without aliases.
///
/// Names map to the Hugging Face Llama layout: `blk.N.attn_q|attn_k|attn_v|attn_output` →
/// `model.layers.N.self_attn.q_proj|k_proj|v_proj|o_proj`, `blk.N.ffn_gate|ffn_up|ffn_down` →
/// `model.layers.N.mlp.gate_proj|up_proj|down_proj`, `output` → `lm_head`. llama.cpp's
/// conversion permutes the rows of q and k (their outputs), never their input channels, so the
/// sums need no reordering. Any other name is an error listing all of them, or, with
/// `skipUnknown`, skipped and listed in the report. Mixture-of-experts weights are refused.
public struct ImatrixImport: Sendable {
    public static let sumsSuffix = ".in_sum2"
    public static let countsSuffix = ".counts"
    public static let meansSuffix = ".in_sum"
    /// llama.cpp's per-layer tensor names → the Hugging Face Llama module below `model.layers.N`.
    public static let layerModules: [String: String] = [
        "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
    ]
    public static let supportedFamily = "llama"

    public var source: URL
    /// When given, checks every module against the profile (it must be of the Llama family).
    public var profile: ModelProfile?
    /// Skip (and list) weights with unknown names instead of failing.
    public var skipUnknown: Bool

    public init(source: URL, profile: ModelProfile? = nil, skipUnknown: Bool = false) {
        self.source = source
        self.profile = profile
        self.skipUnknown = skipUnknown
    }

    public struct Report: Sendable, Equatable {
        /// The modules written, in natural order.
        public var modules: [String]
        /// llama.cpp weight names skipped (unknown names with `skipUnknown`).
        public var skipped: [String]
        /// `imatrix.datasets`, `imatrix.chunk_count` and `imatrix.chunk_size` when present.
        public var datasets: [String]
        public var chunkCount: Int?
        public var chunkSize: Int?
        /// The largest token count of any module.
        public var tokens: Int
    }

    /// The Hugging Face module of a llama.cpp weight name (`blk.3.ffn_down.weight` →
    /// `model.layers.3.mlp.down_proj`), nil when the name is not one of the known ones.
    public static func moduleName(forWeight name: String) -> String? {
        if name == "output.weight" { return "lm_head" }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == "blk", parts[3] == "weight", let layer = Int(parts[1]), layer >= 0,
              String(layer) == parts[1], let module = layerModules[String(parts[2])]
        else { return nil }
        return "model.layers.\(layer).\(module)"
    }

    /// Reads and checks the imatrix, then writes the calibration file `out` (atomically).
    @discardableResult
    public func run(to out: URL) throws(AnalysisError) -> Report {
        if let profile, profile.family != Self.supportedFamily {
            throw .imatrix(.profileNotSupported(profile: profile.name, family: profile.family))
        }
        let file: GGUFFile
        do { file = try GGUFFile(contentsOf: source) } catch { throw .gguf(error) }
        let (entries, report): ([CalibrationEntry], Report)
        do { (entries, report) = try read(file) } catch { throw .imatrix(error) }
        var description = "llama.cpp imatrix \(source.lastPathComponent)"
        var details: [String] = []
        if !report.datasets.isEmpty { details.append("datasets: " + report.datasets.joined(separator: ", ")) }
        if let chunks = report.chunkCount, let size = report.chunkSize { details.append("\(chunks) chunks of \(size) tokens") }
        if !details.isEmpty { description += " (" + details.joined(separator: "; ") + ")" }
        try CalibrationSet.write(entries, metadata: CalibrationMetadata(source: description), to: out)
        return report
    }

    /// The entries of a validated imatrix, and what the report says about it.
    func read(_ file: GGUFFile) throws(ImatrixError) -> ([CalibrationEntry], Report) {
        let path = source.path
        let type = file.value("general.type")
        guard type?.stringValue == "imatrix" else { throw .notAnImatrix(file: path, type: type.map { $0.stringValue ?? $0.summary }) }

        // Group tensors by weight; anything else is a name the import does not know.
        var sums: [String: GGUFTensorInfo] = [:], counts: [String: GGUFTensorInfo] = [:]
        var unknown: [String] = []
        for tensor in file.tensors {
            if tensor.name.hasSuffix(Self.sumsSuffix) {
                sums[String(tensor.name.dropLast(Self.sumsSuffix.count))] = tensor
            } else if tensor.name.hasSuffix(Self.countsSuffix) {
                counts[String(tensor.name.dropLast(Self.countsSuffix.count))] = tensor
            } else if !tensor.name.hasSuffix(Self.meansSuffix) {
                unknown.append(tensor.name)
            }
        }
        var entries: [CalibrationEntry] = []
        let weights = Set(sums.keys).union(counts.keys).sorted(by: Analyzer.naturalOrder)
        for weight in weights {
            guard let sum = sums[weight] else { throw .incompleteEntry(file: path, weight: weight, missing: Self.sumsSuffix) }
            guard let count = counts[weight] else { throw .incompleteEntry(file: path, weight: weight, missing: Self.countsSuffix) }
            let width = try Self.checkShapes(sum: sum, count: count, path: path)
            guard let module = Self.moduleName(forWeight: weight) else {
                unknown.append(weight)
                continue
            }
            if let profile { try Self.check(module, width: width, tensor: sum.name, against: profile, path: path) }
            entries.append(try Self.entry(module, sum: sum, count: count, in: file))
        }
        unknown.sort(by: Analyzer.naturalOrder)
        if !unknown.isEmpty && !skipUnknown { throw .unknownNames(file: path, names: unknown) }
        guard !entries.isEmpty else { throw .nothingImported(file: path) }

        let report = Report(
            modules: entries.map(\.module), skipped: skipUnknown ? unknown : [],
            datasets: file.value("imatrix.datasets")?.stringArray ?? [],
            chunkCount: file.value("imatrix.chunk_count")?.integerValue, chunkSize: file.value("imatrix.chunk_size")?.integerValue,
            tokens: entries.map(\.tokenCount).max() ?? 0)
        return (entries, report)
    }

    /// Checks the layout of a weight's sums and counts; returns its width n_embd.
    static func checkShapes(sum: GGUFTensorInfo, count: GGUFTensorInfo, path: String) throws(ImatrixError) -> Int {
        for t in [sum, count] where t.type != .f32 { throw .wrongType(file: path, tensor: t.name, type: t.type.name) }
        guard (1...2).contains(sum.dimensions.count), sum.dimensions.allSatisfy({ $0 > 0 }) else {
            throw .wrongShape(file: path, tensor: sum.name, dimensions: sum.dimensions, expected: "[n_embd] or [n_embd, n_mat]")
        }
        let matrices = sum.dimensions.count == 2 ? sum.dimensions[1] : 1
        if matrices > 1 || count.elementCount > 1 {
            throw .mixtureOfExperts(file: path, tensor: sum.name, experts: max(matrices, count.elementCount))
        }
        guard count.elementCount == 1 else {
            throw .wrongShape(file: path, tensor: count.name, dimensions: count.dimensions, expected: "[1]")
        }
        return sum.dimensions[0]
    }

    static func check(_ module: String, width: Int, tensor: String, against profile: ModelProfile, path: String) throws(ImatrixError) {
        let name = module + ".weight"
        let shape = profile.expandedMatrices().first { $0.name == name }.map { [$0.rows, $0.columns] }
            ?? profile.expandedTensors().first { $0.name == name }?.shape
        guard let shape, shape.count == 2 else {
            throw .notInProfile(file: path, tensor: tensor, module: module, profile: profile.name)
        }
        guard shape[1] == width else {
            throw .widthMismatch(file: path, tensor: tensor, module: module, expected: shape[1], found: width, profile: profile.name)
        }
    }

    static func entry(_ module: String, sum: GGUFTensorInfo, count: GGUFTensorInfo, in file: GGUFFile) throws(ImatrixError) -> CalibrationEntry {
        let path = file.url.path
        let diagonal: [Float], n: Float
        do {
            diagonal = try file.floats(sum.name)
            n = try file.floats(count.name)[0]
        } catch { preconditionFailure("validated F32 tensor unreadable: \(error)") }
        guard n.isFinite, n.rounded() >= 1 else { throw .invalidCount(file: path, tensor: count.name, value: n) }
        if let bad = diagonal.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw .invalidSum(file: path, tensor: sum.name, index: bad, value: diagonal[bad])
        }
        return CalibrationEntry(module: module, gram: .diagonal(diagonal), tokenCount: Int(n.rounded()))
    }
}
