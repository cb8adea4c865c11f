import ModelProfiles

/// Why a plan cannot be expressed as the flags of Delta-CoMe's released compression script.
public enum ExportError: Error, Equatable, CustomStringConvertible {
    /// Matrices of one layer type have different column counts; the script has one set per type.
    case notUniform(type: LayerType, first: String, firstCounts: [Int: Int], other: String, otherCounts: [Int: Int])
    /// The script has no flag (or no quantization path) for this width.
    case unsupportedBits(matrix: String, bits: Int)
    /// A width is used by one layer type but not the other: the script quantizes every width of
    /// `--bits` for both types, and an empty column range would fail there.
    case widthNotShared(bits: Int, usedBy: LayerType)
    case nothingQuantized
    /// A matrix is kept dense (a `keep` pin), which the script cannot express.
    case denseMatrix(matrix: String)

    public var description: String {
        func show(_ c: [Int: Int]) -> String {
            c.keys.sorted(by: >).map { "\($0)-bit: \(c[$0]!)" }.joined(separator: ", ")
        }
        return switch self {
        case let .notUniform(type, first, fc, other, oc):
            "the plan is not uniform per layer type, as the Delta-CoMe script requires: \(type.rawValue) matrices \(first) (\(show(fc))) and \(other) (\(show(oc))) differ; re-plan with --scope type"
        case let .unsupportedBits(matrix, bits):
            "\(matrix) uses \(bits)-bit vectors; the Delta-CoMe script supports 16 (fp16), 8, 4, 3 and 2 bits only"
        case let .widthNotShared(bits, type):
            "\(bits)-bit vectors are used by \(type.rawValue) matrices only; the Delta-CoMe script quantizes each width of --bits for both attention and MLP and cannot take an empty range"
        case .nothingQuantized:
            "the plan has no quantized (8/4/3/2-bit) vectors; the Delta-CoMe script needs at least one width in --bits"
        case let .denseMatrix(matrix):
            "\(matrix) is kept dense (a 'keep' pin); the Delta-CoMe script stores every matrix as singular vectors"
        }
    }
}

extension Plan {
    /// The widths the released Delta-CoMe script (thunlp/Delta-CoMe, `llama.py` / `run.sh`) takes
    /// column counts for, with their flag stem: `--{attn,mlp}_{fp16,int8,int4,int3,int2}_col`.
    /// Its `--attn_int1_col` flags are parsed but no code path quantizes 1-bit columns.
    static let deltaComeWidths: [(bits: Int, stem: String)] = [(16, "fp16"), (8, "int8"), (4, "int4"), (3, "int3"), (2, "int2")]

    /// The per-type column counts as flags of the paper's released compression script, in the order
    /// of its `run.sh`, e.g. `--attn_fp16_col 0 --mlp_fp16_col 0 --attn_int8_col 2 --mlp_int8_col 2 …
    /// --bits 8 3 2`. Every count flag is printed (the script's defaults for int4/3/2 are None).
    /// `--bits` lists the quantized widths used, descending (16-bit columns go through `fp16_col`).
    ///
    /// - Throws: ``ExportError`` when counts differ within a type, a width is unsupported, a
    ///   quantized width is used by only one type, or a matrix is kept dense.
    public func deltaComeFlags() throws(ExportError) -> String {
        var perType: [LayerType: (name: String, counts: [Int: Int])] = [:]
        for m in matrices {
            guard !m.dense else { throw .denseMatrix(matrix: m.name) }
            let counts = m.allocation.counts
            for k in counts.keys where !Self.deltaComeWidths.contains(where: { $0.bits == k }) {
                throw .unsupportedBits(matrix: m.name, bits: k)
            }
            if let first = perType[m.type] {
                guard first.counts == counts else {
                    throw .notUniform(type: m.type, first: first.name, firstCounts: first.counts, other: m.name, otherCounts: counts)
                }
            } else {
                perType[m.type] = (m.name, counts)
            }
        }
        let attention = perType[.attention]?.counts ?? [:], mlp = perType[.mlp]?.counts ?? [:]
        var used: [Int] = []
        for (bits, _) in Self.deltaComeWidths where bits != 16 {
            let a = attention[bits] ?? 0, b = mlp[bits] ?? 0
            if perType[.attention] != nil, perType[.mlp] != nil, (a > 0) != (b > 0) {
                throw .widthNotShared(bits: bits, usedBy: a > 0 ? .attention : .mlp)
            }
            if a > 0 || b > 0 { used.append(bits) }
        }
        guard !used.isEmpty else { throw .nothingQuantized }
        var flags: [String] = []
        for (bits, stem) in Self.deltaComeWidths {
            flags.append("--attn_\(stem)_col \(attention[bits] ?? 0)")
            flags.append("--mlp_\(stem)_col \(mlp[bits] ?? 0)")
        }
        flags.append("--bits " + used.map(String.init).joined(separator: " "))
        return flags.joined(separator: " ")
    }
}
