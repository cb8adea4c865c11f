import Foundation

/// A validated, memory-mapped GGUF file (ggml's model and imatrix format, version 2 or 3,
/// little-endian).
///
/// Layout (ggml `docs/gguf.md`): magic `GGUF`; UInt32 version; UInt64 tensor count; UInt64
/// metadata count; the metadata, each a string key, a UInt32 value type and the value (scalars
/// little-endian, strings as a UInt64 byte length and UTF-8 bytes, arrays as a UInt32 element type,
/// a UInt64 count and the elements); the tensor infos, each a string name, a UInt32 dimension count
/// n ≤ 4, n UInt64 dimensions in `ne` order (innermost first), a UInt32 ggml type and a UInt64
/// offset into the data section; padding to `general.alignment` (UInt32, default 32); the data.
///
/// Opening maps the file and checks every length and offset before it is used, each violation its
/// own `GGUFError`: magic, version, every fixed-size field inside the file, counts no larger than
/// the rest of the file could hold, string lengths in bounds and valid UTF-8, known value types,
/// BOOL bytes 0 or 1, no nested arrays, unique keys and tensor names, the alignment a power of
/// two, at most 4 dimensions, sizes without overflow, known ggml types with whole blocks per row,
/// tensor offsets aligned, in bounds and not overlapping. O(header size + T log T); no tensor data
/// is read. Reads go through the mapping and release their pages, as `SafetensorsFile`'s do.
public struct GGUFFile: Sendable {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let supportedVersions: ClosedRange<UInt32> = 2...3
    public static let alignmentKey = "general.alignment"
    public static let defaultAlignment = 32
    public static let maxDimensions: UInt32 = 4

    public let url: URL
    public let version: UInt32
    /// The metadata in file order.
    public let metadata: [GGUFMetadataEntry]
    /// The tensors in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// File offset of the data section.
    public let dataStart: Int

    private let storage: MappedFile
    private let metadataIndex: [String: Int]
    private let tensorIndex: [String: Int]

    var path: String { url.path }

    public init(contentsOf url: URL) throws(GGUFError) {
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw .fileNotFound(path: path) }
        guard !isDirectory.boolValue else { throw .unreadable(path: path, reason: "is a directory") }
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch {
            if case let .unreadable(_, reason) = error { throw .unreadable(path: path, reason: reason) }
            throw .unreadable(path: path, reason: "\(error)")
        }
        self.url = url
        storage = file
        let header = file.withBytes(0..<file.size) { bytes in
            Result { () throws(GGUFError) in
                var parser = GGUFHeaderParser(bytes: bytes, path: path)
                return try parser.parse()
            }
        }
        let parsed = try header.get()
        version = parsed.version
        metadata = parsed.metadata
        tensors = parsed.tensors
        alignment = parsed.alignment
        dataStart = parsed.dataStart
        var metadataIndex: [String: Int] = [:], tensorIndex: [String: Int] = [:]
        for (i, entry) in parsed.metadata.enumerated() { metadataIndex[entry.key] = i }
        for (i, tensor) in parsed.tensors.enumerated() { tensorIndex[tensor.name] = i }
        self.metadataIndex = metadataIndex
        self.tensorIndex = tensorIndex
    }

    /// The metadata value of `key`, nil when absent.
    public func value(_ key: String) -> GGUFValue? {
        metadataIndex[key].map { metadata[$0].value }
    }

    public func info(_ name: String) throws(GGUFError) -> GGUFTensorInfo {
        guard let index = tensorIndex[name] else { throw .tensorNotFound(path: path, tensor: name) }
        return tensors[index]
    }

    /// A copy of the tensor's bytes as stored.
    public func rawBytes(_ name: String) throws(GGUFError) -> [UInt8] {
        let tensor = try info(name)
        return storage.withBytes(range(of: tensor)) { [UInt8]($0) }
    }

    /// The values of an F32, F16, BF16 or F64 tensor as `Float`, in storage order (`ne[0]` fastest:
    /// row-major in `shape`). F64 rounds to nearest; the others convert exactly.
    public func floats(_ name: String) throws(GGUFError) -> [Float] {
        let tensor = try info(name)
        guard let dtype = tensor.type.dtype, dtype.isFloatingPoint else {
            throw .unsupportedConversion(path: path, tensor: name, type: tensor.type.name)
        }
        let count = tensor.elementCount
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            storage.withBytes(range(of: tensor)) { raw in ElementConversion.convert(raw, dtype: dtype, into: out) }
            initialized = count
        }
    }

    private func range(of tensor: GGUFTensorInfo) -> Range<Int> {
        dataStart + tensor.offset ..< dataStart + tensor.offset + tensor.byteCount
    }
}

/// Parses and validates a GGUF header from the mapped bytes of the whole file.
private struct GGUFHeaderParser {
    let bytes: UnsafeRawBufferPointer
    let path: String
    var offset = 0

    init(bytes: UnsafeRawBufferPointer, path: String) {
        self.bytes = bytes
        self.path = path
    }

