import CLapacke

// The only file that calls LAPACKE. Column-major throughout, `_work` variants with an explicit
// workspace query (lwork = -1) where the routine takes a workspace. Returns LAPACK's `info`;
// `info < 0` (illegal argument) is a bug in this module and traps here.

enum LAPACK {
    private static let columnMajor = LAPACK_COL_MAJOR

    @inline(__always) private static func checkArguments(_ info: dp_lapack_int, _ routine: StaticString) -> Int {
        precondition(info >= 0, "\(routine): illegal value in argument \(-info) (bug in LinearAlgebra)")
        return Int(info)
    }

    /// The workspace size LAPACK reported in `work[0]`, rounded up: a Float cannot hold every
    /// integer above 2²⁴, and older LAPACKs round the size down when storing it.
    @inline(__always) private static func workspaceCount(_ reported: Float) -> Int {
        max(1, Int(reported.nextUp.rounded(.up)))
    }
    @inline(__always) private static func workspaceCount(_ reported: Double) -> Int {
        max(1, Int(reported.rounded(.up)))
    }

    /// An uninitialized scratch array (LAPACK writes before it reads).
    private static func scratch<T>(_ count: Int, _ zero: T) -> [T] {
        [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            buffer.initialize(repeating: zero)
            initialized = count
        }
    }

    /// SVD by divide and conquer (`sgesdd`/`dgesdd`). `a` (m×n, lda = m) is destroyed.
    /// `jobz`: "N" values only, "S" thin (u m×k, vt k×n), "A" full (u m×m, vt n×n), k = min(m, n).
    static func gesdd<S: LinearAlgebraScalar>(
        jobz: Character, m: Int, n: Int, a: UnsafeMutablePointer<S>, s: UnsafeMutablePointer<S>,
        u: UnsafeMutablePointer<S>?, ldu: Int, vt: UnsafeMutablePointer<S>?, ldvt: Int
    ) -> Int {
        let job = CChar(jobz.asciiValue!)
        var iwork = [dp_lapack_int](repeating: 0, count: max(1, 8 * min(m, n)))
        let (mm, nn, lda) = (dp_lapack_int(m), dp_lapack_int(n), dp_lapack_int(max(1, m)))
        let (lu, lvt) = (dp_lapack_int(ldu), dp_lapack_int(ldvt))
        switch S.precision {
        case .single:
            let (a, s, u, vt) = (floatPointer(a), floatPointer(s), u.map { floatPointer($0) }, vt.map { floatPointer($0) })
            var query: Float = 0
            _ = checkArguments(LAPACKE_sgesdd_work(columnMajor, job, mm, nn, a, lda, s, u, lu, vt, lvt, &query, -1, &iwork), "sgesdd")
            var work = scratch(workspaceCount(query), Float(0))
            return checkArguments(LAPACKE_sgesdd_work(columnMajor, job, mm, nn, a, lda, s, u, lu, vt, lvt,
                                                      &work, dp_lapack_int(work.count), &iwork), "sgesdd")
        case .double:
            let (a, s, u, vt) = (doublePointer(a), doublePointer(s), u.map { doublePointer($0) }, vt.map { doublePointer($0) })
            var query: Double = 0
            _ = checkArguments(LAPACKE_dgesdd_work(columnMajor, job, mm, nn, a, lda, s, u, lu, vt, lvt, &query, -1, &iwork), "dgesdd")
            var work = scratch(workspaceCount(query), Double(0))
            return checkArguments(LAPACKE_dgesdd_work(columnMajor, job, mm, nn, a, lda, s, u, lu, vt, lvt,
                                                      &work, dp_lapack_int(work.count), &iwork), "dgesdd")
        }
    }

