/// The leading singular triplets of a Float32 matrix and all of its singular values, from the
/// eigendecomposition of its Float64 Gram matrix (``gramSVD(_:rank:gram:driver:)``).
///
/// Unlike ``SingularValueDecomposition``, the right vectors are **columns** of `v` (n×r), the
/// layout the analysis consumes. The short side's factor (V when m ≥ n, U when m < n) may hold more
/// columns than the other when more were asked for (`shortSideVectors`): the singular vectors of
/// the next values, without their partners.
public struct GramSVD: Sendable {
    /// Left singular vectors as columns, m×r (m×r′ with r′ ≥ r when m < n and more were asked for).
    public var u: Matrix<Float>
    /// Right singular vectors as columns, n×r (n×r′ when m ≥ n and more were asked for).
    public var v: Matrix<Float>
    /// All σ₁ ≥ … ≥ σ_k ≥ 0, k = min(m, n).
    public var singularValues: [Float]
}

/// The Gram matrix of `a` (m×n) in Float64 on its short side: AᵀA (n×n) when m ≥ n, A·Aᵀ (m×m)
/// otherwise, both triangles filled.
///
/// `dsyrk` over blocks of 256 rows of A (columns when m < n) converted to Float64, so only one
/// block is held in Float64 (the products of Float32 values are exact in Float64; sums round at
/// ε₆₄). Cost max(m, n)·min(m, n)² flops, ≈ 4 s for 11008×4096 on one core.
public func shortSideGram(of a: Matrix<Float>) -> Matrix<Double> {
    let s = min(a.rows, a.columns)
    var g = Matrix<Double>(rows: s, columns: s)
    guard s > 0 else { return g }
    g.withUnsafeMutableBufferPointer { pg in
        forEachLongSideBlock(of: a) { block, count in
            BLAS.syrkLower(transpose: true, n: s, k: count, alpha: 1, a: block, lda: count, beta: 1, c: pg.baseAddress!)
        }
        Kernels.symmetrize(pg, n: s, fromLower: true)
    }
    return g
}

