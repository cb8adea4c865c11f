import LinearAlgebra
import ModelProfiles

/// A module's output statistics, as `analyze` and `evaluate` use them (Docs/calibration-format.md).
public enum OutputStatistics: Sendable {
    /// n paired rows: inputs X_s (h_in × n) and output gradients G_s (h_out × n), each row standing
    /// for N / n of the N calibration tokens (`scale`).
    case paired(inputs: Matrix<Float>, grads: Matrix<Float>, scale: Double)
    /// The output Gram G (h_out × h_out) over the same N tokens as H.
    case kronecker(outputGram: Matrix<Float>, tokens: Int)

    public var objective: ErrorObjective {
        switch self {
        case .paired: .paired
        case .kronecker: .kronecker
        }
    }

    /// The statistics of `module` under its strongest objective, nil when it has only H.
    public static func load(module: String, from set: CalibrationSet, entry: String) throws(AnalysisError) -> OutputStatistics? {
        if let (x, g) = try set.pairedSamples(ofModule: module) {
            return .paired(inputs: x, grads: g, scale: Double(set.tokenCount(ofEntry: entry)) / Double(x.columns))
        }
        if let g = try set.outputGram(ofModule: module) {
            return .kronecker(outputGram: g, tokens: set.tokenCount(ofEntry: entry))
        }
        return nil
    }
}

/// What the planner's sensitivity objective needs of one matrix ΔW = Σᵢ σᵢ uᵢ vᵢᵀ (all k vectors,
/// the first r stored).
struct ObjectiveProjection {
    var objective: ErrorObjective
    /// wᵢ, i < r: the objective's cost of the unit error uᵢ vᵢᵀ, so dropping vector i alone costs σᵢ² wᵢ.
    var vectorWeights: [Double]
    /// dropped[j], j = 0…r: the objective's cost of dropping every vector from j on (the stored
    /// ones from j, and all unstored ones); dropped[0] = L(ΔW).
    var dropped: [Double]
    /// droppedFeedback[j], j = 0…r (`paired` only): dropped[j] when error feedback's kept segments
    /// absorb what they can of the dropped stored vectors (their least-squares U under H), see
    /// ``OutputStatistics/feedbackDropped(a:b:sigma:vtHV:unstored:scale:)``. Equal to dropped[j] at
    /// j = 0 (nothing kept) and j = r (nothing stored is dropped).
    var droppedFeedback: [Double]?
    /// The objective's cost of the BitDelta residual ΔW − s·sign(ΔW).
    var bitDeltaError: Double
}

/// Error feedback's Gram V_rᵀ H V_r (`r × r`) symmetrized in Float64 and damped as its least-squares
/// solves are (`dampening` times each positive diagonal entry added to it, the mean positive
/// diagonal for the others); nil when it is not positive definite after that.
public func dampedFeedbackGram(_ g: Matrix<Float>, dampening: Double) -> Matrix<Double>? {
    let r = g.rows
    precondition(g.columns == r)
    let diagonal = (0..<r).map { Double(g[$0, $0]) }
    let positive = diagonal.filter { $0 > 0 }
    let fill = positive.isEmpty ? 1 : positive.reduce(0, +) / Double(positive.count)
    let damped = Matrix<Double>(rows: r, columns: r) { i, j in
        i == j ? max(diagonal[i], 0) + dampening * (diagonal[i] > 0 ? diagonal[i] : fill)
            : (Double(g[i, j]) + Double(g[j, i])) / 2
    }
    guard r > 0, let l = try? cholesky(damped), l.isFinite else { return nil }
    return l
}

/// The dampening of error feedback's least-squares solves, used for the absorbed dropped costs a
/// store records; `QuantizationMethod.defaultDampening` (GPTQ's and feedback's default) is this value.
public let feedbackDampening = 0.01

