@testable import Analysis
import LinearAlgebra
import Optimizer
@testable import Quantization
import Testing

/// Error feedback (``SegmentOrder/feedback``, ``MatrixQuantizer``): its two least-squares solves
/// against brute-force Float64 least squares, what it guarantees against the paper's order, and
/// the measurement's split of its error.
@Suite struct FeedbackTests {
    // MARK: Brute-force references

    /// min ‖A x − b‖² by Householder QR in Float64 (`A` m × n, m ≥ n, full column rank).
    static func leastSquares(_ a: Matrix<Double>, _ b: [Double]) throws -> [Double] {
        let f = try qr(a)
        let qtb = try multiply(f.q, transpose: true, vector: b)
        return try solveTriangular(f.r, Matrix(rows: qtb.count, columns: 1, elements: qtb), triangle: .upper).elements
    }

    /// A small random problem: T (h_out × h_in), X (h_in × n), V̂ᵀ (c × h_in), σ̂ (F16 values),
    /// all Float-representable; H = X Xᵀ, G = V̂ᵀ H V̂ and C = T H V̂ computed in Float64 and rounded.
    struct Problem {
        let hOut = 6, hIn = 9, c = 3, tokens = 14
        var t: Matrix<Double>, x: Matrix<Double>, vt: Matrix<Double>, s: [Float]
        var g: Matrix<Float>, cMatrix: Matrix<Float>, hu: Matrix<Float>

        init(seed: UInt64) {
            let gen = SeededGenerator(seed: seed)
            t = Matrix<Double>(Matrix<Float>.gaussian(rows: 6, columns: 9, using: gen))
            x = Matrix<Double>(Matrix<Float>.gaussian(rows: 9, columns: 14, using: gen))
            vt = Matrix<Double>(Matrix<Float>.gaussian(rows: 3, columns: 9, using: gen))
            s = Matrix<Float>.gaussian(rows: 3, columns: 1, using: gen).elements.map { Float(Float16(abs($0) + 0.5)) }
            let h = Self.product(x, false, x, true)
            let hv = Self.product(h, false, vt, true)
            let gd = Self.product(vt, false, hv, false), sd = s.map(Double.init)
            g = Matrix<Float>(gd)
            cMatrix = Matrix<Float>(Self.product(t, false, hv, false))
            hu = Matrix<Float>(rows: 3, columns: 3) { i, j in Float(sd[i] * sd[j] * gd[i, j]) }
        }

        static func product(_ a: Matrix<Double>, _ ta: Bool, _ b: Matrix<Double>, _ tb: Bool) -> Matrix<Double> {
            try! multiply(a, transposeA: ta, b, transposeB: tb)
        }

        /// Z = S V̂ᵀ X (c × n).
        var z: Matrix<Double> {
            var sv = vt
            for j in 0..<hIn { for i in 0..<c { sv[i, j] *= Double(s[i]) } }
            return Self.product(sv, false, x, false)
        }
    }

