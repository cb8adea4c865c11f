import Analysis
import LinearAlgebra
import Optimizer

/// The measurement of one matrix's stored vectors in chunks (``measureQuantizationErrors(_:hessian:options:preparedV:)``):
/// what the bit-widths share, and per width the quantization of every chunk as a lone segment
/// with its activation error split over its vectors.
///
/// A chunk [a, b) is quantized as the backend quantizes a plan's only segment of a matrix whose
/// stored rank is the chunk: U_c (`h_out × c`), σ, V_c (`h_in × c`), and with error feedback U's
/// least-squares target is the chunk's own ΔW_c = U_c Σ V_cᵀ (``MatrixQuantizer``). With V̂ the
/// quantized V_c and Δ = V_c − V̂, everything the split needs is a `c × c` Gram:
///     K = V_cᵀ H V_c,   Q = V_cᵀ H Δ,   N = Δᵀ H Δ,   P = V_cᵀ H V̂ = K − Q,   G = V̂ᵀ H V̂ = K − Q − Qᵀ + N.
///
/// Shared by the widths: Vᵀ H for all r vectors (one `r × h_in × h_in` GEMM) and the K blocks.
/// Per width, V̂ᵀ for all r vectors at once (GPTQ quantizes the rows of Vᵀ independently, so the
/// chunks' V̂ are those rows; one call keeps its GEMMs tall), then per chunk Q (c²·h_in) and N:
/// from GPTQ's own scaled errors E (``GPTQ/quantizeKeepingErrors(_:prepared:keep:)``: Δᵀ H_d Δ = E Eᵀ
/// for the damped H_d = H + λI, so N = E Eᵀ − λ Δ_zᵀ Δ_z, Δ_z being Δ without H's dead columns);
/// for 16 and 1 bits (and RTN under H) from one triangular solve with GPTQ's factor U of H_d⁻¹
/// for all r vectors (N + λ Δ_zᵀΔ_z = Yᵀ Y with Y = U⁻ᵀ Δ_z, r·h_in² flops); or from Δᵀ H Δ
/// directly when there is no factor. No V̂ᵀ H product per width.
///
/// The split (``ChunkSplit``), in either order, writes the segment's error E = U_c A + δ V̂ᵀ with
/// A = Σ V_cᵀ − T V̂ᵀ = M V_cᵀ + T Δᵀ (M = Σ − T):
/// - paper: T = S = diag(σ̂), δ = (U_c − Û) S (``attributedErrors(of:factors:hessian:)``'s split);
/// - feedback: T = R S with R = U_cᵀ U*, δ = U* S − Û diag(σ̃) (``attributeFeedback(_:factors:vtH:feedback:)``'s split);
/// and vector i gets the V part (A H Aᵀ)ᵢᵢ = (M K Mᵀ + 2 M Q Tᵀ + T N Tᵀ)ᵢᵢ, the U part
/// (δᵀ δ G)ᵢᵢ and the cross part 2 (δᵀ U_c · A H V̂)ᵢᵢ with A H V̂ = Σ P − T G: the same values
/// as those direct splits up to rounding (tested), in products of c³ (Float64) and h_out·c² flops.
/// The small differences (M, Δ, δ) are formed before any product, so no Gram of the V part is a
/// difference of nearly equal large ones; G and P are, and only enter as the quantizers'
/// Hessians and targets.
///
/// Memory: Vᵀ, Vᵀ H and a width's V̂ᵀ, E (or Y) and Δ, `r × h_in` Floats each, besides the
/// factors and H.
struct MatrixMeasurement {
    let factors: StoredFactors
    let hessian: Matrix<Float>?
    let prepared: PreparedHessian?
    let options: SegmentOptions
    let chunks: [Range<Int>]
    /// Vᵀ, `r × h_in`.
    let vt: Matrix<Float>
    /// Vᵀ H (Vᵀ when H = I), `r × h_in`.
    let vtH: Matrix<Float>
    /// K per chunk.
    let k: [Matrix<Float>]
    /// σ̂ = F16(σ) over the stored vectors.
    let sigmaHat: [Float16]