    var remaining: Int { bytes.count - offset }

    struct Parsed {
        var version: UInt32
        var metadata: [GGUFMetadataEntry]
        var tensors: [GGUFTensorInfo]
        var alignment: Int
        var dataStart: Int
    }

    /// Smallest encodings: a metadata pair is a key length, a value type and a one-byte value; a
    /// tensor info is a name length, a dimension count, a type and an offset.
    static let minimumMetadataBytes = 8 + 4 + 1
    static let minimumTensorInfoBytes = 8 + 4 + 4 + 8

    mutating func parse() throws(GGUFError) -> Parsed {
        guard bytes.count >= 4 else {
            if bytes.isEmpty { throw .truncatedHeader(path: path, field: "the magic", offset: 0) }
            throw .badMagic(path: path, found: Array(bytes))
        }
        let magic = Array(bytes[0..<4])
        guard magic == GGUFFile.magic else { throw .badMagic(path: path, found: magic) }
        offset = 4
        let version = try integer(UInt32.self, "the version")
        guard GGUFFile.supportedVersions.contains(version) else { throw .unsupportedVersion(path: path, version: version) }
        let tensorCount = try integer(UInt64.self, "the tensor count")
        let metadataCount = try integer(UInt64.self, "the metadata count")
        let metadataLimit = remaining / Self.minimumMetadataBytes
        guard metadataCount <= UInt64(metadataLimit) else {
            throw .countTooLarge(path: path, field: "the metadata count", count: metadataCount, limit: metadataLimit)
        }
        let tensorLimit = remaining / Self.minimumTensorInfoBytes
        guard tensorCount <= UInt64(tensorLimit) else {
            throw .countTooLarge(path: path, field: "the tensor count", count: tensorCount, limit: tensorLimit)
        }

        var metadata: [GGUFMetadataEntry] = []
        var keys = Set<String>()
        for i in 0..<Int(metadataCount) {
            let key = try string("metadata key \(i)")
            guard keys.insert(key).inserted else { throw .duplicateKey(path: path, key: key) }
            metadata.append(GGUFMetadataEntry(key: key, value: try value(key: key)))
        }
        let alignment = try Self.alignment(metadata, path: path)

        var infos: [(name: String, dimensions: [UInt64], type: UInt32, offset: UInt64)] = []
        var names = Set<String>()
        for i in 0..<Int(tensorCount) {
            let name = try string("the name of tensor info \(i)")
            guard names.insert(name).inserted else { throw .duplicateTensorName(path: path, tensor: name) }
            let dimensionCount = try integer(UInt32.self, "the dimension count of tensor '\(name)'")
            guard dimensionCount <= GGUFFile.maxDimensions else {
                throw .tooManyDimensions(path: path, tensor: name, count: dimensionCount)
            }
            var dimensions: [UInt64] = []
            for d in 0..<Int(dimensionCount) {
                dimensions.append(try integer(UInt64.self, "dimension \(d) of tensor '\(name)'"))
            }
            let type = try integer(UInt32.self, "the type of tensor '\(name)'")
            let tensorOffset = try integer(UInt64.self, "the offset of tensor '\(name)'")
            infos.append((name, dimensions, type, tensorOffset))
        }

        // The data section starts at the next multiple of the alignment.
        let headerEnd = offset
        let dataStart = (headerEnd + alignment - 1) / alignment * alignment
        if !infos.isEmpty && dataStart > bytes.count {
            throw .truncatedHeader(path: path, field: "the padding before the data section", offset: headerEnd)
        }
        let dataSize = max(0, bytes.count - dataStart)
        var tensors: [GGUFTensorInfo] = []
        for info in infos {
            tensors.append(try Self.tensor(info, alignment: alignment, dataSize: dataSize, path: path))
        }
        try Self.checkOverlaps(tensors, path: path)
        return Parsed(version: version, metadata: metadata, tensors: tensors, alignment: alignment, dataStart: dataStart)
    }

    // MARK: Fields