    /// In-place thin QR of `a` (m×n, m ≥ n ≥ 1, lda = m): `geqrf` then `orgqr`. On return the
    /// first `n` columns hold Q; if `r` is given, the n×n R is written there (lower part zero).
    static func qr<S: LinearAlgebraScalar>(m: Int, n: Int, a: UnsafeMutablePointer<S>, r: UnsafeMutableBufferPointer<S>?) {
        let k = min(m, n)
        let (mm, nn, kk, lda) = (dp_lapack_int(m), dp_lapack_int(n), dp_lapack_int(k), dp_lapack_int(max(1, m)))
        switch S.precision {
        case .single:
            let a = floatPointer(a)
            var tau = [Float](repeating: 0, count: max(1, k))
            var query: Float = 0
            _ = checkArguments(LAPACKE_sgeqrf_work(columnMajor, mm, nn, a, lda, &tau, &query, -1), "sgeqrf")
            var work = scratch(workspaceCount(query), Float(0))
            _ = checkArguments(LAPACKE_sgeqrf_work(columnMajor, mm, nn, a, lda, &tau, &work, dp_lapack_int(work.count)), "sgeqrf")
            if let r { copyUpper(from: UnsafeMutablePointer(a), m: m, n: n, into: floatBuffer(r)) }
            _ = checkArguments(LAPACKE_sorgqr_work(columnMajor, mm, kk, kk, a, lda, &tau, &query, -1), "sorgqr")
            work = scratch(workspaceCount(query), Float(0))
            _ = checkArguments(LAPACKE_sorgqr_work(columnMajor, mm, kk, kk, a, lda, &tau, &work, dp_lapack_int(work.count)), "sorgqr")
        case .double:
            let a = doublePointer(a)
            var tau = [Double](repeating: 0, count: max(1, k))
            var query: Double = 0
            _ = checkArguments(LAPACKE_dgeqrf_work(columnMajor, mm, nn, a, lda, &tau, &query, -1), "dgeqrf")
            var work = scratch(workspaceCount(query), Double(0))
            _ = checkArguments(LAPACKE_dgeqrf_work(columnMajor, mm, nn, a, lda, &tau, &work, dp_lapack_int(work.count)), "dgeqrf")
            if let r { copyUpper(from: UnsafeMutablePointer(a), m: m, n: n, into: doubleBuffer(r)) }
            _ = checkArguments(LAPACKE_dorgqr_work(columnMajor, mm, kk, kk, a, lda, &tau, &query, -1), "dorgqr")
            work = scratch(workspaceCount(query), Double(0))
            _ = checkArguments(LAPACKE_dorgqr_work(columnMajor, mm, kk, kk, a, lda, &tau, &work, dp_lapack_int(work.count)), "dorgqr")
        }
    }

    /// R (k×n, k = min(m, n)) from geqrf's output: the upper trapezoid, zeros below.
    private static func copyUpper<T: LinearAlgebraScalar>(from a: UnsafeMutablePointer<T>, m: Int, n: Int, into r: UnsafeMutableBufferPointer<T>) {
        let k = min(m, n)
        for j in 0..<n {
            for i in 0..<k { r[i + j * k] = i <= j ? a[i + j * m] : 0 }
        }
    }

    /// Cholesky factor of the `uplo` triangle of the n×n `a` (`spotrf`/`dpotrf`); info > 0 is the
    /// order of the first leading minor that is not positive definite.
    static func potrf<S: LinearAlgebraScalar>(lower: Bool, n: Int, a: UnsafeMutablePointer<S>) -> Int {
        let uplo = CChar(UInt8(ascii: lower ? "L" : "U"))
        switch S.precision {
        case .single: return checkArguments(LAPACKE_spotrf_work(columnMajor, uplo, dp_lapack_int(n), floatPointer(a), dp_lapack_int(n)), "spotrf")
        case .double: return checkArguments(LAPACKE_dpotrf_work(columnMajor, uplo, dp_lapack_int(n), doublePointer(a), dp_lapack_int(n)), "dpotrf")
        }
    }

