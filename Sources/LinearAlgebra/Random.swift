import CGSL

/// A seeded pseudo-random generator backed by GSL's Mersenne Twister (`gsl_rng_mt19937`).
///
/// The same seed gives the same sequence on every machine, which is what makes plans, synthetic
/// checkpoints and genetic searches reproducible byte for byte. A class because it owns the
/// `gsl_rng` allocation, freed in `deinit`; not `Sendable`: give each task its own generator.
public final class SeededGenerator: RandomNumberGenerator {
    private let rng: UnsafeMutablePointer<gsl_rng>

    /// - Parameter seed: any 64-bit value; GSL takes the low 64 bits as its `unsigned long` seed.
    ///   (GSL maps seed 0 to its default seed 4357, so 0 and 4357 give the same stream.)
    public init(seed: UInt64) {
        guard let rng = gsl_rng_alloc(dp_gsl_rng_mt19937()) else {
            preconditionFailure("gsl_rng_alloc failed: out of memory")
        }
        gsl_rng_set(rng, UInt(seed))
        self.rng = rng
    }

    deinit { gsl_rng_free(rng) }

    /// 64 random bits from two 32-bit MT19937 outputs (high word first).
    public func next() -> UInt64 {
        let high = UInt64(gsl_rng_get(rng)) & 0xFFFF_FFFF
        let low = UInt64(gsl_rng_get(rng)) & 0xFFFF_FFFF
        return high << 32 | low
    }

    /// Uniform on [0, 1) (`gsl_rng_uniform`, 32 bits of resolution).
    public func uniform() -> Double { gsl_rng_uniform(rng) }

    /// Uniform integer in [0, n) (`gsl_rng_uniform_int`); `n` must be in 1...2³².
    public func uniformInt(below n: Int) -> Int {
        precondition(n > 0 && UInt64(n) <= 1 << 32, "uniformInt(below:) needs 0 < n ≤ 2^32, got \(n)")
        return Int(gsl_rng_uniform_int(rng, UInt(n)))
    }

    /// Normal with mean 0 and the given standard deviation (`gsl_ran_gaussian_ziggurat`).
    public func gaussian(sigma: Double = 1) -> Double { gsl_ran_gaussian_ziggurat(rng, sigma) }
}
