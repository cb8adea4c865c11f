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
        let (k, w, f) = Ziggurat.tables.pointers
        return sigma * standardNormal(k, w, f)
    }

    /// Fills `values` with independent N(0, σ²) draws, in order: two per 64-bit draw (its low
    /// then its high 32 bits: 8 bits of layer, 1 of sign, 23 of abscissa, Float's resolution),
    /// computed in Double and rounded to Float. About twice as fast as ``gaussian(sigma:)`` per value.
    public mutating func fillGaussian(_ values: UnsafeMutableBufferPointer<Float>, sigma: Double = 1) {
        guard let out = values.baseAddress else { return }
        let n = values.count
        // The loop runs on a local copy of the state, which no closure captures (so it stays in
        // registers), written back at the end.
        let (k, w, f) = Ziggurat.tables.pointers32
        var g = self
        var i = 0
        while i + 1 < n {
            let bits = g.next()
            out[i] = Float(sigma * g.standardNormal32(UInt32(truncatingIfNeeded: bits), k, w, f))
            out[i + 1] = Float(sigma * g.standardNormal32(UInt32(truncatingIfNeeded: bits >> 32), k, w, f))
            i += 2
        }
        if i < n { out[i] = Float(sigma * g.standardNormal32(UInt32(truncatingIfNeeded: g.next()), k, w, f)) }
        self = g
    }

    /// Fills `values` with independent N(0, σ²) draws, in order.
    public mutating func fillGaussian(_ values: UnsafeMutableBufferPointer<Double>, sigma: Double = 1) {
        guard let out = values.baseAddress else { return }
        let (k, w, f) = Ziggurat.tables.pointers
        var g = self
        for i in 0..<values.count { out[i] = sigma * g.standardNormal(k, w, f) }
        self = g
    }

    /// The 32-bit ziggurat step of ``fillGaussian(_:sigma:)``: `bits` first, fresh 32-bit draws
    /// (the low half of ``next()``) after a rejection.
    @inline(__always) mutating func standardNormal32(
        _ first: UInt32, _ k: UnsafePointer<UInt32>, _ w: UnsafePointer<Double>, _ f: UnsafePointer<Double>
    ) -> Double {
        var bits = first
        while true {
            let layer = Int(bits & 0xff)
            let negative = bits & 0x100 != 0
            let abscissa = bits >> 9
            let x = Double(abscissa) * w[layer]
            // The sign without a branch: it is a coin flip, which a branch would miss half the time.
            if abscissa < k[layer] { return Double(bitPattern: x.bitPattern | UInt64(bits & 0x100) << 55) }
            if layer == 0 { return negative ? -tail() : tail() }
            if (f[layer - 1] - f[layer]) * uniform() + f[layer] < exp(-0.5 * x * x) { return negative ? -x : x }
            bits = UInt32(truncatingIfNeeded: next())
        }
    }

    /// A draw from the normal tail beyond r (Marsaglia, 1964).
    @inline(__always) mutating func tail() -> Double {
        var a = 0.0, b = 0.0
        repeat {
            a = -log(1 - uniform()) / Ziggurat.r
            b = -log(1 - uniform())
        } while b + b <= a * a
        return Ziggurat.r + a
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
            if abscissa < k[layer] { return Double(bitPattern: x.bitPattern | (bits & 0x100) << 55) }
            if layer == 0 { return negative ? -tail() : tail() }
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
/// and `f[i]` = f(xᵢ); `k32` and `w32` the same for a 23-bit abscissa. Computed once (Marsaglia
/// and Tsang's recurrence, in Double).
final class Ziggurat: Sendable {
    static let r = 3.654_152_885_361_008_8
    static let v = 0.004_928_673_233_99
    static let tables = Ziggurat()

    // Immutable after init, never written through: safe to share.
    nonisolated(unsafe) private let k: UnsafeMutablePointer<UInt64>
    nonisolated(unsafe) private let w: UnsafeMutablePointer<Double>
    nonisolated(unsafe) private let f: UnsafeMutablePointer<Double>
    nonisolated(unsafe) private let k32: UnsafeMutablePointer<UInt32>
    nonisolated(unsafe) private let w32: UnsafeMutablePointer<Double>

    private init() {
        k = .allocate(capacity: 256)
        w = .allocate(capacity: 256)
        f = .allocate(capacity: 256)
        k32 = .allocate(capacity: 256)
        w32 = .allocate(capacity: 256)
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
        for i in 0..<256 {
            k32[i] = UInt32(k[i] >> 29)
            w32[i] = w[i] * 0x1p29
        }
    }

    deinit {
        k.deallocate()
        w.deallocate()
        f.deallocate()
        k32.deallocate()
        w32.deallocate()
    }

    /// The 52-bit tables (k, w, f). They live as long as the process (`tables` is a static).
    var pointers: (UnsafePointer<UInt64>, UnsafePointer<Double>, UnsafePointer<Double>) { (UnsafePointer(k), UnsafePointer(w), UnsafePointer(f)) }

    /// The 23-bit tables (k32, w32, f).
    var pointers32: (UnsafePointer<UInt32>, UnsafePointer<Double>, UnsafePointer<Double>) { (UnsafePointer(k32), UnsafePointer(w32), UnsafePointer(f)) }
}
