import LinearAlgebra

/// Helpers shared by the tests. References are computed in Double with plain loops, independent
/// of BLAS/LAPACK.
enum Ref {
    /// C = op(A)·op(B) by the naive triple loop in Double.
    static func multiply<S: LinearAlgebraScalar>(_ a: Matrix<S>, _ ta: Bool, _ b: Matrix<S>, _ tb: Bool) -> Matrix<Double> {
        let (m, k) = ta ? (a.columns, a.rows) : (a.rows, a.columns)
        let n = tb ? b.rows : b.columns
        var c = Matrix<Double>(rows: m, columns: n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for l in 0..<k {
                    let x = Double(ta ? a[l, i] : a[i, l]), y = Double(tb ? b[j, l] : b[l, j])
                    s += x * y
                }
                c[i, j] = s
            }
        }
        return c
    }

    /// ‖A − B‖_F / ‖B‖_F in Double (‖A − B‖_F if B = 0).
    static func relativeError<S: LinearAlgebraScalar, T: LinearAlgebraScalar>(_ a: Matrix<S>, _ b: Matrix<T>) -> Double {
        precondition(a.rows == b.rows && a.columns == b.columns, "shapes \(a.shape) vs \(b.shape)")
        var diff = 0.0, ref = 0.0
        for j in 0..<a.columns {
            for i in 0..<a.rows {
                let d = Double(a[i, j]) - Double(b[i, j])
                diff += d * d
                ref += Double(b[i, j]) * Double(b[i, j])
            }
        }
        return ref == 0 ? diff.squareRoot() : (diff / ref).squareRoot()
    }

    /// max |(QᵀQ − I)ᵢⱼ| over the columns of `q`, in Double.
    static func orthonormalityError<S: LinearAlgebraScalar>(columnsOf q: Matrix<S>) -> Double {
        var worst = 0.0
        for a in 0..<q.columns {
            for b in 0..<q.columns {
                var s = 0.0
                for i in 0..<q.rows { s += Double(q[i, a]) * Double(q[i, b]) }
                worst = max(worst, abs(s - (a == b ? 1 : 0)))
            }
        }
        return worst
    }

    /// U·diag(σ)·Vᵀ in Double, given U (m×k), σ (k) and Vᵀ (k×n).
    static func reconstruct<S: LinearAlgebraScalar>(u: Matrix<S>, sigma: [S], vt: Matrix<S>) -> Matrix<Double> {
        var a = Matrix<Double>(rows: u.rows, columns: vt.columns)
        for j in 0..<vt.columns {
            for i in 0..<u.rows {
                var s = 0.0
                for l in 0..<sigma.count { s += Double(u[i, l]) * Double(sigma[l]) * Double(vt[l, j]) }
                a[i, j] = s
            }
        }
        return a
    }

    /// A random m×k matrix with orthonormal columns (QR of a Gaussian matrix, Double).
    static func orthonormal(_ m: Int, _ k: Int, seed: UInt64) throws -> Matrix<Double> {
        try qr(Matrix<Double>.gaussian(rows: m, columns: k, using: SeededGenerator(seed: seed))).q
    }

    /// U·diag(σ)·Vᵀ with random orthonormal U (m×k) and V (n×k), k = σ.count, in Double.
    static func withSpectrum(_ m: Int, _ n: Int, _ sigma: [Double], seed: UInt64) throws -> Matrix<Double> {
        let k = sigma.count
        var u = try orthonormal(m, k, seed: seed)
        let v = try orthonormal(n, k, seed: seed &+ 1)
        for j in 0..<k { for i in 0..<m { u[i, j] *= sigma[j] } }
        return try LinearAlgebra.multiply(u, v, transposeB: true)
    }
}

/// Shapes used across suites: square, tall, wide and degenerate vectors.
struct TestShape: Sendable, CustomStringConvertible {
    var rows: Int, columns: Int
    var description: String { "\(rows)×\(columns)" }
    static let all: [TestShape] = [.init(rows: 40, columns: 40), .init(rows: 70, columns: 30),
                                   .init(rows: 30, columns: 70), .init(rows: 1, columns: 9), .init(rows: 9, columns: 1)]
}
