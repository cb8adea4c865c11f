@testable import Analysis
import LinearAlgebra
import Optimizer
import Quantization
import Testing

@Suite struct SegmentTests {
    static let hessian = Fixture.correlatedHessian(width: 160, tokens: 640, seed: 41)
    static let factors = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: hessian, seed: 42)

    /// The split around the SVD's U sums to the segment's error in either order (it holds for any
    /// Û and σ̂); the paper's order keeps σ̂ = F16(σ).
    @Test(arguments: [1, 2, 4, 8], SegmentOrder.allCases)
    func attributionSumsToTheSegmentError(bits: Int, order: SegmentOrder) throws {
        let f = Self.factors, h = Self.hessian
        for hessian in [h, nil] as [Matrix<Float>?] {
            let q = try quantizeSegment(f, segment: Segment(start: 0, end: 64, bits: bits), hessian: hessian,
                                        options: SegmentOptions(order: order))
            let attributed = try attributedErrors(of: q, factors: f, hessian: hessian)
            let actual = Fixture.activationError(Fixture.product(f, 0..<64), q.reconstruction, hessian)
            let sum = attributed.reduce(0, +)
            #expect(abs(sum - actual) <= 2e-4 * actual, "attributed \(sum) vs actual \(actual)")
            #expect(q.vt.rows == 64 && q.vt.columns == 160 && q.u.rows == 96 && q.u.columns == 64)
            if order == .paper { #expect(q.singularValues == (0..<64).map { Float16(f.singularValues[$0]) }) }
        }
    }

    @Test func segmentsOfAPlanReconstructTogether() throws {
        let f = Self.factors
        let segments = [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 10, bits: 3), Segment(start: 10, end: 40, bits: 2)]
        let parts = try segments.map { s throws(QuantizationError) in try quantizeSegment(f, segment: s, hessian: Self.hessian) }
        let total = reconstruct(parts, rows: 96, columns: 160)
        var expected = Matrix<Float>(rows: 96, columns: 160)
        for p in parts { let r = p.reconstruction; for c in 0..<160 { for i in 0..<96 { expected[i, c] += r[i, c] } } }
        #expect(Fixture.activationError(Matrix<Double>(expected), total, nil) <= 1e-10)
        #expect(throws: QuantizationError.self) {
            try quantizeSegment(f, segment: Segment(start: 60, end: 70, bits: 4), hessian: Self.hessian)
        }
    }

    @Test func rankDeficientHessianStaysFinite() throws {
        let g = SeededGenerator(seed: 43)
        let h = gram(Matrix<Float>.gaussian(rows: 160, columns: 20, using: g))   // rank 20 of 160
        let f = Fixture.factors(rows: 96, columns: 160, rank: 30, hessian: h, seed: 44)
        for bits in [2, 3, 1, 16] {
            let q = try quantizeSegment(f, segment: Segment(start: 0, end: 30, bits: bits), hessian: h,
                                        options: SegmentOptions(dampening: 0))
            #expect(q.reconstruction.isFinite)
            #expect(try attributedErrors(of: q, factors: f, hessian: h).allSatisfy(\.isFinite))
        }
    }

    @Test(arguments: SegmentOrder.allCases) func errorNeverGrowsWithMoreBits(order: SegmentOrder) throws {
        let table = try measureQuantizationErrors(Self.factors, hessian: Self.hessian, options: MeasurementOptions(order: order))
        let sums = [1, 2, 3, 4, 8, 16].map { k in table[k]!.reduce(0, +) }
        for (a, b) in zip(sums, sums.dropFirst()) { #expect(b <= a, "\(sums)") }
        #expect(table[16]!.allSatisfy { abs($0) < 1e-5 }, "\(table[16]!.max()!)")
        // Per-vector values may be negative (GPTQ's compensation, split by columns of δU), the
        // per-matrix total is positive.
        #expect(table[2]!.reduce(0, +) > 0)
    }

    /// The measured table predicts a Delta-CoMe-style plan (8+3+2 bits, the rest dropped, and a
    /// plan that keeps every vector) within 20% of the actual activation error in the paper's order. With error
    /// feedback the last segment also absorbs what it can of the dropped vectors' activations,
    /// which the error model counts in full: a plan that drops vectors is then predicted from
    /// above (on this strongly correlated H, at 28× its actual error; 0.86–1.2× on the
    /// development pair), a plan that keeps every vector within 20%.
    @Test(arguments: SegmentOrder.allCases) func predictionOfAPlanWithin20Percent(order: SegmentOrder) throws {
        let f = Self.factors, h = Self.hessian
        let table = try measureQuantizationErrors(f, hessian: h, options: MeasurementOptions(order: order, bits: [8, 3, 2]))
        let plans = [
            [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 12, bits: 3), Segment(start: 12, end: 40, bits: 2)],
            [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: 20, bits: 3), Segment(start: 20, end: 64, bits: 2)],
        ]
        for plan in plans {
            var predicted = 0.0
            for i in 0..<64 {
                let w = Double(f.singularValues[i]) * Double(f.singularValues[i]) * f.inputEnergy[i]
                if let s = plan.first(where: { $0.start <= i && i < $0.end }) { predicted += w * table[s.bits]![i] } else { predicted += w }
            }
            let parts = try quantizeSegments(f, segments: plan, hessian: h, options: SegmentOptions(order: order))
            let actual = Fixture.activationError(Fixture.product(f, 0..<64), reconstruct(parts, rows: 96, columns: 160), h)
            if order == .feedback && plan.last!.end < 64 {
                #expect(actual < predicted, "predicted \(predicted), actual \(actual)")
            } else if order == .feedback {
                // The searched clipping ranges of U's short segments fit them better than those of
                // the one long segment per width the table measures: predicted from above here
                // (1.36× on this H; 0.85–1.15× on the fixture and the development pair).
                #expect(actual <= predicted * 1.05 && actual >= predicted * 0.6, "\(order): predicted \(predicted), actual \(actual)")
            } else {
                #expect(abs(predicted - actual) <= 0.2 * actual, "\(order): predicted \(predicted), actual \(actual)")
            }
            // The quantized part alone, for the record of the approximation's quality.
            let kept = plan.last!.end
            let quantizedActual = Fixture.activationError(Fixture.product(f, 0..<kept), reconstruct(parts, rows: 96, columns: 160), h)
            var quantizedPredicted = 0.0
            for s in plan { for i in s.start..<s.end {
                quantizedPredicted += Double(f.singularValues[i] * f.singularValues[i]) * f.inputEnergy[i] * table[s.bits]![i]
            } }
            print("\(order), plan to \(kept): quantized part predicted \(quantizedPredicted), actual \(quantizedActual); total predicted \(predicted), actual \(actual)")
        }
    }
}
