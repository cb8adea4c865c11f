import Foundation

/// A least-squares line y ≈ intercept + slope·x (GSL `gsl_fit_linear` / `gsl_fit_wlinear`).
public struct LineFit: Sendable, Hashable {
    public var intercept: Double
    public var slope: Double
    /// Covariance of (intercept, slope): [[c₀₀, c₀₁], [c₀₁, c₁₁]]. Unweighted: scaled by the
    /// residual variance RSS/(n−2); weighted: from the weights (wᵢ = 1/σᵢ²) alone.
    public var covariance00: Double
    public var covariance01: Double
    public var covariance11: Double
    /// Σ wᵢ·(yᵢ − ŷᵢ)² (wᵢ = 1 unweighted).
    public var residualSumOfSquares: Double
    /// 1 − RSS/TSS with TSS = Σ wᵢ·(yᵢ − ȳ_w)² (weighted mean); 1 when TSS = 0 and RSS = 0.
    public var rSquared: Double
    /// Number of points fitted.
    public var count: Int

    /// intercept + slope·x.
    public func predict(_ x: Double) -> Double { intercept + slope * x }
}

/// Fits y ≈ c₀ + c₁·x by least squares, optionally weighted (wᵢ = 1/σᵢ²). O(n).
/// - Throws: ``LinearAlgebraError/invalidArgument(operation:reason:)`` when counts differ, fewer
///   than 2 points, any value is NaN/∞, a weight is negative, or all x are equal.
public func fitLine(x: [Double], y: [Double], weights: [Double]? = nil) throws(LinearAlgebraError) -> LineFit {
    let operation = "line fit"
    guard x.count == y.count, weights.map({ $0.count == x.count }) ?? true else {
        throw .invalidArgument(operation: operation,
                               reason: "x, y\(weights == nil ? "" : ", weights") have different counts (\(x.count), \(y.count)\(weights.map { ", \($0.count)" } ?? ""))")
    }
    guard x.count >= 2 else { throw .invalidArgument(operation: operation, reason: "needs at least 2 points, got \(x.count)") }
    guard x.allSatisfy(\.isFinite), y.allSatisfy(\.isFinite), (weights ?? []).allSatisfy({ $0.isFinite && $0 >= 0 }) else {
        throw .invalidArgument(operation: operation, reason: "x, y and weights must be finite (weights ≥ 0)")
    }
    guard x.contains(where: { $0 != x[0] }) else {
        throw .invalidArgument(operation: operation, reason: "all x values are equal (\(x[0])); slope undefined")
    }
    let raw = GSLFit.linear(x: x, y: y, weights: weights)
    guard raw.status == 0, raw.c0.isFinite, raw.c1.isFinite else {
        throw .invalidArgument(operation: operation, reason: "GSL fit failed (status \(raw.status))")
    }
    let w = weights ?? Array(repeating: 1, count: x.count)
    let wSum = w.reduce(0, +)
    guard wSum > 0 else { throw .invalidArgument(operation: operation, reason: "all weights are zero") }
    let mean = zip(w, y).reduce(0.0) { $0 + $1.0 * $1.1 } / wSum
    let tss = zip(w, y).reduce(0.0) { $0 + $1.0 * ($1.1 - mean) * ($1.1 - mean) }
    let rSquared = tss > 0 ? 1 - raw.sumsq / tss : (raw.sumsq == 0 ? 1 : 0)
    return LineFit(intercept: raw.c0, slope: raw.c1, covariance00: raw.cov00, covariance01: raw.cov01,
                   covariance11: raw.cov11, residualSumOfSquares: raw.sumsq, rSquared: rSquared, count: x.count)
}

/// A power law y ≈ coefficient·x^exponent fitted as a line in log–log space.
public struct PowerLawFit: Sendable, Hashable {
    /// The exponent (the log–log slope); σᵢ ∝ i^exponent for a singular-value tail.
    public var exponent: Double
    /// e^intercept.
    public var coefficient: Double
    /// The underlying fit of ln y = ln c + k·ln x (R² is in log space).
    public var logFit: LineFit

    /// coefficient·x^exponent.
    public func predict(_ x: Double) -> Double { coefficient * exp(exponent * log(x)) }
}

/// Fits y ≈ c·x^k by least squares on (ln x, ln y) (`gsl_fit_linear`, or `gsl_fit_wlinear` with
/// weights in log space). Used for singular-value tails: x = index, y = σ.
/// - Throws: ``LinearAlgebraError/invalidArgument(operation:reason:)`` for non-positive x or y and
///   the cases of ``fitLine(x:y:weights:)``.
public func fitPowerLaw(x: [Double], y: [Double], weights: [Double]? = nil) throws(LinearAlgebraError) -> PowerLawFit {
    guard x.allSatisfy({ $0 > 0 }), y.allSatisfy({ $0 > 0 }) else {
        throw .invalidArgument(operation: "power-law fit", reason: "x and y must be > 0 for a log–log fit")
    }
    let fit = try fitLine(x: x.map { log($0) }, y: y.map { log($0) }, weights: weights)
    return PowerLawFit(exponent: fit.slope, coefficient: exp(fit.intercept), logFit: fit)
}
