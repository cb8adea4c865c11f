import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import Optimizer

/// Options of the error-model measurement pass (part of each error table's cache key).
public struct MeasurementOptions: Sendable, Hashable {
    /// GPTQ (with the calibration H) or RTN for the 2…8-bit widths. Matrices with H = I (data-free
    /// stores, `identity-missing` calibration) always use RTN: with a diagonal H GPTQ equals RTN.
    public var method: QuantizationMethod
    /// The segment order the backend will use (``SegmentOrder``): a plan's eᵢ(k) must be measured
    /// in the order it is compressed with.
    public var order: SegmentOrder
    public var groupSize: Int
    /// GPTQ damping, a fraction of mean(diag H).
    public var dampening: Double
    /// The bit-widths to measure: 1…8 and 16.
    public var bits: [Int]

    public init(method: QuantizationMethod = .default, order: SegmentOrder = .default, groupSize: Int = StorageModel.defaultGroupSize, dampening: Double = QuantizationMethod.defaultDampening,
                bits: [Int] = [16, 8, 4, 3, 2, 1]) {
        self.method = method
        self.order = order
        self.groupSize = groupSize
        self.dampening = dampening
        self.bits = bits
    }

    package func validate() throws(QuantizationError) {
        for k in bits where !(k == 16 || (1...8).contains(k)) {
            throw .invalidOption(option: "bits", reason: "bit-widths are 1…8 or 16, got \(k)")
        }
        guard Set(bits).count == bits.count, !bits.isEmpty else {
            throw .invalidOption(option: "bits", reason: "give each bit-width once, got \(bits)")
        }
        guard groupSize > 0 else { throw .invalidOption(option: "group size", reason: "must be positive, got \(groupSize)") }
        guard dampening >= 0, dampening.isFinite else {
            throw .invalidOption(option: "dampening", reason: "must be a finite fraction ≥ 0, got \(dampening)")
        }
    }
}

/// eᵢ(k) for every stored vector i and every k in `options.bits`: the relative activation error of
/// vector i quantized at k bits, measured by quantizing the way the backend does.
///
/// For each k, all stored vectors [0, r) are quantized as one segment in `options.order`
/// (``quantizeSegment(_:segment:hessian:options:preparedV:)``; with error feedback U is quantized
/// toward its least-squares target given V̂ for the whole stored-rank ΔW and σ is refitted, as
/// ``MatrixQuantizer`` does for a plan's first segment) and the segment's activation error is
/// split over its vectors. Paper: ``attributedErrors(of:factors:hessian:)`` (V part per row, U
/// part and the V–U cross term per column of δU = U − Û). Feedback: the same split around U's
/// least-squares target instead of the SVD's U (``attributeFeedback(_:factors:vtH:feedback:)``:
/// the V part is what the least-squares combination of V̂ᵀ X misses of σᵢ vᵢᵀ X, the U part U's
/// quantization relative to U* after the σ refit); around the SVD's U, δU would carry U*'s
/// compensation and its per-vector parts, large and of both signs, predicted nothing (a plan's
/// total came out negative). Either split sums exactly to the segment's error. Then
/// eᵢ(k) = εᵢ(k) / (σᵢ² gᵢ), and 0 when σᵢ² gᵢ = 0 (a vector that carries no activation).
///
/// Approximation: a plan's segments are shorter than [0, r), so the vectors of a real segment see
/// other grids and another H_U, and a short segment has fewer later columns of U for GPTQ to push
/// its rounding error into (and, with feedback, fewer inputs V̂ᵀ X to fit with); the error model
/// also drops cross terms between segments. On the test suite's 96 × 160 synthetic matrix with a
/// strongly correlated H, in the paper's order an 8+3+2 plan keeping 40 of 64 vectors has its
/// quantized part predicted at 0.62× the actual error (the total, with the dropped vectors,
/// within 20%), and a plan keeping all 64 at 0.85× (feedback: 0.85× too): the measured eᵢ(k)
/// are optimistic for short segments.
///
/// Cost per k, for an h_out × h_in matrix with r vectors: GPTQ of an r × h_in and an h_out × r
/// weight (≈ r·h_in² + h_out·r² flops of GEMM plus (5/3)·r³ for H_U's factor) and ≈ 2·r·h_in²
/// + 3·r²·max(h_in, h_out) flops of products; plus, once, (5/3)·h_in³ for H's factor (pass it
/// as `preparedV` to share it) and r·h_in² for Vᵀ H. Feedback adds ≈ r²·(h_in + 3·h_out) flops
/// of products and a Float64 r × r Cholesky with h_out right-hand sides (``MatrixQuantizer``).
public func measureQuantizationErrors(
    _ factors: StoredFactors, hessian: Matrix<Float>?, options: MeasurementOptions, preparedV: PreparedHessian? = nil
) throws(QuantizationError) -> [Int: [Double]] {
    try measure(factors, hessian: hessian, options: options, preparedV: preparedV, droppedWeights: false).table
}

