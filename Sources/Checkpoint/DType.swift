/// The element types of a safetensors file, spelled as in the file's JSON header.
///
/// Every dtype is stored little-endian with no padding between elements, so a tensor of shape
/// `[d0, d1, …]` occupies exactly `d0 × d1 × … × byteSize` bytes.
public enum DType: String, Sendable, CaseIterable, Hashable, Comparable {
    case f64 = "F64"
    case f32 = "F32"
    case f16 = "F16"
    case bf16 = "BF16"
    case i64 = "I64"
    case i32 = "I32"
    case i16 = "I16"
    case i8 = "I8"
    case u8 = "U8"
    case bool = "BOOL"

    /// Bytes per element: 8, 4, 2 or 1 (always a power of two, which the writer uses for alignment).
    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }

    /// `true` for F64, F32, F16 and BF16: the types that convert to `Float`/`Double` without a
    /// request to reinterpret integers.
    public var isFloatingPoint: Bool {
        switch self {
        case .f64, .f32, .f16, .bf16: true
        default: false
        }
    }

    /// Orders by the spelling in the header, so tables and totals list dtypes deterministically.
    public static func < (lhs: DType, rhs: DType) -> Bool { lhs.rawValue < rhs.rawValue }
}
