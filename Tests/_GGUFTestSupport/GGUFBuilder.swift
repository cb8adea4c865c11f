/// Builds GGUF file bytes by hand, from ggml's `docs/gguf.md` alone (not from the reader), so tests
/// can write well-formed files and break them one field at a time.
///
/// Layout written: `GGUF`, UInt32 version, UInt64 tensor count, UInt64 metadata count, the
/// metadata (string key, UInt32 type, value), the tensor infos (string name, UInt32 n_dims, n
/// UInt64 dims in `ne` order, UInt32 type, UInt64 offset), zero padding to `alignment`, then each
/// tensor's bytes at its offset, padded to `alignment`. All little-endian.
public struct GGUFBuilder: Sendable {
    /// A metadata value. `raw` writes any type code followed by arbitrary payload bytes.
    public indirect enum Value: Sendable {
        case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
        case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool), string(String)
        /// Elements of one type (their own type codes are not written); `count` overrides the length.
        case array(elementType: UInt32, [Value], count: UInt64? = nil)
        case raw(type: UInt32, payload: [UInt8])

        var typeCode: UInt32 {
            switch self {
            case .uint8: 0
            case .int8: 1
            case .uint16: 2
            case .int16: 3
            case .uint32: 4
            case .int32: 5
            case .float32: 6
            case .bool: 7
            case .string: 8
            case .array: 9
            case .uint64: 10
            case .int64: 11
            case .float64: 12
            case let .raw(type, _): type
            }
        }

        var payload: [UInt8] {
            switch self {
            case let .uint8(v): [v]
            case let .int8(v): [UInt8(bitPattern: v)]
            case let .uint16(v): le(v)
            case let .int16(v): le(v)
            case let .uint32(v): le(v)
            case let .int32(v): le(v)
            case let .uint64(v): le(v)
            case let .int64(v): le(v)
            case let .float32(v): le(v.bitPattern)
            case let .float64(v): le(v.bitPattern)
            case let .bool(v): [v ? 1 : 0]
            case let .string(s): GGUFBuilder.string(s)
            case let .array(type, values, count):
                le(type) + le(count ?? UInt64(values.count)) + values.flatMap(\.payload)
            case let .raw(_, payload): payload
            }
        }
    }

    public struct Tensor: Sendable {
        public var name: String
        /// `ne` order: innermost (contiguous) first.
        public var dimensions: [UInt64]
        public var type: UInt32
        public var data: [UInt8]
        /// Written instead of the computed offset (the data still goes where it was laid out).
        public var offsetOverride: UInt64?

        public init(name: String, dimensions: [UInt64], type: UInt32 = 0, data: [UInt8], offsetOverride: UInt64? = nil) {
            self.name = name
            self.dimensions = dimensions
            self.type = type
            self.data = data
            self.offsetOverride = offsetOverride
        }

        /// An F32 tensor of `values` with the given `ne`.
        public static func f32(_ name: String, _ values: [Float], dimensions: [UInt64]? = nil) -> Tensor {
            Tensor(name: name, dimensions: dimensions ?? [UInt64(values.count)], type: 0, data: values.flatMap { le($0.bitPattern) })
        }
    }

    public var magic: [UInt8] = Array("GGUF".utf8)
    public var version: UInt32 = 3
    public var metadata: [(key: String, value: Value)] = []
    public var tensors: [Tensor] = []
    /// The alignment used for the layout (write `general.alignment` yourself when it is not 32).
    public var alignment = 32
    public var tensorCountOverride: UInt64?
    public var metadataCountOverride: UInt64?

    public init(metadata: [(key: String, value: Value)] = [], tensors: [Tensor] = []) {
        self.metadata = metadata
        self.tensors = tensors
    }

    public static func string(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }

    /// The header (everything before the padding that precedes the data).
    public func header() -> [UInt8] {
        var out = magic + le(version) + le(tensorCountOverride ?? UInt64(tensors.count))
            + le(metadataCountOverride ?? UInt64(metadata.count))
        for (key, value) in metadata { out += Self.string(key) + le(value.typeCode) + value.payload }
        for (tensor, offset) in zip(tensors, offsets()) {
            out += Self.string(tensor.name) + le(UInt32(tensor.dimensions.count)) + tensor.dimensions.flatMap { le($0) }
                + le(tensor.type) + le(tensor.offsetOverride ?? UInt64(offset))
        }
        return out
    }

    /// Data offsets: each tensor at the next multiple of the alignment after the previous one.
    public func offsets() -> [Int] {
        var cursor = 0, result: [Int] = []
        for tensor in tensors {
            result.append(cursor)
            cursor = padded(cursor + tensor.data.count)
        }
        return result
    }

    public func bytes() -> [UInt8] {
        var out = header()
        guard !tensors.isEmpty else { return out }
        out += [UInt8](repeating: 0, count: padded(out.count) - out.count)
        let dataStart = out.count
        for (tensor, offset) in zip(tensors, offsets()) {
            let end = dataStart + padded(offset + tensor.data.count)
            if out.count < end { out += [UInt8](repeating: 0, count: end - out.count) }
            out.replaceSubrange(dataStart + offset ..< dataStart + offset + tensor.data.count, with: tensor.data)
        }
        return out
    }

    func padded(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }
}

/// Little-endian bytes of an integer.
public func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<T.bitWidth / 8).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}
