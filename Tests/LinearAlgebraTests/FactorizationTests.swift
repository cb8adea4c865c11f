import Testing
import LinearAlgebra

@Suite struct FactorizationTests {
    /// SPD matrix XᵀX + n·I (condition number ≈ 5) in Double.
    static func spd(_ n: Int, seed: UInt64) throws -> Matrix<Double> {
        let x = Matrix<Double>.gaussian(rows: n, columns: n, using: SeededGenerator(seed: seed))
        var a = Ref.multiply(x, true, x, false)
        for i in 0..<n { a[i, i] += Double(n) }
        return a
    }

    @Test(arguments: [1, 7, 64])
    func choleskyReproducesMatrix(n: Int) throws {
        let a = try Self.spd(n, seed: UInt64(n))
        let l = try cholesky(a)
        for j in 0..<n { for i in 0..<j { #expect(l[i, j] == 0) } }
        #expect(Ref.relativeError(Ref.multiply(l, false, l, true), a) < 1e-14)
        let u = try cholesky(a, triangle: .upper)
        for j in 0..<n { for i in (j + 1)..<max(j + 1, n) { #expect(u[i, j] == 0) } }
        #expect(Ref.relativeError(Ref.multiply(u, true, u, false), a) < 1e-14)
        // Float32 factor against the Float64 product.
        let lf = try cholesky(Matrix<Float>(a))
        #expect(Ref.relativeError(Ref.multiply(lf, false, lf, true), a) < 1e-6)
    }

    @Test(arguments: [1, 9, 64])
    func spdInverse(n: Int) throws {
        let a = try Self.spd(n, seed: 100 + UInt64(n))
        let inv = try inverseSPD(a)
        #expect(inv == inv.transposed())
        #expect(Ref.relativeError(Ref.multiply(a, false, inv, false), Matrix<Double>.identity(n)) < 1e-13)
        let invF = try inverseSPD(Matrix<Float>(a))
        #expect(invF == invF.transposed())
        #expect(Ref.relativeError(Ref.multiply(Matrix<Float>(a), false, invF, false), Matrix<Double>.identity(n)) < 1e-5)
    }

    @Test(arguments: [1, 9, 64])
    func inverseCholeskyFactorInPlace(n: Int) throws {
        let a = try Self.spd(n, seed: 200 + UInt64(n))
        var lowerGarbage = a
        for j in 0..<n { for i in (j + 1)..<max(j + 1, n) { lowerGarbage[i, j] = -1e6 } }  // only the upper triangle is read
        let u = try inverseCholeskyFactor(lowerGarbage)
        for j in 0..<n { for i in (j + 1)..<max(j + 1, n) { #expect(u[i, j] == 0) } }
        #expect(Ref.relativeError(Ref.multiply(Ref.multiply(u, true, u, false), false, a, false), Matrix<Double>.identity(n)) < 1e-13)
        #expect(Ref.relativeError(u, try cholesky(try inverseSPD(a), triangle: .upper)) < 1e-13)
        let uf = try inverseCholeskyFactor(Matrix<Float>(a))
        #expect(Ref.relativeError(Ref.multiply(Ref.multiply(uf, true, uf, false), false, a, false), Matrix<Double>.identity(n)) < 1e-5)
        #expect(throws: LinearAlgebraError.notPositiveDefinite(order: 3)) {
            try inverseCholeskyFactor(Matrix<Double>(diagonal: [4, 1, -2, 3]))
        }
    }

    /// `potrs` with the factor of ``cholesky(_:triangle:)``: the residual of A·X = B is at rounding
    /// level, in place, and only the factor's lower triangle is read.
    @Test(arguments: [1, 9, 64])
    func choleskySolveResidual(n: Int) throws {
        let a = try Self.spd(n, seed: 300 + UInt64(n))
        var l = try cholesky(a)
        for j in 0..<n { for i in 0..<j { l[i, j] = -1e6 } }   // garbage above the diagonal
        let b = Matrix<Double>.gaussian(rows: n, columns: 3, using: SeededGenerator(seed: 400 + UInt64(n)))
        var x = b
        try solveCholesky(l, &x)
        #expect(Ref.relativeError(Ref.multiply(a, false, x, false), b) < 1e-13)
        let lf = try cholesky(Matrix<Float>(a))
        var xf = Matrix<Float>(b)
        try solveCholesky(lf, &xf)
        #expect(Ref.relativeError(Ref.multiply(Matrix<Float>(a), false, xf, false), b) < 1e-5)
        var wrong = Matrix<Double>(rows: n + 1, columns: 1)
        #expect(throws: LinearAlgebraError.self) { try solveCholesky(l, &wrong) }
    }

    @Test func notPositiveDefiniteNamesMinor() throws {
        let a = Matrix<Double>(diagonal: [4, 1, -2, 3])
        #expect(throws: LinearAlgebraError.notPositiveDefinite(order: 3)) { try cholesky(a) }
        #expect(throws: LinearAlgebraError.notPositiveDefinite(order: 3)) { try inverseSPD(a) }
        // Symmetric but indefinite: [[1, 2], [2, 1]] has eigenvalues 3 and -1.
        let b = Matrix<Float>(rows: 2, columns: 2, elements: [1, 2, 2, 1])
        #expect(throws: LinearAlgebraError.notPositiveDefinite(order: 2)) { try cholesky(b) }
        #expect(throws: LinearAlgebraError.notSquare(operation: "Cholesky factorization of 2×3 matrix", shape: Shape(rows: 2, columns: 3))) {
            try cholesky(Matrix<Float>(rows: 2, columns: 3))
        }
        var c = Matrix<Double>.identity(3)
        c[1, 1] = .nan
        #expect(throws: LinearAlgebraError.nonFiniteInput(operation: "Cholesky factorization of 3×3 matrix")) { try cholesky(c) }
    }

    @Test(arguments: [(Triangle.lower, false), (.lower, true), (.upper, false), (.upper, true)])
    func triangularSolveResidual(triangle: Triangle, transpose: Bool) throws {
        let a = try Self.spd(20, seed: 55)
        let t = try cholesky(a, triangle: triangle)
        let b = Matrix<Double>.gaussian(rows: 20, columns: 3, using: SeededGenerator(seed: 56))
        let x = try solveTriangular(t, b, triangle: triangle, transpose: transpose)
        #expect(Ref.relativeError(Ref.multiply(t, transpose, x, false), b) < 1e-13)
        let xf = try solveTriangular(Matrix<Float>(t), Matrix<Float>(b), triangle: triangle, transpose: transpose)
        #expect(Ref.relativeError(Ref.multiply(Matrix<Float>(t), transpose, xf, false), b) < 1e-5)
    }

    @Test func triangularSolveErrors() throws {
        let t = Matrix<Double>(diagonal: [1, 0, 2])
        #expect(throws: LinearAlgebraError.singularMatrix(operation: "triangular solve", diagonalIndex: 2)) {
            try solveTriangular(t, Matrix<Double>(rows: 3, columns: 1))
        }
        #expect(throws: LinearAlgebraError.shapeMismatch(operation: "triangular solve", lhs: Shape(rows: 3, columns: 3), rhs: Shape(rows: 4, columns: 1))) {
            try solveTriangular(t, Matrix<Double>(rows: 4, columns: 1))
        }
    }

    @Test(arguments: TestShape.all)
    func qrFactors(shape: TestShape) throws {
        let a = Matrix<Float>.gaussian(rows: shape.rows, columns: shape.columns, using: SeededGenerator(seed: 61))
        let f = try qr(a)
        let k = min(shape.rows, shape.columns)
        #expect(f.q.shape == Shape(rows: shape.rows, columns: k))
        #expect(f.r.shape == Shape(rows: k, columns: shape.columns))
        #expect(Ref.orthonormalityError(columnsOf: f.q) < 1e-5)
        for j in 0..<shape.columns { for i in 0..<k where i > j { #expect(f.r[i, j] == 0) } }
        #expect(Ref.relativeError(Ref.multiply(f.q, false, f.r, false), a) < 1e-5)
    }
}