    /// Inverse from a Cholesky factor (`spotri`/`dpotri`), written to the same triangle.
    static func potri<S: LinearAlgebraScalar>(lower: Bool, n: Int, a: UnsafeMutablePointer<S>) -> Int {
        let uplo = CChar(UInt8(ascii: lower ? "L" : "U"))
        switch S.precision {
        case .single: return checkArguments(LAPACKE_spotri_work(columnMajor, uplo, dp_lapack_int(n), floatPointer(a), dp_lapack_int(n)), "spotri")
        case .double: return checkArguments(LAPACKE_dpotri_work(columnMajor, uplo, dp_lapack_int(n), doublePointer(a), dp_lapack_int(n)), "dpotri")
        }
    }

    /// Solves A·X = B in place of B (n×nrhs) from the Cholesky factor of A in the `uplo` triangle
    /// of `a` (`spotrs`/`dpotrs`: two triangular solves).
    static func potrs<S: LinearAlgebraScalar>(lower: Bool, n: Int, nrhs: Int, a: UnsafePointer<S>, b: UnsafeMutablePointer<S>) -> Int {
        let uplo = CChar(UInt8(ascii: lower ? "L" : "U"))
        let (nn, rhs) = (dp_lapack_int(n), dp_lapack_int(nrhs))
        switch S.precision {
        case .single:
            return checkArguments(LAPACKE_spotrs_work(columnMajor, uplo, nn, rhs, floatPointer(a), nn, floatPointer(b), nn), "spotrs")
        case .double:
            return checkArguments(LAPACKE_dpotrs_work(columnMajor, uplo, nn, rhs, doublePointer(a), nn, doublePointer(b), nn), "dpotrs")
        }
    }

    /// Solves op(T)·X = B in place of B (n×nrhs) for triangular T (`strtrs`/`dtrtrs`); info > 0 is
    /// the 1-based index of a zero diagonal element.
    static func trtrs<S: LinearAlgebraScalar>(
        lower: Bool, transpose: Bool, unitDiagonal: Bool, n: Int, nrhs: Int,
        t: UnsafePointer<S>, b: UnsafeMutablePointer<S>
    ) -> Int {
        let uplo = CChar(UInt8(ascii: lower ? "L" : "U"))
        let trans = CChar(UInt8(ascii: transpose ? "T" : "N"))
        let diag = CChar(UInt8(ascii: unitDiagonal ? "U" : "N"))
        let (nn, rhs) = (dp_lapack_int(n), dp_lapack_int(nrhs))
        switch S.precision {
        case .single:
            return checkArguments(LAPACKE_strtrs_work(columnMajor, uplo, trans, diag, nn, rhs, floatPointer(t), nn, floatPointer(b), nn), "strtrs")
        case .double:
            return checkArguments(LAPACKE_dtrtrs_work(columnMajor, uplo, trans, diag, nn, rhs, doublePointer(t), nn, doublePointer(b), nn), "dtrtrs")
        }
    }