extension OutputStatistics {
    /// L(E) of an error E (h_out × h_in) under this objective: (N/n) Σₜ (gₜᵀ E xₜ)² for `paired`
    /// (2·h_out·h_in·n flops), tr(G E H Eᵀ) / N for `kronecker`.
    public func error(of e: Matrix<Float>, gram: CalibrationGram) -> Double {
        switch self {
        case let .paired(x, g, scale): return scale * Self.pairedProducts(e, x: x, g: g).reduce(0) { $0 + $1 * $1 }
        case let .kronecker(outputGram, tokens):
            let geh = checked { try multiply(outputGram, gram.rightTimes(e)) }
            return e.withUnsafeBufferPointer { pe in geh.withUnsafeBufferPointer { Analyzer.dot(pe, $0) } } / Double(tokens)
        }
    }

    /// cₜ = gₜᵀ E xₜ for every paired row t.
    private static func pairedProducts(_ e: Matrix<Float>, x: Matrix<Float>, g: Matrix<Float>) -> [Double] {
        let ex = checked { try multiply(e, x) }                         // h_out × n
        return (0..<x.columns).map { t in Analyzer.dot(g.column(t), ex.column(t)) }
    }

    /// The objective's per-vector weights and dropped-suffix costs.
    ///
    /// - `paired`: L(E) = (N/n) Σₜ (gₜᵀ E xₜ)². With aᵢₜ = uᵢᵀ gₜ, bᵢₜ = vᵢᵀ xₜ and
    ///   cₜ = gₜᵀ ΔW xₜ: wᵢ = (N/n) Σₜ aᵢₜ² bᵢₜ², and dropped[j] = (N/n) Σₜ (cₜ − Σ_{i<j} σᵢ aᵢₜ bᵢₜ)²
    ///   exactly, cross terms between the dropped vectors included (they need not vanish: the
    ///   products aᵢₜ bᵢₜ are not orthogonal over tokens). Cost: ΔW X_s (2·h_out·h_in·n flops),
    ///   Uᵀ G_s and Vᵀ X_s (2·r·n·(h_out + h_in)), then O(r·n).
    /// - `kronecker`: L(E) = tr(G E H Eᵀ) / N. wᵢ = (uᵢᵀ G uᵢ)(vᵢᵀ H vᵢ) / N; dropped[j] sums σᵢ² wᵢ
    ///   over the stored vectors from j plus what they leave of L(ΔW) (the additive model, as the
    ///   activation objective's). Cost: G U (2·h_out²·r) and L(ΔW) (2·h_out·h_in·(h_in + h_out)).
    func project(
        delta: Matrix<Float>, sigma: [Float], u: Matrix<Float>, v: Matrix<Float>, hv: Matrix<Float>, inputEnergy: [Double],
        gram: CalibrationGram, bitDeltaResidual: Matrix<Float>
    ) -> ObjectiveProjection {
        let r = u.columns
        switch self {
        case let .paired(x, g, scale):
            let a = checked { try multiply(u, transposeA: true, g) }   // r × n
            let b = checked { try multiply(v, transposeA: true, x) }   // r × n
            var residual = Self.pairedProducts(delta, x: x, g: g)
            let n = x.columns
            func cost(_ c: [Double]) -> Double { scale * c.reduce(0) { $0 + $1 * $1 } }
            var dropped = [cost(residual)]
            var weights = [Double](repeating: 0, count: r)
            a.withUnsafeBufferPointer { pa in
                b.withUnsafeBufferPointer { pb in
                    for i in 0..<r {
                        let s = Double(sigma[i])
                        var w = 0.0
                        for t in 0..<n {
                            let p = Double(pa[t * r + i]) * Double(pb[t * r + i])
                            w += p * p
                            residual[t] -= s * p
                        }
                        weights[i] = scale * w
                        dropped.append(cost(residual))
                    }
                }
            }
            let vtHV = checked { try multiply(v, transposeA: true, hv) }
            var feedback = Self.feedbackDropped(a: a, b: b, sigma: sigma, vtHV: vtHV, unstored: residual, scale: scale)
            feedback?[0] = dropped[0]  // nothing kept, nothing absorbed: L(ΔW) (equal up to rounding)
            return ObjectiveProjection(objective: .paired, vectorWeights: weights, dropped: dropped, droppedFeedback: feedback,
                                       bitDeltaError: error(of: bitDeltaResidual, gram: gram))
        case let .kronecker(outputGram, tokens):
            let n = Double(tokens)
            let gu = checked { try multiply(outputGram, u) }
            let weights = (0..<r).map { Analyzer.dot(u.column($0), gu.column($0)) * inputEnergy[$0] / n }
            let stored = (0..<r).map { Double(sigma[$0]) * Double(sigma[$0]) * weights[$0] }
            var dropped = [Double](repeating: max(0, error(of: delta, gram: gram) - stored.reduce(0, +)), count: r + 1)
            for i in stride(from: r - 1, through: 0, by: -1) { dropped[i] = dropped[i + 1] + stored[i] }
            return ObjectiveProjection(objective: .kronecker, vectorWeights: weights, dropped: dropped,
                                       bitDeltaError: error(of: bitDeltaResidual, gram: gram))
        }
    }
}

