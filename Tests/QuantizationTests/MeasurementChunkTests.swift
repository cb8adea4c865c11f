@testable import Analysis
import LinearAlgebra
import Optimizer
@testable import Quantization
import Foundation
import Testing

/// The measurement pass's chunks (``MatrixMeasurement``): its Gram-based split against the segment's
/// actual error and against the direct splits it replaces.
@Suite struct MeasurementChunkTests {
    static let hessian = Fixture.correlatedHessian(width: 160, tokens: 640, seed: 41)

    /// A chunk's split sums to the activation error of its own quantized segment, computed
    /// directly in Float64 from the reconstruction, in both orders, calibrated and data-free, for
    /// chunks at the start, in the middle and at the end of the stored vectors: within 2·10⁻⁴,
    /// 10⁻³ at 16 bits (there N comes from a Float32 triangular solve with the factor of H_d⁻¹,
    /// whose conditioning shows on errors of 10⁻⁷ of the vectors' energy).
    @Test(arguments: [16, 8, 4, 2, 1], SegmentOrder.allCases)
    func chunkSplitSumsToTheSegmentError(bits: Int, order: SegmentOrder) throws {
        for h in [Self.hessian, nil] as [Matrix<Float>?] {
            let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: 42)
            let prepared = try h.map { h throws(QuantizationError) in try PreparedHessian(hessian: h) }
            let measurement = try MatrixMeasurement(f, hessian: h, prepared: prepared, options: SegmentOptions(order: order), chunkSize: 22)
            let (all, chunks) = try measurement.run(bits: bits, keep: true)
            #expect(chunks.map(\.range) == [0..<22, 22..<43, 43..<64])
            #expect(all == chunks.flatMap(\.errors))
            for chunk in chunks {
                let (range, errors) = (chunk.range, chunk.errors)
                let actual = Fixture.activationError(Fixture.product(f, range), chunk.reconstruction, h)
                let sum = errors.reduce(0, +)
                #expect(errors.count == range.count)
                #expect(abs(sum - actual) <= (bits == 16 ? 1e-3 : 2e-4) * actual + 1e-9,
                        "\(order) \(bits) bits, \(h == nil ? "H = I" : "H"), \(range): split \(sum) vs actual \(actual)")
            }
        }
    }

    /// One chunk of all the stored vectors is the old measurement: the same V̂ (bit for bit: GPTQ
    /// quantizes the rows of Vᵀ independently) and the split of the direct computation
    /// (``attributedErrors(of:factors:hessian:)``, ``attributeFeedback(_:factors:vtH:feedback:)``),
    /// whose V̂ᵀ H products the chunk avoids: per vector within 10⁻⁴ of the segment's error where
    /// both quantize U alike (the paper's order, always here). With error feedback, U* solves a
    /// least-squares system whose Float32 Grams are formed differently (V̂ᵀ H V̂ against
    /// K − Q − Qᵀ + N), and GPTQ or F16 rounding of U* can turn those last-bit differences into
    /// other codes for many entries (a third of Û's at 16 bits, most at 1 bit, measured): then
    /// the totals, two quantizations of nearly the same U*, agree within 3% (25% at 16 bits, whose
    /// whole error is the F16 rounding of U*: 19% measured with one OpenBLAS thread, under 10%
    /// with two, whose sums round differently).
    @Test(arguments: [16, 8, 3, 2, 1], SegmentOrder.allCases)
    func wholeChunkMatchesTheDirectSplit(bits: Int, order: SegmentOrder) throws {
        for h in [Self.hessian, nil] as [Matrix<Float>?] {
            let f = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: h, seed: 42)
            let options = SegmentOptions(order: order)
            let prepared = try h.map { h throws(QuantizationError) in try PreparedHessian(hessian: h) }
            let measurement = try MatrixMeasurement(f, hessian: h, prepared: prepared, options: options, chunkSize: 64)
            let (errors, chunks) = try measurement.run(bits: bits, keep: true)
            let segment = try #require(chunks.first)
            var quantizer = try MatrixQuantizer(f, segments: [Segment(start: 0, end: 64, bits: bits)], hessian: h, options: options,
                                                preparedV: prepared)
            let work = try quantizer.nextWork()
            let direct = switch order {
            case .paper: try attributedErrors(of: work.result, factors: f, hessian: h)
            case .feedback: attributeFeedback(work.result, factors: f, vtH: try applyHessian(f.v.transposed(), h), feedback: try #require(work.feedback))
            }
            #expect(chunks.count == 1 && segment.vHatT == work.result.vt.dequantized)
            let total = direct.reduce(0, +), label = "\(order) \(bits) bits, \(h == nil ? "H = I" : "H")"
            if segment.u == work.result.u.dequantized && segment.singularValues == work.result.singularValues {
                let worst = zip(errors, direct).map { abs($0 - $1) }.max()!
                #expect(worst <= 1e-4 * total, "\(label): worst difference \(worst) of \(total)")
            } else {
                #expect(order == .feedback, "\(label): Û differs")
                #expect(abs(errors.reduce(0, +) - total) <= (bits == 16 ? 0.25 : 0.03) * total, "\(label): \(errors.reduce(0, +)) vs \(total)")
            }
        }
    }

    /// GPTQ's scaled errors give its loss: (W − Ŵ) H_d (W − Ŵ)ᵀ = E Eᵀ for the damped H it factors,
    /// dead columns included (H_jj = 0, their weights zeroed).
    @Test func gptqErrorsGiveItsLoss() throws {
        var h = Self.hessian
        for j in 0..<160 { h[7, j] = 0; h[j, 7] = 0 }   // a dead input
        let w = Matrix<Float>.gaussian(rows: 12, columns: 160, using: SeededGenerator(seed: 48))
        let prepared = try PreparedHessian(hessian: h, dampening: 0.01)
        let (q, e) = try GPTQ(bits: 3, clipSearch: true).quantizeKeepingErrors(w, prepared: prepared, keep: true)
        let errors = try #require(e)
        var d = Matrix<Double>(w)
        for j in 0..<160 { for i in 0..<12 { d[i, j] = (j == 7 ? 0 : d[i, j]) - Double(q.dequantized[i, j]) } }
        var hd = Matrix<Double>(h)
        for j in 0..<160 { hd[j, j] = (j == 7 ? 1 : hd[j, j]) + Double(prepared.lambda) }
        let loss = try multiply(try multiply(d, hd), d, transposeB: true)
        let ee = gram(Matrix<Double>(errors))
        for i in 0..<12 { for j in 0..<12 { #expect(abs(loss[i, j] - ee[i, j]) <= 1e-4 * (loss[i, i] * loss[j, j]).squareRoot()) } }
    }

    @Test func chunksCoverTheRankEvenly() {
        for (rank, size) in [(0, 4), (1, 256), (192, 256), (256, 256), (257, 256), (307, 128), (2985, 256)] {
            let chunks = measurementChunks(rank: rank, size: size)
            #expect(chunks.count == (rank + size - 1) / size)
            #expect(chunks.first?.lowerBound ?? 0 == 0 && chunks.last?.upperBound ?? 0 == rank)
            #expect(zip(chunks, chunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            let lengths = chunks.map(\.count)
            #expect((lengths.max() ?? 0) - (lengths.min() ?? 0) <= 1 && lengths.allSatisfy { $0 <= size && $0 > 0 })
        }
    }
}

@Suite struct HalfRoundingTests {
    /// The smallest F16 ≥ x by Float16's own conversion, as GroupGrid computed it before.
    static func reference(_ x: Float) -> Float? {
        var h = Float16(x)
        if Float(h) < x { h = h.nextUp }
        return h.isFinite ? Float(h) : nil
    }

    /// ``GroupGrid/roundUpToHalf(_:)`` by bits against Float16's conversion: every Float around
    /// F16 values, binade and subnormal edges, and a seeded sweep over twelve decades.
    @Test func roundUpToHalfMatchesFloat16() {
        var xs: [Float] = [1e-9, 0x1p-24, 0x1p-25, 0x1p-14, 65504, 65505, 65519, 65520, 70000, 1, 3, 0.1, 1e-5]
        var h = Float16(0x1p-24)
        while h.isFinite {
            let f = Float(h)
            xs += [f, f.nextUp, f.nextDown, f * 1.0001]
            h = h.nextUp
        }
        var state: UInt64 = 2026
        for _ in 0..<200_000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Double(state >> 11) / Double(1 << 53)
            xs.append(Float(pow(10, -9 + 14 * u)))
        }
        for x in xs where x > 0 {
            let fast = try? GroupGrid.roundUpToHalf(x)
            #expect(fast == Self.reference(x), "x = \(x)")
        }
    }
}

