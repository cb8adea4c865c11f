import Testing
import LinearAlgebra

@Suite struct SeededGeneratorTests {
    @Test func sameSeedSameStream() {
        let a = SeededGenerator(seed: 42), b = SeededGenerator(seed: 42), c = SeededGenerator(seed: 43)
        let sa = (0..<16).map { _ in a.next() }
        #expect(sa == (0..<16).map { _ in b.next() })
        #expect(sa != (0..<16).map { _ in c.next() })
    }

    @Test func gaussianMoments() {
        let g = SeededGenerator(seed: 7)
        let n = 200_000
        var sum = 0.0, sumSq = 0.0
        for _ in 0..<n { let x = g.gaussian(sigma: 2); sum += x; sumSq += x * x }
        let mean = sum / Double(n), variance = sumSq / Double(n) - mean * mean
        // Standard errors: mean 2/√n ≈ 0.0045, variance 4·√(2/n) ≈ 0.013; allow 5 of each.
        #expect(abs(mean) < 0.025)
        #expect(abs(variance - 4) < 0.065)
    }

    @Test func uniformIntStaysInRange() {
        let g = SeededGenerator(seed: 1)
        var seen = Set<Int>()
        for _ in 0..<1000 { let k = g.uniformInt(below: 7); #expect((0..<7).contains(k)); seen.insert(k) }
        #expect(seen.count == 7)
    }
}
