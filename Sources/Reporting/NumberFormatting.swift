import Foundation

/// Number formats shared by every report, so the same value reads the same everywhere.
public enum Format {
    /// Significant-digit notation: `0.0123`, `1.23e-07`, `4.57e+05` (`%.{digits}g`).
    public static func significant(_ x: Double, digits: Int = 3) -> String {
        x.isFinite ? String(format: "%.\(digits)g", x) : "\(x)"
    }

    /// Fixed decimals: `12.35` (`%.{decimals}f`).
    public static func fixed(_ x: Double, decimals: Int = 2) -> String {
        String(format: "%.\(decimals)f", x)
    }

    /// A fraction as a percentage: `12.3%`.
    public static func percent(_ x: Double, decimals: Int = 1) -> String {
        String(format: "%.\(decimals)f%%", 100 * x)
    }

    /// Bytes with binary units: `512 B`, `1.50 KiB`, `3.25 GiB`.
    public static func bytes(_ bytes: Double) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = bytes, unit = 0
        while abs(value) >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(Int(bytes)) B" : String(format: "%.2f %@", value, units[unit])
    }

    /// Durations: `850 ms`, `12.3 s`, `4m05s`, `1h02m`.
    public static func duration(_ seconds: Double) -> String {
        if seconds < 1 { return "\(Int((seconds * 1000).rounded())) ms" }
        if seconds < 60 { return String(format: "%.1f s", seconds) }
        let s = Int(seconds.rounded())
        if s < 3600 { return String(format: "%dm%02ds", s / 60, s % 60) }
        return String(format: "%dh%02dm", s / 3600, (s % 3600) / 60)
    }
}