    /// A little-endian integer, assembled byte by byte (no alignment or host-order assumptions).
    mutating func integer<T: FixedWidthInteger>(_: T.Type, _ field: @autoclosure () -> String) throws(GGUFError) -> T {
        let size = T.bitWidth / 8
        guard remaining >= size else { throw .truncatedHeader(path: path, field: field(), offset: offset) }
        var value: UInt64 = 0
        for i in 0..<size { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += size
        return T(truncatingIfNeeded: value)
    }

    mutating func string(_ field: @autoclosure () -> String) throws(GGUFError) -> String {
        let length = try integer(UInt64.self, field())
        guard length <= UInt64(remaining) else {
            throw .stringOutOfBounds(path: path, field: field(), length: length, remaining: remaining)
        }
        let n = Int(length)
        guard let s = String(validating: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n]), as: UTF8.self) else {
            throw .invalidUTF8(path: path, field: field())
        }
        offset += n
        return s
    }

    mutating func valueType(key: String) throws(GGUFError) -> GGUFValueType {
        let raw = try integer(UInt32.self, "the value type of '\(key)'")
        guard let type = GGUFValueType(rawValue: raw) else { throw .unknownValueType(path: path, key: key, type: raw) }
        return type
    }

    mutating func value(key: String) throws(GGUFError) -> GGUFValue {
        let type = try valueType(key: key)
        guard type == .array else { return try scalar(type, key: key) }
        let elementType = try valueType(key: key)
        guard elementType != .array else { throw .nestedArray(path: path, key: key) }
        let count = try integer(UInt64.self, "the array length of '\(key)'")
        guard count <= UInt64(remaining / elementType.minimumSize) else {
            throw .arrayTooLong(path: path, key: key, count: count, remaining: remaining)
        }
        var values: [GGUFValue] = []
        values.reserveCapacity(Int(count))
        for _ in 0..<Int(count) { values.append(try scalar(elementType, key: key)) }
        return .array(elementType: elementType, values: values)
    }

    mutating func scalar(_ type: GGUFValueType, key: String) throws(GGUFError) -> GGUFValue {
        let field = "the value of '\(key)'"
        switch type {
        case .uint8: return .uint8(try integer(UInt8.self, field))
        case .int8: return .int8(try integer(Int8.self, field))
        case .uint16: return .uint16(try integer(UInt16.self, field))
        case .int16: return .int16(try integer(Int16.self, field))
        case .uint32: return .uint32(try integer(UInt32.self, field))
        case .int32: return .int32(try integer(Int32.self, field))
        case .uint64: return .uint64(try integer(UInt64.self, field))
        case .int64: return .int64(try integer(Int64.self, field))
        case .float32: return .float32(Float(bitPattern: try integer(UInt32.self, field)))
        case .float64: return .float64(Double(bitPattern: try integer(UInt64.self, field)))
        case .bool:
            let byte = try integer(UInt8.self, field)
            guard byte <= 1 else { throw .invalidBool(path: path, key: key, byte: byte) }
            return .bool(byte == 1)
        case .string: return .string(try string(field))
        case .array: preconditionFailure("arrays are read by value(key:)")
        }
    }

    // MARK: Checks

    static func alignment(_ metadata: [GGUFMetadataEntry], path: String) throws(GGUFError) -> Int {
        guard let entry = metadata.first(where: { $0.key == GGUFFile.alignmentKey }) else { return GGUFFile.defaultAlignment }
        guard case let .uint32(value) = entry.value, value > 0, value & (value - 1) == 0 else {
            throw .invalidAlignment(path: path, value: entry.value.summary)
        }
        return Int(value)
    }

    static func tensor(
        _ info: (name: String, dimensions: [UInt64], type: UInt32, offset: UInt64), alignment: Int, dataSize: Int, path: String
    ) throws(GGUFError) -> GGUFTensorInfo {
        let overflow = GGUFError.dimensionsOverflow(path: path, tensor: info.name, dimensions: info.dimensions)
        var dimensions: [Int] = []
        for d in info.dimensions {
            guard let value = Int(exactly: d) else { throw overflow }
            dimensions.append(value)
        }
        var elements = 1
        for d in dimensions {
            let (product, over) = elements.multipliedReportingOverflow(by: d)
            guard !over else { throw overflow }
            elements = product
        }
        guard let type = GGMLType.known[info.type] else { throw .unknownTensorType(path: path, tensor: info.name, type: info.type) }
        let rowLength = dimensions.first ?? 1
        guard rowLength % type.blockSize == 0 else {
            throw .partialBlock(path: path, tensor: info.name, type: type.name, rowLength: rowLength, blockSize: type.blockSize)
        }
        let (byteCount, over) = (elements / type.blockSize).multipliedReportingOverflow(by: type.blockBytes)
        guard !over else { throw overflow }
        guard info.offset % UInt64(alignment) == 0 else {
            throw .misalignedTensor(path: path, tensor: info.name, offset: info.offset, alignment: alignment)
        }
        guard info.offset <= UInt64(dataSize), byteCount <= dataSize - Int(info.offset) else {
            throw .tensorOutOfBounds(path: path, tensor: info.name, offset: info.offset, byteCount: byteCount, dataSize: dataSize)
        }
        return GGUFTensorInfo(name: info.name, dimensions: dimensions, type: type, offset: Int(info.offset), byteCount: byteCount)
    }

    /// Tensors with bytes, ordered by offset, must not share any.
    static func checkOverlaps(_ tensors: [GGUFTensorInfo], path: String) throws(GGUFError) {
        let ordered = tensors.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.byteCount) < ($1.offset, $1.byteCount) }
        var end = 0
        var previous: String?
        for tensor in ordered {
            if let previous, tensor.offset < end { throw .overlappingTensors(path: path, tensor: tensor.name, other: previous) }
            if tensor.offset + tensor.byteCount > end {
                end = tensor.offset + tensor.byteCount
                previous = tensor.name
            }
        }
    }
}
