import Testing
@testable import Checkpoint

@Suite("BF16 and F16 conversions")
struct ScalarConversionTests {
    // MARK: BF16 → Float

    @Test("BF16 bit patterns widen exactly", arguments: [
        (UInt16(0x0000), UInt32(0x0000_0000)),  // +0
        (0x8000, 0x8000_0000),  // -0
        (0x3F80, 0x3F80_0000),  // 1
        (0xC000, 0xC000_0000),  // -2
        (0x0001, 0x0001_0000),  // smallest subnormal, 2^-133
        (0x007F, 0x007F_0000),  // largest subnormal
        (0x7F7F, 0x7F7F_0000),  // largest finite
        (0x7F80, 0x7F80_0000),  // +Inf
        (0xFF80, 0xFF80_0000),  // -Inf
        (0x7FC1, 0x7FC1_0000),  // NaN with payload
    ])
    func bf16Widening(bits: UInt16, expected: UInt32) {
        #expect(ScalarConversion.float(fromBFloat16: bits).bitPattern == expected)
    }

    @Test("BF16 widening values")
    func bf16Values() {
        #expect(ScalarConversion.float(fromBFloat16: 0x0001) == Float(sign: .plus, exponent: -133, significand: 1))
        #expect(ScalarConversion.float(fromBFloat16: 0x7F7F) == Float(3.3895313892515355e38))
        #expect(ScalarConversion.float(fromBFloat16: 0x8000).sign == .minus)
        #expect(ScalarConversion.float(fromBFloat16: 0x8000) == 0)
    }

    // MARK: Float → BF16

    @Test("Float narrows to BF16 with ties to even", arguments: [
        (UInt32(0x3F80_0000), UInt16(0x3F80)),  // exact
        (0x3F80_8000, 0x3F80),  // tie, even below
        (0x3F81_8000, 0x3F82),  // tie, even above
        (0x3F80_8001, 0x3F81),  // just above the tie
        (0x3F80_7FFF, 0x3F80),  // just below the tie
        (0xBF80_8000, 0xBF80),  // negative tie
        (0x7F7F_FFFF, 0x7F80),  // Float.greatestFiniteMagnitude overflows to Inf
        (0x7F7F_7FFF, 0x7F7F),  // stays at the largest finite BF16
        (0x0000_8000, 0x0000),  // subnormal tie to even zero
        (0x0001_8000, 0x0002),  // subnormal tie to even
        (0x8000_0000, 0x8000),  // -0
        (0x7F80_0000, 0x7F80),  // +Inf
        (0xFF80_0000, 0xFF80),  // -Inf
    ])
    func bf16Narrowing(bits: UInt32, expected: UInt16) {
        #expect(ScalarConversion.bfloat16Bits(from: Float(bitPattern: bits)) == expected)
    }

    @Test("NaN stays NaN when narrowing to BF16, even with a payload only in dropped bits")
    func bf16NaN() {
        for bits: UInt32 in [0x7FC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF] {
            let narrowed = ScalarConversion.bfloat16Bits(from: Float(bitPattern: bits))
            #expect(ScalarConversion.float(fromBFloat16: narrowed).isNaN, "bits \(bits)")
            #expect(narrowed & 0x8000 == UInt16(bits >> 16) & 0x8000, "sign of \(bits)")
        }
    }

    @Test("Every non-NaN BF16 survives a round trip through Float")
    func bf16RoundTrip() {
        for bits in UInt16.min...UInt16.max {
            let value = ScalarConversion.float(fromBFloat16: bits)
            if value.isNaN { continue }
            #expect(ScalarConversion.bfloat16Bits(from: value) == bits)
        }
    }

    /// Reference: choose between the two neighbouring BF16 values by exact distance in Double.
    @Test("Float → BF16 matches round-to-nearest-even computed in Double")
    func bf16AgainstDoubleReference() {
        var generator = SplitMix64(seed: 42)
        for _ in 0..<200_000 {
            let bits = UInt32(truncatingIfNeeded: generator.next())
            let value = Float(bitPattern: bits)
            guard value.isFinite else { continue }
            let down = UInt16(bits >> 16)  // truncation toward zero in magnitude
            let up = down &+ 1
            let lowValue = Double(ScalarConversion.float(fromBFloat16: down))
            let highValue = Double(ScalarConversion.float(fromBFloat16: up))  // may be ±Inf
            let x = Double(value)
            let expected: UInt16
            if highValue.isInfinite {
                // Overflow threshold: halfway to 2^128 in magnitude.
                let halfway = (lowValue.magnitude + 0x1p128) / 2
                expected = x.magnitude < halfway || (x.magnitude == halfway && down & 1 == 0) ? down : up
            } else {
                let dLow = (x - lowValue).magnitude, dHigh = (highValue - x).magnitude
                expected = dLow < dHigh || (dLow == dHigh && down & 1 == 0) ? down : up
            }
            #expect(ScalarConversion.bfloat16Bits(from: value) == expected, "Float bits \(bits)")
        }
    }

