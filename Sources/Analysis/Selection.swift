import Foundation
import ModelProfiles

/// Which tensors of a checkpoint `analyze` decomposes.
///
/// A tensor is selected when it is 2-D, matches one of the `include` patterns and none of the
/// `exclude` patterns. The default `include` covers the linear projections of attention and MLP
/// blocks of Llama/Mistral-style models (`q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`)
/// and of BERT-style models (`query key value attention.output.dense intermediate.dense
/// output.dense`); embeddings, norms and `lm_head` are selected only when included explicitly.
public struct Selection: Sendable {
    public static let defaultIncludePatterns = [
        #"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$"#,
        #"\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)\.weight$"#,
    ]

    public let includePatterns: [String]
    public let excludePatterns: [String]
    private let include: [NSRegularExpression]
    private let exclude: [NSRegularExpression]

    /// - Parameters:
    ///   - include: regular expressions (ICU syntax, unanchored); empty means the default patterns.
    ///   - exclude: regular expressions; a tensor matching any of them is never selected.
    public init(include: [String] = [], exclude: [String] = []) throws(AnalysisError) {
        includePatterns = include.isEmpty ? Self.defaultIncludePatterns : include
        excludePatterns = exclude
        func compile(_ patterns: [String], _ option: String) throws(AnalysisError) -> [NSRegularExpression] {
            var result: [NSRegularExpression] = []
            for p in patterns {
                do { result.append(try NSRegularExpression(pattern: p)) } catch {
                    throw .invalidOption(option, "'\(p)' is not a valid regular expression")
                }
            }
            return result
        }
        self.include = try compile(includePatterns, "--include")
        self.exclude = try compile(excludePatterns, "--exclude")
    }

    /// Whether a tensor of this name and shape is selected.
    public func selects(_ name: String, shape: [Int]) -> Bool {
        shape.count == 2 && matches(name)
    }

    /// Whether the name passes the patterns, whatever the shape.
    public func matches(_ name: String) -> Bool {
        func any(_ list: [NSRegularExpression]) -> Bool {
            let range = NSRange(name.startIndex..., in: name)
            return list.contains { $0.firstMatch(in: name, range: range) != nil }
        }
        return any(include) && !any(exclude)
    }

    /// The layer type a projection belongs to, from its name.
    public static func layerType(of name: String) -> LayerType {
        let attention = [".q_proj.", ".k_proj.", ".v_proj.", ".o_proj.", ".attention."]
        let mlp = [".gate_proj.", ".up_proj.", ".down_proj.", ".mlp.", ".intermediate.", ".output.dense."]
        if attention.contains(where: name.contains) { return .attention }
        if mlp.contains(where: name.contains) { return .mlp }
        return .other
    }

    /// The module name a calibration entry is keyed by: the weight name without `.weight`.
    public static func moduleName(of weightName: String) -> String {
        weightName.hasSuffix(".weight") ? String(weightName.dropLast(".weight".count)) : weightName
    }
}
