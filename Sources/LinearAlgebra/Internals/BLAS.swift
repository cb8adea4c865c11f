import CBLAS

// The only file that calls OpenBLAS. Thin wrappers: column-major, shapes already validated by the
// caller, no empty dimensions (callers return early), leading dimensions ≥ 1.

enum BLAS {
    @inline(__always) private static func op(_ transpose: Bool) -> CBLAS_TRANSPOSE {
        transpose ? CblasTrans : CblasNoTrans
    }

    /// C ← α·op(A)·op(B) + β·C (`cblas_sgemm`/`cblas_dgemm`); op(A) is m×k, op(B) k×n.
    static func gemm<S: LinearAlgebraScalar>(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: S, a: UnsafePointer<S>, lda: Int, b: UnsafePointer<S>, ldb: Int,
        beta: S, c: UnsafeMutablePointer<S>, ldc: Int
    ) {
        switch S.precision {
        case .single:
            cblas_sgemm(CblasColMajor, op(transposeA), op(transposeB), blasint(m), blasint(n), blasint(k),
                        asFloat(alpha), floatPointer(a), blasint(lda), floatPointer(b), blasint(ldb),
                        asFloat(beta), floatPointer(c), blasint(ldc))
        case .double:
            cblas_dgemm(CblasColMajor, op(transposeA), op(transposeB), blasint(m), blasint(n), blasint(k),
                        asDouble(alpha), doublePointer(a), blasint(lda), doublePointer(b), blasint(ldb),
                        asDouble(beta), doublePointer(c), blasint(ldc))
        }
    }

    /// y ← α·op(A)·x + β·y (`cblas_sgemv`/`cblas_dgemv`); A is m×n as stored.
    static func gemv<S: LinearAlgebraScalar>(
        transpose: Bool, m: Int, n: Int, alpha: S, a: UnsafePointer<S>, lda: Int,
        x: UnsafePointer<S>, beta: S, y: UnsafeMutablePointer<S>
    ) {
        switch S.precision {
        case .single:
            cblas_sgemv(CblasColMajor, op(transpose), blasint(m), blasint(n), asFloat(alpha), floatPointer(a),
                        blasint(lda), floatPointer(x), 1, asFloat(beta), floatPointer(y), 1)
        case .double:
            cblas_dgemv(CblasColMajor, op(transpose), blasint(m), blasint(n), asDouble(alpha), doublePointer(a),
                        blasint(lda), doublePointer(x), 1, asDouble(beta), doublePointer(y), 1)
        }
    }

    /// Lower triangle of C (n×n) ← α·op(A)·op(A)ᵀ + β·C (`cblas_ssyrk`/`cblas_dsyrk`); op(A) is n×k.
    static func syrkLower<S: LinearAlgebraScalar>(
        transpose: Bool, n: Int, k: Int, alpha: S, a: UnsafePointer<S>, lda: Int, beta: S = 0, c: UnsafeMutablePointer<S>
    ) {
        switch S.precision {
        case .single:
            cblas_ssyrk(CblasColMajor, CblasLower, op(transpose), blasint(n), blasint(k), asFloat(alpha),
                        floatPointer(a), blasint(lda), asFloat(beta), floatPointer(c), blasint(n))
        case .double:
            cblas_dsyrk(CblasColMajor, CblasLower, op(transpose), blasint(n), blasint(k), asDouble(alpha),
                        doublePointer(a), blasint(lda), asDouble(beta), doublePointer(c), blasint(n))
        }
    }

    /// B (cols×rows) ← Aᵀ for A rows×cols (`cblas_somatcopy`/`cblas_domatcopy`, OpenBLAS extension).
    static func transpose<S: LinearAlgebraScalar>(rows: Int, columns: Int, a: UnsafePointer<S>, b: UnsafeMutablePointer<S>) {
        switch S.precision {
        case .single:
            cblas_somatcopy(CblasColMajor, CblasTrans, blasint(rows), blasint(columns), 1,
                            floatPointer(a), blasint(rows), floatPointer(b), blasint(columns))
        case .double:
            cblas_domatcopy(CblasColMajor, CblasTrans, blasint(rows), blasint(columns), 1,
                            doublePointer(a), blasint(rows), doublePointer(b), blasint(columns))
        }
    }

    static var threadCount: Int { Int(openblas_get_num_threads()) }

    static func setThreadCount(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
