import CGSL

// The only file (with GSLErrors.swift) that calls GSL.

/// Owns one `gsl_rng` (MT19937). A class for the `deinit`; not Sendable (GSL generators are not
/// thread-safe).
final class GSLRandomSource {
    private let rng: UnsafeMutablePointer<gsl_rng>

    init(seed: UInt64) {
        guard let rng = gsl_rng_alloc(dp_gsl_rng_mt19937()) else {
            preconditionFailure("gsl_rng_alloc failed: out of memory")
        }
        gsl_rng_set(rng, UInt(seed))
        self.rng = rng
    }

    deinit { gsl_rng_free(rng) }

    /// 32 random bits (`gsl_rng_get`).
    func next32() -> UInt32 { UInt32(truncatingIfNeeded: gsl_rng_get(rng)) }
    func uniform() -> Double { gsl_rng_uniform(rng) }
    func uniformInt(below n: Int) -> Int { Int(gsl_rng_uniform_int(rng, UInt(n))) }
    func gaussian(sigma: Double) -> Double { gsl_ran_gaussian_ziggurat(rng, sigma) }
}

enum GSLFit {
    /// Result of `gsl_fit_linear`/`gsl_fit_wlinear`: y ≈ c0 + c1·x.
    struct Raw {
        var c0 = 0.0, c1 = 0.0, cov00 = 0.0, cov01 = 0.0, cov11 = 0.0, sumsq = 0.0
        var status: Int32 = 0
    }

    /// Ordinary (weights == nil) or weighted least squares line fit; counts already validated.
    static func linear(x: [Double], y: [Double], weights: [Double]?) -> Raw {
        _ = GSLErrorHandling.disabled
        var r = Raw()
        let n = x.count
        if let weights {
            r.status = gsl_fit_wlinear(x, 1, weights, 1, y, 1, n, &r.c0, &r.c1, &r.cov00, &r.cov01, &r.cov11, &r.sumsq)
        } else {
            r.status = gsl_fit_linear(x, 1, y, 1, n, &r.c0, &r.c1, &r.cov00, &r.cov01, &r.cov11, &r.sumsq)
        }
        return r
    }
}
