import Testing
import LinearAlgebra

@Suite struct MatrixTests {
    @Test func layoutIsColumnMajor() {
        let m = Matrix<Float>(rows: 2, columns: 3, elements: [1, 2, 3, 4, 5, 6])
        #expect(m[0, 0] == 1 && m[1, 0] == 2 && m[0, 1] == 3 && m[1, 2] == 6)
        let g = Matrix<Double>(rows: 2, columns: 3) { i, j in Double(10 * i + j) }
        #expect(g.elements == [0, 10, 1, 11, 2, 12])
        #expect(Matrix<Float>.identity(3).elements == [1, 0, 0, 0, 1, 0, 0, 0, 1])
    }

    @Test(arguments: TestShape.all)
    func transposeMatchesSubscripts(shape: TestShape) {
        let a = Matrix<Float>.gaussian(rows: shape.rows, columns: shape.columns, using: SeededGenerator(seed: 3))
        let t = a.transposed()
        #expect(t.shape == Shape(rows: shape.columns, columns: shape.rows))
        for i in 0..<shape.rows { for j in 0..<shape.columns { #expect(t[j, i] == a[i, j]) } }
        #expect(t.transposed() == a)
    }

    @Test func precisionConversion() {
        let d = Matrix<Double>(rows: 2, columns: 2, elements: [0.1, 1e-40, -3, 1e39])
        let f = Matrix<Float>(d)
        #expect(f.elements == [Float(0.1), Float(1e-40), -3, .infinity])
        let back = Matrix<Double>(f)
        #expect(back.elements == [Double(Float(0.1)), Double(Float(1e-40)), -3, .infinity])
        #expect(Matrix<Float>(f) == f)
    }

    @Test func columnSliceSharesStorage() {
        let a = Matrix<Float>(rows: 3, columns: 4) { i, j in Float(i + 3 * j) }
        let view = a.columnSlice(1..<3)
        #expect(view.shape == Shape(rows: 3, columns: 2))
        #expect(view[2, 1] == a[2, 2])
        #expect(view.matrix.elements == Array(a.elements[3..<9]))
        let base = a.withUnsafeBufferPointer { $0.baseAddress! }
        let viewBase = view.withUnsafeBufferPointer { $0.baseAddress! }
        #expect(viewBase == base + 3)
        #expect(Array(a.column(3)) == [9, 10, 11])
        #expect(a.rowSlice(1..<3).elements == [1, 2, 4, 5, 7, 8, 10, 11])
    }

    @Test func normsAndFiniteness() {
        let a = Matrix<Float>(rows: 2, columns: 2, elements: [3, 4, 12, 0])
        #expect(a.squaredFrobeniusNorm == 169)
        #expect(a.frobeniusNorm == 13)
        #expect(a.isFinite)
        // Squares of 1e30 overflow Float but not the Double accumulator.
        let big = Matrix<Float>(rows: 1, columns: 2, elements: [1e30, 1e30])
        #expect(abs(big.frobeniusNorm - 2.0.squareRoot() * Double(Float(1e30))) <= 1e-15 * big.frobeniusNorm)
        var b = a
        b[1, 1] = .nan
        #expect(!b.isFinite)
        b[1, 1] = -.infinity
        #expect(!b.isFinite)
        #expect(Matrix<Double>(rows: 0, columns: 3).isFinite)
    }

    /// Set to 1 and read back; not set higher again: the tests that compare bytes made at
    /// different moments of the test process run with one OpenBLAS thread, as the CLI does
    /// (threaded kernels split sums differently).
    @Test func blasThreadCountRoundTrips() {
        #expect(BLASThreads.count >= 1)
        BLASThreads.count = 1
        #expect(BLASThreads.count == 1)
    }
}

@Suite struct MultiplyTests {
    static let cases: [(TestShape, Int, Bool, Bool)] = [
        (TestShape(rows: 17, columns: 9), 13, false, false), (TestShape(rows: 17, columns: 9), 13, true, false),
        (TestShape(rows: 5, columns: 31), 8, false, true), (TestShape(rows: 40, columns: 40), 40, true, true),
        (TestShape(rows: 1, columns: 1), 50, false, false),
    ]

    /// GEMM vs the naive Double triple loop. Float error ≤ k·ε·Σ|a||b|; for Gaussian data the
    /// relative Frobenius error stays below √k·ε·few, so 1e-6 (k ≤ 50) holds.
    @Test(arguments: cases)
    func gemmMatchesNaive(shape: TestShape, inner: Int, ta: Bool, tb: Bool) throws {
        let g = SeededGenerator(seed: 17)
        let a = ta ? Matrix<Float>.gaussian(rows: inner, columns: shape.rows, using: g)
                   : Matrix<Float>.gaussian(rows: shape.rows, columns: inner, using: g)
        let b = tb ? Matrix<Float>.gaussian(rows: shape.columns, columns: inner, using: g)
                   : Matrix<Float>.gaussian(rows: inner, columns: shape.columns, using: g)
        let c = try multiply(a, transposeA: ta, b, transposeB: tb)
        #expect(c.shape == Shape(rows: shape.rows, columns: shape.columns))
        #expect(Ref.relativeError(c, Ref.multiply(a, ta, b, tb)) < 1e-6)
        let cd = try multiply(Matrix<Double>(a), transposeA: ta, Matrix<Double>(b), transposeB: tb, alpha: 2)
        var twice = Ref.multiply(a, ta, b, tb)
        for j in 0..<twice.columns { for i in 0..<twice.rows { twice[i, j] *= 2 } }
        #expect(Ref.relativeError(cd, twice) < 1e-14)
    }

    @Test func gemmOnColumnSlices() throws {
        let g = SeededGenerator(seed: 19)
        let a = Matrix<Double>.gaussian(rows: 6, columns: 10, using: g), b = Matrix<Double>.gaussian(rows: 4, columns: 6, using: g)
        let c = try multiply(b, a.columnSlice(2..<7))
        #expect(Ref.relativeError(c, Ref.multiply(b, false, a.columnSlice(2..<7).matrix, false)) < 1e-14)
    }

    @Test func shapeMismatchNamesBothShapes() {
        let a = Matrix<Float>(rows: 3, columns: 4), b = Matrix<Float>(rows: 5, columns: 2)
        #expect(throws: LinearAlgebraError.shapeMismatch(operation: "matrix multiply", lhs: Shape(rows: 3, columns: 4), rhs: Shape(rows: 5, columns: 2))) {
            try multiply(a, b)
        }
        #expect(throws: LinearAlgebraError.self) { try multiply(a, vector: [1, 2, 3]) }
        let e = LinearAlgebraError.shapeMismatch(operation: "matrix multiply", lhs: Shape(rows: 3, columns: 4), rhs: Shape(rows: 5, columns: 2))
        #expect(e.description.contains("3×4") && e.description.contains("5×2"))
    }

    @Test func emptyInnerDimensionGivesZeros() throws {
        let c = try multiply(Matrix<Float>(rows: 3, columns: 0), Matrix<Float>(rows: 0, columns: 2))
        #expect(c == Matrix<Float>(rows: 3, columns: 2))
    }

    @Test(arguments: [false, true])
    func gemvMatchesNaive(transpose: Bool) throws {
        let g = SeededGenerator(seed: 23)
        let a = Matrix<Float>.gaussian(rows: 12, columns: 7, using: g)
        let x = (0..<(transpose ? 12 : 7)).map { _ in Float(g.gaussian()) }
        let y = try multiply(a, transpose: transpose, vector: x)
        let ref = Ref.multiply(a, transpose, Matrix(rows: x.count, columns: 1, elements: x), false)
        #expect(Ref.relativeError(Matrix(rows: y.count, columns: 1, elements: y), ref) < 1e-6)
    }

    @Test(arguments: [false, true])
    func gramMatchesNaive(transpose: Bool) {
        let a = Matrix<Double>.gaussian(rows: 9, columns: 14, using: SeededGenerator(seed: 29))
        let g = gram(a, transpose: transpose, alpha: 0.5)
        var ref = Ref.multiply(a, transpose, a, !transpose)
        for j in 0..<ref.columns { for i in 0..<ref.rows { ref[i, j] *= 0.5 } }
        #expect(g == g.transposed())
        #expect(Ref.relativeError(g, ref) < 1e-14)
    }
}
