import Foundation
import Testing
import LinearAlgebra

@Suite struct LineFitTests {
    @Test func exactLine() throws {
        let x = (0..<20).map { Double($0) * 0.5 }
        let fit = try fitLine(x: x, y: x.map { 2 - 3 * $0 })
        #expect(abs(fit.intercept - 2) < 1e-12)
        #expect(abs(fit.slope + 3) < 1e-12)
        #expect(fit.residualSumOfSquares < 1e-20)
        #expect(abs(fit.rSquared - 1) < 1e-12)
        #expect(fit.count == 20)
        #expect(abs(fit.predict(4) - (-10)) < 1e-12)
    }

    /// Closed form for noisy data: slope = Sxy/Sxx, intercept = ȳ − slope·x̄, var(slope) = s²/Sxx.
    @Test func noisyLineMatchesClosedForm() throws {
        let g = SeededGenerator(seed: 13)
        let x = (1...50).map(Double.init)
        let y = x.map { 1 + 0.5 * $0 + g.gaussian(sigma: 2) }
        let fit = try fitLine(x: x, y: y)
        let mx = x.reduce(0, +) / 50, my = y.reduce(0, +) / 50
        let sxx = x.reduce(0) { $0 + ($1 - mx) * ($1 - mx) }
        let sxy = zip(x, y).reduce(0) { $0 + ($1.0 - mx) * ($1.1 - my) }
        let slope = sxy / sxx, intercept = my - slope * mx
        let rss = zip(x, y).reduce(0) { $0 + pow($1.1 - intercept - slope * $1.0, 2) }
        #expect(abs(fit.slope - slope) < 1e-12)
        #expect(abs(fit.intercept - intercept) < 1e-10)
        #expect(abs(fit.residualSumOfSquares - rss) < 1e-9 * rss)
        #expect(abs(fit.covariance11 - rss / 48 / sxx) < 1e-9 * fit.covariance11)
        #expect(fit.rSquared < 1 && fit.rSquared > 0.5)
    }

    @Test func exactPowerLawRecoversExponent() throws {
        let x = (1...200).map(Double.init)
        let y = x.map { 5 * pow($0, -1.3) }
        let fit = try fitPowerLaw(x: x, y: y)
        #expect(abs(fit.exponent + 1.3) < 1e-12)
        #expect(abs(fit.coefficient - 5) < 1e-10)
        #expect(abs(fit.logFit.rSquared - 1) < 1e-12)
        #expect(abs(fit.predict(10) - 5 * pow(10, -1.3)) < 1e-12)
        // Weighted fit of exact data is exact too.
        let weighted = try fitPowerLaw(x: x, y: y, weights: x.map { 1 / $0 })
        #expect(abs(weighted.exponent + 1.3) < 1e-12)
        #expect(abs(weighted.logFit.rSquared - 1) < 1e-12)
    }

    @Test func badInputThrows() {
        #expect(throws: LinearAlgebraError.self) { try fitLine(x: [1, 2], y: [1]) }
        #expect(throws: LinearAlgebraError.self) { try fitLine(x: [1], y: [1]) }
        #expect(throws: LinearAlgebraError.self) { try fitLine(x: [2, 2, 2], y: [1, 2, 3]) }
        #expect(throws: LinearAlgebraError.self) { try fitLine(x: [1, .nan], y: [1, 2]) }
        #expect(throws: LinearAlgebraError.self) { try fitLine(x: [1, 2], y: [1, 2], weights: [1, -1]) }
        #expect(throws: LinearAlgebraError.self) { try fitPowerLaw(x: [0, 1, 2], y: [1, 2, 3]) }
    }
}
