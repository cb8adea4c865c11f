import Foundation
import LinearAlgebra
import Quantization
import Testing

@Suite struct QuantizerTests {
    /// ŵ recomputed from codes, F16 scales and zeros as a reader of the artifact would.
    static func dequantize(_ q: QuantizedWeight) -> Matrix<Float> {
        Matrix(rows: q.rows, columns: q.columns) { r, c in
            let g = r * q.groupCount + c / q.groupSize
            return Float(q.scales[g]) * (Float(q.codes[r * q.columns + c]) - Float(q.zeros[g]))
        }
    }

    @Test(arguments: 2...8)
    func rtnWithinHalfStep(bits: Int) throws {
        let g = SeededGenerator(seed: UInt64(bits))
        var w = Matrix<Float>.gaussian(rows: 5, columns: 300, sigma: 0.05, using: g)
        for c in 0..<128 { w[4, c] = 0.5 + Float(c % 3) * 0 }   // an all-positive constant group
        for symmetric in [false, true] {
            let q = try RTN(bits: bits, groupSize: 128, symmetric: symmetric).quantize(w)
            #expect(q.groupCount == 3 && q.scales.count == 15 && q.zeros.count == 15)
            #expect(q.codes.allSatisfy { Int($0) < 1 << bits })
            #expect(Self.dequantize(q) == q.dequantized)
            for r in 0..<5 {
                for c in 0..<300 {
                    let step = Double(q.scales[r * 3 + c / 128])
                    #expect(abs(Double(w[r, c]) - Double(q.dequantized[r, c])) <= step / 2 * (1 + 1e-6))
                }
            }
        }
    }

