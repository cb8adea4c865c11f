import Foundation
import Testing
@testable import Reporting

@Suite struct KneeTests {
    /// y = 10^−(u + √(u² + c²)) with u = log₁₀(x / x₀): on log–log axes a hyperbola with asymptotes
    /// v = 0 (small x: error ≈ 1) and v = −2u (large x: error ∝ x⁻²). Sampled symmetrically in u
    /// over [−a, a], its chord has slope −1, and the tangent is parallel to it where
    /// v′(u) = −(1 + u/√(u² + c²)) = −1, i.e. at u = 0: the knee is x₀, exactly.
    static func hyperbola(x0: Double, c: Double, a: Double, count: Int) -> [(x: Double, y: Double)] {
        (0..<count).map { i in
            let u = -a + 2 * a * Double(i) / Double(count - 1)
            return (x0 * pow(10, u), pow(10, -(u + (u * u + c * c).squareRoot())))
        }
    }

    @Test(arguments: [(1.0 / 16, 0.3, 9), (1.0 / 16, 0.1, 9), (0.02, 0.5, 31), (3.0, 0.2, 101)])
    func kneeOfAClosedFormCurveIsWhereTheTangentIsParallelToTheChord(x0: Double, c: Double, count: Int) throws {
        let points = Self.hyperbola(x0: x0, c: c, a: 0.6, count: count)
        let k = try #require(Knee.index(of: points, logX: true, logY: true))
        #expect(k == count / 2)
        #expect(abs(points[k].x / x0 - 1) < 1e-12)
        // The answer does not depend on the order the points come in.
        let shuffled = Array(points.reversed())
        #expect(Knee.index(of: shuffled, logX: true, logY: true) == count - 1 - count / 2)
    }

    @Test func aPowerLawHasNoKneeOnLogLogAxes() {
        let points = (0..<9).map { i in let x = pow(2, Double(i)) / 64; return (x: x, y: 0.3 * pow(x, -1.7)) }
        #expect(Knee.index(of: points, logX: true, logY: true) == nil)
        // On linear axes the same curve bends.
        #expect(Knee.index(of: points, logX: false, logY: false) != nil)
    }

    @Test func tooFewOrUnusablePointsHaveNoKnee() {
        #expect(Knee.index(of: [], logX: true, logY: true) == nil)
        #expect(Knee.index(of: [(1, 1), (2, 0.1)], logX: true, logY: true) == nil)
        // The same x three times (a baseline that ignores the budget): no curve.
        #expect(Knee.index(of: [(0.0625, 0.3), (0.0625, 0.3), (0.0625, 0.3)], logX: true, logY: true) == nil)
        // Non-positive values cannot be shown on a log axis and are ignored, not a knee.
        let points = Self.hyperbola(x0: 0.1, c: 0.3, a: 0.6, count: 7) + [(0.1, 0), (-1, 0.5), (.nan, 1)]
        #expect(Knee.index(of: points, logX: true, logY: true) == 3)
    }
}

@Suite struct ColorScaleTests {
    /// A cell's colour ranks its value even in grey: luminance is strictly monotone along each
    /// built-in scale (sampled finely), increasing for viridis, decreasing for the error scale.
    @Test func builtInScalesAreMonotoneInLuminance() {
        let samples = (0...200).map { Double($0) / 200 }
        let viridis = samples.map { ColorScale.viridis.color(at: $0).luminance }
        let magma = samples.map { ColorScale.magmaReversed.color(at: $0).luminance }
        #expect(zip(viridis, viridis.dropFirst()).allSatisfy { $0 < $1 })
        #expect(zip(magma, magma.dropFirst()).allSatisfy { $0 > $1 })
    }

    @Test func endsClampAndHexRoundTrips() {
        #expect(ColorScale.viridis.color(at: -1) == ColorScale.viridis.stops.first)
        #expect(ColorScale.viridis.color(at: 2) == ColorScale.viridis.stops.last)
        #expect(ColorScale.viridis.color(at: .nan) == ColorScale.viridis.stops.first)
        #expect(ColorScale.viridis.color(at: 1).hex == "#fde725")
        #expect(RGB(hex: "#21918c")?.hex == "#21918c")
        #expect(RGB(hex: "21918c") == nil && RGB(hex: "#zz918c") == nil)
    }

    @Test func logTicksFallBackToMantissasInsideADecade() {
        #expect(Axis.logTicks(1e-4, 1).map(\.label) == ["1e-4", "1e-3", "1e-2", "1e-1", "1"])
        #expect(Axis.logTicks(0.01, 0.5).map(\.label) == ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5"])
        #expect(Axis.logTicks(0.065, 0.13).map(\.value).allSatisfy { $0 >= 0.065 && $0 <= 0.13 })
        #expect(Axis.logTicks(0.065, 0.13).count >= 3)
        #expect(Axis.logTicks(1e-6, 1e-4).map(\.label) == ["1e-6", "2e-6", "5e-6", "1e-5", "2e-5", "5e-5", "1e-4"])
        // Under a decade (a colour bar from 0.07 to 0.4): the decade stays, neighbours too close go.
        let narrow = Axis.logTicks(0.07, 0.4)
        #expect(narrow.map(\.label) == ["0.07", "0.1", "0.2", "0.3", "0.4"])
        let logs = narrow.map { log10($0.value) }
        #expect(zip(logs, logs.dropFirst()).allSatisfy { $1 - $0 >= (log10(0.4) - log10(0.07)) / 7 })
    }

    @Test func escapingMakesTextSafeInElementsAndAttributes() {
        #expect(SVG.escape("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;")
    }
}
