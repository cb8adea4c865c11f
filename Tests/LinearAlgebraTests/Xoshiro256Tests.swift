import Foundation
import Testing
import LinearAlgebra

@Suite struct Xoshiro256Tests {
    /// The first outputs for seed 1234 from an independent implementation (Python, the reference
    /// C code's arithmetic on SplitMix64's expansion of the seed).
    @Test func matchesTheReferenceStream() {
        var g = Xoshiro256(seed: 1234)
        #expect((0..<4).map { _ in g.next() } == [0xc1cd_ea79_b61c_d477, 0x6c9f_3f8e_0876_7fd5, 0xf42e_33f9_cec8_c13d, 0x01b9_4790_1fad_1954])
    }

    @Test func sameSeedSameStreamOtherSeedOther() {
        var a = Xoshiro256(seed: 9), b = Xoshiro256(seed: 9), c = Xoshiro256(seed: 10)
        let sa = (0..<16).map { _ in a.gaussian() }
        #expect(sa == (0..<16).map { _ in b.gaussian() })
        #expect(sa != (0..<16).map { _ in c.gaussian() })
    }

    /// Moments and tail masses of 2·10⁶ draws against N(0, 1): mean, variance, excess kurtosis
    /// within about five standard errors, P(|x| > 3) and P(|x| > 4) within 6 and 8 of theirs, and
    /// the counts in 0.5-wide bins on [−4, 4] within 6 standard errors (the ziggurat's layers,
    /// wedges and tail each have their own code path).
    /// Float fills take two values per 64-bit draw (23-bit abscissae), Double fills one (52-bit).
    @Test(arguments: [false, true]) func gaussianMatchesTheNormalDistribution(double: Bool) {
        var g = Xoshiro256(seed: 2024)
        let n = 2_000_000
        var values = [Double](repeating: 0, count: n)
        if double {
            values.withUnsafeMutableBufferPointer { g.fillGaussian($0) }
        } else {
            var floats = [Float](repeating: 0, count: n)
            floats.withUnsafeMutableBufferPointer { g.fillGaussian($0) }
            values = floats.map { Double($0) }
        }
        var m1 = 0.0, m2 = 0.0, m4 = 0.0, beyond3 = 0, beyond4 = 0
        var bins = [Int](repeating: 0, count: 16)
        for v in values {
            let x = v
            m1 += x; m2 += x * x; m4 += x * x * x * x
            if abs(x) > 3 { beyond3 += 1 }
            if abs(x) > 4 { beyond4 += 1 }
            let b = Int(((x + 4) / 0.5).rounded(.down))
            if (0..<16).contains(b) { bins[b] += 1 }
        }
        let count = Double(n)
        #expect(abs(m1 / count) < 5 / count.squareRoot())
        #expect(abs(m2 / count - 1) < 5 * (2 / count).squareRoot())
        #expect(abs(m4 / count - 3) < 5 * (96 / count).squareRoot())
        func expectMass(_ observed: Int, _ p: Double, within sigmas: Double) {
            let expected = count * p
            #expect(abs(Double(observed) - expected) < sigmas * expected.squareRoot(), "\(observed) vs \(expected)")
        }
        expectMass(beyond3, erfc(3 / 2.0.squareRoot()), within: 6)
        expectMass(beyond4, erfc(4 / 2.0.squareRoot()), within: 8)
        for b in 0..<16 {
            let lo = -4 + 0.5 * Double(b), hi = lo + 0.5
            expectMass(bins[b], (erf(hi / 2.0.squareRoot()) - erf(lo / 2.0.squareRoot())) / 2, within: 6)
        }
    }

    @Test func uniformIntAndPermutations() {
        var g = Xoshiro256(seed: 3)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[g.uniformInt(below: 7)] += 1 }
        #expect(counts.allSatisfy { abs($0 - 10_000) < 500 })  // 5 standard errors (≈ 93)
        #expect(g.uniformInt(below: 1) == 0)
        let p = g.permutation(1000)
        #expect(p.sorted() == Array(0..<1000) && p != Array(0..<1000))
        #expect(g.permutation(0).isEmpty)
    }
}

