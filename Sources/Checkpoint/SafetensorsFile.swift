import Foundation

/// A validated, memory-mapped `.safetensors` file.
///
/// Format (huggingface/safetensors): 8-byte little-endian `UInt64` header length `N`, then `N`
/// bytes of UTF-8 JSON — an object mapping tensor names to `{dtype, shape, data_offsets}` plus an
/// optional `__metadata__` string→string map — then the data section. `data_offsets` are
/// `[begin, end)` relative to the data section's start (file offset `8 + N`).
///
/// Opening maps the file (a private read-only `mmap`) and validates the whole header before any of it
/// is trusted: length within the file and under 100 000 000 bytes, valid UTF-8, a JSON object
/// without duplicate keys, well-typed entries, known dtypes, non-negative dimensions,
/// `product(shape) × dtype size == end − begin` without overflow, offsets in bounds, and tensors
/// that tile the data section exactly (no overlap, no gap, no trailing bytes). Each failure is a
/// distinct `CheckpointError` case. Opening is O(header size + T log T) for T tensors; no tensor
/// data is read.
///
/// Every read (bytes or converted values) goes through the mapping and then releases the pages it
/// touched from the resident set (they stay in the page cache), so streaming tensor after tensor
/// costs the caller's copies, not the file's size.
///
/// A struct: the mapping is owned by a shared reference, unmapped when the last copy goes away.
public struct SafetensorsFile: Sendable {
    /// The safetensors limit on the header length (the reference implementation's `MAX_HEADER_SIZE`).
    public static let maxHeaderLength = 100_000_000

    public let url: URL
    /// Every tensor, sorted by name (UTF-8 byte order).
    public let tensors: [TensorInfo]
    /// The `__metadata__` map (empty if absent).
    public let metadata: [String: String]
    /// `N`, the header length in bytes (including any padding spaces).
    public let headerLength: Int
    /// File offset of the data section: `8 + headerLength`.
    public var dataStart: Int { 8 + headerLength }

    private let storage: MappedFile
    private let indexByName: [String: Int]

    var path: String { url.path }

    /// Maps and validates the file at `url`.
    public init(contentsOf url: URL) throws(CheckpointError) {
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .fileNotFound(path: path)
        }
        guard !isDirectory.boolValue else {
            throw .unreadable(path: path, reason: "is a directory")
        }
        let file = try MappedFile(path: path)
        self.url = url
        self.storage = file
        let fileSize = file.size
        guard fileSize >= 8 else { throw .fileTooSmall(path: path, size: fileSize) }
        let declared: UInt64 = file.withBytes(0 ..< 8) { raw in
            UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        }
        guard declared <= UInt64(Self.maxHeaderLength) else {
            throw .headerTooLarge(path: path, headerLength: declared, limit: Self.maxHeaderLength)
        }
        guard declared <= UInt64(fileSize - 8) else {
            throw .truncatedFile(path: path, headerLength: declared, fileSize: fileSize)
        }
        let headerLength = Int(declared)
        self.headerLength = headerLength
        let headerBytes = file.withBytes(8 ..< 8 + headerLength) { [UInt8]($0) }
        let dataSize = fileSize - 8 - headerLength

