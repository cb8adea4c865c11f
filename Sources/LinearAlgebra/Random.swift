/// A seeded pseudo-random generator backed by GSL's Mersenne Twister (`gsl_rng_mt19937`).
///
/// The same seed gives the same sequence on every machine, which is what makes plans, synthetic
/// checkpoints and genetic searches reproducible byte for byte. A class because it owns the
/// `gsl_rng` allocation (freed when the last reference goes); not `Sendable`: give each task its
/// own generator.
public final class SeededGenerator: RandomNumberGenerator {
    private let source: GSLRandomSource

    /// - Parameter seed: any 64-bit value; GSL takes the low 64 bits as its `unsigned long` seed.
    ///   (GSL maps seed 0 to its default seed 4357, so 0 and 4357 give the same stream.)
    public init(seed: UInt64) {
        source = GSLRandomSource(seed: seed)
    }

    /// 64 random bits from two 32-bit MT19937 outputs (high word first).
    public func next() -> UInt64 {
        let high = UInt64(source.next32())
        let low = UInt64(source.next32())
        return high << 32 | low
    }

    /// Uniform on [0, 1) (`gsl_rng_uniform`, 32 bits of resolution).
    public func uniform() -> Double { source.uniform() }

    /// Uniform integer in [0, n) (`gsl_rng_uniform_int`); `n` must be in 1...2³².
    public func uniformInt(below n: Int) -> Int {
        precondition(n > 0 && UInt64(n) <= 1 << 32, "uniformInt(below:) needs 0 < n ≤ 2^32, got \(n)")
        return source.uniformInt(below: n)
    }

    /// Normal with mean 0 and the given standard deviation (`gsl_ran_gaussian_ziggurat`).
    public func gaussian(sigma: Double = 1) -> Double { source.gaussian(sigma: sigma) }
}

extension Matrix {
    /// A `rows×columns` matrix of independent N(0, σ²) entries drawn in column-major order from
    /// `generator` (ziggurat, in Double, then rounded to `Scalar`). Deterministic for a seed.
    public static func gaussian(rows: Int, columns: Int, sigma: Double = 1, using generator: SeededGenerator) -> Matrix {
        let values = (0..<(rows * columns)).map { _ in generator.gaussian(sigma: sigma) }
        return Matrix(Matrix<Double>(rows: rows, columns: columns, elements: values))
    }
}