@Suite struct ClipSearchLaneTests {
    /// The scalar search as it was: every step in order, Float codes and values, Double sums, the
    /// first least error.
    static func reference(_ w: Matrix<Float>, row r: Int, columns: Range<Int>, bits: Int) throws -> (Float, Float) {
        let values = columns.map { w[r, $0] }
        let lo = values.min()!, hi = values.max()!
        var best: (Float, Float)?, bestError = Double.infinity
        for step in 0..<80 {
            let p = Float(100 - step) / 100
            let grid = try GroupGrid(minimum: lo * p, maximum: hi * p, bits: bits, symmetric: false)
            var e = 0.0
            for x in values {
                let q: Float = grid.scale > 0 ? min(max((x / grid.scale).rounded(.toNearestOrEven) + grid.zero, 0), grid.maxq) : grid.zero
                let d = Double(grid.scale * (q - grid.zero) - x)
                e += d * d
            }
            if e < bestError { bestError = e; best = (grid.scale, grid.zero) }
        }
        return best!
    }

    /// Rows in blocks of eight (SIMD lanes, hinted order, early stops) choose exactly the grids of
    /// the scalar search, on heavy-tailed rows, constant rows, zero rows and a partial last block.
    @Test(arguments: [2, 3, 4, 8]) func lanesChooseTheScalarGrids(bits: Int) throws {
        let g = SeededGenerator(seed: 60 + UInt64(bits))
        let rows = 43
        var w = Matrix<Float>.gaussian(rows: rows, columns: 200, sigma: 0.05, using: g)
        let spread = Matrix<Float>.gaussian(rows: rows, columns: 200, sigma: 1, using: g)
        for r in 0..<rows { for c in 0..<200 { w[r, c] *= 0.3 + spread[r, c] * spread[r, c] } }
        for c in 0..<200 { w[5, c] = 0; w[11, c] = 0.125; w[17, c] = c < 128 ? -0.5 : w[17, c] }
        let q = try RTN(bits: bits, groupSize: 128, clipSearch: true).quantize(w)
        for r in 0..<rows {
            for (group, columns) in [0..<128, 128..<200].enumerated() {
                let (scale, zero) = try Self.reference(w, row: r, columns: columns, bits: bits)
                #expect(Float(q.scales[r * 2 + group]) == scale && Float(q.zeros[r * 2 + group]) == zero, "row \(r), group \(group)")
            }
        }
    }
}