    init(
        _ factors: StoredFactors, hessian: Matrix<Float>?, prepared: PreparedHessian?, options: SegmentOptions, chunkSize: Int
    ) throws(QuantizationError) {
        let r = factors.storedRank
        precondition(r > 0)
        sigmaHat = try SegmentWork.validate(factors, segment: Segment(start: 0, end: r, bits: 16), hessian: hessian)
        self.factors = factors
        self.hessian = hessian
        self.prepared = prepared
        self.options = options
        chunks = measurementChunks(rank: r, size: chunkSize)
        vt = factors.v.transposed()
        let vtH = try applyHessian(vt, hessian)
        self.vtH = vtH
        k = chunks.map { range in
            var block = Matrix<Float>(rows: range.count, columns: range.count)
            multiplyAdd(vtH, MatrixBlock(rows: range, columns: 0..<vtH.columns), factors.v,
                        MatrixBlock(rows: 0..<factors.v.rows, columns: range), beta: 0, into: &block, .all(block))
            symmetrize(&block)
            return block
        }
    }

    /// V_rᵀ H V_r (`r × r`), for the feedback order's dropped-error weights.
    func fullGram() -> Matrix<Float> { checked { try multiply(vtH, factors.v) } }

    /// εᵢ for every stored vector, each chunk quantized at `bits` as one segment in the options'
    /// order; each chunk's values sum to its segment's activation error.
    func errors(bits: Int) throws(QuantizationError) -> [Double] {
        try run(bits: bits, keep: false).errors
    }

    /// ``errors(bits:)`` with each chunk's quantized segment (V̂ rows, Û, σ̃) when `keep`.
    func run(bits: Int, keep: Bool) throws(QuantizationError) -> (errors: [Double], chunks: [ChunkResult]) {
        guard bits == 16 || (1...8).contains(bits) else {
            throw .invalidOption(option: "bits", reason: "a segment has 1…8 or 16 bits, got \(bits)")
        }
        let (r, hIn) = (factors.storedRank, vt.columns)

        // V̂ᵀ of all r vectors (GPTQ's N = E Eᵀ per chunk on the way), then Δᵀ in its place.
        var n: [Matrix<Float>]?
        var gptqPreparation: PreparedHessian?
        var vHatT: Matrix<Float>?
        var deltaT: Matrix<Float>
        do {
            let vq: QuantizedWeight
            if (2...8).contains(bits), options.method == .gptq, let hessian {
                let made: PreparedHessian
                if let prepared {
                    made = prepared
                } else {
                    made = try PreparedHessian(hessian: hessian, dampening: options.dampening, actOrder: options.actOrder,
                                               name: "calibration Hessian")
                }
                let quantized = try SegmentWork.gptq(bits, options).quantizeKeepingErrors(vt, prepared: made, keep: true)
                vq = quantized.weight
                n = chunks.map { range in gram(rowsOf: quantized.errors!, range) }                 // E Eᵀ
                gptqPreparation = made
            } else {
                vq = try SegmentWork.quantizeV(vt, bits: bits, options: options, hessian: hessian, preparedV: prepared)
            }
            if keep { vHatT = vq.dequantized }
            deltaT = vq.dequantized
        }
        deltaT.withUnsafeMutableBufferPointer { pd in
            vt.withUnsafeBufferPointer { pv in for t in 0..<pd.count { pd[t] = pv[t] - pd[t] } }
        }
        // N = Δᵀ H Δ per chunk.
        if var fromErrors = n, let gptqPreparation {
            subtractDampedPart(&fromErrors, deltaT: deltaT, preparation: gptqPreparation)
            n = fromErrors
        } else if let hessian {
            if let prepared, prepared.permutation == nil {
                // Y = U⁻ᵀ Δ_z (`h_in × r`), U the upper factor of H_d⁻¹: Yᵀ Y = Δ_zᵀ H_d Δ_z.
                let y = checked { try solveTriangular(prepared.inverseFactor, deadZeroed(deltaT, prepared).transposed(),
                                                      triangle: .upper, transpose: true) }
                var damped = chunks.map { range in LinearAlgebra.gram(y.columnSlice(range), transpose: true) }
                subtractDampedPart(&damped, deltaT: deltaT, preparation: prepared)
                n = damped
            } else {
                let deltaH = checked { try multiply(deltaT, hessian) }
                n = chunks.map { range in
                    var block = Matrix<Float>(rows: range.count, columns: range.count)
                    multiplyAdd(deltaH, MatrixBlock(rows: range, columns: 0..<hIn), deltaT, MatrixBlock(rows: range, columns: 0..<hIn),
                                transposeB: true, beta: 0, into: &block, .all(block))
                    symmetrize(&block)
                    return block
                }
            }
        } else {
            n = chunks.map { range in gram(rowsOf: deltaT, range) }
        }

        var errors = [Double](repeating: 0, count: r)
        var results: [ChunkResult] = []
        for (j, range) in chunks.enumerated() {
            let c = range.count
            var q = Matrix<Float>(rows: c, columns: c)                                           // Vᵀ H Δ
            multiplyAdd(vtH, MatrixBlock(rows: range, columns: 0..<hIn), deltaT, MatrixBlock(rows: range, columns: 0..<hIn),
                        transposeB: true, beta: 0, into: &q, .all(q))
            let split = ChunkSplit(u: factors.u.columnSlice(range).matrix, sigma: Array(factors.singularValues[range]),
                                   sigmaHat: Array(sigmaHat[range]), k: k[j], q: q, n: n![j], options: options,
                                   calibrated: hessian != nil)
            let result = try split.run(bits: bits)
            for (t, i) in range.enumerated() { errors[i] = result.errors[t] }
            if keep {
                results.append(ChunkResult(range: range, errors: result.errors, vHatT: vHatT!.rowSlice(range), u: result.u,
                                           singularValues: result.sigma))
            }
        }
        return (errors, results)
    }

