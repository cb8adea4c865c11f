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
    /// The most vectors measured as one segment: the stored vectors are split into
    /// ⌈r / chunkSize⌉ consecutive chunks of (nearly) equal length, each quantized on its own
    /// (``measureQuantizationErrors(_:hessian:options:preparedV:)``).
    public var chunkSize: Int

    /// ``chunkSize``'s default: a few times the group size, as long as a plan's longer segments
    /// (BENCHMARKS.md, "measurement pass").
    public static let defaultChunkSize = 256

    /// The quantizer as a plan records it (``Plan/quantizer``).
    public var quantizer: Plan.Quantizer { Plan.Quantizer(method: method.rawValue, dampening: dampening) }

    public init(method: QuantizationMethod = .default, order: SegmentOrder = .default, groupSize: Int = StorageModel.defaultGroupSize,
                dampening: Double = QuantizationMethod.defaultDampening, bits: [Int] = [16, 8, 4, 3, 2, 1],
                chunkSize: Int = defaultChunkSize) {
        self.method = method
        self.order = order
        self.groupSize = groupSize
        self.dampening = dampening
        self.bits = bits
        self.chunkSize = chunkSize
    }

    package func validate() throws(QuantizationError) {
        for k in bits where !(k == 16 || (1...8).contains(k)) {
            throw .invalidOption(option: "bits", reason: "bit-widths are 1…8 or 16, got \(k)")
        }
        guard Set(bits).count == bits.count, !bits.isEmpty else {
            throw .invalidOption(option: "bits", reason: "give each bit-width once, got \(bits)")
        }
        guard groupSize > 0 else { throw .invalidOption(option: "group size", reason: "must be positive, got \(groupSize)") }
        guard chunkSize > 0 else { throw .invalidOption(option: "chunk size", reason: "must be positive, got \(chunkSize)") }
        guard dampening >= 0, dampening.isFinite else {
            throw .invalidOption(option: "dampening", reason: "must be a finite fraction ≥ 0, got \(dampening)")
        }
    }
}

/// eᵢ(k) for every stored vector i and every k in `options.bits`: the relative activation error of
/// vector i quantized at k bits, measured by quantizing the way the backend does.
///
/// The stored vectors [0, r) are split into ⌈r / `options.chunkSize`⌉ consecutive chunks of
/// (nearly) equal length. For each chunk and each k, the chunk is quantized as one segment in
/// `options.order`, the way the backend quantizes a plan's only segment of a matrix whose stored
/// rank is the chunk (V̂ᵀ by GPTQ under H; with error feedback U toward its least-squares target
/// given V̂ — the chunk's own vectors — and σ refitted, as ``MatrixQuantizer`` does), and the
/// segment's activation error is split over its vectors (``ChunkMeasurement``: V part per row,
/// U part and cross term per column, around the SVD's U in the paper's order and around U's
/// least-squares target with feedback; either split sums exactly to the segment's error). Then
/// eᵢ(k) = εᵢ(k) / (σᵢ² gᵢ), and 0 when σᵢ² gᵢ = 0 (a vector that carries no activation).
///
/// Approximation: a plan's segments have other lengths than the chunks, so their vectors see other
/// grids and another H_U (GPTQ pushes the rounding error of a segment's early columns of U into its
/// later ones, and with feedback U* fits more vectors with more inputs in a longer segment); the
/// error model also drops cross terms between segments. On the development pair, chunks of 256
/// predict plans as well as one segment of all r vectors did (BENCHMARKS.md, "measurement pass").
/// GPTQ quantizes the rows of Vᵀ independently, so V̂ is the same whatever the chunks.
///
/// Cost, for an h_out × h_in matrix with r vectors in chunks of c: once, r·h_in² for Vᵀ H (and,
/// for `droppedWeights`, r²·h_in for Vᵀ H V); per k, GPTQ of the r × h_in rows of Vᵀ (≈ r·h_in²;
/// 16 and 1 bits: a triangular solve of the same cost instead) and, per chunk, products of
/// c²·(h_in + h_out) flops (the segment's Grams come from GPTQ's own errors: no V̂ᵀ H,
/// ``ChunkMeasurement``) and GPTQ of U (h_out·c² plus c³): r·c·(h_in + h_out) in all instead of
/// r²·(h_in + h_out). Memory: a few `c × h_in` and `h_out × c` matrices, r² for Vᵀ H V.
/// Pass H's GPTQ preparation as `preparedV` to share it across matrices.
public func measureQuantizationErrors(
    _ factors: StoredFactors, hessian: Matrix<Float>?, options: MeasurementOptions, preparedV: PreparedHessian? = nil
) throws(QuantizationError) -> [Int: [Double]] {
    try measure(factors, hessian: hessian, options: options, preparedV: preparedV, droppedWeights: false).table
}

