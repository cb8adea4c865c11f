import Analysis
import LinearAlgebra
import Optimizer

/// Quantizes the consecutive segments of one matrix ΔW ≈ U Σ Vᵀ (`h_out × h_in`, the store's
/// factors) in order, in the ``SegmentOrder`` of its options.
///
/// `.paper`: every segment on its own (``quantizeSegment(_:segment:hessian:options:preparedV:)``'s
/// steps 1–3), bit for bit what DeltaPlan did before orders existed.
///
/// `.feedback` (error feedback), for segment j = [a, b) with c = b − a vectors, σ̂ = F16(σ_seg),
/// S = diag(σ̂), and the target T_j = ΔW_[a₀, b) + ΔW_[K, R) − Σ_{s<j} ΔŴ_s, where
/// ΔW_[p, q) = Σ_{p≤i<q} uᵢσᵢvᵢᵀ from the store's factors, a₀ is the first segment's start
/// (normally 0), K the last segment's end and R the stored rank (the store keeps U, Σ, V up to R
/// only, so ΔW is the stored-rank ΔW and ΔW itself is never formed): the segment's own vectors,
/// the vectors the plan drops, and what the earlier segments left of theirs and of the dropped
/// ones. A target leaves out the later segments' vectors: fitting them too would be one greedy
/// pass of a joint least-squares problem that a later segment cannot undo (a plan of 16-bit
/// segments would no longer reproduce its vectors; it did 6000× worse than the paper's order on a
/// correlated H). Each segment j:
/// 1. V̂ᵀ exactly as in the paper (GPTQ of V_segᵀ under H, or RTN, Sign, F16);
/// 2. U toward its least-squares target given V̂ and σ̂. With G = V̂ᵀ H V̂ (c × c), H_U = S G S and
///    C = T_j H V̂ (h_out × c), the minimiser of ‖(T_j − U S V̂ᵀ) X‖² solves U H_U = C S. It is
///    damped toward the SVD's U_seg (the paper's target) with λ = `dampening` times each diagonal
///    entry, D = diag(H_U):
///        U* = (C S + λ U_seg D) (H_U + λ D)⁻¹,
///    solved in Float64 by Cholesky (`dpotrf`, `dpotrs`; ``DampedCholesky``); when H_U + λD is numerically singular, λ
///    is multiplied by 10 (0.01 from 0), up to 4 times, then U* = U_seg (a warning each time). Then U*
///    is quantized with the paper's quantizer of U, whose Hessian is H_U: GPTQ minimises
///    tr(δU H_U δUᵀ) = ‖(U* − Û) S V̂ᵀ X‖², and for the undamped target
///    ‖(T_j − Û S V̂ᵀ)X‖² = ‖(T_j − U* S V̂ᵀ)X‖² + ‖(U* − Û) S V̂ᵀ X‖² (the residual of a
///    least-squares fit is orthogonal to its regressors), so GPTQ minimises the excess over the
///    best unquantized U;
/// 3. σ refitted with Û and V̂ fixed: σ̃ = argmin ‖(T_j − Û diag(σ) V̂ᵀ) X‖², whose normal
///    equations are ((ÛᵀÛ) ∘ G) σ = diag(Ûᵀ C) (∘: elementwise), damped toward σ̂ as in step 2
///    and solved the same way (fallback: σ̂); stored as F16(σ̃);
/// 4. ΔŴ_j = Û diag(σ̃) V̂ᵀ joins the earlier segments.
///
/// Guarantees (damping toward the paper's values keeps them: each solve minimises the error plus
/// a penalty that is 0 at the paper's values), before the F16 rounding of U* and σ̃, for the same
/// V̂ and target: U* S V̂ᵀ has no larger activation error than U_seg S V̂ᵀ, and Û diag(σ̃) V̂ᵀ none
/// larger than Û S V̂ᵀ. What GPTQ or RTN then make of U* is not guaranteed (they are heuristics).
///
/// σ before U's quantization: refitting σ first changes nothing but the column scale of U*
/// (U* S is the least-squares product whatever S is). Normalizing U*'s columns to unit norm
/// before quantizing (σ carrying the norms) and refitting after was measured on the development
/// pair: 0.5–8% lower error for a fixed plan, but the measurement then favoured 2-bit vectors and
/// the `exact` plans it chose were 5–14% worse; not adopted. Without the refit the error was
/// 1.5–6% higher.
///
/// With H = I (data-free) everything holds with H = I. With RTN, step 2 rounds U* to the
/// nearest grid point instead of GPTQ's compensation; 1 bit applies Sign to U*; 16 bits F16.
///
/// Cost of a segment besides the paper's quantizers (R stored vectors, P vectors in earlier
/// segments): V̂ᵀ H (c·h_in² flops, as the paper's B·H), Vᵀ·(H V̂) and U·(…) (c·R·(h_in + h_out)),
/// the earlier segments' correction (c·P·(h_in + h_out)), G and ÛᵀÛ (c²·(h_in + h_out)), and
/// the Float64 solve (c³/3 + 2·c²·h_out). ΔW itself is never formed: T_j H V̂ comes from the
/// factors. Memory: the earlier segments' V̂ and Û diag(σ̃) (P·(h_in + h_out) Floats) and a few
/// `h_out × c` products.
public struct MatrixQuantizer: Sendable {
    public let factors: StoredFactors
    public let segments: [Segment]
    public let hessian: Matrix<Float>?
    public let options: SegmentOptions
    let preparedV: PreparedHessian?
    /// The index of the next segment.
    public private(set) var index = 0
    /// V̂ of the segments done, `h_in × done` column-major.
    private var doneV: [Float] = []
    /// Û diag(σ̃) of the segments done, `h_out × done` column-major.
    private var doneUS: [Float] = []
    private var done = 0

