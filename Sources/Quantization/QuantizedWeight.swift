import LinearAlgebra

/// A quantized `rows × columns` weight (input dimension = columns, as in y = W x), in the form
/// the artifact stores it, with its dequantized value.
///
/// Layouts (all row-major, row = output index):
/// - ``codes``: `rows·columns` codes, code of (r, c) at `r·columns + c`, each `< 2^bits`. Empty
///   at 16 bits. Pack them with ``BitPacking``.
/// - ``scales`` and ``zeros`` (k = 2…8): one per (row, group), group g covering columns
///   `[g·groupSize, min((g+1)·groupSize, columns))`, at `r·groupCount + g`. ŵ = scale·(q − zero);
///   the zero is an integer in 0…2^k − 1 stored in F16 (exact).
///   With act-order the groups are consecutive in ``permutation`` order (see ``GPTQ``).
/// - k = 1: ``scales`` has one F16 scale per row; ŵ = scale·(2q − 1) (code 1 = +, 0 = −).
/// - k = 16: ``halfValues`` holds the F16 values (row-major), no codes or scales.
public struct QuantizedWeight: Sendable {
    public var rows: Int
    public var columns: Int
    /// 1…8 or 16.
    public var bits: Int
    /// Columns per group for k = 2…8 (≥ columns means one group per row); `columns` for 1 bit;
    /// 0 at 16 bits.
    public var groupSize: Int
    public var codes: [UInt8]
    public var scales: [Float16]
    public var zeros: [Float16]
    public var halfValues: [Float16]
    /// Act-order: `permutation[p]` is the original column processed at position p; nil otherwise.
    public var permutation: [Int]?
    /// ŵ, `rows × columns` column-major, computed from the stored (F16) parameters exactly as a
    /// reader of the artifact would.
    public var dequantized: Matrix<Float>
    /// The damping actually used (fraction of mean(diag H)); nil for quantizers without a Hessian.
    public var dampening: Double?
    public var warnings: [QuantizationWarning]

    package init(rows: Int, columns: Int, bits: Int, groupSize: Int, codes: [UInt8], scales: [Float16], zeros: [Float16],
                 halfValues: [Float16], permutation: [Int]?, dequantized: Matrix<Float>, dampening: Double?,
                 warnings: [QuantizationWarning]) {
        self.rows = rows
        self.columns = columns
        self.bits = bits
        self.groupSize = groupSize
        self.codes = codes
        self.scales = scales
        self.zeros = zeros
        self.halfValues = halfValues
        self.permutation = permutation
        self.dequantized = dequantized
        self.dampening = dampening
        self.warnings = warnings
    }

    /// Number of groups per row (k = 2…8).
    public var groupCount: Int { groupSize > 0 ? (columns + groupSize - 1) / groupSize : 0 }
}

/// The asymmetric (or symmetric) min–max grid of one group: ŵ = scale·(q − zero), q ∈ 0…maxq.
///
/// - Range: lo = min(min w, 0), hi = max(max w, 0) (the reference GPTQ quantizer's convention:
///   the grid contains 0, so the zero point is an integer in 0…maxq, exact in F16); symmetric:
///   lo = −hi' , hi = hi' with hi' = max(|lo|, hi), zero = (maxq + 1)/2.
/// - scale = (hi − lo)/maxq rounded *up* to the next F16, so that stored and computed agree and
///   every value of the group lies within scale/2 of the grid; zero = round(−lo/scale).
/// - A constant group (min w = max w = c, asymmetric) gets scale = F16(|c|), zero = 0 (c > 0) or
///   1 (c < 0), so it is reproduced exactly when c is an F16 value; c = 0 gives scale 0, zero 0.
struct GroupGrid {
    var scale: Float
    var zero: Float
    let maxq: Float

