import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles

/// A synthetic base / fine-tuned checkpoint pair and its calibration file, shaped like a profile.
///
/// What it models:
/// - base weights: N(0, 0.02²) projections and embeddings, norms near 1, small biases;
/// - each projection's delta ΔW = U·diag(σ)·Vᵀ with Haar-random orthonormal U and V (QR of
///   Gaussian matrices) and a long-tailed spectrum σᵢ ∝ (i + 1)^(−p) + f: a power law (p ≈ 0.85
///   for attention, 0.65 for MLP, ±0.1 per matrix) over a noise floor f = 0.03, scaled so that
///   ‖ΔW‖_F is 3% of ‖W_base‖_F in the first layer rising to 4.5% in the last;
/// - non-projection tensors change by N(0, 0.001²) in fine-tuning (they are carried, not planned);
/// - both checkpoints are stored in `dtype` (BF16 by default), so the delta read back carries the
///   rounding of both sides, as real BF16 deltas do;
/// - calibration: per layer input (shared by q/k/v, by gate/up), `tokens` activations
///   x = z + B·w (z ~ N(0, I), a rank-8 correlated part B·w) with 1% of the channels (at least
///   one) scaled by 20, as the outlier channels of real LLM activations; the Gram Σ x xᵀ over all
///   tokens and the first `sampleRows` rows as `.inputs`.
///
/// What it does not model: the structure of real fine-tuning deltas beyond their spectrum
/// (aligned singular vectors across layers, sparsity), real token statistics, attention.
/// Deterministic for a seed: every tensor draws from its own generator seeded by the seed and
/// the tensor's name.
public struct SyntheticPair: Sendable {
    public var profile: ModelProfile
    public var seed: UInt64
    public var dtype: DType
    public var tokens: Int
    public var sampleRows: Int
    public var maxShardBytes: Int

    public init(profile: ModelProfile, seed: UInt64 = 0, dtype: DType = .bf16, tokens: Int = 512,
                sampleRows: Int = 128, maxShardBytes: Int = 5 << 30) {
        precondition(dtype.isFloatingPoint, "synthetic checkpoints are floating point")
        precondition(tokens > 0 && sampleRows >= 0)
        self.profile = profile
        self.seed = seed
        self.dtype = dtype
        self.tokens = tokens
        self.sampleRows = sampleRows
        self.maxShardBytes = maxShardBytes
    }

    /// The three paths `write(to:)` creates inside its directory.
    public struct Paths: Sendable {
        public var base: URL
        public var finetuned: URL
        public var calibration: URL

        public init(in directory: URL) {
            base = directory.appendingPathComponent("base")
            finetuned = directory.appendingPathComponent("finetuned")
            calibration = directory.appendingPathComponent("calibration.safetensors")
        }
    }

    /// Writes `base/`, `finetuned/` and `calibration.safetensors` into `directory`, one tensor at
    /// a time. `progress(done, total, name)` is called after each tensor.
    @discardableResult
    public func write(to directory: URL, progress: (Int, Int, String) -> Void = { _, _, _ in }) throws(AnalysisError) -> Paths {
        let paths = Paths(in: directory)
        let matrices = profile.expandedMatrices()
        let others = profile.expandedTensors()
        let declarations = matrices.map { TensorDeclaration(name: $0.name, dtype: dtype, shape: [$0.rows, $0.columns]) }
            + others.map { TensorDeclaration(name: $0.name, dtype: dtype, shape: $0.shape) }
        let metadata = ["format": "pt", "generator": "deltaplan synth", "profile": profile.name, "seed": String(seed)]
        do {
            let base = try ShardedCheckpointWriter(directory: paths.base, tensors: declarations,
                                                   maxShardBytes: maxShardBytes, metadata: metadata)
            let finetuned = try ShardedCheckpointWriter(directory: paths.finetuned, tensors: declarations,
                                                        maxShardBytes: maxShardBytes, metadata: metadata)
            let total = matrices.count + others.count + 1
            var done = 0
            for (i, m) in matrices.enumerated() {
                let w = Matrix<Float>.gaussian(rows: m.rows, columns: m.columns, sigma: 0.02, using: generator(m.name, "base"))
                let delta = self.delta(for: m, baseNorm: w.frobeniusNorm)
                // Checkpoints are row-major [h_out, h_in]: the column-major h_in × h_out transpose's elements.
                try base.write(m.name, floats: w.transposed().elements)
                try finetuned.write(m.name, floats: Self.sum(w, delta).transposed().elements)
                done += 1
                progress(done, total, matrices[i].name)
            }
            for t in others {
                let count = t.shape.reduce(1, *)
                let g = generator(t.name, "base")
                let isNorm = t.name.lowercased().contains("norm") && t.name.hasSuffix(".weight")
                let isBias = t.name.hasSuffix(".bias")
                let values = (0..<count).map { _ in Float(isNorm ? 1 + g.gaussian(sigma: 0.01) : g.gaussian(sigma: isBias ? 0.01 : 0.02)) }
                let change = generator(t.name, "finetune")
                try base.write(t.name, floats: values)
                try finetuned.write(t.name, floats: values.map { $0 + Float(change.gaussian(sigma: 0.001)) })
                done += 1
                progress(done, total, t.name)
            }
            try base.finish()
            try finetuned.finish()
            try writeCalibration(to: paths.calibration, matrices: matrices)
            progress(total, total, paths.calibration.lastPathComponent)
        } catch let error as AnalysisError {
            throw error
        } catch {
            throw .checkpoint("\(error)")
        }
        return paths
    }

