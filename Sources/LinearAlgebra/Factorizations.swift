/// A = Q·R with Q (m×k) having orthonormal columns and R (k×n) upper trapezoidal, k = min(m, n).
public struct QRDecomposition<Scalar: LinearAlgebraScalar>: Sendable {
    public var q: Matrix<Scalar>
    public var r: Matrix<Scalar>
}

/// Thin QR by Householder reflections (`geqrf`, then `orgqr` to form Q; workspaces queried).
///
/// Cost ≈ 4·m·n·k − (4/3)·k³ flops. Backward stable: ‖A − QR‖ ≲ p(m, n)·ε·‖A‖ and
/// ‖QᵀQ − I‖ ≲ p(m, n)·ε. The diagonal of R may be negative (LAPACK's convention).
/// - Throws: ``LinearAlgebraError/nonFiniteInput(operation:)``.
public func qr<S: LinearAlgebraScalar>(_ a: some ColumnMajorMatrix<S>) throws(LinearAlgebraError) -> QRDecomposition<S> {
    let (m, n) = (a.rows, a.columns)
    let k = min(m, n)
    guard k > 0 else { return QRDecomposition(q: Matrix(rows: m, columns: 0), r: Matrix(rows: 0, columns: n)) }
    guard a.isFinite else { throw .nonFiniteInput(operation: "QR of \(a.shape) matrix") }
    var work = a.withUnsafeBufferPointer { Array($0) }
    var r = Matrix<S>(rows: k, columns: n)
    work.withUnsafeMutableBufferPointer { pa in
        r.withUnsafeMutableBufferPointer { pr in
            LAPACK.qr(m: m, n: n, a: pa.baseAddress!, r: pr)
        }
    }
    // Q is the first k columns: a contiguous prefix in column-major storage.
    work.removeSubrange((m * k)...)
    return QRDecomposition(q: Matrix(rows: m, columns: k, elements: work), r: r)
}

/// Which triangle of a matrix a routine reads or returns.
public enum Triangle: Sendable, Hashable {
    case lower, upper
}

/// Cholesky factor of a symmetric positive definite matrix (`potrf`).
///
/// `.lower` returns L with A = L·Lᵀ, `.upper` returns U with A = Uᵀ·U (the other triangle is
/// zeroed). Only the requested triangle of `a` is read; the matrix is assumed symmetric.
/// Cost n³/3 flops. Backward stable: L·Lᵀ = A + E with ‖E‖ ≲ p(n)·ε·‖A‖.
/// - Throws: ``LinearAlgebraError/notSquare(operation:shape:)``,
///   ``LinearAlgebraError/nonFiniteInput(operation:)``,
///   ``LinearAlgebraError/notPositiveDefinite(order:)`` with the first failing leading minor.
public func cholesky<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, triangle: Triangle = .lower
) throws(LinearAlgebraError) -> Matrix<S> {
    let operation = "Cholesky factorization of \(a.shape) matrix"
    guard a.rows == a.columns else { throw .notSquare(operation: operation, shape: a.shape) }
    let n = a.rows
    var l = Matrix<S>(rows: n, columns: n, elements: a.withUnsafeBufferPointer { Array($0) })
    guard n > 0 else { return l }
    guard a.isFinite else { throw .nonFiniteInput(operation: operation) }
    let info = l.withUnsafeMutableBufferPointer { p in
        let info = LAPACK.potrf(lower: triangle == .lower, n: n, a: p.baseAddress!)
        Kernels.zeroTriangle(p, rows: n, columns: n, upper: triangle == .lower)
        return info
    }
    guard info == 0 else { throw .notPositiveDefinite(order: info) }
    return l
}

/// A⁻¹ of a symmetric positive definite matrix: `potrf` (lower) then `potri`, mirrored so both
/// triangles are filled (the result is exactly symmetric). Only the lower triangle of `a` is read.
///
/// Cost n³ flops. Relative error of the inverse ≈ κ(A)·ε.
/// - Throws: as ``cholesky(_:triangle:)``; ``LinearAlgebraError/singularMatrix(operation:diagonalIndex:)``
///   if `potri` meets a zero diagonal.
public func inverseSPD<S: LinearAlgebraScalar>(_ a: some ColumnMajorMatrix<S>) throws(LinearAlgebraError) -> Matrix<S> {
    var inverse = try cholesky(a, triangle: .lower)
    let n = inverse.rows
    guard n > 0 else { return inverse }
    let info = inverse.withUnsafeMutableBufferPointer { p in
        let info = LAPACK.potri(lower: true, n: n, a: p.baseAddress!)
        if info == 0 { Kernels.symmetrize(p, n: n, fromLower: true) }
        return info
    }
    guard info == 0 else { throw .singularMatrix(operation: "SPD inverse of \(a.shape) matrix", diagonalIndex: info) }
    return inverse
}

