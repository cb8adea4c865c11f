/// MT19937 (Matsumoto & Nishimura 1998) with GSL's seeding and GSL's uniform draws, in Swift.
///
/// The genetic search's only source of randomness. It reproduces `gsl_rng_mt19937` word for word
/// (seeded by `gsl_rng_set`: the low 32 bits of the seed, 0 meaning 4357, Knuth's multiplier
/// 1812433253 for the rest of the state), `gsl_rng_uniform` (a word / 2³²) and
/// `gsl_rng_uniform_int` (a word / ⌊(2³² − 1) / n⌋, redrawn while ≥ n), so plans stay byte-identical
/// to the ones searched with GSL's generator while a user who only plans links no numeric library.
/// The tests check the stream against GSL's for many seeds.
///
/// A value type: each search owns its generator (not shared across tasks).
public struct MersenneTwister: RandomNumberGenerator, Sendable {
    private static let n = 624, m = 397
    private static let upperMask: UInt32 = 0x8000_0000, lowerMask: UInt32 = 0x7fff_ffff
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// - Parameter seed: GSL takes the low 32 bits; 0 stands for GSL's default seed 4357.
    public init(seed: UInt64) {
        var s = UInt32(truncatingIfNeeded: seed)
        if s == 0 { s = 4357 }
        state[0] = s
        for i in 1..<Self.n {
            let previous = state[i - 1]
            state[i] = 1_812_433_253 &* (previous ^ (previous >> 30)) &+ UInt32(i)
        }
        index = Self.n
    }

    /// The next 32-bit output (`gsl_rng_get`).
    public mutating func next32() -> UInt32 {
        if index >= Self.n { regenerate() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c_5680
        y ^= (y << 15) & 0xefc6_0000
        y ^= y >> 18
        return y
    }

    /// 64 random bits from two outputs, high word first (as LinearAlgebra's `SeededGenerator`).
    public mutating func next() -> UInt64 {
        let high = UInt64(next32())
        return high << 32 | UInt64(next32())
    }

    /// Uniform on [0, 1) with 32 bits of resolution (`gsl_rng_uniform`).
    public mutating func uniform() -> Double { Double(next32()) / 4_294_967_296.0 }

    /// Uniform integer in [0, n) (`gsl_rng_uniform_int`); `n` must be in 1...2³² − 1.
    public mutating func uniformInt(below n: Int) -> Int {
        precondition(n > 0 && UInt64(n) <= UInt64(UInt32.max), "uniformInt(below:) needs 0 < n < 2^32, got \(n)")
        let scale = UInt32.max / UInt32(n)
        while true {
            let k = Int(next32() / scale)
            if k < n { return k }
        }
    }

    private mutating func regenerate() {
        for k in 0..<Self.n {
            let y = (state[k] & Self.upperMask) | (state[(k + 1) % Self.n] & Self.lowerMask)
            state[k] = state[(k + Self.m) % Self.n] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_b0df)
        }
        index = 0
    }
}
