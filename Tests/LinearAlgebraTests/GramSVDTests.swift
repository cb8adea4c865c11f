import Foundation
import LinearAlgebra
import Testing

@Suite struct SymmetricEigenTests {
    /// A = Q·diag(λ)·Qᵀ (Float64, Q random orthogonal) with known eigenvalues, mixed signs and a
    /// near-double pair, so the reference is the construction, not another eigensolver.
    static func symmetric(_ lambda: [Double], seed: UInt64) throws -> Matrix<Double> {
        let n = lambda.count
        let q = try Ref.orthonormal(n, n, seed: seed)
        var a = Matrix<Double>(rows: n, columns: n)
        for j in 0..<n {
            for i in 0..<n {
                var s = 0.0
                for l in 0..<n { s += q[i, l] * lambda[l] * q[j, l] }
                a[i, j] = s
            }
        }
        return a
    }

    static let spectrum: [Double] = (0..<60).map { (i: Int) -> Double in
        if i == 7 { return 3.0 + 1e-9 }
        if i == 8 { return 3.0 }
        return 10 * cos(Double(i) * 0.37) - 2
    }

    /// Every value within 20·n·ε·‖A‖ of the construction's; each returned vector satisfies
    /// ‖A v − λ v‖ ≤ 20·n·ε·‖A‖ and the vectors are orthonormal to 20·n·ε — for every top count,
    /// both drivers and both precisions (values are only read from the lower triangle: the upper
    /// one is poisoned).
    @Test(arguments: [SymmetricEigenDriver.relativelyRobust, .divideAndConquer], [0, 1, 13, 60])
    func matchesConstruction(driver: SymmetricEigenDriver, top: Int) throws {
        let a = try Self.symmetric(Self.spectrum, seed: 5)
        let expected = Self.spectrum.sorted(by: >)
        let norm = expected.map(abs).max()!
        try check(Float.self, a, expected: expected, norm: norm, top: top, driver: driver)
        try check(Double.self, a, expected: expected, norm: norm, top: top, driver: driver)
    }

    private func check<S: LinearAlgebraScalar>(
        _: S.Type, _ a: Matrix<Double>, expected: [Double], norm: Double, top: Int, driver: SymmetricEigenDriver
    ) throws {
        let n = a.rows
        var input = Matrix<S>(rows: n, columns: n) { i, j in S(a[i, j]) }
        for j in 1..<n { for i in 0..<j { input[i, j] = .nan } }  // upper triangle never read
        let tolerance = 20 * Double(n) * Double(S.ulpOfOne) * norm
        let e = try symmetricEigen(input, top: top, driver: driver)
        #expect(e.values.count == n && e.vectors.shape == Shape(rows: n, columns: top))
        for (i, (value, reference)) in zip(e.values, expected).enumerated() {
            #expect(abs(Double(value) - reference) <= tolerance, "λ\(i): \(value) vs \(reference)")
        }
        for j in 0..<top {
            var residual = 0.0
            for i in 0..<n {
                var av = 0.0
                for l in 0..<n { av += a[i, l] * Double(e.vectors[l, j]) }
                residual += pow(av - Double(e.values[j]) * Double(e.vectors[i, j]), 2)
            }
            #expect(residual.squareRoot() <= tolerance, "‖Av − λv‖ for vector \(j): \(residual.squareRoot())")
        }
        // MRRR (`dstemr`) keeps vectors orthogonal to O(n·ε) with a larger constant than the
        // values' (3.9e-13 = 29·n·ε seen for n = 60 in Float64, as OpenBLAS's thread count varied).
        #expect(Ref.orthonormalityError(columnsOf: e.vectors) <= 100 * Double(n) * Double(S.ulpOfOne))
    }

    @Test func emptyAndTinyMatrices() throws {
        let empty = try symmetricEigen(Matrix<Double>(rows: 0, columns: 0), top: 0)
        #expect(empty.values.isEmpty && empty.vectors.isEmpty)
        let one = try symmetricEigen(Matrix<Float>(rows: 1, columns: 1, elements: [-2.5]), top: 1)
        #expect(one.values == [-2.5] && abs(one.vectors[0, 0]) == 1)
    }

    @Test func rejectsBadArguments() {
        #expect(throws: LinearAlgebraError.self) { try symmetricEigen(Matrix<Double>(rows: 2, columns: 3), top: 1) }
        #expect(throws: LinearAlgebraError.self) { try symmetricEigen(Matrix<Double>.identity(3), top: 4) }
        #expect(throws: LinearAlgebraError.self) { try symmetricEigen(Matrix<Double>(rows: 2, columns: 2, elements: [1, .nan, 0, 1]), top: 1) }
    }
}