    /// The rows `range` of `a` (`r × h_in`) times their transpose, `c × c` (`syrk` on the block).
    private func gram(rowsOf a: Matrix<Float>, _ range: Range<Int>) -> Matrix<Float> {
        var block = Matrix<Float>(rows: range.count, columns: range.count)
        multiplyAdd(a, MatrixBlock(rows: range, columns: 0..<a.columns), a, MatrixBlock(rows: range, columns: 0..<a.columns),
                    transposeB: true, beta: 0, into: &block, .all(block))
        symmetrize(&block)
        return block
    }

    /// Δᵀ with H's dead columns zeroed (their rows of H are zero; the factor has 1 + λ there).
    private func deadZeroed(_ deltaT: Matrix<Float>, _ preparation: PreparedHessian) -> Matrix<Float> {
        var out = deltaT
        let dead = preparation.dead
        guard dead.contains(true) else { return out }
        out.withUnsafeMutableBufferPointer { p in
            for j in 0..<dead.count where dead[j] { for i in 0..<deltaT.rows { p[i + j * deltaT.rows] = 0 } }
        }
        return out
    }

    /// N −= λ Δ_zᵀ Δ_z per chunk: from Δᵀ H_d Δ to Δᵀ H Δ.
    private func subtractDampedPart(_ n: inout [Matrix<Float>], deltaT: Matrix<Float>, preparation: PreparedHessian) {
        let zeroed = deadZeroed(deltaT, preparation)
        for (j, range) in chunks.enumerated() {
            multiplyAdd(zeroed, MatrixBlock(rows: range, columns: 0..<zeroed.columns), zeroed,
                        MatrixBlock(rows: range, columns: 0..<zeroed.columns), transposeB: true, alpha: -preparation.lambda, beta: 1,
                        into: &n[j], .all(n[j]))
            symmetrize(&n[j])
        }
    }
}

/// One chunk's quantized segment, for tests: V̂_cᵀ (`c × h_in`), Û (`h_out × c`), σ̃.
struct ChunkResult {
    let range: Range<Int>
    let errors: [Double]
    let vHatT: Matrix<Float>
    let u: Matrix<Float>
    let singularValues: [Float16]

    /// ΔŴ_c = Û diag(σ̃) V̂_cᵀ.
    var reconstruction: Matrix<Float> {
        checked { try multiply(u, scaledRows(vHatT, singularValues.map { Float($0) })) }
    }
}

/// A chunk's U side and split, given its V side's Grams (see ``MatrixMeasurement``).
struct ChunkSplit {
    /// U_c, `h_out × c`.
    let u: Matrix<Float>
    let sigma: [Float]
    let sigmaHat: [Float16]
    let k: Matrix<Float>
    let q: Matrix<Float>
    let n: Matrix<Float>
    let options: SegmentOptions
    let calibrated: Bool

