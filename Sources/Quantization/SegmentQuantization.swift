import Analysis
import LinearAlgebra
import Optimizer

/// Which quantizer a segment of 2…8 bits uses.
public enum QuantizationMethod: String, Sendable, Codable, CaseIterable {
    /// GPTQ with the calibration Hessian (the paper's method).
    case gptq
    /// Round-to-nearest min–max groups (data-free, or a cheap baseline).
    case rtn
}

/// How segments are quantized.
public struct SegmentOptions: Sendable, Hashable {
    public var method: QuantizationMethod
    public var groupSize: Int
    /// GPTQ damping as a fraction of mean(diag H).
    public var dampening: Double
    public var actOrder: Bool

    public init(method: QuantizationMethod = .gptq, groupSize: Int = 128, dampening: Double = 0.01, actOrder: Bool = false) {
        self.method = method
        self.groupSize = groupSize
        self.dampening = dampening
        self.actOrder = actOrder
    }
}

/// One quantized segment [a, b) at k bits of ΔW ≈ U·diag(σ)·Vᵀ (`rows × columns` = h_out × h_in),
/// laid out as the artifact stores it (see `StorageModel`): Vᵀ rows `(b − a) × h_in` grouped
/// along h_in, U columns as an `h_out × (b − a)` weight grouped along the segment, σ in F16.
public struct QuantizedSegment: Sendable {
    public var segment: Segment
    /// h_out.
    public var rows: Int
    /// h_in.
    public var columns: Int
    /// V̂_segᵀ, `(b − a) × h_in`.
    public var vt: QuantizedWeight
    /// Û_seg, `h_out × (b − a)`.
    public var u: QuantizedWeight
    /// σ̂ᵢ = F16(σᵢ) for i in [a, b).
    public var singularValues: [Float16]

    public var warnings: [QuantizationWarning] { vt.warnings + u.warnings }

    /// ΔŴ_seg = Û·diag(σ̂)·V̂ᵀ, `h_out × h_in` (one `sgemm`, 2·h_out·h_in·(b − a) flops).
    public var reconstruction: Matrix<Float> {
        checked { try multiply(u.dequantized, scaledRows(vt.dequantized, singularValues.map { Float($0) })) }
    }
}

/// Σ_seg ΔŴ_seg over `segments` (all of one `rows × columns` matrix); zeros when empty.
public func reconstruct(_ segments: [QuantizedSegment], rows: Int, columns: Int) -> Matrix<Float> {
    var total = Matrix<Float>(rows: rows, columns: columns)
    for s in segments {
        precondition(s.rows == rows && s.columns == columns, "segment of a \(s.rows)×\(s.columns) matrix, expected \(rows)×\(columns)")
        let part = s.reconstruction
        total.withUnsafeMutableBufferPointer { pt in
            part.withUnsafeBufferPointer { pp in for t in 0..<pp.count { pt[t] += pp[t] } }
        }
    }
    return total
}

/// Delta-CoMe's quantization of one segment [a, b) at `bits` bits (paper §3; released code):
///
/// 1. V̂ᵀ: the rows vᵢᵀ, i ∈ [a, b), form a `(b − a) × h_in` weight whose input is the layer input
///    X; quantized with GPTQ using H = X Xᵀ (RTN when `method` is `.rtn` or H is the identity:
///    with a diagonal H, GPTQ propagates nothing and equals RTN);
/// 2. Û: the columns uᵢ form an `h_out × (b − a)` weight whose input is Σ̂ V̂ᵀ X, quantized with
///    GPTQ using its Hessian H_U = Σ̂ V̂ᵀ H V̂ Σ̂ (computed from H, no activations; one
///    `(b−a) × h_in × h_in` GEMM and one `(b−a)² × h_in`);
/// 3. 1 bit: ``Sign`` on both; 16 bits: ``F16`` on both; σ̂ = F16(σ) always.
///
/// - Parameters:
///   - hessian: H (`h_in × h_in`), or nil for H = I (data-free).
///   - preparedV: a ``PreparedHessian`` of H made with the same dampening and act-order, to
///     share across segments, bit-widths and matrices with the same input.
/// - Throws: ``QuantizationError`` for a bad segment or bit-width, shapes, non-finite input,
///   values beyond F16, or a Hessian that stays indefinite after damping retries.
public func quantizeSegment(
    _ factors: StoredFactors, segment: Segment, hessian: Matrix<Float>?, options: SegmentOptions = SegmentOptions(),
    preparedV: PreparedHessian? = nil
) throws(QuantizationError) -> QuantizedSegment {
    try SegmentWork(factors, segment: segment, hessian: hessian, options: options, preparedV: preparedV).result
}

