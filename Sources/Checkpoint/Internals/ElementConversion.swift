/// Bulk conversion between stored tensor bytes and `Float`/`Double` arrays.
///
/// Every loop runs over raw buffer pointers with `loadUnaligned` / `storeBytes` (tensor data may
/// start at any byte offset of the file) and writes into preallocated storage: converting 10M
/// BF16 values takes milliseconds, not the hundreds of milliseconds of `Data` subscripting.
/// Data are little-endian on disk; `T(littleEndian:)` is a no-op on little-endian hosts.
enum ElementConversion {
    /// Converts `source` (elements of `dtype`, packed) into `out`, which holds exactly
    /// `source.count / dtype.byteSize` elements. BOOL is not accepted (callers reject it).
    static func convert<T: ConvertedElement>(
        _ source: UnsafeRawBufferPointer, dtype: DType, into out: UnsafeMutableBufferPointer<T>
    ) {
        precondition(source.count == out.count * dtype.byteSize, "conversion buffer sizes disagree")
        switch dtype {
        case .bf16:
            for i in 0..<out.count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                out[i] = T(ScalarConversion.float(fromBFloat16: bits))
            }
        case .f16:
            for i in 0..<out.count {
                let bits = UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                out[i] = T(ScalarConversion.float(fromFloat16: bits))
            }
        case .f32:
            for i in 0..<out.count {
                let bits = UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                out[i] = T(Float(bitPattern: bits))
            }
        case .f64:
            for i in 0..<out.count {
                let bits = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                out[i] = T(Double(bitPattern: bits))
            }
        case .i64:
            for i in 0..<out.count {
                out[i] = T(Int(Int64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))))
            }
        case .i32:
            for i in 0..<out.count {
                out[i] = T(Int(Int32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))))
            }
        case .i16:
            for i in 0..<out.count {
                out[i] = T(Int(Int16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))))
            }
        case .i8:
            for i in 0..<out.count { out[i] = T(Int(source.load(fromByteOffset: i, as: Int8.self))) }
        case .u8:
            for i in 0..<out.count { out[i] = T(Int(source[i])) }
        case .bool:
            preconditionFailure("BOOL tensors are rejected before conversion")
        }
    }

    /// Encodes `values` as `dtype` (F64, F32, F16 or BF16) into `out`, which holds exactly
    /// `values.count × dtype.byteSize` bytes. F16/BF16 round to nearest even; F64 is exact.
    static func encode(_ values: UnsafeBufferPointer<Float>, as dtype: DType, into out: UnsafeMutableRawBufferPointer) {
        precondition(out.count == values.count * dtype.byteSize, "encoding buffer sizes disagree")
        switch dtype {
        case .f32:
            for i in 0..<values.count {
                out.storeBytes(of: values[i].bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
            }
        case .f64:
            for i in 0..<values.count {
                out.storeBytes(of: Double(values[i]).bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self)
            }
        case .bf16:
            for i in 0..<values.count {
                out.storeBytes(
                    of: ScalarConversion.bfloat16Bits(from: values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        case .f16:
            for i in 0..<values.count {
                out.storeBytes(
                    of: ScalarConversion.float16Bits(from: values[i]).littleEndian, toByteOffset: 2 * i, as: UInt16.self)
            }
        default:
            preconditionFailure("only floating dtypes are encoded from Float")
        }
    }
}

/// The element types tensors convert to. The requirements are met by `Float`'s and `Double`'s
/// concrete initializers, so a specialized conversion loop calls them directly instead of the
/// slow generic `BinaryFloatingPoint.init<Source>(_:)`.
protocol ConvertedElement {
    init(_ value: Float)
    init(_ value: Double)
    init(_ value: Int)
}

extension Float: ConvertedElement {}
extension Double: ConvertedElement {}