    /// The clipping search against a Float64 brute force of its own rule (every shrink factor's
    /// min–max grid, the least squared error); never worse than min–max in any group, clearly
    /// better at 2–3 bits on heavy-tailed rows, and the same as GPTQ's under H = I (no updates).
    @Test(arguments: [2, 3, 4])
    func clipSearchPicksTheLeastSquaredError(bits: Int) throws {
        let g = SeededGenerator(seed: 40 + UInt64(bits))
        // Student-t-like rows: a Gaussian over a Gaussian scale, so a few values stand out.
        var w = Matrix<Float>.gaussian(rows: 6, columns: 256, sigma: 0.05, using: g)
        let spread = Matrix<Float>.gaussian(rows: 6, columns: 256, sigma: 1, using: g)
        for r in 0..<6 { for c in 0..<256 { w[r, c] *= 0.3 + spread[r, c] * spread[r, c] } }
        let plain = try RTN(bits: bits).quantize(w), searched = try RTN(bits: bits, clipSearch: true).quantize(w)
        #expect(Self.dequantize(searched) == searched.dequantized)
        var totalPlain = 0.0, totalSearched = 0.0
        for r in 0..<6 {
            for group in 0..<2 {
                let columns = (group * 128)..<((group + 1) * 128)
                func error(_ m: Matrix<Float>) -> Double {
                    columns.reduce(0) { $0 + pow(Double(m[r, $1]) - Double(w[r, $1]), 2) }
                }
                // Brute force: the best of the 80 shrunk grids, each quantizing by its own rule in Float64.
                let lo = columns.map { w[r, $0] }.min()!, hi = columns.map { w[r, $0] }.max()!
                var best = Double.infinity
                for step in 0..<80 {
                    let p = Float(100 - step) / 100
                    let l = min(lo * p, 0), h = max(hi * p, 0)
                    var scale = Float16((h - l) / Float((1 << bits) - 1))
                    if Float(scale) < (h - l) / Float((1 << bits) - 1) { scale = scale.nextUp }
                    let s = Double(Float(scale)), z = (Double(-l) / s).rounded(.toNearestOrEven)
                    let e = columns.reduce(0.0) { total, c in
                        let q = min(max((Double(w[r, c]) / s).rounded(.toNearestOrEven) + z, 0), Double((1 << bits) - 1))
                        return total + pow(s * (q - z) - Double(w[r, c]), 2)
                    }
                    best = min(best, e)
                }
                let eSearched = error(searched.dequantized), ePlain = error(plain.dequantized)
                #expect(abs(eSearched - best) <= 1e-4 * best, "row \(r) group \(group): \(eSearched) vs brute force \(best)")
                #expect(eSearched <= ePlain * (1 + 1e-6))
                totalPlain += ePlain
                totalSearched += eSearched
            }
        }
        if bits <= 3 { #expect(totalSearched < 0.9 * totalPlain, "searched \(totalSearched) vs min–max \(totalPlain)") }
        let identity = Matrix<Float>(rows: 256, columns: 256) { $0 == $1 ? 1 : 0 }
        let viaGPTQ = try GPTQ(bits: bits, dampening: 0, clipSearch: true).quantize(w, hessian: identity)
        #expect(viaGPTQ.codes == searched.codes && viaGPTQ.scales == searched.scales)
    }

    @Test func rtnConstantGroupsAreExact() throws {
        var w = Matrix<Float>(rows: 3, columns: 256)
        for c in 0..<256 {
            w[0, c] = 0.5
            w[1, c] = c < 128 ? -0.25 : 3
            w[2, c] = 0
        }
        for bits in [2, 4, 8] {
            let q = try RTN(bits: bits).quantize(w)
            #expect(q.dequantized == w)
            #expect(q.scales[2 * 2] == 0 && q.zeros[2 * 2] == 0)
        }
    }

    @Test func rtnRejectsBadInput() {
        let w = Matrix<Float>(rows: 2, columns: 4, elements: [1, 2, .nan, 4, 5, 6, 7, 8])
        #expect(throws: QuantizationError.nonFiniteInput(what: "weight")) { try RTN(bits: 4).quantize(w) }
        #expect(throws: QuantizationError.self) { try RTN(bits: 9).quantize(Matrix(rows: 1, columns: 1)) }
        #expect(throws: QuantizationError.self) { try RTN(bits: 4, groupSize: 0).quantize(Matrix(rows: 1, columns: 1)) }
    }

    @Test func signAndHalf() throws {
        let g = SeededGenerator(seed: 5)
        let w = Matrix<Float>.gaussian(rows: 4, columns: 50, sigma: 0.1, using: g)
        let s = try Sign().quantize(w)
        for r in 0..<4 {
            let mean = (0..<50).reduce(0.0) { $0 + Double(abs(w[r, $1])) } / 50
            #expect(s.scales[r] == Float16(mean))
            for c in 0..<50 {
                #expect(s.dequantized[r, c] == (w[r, c] >= 0 ? 1 : -1) * Float(Float16(mean)))
                #expect(s.codes[r * 50 + c] == (w[r, c] >= 0 ? 1 : 0))
            }
        }
        let h = try F16().quantize(w)
        #expect(h.dequantized == w.map { Float(Float16($0)) })
        #expect(h.halfValues[1 * 50 + 7] == Float16(w[1, 7]))
        #expect(throws: QuantizationError.self) { try F16().quantize(Matrix(rows: 1, columns: 1, elements: [1e6])) }
    }

    @Test(arguments: [(2, 128), (3, 128), (4, 64), (4, 256)])
    func gptqMatchesFloat64Reference(bits: Int, groupSize: Int) throws {
        let (rows, n) = (8, 256)
        let h = Fixture.correlatedHessian(width: n, tokens: 512, seed: 11)
        let w = Matrix<Float>.gaussian(rows: rows, columns: n, sigma: 0.02, using: SeededGenerator(seed: 12))
        let q = try GPTQ(bits: bits, groupSize: groupSize, blockSize: 128).quantize(w, hessian: h)
        let reference = ReferenceGPTQ.quantize(w, hessian: h, bits: bits, groupSize: groupSize, dampening: 0.01)
        let mismatches = zip(q.codes, reference.codes).filter { $0 != $1 }.count
        #expect(Double(mismatches) <= 0.01 * Double(rows * n), "\(mismatches) of \(rows * n) codes differ")
        #expect(Self.dequantize(q) == q.dequantized)
        // Reconstruction: equal where codes agree, and the same activation error overall.
        var worst = 0.0
        for r in 0..<rows {
            for c in 0..<n where q.codes[r * n + c] == reference.codes[r * n + c] {
                worst = max(worst, abs(Double(q.dequantized[r, c]) - reference.dequantized[r, c]))
            }
        }
        #expect(worst <= 1e-6, "largest difference where codes agree: \(worst)")
        let errorOurs = Fixture.activationError(Matrix<Double>(w), q.dequantized, h)
        let errorReference = Fixture.activationError(Matrix<Double>(w), Matrix<Float>(reference.dequantized), h)
        #expect(abs(errorOurs - errorReference) <= 0.01 * errorReference)
    }

    @Test(arguments: [2, 3, 4])
    func gptqBeatsRTNOnCorrelatedInputs(bits: Int) throws {
        let n = 256
        let h = Fixture.correlatedHessian(width: n, tokens: 1024, directions: 3, strength: 4, outlierEvery: 32, seed: 21)
        let w = Matrix<Float>.gaussian(rows: 32, columns: n, sigma: 0.02, using: SeededGenerator(seed: 22))
        let gptq = try GPTQ(bits: bits).quantize(w, hessian: h)
        let rtn = try RTN(bits: bits).quantize(w)
        let exact = Matrix<Double>(w)
        let eG = Fixture.activationError(exact, gptq.dequantized, h), eR = Fixture.activationError(exact, rtn.dequantized, h)
        #expect(eG < eR, "GPTQ \(eG) vs RTN \(eR)")
        // Act-order is a valid GPTQ too: codes map back through the permutation.
        let ordered = try GPTQ(bits: bits, actOrder: true).quantize(w, hessian: h)
        #expect(ordered.permutation.map { Set($0) == Set(0..<n) } == true)
        #expect(Fixture.activationError(exact, ordered.dequantized, h) < eR)
    }

    @Test func gptqDeadColumnsAndIndefiniteHessians() throws {
        let n = 32
        let g = SeededGenerator(seed: 31)
        let x = Matrix<Float>.gaussian(rows: n, columns: 8, using: g)   // rank 8 of 32
        var h = gram(x)
        for k in 0..<n { h[3, k] = 0; h[k, 3] = 0 }                    // a dead column
        let w = Matrix<Float>.gaussian(rows: 6, columns: n, sigma: 0.1, using: g)
        let q = try GPTQ(bits: 3, groupSize: 16).quantize(w, hessian: h)
        #expect(q.dequantized.isFinite)
        #expect(q.warnings.contains(.deadColumns(count: 1)))
        #expect((0..<6).allSatisfy { q.dequantized[$0, 3] == 0 })

        // Indefinite: a negative shift of the null space that 1% damping cannot repair.
        var bad = gram(x)
        let mean = (0..<n).reduce(0.0) { $0 + Double(bad[$1, $1]) } / Double(n)
        for k in 0..<n { bad[k, k] -= Float(0.03 * mean) }
        let retried = try GPTQ(bits: 3, groupSize: 16).quantize(w, hessian: bad)
        #expect(retried.dequantized.isFinite)
        #expect(retried.warnings.contains { if case .dampingIncreased = $0 { true } else { false } })
        #expect((retried.dampening ?? 0) > 0.01)
        #expect(throws: QuantizationError.self) { try GPTQ(bits: 3).quantize(w, hessian: Matrix(rows: 5, columns: 5)) }
    }
}