/// The activation error of one quantized segment attributed to its vectors; the values sum to
/// ‖(U_seg Σ_seg V_segᵀ − Û Σ̂ V̂ᵀ) X‖² (exactly, up to rounding and UᵀU = I).
///
/// With A = Σ V_segᵀ − Σ̂ V̂ᵀ (rows aᵢ), B = Σ̂ V̂ᵀ, δU = U_seg − Û and H_U = B H Bᵀ, the error
/// E = U_seg A + δU B has ‖E X‖² = tr(A H Aᵀ) + tr(δU H_U δUᵀ) + 2 tr(δUᵀ U_seg A H Bᵀ), and
/// vector i gets
/// - the V part aᵢᵀ H aᵢ (rows of A are separable because U_seg has orthonormal columns);
/// - the U part δuᵢᵀ (δU H_U)ᵢ (the trace split by columns of δU);
/// - the cross part 2 (δUᵀ U_seg · A H Bᵀ)ᵢᵢ (also split by columns of δU).
/// Caveat: GPTQ pushes the rounding error of early columns of U into later ones, so the column
/// split credits the early (large-σ) vectors with little U error and the late ones with the
/// compensation; values of either sign result (on a strongly correlated H, a quarter of the
/// vectors at 2 bits got negative values). A proportional share by ‖δuᵢ‖²(H_U)ᵢᵢ was tried and
/// predicted plans no better: the limit is that a long segment compensates more than a plan's
/// short ones (see ``measureQuantizationErrors(_:hessian:options:preparedV:)``).
/// Accumulated in Double. Cost: the GEMMs of ``quantizeSegment(_:segment:hessian:options:preparedV:)``
/// plus `(b−a)·h_in·h_in` for Vᵀ H and three `(b−a)²·max(h_in, h_out)` products.
public func attributedErrors(
    of quantized: QuantizedSegment, factors: StoredFactors, hessian: Matrix<Float>?
) throws(QuantizationError) -> [Double] {
    let s = quantized.segment
    let vt = factors.v.columnSlice(s.start..<s.end).matrix.transposed()
    let b = scaledRows(quantized.vt.dequantized, quantized.singularValues.map { Float($0) })
    let bh = try applyHessian(b, hessian)
    let hu = checked { try multiply(bh, b, transposeB: true) }
    return attribute(quantized, factors: factors, vtH: try applyHessian(vt, hessian), bh: bh, hu: hu)
}

// MARK: Internals

/// A segment's quantization with the products the error attribution reuses.
struct SegmentWork {
    var result: QuantizedSegment
    /// B·H with B = Σ̂ V̂ᵀ, `(b − a) × h_in`.
    var bh: Matrix<Float>
    /// H_U = B H Bᵀ.
    var hu: Matrix<Float>

    init(
        _ factors: StoredFactors, segment: Segment, hessian: Matrix<Float>?, options: SegmentOptions,
        preparedV: PreparedHessian?
    ) throws(QuantizationError) {
        let (hOut, hIn, r) = (factors.u.rows, factors.v.rows, factors.storedRank)
        guard segment.end <= r, segment.count > 0 else {
            throw .invalidOption(option: "segment", reason: "[\(segment.start), \(segment.end)) must be a non-empty range within the \(r) stored vectors")
        }
        guard segment.bits == 16 || (1...8).contains(segment.bits) else {
            throw .invalidOption(option: "bits", reason: "a segment has 1…8 or 16 bits, got \(segment.bits)")
        }
        guard factors.singularValues.count >= r else {
            throw .shapeMismatch(what: "singular values", expected: Shape(rows: r, columns: 1),
                                 found: Shape(rows: factors.singularValues.count, columns: 1))
        }
        if let hessian, hessian.rows != hIn || hessian.columns != hIn {
            throw .shapeMismatch(what: "calibration Hessian", expected: Shape(rows: hIn, columns: hIn), found: hessian.shape)
        }
        var sigma: [Float16] = []
        for i in segment.start..<segment.end {
            let h = Float16(factors.singularValues[i])
            guard h.isFinite else { throw .notRepresentableInF16(what: "singular value \(i)", value: Double(factors.singularValues[i])) }
            sigma.append(h)
        }
        let vt = factors.v.columnSlice(segment.start..<segment.end).matrix.transposed()
        let u = factors.u.columnSlice(segment.start..<segment.end).matrix
        let vq: QuantizedWeight, uq: QuantizedWeight
        switch segment.bits {
        case 16:
            vq = try F16().quantize(vt)
            uq = try F16().quantize(u)
            (bh, hu) = try Self.inputProducts(vq, sigma, hessian)
        case 1:
            vq = try Sign().quantize(vt)
            uq = try Sign().quantize(u)
            (bh, hu) = try Self.inputProducts(vq, sigma, hessian)
        default:
            let useGPTQ = options.method == .gptq && hessian != nil
            if useGPTQ, let hessian {
                let gptq = GPTQ(bits: segment.bits, groupSize: options.groupSize, dampening: options.dampening, actOrder: options.actOrder)
                let prepared: PreparedHessian
                if let preparedV {
                    prepared = preparedV
                } else {
                    prepared = try PreparedHessian(hessian: hessian, dampening: options.dampening,
                                                   actOrder: options.actOrder, name: "calibration Hessian")
                }
                vq = try gptq.quantize(vt, prepared: prepared)
                (bh, hu) = try Self.inputProducts(vq, sigma, hessian)
                let preparedU = try PreparedHessian(hessian: hu, dampening: options.dampening, actOrder: options.actOrder,
                                                    name: "Hessian of U's input (Σ̂ V̂ᵀ H V̂ Σ̂)")
                uq = try gptq.quantize(u, prepared: preparedU)
            } else {
                let rtn = RTN(bits: segment.bits, groupSize: options.groupSize)
                vq = try rtn.quantize(vt)
                uq = try rtn.quantize(u)
                (bh, hu) = try Self.inputProducts(vq, sigma, hessian)
            }
        }
        result = QuantizedSegment(segment: segment, rows: hOut, columns: hIn, vt: vq, u: uq, singularValues: sigma)
    }