    /// Eigenvalues (all n, ascending, into `values`) and the eigenvectors of the `count` largest
    /// (into `vectors`, n×count, ascending order of their values) of the symmetric n×n `a` (lda = n),
    /// from its lower triangle: `sytrd` (a ← Householder reflectors, the upper triangle untouched),
    /// `sterf` for every value, `stemr` (MRRR) for the top `count` vectors of the tridiagonal
    /// matrix, `ormtr` to transform them back. `a`'s lower triangle and diagonal are destroyed.
    /// Returns the first nonzero `info` of `sterf`/`stemr` (did not converge), else 0.
    static func symmetricEigen<S: LinearAlgebraScalar>(
        n: Int, a: UnsafeMutablePointer<S>, count: Int, values: UnsafeMutablePointer<S>, vectors: UnsafeMutablePointer<S>
    ) -> Int {
        precondition(n >= 1 && (1...n).contains(count))
        let (nn, lda) = (dp_lapack_int(n), dp_lapack_int(n))
        let (il, iu) = (dp_lapack_int(n - count + 1), dp_lapack_int(n))
        let range = CChar(UInt8(ascii: count == n ? "A" : "I"))
        let (lower, vectorJob, left, noTranspose) = (CChar(UInt8(ascii: "L")), CChar(UInt8(ascii: "V")), CChar(UInt8(ascii: "L")), CChar(UInt8(ascii: "N")))
        var found: dp_lapack_int = 0
        var support = [dp_lapack_int](repeating: 0, count: 2 * n)
        var tryRelativeAccuracy: dp_lapack_int = 1
        var iworkQuery: dp_lapack_int = 0
        switch S.precision {
        case .single:
            let (a, values, z) = (floatPointer(a), floatPointer(values), floatPointer(vectors))
            var d = [Float](repeating: 0, count: n), e = [Float](repeating: 0, count: n), tau = [Float](repeating: 0, count: max(1, n - 1))
            var query: Float = 0
            _ = checkArguments(LAPACKE_ssytrd_work(columnMajor, lower, nn, a, lda, &d, &e, &tau, &query, -1), "ssytrd")
            var work = scratch(workspaceCount(query), Float(0))
            _ = checkArguments(LAPACKE_ssytrd_work(columnMajor, lower, nn, a, lda, &d, &e, &tau, &work, dp_lapack_int(work.count)), "ssytrd")
            var (dv, ev) = (d, e)
            let sterf = checkArguments(LAPACKE_ssterf_work(nn, &dv, &ev), "ssterf")
            guard sterf == 0 else { return sterf }
            for i in 0..<n { values[i] = dv[i] }
            var w = [Float](repeating: 0, count: n)
            _ = checkArguments(LAPACKE_sstemr_work(columnMajor, vectorJob, range, nn, &d, &e, 0, 0, il, iu, &found, &w, z, nn,
                                                   dp_lapack_int(count), &support, &tryRelativeAccuracy, &query, -1, &iworkQuery, -1), "sstemr")
            work = scratch(workspaceCount(query), Float(0))
            var iwork = [dp_lapack_int](repeating: 0, count: max(1, Int(iworkQuery)))
            let stemr = checkArguments(LAPACKE_sstemr_work(columnMajor, vectorJob, range, nn, &d, &e, 0, 0, il, iu, &found, &w, z, nn,
                                                           dp_lapack_int(count), &support, &tryRelativeAccuracy, &work,
                                                           dp_lapack_int(work.count), &iwork, dp_lapack_int(iwork.count)), "sstemr")
            guard stemr == 0 else { return stemr }
            precondition(Int(found) == count, "sstemr found \(found) of \(count) eigenpairs")
            _ = checkArguments(LAPACKE_sormtr_work(columnMajor, left, lower, noTranspose, nn, dp_lapack_int(count), a, lda, &tau, z, nn,
                                                   &query, -1), "sormtr")
            work = scratch(workspaceCount(query), Float(0))
            _ = checkArguments(LAPACKE_sormtr_work(columnMajor, left, lower, noTranspose, nn, dp_lapack_int(count), a, lda, &tau, z, nn,
                                                   &work, dp_lapack_int(work.count)), "sormtr")
        case .double:
            let (a, values, z) = (doublePointer(a), doublePointer(values), doublePointer(vectors))
            var d = [Double](repeating: 0, count: n), e = [Double](repeating: 0, count: n), tau = [Double](repeating: 0, count: max(1, n - 1))
            var query: Double = 0
            _ = checkArguments(LAPACKE_dsytrd_work(columnMajor, lower, nn, a, lda, &d, &e, &tau, &query, -1), "dsytrd")
            var work = scratch(workspaceCount(query), Double(0))
            _ = checkArguments(LAPACKE_dsytrd_work(columnMajor, lower, nn, a, lda, &d, &e, &tau, &work, dp_lapack_int(work.count)), "dsytrd")
            var (dv, ev) = (d, e)
            let sterf = checkArguments(LAPACKE_dsterf_work(nn, &dv, &ev), "dsterf")
            guard sterf == 0 else { return sterf }
            for i in 0..<n { values[i] = dv[i] }
            var w = [Double](repeating: 0, count: n)
            _ = checkArguments(LAPACKE_dstemr_work(columnMajor, vectorJob, range, nn, &d, &e, 0, 0, il, iu, &found, &w, z, nn,
                                                   dp_lapack_int(count), &support, &tryRelativeAccuracy, &query, -1, &iworkQuery, -1), "dstemr")
            work = scratch(workspaceCount(query), Double(0))
            var iwork = [dp_lapack_int](repeating: 0, count: max(1, Int(iworkQuery)))
            let stemr = checkArguments(LAPACKE_dstemr_work(columnMajor, vectorJob, range, nn, &d, &e, 0, 0, il, iu, &found, &w, z, nn,
                                                           dp_lapack_int(count), &support, &tryRelativeAccuracy, &work,
                                                           dp_lapack_int(work.count), &iwork, dp_lapack_int(iwork.count)), "dstemr")
            guard stemr == 0 else { return stemr }
            precondition(Int(found) == count, "dstemr found \(found) of \(count) eigenpairs")
            _ = checkArguments(LAPACKE_dormtr_work(columnMajor, left, lower, noTranspose, nn, dp_lapack_int(count), a, lda, &tau, z, nn,
                                                   &query, -1), "dormtr")
            work = scratch(workspaceCount(query), Double(0))
            _ = checkArguments(LAPACKE_dormtr_work(columnMajor, left, lower, noTranspose, nn, dp_lapack_int(count), a, lda, &tau, z, nn,
                                                   &work, dp_lapack_int(work.count)), "dormtr")
        }
        return 0
    }