/// ``measureQuantizationErrors(_:hessian:options:preparedV:)``, and with `droppedWeights` also
/// ``droppedErrorWeights(_:hessian:order:dampening:)`` (feedback order) from the same Vᵀ H.
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
    if let hessian, hessian.rows != factors.v.rows || hessian.columns != factors.v.rows {
        throw .shapeMismatch(what: "calibration Hessian", expected: Shape(rows: factors.v.rows, columns: factors.v.rows), found: hessian.shape)
    }
    let method: QuantizationMethod = hessian == nil ? .rtn : options.method
    let segmentOptions = SegmentOptions(method: method, order: options.order, groupSize: options.groupSize, dampening: options.dampening)
    var prepared = preparedV
    if prepared == nil, method == .gptq, let hessian, options.bits.contains(where: { (2...8).contains($0) }) {
        prepared = try PreparedHessian(hessian: hessian, dampening: options.dampening, name: "calibration Hessian")
    }
    let measurement = try MatrixMeasurement(factors, hessian: hessian, prepared: prepared, options: segmentOptions,
                                            chunkSize: options.chunkSize)
    var table: [Int: [Double]] = [:]
    for k in options.bits {
        let errors = try measurement.errors(bits: k)
        table[k] = (0..<r).map { i in
            let sigma = Double(factors.singularValues[i])
            let weight = sigma * sigma * factors.inputEnergy[i]
            return weight > 0 && weight.isFinite ? errors[i] / weight : 0
        }
    }
    let dropped = droppedWeights ? feedbackDroppedWeights(factors, gram: measurement.fullGram(), dampening: options.dampening) : nil
    return (table, dropped)
}

/// ⌈rank / size⌉ consecutive ranges covering [0, rank), their lengths differing by at most one
/// (the longer ones first).
func measurementChunks(rank: Int, size: Int) -> [Range<Int>] {
    precondition(rank >= 0 && size > 0)
    guard rank > 0 else { return [] }
    let count = (rank + size - 1) / size
    let (base, extra) = rank.quotientAndRemainder(dividingBy: count)
    var ranges: [Range<Int>] = [], start = 0
    for j in 0..<count {
        let end = start + base + (j < extra ? 1 : 0)
        ranges.append(start..<end)
        start = end
    }
    return ranges
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
    let gram = checked { try multiply(vtH, factors.v) }
    return feedbackDroppedWeights(factors, gram: gram, dampening: dampening)
}

/// σᵢ² gᵢ.
func paperDroppedWeights(_ factors: StoredFactors) -> [Double] {
    (0..<factors.storedRank).map { i in Double(factors.singularValues[i]) * Double(factors.singularValues[i]) * factors.inputEnergy[i] }
}

/// ``droppedErrorWeights(_:hessian:order:dampening:)`` in the feedback order, given the Gram
/// V_rᵀ H V_r (`r × r`).
func feedbackDroppedWeights(_ factors: StoredFactors, gram g: Matrix<Float>, dampening: Double) -> [Double] {
    let r = factors.storedRank
    guard r > 0 else { return [] }
    precondition(g.rows == r && g.columns == r)
    guard let l = dampedFeedbackGram(g, dampening: dampening) else { return paperDroppedWeights(factors) }
    let diagonal = (0..<r).map { Double(g[$0, $0]) }
    let sigma2 = (0..<r).map { Double(factors.singularValues[$0]) * Double(factors.singularValues[$0]) }
    return (0..<r).map { m in
        var w = -dampening * sigma2[m] * max(diagonal[m], 0)
        for i in m..<r { w += sigma2[i] * l[i, m] * l[i, m] }
        return max(w, 0)
    }
}