    /// (B H, B H Bᵀ) for B = Σ̂ V̂ᵀ.
    static func inputProducts(_ vq: QuantizedWeight, _ sigma: [Float16], _ hessian: Matrix<Float>?) throws(QuantizationError) -> (Matrix<Float>, Matrix<Float>) {
        let b = scaledRows(vq.dequantized, sigma.map { Float($0) })
        let bh = try applyHessian(b, hessian)
        var hu = checked { try multiply(bh, b, transposeB: true) }
        // Exact symmetry (GEMM rounding differs between the triangles).
        let c = hu.rows
        for j in 0..<c { for i in (j + 1)..<c { let m = (hu[i, j] + hu[j, i]) / 2; hu[i, j] = m; hu[j, i] = m } }
        return (bh, hu)
    }
}

/// M·H for a `k × h_in` M (M itself when H is nil = identity).
func applyHessian(_ m: Matrix<Float>, _ hessian: Matrix<Float>?) throws(QuantizationError) -> Matrix<Float> {
    guard let hessian else { return m }
    guard hessian.rows == m.columns, hessian.columns == m.columns else {
        throw .shapeMismatch(what: "calibration Hessian", expected: Shape(rows: m.columns, columns: m.columns), found: hessian.shape)
    }
    return checked { try multiply(m, hessian) }
}

/// diag(s)·M: row i of M scaled by s[i].
func scaledRows(_ m: Matrix<Float>, _ s: [Float]) -> Matrix<Float> {
    precondition(s.count == m.rows)
    var out = m
    out.withUnsafeMutableBufferPointer { p in
        for j in 0..<m.columns { for i in 0..<m.rows { p[i + j * m.rows] *= s[i] } }
    }
    return out
}

/// The attribution of ``attributedErrors(of:factors:hessian:)`` given V_segᵀ H, B H and H_U.
func attribute(_ q: QuantizedSegment, factors: StoredFactors, vtH: Matrix<Float>, bh: Matrix<Float>, hu: Matrix<Float>) -> [Double] {
    let s = q.segment
    let c = s.count, hIn = q.columns
    let sigma = (s.start..<s.end).map { factors.singularValues[$0] }
    let b = scaledRows(q.vt.dequantized, q.singularValues.map { Float($0) })
    let vt = factors.v.columnSlice(s.start..<s.end).matrix.transposed()
    // A = Σ Vᵀ − B (on the fly) and A H = Σ (Vᵀ H) − B H, both c × h_in; ε_V,i = Σ_col (A H)ᵢ A_i.
    var ah = Matrix<Float>(rows: c, columns: hIn)
    var errors = [Double](repeating: 0, count: c)
    vt.withUnsafeBufferPointer { pv in
        b.withUnsafeBufferPointer { pb in
            vtH.withUnsafeBufferPointer { pvh in
                bh.withUnsafeBufferPointer { pbh in
                    ah.withUnsafeMutableBufferPointer { pah in
                            for j in 0..<hIn {
                                for i in 0..<c {
                                    let t = i + j * c
                                    let x = Double(sigma[i]) * Double(pv[t]) - Double(pb[t])
                                    let y = Double(sigma[i]) * Double(pvh[t]) - Double(pbh[t])
                                    pah[t] = Float(y)
                                    errors[i] += x * y
                                }
                            }
                    }
                }
            }
        }
    }
    // U part and cross part.
    let u = factors.u.columnSlice(s.start..<s.end).matrix
    var du = u
    du.withUnsafeMutableBufferPointer { pd in
        q.u.dequantized.withUnsafeBufferPointer { pq in for t in 0..<pd.count { pd[t] -= pq[t] } }
    }
    let duHu = checked { try multiply(du, hu) }
    let hOut = q.rows
    du.withUnsafeBufferPointer { pd in
        duHu.withUnsafeBufferPointer { ph in
            for i in 0..<c {
                var sum = 0.0
                for r in 0..<hOut { sum += Double(pd[r + i * hOut]) * Double(ph[r + i * hOut]) }
                errors[i] += sum
            }
        }
    }
    let d = checked { try multiply(ah, b, transposeB: true) }        // A H Bᵀ, c × c
    let m = checked { try multiply(du, transposeA: true, u) }         // δUᵀ U, c × c
    for i in 0..<c {
        var sum = 0.0
        for j in 0..<c { sum += Double(m[i, j]) * Double(d[j, i]) }
        errors[i] += 2 * sum
    }
    return errors
}