    init(minimum: Float, maximum: Float, bits: Int, symmetric: Bool) throws(QuantizationError) {
        maxq = Float((1 << bits) - 1)
        if minimum == maximum, !symmetric {
            let c = minimum
            guard c != 0 else { scale = 0; zero = 0; return }
            let s = Float16(abs(c))
            guard s.isFinite else { throw .notRepresentableInF16(what: "quantization scale", value: Double(c)) }
            scale = Float(s)
            zero = c > 0 ? 0 : 1
            return
        }
        var lo = Swift.min(minimum, 0), hi = Swift.max(maximum, 0)
        if symmetric {
            let m = Swift.max(-lo, hi)
            lo = -m
            hi = m
        }
        guard hi > lo else { scale = 0; zero = symmetric ? ((maxq + 1) / 2).rounded(.down) : 0; return }
        scale = try Self.roundUpToHalf((hi - lo) / maxq)
        // |−lo/scale| ≤ maxq ≤ 255: roundToEven is exact there, except that it turns −0 (lo = 0) into +0,
        // which the stored F16 zero would show.
        let z = -lo / scale
        zero = symmetric ? ((maxq + 1) / 2).rounded(.down) : z == 0 ? z : roundToEven(z)
    }

    /// A grid with these scale and zero.
    init(scale: Float, zero: Float, maxq: Float) {
        self.scale = scale
        self.zero = zero
        self.maxq = maxq
    }

    /// The smallest F16 value ≥ x (x > 0), by the bits of x (F16 conversions are library calls on
    /// baseline x86-64): for a normal F16, x's Float32 mantissa rounded up to 10 bits (a carry
    /// moves to the exponent); below 2⁻¹⁴, the next multiple of 2⁻²⁴ (F16's subnormal spacing).
    /// The same value as Float16(x), then `nextUp` when it fell below x (tested).
    static func roundUpToHalf(_ x: Float) throws(QuantizationError) -> Float {
        guard x <= 65504 else { throw .notRepresentableInF16(what: "quantization scale", value: Double(x)) }
        if x >= 0x1p-14 {
            let bits = x.bitPattern
            let dropped: UInt32 = (1 << 13) - 1
            return bits & dropped == 0 ? x : Float(bitPattern: (bits & ~dropped) + (1 << 13))
        }
        return (x * 0x1p24).rounded(.up) * 0x1p-24
    }

    /// The code of `w`: clamp(round(w/scale) + zero, 0, maxq) (ties to even); `zero` when scale = 0.
    ///
    /// Rounds with ``roundToEven(_:)`` (two additions) rather than `rounded(.toNearestOrEven)`, which
    /// baseline x86-64 code compiles to a call of `rintf`: the same code for every input (see there).
    @inline(__always) func code(_ w: Float) -> Float {
        guard scale > 0 else { return zero }
        return Swift.min(Swift.max(roundToEven(w / scale) + zero, 0), maxq)
    }

    @inline(__always) func value(ofCode q: Float) -> Float { scale * (q - zero) }
}

/// 1.5·2²³: adding and subtracting it rounds a Float of magnitude below 2²² to the nearest integer,
/// ties to even (the sum lies in (2²³, 2²⁴), where the spacing of Floats is 1, and the constant is even).
let roundingMagic: Float = 12_582_912

/// round(x) ties to even for |x| < 2²², by (x + 1.5·2²³) − 1.5·2²³. Beyond, off by at most 2 with the
/// right sign, which the clamp of a code to [0, 2^bits − 1] (bits ≤ 8) makes irrelevant: every
/// caller clamps. Exact IEEE additions (Swift never reassociates them).
@inline(__always) func roundToEven(_ x: Float) -> Float { (x + roundingMagic) - roundingMagic }

/// ``roundToEven(_:)`` on eight values.
@inline(__always) func roundToEven(_ x: SIMD8<Float>) -> SIMD8<Float> {
    let magic = SIMD8<Float>(repeating: roundingMagic)
    return (x + magic) - magic
}

func validateBits(_ bits: Int, allowed: ClosedRange<Int> = 2...8) throws(QuantizationError) {
    guard allowed.contains(bits) else {
        throw .invalidOption(option: "bits", reason: "must be in \(allowed.lowerBound)…\(allowed.upperBound), got \(bits)")
    }
}

func validateFinite(_ w: Matrix<Float>, _ what: String) throws(QuantizationError) {
    guard w.isFinite else { throw .nonFiniteInput(what: what) }
}