extension OutputStatistics {
    /// The paired objective's dropped costs with error feedback: keeping the first j stored vectors,
    /// U's least-squares fit under H over V_j absorbs from each dropped vector i ≥ j its part
    /// V_j M_j⁻¹ V_jᵀ H vᵢ (M = VᵀHV, damped as the fit is), leaving
    /// E_j = Σ_{i≥j} σᵢ uᵢ (vᵢ − V_j M_j⁻¹ V_jᵀ H vᵢ)ᵀ plus the unstored part of ΔW (not absorbed).
    ///
    /// With M = L Lᵀ (Cholesky) and zₜ = L⁻¹ bₜ, the absorbed vᵢᵀxₜ is Σ_{m=j}^{i} L_{im} z_{mt}, so
    /// gₜᵀ E_j xₜ = residualₜ + Σ_{m≥j} q_{mt} with q = Z ∘ Lᵀ(diag(σ) A): a suffix sum per row,
    /// and droppedFeedback[j] = (N/n) Σₜ (residualₜ + Σ_{m≥j} q_{mt})² for every j in O(r·n) after
    /// two r × r × n products. `unstored`: cₜ − Σᵢ σᵢ aᵢₜ bᵢₜ (what the stored vectors leave).
    /// nil when M is not positive definite even damped (the un-credited `dropped` then stands).
    static func feedbackDropped(
        a: Matrix<Float>, b: Matrix<Float>, sigma: [Float], vtHV: Matrix<Float>, unstored: [Double], scale: Double
    ) -> [Double]? {
        let (r, n) = (a.rows, a.columns)
        guard r > 0, let l = dampedFeedbackGram(vtHV, dampening: feedbackDampening) else { return nil }
        let z = checked { try solveTriangular(l, Matrix<Double>(b)) }                       // r × n
        let sa = Matrix<Double>(rows: r, columns: n) { i, t in Double(sigma[i]) * Double(a[i, t]) }
        let c = checked { try multiply(l, transposeA: true, sa) }                           // r × n
        var suffix = unstored
        var dropped = [Double](repeating: 0, count: r + 1)
        dropped[r] = scale * suffix.reduce(0) { $0 + $1 * $1 }
        z.withUnsafeBufferPointer { pz in
            c.withUnsafeBufferPointer { pc in
                for j in stride(from: r - 1, through: 0, by: -1) {
                    var total = 0.0
                    for t in 0..<n {
                        suffix[t] += pz[t * r + j] * pc[t * r + j]
                        total += suffix[t] * suffix[t]
                    }
                    dropped[j] = scale * total
                }
            }
        }
        return dropped.allSatisfy(\.isFinite) ? dropped : nil
    }
}

extension CalibrationGram {
    /// A·H (rows × h_in) for A of rows × h_in: one GEMM for a full H (2·rows·h_in² flops), column j
    /// of A scaled by dⱼ for a diagonal one.
    func rightTimes(_ a: Matrix<Float>) -> Matrix<Float> {
        switch self {
        case let .full(h): return checked { try multiply(a, h) }
        case let .diagonal(d):
            precondition(a.columns == d.count, "H is \(d.count) wide, the matrix has \(a.columns) columns")
            var out = a
            out.withUnsafeMutableBufferPointer { p in
                for j in 0..<a.columns { for i in 0..<a.rows { p[j * a.rows + i] *= d[j] } }
            }
            return out
        }
    }
}