    /// The generator of one tensor: seeded by the pair's seed and a stable hash of the name and role.
    func generator(_ name: String, _ role: String) -> SeededGenerator {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in (role + ":" + name).utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return SeededGenerator(seed: hash)
    }

    /// ΔW of one projection (see the type's documentation for the model).
    func delta(for m: ProfileMatrix, baseNorm: Double) -> Matrix<Float> {
        let g = generator(m.name, "delta")
        let r = min(m.rows, m.columns)
        let exponent = (m.type == .attention ? 0.85 : 0.65) + 0.2 * (g.uniform() - 0.5)
        let floor = 0.03
        var sigma = (0..<r).map { pow(Double($0 + 1), -exponent) + floor }
        let depth = profile.layers > 1 ? Double(m.layer) / Double(profile.layers - 1) : 0
        let target = (0.03 + 0.015 * depth) * baseNorm
        let norm = sigma.reduce(0) { $0 + $1 * $1 }.squareRoot()
        sigma = sigma.map { $0 * target / norm }
        let u = checked { try qr(Matrix<Float>.gaussian(rows: m.rows, columns: r, using: g)).q }
        var v = checked { try qr(Matrix<Float>.gaussian(rows: m.columns, columns: r, using: g)).q }
        // V·diag(σ), then ΔW = U·(V·diag(σ))ᵀ.
        v.withUnsafeMutableBufferPointer { p in
            for j in 0..<r { for i in 0..<m.columns { p[j * m.columns + i] *= Float(sigma[j]) } }
        }
        return checked { try multiply(u, v, transposeB: true) }
    }

    static func sum(_ a: Matrix<Float>, _ b: Matrix<Float>) -> Matrix<Float> {
        var c = a
        c.withUnsafeMutableBufferPointer { pc in
            b.withUnsafeBufferPointer { pb in for i in pc.indices { pc[i] += pb[i] } }
        }
        return c
    }

    private func writeCalibration(to url: URL, matrices: [ProfileMatrix]) throws(AnalysisError) {
        var entries: [CalibrationEntry] = [], aliases: [String: String] = [:], owner: [String: String] = [:]
        for m in matrices {
            let module = Selection.moduleName(of: m.name)
            if let first = owner[m.inputGroup] {
                aliases[module] = first
                continue
            }
            owner[m.inputGroup] = module
            let x = activations(width: m.columns, group: m.inputGroup)
            let sample = x.columnSlice(0..<min(sampleRows, tokens)).matrix
            entries.append(CalibrationEntry(module: module, gram: gram(x), tokenCount: tokens,
                                            inputs: sampleRows > 0 ? sample : nil))
        }
        try CalibrationSet.write(entries, aliases: aliases, to: url)
    }

    /// X, width × tokens: correlated activations with outlier channels.
    func activations(width h: Int, group: String) -> Matrix<Float> {
        let g = generator(group, "activations")
        let rank = min(8, h)
        let mixing = Matrix<Float>.gaussian(rows: h, columns: rank, sigma: 1 / Double(rank).squareRoot(), using: g)
        let latent = Matrix<Float>.gaussian(rows: rank, columns: tokens, sigma: 1.5, using: g)
        var x = Self.sum(Matrix<Float>.gaussian(rows: h, columns: tokens, using: g), checked { try multiply(mixing, latent) })
        let outliers = max(1, h / 100)
        var channels = Set<Int>()
        while channels.count < outliers { channels.insert(g.uniformInt(below: h)) }
        x.withUnsafeMutableBufferPointer { p in
            for t in 0..<tokens { for c in channels { p[t * h + c] *= 20 } }
        }
        return x
    }
}
