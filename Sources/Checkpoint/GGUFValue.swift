/// The metadata value types of GGUF (`gguf_metadata_value_type`, stored as a little-endian UInt32).
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value; strings take at least their 8-byte length, arrays at least type and count.
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64, .string: 8
        case .array: 12
        }
    }
}

/// One metadata value of a GGUF file.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
    /// An array of scalars or strings, all of `elementType` (never `.array`: nested arrays are refused).
    case array(elementType: GGUFValueType, values: [GGUFValue])

    public var stringValue: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    /// Any integer type whose value fits in `Int`.
    public var integerValue: Int? {
        switch self {
        case let .uint8(v): Int(v)
        case let .int8(v): Int(v)
        case let .uint16(v): Int(v)
        case let .int16(v): Int(v)
        case let .uint32(v): Int(v)
        case let .int32(v): Int(v)
        case let .uint64(v): Int(exactly: v)
        case let .int64(v): Int(exactly: v)
        default: nil
        }
    }

    /// An array of strings, as strings.
    public var stringArray: [String]? {
        guard case let .array(.string, values) = self else { return nil }
        return values.compactMap(\.stringValue)
    }

    /// The value as written in messages: `UINT32 7`, `STRING "imatrix"`, `ARRAY[STRING] of 2`.
    public var summary: String {
        switch self {
        case let .uint8(v): "UINT8 \(v)"
        case let .int8(v): "INT8 \(v)"
        case let .uint16(v): "UINT16 \(v)"
        case let .int16(v): "INT16 \(v)"
        case let .uint32(v): "UINT32 \(v)"
        case let .int32(v): "INT32 \(v)"
        case let .uint64(v): "UINT64 \(v)"
        case let .int64(v): "INT64 \(v)"
        case let .float32(v): "FLOAT32 \(v)"
        case let .float64(v): "FLOAT64 \(v)"
        case let .bool(v): "BOOL \(v)"
        case let .string(s): "STRING \"\(s)\""
        case let .array(type, values): "ARRAY[\(type)] of \(values.count)"
        }
    }
}

/// One `key: value` pair of a GGUF file's metadata.
public struct GGUFMetadataEntry: Sendable, Equatable {
    public let key: String
    public let value: GGUFValue
}

/// A ggml tensor type with its storage layout: `blockSize` elements take `blockBytes` bytes (1 and
/// the element size for the plain types). The table is the one of ggml's `type_traits` (gguf-py's
/// `GGML_QUANT_SIZES`); ids 4, 5 and 31–33, 36–38 were removed from the format.
public struct GGMLType: Hashable, Sendable, CustomStringConvertible {
    public let id: UInt32
    public let name: String
    public let blockSize: Int
    public let blockBytes: Int

    public var description: String { name }

    /// The safetensors dtype with the same element layout, for the plain (non-quantized) types.
    public var dtype: DType? {
        switch name {
        case "F32": .f32
        case "F16": .f16
        case "BF16": .bf16
        case "F64": .f64
        case "I8": .i8
        case "I16": .i16
        case "I32": .i32
        case "I64": .i64
        default: nil
        }
    }

    public static let f32 = known[0]!
    public static let f16 = known[1]!

    private static let qk = 256
    /// Every type this reader can size, by id.
    public static let known: [UInt32: GGMLType] = {
        let table: [(UInt32, String, Int, Int)] = [
            (0, "F32", 1, 4), (1, "F16", 1, 2),
            (2, "Q4_0", 32, 2 + 16), (3, "Q4_1", 32, 2 + 2 + 16), (6, "Q5_0", 32, 2 + 4 + 16), (7, "Q5_1", 32, 2 + 2 + 4 + 16),
            (8, "Q8_0", 32, 2 + 32), (9, "Q8_1", 32, 4 + 4 + 32),
            (10, "Q2_K", qk, 2 + 2 + qk / 16 + qk / 4), (11, "Q3_K", qk, 2 + qk / 4 + qk / 8 + 12),
            (12, "Q4_K", qk, 2 + 2 + qk / 2 + 12), (13, "Q5_K", qk, 2 + 2 + qk / 2 + qk / 8 + 12),
            (14, "Q6_K", qk, 2 + qk / 2 + qk / 4 + qk / 16), (15, "Q8_K", qk, 4 + qk + qk / 8),
            (16, "IQ2_XXS", qk, 2 + qk / 4), (17, "IQ2_XS", qk, 2 + qk / 4 + qk / 32),
            (18, "IQ3_XXS", qk, 2 + qk / 4 + qk / 8), (19, "IQ1_S", qk, 2 + qk / 8 + qk / 16), (20, "IQ4_NL", 32, 2 + 16),
            (21, "IQ3_S", qk, 2 + qk / 4 + qk / 8 + qk / 32 + 4), (22, "IQ2_S", qk, 2 + qk / 4 + qk / 16),
            (23, "IQ4_XS", qk, 2 + 2 + qk / 2 + qk / 64),
            (24, "I8", 1, 1), (25, "I16", 1, 2), (26, "I32", 1, 4), (27, "I64", 1, 8), (28, "F64", 1, 8),
            (29, "IQ1_M", qk, qk / 8 + qk / 16 + qk / 32), (30, "BF16", 1, 2),
            (34, "TQ1_0", qk, 2 + 4 * 13), (35, "TQ2_0", qk, 2 + 64), (39, "MXFP4", 32, 1 + 16),
        ]
        var byID: [UInt32: GGMLType] = [:]
        for (id, name, block, bytes) in table { byID[id] = GGMLType(id: id, name: name, blockSize: block, blockBytes: bytes) }
        return byID
    }()
}

/// One tensor's entry in a GGUF header, validated.
///
/// Dimensions are in ggml's `ne` order: `dimensions[0]` is the innermost, contiguous one (a
/// PyTorch `[out, in]` weight is stored with `ne = [in, out]`); `shape` gives them outermost first.
public struct GGUFTensorInfo: Sendable, Hashable {
    public let name: String
    public let dimensions: [Int]
    public let type: GGMLType
    /// Byte offset relative to the data section (a multiple of the file's alignment).
    public let offset: Int
    public let byteCount: Int

    /// Outermost first, the order of safetensors and PyTorch shapes.
    public var shape: [Int] { dimensions.reversed() }
    public var elementCount: Int { dimensions.reduce(1, *) }
}