    /// U* = argmin ‖(T − U S V̂ᵀ) X‖² + λ Σᵢ Dᵢᵢ ‖uᵢ − pᵢ‖² (D = diag(Z Zᵀ)), against QR least
    /// squares over the h_out·c unknowns with the damping as extra rows √(λ Dᵢᵢ)(uᵢ − pᵢ).
    @Test(arguments: [(UInt64(1), 0.0), (2, 0.0), (3, 0.01), (4, 0.3)])
    func leastSquaresTargetMatchesBruteForce(seed: UInt64, dampening: Double) throws {
        let p = Problem(seed: seed)
        let prior = Matrix<Float>.gaussian(rows: p.hOut, columns: p.c, using: SeededGenerator(seed: seed + 100))
        let z = p.z, tx = Problem.product(p.t, false, p.x, false)
        let d = (0..<p.c).map { i in (0..<p.tokens).reduce(0.0) { $0 + z[i, $1] * z[i, $1] } }
        let unknowns = p.hOut * p.c   // vec(U): U[r, i] at r + i·h_out
        let equations = p.hOut * p.tokens + (dampening > 0 ? unknowns : 0)
        var a = Matrix<Double>(rows: equations, columns: unknowns)
        var b = [Double](repeating: 0, count: equations)
        for r in 0..<p.hOut {
            for t in 0..<p.tokens {
                let row = r + t * p.hOut
                for i in 0..<p.c { a[row, r + i * p.hOut] = z[i, t] }
                b[row] = tx[r, t]
            }
        }
        if dampening > 0 {
            for i in 0..<p.c {
                for r in 0..<p.hOut {
                    let row = p.hOut * p.tokens + r + i * p.hOut, w = (dampening * d[i]).squareRoot()
                    a[row, r + i * p.hOut] = w
                    b[row] = w * Double(prior[r, i])
                }
            }
        }
        let reference = try Self.leastSquares(a, b)
        var warnings: [QuantizationWarning] = []
        let u = try #require(leastSquaresTarget(c: p.cMatrix, scale: p.s, hu: p.hu, prior: prior, dampening: dampening, warnings: &warnings))
        #expect(warnings.isEmpty)
        var diff = 0.0, norm = 0.0
        for i in 0..<p.c { for r in 0..<p.hOut {
            let e = Double(u[r, i]) - reference[r + i * p.hOut]
            diff += e * e
            norm += reference[r + i * p.hOut] * reference[r + i * p.hOut]
        } }
        #expect((diff / norm).squareRoot() < 1e-4, "seed \(seed): relative difference \((diff / norm).squareRoot())")
    }

    /// σ̃ = argmin ‖(T − Û diag(σ) V̂ᵀ) X‖² + λ Σᵢ Dᵢᵢ (σᵢ − σ̂ᵢ)², from the normal equations
    /// ((ÛᵀÛ) ∘ G) σ = diag(Ûᵀ C), against QR least squares over the columns vec(ûᵢ v̂ᵢᵀ X).
    @Test(arguments: [(UInt64(5), 0.0), (6, 0.0), (7, 0.01), (8, 0.3)])
    func sigmaRefitMatchesBruteForce(seed: UInt64, dampening: Double) throws {
        let p = Problem(seed: seed)
        let uHat = Matrix<Float>.gaussian(rows: p.hOut, columns: p.c, using: SeededGenerator(seed: seed + 200))
        let vx = Problem.product(p.vt, false, p.x, false), tx = Problem.product(p.t, false, p.x, false)
        let equations = p.hOut * p.tokens + (dampening > 0 ? p.c : 0)
        var a = Matrix<Double>(rows: equations, columns: p.c)
        var b = [Double](repeating: 0, count: equations)
        for r in 0..<p.hOut {
            for t in 0..<p.tokens {
                for i in 0..<p.c { a[r + t * p.hOut, i] = Double(uHat[r, i]) * vx[i, t] }
                b[r + t * p.hOut] = tx[r, t]
            }
        }
        if dampening > 0 {
            for i in 0..<p.c {
                let d = (0..<(p.hOut * p.tokens)).reduce(0.0) { $0 + a[$1, i] * a[$1, i] }
                let w = (dampening * d).squareRoot()
                a[p.hOut * p.tokens + i, i] = w
                b[p.hOut * p.tokens + i] = w * Double(p.s[i])
            }
        }
        let reference = try Self.leastSquares(a, b)
        var warnings: [QuantizationWarning] = []
        let sigma = try #require(refitSingularValues(u: uHat, g: p.g, c: p.cMatrix, prior: p.s, dampening: dampening, warnings: &warnings))
        #expect(warnings.isEmpty)
        for i in 0..<p.c {
            #expect(abs(sigma[i] - reference[i]) <= 1e-4 * max(1, abs(reference[i])), "seed \(seed) σ\(i): \(sigma[i]) vs \(reference[i])")
        }
    }

