import Foundation

/// An sRGB colour with 8-bit channels.
public struct RGB: Sendable, Equatable {
    public var red: UInt8, green: UInt8, blue: UInt8

    public init(red: UInt8, green: UInt8, blue: UInt8) {
        self.red = red
        self.green = green
        self.blue = blue
    }

    /// Parses `#rrggbb`; nil for anything else.
    public init?(hex: String) {
        guard hex.count == 7, hex.first == "#", let v = UInt32(hex.dropFirst(), radix: 16) else { return nil }
        self.init(red: UInt8(v >> 16 & 0xFF), green: UInt8(v >> 8 & 0xFF), blue: UInt8(v & 0xFF))
    }

    /// `#rrggbb`, lower case.
    public var hex: String { String(format: "#%02x%02x%02x", red, green, blue) }

    /// WCAG relative luminance in [0, 1]: 0.2126 R + 0.7152 G + 0.0722 B of the linearized
    /// channels (sRGB transfer function inverted).
    public var luminance: Double {
        func linear(_ c: UInt8) -> Double {
            let s = Double(c) / 255
            return s <= 0.04045 ? s / 12.92 : pow((s + 0.055) / 1.055, 2.4)
        }
        return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)
    }
}

/// A sequential colour map: t ∈ [0, 1] ↦ a colour, linear in sRGB between equally spaced stops.
/// The built-in maps are perceptually ordered: luminance is strictly monotone in t (a test checks
/// it), so a cell's colour ranks its value even in grey scale.
public struct ColorScale: Sendable, Equatable {
    /// Equally spaced from t = 0 to t = 1; at least two.
    public var stops: [RGB]

    public init(stops: [RGB]) {
        precondition(stops.count >= 2, "a colour scale needs two stops")
        self.stops = stops
    }

    init(hex: [String]) { self.init(stops: hex.map { RGB(hex: $0)! }) }  // our own constants

    /// matplotlib's viridis sampled at t = 0, 1/8, …, 1: dark violet → blue → green → yellow.
    public static let viridis = ColorScale(hex: [
        "#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725",
    ])

    /// After matplotlib's magma from about t = 0.15 up, reversed: pale yellow (low) → orange →
    /// magenta → dark purple (high); for quantities where more is worse, such as errors.
    public static let magmaReversed = ColorScale(hex: [
        "#fcfdbf", "#fec287", "#fb8761", "#e55064", "#b5367a", "#812581", "#5f187f", "#3b0f70", "#221150",
    ])

    /// The colour at `t`, clamped to [0, 1] (NaN gives the first stop).
    public func color(at t: Double) -> RGB {
        let t = t.isNaN ? 0 : min(max(t, 0), 1)
        let position = t * Double(stops.count - 1)
        let i = min(Int(position), stops.count - 2)
        let f = position - Double(i)
        func mix(_ a: UInt8, _ b: UInt8) -> UInt8 { UInt8((Double(a) + (Double(b) - Double(a)) * f).rounded()) }
        let a = stops[i], b = stops[i + 1]
        return RGB(red: mix(a.red, b.red), green: mix(a.green, b.green), blue: mix(a.blue, b.blue))
    }
}
