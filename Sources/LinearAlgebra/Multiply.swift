/// C = α·op(A)·op(B) by `cblas_sgemm`/`cblas_dgemm`, where op(X) is X or Xᵀ.
///
/// op(A) must be m×k and op(B) k×n; the result is m×n. Cost 2·m·n·k flops; the rounding error of
/// each element is bounded by about k·ε·Σ|aᵢₗ||bₗⱼ| (ε of `S`). Empty shapes give zeros.
/// - Throws: ``LinearAlgebraError/shapeMismatch(operation:lhs:rhs:)`` when the inner dimensions
///   differ (shapes reported after applying the transposes).
public func multiply<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, transposeA: Bool = false,
    _ b: some ColumnMajorMatrix<S>, transposeB: Bool = false,
    alpha: S = 1
) throws(LinearAlgebraError) -> Matrix<S> {
    let (m, k) = transposeA ? (a.columns, a.rows) : (a.rows, a.columns)
    let (kb, n) = transposeB ? (b.columns, b.rows) : (b.rows, b.columns)
    guard k == kb else {
        throw .shapeMismatch(operation: "matrix multiply", lhs: Shape(rows: m, columns: k), rhs: Shape(rows: kb, columns: n))
    }
    var c = Matrix<S>(rows: m, columns: n)
    guard m > 0, n > 0, k > 0 else { return c }
    a.withUnsafeBufferPointer { pa in
        b.withUnsafeBufferPointer { pb in
            c.withUnsafeMutableBufferPointer { pc in
                BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                          alpha: alpha, a: pa.baseAddress!, lda: max(1, a.rows), b: pb.baseAddress!, ldb: max(1, b.rows),
                          beta: 0, c: pc.baseAddress!, ldc: m)
            }
        }
    }
    return c
}

/// y = α·op(A)·x by `cblas_sgemv`/`cblas_dgemv`. Cost 2·m·n flops.
/// - Throws: ``LinearAlgebraError/shapeMismatch(operation:lhs:rhs:)`` when `x.count` differs from
///   the columns of op(A).
public func multiply<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, transpose: Bool = false, vector x: [S], alpha: S = 1
) throws(LinearAlgebraError) -> [S] {
    let (m, n) = transpose ? (a.columns, a.rows) : (a.rows, a.columns)
    guard x.count == n else {
        throw .shapeMismatch(operation: "matrix-vector multiply", lhs: Shape(rows: m, columns: n), rhs: Shape(rows: x.count, columns: 1))
    }
    var y = [S](repeating: 0, count: m)
    guard m > 0, n > 0 else { return y }
    a.withUnsafeBufferPointer { pa in
        x.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                BLAS.gemv(transpose: transpose, m: a.rows, n: a.columns, alpha: alpha, a: pa.baseAddress!,
                          lda: max(1, a.rows), x: px.baseAddress!, beta: 0, y: py.baseAddress!)
            }
        }
    }
    return y
}

/// The Gram matrix G = α·A·Aᵀ (or α·Aᵀ·A with `transpose: true`), symmetric, both triangles
/// filled. `cblas_ssyrk`/`cblas_dsyrk` on the lower triangle, then mirrored: half the flops of
/// GEMM (n²·k). GPTQ's Hessian H = (2/N)·X·Xᵀ is `gram(x, alpha: 2 / N)`.
public func gram<S: LinearAlgebraScalar>(_ a: some ColumnMajorMatrix<S>, transpose: Bool = false, alpha: S = 1) -> Matrix<S> {
    let (n, k) = transpose ? (a.columns, a.rows) : (a.rows, a.columns)
    var g = Matrix<S>(rows: n, columns: n)
    guard n > 0, k > 0 else { return g }
    a.withUnsafeBufferPointer { pa in
        g.withUnsafeMutableBufferPointer { pg in
            BLAS.syrkLower(transpose: transpose, n: n, k: k, alpha: alpha, a: pa.baseAddress!, lda: max(1, a.rows), c: pg.baseAddress!)
            Kernels.symmetrize(pg, n: n, fromLower: true)
        }
    }
    return g
}

/// A rectangular block of a column-major matrix: the elements (i, j) with i in `rows`, j in `columns`.
public struct MatrixBlock: Sendable, Hashable {
    public var rows: Range<Int>
    public var columns: Range<Int>

    public init(rows: Range<Int>, columns: Range<Int>) {
        self.rows = rows
        self.columns = columns
    }

    /// Every element of a `rows × columns` matrix.
    public static func all(_ m: some ColumnMajorMatrix) -> MatrixBlock { MatrixBlock(rows: 0..<m.rows, columns: 0..<m.columns) }
}

/// C[cBlock] ← α·op(A[aBlock])·op(B[bBlock]) + β·C[cBlock], in place, by `cblas_sgemm`/`cblas_dgemm`
/// on the blocks addressed through their matrices' leading dimensions: no copy of any operand.
///
/// op(A[aBlock]) must be m×k, op(B[bBlock]) k×n and `cBlock` m×n, every block within its matrix:
/// our callers compute them, so a mismatch traps. Cost 2·m·n·k flops; rounding as
/// ``multiply(_:transposeA:_:transposeB:alpha:)``. Empty shapes only scale C[cBlock] by β.
public func multiplyAdd<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, _ aBlock: MatrixBlock, transposeA: Bool = false,
    _ b: some ColumnMajorMatrix<S>, _ bBlock: MatrixBlock, transposeB: Bool = false,
    alpha: S = 1, beta: S = 1, into c: inout Matrix<S>, _ cBlock: MatrixBlock
) {
    for (m, block) in [(a.shape, aBlock), (b.shape, bBlock), (c.shape, cBlock)] {
        precondition(block.rows.lowerBound >= 0 && block.rows.upperBound <= m.rows
                     && block.columns.lowerBound >= 0 && block.columns.upperBound <= m.columns,
                     "block \(block.rows)×\(block.columns) outside a \(m) matrix")
    }
    let (m, k) = transposeA ? (aBlock.columns.count, aBlock.rows.count) : (aBlock.rows.count, aBlock.columns.count)
    let (kb, n) = transposeB ? (bBlock.columns.count, bBlock.rows.count) : (bBlock.rows.count, bBlock.columns.count)
    precondition(k == kb && cBlock.rows.count == m && cBlock.columns.count == n,
                 "block product \(m)×\(k) · \(kb)×\(n) into \(cBlock.rows.count)×\(cBlock.columns.count)")
    guard m > 0, n > 0 else { return }
    let (lda, ldb, ldc) = (a.rows, b.rows, c.rows)
    c.withUnsafeMutableBufferPointer { pc in
        let cStart = pc.baseAddress! + cBlock.rows.lowerBound + cBlock.columns.lowerBound * ldc
        guard k > 0 else {
            for j in 0..<n { for i in 0..<m { cStart[i + j * ldc] *= beta } }
            return
        }
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                          a: pa.baseAddress! + aBlock.rows.lowerBound + aBlock.columns.lowerBound * lda, lda: max(1, lda),
                          b: pb.baseAddress! + bBlock.rows.lowerBound + bBlock.columns.lowerBound * ldb, ldb: max(1, ldb),
                          beta: beta, c: cStart, ldc: max(1, ldc))
            }
        }
    }
}