    /// εᵢ, Û and σ̃ (σ̂ in the paper's order).
    func run(bits: Int) throws(QuantizationError) -> (errors: [Double], u: Matrix<Float>, sigma: [Float16]) {
        let c = sigma.count
        var p = k                                                                                  // Vᵀ H V̂
        var g = k                                                                                  // V̂ᵀ H V̂
        for j in 0..<c {
            for i in 0..<c {
                p[i, j] = k[i, j] - q[i, j]
                g[i, j] = k[i, j] - q[i, j] - q[j, i] + n[i, j]
            }
        }
        symmetrize(&g)
        let s = sigmaHat.map { Float($0) }
        var t = Matrix<Float>(rows: c, columns: c)
        var delta: Matrix<Float>
        let uHat: Matrix<Float>, sigmaOut: [Float16]
        switch options.order {
        case .paper:
            var hu = g
            for j in 0..<c { for i in 0..<c { hu[i, j] *= s[i] * s[j] } }
            uHat = try SegmentWork.quantizeU(u, bits: bits, options: options, calibrated: calibrated, hu: hu).dequantized
            sigmaOut = sigmaHat
            for i in 0..<c { t[i, i] = s[i] }
            delta = u
            delta.withUnsafeMutableBufferPointer { pd in
                uHat.withUnsafeBufferPointer { pq in
                    for j in 0..<c {
                        for i in 0..<u.rows { pd[i + j * u.rows] = (pd[i + j * u.rows] - pq[i + j * u.rows]) * s[j] }
                    }
                }
            }
        case .feedback:
            // C = U_c Σ P: the target's products with H V̂.
            let cMatrix = checked { try multiply(u, scaledRows(p, sigma)) }
            var warnings: [QuantizationWarning] = []
            let fit = try FeedbackFit(c: cMatrix, g: g, sigmaHat: sigmaHat, uSegment: u, bits: bits, options: options,
                                      calibrated: calibrated, warnings: &warnings)
            uHat = fit.u.dequantized
            sigmaOut = fit.sigma
            t = checked { try multiply(u, transposeA: true, fit.uStar) }                           // R
            for j in 0..<c { for i in 0..<c { t[i, j] *= s[j] } }                                 // R S
            let sigmaTilde = fit.sigma.map { Float($0) }
            delta = fit.uStar
            delta.withUnsafeMutableBufferPointer { pd in
                uHat.withUnsafeBufferPointer { pq in
                    for j in 0..<c {
                        for i in 0..<u.rows {
                            pd[i + j * u.rows] = pd[i + j * u.rows] * s[j] - pq[i + j * u.rows] * sigmaTilde[j]
                        }
                    }
                }
            }
        }
        return (split(t: t, delta: delta, p: p, g: g), uHat, sigmaOut)
    }

    /// εᵢ = (M K Mᵀ + 2 M Q Tᵀ + T N Tᵀ)ᵢᵢ + (δᵀ δ G)ᵢᵢ + 2 (δᵀ U_c (Σ P − T G))ᵢᵢ with M = Σ − T.
    private func split(t: Matrix<Float>, delta: Matrix<Float>, p: Matrix<Float>, g: Matrix<Float>) -> [Double] {
        let c = sigma.count
        let t64 = Matrix<Double>(t)
        var m64 = Matrix<Double>(t).map { -$0 }
        for i in 0..<c { m64[i, i] += Double(sigma[i]) }
        func rowDots(_ a: Matrix<Double>, _ b: Matrix<Double>) -> [Double] {
            (0..<c).map { i in (0..<c).reduce(0.0) { $0 + a[i, $1] * b[i, $1] } }
        }
        // V part.
        let mk = checked { try multiply(m64, Matrix<Double>(k)) }
        let mq = checked { try multiply(m64, Matrix<Double>(q)) }
        let tn = checked { try multiply(t64, Matrix<Double>(n)) }
        var errors = rowDots(mk, m64)
        for (i, (x, y)) in zip(rowDots(mq, t64), rowDots(tn, t64)).enumerated() { errors[i] += 2 * x + y }
        // U part: column i of δ against column i of δ G.
        for (i, x) in columnDots(delta, checked { try multiply(delta, g) }).enumerated() { errors[i] += x }
        // Cross part with A H V̂ = Σ P − T G.
        var ahv = checked { try multiply(t64, Matrix<Double>(g)) }
        for j in 0..<c { for i in 0..<c { ahv[i, j] = Double(sigma[i]) * Double(p[i, j]) - ahv[i, j] } }
        let du = Matrix<Double>(checked { try multiply(delta, transposeA: true, u) })            // δᵀ U_c
        for i in 0..<c {
            var sum = 0.0
            for j in 0..<c { sum += du[i, j] * ahv[j, i] }
            errors[i] += 2 * sum
        }
        return errors
    }
}
