import Foundation
import Testing
import LinearAlgebra

// Tolerances: Float32 ε = 6e-8; gesdd is backward stable with error ~ p(n)·ε·‖A‖, p(n) a small
// multiple of n ≤ 70, so 1e-5 relative (≈ 170ε) leaves room; Double uses 1e-12.

@Suite struct SVDTests {
    @Test(arguments: TestShape.all)
    func reconstructsRandomFloatMatrix(shape: TestShape) throws {
        let a = Matrix<Float>.gaussian(rows: shape.rows, columns: shape.columns, using: SeededGenerator(seed: 11))
        let d = try svd(a)
        let k = min(shape.rows, shape.columns)
        #expect(d.u.shape == Shape(rows: shape.rows, columns: k))
        #expect(d.vt.shape == Shape(rows: k, columns: shape.columns))
        #expect(Ref.relativeError(Ref.reconstruct(u: d.u, sigma: d.singularValues, vt: d.vt), a) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.vt.transposed()) < 1e-5)
        #expect(zip(d.singularValues, d.singularValues.dropFirst()).allSatisfy { $0 >= $1 })
        #expect(d.singularValues.allSatisfy { $0 >= 0 })
    }

    @Test(arguments: TestShape.all)
    func reconstructsRandomDoubleMatrix(shape: TestShape) throws {
        let a = Matrix<Double>.gaussian(rows: shape.rows, columns: shape.columns, using: SeededGenerator(seed: 12))
        let d = try svd(a)
        #expect(Ref.relativeError(Ref.reconstruct(u: d.u, sigma: d.singularValues, vt: d.vt), a) < 1e-12)
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-12)
    }

    /// σ geometric from 1 down to 1e-6 (condition number 1e6), built in Double and rounded to Float.
    @Test(arguments: [TestShape(rows: 50, columns: 50), TestShape(rows: 80, columns: 40), TestShape(rows: 40, columns: 80)])
    func illConditionedFloat(shape: TestShape) throws {
        let k = min(shape.rows, shape.columns)
        let sigma = (0..<k).map { i in pow(10, -6 * Double(i) / Double(k - 1)) }
        let reference = try Ref.withSpectrum(shape.rows, shape.columns, sigma, seed: 21)
        let a = Matrix<Float>(reference)
        let d = try svd(a)
        #expect(Ref.relativeError(Ref.reconstruct(u: d.u, sigma: d.singularValues, vt: d.vt), a) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.vt.transposed()) < 1e-5)
        // Absolute accuracy relative to σ₁ (what a backward-stable SVD guarantees): compare with
        // the constructed spectrum, whose rounding to Float perturbs it by ~ε‖A‖.
        for (computed, exact) in zip(d.singularValues, sigma) {
            #expect(abs(Double(computed) - exact) < 1e-5 * sigma[0])
        }
    }

    /// Float32 gesdd against Float64 dgesdd on the same (converted) matrix.
    @Test(arguments: TestShape.all)
    func floatValuesMatchDoubleReference(shape: TestShape) throws {
        let a = Matrix<Float>.gaussian(rows: shape.rows, columns: shape.columns, using: SeededGenerator(seed: 31))
        let single = try singularValues(of: a)
        let double = try singularValues(of: Matrix<Double>(a))
        #expect(single.count == double.count)
        for (s, d) in zip(single, double) {
            #expect(abs(Double(s) - d) <= 1e-5 * double[0])
        }
    }

    @Test func fullVectorsAreSquareOrthogonal() throws {
        let a = Matrix<Float>.gaussian(rows: 30, columns: 12, using: SeededGenerator(seed: 5))
        let d = try svd(a, vectors: .full)
        #expect(d.u.shape == Shape(rows: 30, columns: 30))
        #expect(d.vt.shape == Shape(rows: 12, columns: 12))
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.vt) < 1e-5)
        let thinU = d.u.columnSlice(0..<12).matrix
        #expect(Ref.relativeError(Ref.reconstruct(u: thinU, sigma: d.singularValues, vt: d.vt), a) < 1e-5)
        let none = try svd(a, vectors: .none)
        #expect(none.u.columns == 0 && none.vt.rows == 0)
        for (x, y) in zip(none.singularValues, d.singularValues) { #expect(abs(x - y) <= 1e-5 * d.singularValues[0]) }
    }

    @Test func rankDeficientMatrix() throws {
        // Rank 5: product of 40×5 and 5×30 Gaussian factors.
        let g = SeededGenerator(seed: 8)
        let x = Matrix<Float>.gaussian(rows: 40, columns: 5, using: g), y = Matrix<Float>.gaussian(rows: 5, columns: 30, using: g)
        let a = try multiply(x, y)
        let d = try svd(a)
        #expect(d.singularValues[4] > 1e-2 * d.singularValues[0])
        for s in d.singularValues[5...] { #expect(s < 1e-5 * d.singularValues[0]) }
        #expect(Ref.relativeError(Ref.reconstruct(u: d.u, sigma: d.singularValues, vt: d.vt), a) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-5)
    }

    @Test func zeroMatrix() throws {
        let d = try svd(Matrix<Float>(rows: 12, columns: 7))
        #expect(d.singularValues == [Float](repeating: 0, count: 7))
        #expect(Ref.orthonormalityError(columnsOf: d.u) < 1e-6)
        #expect(Ref.orthonormalityError(columnsOf: d.vt.transposed()) < 1e-6)
    }

    @Test(arguments: [TestShape(rows: 0, columns: 5), TestShape(rows: 5, columns: 0), TestShape(rows: 0, columns: 0)])
    func emptyMatrix(shape: TestShape) throws {
        let a = Matrix<Float>(rows: shape.rows, columns: shape.columns)
        let thin = try svd(a)
        #expect(thin.singularValues.isEmpty)
        #expect(thin.u.shape == Shape(rows: shape.rows, columns: 0))
        #expect(thin.vt.shape == Shape(rows: 0, columns: shape.columns))
        let full = try svd(a, vectors: .full)
        #expect(full.u == .identity(shape.rows))
        #expect(full.vt == .identity(shape.columns))
    }

    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func nonFiniteInputThrows(bad: Float) {
        var a = Matrix<Float>.gaussian(rows: 6, columns: 4, using: SeededGenerator(seed: 2))
        a[3, 2] = bad
        #expect(throws: LinearAlgebraError.nonFiniteInput(operation: "SVD of 6×4 matrix")) { try svd(a) }
    }
}