    /// - Parameters:
    ///   - segments: consecutive (each starts where the previous ends), usually from 0.
    ///   - preparedV: a ``PreparedHessian`` of H with the options' dampening and act-order.
    /// - Throws: ``QuantizationError/invalidOption(option:reason:)`` when the segments are not consecutive.
    public init(_ factors: StoredFactors, segments: [Segment], hessian: Matrix<Float>?, options: SegmentOptions = SegmentOptions(),
                preparedV: PreparedHessian? = nil) throws(QuantizationError) {
        for (j, (a, b)) in zip(segments, segments.dropFirst()).enumerated() where b.start != a.end {
            throw .invalidOption(option: "segments", reason: "segment \(j + 1) [\(b.start), \(b.end)) must start at \(a.end), where segment \(j) ends")
        }
        self.factors = factors
        self.segments = segments
        self.hessian = hessian
        self.options = options
        self.preparedV = preparedV
    }

    public var isFinished: Bool { index == segments.count }

    /// Quantizes the next segment.
    /// - Precondition: not ``isFinished``.
    /// - Throws: as ``quantizeSegment(_:segment:hessian:options:preparedV:)``.
    public mutating func next() throws(QuantizationError) -> QuantizedSegment {
        try nextWork().result
    }

    /// The next segment with the products the error attribution reuses.
    mutating func nextWork() throws(QuantizationError) -> SegmentWork {
        precondition(!isFinished, "all \(segments.count) segments are quantized")
        let segment = segments[index]
        let work: SegmentWork
        switch options.order {
        case .paper:
            work = try SegmentWork(paper: factors, segment: segment, hessian: hessian, options: options, preparedV: preparedV)
        case .feedback:
            work = try feedback(segment)
        }
        index += 1
        return work
    }

