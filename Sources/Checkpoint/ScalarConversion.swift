/// Bit-exact conversions between the 16-bit float formats of safetensors and `Float`.
///
/// - BF16: 1 sign, 8 exponent (bias 127), 7 mantissa bits — the top half of a Float32.
/// - F16 (IEEE binary16): 1 sign, 5 exponent (bias 15), 10 mantissa bits; max finite 65504,
///   smallest subnormal 2⁻²⁴.
///
/// Widening (16 → 32 bits) is exact for every input: ±0, subnormals, ±Inf and NaN payloads are
/// preserved. Narrowing (32 → 16 bits) rounds to nearest, ties to even, overflows to ±Inf as IEEE
/// 754 specifies, and maps every NaN to a NaN (the quiet bit is set so a payload living only in
/// the dropped low bits cannot turn into Inf). Implemented on bit patterns so results do not
/// depend on the platform having `Float16`. O(1) each.
public enum ScalarConversion {
    /// BF16 bits → Float: `bits << 16` reinterpreted. Exact.
    @inlinable
    public static func float(fromBFloat16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float → BF16 bits, rounding to nearest with ties to even.
    ///
    /// Formula: `(b + 0x7FFF + ((b >> 16) & 1)) >> 16` on the Float bits `b`; a carry out of the
    /// mantissa increments the exponent, which correctly rounds the largest finite values to Inf.
    @inlinable
    public static func bfloat16Bits(from value: Float) -> UInt16 {
        let b = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: b >> 16) | 0x0040 }
        let rounded = b &+ 0x7FFF &+ ((b >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// F16 bits → Float. Exact: normals re-bias the exponent (15 → 127), subnormals are
    /// `mantissa × 2⁻²⁴` (exact in Float32), Inf/NaN keep their mantissa bits.
    @inlinable
    public static func float(fromFloat16 bits: UInt16) -> Float {
        let sign = UInt32(bits & 0x8000) << 16
        let exponent = UInt32(bits >> 10) & 0x1F
        let mantissa = UInt32(bits & 0x03FF)
        if exponent == 0 {
            // ±0 or subnormal: mantissa × 2⁻²⁴, with mantissa < 2¹⁰ this is exact.
            let magnitude = Float(mantissa) * 0x1p-24
            return Float(bitPattern: sign | magnitude.bitPattern)
        }
        if exponent == 0x1F {
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13))
    }

    /// Float → F16 bits, rounding to nearest with ties to even; |x| ≥ 65520 becomes ±Inf, values
    /// below 2⁻¹⁴ become F16 subnormals (or ±0 at or below 2⁻²⁵).
    @inlinable
    public static func float16Bits(from value: Float) -> UInt16 {
        let b = value.bitPattern
        let sign = UInt16(truncatingIfNeeded: (b >> 16) & 0x8000)
        let magnitude = b & 0x7FFF_FFFF
        if magnitude >= 0x7F80_0000 {
            if magnitude == 0x7F80_0000 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: (magnitude >> 13) & 0x03FF)
        }
        if magnitude >= 0x477F_F000 { return sign | 0x7C00 }  // ≥ 65520: rounds to Inf
        if magnitude >= 0x3880_0000 {
            // Normal in F16: re-bias the exponent (127 → 15) and drop 13 mantissa bits.
            let rebased = magnitude - 0x3800_0000
            let rounded = rebased + 0x0FFF + ((rebased >> 13) & 1)
            return sign | UInt16(truncatingIfNeeded: rounded >> 13)
        }
        if magnitude <= 0x3300_0000 { return sign }  // ≤ 2⁻²⁵: rounds to ±0 (the tie goes to even 0)
        // Subnormal in F16: result = round(m × 2^(e − 126)) units of 2⁻²⁴, with m the 24-bit
        // significand; here 102 ≤ e ≤ 112 so the shift is 14…24 bits.
        let exponent = magnitude >> 23
        let significand = (magnitude & 0x007F_FFFF) | 0x0080_0000
        let shift = 126 - exponent
        var quotient = significand >> shift
        let remainder = significand & ((1 << shift) - 1)
        let half: UInt32 = 1 << (shift - 1)
        if remainder > half || (remainder == half && quotient & 1 == 1) { quotient += 1 }
        return sign | UInt16(truncatingIfNeeded: quotient)
    }
}
