/// A weight's name read as a layer index and what the matrix is within its layer.
///
/// Hugging Face names put the layer index as a dot-separated component of digits:
/// `model.layers.12.self_attn.q_proj.weight` is layer 12, kind `self_attn.q_proj`;
/// `bert.encoder.layer.3.attention.output.dense.weight` is layer 3, kind `attention.output.dense`.
/// The first all-digit component is the layer (later ones, such as an expert's index, stay in the
/// kind). A name without one (`model.embed_tokens.weight`, `lm_head.weight`) has no layer and its
/// kind is the whole name. A trailing `.weight` is dropped from the kind.
public struct MatrixName: Sendable, Equatable {
    /// The layer index, or nil for a matrix outside the layer stack (embeddings, `lm_head`).
    public var layer: Int?
    /// The components after the layer index (the whole name when there is none), without `.weight`.
    public var kind: String
    /// The name without `.weight` and with the layer index as `{layer}`, as profiles write it:
    /// the same for one kind of matrix in every layer (`model.layers.{layer}.self_attn.q_proj`).
    public var template: String

    public init(_ name: String) {
        var parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 1, parts.last == "weight" { parts.removeLast() }
        if let i = parts.firstIndex(where: { !$0.isEmpty && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }),
           i + 1 < parts.count, let layer = Int(parts[i]) {
            self.layer = layer
            kind = parts[(i + 1)...].joined(separator: ".")
            parts[i] = "{layer}"
        } else {
            layer = nil
            kind = parts.joined(separator: ".")
        }
        template = parts.joined(separator: ".")
    }

    /// Short labels for distinct kinds: each kind's shortest dot-suffix that no other kind ends
    /// with (`q_proj` for `self_attn.q_proj`; `attention.output.dense` stays whole beside
    /// `output.dense`). Falls back to the kinds themselves if the suffixes would collide.
    public static func shortLabels(_ kinds: [String]) -> [String] {
        let split = kinds.map { $0.split(separator: ".", omittingEmptySubsequences: false).map(String.init) }
        func suffix(_ parts: [String], _ k: Int) -> String { parts.suffix(k).joined(separator: ".") }
        let labels = split.enumerated().map { i, parts in
            (1...max(parts.count, 1)).lazy.map { suffix(parts, $0) }.first { candidate in
                split.indices.allSatisfy { j in j == i || !("." + kinds[j]).hasSuffix("." + candidate) }
            } ?? kinds[i]
        }
        return Set(labels).count == labels.count ? labels : kinds
    }
}