    /// Every eigenpair of the symmetric n×n `a` (lda = n) by divide and conquer (`ssyevd`/`dsyevd`,
    /// lower triangle): values ascending into `values`, vectors overwrite `a` (column i for value i).
    /// Returns `info` (> 0: did not converge).
    static func syevd<S: LinearAlgebraScalar>(n: Int, a: UnsafeMutablePointer<S>, values: UnsafeMutablePointer<S>) -> Int {
        let (job, lower, nn) = (CChar(UInt8(ascii: "V")), CChar(UInt8(ascii: "L")), dp_lapack_int(n))
        var iworkQuery: dp_lapack_int = 0
        switch S.precision {
        case .single:
            let (a, w) = (floatPointer(a), floatPointer(values))
            var query: Float = 0
            _ = checkArguments(LAPACKE_ssyevd_work(columnMajor, job, lower, nn, a, nn, w, &query, -1, &iworkQuery, -1), "ssyevd")
            var work = scratch(workspaceCount(query), Float(0))
            var iwork = [dp_lapack_int](repeating: 0, count: max(1, Int(iworkQuery)))
            return checkArguments(LAPACKE_ssyevd_work(columnMajor, job, lower, nn, a, nn, w, &work, dp_lapack_int(work.count),
                                                      &iwork, dp_lapack_int(iwork.count)), "ssyevd")
        case .double:
            let (a, w) = (doublePointer(a), doublePointer(values))
            var query: Double = 0
            _ = checkArguments(LAPACKE_dsyevd_work(columnMajor, job, lower, nn, a, nn, w, &query, -1, &iworkQuery, -1), "dsyevd")
            var work = scratch(workspaceCount(query), Double(0))
            var iwork = [dp_lapack_int](repeating: 0, count: max(1, Int(iworkQuery)))
            return checkArguments(LAPACKE_dsyevd_work(columnMajor, job, lower, nn, a, nn, w, &work, dp_lapack_int(work.count),
                                                      &iwork, dp_lapack_int(iwork.count)), "dsyevd")
        }
    }
}