    private mutating func feedback(_ segment: Segment) throws(QuantizationError) -> SegmentWork {
        let sigmaHat = try SegmentWork.validate(factors, segment: segment, hessian: hessian)
        let (hOut, hIn, c) = (factors.u.rows, factors.v.rows, segment.count)
        let range = segment.start..<segment.end
        var warnings: [QuantizationWarning] = []

        // 1. V̂ᵀ as in the paper.
        let vq = try SegmentWork.quantizeV(factors.v.columnSlice(range).matrix.transposed(), bits: segment.bits, options: options,
                                           hessian: hessian, preparedV: preparedV)
        let vHatT = vq.dequantized                                                    // c × h_in
        let vHatH = try applyHessian(vHatT, hessian)                                  // V̂ᵀ H, c × h_in
        var g = checked { try multiply(vHatH, vHatT, transposeB: true) }              // c × c
        symmetrize(&g)

        // C = T_j H V̂ = U_t Σ_t (V_tᵀ H V̂) − Σ_{s<j} Û_s σ̃_s (V̂_sᵀ H V̂), from the factors.
        let ranges = [segments[0].start..<segment.end, segments.last!.end..<factors.storedRank]
        var cMatrix = Matrix<Float>(rows: hOut, columns: c)
        for target in ranges where !target.isEmpty {
            let p = scaledRows(checked { try multiply(factors.v.columnSlice(target), transposeA: true, vHatH, transposeB: true) },
                               Array(factors.singularValues[target]))
            let part = checked { try multiply(factors.u.columnSlice(target), p) }   // h_out × c
            cMatrix.withUnsafeMutableBufferPointer { pc in part.withUnsafeBufferPointer { pp in for t in 0..<pc.count { pc[t] += pp[t] } } }
        }
        if done > 0 {
            let previousV = Matrix(rows: hIn, columns: done, elements: doneV)
            let previousUS = Matrix(rows: hOut, columns: done, elements: doneUS)
            let q = checked { try multiply(previousV, transposeA: true, vHatH, transposeB: true) }   // done × c
            let correction = checked { try multiply(previousUS, q) }
            cMatrix.withUnsafeMutableBufferPointer { pc in
                correction.withUnsafeBufferPointer { pk in for t in 0..<pc.count { pc[t] -= pk[t] } }
            }
        }

        // 2–3. U toward U* under H_U = S G S, quantized; σ refitted.
        let fit = try FeedbackFit(c: cMatrix, g: g, sigmaHat: sigmaHat, uSegment: factors.u.columnSlice(range).matrix,
                                  bits: segment.bits, options: options, calibrated: hessian != nil, warnings: &warnings)
        let (uq, sigma, s) = (fit.u, fit.sigma, fit.sigmaHat)

        // 4. Keep ΔŴ_j's factors for the next segments.
        let sigmaTilde = sigma.map { Float($0) }
        doneV += vHatT.transposed().elements
        doneUS += uq.dequantized.withUnsafeBufferPointer { pu in
            var out = [Float](repeating: 0, count: hOut * c)
            for j in 0..<c { for i in 0..<hOut { out[i + j * hOut] = pu[i + j * hOut] * sigmaTilde[j] } }
            return out
        }
        done += c

        var result = QuantizedSegment(segment: segment, rows: hOut, columns: hIn, vt: vq, u: uq, singularValues: sigma)
        result.feedbackWarnings = warnings
        return SegmentWork(result: result, products: .feedback(.init(uStar: fit.uStar, sigmaHat: s, vHatH: vHatH, g: g)))
    }

    static let targetSystem = "least-squares target of U (Σ̂ V̂ᵀ H V̂ Σ̂)"
    static let sigmaSystem = "σ refit ((ÛᵀÛ) ∘ (V̂ᵀ H V̂))"
}

/// Steps 2–3 of error feedback for one segment (``MatrixQuantizer``), given C = T H V̂
/// (`h_out × c`) and G = V̂ᵀ H V̂: U toward its least-squares target U* under H_U = S G S (the SVD's
/// U_seg when the damped system stays singular), quantized, and σ refitted (σ̂ kept when the refit
/// fails or leaves F16). The measurement pass runs the same steps on its chunks.
struct FeedbackFit {
    /// F16(σ_seg) as Float: S.
    let sigmaHat: [Float]
    /// H_U = S G S.
    let hu: Matrix<Float>
    let uStar: Matrix<Float>
    let u: QuantizedWeight
    /// σ̃ (σ̂ after a fallback).
    let sigma: [Float16]

    init(
        c: Matrix<Float>, g: Matrix<Float>, sigmaHat halves: [Float16], uSegment: Matrix<Float>, bits: Int,
        options: SegmentOptions, calibrated: Bool, warnings: inout [QuantizationWarning]
    ) throws(QuantizationError) {
        let n = halves.count
        let s = halves.map { Float($0) }
        var hu = g
        for j in 0..<n { for i in 0..<n { hu[i, j] *= s[i] * s[j] } }
        let uStar = leastSquaresTarget(c: c, scale: s, hu: hu, prior: uSegment, dampening: options.dampening,
                                       warnings: &warnings) ?? uSegment
        let uq = try SegmentWork.quantizeU(uStar, bits: bits, options: options, calibrated: calibrated, hu: hu)
        let refit = refitSingularValues(u: uq.dequantized, g: g, c: c, prior: s, dampening: options.dampening,
                                        warnings: &warnings)
        var sigma = halves
        if let refit {
            let refitted = refit.map { Float16($0) }
            if refitted.allSatisfy(\.isFinite) {
                sigma = refitted
            } else {
                warnings.append(.feedbackFellBack(system: MatrixQuantizer.sigmaSystem, reason: "a refitted value does not fit in F16"))
            }
        }
        self.sigmaHat = s
        self.hu = hu
        self.uStar = uStar
        self.u = uq
        self.sigma = sigma
    }
}

