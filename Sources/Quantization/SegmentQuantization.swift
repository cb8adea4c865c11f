import Analysis
import LinearAlgebra
import Optimizer

/// Which quantizer a segment of 2…8 bits uses.
public enum QuantizationMethod: String, Sendable, Codable, CaseIterable {
    /// GPTQ with the calibration Hessian (the paper's method).
    case gptq
    /// Round-to-nearest min–max groups (data-free, or a cheap baseline).
    case rtn

    /// What the CLI, the service and the library take when none is given.
    public static let `default` = QuantizationMethod.gptq
    /// GPTQ damping as a fraction of mean(diag H), when none is given; error feedback's solves use
    /// it too, and so do the absorbed dropped costs `analyze` records (Analysis's value).
    public static let defaultDampening = feedbackDampening
}

/// How segments are quantized.
public struct SegmentOptions: Sendable, Hashable {
    public var method: QuantizationMethod
    /// Error feedback (the default) or the paper's independent segments (``SegmentOrder``).
    public var order: SegmentOrder
    public var groupSize: Int
    /// GPTQ damping as a fraction of mean(diag H); error feedback damps its two small solves
    /// with the same fraction of each diagonal entry (see ``MatrixQuantizer``).
    public var dampening: Double
    public var actOrder: Bool

    public init(method: QuantizationMethod = .default, order: SegmentOrder = .default, groupSize: Int = StorageModel.defaultGroupSize,
                dampening: Double = QuantizationMethod.defaultDampening, actOrder: Bool = false) {
        self.method = method
        self.order = order
        self.groupSize = groupSize
        self.dampening = dampening
        self.actOrder = actOrder
    }

    /// Whether the 2…8-bit quantizers search each group's clipping range: DeltaPlan's backend
    /// (the feedback order) does; Delta-CoMe as published (the paper's order) takes min–max.
    public var clipSearch: Bool { order == .feedback }
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
    /// σ̂ᵢ for i in [a, b): F16(σᵢ) in the paper's order, the refitted values with error feedback.
    public var singularValues: [Float16]
    /// What error feedback's solves reported (damping retries, fallbacks); empty in the paper's order.
    public var feedbackWarnings: [QuantizationWarning] = []

    package init(segment: Segment, rows: Int, columns: Int, vt: QuantizedWeight, u: QuantizedWeight,
                 singularValues: [Float16], feedbackWarnings: [QuantizationWarning] = []) {
        self.segment = segment
        self.rows = rows
        self.columns = columns
        self.vt = vt
        self.u = u
        self.singularValues = singularValues
        self.feedbackWarnings = feedbackWarnings
    }

    public var warnings: [QuantizationWarning] { vt.warnings + u.warnings + feedbackWarnings }

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

/// The quantization of one segment [a, b) at `bits` bits, on its own.
///
/// `.paper` order (Delta-CoMe, paper §3 and released code):
/// 1. V̂ᵀ: the rows vᵢᵀ, i ∈ [a, b), form a `(b − a) × h_in` weight whose input is the layer input
///    X; quantized with GPTQ using H = X Xᵀ (RTN when `method` is `.rtn` or H is the identity:
///    with a diagonal H, GPTQ propagates nothing and equals RTN);
/// 2. Û: the columns uᵢ form an `h_out × (b − a)` weight whose input is Σ̂ V̂ᵀ X, quantized with
///    GPTQ using its Hessian H_U = Σ̂ V̂ᵀ H V̂ Σ̂ (computed from H, no activations; one
///    `(b−a) × h_in × h_in` GEMM and one `(b−a)² × h_in`);
/// 3. 1 bit: ``Sign`` on both; 16 bits: ``F16`` on both; σ̂ = F16(σ) always.
///
/// `.feedback` order: V̂ᵀ as in step 1, then U quantized toward its least-squares target and σ
/// refitted, against the part of ΔW from vector a to the stored rank (the segment is the plan's
/// only one: the vectors before a count as exact, those after it as dropped); see
/// ``MatrixQuantizer``, which quantizes a plan's segments in sequence so that each later
/// segment also absorbs the residual of the earlier ones. Use it (or
/// ``quantizeSegments(_:segments:hessian:options:preparedV:)``) for a plan.
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
    var quantizer = try MatrixQuantizer(factors, segments: [segment], hessian: hessian, options: options, preparedV: preparedV)
    return try quantizer.next()
}

