import Foundation

/// A small, fast seeded generator: xoshiro256++ (Blackman and Vigna, 2019), its 256-bit state
/// filled from the seed by SplitMix64, with Gaussian draws by the Marsaglia–Tsang ziggurat.
///
/// For bulk draws (synthetic checkpoints: hundreds of millions of values), where
/// ``SeededGenerator`` (GSL's MT19937 behind a C call per value) is too slow. A value type: copy
/// it and the copy repeats the same stream. Every output is defined by this file's integer
/// arithmetic and the ziggurat tables (computed once with `exp`/`log` in Double), so a seed gives
/// the same stream on every machine. Period 2²⁵⁶ − 1; passes BigCrush (its authors' tests).
public struct Xoshiro256: RandomNumberGenerator, Sendable {
    @usableFromInline var s0, s1, s2, s3: UInt64

    /// - Parameter seed: any 64-bit value (SplitMix64 expands it, so nearby seeds give unrelated streams).
    public init(seed: UInt64) {
        var x = seed
        func splitMix() -> UInt64 {
            x &+= 0x9e37_79b9_7f4a_7c15
            var z = x
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
        (s0, s1, s2, s3) = (splitMix(), splitMix(), splitMix(), splitMix())
    }

    /// The next 64 random bits.
    @inlinable @inline(__always) public mutating func next() -> UInt64 {
        let sum = s0 &+ s3
        let result = (sum << 23 | sum >> 41) &+ s0
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = s3 << 45 | s3 >> 19
        return result
    }

    /// Uniform on [0, 1) with 53 random bits.
    @inlinable public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform integer in [0, n), exactly (Lemire's multiply-shift with rejection); `n` ≥ 1.
    @inlinable public mutating func uniformInt(below n: Int) -> Int {
        precondition(n > 0, "uniformInt(below:) needs n > 0, got \(n)")
        let bound = UInt64(n)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold { product = next().multipliedFullWidth(by: bound) }
        }
        return Int(product.high)
    }

    /// A uniformly random permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, uniformInt(below: i + 1)) }
        return p
    }

    /// Normal with mean 0 and standard deviation `sigma`: the 256-layer ziggurat (Marsaglia and
    /// Tsang, 2000) on one 64-bit draw (8 bits of layer, 1 of sign, 52 of abscissa) about 99% of
    /// the time; the wedges and the tail beyond r ≈ 3.654 take a few uniforms more.
    public mutating func gaussian(sigma: Double = 1) -> Double {
        Ziggurat.tables.withTables { k, w, f in sigma * standardNormal(k, w, f) }
    }

    /// Fills `values` with independent N(0, σ²) draws (computed in Double, rounded to Float), in order.
    public mutating func fillGaussian(_ values: UnsafeMutableBufferPointer<Float>, sigma: Double = 1) {
        guard let out = values.baseAddress else { return }
        Ziggurat.tables.withTables { k, w, f in
            for i in 0..<values.count { out[i] = Float(sigma * standardNormal(k, w, f)) }
        }
    }

    /// Fills `values` with independent N(0, σ²) draws, in order.
    public mutating func fillGaussian(_ values: UnsafeMutableBufferPointer<Double>, sigma: Double = 1) {
        guard let out = values.baseAddress else { return }
        Ziggurat.tables.withTables { k, w, f in
            for i in 0..<values.count { out[i] = sigma * standardNormal(k, w, f) }
        }
    }

    @inline(__always) mutating func standardNormal(
        _ k: UnsafePointer<UInt64>, _ w: UnsafePointer<Double>, _ f: UnsafePointer<Double>
    ) -> Double {
        while true {
            let bits = next()
            let layer = Int(bits & 0xff)
            let negative = bits & 0x100 != 0
            let abscissa = bits >> 12
            let x = Double(abscissa) * w[layer]
            if abscissa < k[layer] { return negative ? -x : x }
            if layer == 0 {
                // The tail beyond r (Marsaglia, 1964).
                var a = 0.0, b = 0.0
                repeat {
                    a = -log(1 - uniform()) / Ziggurat.r
                    b = -log(1 - uniform())
                } while b + b <= a * a
                return negative ? -(Ziggurat.r + a) : Ziggurat.r + a
            }
            if (f[layer - 1] - f[layer]) * uniform() + f[layer] < exp(-0.5 * x * x) { return negative ? -x : x }
        }
    }
}

extension Matrix {
    /// A `rows×columns` matrix of independent N(0, σ²) entries drawn in column-major order from
    /// `generator` (ziggurat in Double, rounded to `Scalar`). Deterministic for a seed.
    public static func gaussian(rows: Int, columns: Int, sigma: Double = 1, using generator: inout Xoshiro256) -> Matrix {
        var m = Matrix(rows: rows, columns: columns)
        m.withUnsafeMutableBufferPointer { p in
            switch Scalar.precision {
            case .single: generator.fillGaussian(floatBuffer(p), sigma: sigma)
            case .double: generator.fillGaussian(doubleBuffer(p), sigma: sigma)
            }
        }
        return m
    }
}

/// The ziggurat's 256 layers for the standard normal density f(x) = exp(−x²/2): layer i covers
/// [0, xᵢ] with xᵢ decreasing from the base strip (layer 0, which includes the tail) to 0; every
/// layer has area v. `k[i]` is the fast-accept threshold on the 52-bit abscissa, `w[i]` its scale
/// and `f[i]` = f(xᵢ). Computed once (Marsaglia and Tsang's recurrence, in Double).
final class Ziggurat: Sendable {
    static let r = 3.654_152_885_361_008_8
    static let v = 0.004_928_673_233_99
    static let tables = Ziggurat()

    // Immutable after init, never written through: safe to share.
    nonisolated(unsafe) private let k: UnsafeMutablePointer<UInt64>
    nonisolated(unsafe) private let w: UnsafeMutablePointer<Double>
    nonisolated(unsafe) private let f: UnsafeMutablePointer<Double>

    private init() {
        k = .allocate(capacity: 256)
        w = .allocate(capacity: 256)
        f = .allocate(capacity: 256)
        let scale = 0x1p52
        var x = Self.r, previous = x
        let q = Self.v / exp(-0.5 * x * x)
        k[0] = UInt64(x / q * scale)
        k[1] = 0
        w[0] = q / scale
        w[255] = x / scale
        f[0] = 1
        f[255] = exp(-0.5 * x * x)
        for i in stride(from: 254, through: 1, by: -1) {
            x = (-2 * log(Self.v / x + exp(-0.5 * x * x))).squareRoot()
            k[i + 1] = UInt64(x / previous * scale)
            previous = x
            f[i] = exp(-0.5 * x * x)
            w[i] = x / scale
        }
    }

    deinit {
        k.deallocate()
        w.deallocate()
        f.deallocate()
    }

    @inline(__always) func withTables<R>(
        _ body: (UnsafePointer<UInt64>, UnsafePointer<Double>, UnsafePointer<Double>) throws -> R
    ) rethrows -> R {
        try body(k, w, f)
    }
}