/// U, upper triangular, with A⁻¹ = Uᵀ·U for a symmetric positive definite A: GPTQ's factor of the
/// inverse Hessian. `potrf` (upper: A = RᵀR), `potri` (upper triangle of A⁻¹), `potrf` (upper)
/// again, all in the storage of `a` itself — one n×n buffer, no copy when the caller hands over a
/// uniquely referenced matrix. Only the upper triangle of `a` is read; the strictly lower triangle
/// of the result is zeroed.
///
/// Cost ≈ (4/3)·n³ flops. Relative error ≈ κ(A)·ε.
/// - Throws: ``LinearAlgebraError/notSquare(operation:shape:)``,
///   ``LinearAlgebraError/nonFiniteInput(operation:)``,
///   ``LinearAlgebraError/notPositiveDefinite(order:)`` (of A, or of the computed A⁻¹ when rounding
///   makes it indefinite), ``LinearAlgebraError/singularMatrix(operation:diagonalIndex:)`` from `potri`.
public func inverseCholeskyFactor<S: LinearAlgebraScalar>(_ a: consuming Matrix<S>) throws(LinearAlgebraError) -> Matrix<S> {
    let operation = "inverse Cholesky factor of \(a.shape) matrix"
    guard a.rows == a.columns else { throw .notSquare(operation: operation, shape: a.shape) }
    let n = a.rows
    guard n > 0 else { return a }
    guard a.isFinite else { throw .nonFiniteInput(operation: operation) }
    var u = consume a
    let failure: LinearAlgebraError? = u.withUnsafeMutableBufferPointer { p in
        let first = LAPACK.potrf(lower: false, n: n, a: p.baseAddress!)
        guard first == 0 else { return .notPositiveDefinite(order: first) }
        let inverted = LAPACK.potri(lower: false, n: n, a: p.baseAddress!)
        guard inverted == 0 else { return .singularMatrix(operation: operation, diagonalIndex: inverted) }
        let second = LAPACK.potrf(lower: false, n: n, a: p.baseAddress!)
        guard second == 0 else { return .notPositiveDefinite(order: second) }
        Kernels.zeroTriangle(p, rows: n, columns: n, upper: false)
        return nil
    }
    if let failure { throw failure }
    return u
}

/// Solves A·X = B in place of `b` (n×nrhs), given the lower Cholesky factor L of A (A = L·Lᵀ, as
/// ``cholesky(_:triangle:)`` returns it): `potrs`, a forward and a back substitution, no copy of
/// `b`. Only the lower triangle of `factor` is read.
///
/// Cost 2·n²·nrhs flops. Backward stable; forward error ≈ κ(A)·ε.
/// - Throws: ``LinearAlgebraError/notSquare(operation:shape:)``,
///   ``LinearAlgebraError/shapeMismatch(operation:lhs:rhs:)``.
public func solveCholesky<S: LinearAlgebraScalar>(
    _ factor: some ColumnMajorMatrix<S>, _ b: inout Matrix<S>
) throws(LinearAlgebraError) {
    let operation = "Cholesky solve"
    guard factor.rows == factor.columns else { throw .notSquare(operation: operation, shape: factor.shape) }
    guard b.rows == factor.rows else { throw .shapeMismatch(operation: operation, lhs: factor.shape, rhs: b.shape) }
    guard !b.isEmpty else { return }
    let (n, nrhs) = (b.rows, b.columns)
    let info = factor.withUnsafeBufferPointer { pf in
        b.withUnsafeMutableBufferPointer { pb in
            LAPACK.potrs(lower: true, n: n, nrhs: nrhs, a: pf.baseAddress!, b: pb.baseAddress!)
        }
    }
    precondition(info == 0, "potrs reports no numerical failures, got info \(info)")
}

/// Solves op(T)·X = B for X, T triangular n×n, B n×nrhs (`trtrs`; forward/back substitution).
///
/// Only the `triangle` of `t` is read; `unitDiagonal` assumes ones on its diagonal. Cost n²·nrhs
/// flops. Backward stable; forward error ≈ κ(T)·ε.
/// - Throws: ``LinearAlgebraError/notSquare(operation:shape:)``,
///   ``LinearAlgebraError/shapeMismatch(operation:lhs:rhs:)``,
///   ``LinearAlgebraError/singularMatrix(operation:diagonalIndex:)`` for an exact zero on T's diagonal.
public func solveTriangular<S: LinearAlgebraScalar>(
    _ t: some ColumnMajorMatrix<S>, _ b: some ColumnMajorMatrix<S>,
    triangle: Triangle = .lower, transpose: Bool = false, unitDiagonal: Bool = false
) throws(LinearAlgebraError) -> Matrix<S> {
    let operation = "triangular solve"
    guard t.rows == t.columns else { throw .notSquare(operation: operation, shape: t.shape) }
    guard b.rows == t.rows else { throw .shapeMismatch(operation: operation, lhs: t.shape, rhs: b.shape) }
    var x = Matrix<S>(rows: b.rows, columns: b.columns, elements: b.withUnsafeBufferPointer { Array($0) })
    guard !x.isEmpty else { return x }
    let n = t.rows, nrhs = b.columns
    let info = t.withUnsafeBufferPointer { pt in
        x.withUnsafeMutableBufferPointer { px in
            LAPACK.trtrs(lower: triangle == .lower, transpose: transpose, unitDiagonal: unitDiagonal,
                         n: n, nrhs: nrhs, t: pt.baseAddress!, b: px.baseAddress!)
        }
    }
    guard info == 0 else { throw .singularMatrix(operation: operation, diagonalIndex: info) }
    return x
}
