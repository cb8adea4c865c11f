/// Which singular vectors ``svd(_:vectors:)`` computes (LAPACK `jobz`).
public enum SVDVectors: Sendable, Hashable {
    /// Singular values only (`jobz = 'N'`); `u` is m×0 and `vt` is 0×n.
    case none
    /// Economy size (`jobz = 'S'`): U is m×k, Vᵀ is k×n, k = min(m, n).
    case thin
    /// Full (`jobz = 'A'`): U is m×m, Vᵀ is n×n.
    case full
}

/// A = U·diag(σ)·Vᵀ.
///
/// `vt` holds **Vᵀ** (rows are the right singular vectors), exactly as LAPACK returns it; the
/// i-th right singular vector is row i of `vt`. Singular values are non-negative and descending.
public struct SingularValueDecomposition<Scalar: LinearAlgebraScalar>: Sendable {
    /// Left singular vectors as columns (m×k thin, m×m full, m×0 for `.none`).
    public var u: Matrix<Scalar>
    /// σ₁ ≥ σ₂ ≥ … ≥ σ_k ≥ 0, k = min(m, n).
    public var singularValues: [Scalar]
    /// Vᵀ: right singular vectors as rows (k×n thin, n×n full, 0×n for `.none`).
    public var vt: Matrix<Scalar>

    public init(u: Matrix<Scalar>, singularValues: [Scalar], vt: Matrix<Scalar>) {
        self.u = u
        self.singularValues = singularValues
        self.vt = vt
    }
}

/// Singular value decomposition by divide and conquer (LAPACK `sgesdd`/`dgesdd`, workspace
/// queried with lwork = -1; never `gesvd`, which is 30× slower for vectors).
///
/// Copies `a` once (gesdd overwrites its input). Cost about 4·m·n·k + 8·k³ flops (k = min(m, n))
/// with vectors, ~18 s for 4096² Float on one core. Accuracy: singular values with absolute error
/// ≲ p(m, n)·ε·σ₁ (backward stable), vectors orthonormal to ~ε·√k. An empty matrix gives no
/// values and empty (thin) or identity (full) factors.
/// - Throws: ``LinearAlgebraError/nonFiniteInput(operation:)`` for NaN/∞ input (checked before
///   LAPACK), ``LinearAlgebraError/svdDidNotConverge(operation:unconvergedSuperdiagonals:)``.
public func svd<S: LinearAlgebraScalar>(
    _ a: some ColumnMajorMatrix<S>, vectors: SVDVectors = .thin
) throws(LinearAlgebraError) -> SingularValueDecomposition<S> {
    let (m, n) = (a.rows, a.columns)
    let k = min(m, n)
    guard k > 0 else {
        switch vectors {
        case .none: return .init(u: Matrix(rows: m, columns: 0), singularValues: [], vt: Matrix(rows: 0, columns: n))
        case .thin: return .init(u: Matrix(rows: m, columns: 0), singularValues: [], vt: Matrix(rows: 0, columns: n))
        case .full: return .init(u: .identity(m), singularValues: [], vt: .identity(n))
        }
    }
    guard a.isFinite else { throw .nonFiniteInput(operation: "SVD of \(a.shape) matrix") }

    var work = a.withUnsafeBufferPointer { Array($0) }
    var s = [S](repeating: 0, count: k)
    let (jobz, uShape, vtShape): (Character, Shape, Shape) = switch vectors {
    case .none: ("N", Shape(rows: m, columns: 0), Shape(rows: 0, columns: n))
    case .thin: ("S", Shape(rows: m, columns: k), Shape(rows: k, columns: n))
    case .full: ("A", Shape(rows: m, columns: m), Shape(rows: n, columns: n))
    }
    var u = Matrix<S>(rows: uShape.rows, columns: uShape.columns)
    var vt = Matrix<S>(rows: vtShape.rows, columns: vtShape.columns)
    let info = work.withUnsafeMutableBufferPointer { pa in
        s.withUnsafeMutableBufferPointer { ps in
            u.withUnsafeMutableBufferPointer { pu in
                vt.withUnsafeMutableBufferPointer { pvt in
                    LAPACK.gesdd(jobz: jobz, m: m, n: n, a: pa.baseAddress!, s: ps.baseAddress!,
                                 u: vectors == .none ? nil : pu.baseAddress, ldu: vectors == .none ? 1 : m,
                                 vt: vectors == .none ? nil : pvt.baseAddress, ldvt: vectors == .none ? 1 : max(1, vtShape.rows))
                }
            }
        }
    }
    guard info == 0 else {
        throw .svdDidNotConverge(operation: "SVD of \(a.shape) matrix", unconvergedSuperdiagonals: info)
    }
    return .init(u: u, singularValues: s, vt: vt)
}

/// Singular values only (`gesdd` with `jobz = 'N'`), descending. See ``svd(_:vectors:)``.
public func singularValues<S: LinearAlgebraScalar>(of a: some ColumnMajorMatrix<S>) throws(LinearAlgebraError) -> [S] {
    try svd(a, vectors: .none).singularValues
}
