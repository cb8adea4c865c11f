import Foundation
import LinearAlgebra
import ModelProfiles

/// The normalised singular-value spectrum `deltaplan synth` gives a delta, fitted to the real
/// development pair (MiniLM-L6 fine-tuned on the King James Bible: `Benchmarks/synth_spectrum_fit.py`,
/// BENCHMARKS.md "synth").
///
/// For an m × n delta with r = min(m, n), aspect c = r / max(m, n) and relative index
/// tᵢ = (i + ½) / r, i = 0 ..< r:
///
///     σᵢ ∝ (tᵢ + t_h)^(−p) · E_c(tᵢ)^g,   scaled to Σ σᵢ² = 1,
///
/// - (t + t_h)^(−p): the head and the power-law decay; p is the decay exponent, t_h flattens
///   the leading values (the head's width, as a fraction of the rank);
/// - E_c(t): the Marchenko–Pastur singular-value quantile of a white r × max(m, n) matrix (the
///   value a fraction t of its singular values exceed) over its largest value: the knee and the
///   long tail, 1 at t = 0 falling to 0 at t = 1 for a square matrix and to (1 − √c)/(1 + √c)
///   for a rectangular one; g sharpens that edge.
///
/// No constant floor: the tail falls with the edge (a floor put half the energy of a 4096-wide
/// delta into flat noise, where a sign code is near optimal). The BF16 rounding of a stored pair
/// adds the floor real checkpoints have.
///
/// **Scaling assumption.** Every parameter lives on the relative index t: a delta of rank 4096
/// has the dev pair's normalised shape (rank 384) stretched over its rank, as the white part of
/// a random matrix does (Marchenko–Pastur), rather than the same number of leading vectors.
/// At Llama-2-7B's shapes the central parameters then put 2.5% / 27% / 55% / 93% of a
/// 4096 × 4096 delta's energy in its top 2 / 34 / 128 / 968 vectors (MLP 11008 × 4096: 3% / 23%
/// / 44% / 86%), and 90% of it needs rank 756 (MLP 1219): high-rank, as published analyses of
/// full fine-tuning deltas find. The dev pair cannot tell this from the opposite assumption
/// (a fixed number of head vectors), which would make full-size deltas far more concentrated.
///
/// Parameters per layer type, drawn per matrix: p ~ N(μ_p, s_p²) and ln(t_h + 0.001) ~
/// N(μ_h, s_h²) with correlation ρ (each standard normal clamped to ±2), g fixed: the mean,
/// spread and correlation of the per-matrix least-squares fits (attention from q, k, v and the
/// attention output; MLP from the intermediate and output projections).
public struct DeltaSpectrum: Sendable, Hashable {
    /// Decay exponent p.
    public var exponent: Double
    /// Head width t_h, a fraction of the rank (≥ 0).
    public var head: Double
    /// Edge exponent g.
    public var edge: Double

    public init(exponent: Double, head: Double, edge: Double) {
        precondition(exponent >= 0 && head >= 0 && edge >= 0, "DeltaSpectrum parameters must be non-negative")
        self.exponent = exponent
        self.head = head
        self.edge = edge
    }

    /// The fitted distribution of one layer type's parameters.
    public struct Family: Sendable, Hashable {
        public var exponentMean: Double, exponentSD: Double
        /// Of ln(t_h + 0.001).
        public var logHeadMean: Double, logHeadSD: Double
        public var correlation: Double
        public var edge: Double

        /// The central member: both standard normals at 0.
        public var central: DeltaSpectrum { member(0, 0) }

        /// The member at standard normals (z₁, z₂), each clamped to ±2.
        public func member(_ z1: Double, _ z2: Double) -> DeltaSpectrum {
            let a = min(2, max(-2, z1)), b = min(2, max(-2, z2))
            let logHead = logHeadMean + logHeadSD * (correlation * a + (1 - correlation * correlation).squareRoot() * b)
            return DeltaSpectrum(exponent: max(0, exponentMean + exponentSD * a), head: max(0, exp(logHead) - Self.headOffset),
                                 edge: edge)
        }