/// ``measureQuantizationErrors(_:hessian:options:preparedV:)``, and with `droppedWeights` also
/// ``droppedErrorWeights(_:hessian:order:dampening:)`` from the same Vᵀ H.
package func measure(
    _ factors: StoredFactors, hessian: Matrix<Float>?, options: MeasurementOptions, preparedV: PreparedHessian?,
    droppedWeights: Bool
) throws(QuantizationError) -> (table: [Int: [Double]], dropped: [Double]?) {
    try options.validate()
    let r = factors.storedRank
    guard r > 0 else { return (Dictionary(uniqueKeysWithValues: options.bits.map { ($0, [Double]()) }), droppedWeights ? [] : nil) }
    guard factors.inputEnergy.count >= r, factors.singularValues.count >= r else {
        throw .shapeMismatch(what: "stored spectrum (σ, g)", expected: Shape(rows: r, columns: 2),
                             found: Shape(rows: min(factors.inputEnergy.count, factors.singularValues.count), columns: 2))
    }
    let method: QuantizationMethod = hessian == nil ? .rtn : options.method
    let segmentOptions = SegmentOptions(method: method, order: options.order, groupSize: options.groupSize, dampening: options.dampening)
    var prepared = preparedV
    if prepared == nil, method == .gptq, let hessian, options.bits.contains(where: { (2...8).contains($0) }) {
        prepared = try PreparedHessian(hessian: hessian, dampening: options.dampening, name: "calibration Hessian")
    }
    let vtH = try applyHessian(factors.v.transposed(), hessian)
    var table: [Int: [Double]] = [:]
    for k in options.bits {
        var quantizer = try MatrixQuantizer(factors, segments: [Segment(start: 0, end: r, bits: k)], hessian: hessian,
                                            options: segmentOptions, preparedV: prepared)
        let work = try quantizer.nextWork()
        let errors = switch work.products {
        case let .paper(bh, hu): attribute(work.result, factors: factors, vtH: vtH, bh: bh, hu: hu)
        case let .feedback(products): attributeFeedback(work.result, factors: factors, vtH: vtH, feedback: products)
        }
        table[k] = (0..<r).map { i in
            let sigma = Double(factors.singularValues[i])
            let weight = sigma * sigma * factors.inputEnergy[i]
            return weight > 0 && weight.isFinite ? errors[i] / weight : 0
        }
    }
    let dropped = droppedWeights ? feedbackDroppedWeights(factors, vtH: vtH, dampening: options.dampening) : nil
    return (table, dropped)
}

/// The weights wᵢ of the error model's dropped part: dropping the stored vectors from K on costs
/// D(K) = Σ_{i≥K} wᵢ (plus the energy of the vectors never stored).
///
/// `.paper`: wᵢ = σᵢ² gᵢ (dropped vectors do not interact: U is orthonormal).
///
/// `.feedback`: the kept vectors' least-squares targets include the dropped vectors
/// (``MatrixQuantizer``), so U of the kept segments absorbs what their inputs V̂ᵀX can express of
/// the dropped vectors' activations. Modelled with the exact V and the feedback damping λ: with
/// G = V_rᵀ H V_r and the Cholesky factor L of G + λ diag(G) (`dpotrf`, Float64), the error left
/// by vector i ≥ K after least squares on the inputs of [0, K) is σᵢ² (gᵢ − Σ_{m<K} L_im²), and
/// summing over i ≥ K and exchanging the sums gives the weights
///     w_m = Σ_{i≥m} σᵢ² L_im² − λ σ_m² g_m ≥ 0,   Σ_m w_m = Σ_m σ_m² g_m:
/// the energy that vector m's input adds beyond the span of the earlier ones (Gram–Schmidt in
/// activation space). An approximation of the backend, which absorbs segment by segment with the
/// quantized V̂: D(K) is a lower bound on what it leaves when the quantization is exact.
/// Without a usable factor (G + λ diag(G) not positive definite) the paper's weights are returned.
///
/// Cost: r·h_in² + r²·h_in flops (Vᵀ H, Vᵀ H V; less with H = I; the measurement pass reuses its
/// Vᵀ H) and r³/3 for the factor.
public func droppedErrorWeights(
    _ factors: StoredFactors, hessian: Matrix<Float>?, order: SegmentOrder, dampening: Double
) -> [Double] {
    guard order == .feedback, factors.storedRank > 0 else { return paperDroppedWeights(factors) }
    let vtH = hessian.map { h in checked { try multiply(factors.v, transposeA: true, h) } } ?? factors.v.transposed()
    return feedbackDroppedWeights(factors, vtH: vtH, dampening: dampening)
}

/// σᵢ² gᵢ.
func paperDroppedWeights(_ factors: StoredFactors) -> [Double] {
    (0..<factors.storedRank).map { i in Double(factors.singularValues[i]) * Double(factors.singularValues[i]) * factors.inputEnergy[i] }
}

/// ``droppedErrorWeights(_:hessian:order:dampening:)`` in the feedback order, given V_rᵀ H (`r × h_in`).
func feedbackDroppedWeights(_ factors: StoredFactors, vtH: Matrix<Float>, dampening: Double) -> [Double] {
    let r = factors.storedRank
    guard r > 0 else { return [] }
    let g = checked { try multiply(vtH, factors.v) }
    let diagonal = (0..<r).map { Double(g[$0, $0]) }
    let positive = diagonal.filter { $0 > 0 }
    let fill = positive.isEmpty ? 1 : positive.reduce(0, +) / Double(positive.count)
    let damped = Matrix<Double>(rows: r, columns: r) { i, j in
        i == j ? (diagonal[i] > 0 ? diagonal[i] : 0) + dampening * (diagonal[i] > 0 ? diagonal[i] : fill)
            : (Double(g[i, j]) + Double(g[j, i])) / 2
    }
    guard let l = try? cholesky(damped), l.isFinite else { return paperDroppedWeights(factors) }
    let sigma2 = (0..<r).map { Double(factors.singularValues[$0]) * Double(factors.singularValues[$0]) }
    return (0..<r).map { m in
        var w = -dampening * sigma2[m] * max(diagonal[m], 0)
        for i in m..<r { w += sigma2[i] * l[i, m] * l[i, m] }
        return max(w, 0)
    }
}
