/// The top-r singular triplets of A plus its exact total energy.
///
/// `vt` holds **Vᵀ** (r×n, right singular vectors as rows), as in ``SingularValueDecomposition``.
public struct TruncatedSVD<Scalar: LinearAlgebraScalar>: Sendable {
    /// Left singular vectors as columns, m×r.
    public var u: Matrix<Scalar>
    /// Estimates of σ₁ ≥ … ≥ σ_r (each is ≤ the true value: Rayleigh–Ritz from a subspace).
    public var singularValues: [Scalar]
    /// Vᵀ, r×n.
    public var vt: Matrix<Scalar>
    /// ‖A‖²_F = Σ all σᵢ², computed directly from A's elements in Double (not from the estimates).
    public var totalEnergy: Double

    /// Σ_{i≤r} σ̂ᵢ² (in Double).
    public var capturedEnergy: Double {
        singularValues.reduce(0.0) { $0 + Double($1) * Double($1) }
    }

    /// ‖A‖²_F − Σ_{i≤r} σ̂ᵢ², clamped at 0: the energy of the tail σ_{r+1}, σ_{r+2}, … (an upper
    /// bound on it, since the estimates are low).
    public var residualEnergy: Double { max(0, totalEnergy - capturedEnergy) }
}

/// Randomized truncated SVD (Halko, Martinsson & Tropp 2011, algorithms 4.4 + 5.1).
///
/// With ℓ = min(r + oversampling, min(m, n)) and a Gaussian test matrix Ω (n×ℓ) drawn from
/// ``SeededGenerator`` with `seed`:
/// 1. Q = orth(A·Ω); then `powerIterations` times Q = orth(A·orth(Aᵀ·Q)), re-orthonormalizing by
///    QR (`geqrf` + `orgqr`) after every product so small singular directions are not lost to
///    rounding;
/// 2. B = Qᵀ·A (ℓ×n), B = Ũ·Σ·Vᵀ by `gesdd`; U = Q·Ũ; keep the first r triplets.
///
/// Cost ≈ (2 + 4q)·m·n·ℓ flops of GEMM plus QRs of m×ℓ/n×ℓ and an ℓ×n SVD — for m = n = 4096,
/// r = 1024, q = 2, about 5 s on one core against ~18 s for the full SVD. Accuracy depends on the
/// spectrum: the relative error of σ̂_j shrinks roughly like (σ_{ℓ+1}/σ_j)^(2(2q+1)), so values
/// well above σ_{ℓ+1} are accurate and those near j = r converge slowest. On σᵢ = 1/i, r = 20,
/// defaults (ℓ = 30, q = 2) leave σ̂₂₀ ≈ 0.6% low; q = 4 or oversampling = r bring it under 1e-3.
/// On a flat random spectrum the values near j = r can be off by percents (see BENCHMARKS.md). When ℓ reaches min(m, n) the full thin SVD is used (exact).
/// Deterministic: the same input and seed give the same result (with a fixed BLAS thread count).
/// - Throws: ``LinearAlgebraError/invalidArgument(operation:reason:)`` when `rank` is outside
///   0...min(m, n) or `oversampling`/`powerIterations` are negative;
///   ``LinearAlgebraError/nonFiniteInput(operation:)``; SVD failures of the small problem.
public func randomizedSVD<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, rank: Int, oversampling: Int = 10, powerIterations: Int = 2, seed: UInt64
) throws(LinearAlgebraError) -> TruncatedSVD<S> {
    let operation = "randomized SVD of \(a.shape) matrix"
    let (m, n) = (a.rows, a.columns)
    let k = min(m, n)
    guard (0...k).contains(rank) else {
        throw .invalidArgument(operation: operation, reason: "rank \(rank) outside 0...\(k)")
    }
    guard oversampling >= 0, powerIterations >= 0 else {
        throw .invalidArgument(operation: operation,
                               reason: "oversampling (\(oversampling)) and powerIterations (\(powerIterations)) must be ≥ 0")
    }
    let (energy, finite) = a.withUnsafeBufferPointer { Kernels.sumOfSquares($0) }
    guard finite else { throw .nonFiniteInput(operation: operation) }
    guard rank > 0 else {
        return TruncatedSVD(u: Matrix(rows: m, columns: 0), singularValues: [], vt: Matrix(rows: 0, columns: n), totalEnergy: energy)
    }

    let l = min(rank + oversampling, k)
    if l == k {
        // The sketch would span everything: the exact thin SVD is cheaper and exact.
        let full = try svd(a, vectors: .thin)
        return TruncatedSVD(u: full.u.columnSlice(0..<rank).matrix, singularValues: Array(full.singularValues[0..<rank]),
                            vt: full.vt.rowSlice(0..<rank), totalEnergy: energy)
    }

    let omega = Matrix<S>.gaussian(rows: n, columns: l, using: SeededGenerator(seed: seed))
    var q = try multiply(a, omega)
    orthonormalizeColumns(&q)
    for _ in 0..<powerIterations {
        var z = try multiply(a, transposeA: true, q)
        orthonormalizeColumns(&z)
        q = try multiply(a, z)
        orthonormalizeColumns(&q)
    }
    let b = try multiply(q, transposeA: true, a)
    let small = try svd(b, vectors: .thin)
    let u = try multiply(q, small.u.columnSlice(0..<rank))
    return TruncatedSVD(u: u, singularValues: Array(small.singularValues[0..<rank]),
                        vt: small.vt.rowSlice(0..<rank), totalEnergy: energy)
}

/// Replaces the columns of `y` (m×ℓ, m ≥ ℓ) by an orthonormal basis of their span: the Q of a
/// thin QR (`geqrf` + `orgqr`), in place.
func orthonormalizeColumns<S: LinearAlgebraScalar>(_ y: inout Matrix<S>) {
    precondition(y.rows >= y.columns)
    guard !y.isEmpty else { return }
    let (m, n) = (y.rows, y.columns)
    y.withUnsafeMutableBufferPointer { p in
        LAPACK.qr(m: m, n: n, a: p.baseAddress!, r: nil)
    }
}