        /// A member drawn with two Gaussians from `generator`.
        public func draw(using generator: inout Xoshiro256) -> DeltaSpectrum {
            let z1 = generator.gaussian(), z2 = generator.gaussian()
            return member(z1, z2)
        }

        static let headOffset = 0.001
    }

    /// Fitted to the 24 attention matrices of the development pair (384 × 384).
    public static let attention = Family(exponentMean: 0.539, exponentSD: 0.0693, logHeadMean: -4.79, logHeadSD: 1.10,
                                         correlation: 0.752, edge: 1.05)
    /// Fitted to the 12 MLP matrices of the development pair (1536 × 384 and 384 × 1536).
    public static let mlp = Family(exponentMean: 0.322, exponentSD: 0.0523, logHeadMean: -6.22, logHeadSD: 0.670,
                                   correlation: 0.601, edge: 1.78)

    /// The family of a layer type (`other`, which profiles do not plan, takes the attention one).
    public static func family(of type: LayerType) -> Family {
        type == .mlp ? mlp : attention
    }

    /// σ₀ ≥ σ₁ ≥ … > 0, min(rows, columns) of them, with Σ σᵢ² = 1. O(r + 4096).
    public func values(rows: Int, columns: Int) -> [Double] {
        let r = min(rows, columns)
        guard r > 0 else { return [] }
        let shape = Self.edgeProfile(aspect: Double(r) / Double(max(rows, columns)), count: r)
        var sigma = (0..<r).map { i in
            let t = (Double(i) + 0.5) / Double(r)
            return pow(t + head, -exponent) * pow(shape[i], edge)
        }
        let norm = sigma.reduce(0) { $0 + $1 * $1 }.squareRoot()
        for i in sigma.indices { sigma[i] /= norm }
        return sigma
    }

    /// E_c(tᵢ), tᵢ = (i + ½)/count: the Marchenko–Pastur singular-value quantile for aspect c
    /// (density √((s₊² − s²)(s² − s₋²)) / (π c s) on [s₋, s₊] = [1 − √c, 1 + √c]) over s₊,
    /// decreasing from about 1 towards s₋/s₊.
    ///
    /// The CDF by the trapezoid rule on 4096 panels after s = s₋ + (s₊ − s₋)(1 − cos u)/2 (which
    /// removes the square-root edges), inverted by linear interpolation: within 3·10⁻⁷ relative
    /// of a 2²⁰-panel reference at r = 4096 for c = 1, 0.372 and 0.25.
    static func edgeProfile(aspect: Double, count: Int) -> [Double] {
        let c = min(1, max(1e-12, aspect))
        let lo = 1 - c.squareRoot(), hi = 1 + c.squareRoot()
        let panels = 4096
        let du = Double.pi / Double(panels)
        var s = [Double](repeating: 0, count: panels + 1), f = s
        for j in 0...panels {
            let u = Double(j) * du
            s[j] = lo + (hi - lo) * (1 - cos(u)) / 2
            let ds = (hi - lo) * sin(u) / 2
            let product = max(0, (hi * hi - s[j] * s[j]) * (s[j] * s[j] - lo * lo))
            let density = s[j] > 0 ? product.squareRoot() / (Double.pi * c * s[j]) : 2 / Double.pi
            f[j] = density * ds
        }
        // above[j]: the fraction of values above s[j], from 1 (j = 0) down to 0 (j = panels).
        var cumulative = [Double](repeating: 0, count: panels + 1)
        for j in 1...panels { cumulative[j] = cumulative[j - 1] + (f[j] + f[j - 1]) / 2 * du }
        let total = cumulative[panels]
        let above = cumulative.map { 1 - $0 / total }
        var out = [Double](repeating: 0, count: count)
        var j = panels  // above[j] ≤ t ≤ above[j - 1] as t grows and j falls
        for i in 0..<count {
            let t = (Double(i) + 0.5) / Double(count)
            while j > 1 && above[j - 1] < t { j -= 1 }
            let (a0, a1) = (above[j - 1], above[j])
            let w = a0 > a1 ? (a0 - t) / (a0 - a1) : 0
            out[i] = (s[j - 1] + w * (s[j] - s[j - 1])) / hi
        }
        return out
    }
}