/// Truncated SVD of a Float32 matrix through the eigendecomposition of its Float64 Gram matrix.
///
/// With A m×n, k = min(m, n), and m ≥ n (otherwise the same with Aᵀ, U and V exchanged):
/// G = AᵀA in Float64 (``shortSideGram(of:)``, or `gram` when the caller already has it),
/// G = V Λ Vᵀ by ``symmetricEigen(_:top:driver:)`` for the top `rank` vectors, σᵢ = √max(λᵢ, 0)
/// for all k, and U = A·V·Σ⁻¹ by `dgemm` over Float64 blocks of A, rounded to Float32 at the end.
///
/// Cost ≈ max(m, n)·k² (Gram) + the eigensolver (≈ 4/3·k³ + 2·k²·r) + 2·max(m, n)·k·r (U), all
/// in Float64 — 0.3–0.65× the time of a thin `sgesdd` at r ≈ k/2 to 3k/4 on Llama-2-7B's shapes
/// (BENCHMARKS.md, "The SVD through the Float64 Gram").
///
/// Accuracy. λ̂ᵢ has absolute error ≲ p(k)·ε₆₄·σ₁², so the relative error of σ̂ᵢ is
/// ≲ p(k)·ε₆₄·(σ₁/σᵢ)²/2: below 10⁻⁶ while σᵢ ≥ 10⁻⁴·σ₁ (k ≤ 16384), better than `sgesdd` in
/// Float32 (≈ k·ε₃₂·σ₁/σᵢ) there; values under √(k·ε₆₄)·σ₁ (≈ 10⁻⁶·σ₁) are not resolved by the
/// Gram and come out with absolute error of that order. The vectors come back only for those
/// resolved values: `u` and `v` have min(rank, #{σᵢ > √(k·ε₆₄)·σ₁}) columns (a rank-deficient A
/// gives fewer than `rank`). Uᵀ U = I to ≈ ε₆₄·(σ₁/σ_r)² before the rounding to Float32.
///
/// - Parameters:
///   - rank: how many leading triplets to form, 0...k.
///   - shortSideVectors: how many of the short side's vectors to return (rank...k, default
///     `rank`): the eigenvectors of the Gram, which cost only the back-transform (2·k² each), not
///     a product with A.
///   - gram: AᵀA (m ≥ n) or A·Aᵀ (m < n) as ``shortSideGram(of:)`` computes it; only its lower
///     triangle is read. Passing another matrix is a caller bug (not checked beyond its shape).
/// - Throws: ``LinearAlgebraError/invalidArgument(operation:reason:)`` for a rank outside 0...k or
///   a Gram of the wrong shape, ``LinearAlgebraError/nonFiniteInput(operation:)``,
///   ``LinearAlgebraError/eigenDidNotConverge(operation:info:)``.
public func gramSVD(
    _ a: Matrix<Float>, rank: Int, shortSideVectors: Int? = nil, gram: consuming Matrix<Double>? = nil,
    driver: SymmetricEigenDriver = .relativelyRobust
) throws(LinearAlgebraError) -> GramSVD {
    let operation = "Gram SVD of \(a.shape) matrix"
    let (m, n) = (a.rows, a.columns)
    let k = min(m, n)
    guard (0...k).contains(rank) else { throw .invalidArgument(operation: operation, reason: "rank \(rank) outside 0...\(k)") }
    let shortCount = shortSideVectors ?? rank
    guard (rank...k).contains(shortCount) else {
        throw .invalidArgument(operation: operation, reason: "shortSideVectors \(shortCount) outside \(rank)...\(k)")
    }
    if let g = gram, g.rows != k || g.columns != k {
        throw .invalidArgument(operation: operation, reason: "Gram matrix is \(g.shape), expected \(k)×\(k)")
    }
    guard k > 0 else { return GramSVD(u: Matrix(rows: m, columns: 0), v: Matrix(rows: n, columns: 0), singularValues: []) }
    guard a.isFinite else { throw .nonFiniteInput(operation: operation) }
    let g = (consume gram) ?? shortSideGram(of: a)
    let eigen = try symmetricEigen(consume g, top: shortCount, driver: driver)
    let sigma = eigen.values.map { max($0, 0).squareRoot() }
    // Vectors whose σ the Gram resolves: σᵢ² > k·ε₆₄·σ₁².
    let resolvable = Double(k) * Double.ulpOfOne * (eigen.values.first ?? 0)
    let resolved = eigen.values.prefix(shortCount).prefix { $0 > resolvable && $0 > 0 }.count
    let r = min(rank, resolved)

    // The short side's vectors W (k×r, Float64) give the long side's: A·W·Σ⁻¹ (m ≥ n) or Aᵀ·W·Σ⁻¹.
    let long = max(m, n)
    var longVectors = Matrix<Float>(rows: long, columns: r)
    if r > 0 {
        var block = Matrix<Double>(rows: longSideBlockRows, columns: r)
        let inverse = (0..<r).map { 1 / sigma[$0] }
        eigen.vectors.withUnsafeBufferPointer { pw in
            block.withUnsafeMutableBufferPointer { pb in
                longVectors.withUnsafeMutableBufferPointer { pl in
                    var start = 0
                    forEachLongSideBlock(of: a) { rows, count in
                        BLAS.gemm(transposeA: false, transposeB: false, m: count, n: r, k: k, alpha: 1, a: rows, lda: count,
                                  b: pw.baseAddress!, ldb: k, beta: 0, c: pb.baseAddress!, ldc: count)
                        for j in 0..<r {
                            let scale = inverse[j]
                            for i in 0..<count { pl[start + i + j * long] = Float(pb[i + j * count] * scale) }
                        }
                        start += count
                    }
                }
            }
        }
    }
    let shortVectors = Matrix<Float>(rows: k, columns: resolved, elements: eigen.vectors.elements.prefix(k * resolved).map { Float($0) })
    let values = sigma.map { Float($0) }
    return m >= n ? GramSVD(u: longVectors, v: shortVectors, singularValues: values)
        : GramSVD(u: shortVectors, v: longVectors, singularValues: values)
}

/// Rows per Float64 block of the long side (2 MB per 1024 columns).
private let longSideBlockRows = 256

/// Calls `body` with consecutive blocks of Â = A (m ≥ n) or Aᵀ (m < n), each `count` ≤ 256 rows of
/// Â converted to Float64 as a contiguous count×min(m, n) column-major array (leading dimension
/// `count`), top to bottom.
private func forEachLongSideBlock(of a: Matrix<Float>, _ body: (UnsafePointer<Double>, _ count: Int) -> Void) {
    let (m, n) = (a.rows, a.columns)
    let (long, short) = (max(m, n), min(m, n))
    var block = [Double](repeating: 0, count: longSideBlockRows * short)
    a.withUnsafeBufferPointer { pa in
        block.withUnsafeMutableBufferPointer { pb in
            for start in stride(from: 0, to: long, by: longSideBlockRows) {
                let count = min(longSideBlockRows, long - start)
                if m >= n {
                    // Rows start..<start+count of A: column j is contiguous in A.
                    for j in 0..<n {
                        let source = pa.baseAddress! + start + j * m
                        for i in 0..<count { pb[i + j * count] = Double(source[i]) }
                    }
                } else {
                    // Columns start..<start+count of A, transposed: Â[i, j] = A[j, start + i].
                    for i in 0..<count {
                        let source = pa.baseAddress! + (start + i) * m
                        for j in 0..<m { pb[i + j * count] = Double(source[j]) }
                    }
                }
                body(UnsafePointer(pb.baseAddress!), count)
            }
        }
    }
}