/// U* = (C S + λ U_p D)(H_U + λD)⁻¹ (see ``MatrixQuantizer``), `h_out × c`; nil when the damped
/// system stays singular (the caller keeps U_p). In Float64: one c × c Cholesky
/// (``DampedCholesky``) and `dpotrs` on the h_out right-hand sides, 1024 at a time.
func leastSquaresTarget(
    c: Matrix<Float>, scale s: [Float], hu: Matrix<Float>, prior: Matrix<Float>, dampening: Double,
    warnings: inout [QuantizationWarning]
) -> Matrix<Float>? {
    let (rows, n) = (c.rows, c.columns)
    precondition(s.count == n && hu.rows == n && hu.columns == n && prior.rows == rows && prior.columns == n)
    guard let system = DampedCholesky(Matrix<Double>(hu), dampening: dampening, system: MatrixQuantizer.targetSystem,
                                      warnings: &warnings) else { return nil }
    // Right-hand sides, transposed (n × rows of U): (C S)ᵀ + λ D U_pᵀ, solved `chunk` rows of U
    // at a time (a Float64 n × h_out buffer would be 263 MB for a 7B MLP matrix).
    var out = Matrix<Float>(rows: rows, columns: n)
    let chunk = 1024
    for first in stride(from: 0, to: rows, by: chunk) {
        let count = min(chunk, rows - first)
        var x = Matrix<Double>(rows: n, columns: count)
        c.withUnsafeBufferPointer { pc in
            prior.withUnsafeBufferPointer { pp in
                x.withUnsafeMutableBufferPointer { px in
                    for j in 0..<n {
                        let (sj, pull) = (Double(s[j]), system.dampening * system.d[j])
                        for i in 0..<count {
                            px[j + i * n] = Double(pc[first + i + j * rows]) * sj + pull * Double(pp[first + i + j * rows])
                        }
                    }
                }
            }
        }
        system.solve(&x)
        x.withUnsafeBufferPointer { px in
            out.withUnsafeMutableBufferPointer { po in
                for j in 0..<n { for i in 0..<count { po[first + i + j * rows] = Float(px[j + i * n]) } }
            }
        }
    }
    guard out.isFinite else {
        warnings.append(.feedbackFellBack(system: MatrixQuantizer.targetSystem, reason: "the solution is not finite in Float32"))
        return nil
    }
    return out
}

/// σ̃ = argmin ‖(T − Û diag(σ) V̂ᵀ) X‖², damped toward `prior` (see ``MatrixQuantizer``):
/// ((ÛᵀÛ) ∘ G + λD) σ = diag(Ûᵀ C) + λ D σ̂ with G = V̂ᵀ H V̂ and C = T H V̂. In Float64
/// (``DampedCholesky``); nil when the system stays singular.
///
/// Derivation: with Aᵢ = ûᵢ v̂ᵢᵀ, f(σ) = ‖(T − Σᵢ σᵢ Aᵢ) X‖² = tr(T H Tᵀ) − 2 Σᵢ σᵢ tr(Aᵢ H Tᵀ)
/// + Σᵢₖ σᵢ σₖ tr(Aᵢ H Aₖᵀ), where tr(Aᵢ H Tᵀ) = ûᵢᵀ T H v̂ᵢ = (Ûᵀ C)ᵢᵢ and
/// tr(Aᵢ H Aₖᵀ) = (v̂ᵢᵀ H v̂ₖ)(ûₖᵀ ûᵢ) = Gᵢₖ (ÛᵀÛ)ᵢₖ; setting ∇f = 0 gives the system.
func refitSingularValues(
    u: Matrix<Float>, g: Matrix<Float>, c: Matrix<Float>, prior: [Float], dampening: Double,
    warnings: inout [QuantizationWarning]
) -> [Double]? {
    let (rows, n) = (u.rows, u.columns)
    precondition(g.rows == n && g.columns == n && c.rows == rows && c.columns == n && prior.count == n)
    let utu = checked { try multiply(u, transposeA: true, u) }
    let a = Matrix<Double>(rows: n, columns: n) { i, k in
        (Double(utu[i, k]) + Double(utu[k, i])) / 2 * (Double(g[i, k]) + Double(g[k, i])) / 2
    }
    guard let system = DampedCholesky(a, dampening: dampening, system: MatrixQuantizer.sigmaSystem, warnings: &warnings) else {
        return nil
    }
    var x = Matrix<Double>(rows: n, columns: 1)
    u.withUnsafeBufferPointer { pu in
        c.withUnsafeBufferPointer { pc in
            for j in 0..<n {
                var sum = 0.0
                for i in 0..<rows { sum += Double(pu[i + j * rows]) * Double(pc[i + j * rows]) }
                x[j, 0] = sum + system.dampening * system.d[j] * Double(prior[j])
            }
        }
    }
    system.solve(&x)
    return x.isFinite ? x.elements : nil
}