        let parsed = try Self.parseHeader(headerBytes, path: path, dataSize: dataSize)
        self.metadata = parsed.metadata
        try Self.checkTiling(parsed.tensors, path: path, dataSize: dataSize)
        let sorted = parsed.tensors.sorted { $0.name.utf8Precedes($1.name) }
        self.tensors = sorted
        self.indexByName = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1.name, $0) })
    }

    // MARK: Header validation

    private static func parseHeader(
        _ bytes: [UInt8], path: String, dataSize: Int
    ) throws(CheckpointError) -> (tensors: [TensorInfo], metadata: [String: String]) {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw .headerNotUTF8(path: path) }
        guard bytes.first == UInt8(ascii: "{") else {
            throw .headerNotJSONObject(path: path, reason: "the header must start with '{'")
        }
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            switch error {
            case .syntax(let reason): throw .headerNotJSONObject(path: path, reason: reason)
            case .duplicateKey(let key): throw .duplicateHeaderKey(path: path, key: key)
            }
        }
        guard case .object(let members) = root else {
            throw .headerNotJSONObject(path: path, reason: "the top-level value is a \(root.typeName)")
        }
        var metadata: [String: String] = [:]
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)
        for member in members {
            let (key, value) = (member.key, member.value)
            if key == "__metadata__" {
                guard case .object(let pairs) = value else {
                    throw .invalidMetadata(path: path, reason: "it is a \(value.typeName), not an object")
                }
                for pair in pairs {
                    let (metaKey, metaValue) = (pair.key, pair.value)
                    guard let string = metaValue.stringValue else {
                        throw .invalidMetadata(
                            path: path, reason: "value of '\(metaKey)' is a \(metaValue.typeName), not a string")
                    }
                    metadata[metaKey] = string
                }
                continue
            }
            tensors.append(try parseTensor(name: key, value: value, path: path, dataSize: dataSize))
        }
        return (tensors, metadata)
    }

    private static func parseTensor(
        name: String, value: JSONValue, path: String, dataSize: Int
    ) throws(CheckpointError) -> TensorInfo {
        guard case .object(let fields) = value else { throw .tensorEntryNotObject(path: path, tensor: name) }
        func field(_ key: String) throws(CheckpointError) -> JSONValue {
            guard let found = fields.first(where: { $0.key == key }) else {
                throw .missingField(path: path, tensor: name, field: key)
            }
            return found.value
        }
        let dtypeValue = try field("dtype")
        guard let dtypeName = dtypeValue.stringValue else {
            throw .invalidField(path: path, tensor: name, field: "dtype", expected: "a string")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeName)
        }

        guard case .array(let shapeValues) = try field("shape") else {
            throw .invalidField(path: path, tensor: name, field: "shape", expected: "an array of integers")
        }
        var shape: [Int] = []
        shape.reserveCapacity(shapeValues.count)
        for dimension in shapeValues {
            guard let integer = dimension.integer else {
                throw .invalidField(path: path, tensor: name, field: "shape", expected: "an array of integers")
            }
            shape.append(integer)
        }
        guard shape.allSatisfy({ $0 >= 0 }) else { throw .negativeDimension(path: path, tensor: name, shape: shape) }

        let offsetsExpectation = "an array of two non-negative integers [begin, end]"
        guard case .array(let offsetValues) = try field("data_offsets"), offsetValues.count == 2,
              let begin = offsetValues[0].integer, let end = offsetValues[1].integer, begin >= 0, end >= 0
        else {
            throw .invalidField(path: path, tensor: name, field: "data_offsets", expected: offsetsExpectation)
        }
        guard begin <= end else { throw .invertedOffsets(path: path, tensor: name, begin: begin, end: end) }
        guard end <= dataSize else {
            throw .offsetOutOfBounds(path: path, tensor: name, end: end, dataSize: dataSize)
        }
        let declaration = TensorDeclaration(name: name, dtype: dtype, shape: shape)
        guard let expected = declaration.byteCount else { throw .sizeOverflow(path: path, tensor: name) }
        guard expected == end - begin else {
            throw .sizeMismatch(path: path, tensor: name, expectedBytes: expected, actualBytes: end - begin)
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    /// The tensors, ordered by offset, must tile `[0, dataSize)`: each begins where the previous
    /// ended and the last ends at `dataSize`.
    private static func checkTiling(_ tensors: [TensorInfo], path: String, dataSize: Int) throws(CheckpointError) {
        let byOffset = tensors.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound)
        }
        var cursor = 0
        var previous: String?
        for tensor in byOffset {
            let begin = tensor.dataOffsets.lowerBound
            if begin < cursor, let previous {
                throw .overlappingTensors(path: path, tensor: tensor.name, other: previous)
            }
            if begin > cursor {
                throw .gapInData(path: path, before: tensor.name, gapStart: cursor, gapEnd: begin)
            }
            cursor = tensor.dataOffsets.upperBound
            previous = tensor.name
        }
        guard cursor == dataSize else { throw .trailingBytes(path: path, coveredEnd: cursor, dataSize: dataSize) }
    }

    // MARK: Access

    /// The header entry for `name`.
    public func info(_ name: String) throws(CheckpointError) -> TensorInfo {
        guard let index = indexByName[name] else { throw .tensorNotFound(path: path, tensor: name) }
        return tensors[index]
    }

    /// Calls `body` with the tensor's bytes in the mapping (no copy), then releases their pages.
    /// The pointer may be unaligned and must not escape `body`.
    public func withRawBytes<R>(
        of name: String, _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        let tensor = try info(name)
        return try storage.withBytes(byteRange(tensor), body)
    }

    /// A copy of the tensor's bytes, row-major, little-endian, as stored.
    public func rawBytes(_ name: String) throws(CheckpointError) -> [UInt8] {
        storage.withBytes(byteRange(try info(name))) { [UInt8]($0) }
    }

    private func byteRange(_ tensor: TensorInfo) -> Range<Int> {
        let start = dataStart + tensor.dataOffsets.lowerBound
        return start ..< start + tensor.byteCount
    }

    /// The tensor's values as `Float`, row-major.
    ///
    /// F32, F16 and BF16 convert exactly; F64 rounds to nearest. Integer dtypes (I64…U8) convert
    /// (rounding to nearest for |x| > 2²⁴) only when `allowIntegers` is true; BOOL never does.
    /// O(n) through raw pointers with unaligned loads, into one preallocated array.
    public func floats(_ name: String, allowIntegers: Bool = false) throws(CheckpointError) -> [Float] {
        try convertedValues(name, as: Float.self, targetName: "Float", allowIntegers: allowIntegers)
    }

    /// The tensor's values as `Double`, row-major. Every floating dtype converts exactly; integer
    /// dtypes as for `floats(_:allowIntegers:)` (exact up to 2⁵³).
    public func doubles(_ name: String, allowIntegers: Bool = false) throws(CheckpointError) -> [Double] {
        try convertedValues(name, as: Double.self, targetName: "Double", allowIntegers: allowIntegers)
    }

    /// Converts the tensor's values into caller-provided storage of exactly `elementCount`
    /// elements (reusing one buffer across tensors avoids the page faults of a fresh array).
    /// Conversion rules as for `floats(_:allowIntegers:)`.
    public func readFloats(
        _ name: String, into buffer: UnsafeMutableBufferPointer<Float>, allowIntegers: Bool = false
    ) throws(CheckpointError) {
        try convert(name, into: buffer, targetName: "Float", allowIntegers: allowIntegers)
    }

    /// `readFloats(_:into:allowIntegers:)` for `Double` storage.
    public func readDoubles(
        _ name: String, into buffer: UnsafeMutableBufferPointer<Double>, allowIntegers: Bool = false
    ) throws(CheckpointError) {
        try convert(name, into: buffer, targetName: "Double", allowIntegers: allowIntegers)
    }

    /// A 2-D tensor of shape `[rows, columns]` (for a linear layer: `[out, in]`) as a column-major
    /// `rows × columns` matrix: element `(r, c)` at `values[r + c × rows]`, i.e. the layout of
    /// LinearAlgebra's `Matrix` (leading dimension `rows`). The file's row-major data is transposed
    /// while copying, so the matrix means the same `W` (not `Wᵀ`). O(rows × columns).
    public func matrixColumnMajor(_ name: String) throws(CheckpointError) -> (rows: Int, columns: Int, values: [Float]) {
        let tensor = try info(name)
        guard tensor.shape.count == 2 else { throw .notAMatrix(path: path, tensor: name, shape: tensor.shape) }
        let rowMajor = try floats(name)
        let (rows, columns) = (tensor.shape[0], tensor.shape[1])
        // Empty: nothing to copy, and no loop over a dimension as large as the header says ([2⁶⁰, 0]).
        guard !rowMajor.isEmpty else { return (rows, columns, []) }
        let values = [Float](unsafeUninitializedCapacity: rowMajor.count) { out, initialized in
            rowMajor.withUnsafeBufferPointer { source in
                for r in 0..<rows {
                    let rowBase = r * columns
                    for c in 0..<columns {
                        (out.baseAddress! + (r + c * rows)).initialize(to: source[rowBase + c])
                    }
                }
            }
            initialized = rowMajor.count
        }
        return (rows, columns, values)
    }

    private func convertedValues<T: ConvertedElement>(
        _ name: String, as _: T.Type, targetName: String, allowIntegers: Bool
    ) throws(CheckpointError) -> [T] {
        let count = try info(name).elementCount
        var result: Result<Void, CheckpointError> = .success(())
        let values = [T](unsafeUninitializedCapacity: count) { out, initialized in
            result = Result { () throws(CheckpointError) in
                try convert(name, into: out, targetName: targetName, allowIntegers: allowIntegers)
            }
            initialized = (try? result.get()) != nil ? count : 0
        }
        try result.get()
        return values
    }

    private func convert<T: ConvertedElement>(
        _ name: String, into out: UnsafeMutableBufferPointer<T>, targetName: String, allowIntegers: Bool
    ) throws(CheckpointError) {
        let tensor = try info(name)
        guard tensor.dtype.isFloatingPoint || (allowIntegers && tensor.dtype != .bool) else {
            throw .unsupportedConversion(path: path, tensor: name, dtype: tensor.dtype, target: targetName)
        }
        guard out.count == tensor.elementCount else {
            throw .payloadMismatch(path: path, tensor: name, expectedBytes: tensor.byteCount,
                                   actualBytes: out.count * tensor.dtype.byteSize)
        }
        storage.withBytes(byteRange(tensor)) { raw in
            ElementConversion.convert(raw, dtype: tensor.dtype, into: out)
        }
    }
}
