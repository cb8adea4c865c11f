import Foundation

/// The kind of block a weight matrix belongs to. The paper keeps one allocation per kind
/// (its released script has one set of column counts for attention and one for MLP).
public enum LayerType: String, Codable, Sendable, CaseIterable, Comparable {
    case attention
    case mlp
    /// Anything else a user selects explicitly: embeddings, `lm_head`.
    case other

    public static func < (a: LayerType, b: LayerType) -> Bool { a.rawValue < b.rawValue }
}

/// A model architecture: the names and shapes of its tensors, as a Hugging Face checkpoint of
/// that model has them. Loaded from `Profiles/models/NAME.json`.
///
/// Names may contain `{layer}`, expanded for every layer index `0..<layers`. Shapes follow
/// PyTorch's `nn.Linear.weight`: `[out_features, in_features]`, i.e. `[h_out, h_in]`.
public struct ModelProfile: Codable, Sendable, Equatable {
    /// A linear projection whose delta DeltaPlan compresses.
    public struct MatrixTemplate: Codable, Sendable, Equatable {
        public var name: String
        public var type: LayerType
        /// Matrices of one layer with the same `input` read the same activations (q/k/v, gate/up),
        /// so they can share one calibration entry.
        public var input: String
        public var shape: [Int]
    }

    /// Any other tensor of the checkpoint (embeddings, norms, biases, `lm_head`).
    public struct TensorTemplate: Codable, Sendable, Equatable {
        public var name: String
        public var shape: [Int]
    }

    public var name: String
    public var description: String
    public var family: String
    public var layers: Int
    /// The dtype checkpoints of this model usually come in (`BF16`, `F16`, `F32`).
    public var dtype: String
    public var matrices: [MatrixTemplate]
    public var tensors: [TensorTemplate]
}

/// One matrix of a profile, with its layer index substituted.
public struct ProfileMatrix: Sendable, Equatable {
    public var name: String
    public var layer: Int
    public var type: LayerType
    /// The calibration input group, unique per layer: e.g. `model.layers.3.attention`.
    public var inputGroup: String
    /// h_out (rows of ΔW).
    public var rows: Int
    /// h_in (columns of ΔW, the width of the layer input).
    public var columns: Int
}

/// One non-planned tensor of a profile, with its layer index substituted.
public struct ProfileTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
}

extension ModelProfile {
    static let layerPlaceholder = "{layer}"

    /// Every planned matrix, layer by layer in profile order.
    public func expandedMatrices() -> [ProfileMatrix] {
        expand(matrices) { template, name, layer in
            let prefix = name.split(separator: ".").dropLast(2).joined(separator: ".")
            return ProfileMatrix(
                name: name, layer: layer ?? 0, type: template.type,
                inputGroup: prefix.isEmpty ? template.input : "\(prefix).\(template.input)",
                rows: template.shape[0], columns: template.shape[1])
        }
    }

    /// Every other tensor: global ones first in profile order, then per-layer ones.
    public func expandedTensors() -> [ProfileTensor] {
        expand(tensors) { template, name, _ in ProfileTensor(name: name, shape: template.shape) }
    }

    private func expand<T, R>(_ templates: [T], _ make: (T, String, Int?) -> R) -> [R]
    where T: ProfileTemplate {
        var global: [R] = [], perLayer: [R] = []
        for t in templates where !t.name.contains(Self.layerPlaceholder) {
            global.append(make(t, t.name, nil))
        }
        for layer in 0..<layers {
            for t in templates where t.name.contains(Self.layerPlaceholder) {
                perLayer.append(make(t, t.name.replacingOccurrences(of: Self.layerPlaceholder, with: String(layer)), layer))
            }
        }
        return global + perLayer
    }

    /// The same architecture with every dimension multiplied by `factor` (rounded, at least 1)
    /// and, if given, a different number of layers. Equal dimensions stay equal, so square
    /// projections stay square; used to make small synthetic models with realistic proportions.
    public func scaled(by factor: Double, layers newLayers: Int? = nil) -> ModelProfile {
        precondition(factor > 0 && factor.isFinite, "scale factor must be positive and finite")
        func scale(_ d: Int) -> Int { max(1, Int((Double(d) * factor).rounded())) }
        var copy = self
        copy.layers = newLayers ?? layers
        copy.matrices = matrices.map { var m = $0; m.shape = m.shape.map(scale); return m }
        copy.tensors = tensors.map { var t = $0; t.shape = t.shape.map(scale); return t }
        if factor != 1 || newLayers != nil {
            copy.name = "\(name)-scaled"
            copy.description = "\(description) Scaled by \(factor) with \(copy.layers) layers."
        }
        return copy
    }
}

protocol ProfileTemplate { var name: String { get } }
extension ModelProfile.MatrixTemplate: ProfileTemplate {}
extension ModelProfile.TensorTemplate: ProfileTemplate {}