@Suite struct GramSVDTests {
    /// The spectra the analysis meets: decaying over four decades (like real deltas and synth's
    /// fitted spectra), flat (a Gaussian matrix), and rank-deficient (rank 7).
    enum Spectrum: String, CaseIterable, CustomStringConvertible {
        case decaying, flat, deficient
        var description: String { rawValue }
    }

    static func matrix(_ spectrum: Spectrum, _ m: Int, _ n: Int, seed: UInt64) throws -> Matrix<Float> {
        let k = min(m, n)
        switch spectrum {
        case .decaying:
            let sigma = (0..<k).map { (i: Int) -> Double in pow(10, -4 * Double(i) / Double(max(k - 1, 1))) }
            return Matrix<Float>(try Ref.withSpectrum(m, n, sigma, seed: seed))
        case .flat:
            return Matrix<Float>.gaussian(rows: m, columns: n, using: SeededGenerator(seed: seed))
        case .deficient:
            return Matrix<Float>(try Ref.withSpectrum(m, n, (0..<min(7, k)).map { 1 / Double($0 + 1) }, seed: seed))
        }
    }

    /// Against a Float64 `dgesdd` of the same Float32 matrix: every value ≥ 10⁻³·σ₁ within 10⁻⁶
    /// relative (a Float32 SVD is about 100× worse there), all values within 10⁻⁵·σ₁ absolutely,
    /// the r = k/2 vectors orthonormal to 10⁻⁵, each uᵢ, vᵢ parallel to the reference's where the
    /// values are separated by ≥ 1% (the only place a vector is determined), A·vᵢ = σᵢ·uᵢ, and the
    /// rank-r residual equal to the discarded energy (Eckart–Young) within 10⁻⁴.
    @Test(arguments: Spectrum.allCases, [(120, 50), (50, 120), (80, 80)])
    func matchesFloat64Reference(spectrum: Spectrum, shape: (Int, Int)) throws {
        let (m, n) = shape
        let k = min(m, n), r = k / 2
        let a = try Self.matrix(spectrum, m, n, seed: 11)
        let ad = Matrix<Double>(a)
        let reference = try svd(ad, vectors: .thin)
        let sigma = reference.singularValues
        let g = try gramSVD(a, rank: r)
        #expect(g.singularValues.count == k)
        for i in 0..<k {
            let (s, t) = (Double(g.singularValues[i]), sigma[i])
            #expect(abs(s - t) <= 1e-5 * sigma[0], "σ\(i): \(s) vs \(t)")
            if t >= 1e-3 * sigma[0] { #expect(abs(s - t) <= 1e-6 * t, "σ\(i): \(s) vs \(t), relative \(abs(s - t) / t)") }
        }
        let resolved = spectrum == .deficient ? min(7, r) : r
        #expect(g.u.shape == Shape(rows: m, columns: resolved) && g.v.shape == Shape(rows: n, columns: resolved))
        #expect(Ref.orthonormalityError(columnsOf: g.u) <= 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: g.v) <= 1e-5)
        for j in 0..<resolved {
            let gap = min(j > 0 ? sigma[j - 1] - sigma[j] : .infinity, sigma[j] - sigma[j + 1]) / sigma[j]
            if gap >= 0.01 {
                var du = 0.0, dv = 0.0
                for i in 0..<m { du += Double(g.u[i, j]) * reference.u[i, j] }
                for i in 0..<n { dv += Double(g.v[i, j]) * reference.vt[j, i] }
                #expect(1 - abs(du) <= 1e-6 && 1 - abs(dv) <= 1e-6, "vector \(j): |uᵀu_ref| = \(abs(du)), |vᵀv_ref| = \(abs(dv))")
            }
            var mismatch = 0.0
            for i in 0..<m {
                var av = 0.0
                for l in 0..<n { av += ad[i, l] * Double(g.v[l, j]) }
                mismatch += pow(av - sigma[j] * Double(g.u[i, j]), 2)
            }
            #expect(mismatch.squareRoot() <= 1e-5 * sigma[0], "‖A vᵢ − σᵢ uᵢ‖ for \(j): \(mismatch.squareRoot())")
        }
        let approximation = Ref.reconstruct(u: g.u, sigma: Array(g.singularValues[0..<resolved]), vt: g.v.transposed())
        var residual = 0.0
        for j in 0..<n { for i in 0..<m { residual += pow(ad[i, j] - approximation[i, j], 2) } }
        let discarded = sigma.dropFirst(resolved).reduce(0) { $0 + $1 * $1 }
        #expect(abs(residual - discarded) <= 1e-4 * discarded + 1e-10 * sigma[0] * sigma[0], "residual \(residual) vs \(discarded)")
    }

    /// The Float64 Gram on the short side equals the naive Float64 product: the products of
    /// Float32 values are exact in Float64, so only the sums round (≤ k·ε₆₄ relative).
    @Test(arguments: [(300, 40), (40, 300), (1, 1), (257, 3)])
    func shortSideGramMatchesNaiveProduct(shape: (Int, Int)) throws {
        let a = Matrix<Float>.gaussian(rows: shape.0, columns: shape.1, using: SeededGenerator(seed: 3))
        let g = shortSideGram(of: a)
        let reference = shape.0 >= shape.1 ? Ref.multiply(a, true, a, false) : Ref.multiply(a, false, a, true)
        #expect(g.shape == reference.shape)
        #expect(Ref.relativeError(g, reference) <= 1e-13)
    }

    /// More short-side vectors than triplets: the extra ones are the Gram's next eigenvectors
    /// (‖AᵀA v − σ² v‖ small for a tall A; ‖AAᵀ u − σ² u‖ for a wide one), a given Gram gives the
    /// same bits as a computed one, and the dsyevd driver agrees with MRRR.
    @Test(arguments: [(90, 40), (40, 90)])
    func extraShortSideVectorsAndGivenGram(shape: (Int, Int)) throws {
        let (m, n) = shape
        let a = try Self.matrix(.decaying, m, n, seed: 21)
        let k = min(m, n)
        let g = try gramSVD(a, rank: 10, shortSideVectors: 30)
        let short = m >= n ? g.v : g.u, long = m >= n ? g.u : g.v
        #expect(short.columns == 30 && long.columns == 10)
        let gramMatrix = shortSideGram(of: a)
        for j in 0..<30 {
            var residual = 0.0
            for i in 0..<k {
                var x = 0.0
                for l in 0..<k { x += gramMatrix[i, l] * Double(short[l, j]) }
                residual += pow(x - Double(g.singularValues[j]) * Double(g.singularValues[j]) * Double(short[i, j]), 2)
            }
            #expect(residual.squareRoot() <= 1e-6 * Double(g.singularValues[0] * g.singularValues[0]), "vector \(j)")
        }
        let given = try gramSVD(a, rank: 10, shortSideVectors: 30, gram: gramMatrix)
        #expect(given.u.elements == g.u.elements && given.v.elements == g.v.elements && given.singularValues == g.singularValues)
        let evd = try gramSVD(a, rank: 10, driver: .divideAndConquer)
        for i in 0..<k { #expect(abs(evd.singularValues[i] - g.singularValues[i]) <= 1e-6 * g.singularValues[0]) }
        for j in 0..<10 {
            var d = 0.0
            for i in 0..<m { d += Double(evd.u[i, j]) * Double(g.u[i, j]) }
            #expect(1 - abs(d) <= 1e-6)
        }
    }

    @Test(arguments: [(0, 5), (5, 0), (1, 1), (1, 9), (9, 1)])
    func tinyAndEmptyShapes(shape: (Int, Int)) throws {
        let (m, n) = shape
        let k = min(m, n)
        let a = Matrix<Float>.gaussian(rows: m, columns: n, using: SeededGenerator(seed: 9))
        let g = try gramSVD(a, rank: k)
        #expect(g.singularValues.count == k && g.u.shape == Shape(rows: m, columns: k) && g.v.shape == Shape(rows: n, columns: k))
        if k == 1 {
            let norm = a.elements.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(abs(Double(g.singularValues[0]) - norm) <= 1e-6 * norm)
            #expect(Ref.relativeError(Ref.reconstruct(u: g.u, sigma: g.singularValues, vt: g.v.transposed()), a) <= 1e-6)
        }
        let none = try gramSVD(a, rank: 0)
        #expect(none.singularValues == g.singularValues && none.u.columns == 0 && none.v.columns == 0)
    }

    /// A zero matrix has no resolved direction: all values 0, no vectors.
    @Test func zeroMatrixHasNoVectors() throws {
        let g = try gramSVD(Matrix<Float>(rows: 30, columns: 20), rank: 10)
        #expect(g.singularValues == [Float](repeating: 0, count: 20) && g.u.columns == 0 && g.v.columns == 0)
    }

    @Test func rejectsBadArguments() {
        let a = Matrix<Float>.gaussian(rows: 6, columns: 4, using: SeededGenerator(seed: 1))
        #expect(throws: LinearAlgebraError.self) { try gramSVD(a, rank: 5) }
        #expect(throws: LinearAlgebraError.self) { try gramSVD(a, rank: 2, shortSideVectors: 1) }
        #expect(throws: LinearAlgebraError.self) { try gramSVD(a, rank: 2, gram: Matrix<Double>.identity(6)) }
        #expect(throws: LinearAlgebraError.self) { try gramSVD(Matrix<Float>(rows: 2, columns: 2, elements: [1, .infinity, 0, 1]), rank: 1) }
    }
}
