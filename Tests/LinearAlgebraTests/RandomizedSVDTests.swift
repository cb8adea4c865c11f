import Testing
import LinearAlgebra

@Suite struct RandomizedSVDTests {
    /// σᵢ = 1/i (power law) on 400×300, plus Gaussian noise of entry scale 1e-5 (‖E‖₂ ≈ 3e-4).
    static func decayingMatrix(rows: Int = 400, columns: Int = 300, seed: UInt64 = 41) throws -> Matrix<Float> {
        let k = min(rows, columns)
        var a = try Ref.withSpectrum(rows, columns, (1...k).map { 1 / Double($0) }, seed: seed)
        let noise = Matrix<Double>.gaussian(rows: rows, columns: columns, sigma: 1e-5, using: SeededGenerator(seed: seed + 100))
        for j in 0..<columns { for i in 0..<rows { a[i, j] += noise[i, j] } }
        return Matrix<Float>(a)
    }

    /// Top-r values within 1e-3 relative of the full gesdd values. The error of σ̂_j shrinks like
    /// (σ_{ℓ+1}/σ_j)^(2(2q+1)), ℓ = r + oversampling; on σᵢ = 1/i the last values before r need a
    /// large enough ratio: (r, oversampling, q) = (5, 10, 2) [the defaults] gives (5/16)^10 ≈ 1e-5,
    /// (10, 10, 4) gives (10/21)^18 ≈ 1.6e-6, (20, 20, 4) gives (20/41)^18 ≈ 2.5e-6.
    @Test(arguments: [(5, 10, 2), (10, 10, 4), (20, 20, 4)])
    func topValuesMatchFullSVD(rank: Int, oversampling: Int, powerIterations: Int) throws {
        let a = try Self.decayingMatrix()
        let full = try singularValues(of: a)
        let r = try randomizedSVD(a, rank: rank, oversampling: oversampling, powerIterations: powerIterations, seed: 1)
        #expect(r.singularValues.count == rank)
        for i in 0..<rank {
            #expect(abs(r.singularValues[i] - full[i]) <= 1e-3 * full[i], "σ\(i + 1): \(r.singularValues[i]) vs \(full[i])")
        }
        #expect(r.u.shape == Shape(rows: 400, columns: rank))
        #expect(r.vt.shape == Shape(rows: rank, columns: 300))
        #expect(Ref.orthonormalityError(columnsOf: r.u) < 1e-5)
        #expect(Ref.orthonormalityError(columnsOf: r.vt.transposed()) < 1e-5)
    }

    /// More power iterations never hurt much and help a lot near j = r: the worst relative error
    /// over the top 20 with q = 3 is at least 10× smaller than with q = 0.
    @Test func powerIterationsImproveAccuracy() throws {
        let a = try Self.decayingMatrix()
        let full = try singularValues(of: a)
        func worst(_ q: Int) throws -> Float {
            let r = try randomizedSVD(a, rank: 20, powerIterations: q, seed: 2)
            return (0..<20).map { abs(r.singularValues[$0] - full[$0]) / full[$0] }.max()!
        }
        let e0 = try worst(0), e3 = try worst(3)
        #expect(e3 * 10 < e0, "q=0: \(e0), q=3: \(e3)")
        // Estimates never exceed the true values (Rayleigh–Ritz), up to Float rounding.
        let r = try randomizedSVD(a, rank: 20, powerIterations: 1, seed: 2)
        for i in 0..<20 { #expect(r.singularValues[i] <= full[i] * (1 + 1e-5)) }
    }

    @Test func wideMatrixWorks() throws {
        let a = try Self.decayingMatrix(rows: 200, columns: 500, seed: 43)
        let full = try singularValues(of: a)
        let r = try randomizedSVD(a, rank: 8, oversampling: 12, powerIterations: 3, seed: 3)
        for i in 0..<8 { #expect(abs(r.singularValues[i] - full[i]) <= 1e-3 * full[i]) }
        // The truncated reconstruction error is the tail energy (Eckart–Young), up to the estimate error.
        let approx = Ref.reconstruct(u: r.u, sigma: r.singularValues, vt: r.vt)
        let tail = full[8...].reduce(0.0) { $0 + Double($1) * Double($1) }
        let err = Ref.relativeError(approx, a) * a.frobeniusNorm
        #expect(abs(err * err - tail) <= 0.01 * tail)
    }

    @Test func totalEnergyIsExact() throws {
        let a = try Self.decayingMatrix()
        var direct = 0.0
        for x in a.elements { direct += Double(x) * Double(x) }
        let r = try randomizedSVD(a, rank: 10, seed: 9)
        #expect(abs(r.totalEnergy - direct) <= 1e-12 * direct)
        // Σ of all σ² from the full SVD equals it to Float accuracy.
        let fromSpectrum = try singularValues(of: Matrix<Double>(a)).reduce(0.0) { $0 + $1 * $1 }
        #expect(abs(r.totalEnergy - fromSpectrum) <= 1e-10 * direct)
        #expect(r.residualEnergy > 0 && r.capturedEnergy < r.totalEnergy)
    }

    @Test func reproducibleForSeed() throws {
        let a = try Self.decayingMatrix(rows: 120, columns: 90)
        let x = try randomizedSVD(a, rank: 6, powerIterations: 0, seed: 77)
        let y = try randomizedSVD(a, rank: 6, powerIterations: 0, seed: 77)
        let z = try randomizedSVD(a, rank: 6, powerIterations: 0, seed: 78)
        #expect(x.singularValues == y.singularValues)
        #expect(x.u == y.u && x.vt == y.vt)
        #expect(x.singularValues != z.singularValues)
    }

    @Test func sketchCoveringEverythingIsExact() throws {
        let a = Matrix<Double>.gaussian(rows: 30, columns: 20, using: SeededGenerator(seed: 4))
        let r = try randomizedSVD(a, rank: 15, oversampling: 10, seed: 1)
        let full = try singularValues(of: a)
        for i in 0..<15 { #expect(abs(r.singularValues[i] - full[i]) <= 1e-12 * full[0]) }
    }

    @Test func invalidArguments() throws {
        let a = Matrix<Float>(rows: 10, columns: 8)
        #expect(throws: LinearAlgebraError.self) { try randomizedSVD(a, rank: 9, seed: 1) }
        #expect(throws: LinearAlgebraError.self) { try randomizedSVD(a, rank: 2, oversampling: -1, seed: 1) }
        var b = a
        b[0, 0] = .nan
        #expect(throws: LinearAlgebraError.nonFiniteInput(operation: "randomized SVD of 10×8 matrix")) {
            try randomizedSVD(b, rank: 2, seed: 1)
        }
        let zero = try randomizedSVD(a, rank: 0, seed: 1)
        #expect(zero.singularValues.isEmpty && zero.totalEnergy == 0)
    }
}
