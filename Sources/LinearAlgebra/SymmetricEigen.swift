/// The eigenvalues of a symmetric matrix and the eigenvectors of its largest ones.
public struct SymmetricEigendecomposition<Scalar: LinearAlgebraScalar>: Sendable {
    /// All n eigenvalues λ₁ ≥ λ₂ ≥ … ≥ λₙ (descending).
    public var values: [Scalar]
    /// n×r: column i is the unit eigenvector of `values[i]`, i < r.
    public var vectors: Matrix<Scalar>
}

/// How ``symmetricEigen(_:top:driver:)`` computes the vectors.
public enum SymmetricEigenDriver: Sendable, Hashable {
    /// `sytrd` (tridiagonal reduction), `sterf` (every value), `stemr` (MRRR, the top r vectors of
    /// the tridiagonal matrix, O(n·r)), `ormtr` (back-transform, 2·n²·r flops): the cheapest when
    /// r < n, since only r vectors are formed.
    case relativelyRobust
    /// `syevd`: all n vectors by divide and conquer, then the top r kept.
    case divideAndConquer
}

/// Eigendecomposition of a symmetric matrix, keeping the eigenvectors of the `top` largest values.
///
/// Only the lower triangle of `a` is read. Cost: the tridiagonal reduction (4/3·n³ flops, half of
/// them matrix–vector, so memory-bound) plus 2·n²·r for the back-transform with
/// ``SymmetricEigenDriver/relativelyRobust`` (0.7–0.9× the time of `dsyevd` at n = 4096, r = 2048 to
/// 2985 in Float64, BENCHMARKS.md), or ≈ 4·n³ more with ``SymmetricEigenDriver/divideAndConquer``. Accuracy (backward
/// stable): every |λ̂ᵢ − λᵢ| ≲ p(n)·ε·‖A‖₂; the angle between v̂ᵢ and the true eigenvector is
/// ≲ p(n)·ε·‖A‖₂ / gapᵢ, and the vectors are orthonormal to ≈ n·ε.
/// - Throws: ``LinearAlgebraError/notSquare(operation:shape:)``,
///   ``LinearAlgebraError/invalidArgument(operation:reason:)`` when `top` is outside 0...n,
///   ``LinearAlgebraError/nonFiniteInput(operation:)`` (NaN or ∞ in the lower triangle),
///   ``LinearAlgebraError/eigenDidNotConverge(operation:info:)``.
public func symmetricEigen<S: LinearAlgebraScalar>(
    _ a: consuming Matrix<S>, top r: Int, driver: SymmetricEigenDriver = .relativelyRobust
) throws(LinearAlgebraError) -> SymmetricEigendecomposition<S> {
    let operation = "symmetric eigendecomposition of \(a.shape) matrix"
    guard a.rows == a.columns else { throw .notSquare(operation: operation, shape: a.shape) }
    let n = a.rows
    guard (0...n).contains(r) else { throw .invalidArgument(operation: operation, reason: "top \(r) outside 0...\(n)") }
    guard n > 0 else { return SymmetricEigendecomposition(values: [], vectors: Matrix(rows: 0, columns: 0)) }
    let finite = a.withUnsafeBufferPointer { p in
        (0..<n).allSatisfy { j in (j..<n).allSatisfy { p[$0 + j * n].isFinite } }
    }
    guard finite else { throw .nonFiniteInput(operation: operation) }
    var work = consume a
    var values = [S](repeating: 0, count: n)
    switch driver {
    case .relativelyRobust:
        // stemr needs at least one vector to form; r = 0 still needs every value.
        var vectors = Matrix<S>(rows: n, columns: max(r, 1))
        let info = work.withUnsafeMutableBufferPointer { pa in
            values.withUnsafeMutableBufferPointer { pw in
                vectors.withUnsafeMutableBufferPointer { pz in
                    LAPACK.symmetricEigen(n: n, a: pa.baseAddress!, count: max(r, 1), values: pw.baseAddress!, vectors: pz.baseAddress!)
                }
            }
        }
        guard info == 0 else { throw .eigenDidNotConverge(operation: operation, info: info) }
        values.reverse()
        // stemr's columns are in ascending order of their values: reverse them.
        let found = vectors.columns
        let top = Matrix<S>(rows: n, columns: r) { i, j in vectors[i, found - 1 - j] }
        return SymmetricEigendecomposition(values: values, vectors: top)
    case .divideAndConquer:
        let info = work.withUnsafeMutableBufferPointer { pa in
            values.withUnsafeMutableBufferPointer { pw in LAPACK.syevd(n: n, a: pa.baseAddress!, values: pw.baseAddress!) }
        }
        guard info == 0 else { throw .eigenDidNotConverge(operation: operation, info: info) }
        values.reverse()
        let top = Matrix<S>(rows: n, columns: r) { i, j in work[i, n - 1 - j] }
        return SymmetricEigendecomposition(values: values, vectors: top)
    }
}