@Suite struct RandomOrthogonalTests {
    static let orders = [1, 5, 64, 128, 129, 300, 700]

    /// Q's columns are orthonormal to a few units of the precision (‖QᵀQ − I‖_max, in Double),
    /// and `columns(scaledBy:)` agrees with `applied(to:)` on the identity's columns.
    @Test(arguments: orders) func orthonormalFloat(order: Int) {
        var g = Xoshiro256(seed: UInt64(order))
        let q = RandomOrthogonal<Float>(order: order, using: &g)
        let k = min(order, 40)
        let columns = q.columns(scaledBy: [Float](repeating: 1, count: min(order, 150)))
        #expect(Ref.orthonormalityError(columnsOf: columns) < 50 * Double(Float.ulpOfOne))
        // The column-operation route gives the transpose.
        let rows = q.transposedColumns(scaledBy: [Float](repeating: 1, count: min(order, 150)))
        #expect(Ref.relativeError(rows, columns.transposed()) < 10 * Double(Float.ulpOfOne))
        var identity = Matrix<Float>(rows: order, columns: k)
        for j in 0..<k { identity[j, j] = 1 }
        let applied = q.applied(to: identity)
        #expect(Ref.relativeError(applied, columns.columnSlice(0..<k).matrix) < 10 * Double(Float.ulpOfOne))
    }

    @Test(arguments: [3, 200]) func orthonormalDoubleAndScaled(order: Int) {
        var g = Xoshiro256(seed: 77)
        let q = RandomOrthogonal<Double>(order: order, blockSize: 16, using: &g)
        let unit = q.columns(scaledBy: [Double](repeating: 1, count: order))
        #expect(Ref.orthonormalityError(columnsOf: unit) < 100 * Double.ulpOfOne)
        // Q·diag(s) on k < order columns is Q's first k columns scaled; its transpose likewise.
        let scales = (0..<min(order, 7)).map { Double($0) + 0.5 }
        let scaled = q.columns(scaledBy: scales), rows = q.transposedColumns(scaledBy: scales)
        for j in scales.indices {
            for i in 0..<order {
                #expect(abs(scaled[i, j] - unit[i, j] * scales[j]) < 1e-12)
                #expect(abs(rows[j, i] - unit[i, j] * scales[j]) < 1e-12)
            }
        }
    }

    /// With the default five layers of 32-blocks over 2000 rows, the entries of the columns
    /// look Gaussian: √n·Qᵢⱼ has variance 1 and kurtosis 3 (within 0.15: 200 000 entries give it a
    /// standard error near 0.01; three layers of 64-blocks leave an excess of 1.1 at n = 11008).
    @Test func entriesAreDelocalised() {
        var g = Xoshiro256(seed: 5)
        let n = 2000
        let q = RandomOrthogonal<Double>(order: n, using: &g)
        let columns = q.columns(scaledBy: [Double](repeating: 1, count: 100))
        var m2 = 0.0, m4 = 0.0
        columns.withUnsafeBufferPointer { p in
            for x in p { let y = x * Double(n).squareRoot(); m2 += y * y; m4 += y * y * y * y }
        }
        let count = Double(columns.count)
        #expect(abs(m2 / count - 1) < 1e-9)
        #expect(abs(m4 / count - 3) < 0.15, "kurtosis \(m4 / count)")
    }

    @Test func deterministicForASeed() {
        var a = Xoshiro256(seed: 1), b = Xoshiro256(seed: 1), c = Xoshiro256(seed: 2)
        let ones = [Float](repeating: 1, count: 300)
        let qa = RandomOrthogonal<Float>(order: 300, using: &a).columns(scaledBy: ones)
        #expect(qa == RandomOrthogonal<Float>(order: 300, using: &b).columns(scaledBy: ones))
        #expect(qa != RandomOrthogonal<Float>(order: 300, using: &c).columns(scaledBy: ones))
    }
}