    // MARK: F16

    static let f16WideningCases: [(UInt16, Float)] = [
        (UInt16(0x0000), Float(0)),
        (0x3C00, 1),
        (0xC000, -2),
        (0x7BFF, 65504),
        (0x0001, 0x1p-24),  // smallest subnormal
        (0x03FF, 1023 * 0x1p-24),  // largest subnormal
        (0x0400, 0x1p-14),  // smallest normal
        (0x3555, 0.333251953125),
        (0x7C00, Float.infinity),
        (0xFC00, -Float.infinity),
    ]

    @Test("F16 bit patterns widen exactly", arguments: f16WideningCases)
    func f16Widening(bits: UInt16, expected: Float) {
        #expect(ScalarConversion.float(fromFloat16: bits) == expected)
    }

    @Test("F16 signed zero and NaN")
    func f16Specials() {
        #expect(ScalarConversion.float(fromFloat16: 0x8000).bitPattern == 0x8000_0000)
        #expect(ScalarConversion.float(fromFloat16: 0x7E00).isNaN)
        #expect(ScalarConversion.float(fromFloat16: 0x7C01).isNaN)
        #expect(ScalarConversion.float(fromFloat16: 0xFE00).isNaN)
    }

    static let f16NarrowingCases: [(Float, UInt16)] = [
        (Float(1), UInt16(0x3C00)),
        (1 + 0x1p-11, 0x3C00),  // tie between 0x3C00 and 0x3C01 → even
        (1 + 3 * 0x1p-11, 0x3C02),  // tie between 0x3C01 and 0x3C02 → even
        (1 + 0x1p-11 + 0x1p-20, 0x3C01),  // above the tie
        (65504, 0x7BFF),
        (65519, 0x7BFF),  // below the overflow tie
        (65520, 0x7C00),  // the tie rounds to even, i.e. Inf
        (-65520, 0xFC00),
        (Float.greatestFiniteMagnitude, 0x7C00),
        (0x1p-24, 0x0001),
        (0x1p-25, 0x0000),  // tie between 0 and the smallest subnormal → 0
        (0x1p-25 * 1.0000001, 0x0001),
        (3 * 0x1p-25, 0x0002),  // 1.5 units → 2
        (5 * 0x1p-25, 0x0002),  // 2.5 units → 2
        (0x1p-14 - 0x1p-25, 0x0400),  // tie between largest subnormal and smallest normal → even
        (0x1p-14, 0x0400),
        (-0.0, 0x8000),
        (0x1p-30, 0x0000),
        (-0x1p-30, 0x8000),
        (Float.infinity, 0x7C00),
        (-Float.infinity, 0xFC00),
    ]

    @Test("Float narrows to F16 with ties to even", arguments: f16NarrowingCases)
    func f16Narrowing(value: Float, expected: UInt16) {
        #expect(ScalarConversion.float16Bits(from: value) == expected)
    }

    @Test("NaN stays NaN when narrowing to F16")
    func f16NaN() {
        for bits: UInt32 in [0x7FC0_0000, 0x7F80_0001, 0xFF80_0001, 0x7FFF_FFFF] {
            let narrowed = ScalarConversion.float16Bits(from: Float(bitPattern: bits))
            #expect(ScalarConversion.float(fromFloat16: narrowed).isNaN, "bits \(bits)")
        }
    }

    @Test("Every non-NaN F16 survives a round trip through Float")
    func f16RoundTrip() {
        for bits in UInt16.min...UInt16.max {
            let value = ScalarConversion.float(fromFloat16: bits)
            if value.isNaN { continue }
            #expect(ScalarConversion.float16Bits(from: value) == bits)
        }
    }

    #if !(os(macOS) && arch(x86_64))
    /// Independent reference: the platform's IEEE binary16 type.
    @Test("F16 conversions agree with Swift's Float16")
    func f16AgainstFloat16() {
        for bits in UInt16.min...UInt16.max {
            let reference = Float(Float16(bitPattern: bits))
            let ours = ScalarConversion.float(fromFloat16: bits)
            if reference.isNaN {
                #expect(ours.isNaN)
            } else {
                #expect(ours.bitPattern == reference.bitPattern, "F16 bits \(bits)")
            }
        }
        var generator = SplitMix64(seed: 7)
        for _ in 0..<300_000 {
            // Bias exponents toward the F16 range so subnormals and ties are exercised.
            let raw = UInt32(truncatingIfNeeded: generator.next())
            let exponent = UInt32(90 + (generator.next() % 60))
            let bits = (raw & 0x807F_FFFF) | (exponent << 23)
            let value = Float(bitPattern: bits)
            #expect(ScalarConversion.float16Bits(from: value) == Float16(value).bitPattern, "Float bits \(bits)")
        }
    }
    #endif
}