/// The segments of one plan for one matrix, consecutive, quantized in order by a
/// ``MatrixQuantizer`` (independently in the paper's order; each absorbing the residual of the
/// earlier ones with error feedback). `segments` start at `segments[0].start` (normally 0).
public func quantizeSegments(
    _ factors: StoredFactors, segments: [Segment], hessian: Matrix<Float>?, options: SegmentOptions = SegmentOptions(),
    preparedV: PreparedHessian? = nil
) throws(QuantizationError) -> [QuantizedSegment] {
    var quantizer = try MatrixQuantizer(factors, segments: segments, hessian: hessian, options: options, preparedV: preparedV)
    var out: [QuantizedSegment] = []
    while !quantizer.isFinished { out.append(try quantizer.next()) }
    return out
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
    /// What the error attribution of the segment's order reuses.
    var products: Products

    enum Products {
        /// The paper's order: B·H with B = Σ̂ V̂ᵀ (`(b − a) × h_in`) and H_U = B H Bᵀ, for
        /// ``attribute(_:factors:vtH:bh:hu:)``.
        case paper(bh: Matrix<Float>, hu: Matrix<Float>)
        /// Error feedback, for ``attributeFeedback(_:factors:vtH:feedback:)``.
        case feedback(FeedbackProducts)
    }

    /// What error feedback computed on the way: U's target and the products with V̂.
    struct FeedbackProducts {
        /// U* (the SVD's U_seg after a fallback), `h_out × (b − a)`.
        var uStar: Matrix<Float>
        /// F16(σ_seg): the scale U* was fitted with (U* Σ̂ V̂ᵀ).
        var sigmaHat: [Float]
        /// V̂ᵀ H, `(b − a) × h_in`.
        var vHatH: Matrix<Float>
        /// G = V̂ᵀ H V̂.
        var g: Matrix<Float>
    }

    init(result: QuantizedSegment, products: Products) {
        self.result = result
        self.products = products
    }

    /// Error feedback's products; nil in the paper's order.
    var feedback: FeedbackProducts? {
        if case let .feedback(products) = products { products } else { nil }
    }

    /// Checks a segment against the factors and H; returns σ̂ = F16(σ) over the segment.
    static func validate(
        _ factors: StoredFactors, segment: Segment, hessian: Matrix<Float>?
    ) throws(QuantizationError) -> [Float16] {
        let (hIn, r) = (factors.v.rows, factors.storedRank)
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
        return sigma
    }

    /// The paper's order: one segment on its own, U toward the SVD's U, σ̂ = F16(σ).
    init(
        paper factors: StoredFactors, segment: Segment, hessian: Matrix<Float>?, options: SegmentOptions,
        preparedV: PreparedHessian?
    ) throws(QuantizationError) {
        let sigma = try Self.validate(factors, segment: segment, hessian: hessian)
        let vt = factors.v.columnSlice(segment.start..<segment.end).matrix.transposed()
        let u = factors.u.columnSlice(segment.start..<segment.end).matrix
        let vq = try Self.quantizeV(vt, bits: segment.bits, options: options, hessian: hessian, preparedV: preparedV)
        let (bh, hu) = try Self.inputProducts(vq, sigma, hessian)
        let uq = try Self.quantizeU(u, bits: segment.bits, options: options, calibrated: hessian != nil, hu: hu)
        result = QuantizedSegment(segment: segment, rows: factors.u.rows, columns: factors.v.rows, vt: vq, u: uq, singularValues: sigma)
        products = .paper(bh: bh, hu: hu)
    }

    /// Step 1 of either order: V̂ᵀ from the `(b − a) × h_in` rows Vᵀ. 16 bits: F16; 1 bit: Sign;
    /// else GPTQ under H (with `preparedV`, or a preparation made here) when the method is GPTQ
    /// and H is given, RTN otherwise.
    static func quantizeV(
        _ vt: Matrix<Float>, bits: Int, options: SegmentOptions, hessian: Matrix<Float>?, preparedV: PreparedHessian?
    ) throws(QuantizationError) -> QuantizedWeight {
        switch bits {
        case 16: return try F16().quantize(vt)
        case 1: return try Sign().quantize(vt)
        default:
            guard options.method == .gptq, let hessian else { return try RTN(bits: bits, groupSize: options.groupSize, clipSearch: options.clipSearch).quantize(vt) }
            let prepared: PreparedHessian
            if let preparedV {
                prepared = preparedV
            } else {
                prepared = try PreparedHessian(hessian: hessian, dampening: options.dampening,
                                               actOrder: options.actOrder, name: "calibration Hessian")
            }
            return try gptq(bits, options).quantize(vt, prepared: prepared)
        }
    }

    /// The `h_out × (b − a)` U (the SVD's in the paper's order, the least-squares target with
    /// feedback) quantized: 16 bits: F16; 1 bit: Sign; else GPTQ with U's input Hessian
    /// H_U = Σ̂ V̂ᵀ H V̂ Σ̂ when the method is GPTQ and the matrix is calibrated, RTN otherwise.
    static func quantizeU(
        _ u: Matrix<Float>, bits: Int, options: SegmentOptions, calibrated: Bool, hu: Matrix<Float>
    ) throws(QuantizationError) -> QuantizedWeight {
        switch bits {
        case 16: return try F16().quantize(u)
        case 1: return try Sign().quantize(u)
        default:
            guard options.method == .gptq, calibrated else { return try RTN(bits: bits, groupSize: options.groupSize, clipSearch: options.clipSearch).quantize(u) }
            let preparedU = try PreparedHessian(hessian: hu, dampening: options.dampening, actOrder: options.actOrder,
                                                name: "Hessian of U's input (Σ̂ V̂ᵀ H V̂ Σ̂)")
            return try gptq(bits, options).quantize(u, prepared: preparedU)
        }
    }

    static func gptq(_ bits: Int, _ options: SegmentOptions) -> GPTQ {
        GPTQ(bits: bits, groupSize: options.groupSize, dampening: options.dampening, actOrder: options.actOrder,
             clipSearch: options.clipSearch)
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
    for (i, x) in columnDots(du, checked { try multiply(du, hu) }).enumerated() { errors[i] += x }
    let d = checked { try multiply(ah, b, transposeB: true) }        // A H Bᵀ, c × c
    let m = checked { try multiply(du, transposeA: true, u) }         // δUᵀ U, c × c
    for i in 0..<c {
        var sum = 0.0
        for j in 0..<c { sum += Double(m[i, j]) * Double(d[j, i]) }
        errors[i] += 2 * sum
    }
    return errors
}

/// The split of ``attributedErrors(of:factors:hessian:)`` around error feedback's target instead of
/// the SVD's U; used by the measurement pass in the feedback order.
///
/// The segment is all of the target (the measurement's [0, r)), so U* = U_seg R with
/// R = U_segᵀ U* (c × c) up to rounding. With S = diag(σ̂), δ = U* S − Û diag(σ̃) (`h_out × c`),
/// A = Σ V_segᵀ − R S V̂ᵀ (rows aᵢ) and G = V̂ᵀ H V̂, the error E = U_seg A + δ V̂ᵀ has
/// ‖E X‖² = tr(A H Aᵀ) + tr(δ G δᵀ) + 2 tr(δᵀ U_seg A H V̂), and vector i gets
/// - the V part aᵢᵀ H aᵢ ≥ 0: the activation of σᵢ vᵢᵀ X that the least-squares combination of the
///   quantized rows V̂ᵀ X misses (rows separable: U_seg has orthonormal columns);
/// - the U part δᵢᵀ (δ G)ᵢ: U's quantization relative to U*, after the σ refit;
/// - the cross part 2 (δᵀ U_seg · A H V̂)ᵢᵢ, zero for an undamped least-squares U* (its residual is
///   orthogonal to V̂ᵀ X), small with the damping.
/// Accumulated in Double; cost ≈ 3·c²·h_in + 3·c²·h_out flops; memory: two c × h_in products
/// besides the inputs (A H by blocks of 256 rows).
func attributeFeedback(
    _ q: QuantizedSegment, factors: StoredFactors, vtH: Matrix<Float>, feedback: SegmentWork.FeedbackProducts
) -> [Double] {
    let s = q.segment
    let (c, hIn, hOut) = (s.count, q.columns, q.rows)
    precondition(vtH.rows == c && vtH.columns == hIn)
    let sigma = (s.start..<s.end).map { Double(factors.singularValues[$0]) }
    let uSegment = factors.u.columnSlice(s.start..<s.end)
    // R S, then R S V̂ᵀ and R S V̂ᵀ H (c × h_in each).
    var rs = checked { try multiply(uSegment, transposeA: true, feedback.uStar) }
    for j in 0..<c { for i in 0..<c { rs[i, j] *= feedback.sigmaHat[j] } }
    var errors = [Double](repeating: 0, count: c)
    // V part: Σ over columns of aᵢ ∘ (A H)ᵢ, A = Σ V_segᵀ − R S V̂ᵀ (Vᵀ read from V in place), and
    // A H V̂ (c × c) for the cross part, by blocks of rows of A H (never all of it at once).
    var d = Matrix<Float>(rows: c, columns: c)
    do {
        let rsv = checked { try multiply(rs, q.vt.dequantized) }
        let rsvh = checked { try multiply(rs, feedback.vHatH) }
        let block = 256
        for first in stride(from: 0, to: c, by: block) {
            let count = min(block, c - first)
            var ah = Matrix<Float>(rows: count, columns: hIn)
            factors.v.columnSlice(s.start..<s.end).withUnsafeBufferPointer { pv in
                vtH.withUnsafeBufferPointer { pvh in
                    rsv.withUnsafeBufferPointer { pb in
                        rsvh.withUnsafeBufferPointer { pbh in
                            ah.withUnsafeMutableBufferPointer { pah in
                                for j in 0..<hIn {
                                    for k in 0..<count {
                                        let i = first + k, t = i + j * c
                                        let x = sigma[i] * Double(pv[j + i * hIn]) - Double(pb[t])
                                        let y = sigma[i] * Double(pvh[t]) - Double(pbh[t])
                                        pah[k + j * count] = Float(y)
                                        errors[i] += x * y
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let part = checked { try multiply(ah, q.vt.dequantized, transposeB: true) }   // count × c
            for j in 0..<c { for k in 0..<count { d[first + k, j] = part[k, j] } }
        }
    }
    // δ = U* S − Û diag(σ̃).
    let sigmaTilde = q.singularValues.map { Float($0) }
    var delta = feedback.uStar
    delta.withUnsafeMutableBufferPointer { pd in
        q.u.dequantized.withUnsafeBufferPointer { pq in
            for j in 0..<c {
                for i in 0..<hOut { pd[i + j * hOut] = pd[i + j * hOut] * feedback.sigmaHat[j] - pq[i + j * hOut] * sigmaTilde[j] }
            }
        }
    }
    do {
        let deltaG = checked { try multiply(delta, feedback.g) }
        delta.withUnsafeBufferPointer { pd in
            deltaG.withUnsafeBufferPointer { pg in
                for i in 0..<c {
                    var sum = 0.0
                    for r in 0..<hOut { sum += Double(pd[r + i * hOut]) * Double(pg[r + i * hOut]) }
                    errors[i] += sum
                }
            }
        }
    }
    // Cross part with d = A H V̂.
    let m = checked { try multiply(delta, transposeA: true, uSegment) }        // δᵀ U_seg, c × c
    for i in 0..<c {
        var sum = 0.0
        for j in 0..<c { sum += Double(m[i, j]) * Double(d[j, i]) }
        errors[i] += 2 * sum
    }
    return errors
}

/// Σᵣ a[r, i]·b[r, i] for every column i of two matrices of one shape, summed in Double.
func columnDots(_ a: Matrix<Float>, _ b: Matrix<Float>) -> [Double] {
    precondition(a.shape == b.shape, "column dots of \(a.shape) and \(b.shape)")
    let rows = a.rows
    return a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            (0..<a.columns).map { i in
                var sum = 0.0
                for r in 0..<rows { sum += Double(pa[r + i * rows]) * Double(pb[r + i * rows]) }
                return sum
            }
        }
    }
}
