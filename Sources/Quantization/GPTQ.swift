import LinearAlgebra
import Optimizer

/// A Hessian made ready for GPTQ: dead columns fixed, optionally reordered, damped, and reduced
/// to the upper Cholesky factor of its inverse. Depends only on H and the damping, so one
/// preparation serves every bit-width and every matrix that reads the same input.
///
/// Steps (Frantar et al. 2022, and the reference `fasterquant`):
/// 1. dead columns (H_jj = 0) get H_jj = 1 (their weights are zeroed when quantizing);
/// 2. act-order: columns reordered by descending H_jj (ties by index);
/// 3. H + λI with λ = dampening · mean(diag H);
/// 4. the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU; ``inverseCholeskyFactor(_:)``: `potrf`,
///    `potri`, `potrf`): row j of U carries the error propagation of column j.
/// If a Cholesky fails, the dampening is multiplied by 10 (0.01 if it was 0) and the steps are
/// retried, up to `maxRetries` times; each retry adds a ``QuantizationWarning``.
///
/// Cost ≈ (4/3)·n³ flops in Float32 for an n × n H; memory one n × n working matrix besides the
/// caller's H (steps 1–3 write straight into it, step 4 works in place), which becomes U.
public struct PreparedHessian: Sendable {
    public let order: Int
    /// Columns with H_jj = 0.
    public let dead: [Bool]
    /// Act-order: `permutation[p]` = original column processed at position p.
    public let permutation: [Int]?
    /// U, upper triangular, in processing order: H⁻¹ = UᵀU (of the damped, reordered H).
    public let inverseFactor: Matrix<Float>
    /// The dampening finally used, as a fraction of mean(diag H).
    public let dampening: Double
    /// λ = dampening · mean(diag H) as added to the diagonal (Float32), dead columns' 1 included
    /// in the mean: the damped H is H + λI with 1 + λ on dead columns' diagonal.
    public let lambda: Float
    public let warnings: [QuantizationWarning]

    /// - Throws: ``QuantizationError/shapeMismatch(what:expected:found:)`` for a non-square H,
    ///   ``QuantizationError/nonFiniteInput(what:)``,
    ///   ``QuantizationError/hessianNotPositiveDefinite(what:lastDampening:)`` after the retries.
    public init(hessian: Matrix<Float>, dampening: Double = QuantizationMethod.defaultDampening, actOrder: Bool = false,
                maxRetries: Int = 4, name: String = "Hessian") throws(QuantizationError) {
        let n = hessian.rows
        guard hessian.columns == n else {
            throw .shapeMismatch(what: name, expected: Shape(rows: n, columns: n), found: hessian.shape)
        }
        guard dampening >= 0, dampening.isFinite else {
            throw .invalidOption(option: "dampening", reason: "must be a finite fraction ≥ 0, got \(dampening)")
        }
        try validateFinite(hessian, name)
        let dead = (0..<n).map { hessian[$0, $0] == 0 }
        var warnings: [QuantizationWarning] = []
        let deadCount = dead.filter { $0 }.count
        if deadCount > 0 { warnings.append(.deadColumns(count: deadCount)) }
        func diagonal(_ j: Int) -> Float { dead[j] ? 1 : hessian[j, j] }
        var permutation: [Int]?
        if actOrder {
            permutation = (0..<n).sorted { diagonal($0) != diagonal($1) ? diagonal($0) > diagonal($1) : $0 < $1 }
        }
        var meanDiagonal = 0.0
        for j in 0..<n { meanDiagonal += Double(diagonal(j)) }
        meanDiagonal /= Double(max(n, 1))
        var damp = dampening
        var factor: Matrix<Float>?
        var lambda: Float = 0
        for attempt in 0...max(0, maxRetries) {
            // Steps 1–3 into a fresh buffer (the failed attempt's was overwritten in place).
            lambda = Float(damp * meanDiagonal)
            let damped: Matrix<Float>
            if let p = permutation {
                damped = Matrix(rows: n, columns: n) { i, j in i == j ? diagonal(p[i]) + lambda : hessian[p[i], p[j]] }
            } else {
                damped = Matrix(rows: n, columns: n) { i, j in i == j ? diagonal(i) + lambda : hessian[i, j] }
            }
            if let u = try? inverseCholeskyFactor(damped), u.isFinite {
                factor = u
                break
            }
            guard attempt < maxRetries else { break }
            let next = damp > 0 ? damp * 10 : 0.01
            warnings.append(.dampingIncreased(dampening: damp, retriedWith: next))
            damp = next
        }
        guard let factor else { throw .hessianNotPositiveDefinite(what: name, lastDampening: damp) }
        self.order = n
        self.dead = dead
        self.permutation = permutation
        self.inverseFactor = factor
        self.dampening = damp
        self.lambda = lambda
        self.warnings = warnings
    }
}

/// GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
/// Transformers", 2022): quantizes W column by column, minimising tr(δW H δWᵀ) = ‖(W − Ŵ)X‖²
/// for H = X Xᵀ, by spreading each column's rounding error over the columns not yet quantized.
///
/// With U the upper Cholesky factor of H⁻¹ (``PreparedHessian``), column j is quantized on the
/// current group grid, e = (w_j − ŵ_j)/U_jj, and every later column l gets w_l −= e·U_jl.
/// Lazy batch updates: inside a block of `blockSize` columns the update is applied column by
/// column to the block only; the rest of the matrix gets one GEMM per block,
/// W[:, i₂:] −= E·U[i₁:i₂, i₂:] (`sgemm`, in column chunks of 1024).
///
/// Groups: the grid of a group (``GroupGrid``: asymmetric min–max, F16 scale rounded up, integer
/// zero) is computed from the current, error-updated weights of the group's columns when its
/// first column is reached, as in the reference. Blocks are aligned to groups (block size =
/// groupSize when groupSize ≤ blockSize or does not divide evenly), so at that moment the
/// group's columns have received every earlier update: the result equals the unblocked
/// algorithm up to Float32 rounding. With act-order the columns are processed in descending
/// H_jj order and groups are consecutive in that order (``QuantizedWeight/permutation``).
///
/// Cost: the preparation (≈ (5/3)·n³) plus ≈ rows·n² flops of GEMM and rows·n·blockSize/2 of
/// column updates, for an n-column W. Float32 arithmetic (the reference's precision).
public struct GPTQ: Sendable, Hashable {
    /// 2…8.
    public var bits: Int
    public var groupSize: Int
    /// λ = dampening · mean(diag H) (the reference's `percdamp`).
    public var dampening: Double
    public var blockSize: Int
    public var actOrder: Bool
    public var symmetric: Bool
    /// Search each group's clipping range when the group is reached (``rowGrids``) instead of
    /// taking its min–max.
    public var clipSearch: Bool

    public init(bits: Int, groupSize: Int = StorageModel.defaultGroupSize, dampening: Double = QuantizationMethod.defaultDampening, blockSize: Int = 128,
                actOrder: Bool = false, symmetric: Bool = false, clipSearch: Bool = false) {
        self.bits = bits
        self.groupSize = groupSize
        self.dampening = dampening
        self.blockSize = blockSize
        self.actOrder = actOrder
        self.symmetric = symmetric
        self.clipSearch = clipSearch
    }

    /// Quantizes `w` (`rows × columns`) with Hessian `hessian` (`columns × columns`).
    public func quantize(_ w: Matrix<Float>, hessian: Matrix<Float>) throws(QuantizationError) -> QuantizedWeight {
        guard hessian.rows == w.columns, hessian.columns == w.columns else {
            throw .shapeMismatch(what: "GPTQ Hessian", expected: Shape(rows: w.columns, columns: w.columns), found: hessian.shape)
        }
        return try quantize(w, prepared: PreparedHessian(hessian: hessian, dampening: dampening, actOrder: actOrder))
    }

    /// Quantizes `w` with an already prepared Hessian (its act-order and dampening are used).
    public func quantize(_ w: Matrix<Float>, prepared: PreparedHessian) throws(QuantizationError) -> QuantizedWeight {
        try quantizeKeepingErrors(w, prepared: prepared, keep: false).weight
    }