    // MARK: Guarantees against the paper's order

    static let hessian = Fixture.correlatedHessian(width: 160, tokens: 640, seed: 41)

    /// The activation error of U diag(σ) V̂ᵀ against `target`, in Float64.
    static func error(_ target: Matrix<Double>, u: Matrix<Float>, sigma: [Double], vt: Matrix<Float>, _ h: Matrix<Float>?) -> Double {
        let approximation = Matrix<Float>(rows: u.rows, columns: vt.columns) { r, col in
            Float((0..<u.columns).reduce(0.0) { $0 + Double(u[r, $1]) * sigma[$1] * Double(vt[$1, col]) })
        }
        return Fixture.activationError(target, approximation, h)
    }

    /// With the same V̂ (both orders quantize V the same way), before the F16 rounding of U* and σ̃:
    /// (1) U's least-squares target never does worse than the SVD's U (the paper's target), and
    /// (2) the σ refit never does worse than σ̂ with the quantized Û. Every width, calibrated and
    /// data-free, with and without vectors after the segment (whose target then includes them).
    @Test(arguments: [16, 8, 4, 3, 2, 1])
    func leastSquaresAndRefitNeverIncreaseTheError(bits: Int) throws {
        for (seed, h) in [(UInt64(42), Self.hessian), (43, nil)] as [(UInt64, Matrix<Float>?)] {
            let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: seed)
            for segment in [Segment(start: 0, end: 64, bits: bits), Segment(start: 0, end: 24, bits: bits)] {
                var quantizer = try MatrixQuantizer(f, segments: [segment], hessian: h)
                let work = try quantizer.nextWork()
                let fb = try #require(work.feedback)
                let q = work.result
                let target = Fixture.product(f, 0..<64)
                let s = fb.sigmaHat.map(Double.init)
                let uSegment = f.u.columnSlice(0..<segment.end).matrix
                let paperTarget = Self.error(target, u: uSegment, sigma: s, vt: q.vt.dequantized, h)
                let leastSquares = Self.error(target, u: fb.uStar, sigma: s, vt: q.vt.dequantized, h)
                #expect(leastSquares <= paperTarget * (1 + 1e-5), "\(bits) bits, seed \(seed), \(segment): U* \(leastSquares) > U \(paperTarget)")
                // The refit, unrounded: C = T H V̂ from the Float64 target.
                let c = Matrix<Float>(try multiply(target, Matrix<Double>(fb.vHatH), transposeB: true))   // T (H V̂)
                var warnings: [QuantizationWarning] = []
                let refit = try #require(refitSingularValues(u: q.u.dequantized, g: fb.g, c: c, prior: fb.sigmaHat, dampening: 0.01,
                                                            warnings: &warnings))
                let before = Self.error(target, u: q.u.dequantized, sigma: s, vt: q.vt.dequantized, h)
                let after = Self.error(target, u: q.u.dequantized, sigma: refit, vt: q.vt.dequantized, h)
                #expect(after <= before * (1 + 1e-5), "\(bits) bits, seed \(seed), \(segment): refit \(after) > \(before)")
            }
        }
    }

    /// A plan of 16-bit segments reproduces the kept part: each segment's target holds its own
    /// vectors and the earlier residual, not the later segments' vectors (fitting those too, a
    /// greedy pass of a joint problem, left 6000× the paper's error here). Feedback is no worse
    /// than the paper, and with vectors dropped never worse than dropping them exactly.
    @Test func sixteenBitPlansStayExact() throws {
        let h = Self.hessian
        let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: 42)
        let full = Fixture.product(f, 0..<64)
        let energy = Fixture.activationError(full, Matrix<Float>(rows: 96, columns: 160), h)
        for plan in [[Segment(start: 0, end: 20, bits: 16), Segment(start: 20, end: 64, bits: 16)],
                     [Segment(start: 0, end: 2, bits: 16), Segment(start: 2, end: 10, bits: 16), Segment(start: 10, end: 40, bits: 16)]] {
            let kept = plan.last!.end
            let feedback = reconstruct(try quantizeSegments(f, segments: plan, hessian: h), rows: 96, columns: 160)
            let paper = reconstruct(try quantizeSegments(f, segments: plan, hessian: h, options: SegmentOptions(order: .paper)),
                                    rows: 96, columns: 160)
            let dropped = Fixture.activationError(full, Matrix<Float>(Fixture.product(f, 0..<kept)), h)
            let e = Fixture.activationError(full, feedback, h), ePaper = Fixture.activationError(full, paper, h)
            #expect(e <= ePaper * (1 + 1e-3) + 1e-9 * energy, "plan to \(kept): feedback \(e), paper \(ePaper)")
            #expect(e <= dropped + 1e-6 * energy, "plan to \(kept): feedback \(e), exact kept part \(dropped)")
        }
    }

    /// Observed, not a theorem (GPTQ and RTN are heuristics): on these seeded cases a quantized
    /// plan's total activation error with feedback is below the paper's, calibrated and
    /// data-free, with and without dropped vectors. A failure names the seed and plan.
    @Test(arguments: [UInt64(42), 44, 45])
    func quantizedPlansImproveOnSeededCases(seed: UInt64) throws {
        for h in [Self.hessian, nil] as [Matrix<Float>?] {
            let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: seed)
            let full = Fixture.product(f, 0..<64)
            for plan in [[Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 20, bits: 3), Segment(start: 20, end: 64, bits: 2)],
                         [Segment(start: 0, end: 4, bits: 4), Segment(start: 4, end: 40, bits: 2), Segment(start: 40, end: 50, bits: 1)]] {
                let e = Fixture.activationError(full, reconstruct(try quantizeSegments(f, segments: plan, hessian: h), rows: 96, columns: 160), h)
                let ePaper = Fixture.activationError(
                    full, reconstruct(try quantizeSegments(f, segments: plan, hessian: h, options: SegmentOptions(order: .paper)), rows: 96, columns: 160), h)
                #expect(e < ePaper, "seed \(seed), \(h == nil ? "H = I" : "H"), plan to \(plan.last!.end): feedback \(e), paper \(ePaper)")
            }
        }
    }

    // MARK: Measurement and API

    /// The measurement's split around U* sums to the segment's error, at every width: within
    /// 2·10⁻⁴, 10⁻³ at 16 bits (an error of about 10⁻⁷ of the vectors' energy, where the Float32
    /// products' rounding shows; with one OpenBLAS thread, as the CLI runs, 5·10⁻⁴ was measured).
    @Test(arguments: [16, 8, 3, 2, 1])
    func feedbackAttributionSumsToTheSegmentError(bits: Int) throws {
        for h in [Self.hessian, nil] as [Matrix<Float>?] {
            let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: 42)
            var quantizer = try MatrixQuantizer(f, segments: [Segment(start: 0, end: 64, bits: bits)], hessian: h)
            let work = try quantizer.nextWork()
            let errors = attributeFeedback(work.result, factors: f, vtH: try applyHessian(f.v.transposed(), h), feedback: try #require(work.feedback))
            let actual = Fixture.activationError(Fixture.product(f, 0..<64), work.result.reconstruction, h)
            let sum = errors.reduce(0, +)
            #expect(abs(sum - actual) <= (bits == 16 ? 1e-3 : 2e-4) * actual + 1e-9, "\(bits) bits: attributed \(sum) vs actual \(actual)")
        }
    }

    /// The feedback order's dropped part: with no damping, Σ_{i≥K} wᵢ is the residual of the
    /// dropped vectors' activations after least squares on the kept vectors' inputs V_Kᵀ X,
    /// computed directly in Float64 (QR of the inputs); with damping it is larger, at most σᵢ² gᵢ.
    @Test func droppedWeightsAreTheLeastSquaresResidual() throws {
        let gen = SeededGenerator(seed: 46)
        let x = Matrix<Float>.gaussian(rows: 160, columns: 400, using: gen)
        var xc = x
        for j in 0..<400 { for i in 0..<160 { xc[i, j] += 2 * x[(i + 1) % 160, j] } }   // correlated inputs
        let h = gram(xc)
        let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: 47)
        let w = droppedErrorWeights(f, hessian: h, order: .feedback, dampening: 0)
        let damped = droppedErrorWeights(f, hessian: h, order: .feedback, dampening: 0.01)
        let paper = droppedErrorWeights(f, hessian: h, order: .paper, dampening: 0.01)
        let x64 = Matrix<Double>(xc)
        for k in [0, 1, 10, 40, 63] {
            // Tail activations Y = ΔW_[K, r) X and the kept inputs Z = V_Kᵀ X (K × n).
            let y = try multiply(Fixture.product(f, k..<64), x64)
            var residual = y
            if k > 0 {
                let z = try multiply(Matrix<Double>(f.v.columnSlice(0..<k).matrix), transposeA: true, x64)
                let q = try qr(z.transposed()).q                      // n × K, orthonormal basis of Z's rows
                let projected = try multiply(try multiply(y, q), q, transposeB: true)
                residual = Matrix(rows: y.rows, columns: y.columns) { i, j in y[i, j] - projected[i, j] }
            }
            let direct = residual.elements.reduce(0) { $0 + $1 * $1 }
            let model: Double = w[k...].reduce(0, +), modelDamped: Double = damped[k...].reduce(0, +)
            let modelPaper: Double = paper[k...].reduce(0, +)
            let tolerance: Double = 1e-4 * modelPaper
            #expect(abs(model - direct) <= tolerance, "K = \(k): \(model) vs direct \(direct)")
            let low: Double = model * (1 - 1e-6), high: Double = modelPaper * (1 + 1e-6)
            #expect(modelDamped >= low && modelDamped <= high, "K = \(k)")
        }
        let (totalPaper, total): (Double, Double) = (paper.reduce(0, +), w.reduce(0, +))
        #expect(abs(totalPaper - total) <= 1e-4 * totalPaper)
    }

    @Test func segmentsOutOfSequenceAreRefused() throws {
        let f = Fixture.factors(rows: 12, columns: 10, rank: 6, hessian: nil, seed: 1)
        #expect(throws: QuantizationError.self) {
            try MatrixQuantizer(f, segments: [Segment(start: 0, end: 2, bits: 8), Segment(start: 3, end: 5, bits: 2)], hessian: nil)
        }
    }

    /// A Hessian of rank 20 of 160 with no damping: U's 30 × 30 system is singular, the damping
    /// is raised (each retry a warning) and the result is finite.
    @Test func singularSystemsRaiseTheDamping() throws {
        let h = gram(Matrix<Float>.gaussian(rows: 160, columns: 20, using: SeededGenerator(seed: 43)))
        let f = Fixture.factors(rows: 96, columns: 160, rank: 30, hessian: h, seed: 44)
        let q = try quantizeSegment(f, segment: Segment(start: 0, end: 30, bits: 16), hessian: h, options: SegmentOptions(dampening: 0))
        #expect(q.reconstruction.isFinite)
        #expect(q.feedbackWarnings.contains { if case .feedbackDampingIncreased = $0 { true } else { false } }, "\(q.feedbackWarnings)")
        // An indefinite system: one retry with more damping, then the fallback.
        var warnings: [QuantizationWarning] = []
        #expect(DampedCholesky(Matrix<Double>(rows: 2, columns: 2, elements: [1, 2, 2, 1]), dampening: 0, system: "test",
                               warnings: &warnings, maxRetries: 1) == nil)
        #expect(warnings == [.feedbackDampingIncreased(system: "test", dampening: 0, retriedWith: 0.01),
                             .feedbackFellBack(system: "test", reason: "not positive definite even with dampening 0.01")])
    }
}