/// The damped system (A + λD) X = B + λ D P of error feedback's two solves, for a symmetric
/// positive semi-definite A (n × n), D = diag(A) with zero entries replaced by the mean of the
/// positive ones (1 if none): its solution minimises tr(Xᵀ A X) − 2 tr(Xᵀ B) + λ ‖D^½ (X − P)‖²,
/// the solution of A X = B pulled toward the prior P by λ in units of each unknown's own
/// curvature. The caller builds B + λ D P with ``dampening`` and ``d``.
///
/// Factored in Float64 on the Jacobi-scaled matrix D^−½ (A + λD) D^−½ (unit diagonal plus λ),
/// Cholesky (`dpotrf`); solved with `dpotrs` in place. The system counts as singular when
/// Cholesky fails or a squared pivot of the scaled matrix falls below ``minimumScaledPivot`` (the
/// inputs are Float32 products: below that, the solution along that direction is amplified
/// rounding noise). Then λ is multiplied by 10 (0.01 from 0), up to `maxRetries` times
/// (``QuantizationWarning/feedbackDampingIncreased(system:dampening:retriedWith:)`` each time),
/// and finally the initializer fails (``QuantizationWarning/feedbackFellBack(system:reason:)``).
/// With λ ≥ 10⁻⁶ the scaled matrix's eigenvalues are at least λ, so only a smaller damping can
/// be refused. Cost n³/3 + 2·n²·m flops for m right-hand sides; memory n² besides them.
struct DampedCholesky {
    /// λ finally used.
    let dampening: Double
    /// D.
    let d: [Double]
    /// D^−½.
    let scale: [Double]
    /// Lower Cholesky factor of D^−½ (A + λD) D^−½.
    let factor: Matrix<Double>

    init?(_ a: Matrix<Double>, dampening: Double, system: String, warnings: inout [QuantizationWarning], maxRetries: Int = 4) {
        let n = a.rows
        precondition(a.columns == n)
        let diagonal = (0..<n).map { a[$0, $0] }
        let positive = diagonal.filter { $0 > 0 && $0.isFinite }
        let fill = positive.isEmpty ? 1 : positive.reduce(0, +) / Double(positive.count)
        d = diagonal.map { $0 > 0 && $0.isFinite ? $0 : fill }
        let scale = d.map { 1 / $0.squareRoot() }
        self.scale = scale
        var damp = dampening
        for attempt in 0...maxRetries {
            let scaled = Matrix<Double>(rows: n, columns: n) { i, j in
                scale[i] * a[i, j] * scale[j] + (i == j ? damp : 0)
            }
            if let l = try? cholesky(scaled), (0..<n).allSatisfy({ l[$0, $0] * l[$0, $0] >= minimumScaledPivot }) {
                self.dampening = damp
                factor = l
                return
            }
            guard attempt < maxRetries else { break }
            let next = damp > 0 ? damp * 10 : 0.01
            warnings.append(.feedbackDampingIncreased(system: system, dampening: damp, retriedWith: next))
            damp = next
        }
        warnings.append(.feedbackFellBack(system: system, reason: "not positive definite even with dampening \(damp)"))
        return nil
    }

    /// X from B + λ D P (n × m) in place: X = D^−½ (D^−½(A + λD)D^−½)⁻¹ D^−½ (B + λ D P).
    func solve(_ x: inout Matrix<Double>) {
        let (n, m) = (x.rows, x.columns)
        precondition(n == scale.count)
        x.withUnsafeMutableBufferPointer { p in for j in 0..<m { for i in 0..<n { p[i + j * n] *= scale[i] } } }
        checked { try solveCholesky(factor, &x) }
        x.withUnsafeMutableBufferPointer { p in for j in 0..<m { for i in 0..<n { p[i + j * n] *= scale[i] } } }
    }
}

/// The smallest squared Cholesky pivot ``DampedCholesky`` accepts in its unit-diagonal matrix:
/// 10⁻⁶, above the relative rounding of Float32 products summed over a few thousand terms.
let minimumScaledPivot = 1e-6

/// Makes a square matrix exactly symmetric (GEMM rounding differs between the triangles).
func symmetrize(_ m: inout Matrix<Float>) {
    let n = m.rows
    for j in 0..<n { for i in (j + 1)..<max(j + 1, n) { let x = (m[i, j] + m[j, i]) / 2; m[i, j] = x; m[j, i] = x } }
}