    /// ``quantize(_:prepared:)``, and the scaled errors E (`rows × columns`, in processing order):
    /// eⱼ = (wⱼ′ − ŵⱼ)/U_jj for the error-updated column wⱼ′. In exact arithmetic the total update is
    /// W − Ŵ = E·U (W with dead columns zeroed, in processing order), so with H_d the damped H that
    /// U factors (H_d⁻¹ = UᵀU):  (W − Ŵ) H_d (W − Ŵ)ᵀ = E U H_d Uᵀ Eᵀ = E Eᵀ,  GPTQ's loss as a
    /// `rows × rows` Gram without an n × n product. Nil `errors` unless `keep`.
    func quantizeKeepingErrors(
        _ w: Matrix<Float>, prepared: PreparedHessian, keep: Bool
    ) throws(QuantizationError) -> (weight: QuantizedWeight, errors: Matrix<Float>?) {
        try validateBits(bits)
        guard groupSize > 0, blockSize > 0 else {
            throw .invalidOption(option: "group/block size", reason: "must be positive, got \(groupSize)/\(blockSize)")
        }
        guard prepared.order == w.columns else {
            throw .shapeMismatch(what: "GPTQ Hessian", expected: Shape(rows: w.columns, columns: w.columns),
                                 found: Shape(rows: prepared.order, columns: prepared.order))
        }
        try validateFinite(w, "weight")
        let (rows, n) = (w.rows, w.columns)
        let group = min(groupSize, max(n, 1))
        let block = group <= blockSize || group % blockSize != 0 ? group : blockSize
        let groups = (n + group - 1) / group

        // Working copy in processing order, dead columns zeroed.
        var work = Matrix<Float>(rows: rows, columns: n)
        for p in 0..<n {
            let j = prepared.permutation?[p] ?? p
            if !prepared.dead[j] { work.setColumn(p, to: w.column(j)) }
        }
        // Codes column by column in processing order (contiguous writes), made row-major at the end.
        var columnCodes = [UInt8](repeating: 0, count: rows * n)
        var scales = [Float16](repeating: 0, count: rows * groups)
        var zeros = [Float16](repeating: 0, count: rows * groups)
        var grids = [GroupGrid]()
        let hinv = prepared.inverseFactor

        var kept = keep ? Matrix<Float>(rows: rows, columns: n) : nil
        var i1 = 0
        while i1 < n {
            let i2 = min(i1 + block, n), count = i2 - i1
            var errors = [Float](repeating: 0, count: rows * count)
            for i in i1..<i2 {
                if i % group == 0 {
                    let range = i..<min(i + group, n)
                    grids = try rowGrids(work, columns: range, bits: bits, symmetric: symmetric, clipSearch: clipSearch)
                    for (r, grid) in grids.enumerated() {
                        scales[r * groups + i / group] = Float16(grid.scale)
                        zeros[r * groups + i / group] = Float16(grid.zero)
                    }
                }
                hinv.withUnsafeBufferPointer { ph in
                    work.withUnsafeMutableBufferPointer { pw in
                        let d = ph[i + i * n]
                        let column = pw.baseAddress! + i * rows
                        let e = errors.withUnsafeMutableBufferPointer { $0.baseAddress! + (i - i1) * rows }
                        grids.withUnsafeBufferPointer { pg in
                            columnCodes.withUnsafeMutableBufferPointer { pc in
                                let c = pc.baseAddress! + i * rows
                                for r in 0..<rows {
                                    let x = column[r]
                                    let q = pg[r].code(x)
                                    let v = pg[r].value(ofCode: q)
                                    c[r] = UInt8(q)
                                    column[r] = v
                                    e[r] = (x - v) / d
                                }
                            }
                        }
                        for l in (i + 1)..<i2 {
                            let u = ph[i + l * n]
                            let target = pw.baseAddress! + l * rows
                            for r in 0..<rows { target[r] -= e[r] * u }
                        }
                    }
                }
            }
            // Lazy batch update of the columns after the block: W[:, i₂:] −= E·U[i₁:i₂, i₂:], one
            // GEMM on the blocks in place.
            let errorMatrix = Matrix(rows: rows, columns: count, elements: errors)
            if i2 < n {
                multiplyAdd(errorMatrix, .all(errorMatrix), hinv, MatrixBlock(rows: i1..<i2, columns: i2..<n),
                            alpha: -1, beta: 1, into: &work, MatrixBlock(rows: 0..<rows, columns: i2..<n))
            }
            if keep {
                errorMatrix.withUnsafeBufferPointer { pe in
                    kept!.withUnsafeMutableBufferPointer { pk in
                        (pk.baseAddress! + i1 * rows).update(from: pe.baseAddress!, count: rows * count)
                    }
                }
            }
            i1 = i2
        }

        // Back to the original column order; codes row-major (`codes[r·n + j]`), by tiles.
        var out = work
        if let permutation = prepared.permutation {
            for p in 0..<n { out.setColumn(permutation[p], to: work.column(p)) }
        }
        var codes = [UInt8](repeating: 0, count: rows * n)
        codes.withUnsafeMutableBufferPointer { pc in
            columnCodes.withUnsafeBufferPointer { pcc in
                let tile = 64
                for r0 in stride(from: 0, to: rows, by: tile) {
                    for p0 in stride(from: 0, to: n, by: tile) {
                        for p in p0..<min(p0 + tile, n) {
                            let j = prepared.permutation?[p] ?? p
                            for r in r0..<min(r0 + tile, rows) { pc[r * n + j] = pcc[p * rows + r] }
                        }
                    }
                }
            }
        }
        let weight = QuantizedWeight(rows: rows, columns: n, bits: bits, groupSize: group, codes: codes, scales: scales,
                                     zeros: zeros, halfValues: [], permutation: prepared.permutation, dequantized: out,
                                     dampening: prepared.dampening, warnings: prepared.warnings)
        return (weight, kept)
    }
}
