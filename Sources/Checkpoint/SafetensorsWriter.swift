import Foundation

/// Streams a `.safetensors` file to disk one tensor at a time, then publishes it atomically.
///
/// The header is computed up front from the declared names, dtypes and shapes, so tensors can be
/// written in any order (each goes to its final offset with `pwrite`) and peak memory stays near
/// one tensor. Output is deterministic — the same declarations, metadata and bytes give a
/// byte-identical file:
/// - header JSON: `__metadata__` first (keys sorted), then tensors sorted by name (UTF-8 byte
///   order), no whitespace, padded with spaces so the data section starts at a multiple of 8;
/// - data section: tensors ordered by element size (8, 4, 2, 1 bytes) then name, with no gaps (as
///   the spec requires), so every tensor starts at an offset that is a multiple of its element
///   size: the data are naturally aligned.
///
/// Atomicity: bytes go through an ``AtomicFileWriter`` (a temporary file `.<name>.<UUID>.tmp` in the
/// destination's directory); `finish()` fsyncs it, renames it over the destination and fsyncs the
/// directory. If the writer is dropped before `finish()` succeeds, the temporary file is removed
/// and the destination is untouched.
///
/// A class because it owns the open temporary file (through its ``AtomicFileWriter``).
public final class SafetensorsWriter {
    public let url: URL
    /// The declared tensors in data-section order, with their offsets.
    public let layout: [TensorInfo]
    private var file: AtomicFileWriter?
    private let dataStart: Int
    private let indexByName: [String: Int]
    private var written: [Bool]
    /// The element ranges written so far of each tensor streamed in pieces, sorted, disjoint.
    private var pieces: [[Range<Int>]]
    private var finished = false

    /// Validates the declarations, creates the temporary file and writes the header.
    ///
    /// - Throws: `invalidTensorName` for an empty, duplicate or reserved (`__metadata__`) name;
    ///   `payloadMismatch` for a negative dimension or a byte count that overflows;
    ///   `writeFailed` if the temporary file cannot be created.
    public init(url: URL, tensors: [TensorDeclaration], metadata: [String: String] = [:]) throws(CheckpointError) {
        self.url = url
        let path = url.path
        var seen = Set<String>()
        var sizes: [String: Int] = [:]
        for tensor in tensors {
            guard !tensor.name.isEmpty else {
                throw .invalidTensorName(path: path, tensor: tensor.name, reason: "empty name")
            }
            guard tensor.name != "__metadata__" else {
                throw .invalidTensorName(path: path, tensor: tensor.name, reason: "reserved for metadata")
            }
            guard seen.insert(tensor.name).inserted else {
                throw .invalidTensorName(path: path, tensor: tensor.name, reason: "declared twice")
            }
            guard let bytes = tensor.byteCount else {
                throw .payloadMismatch(path: path, tensor: tensor.name, expectedBytes: -1, actualBytes: -1)
            }
            sizes[tensor.name] = bytes
        }
        let dataOrder = tensors.sorted {
            $0.dtype.byteSize != $1.dtype.byteSize ? $0.dtype.byteSize > $1.dtype.byteSize : $0.name.utf8Precedes($1.name)
        }
        var offset = 0
        var layout: [TensorInfo] = []
        for tensor in dataOrder {
            let size = sizes[tensor.name]!
            layout.append(TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, dataOffsets: offset ..< offset + size))
            offset += size
        }
        self.layout = layout
        self.indexByName = Dictionary(uniqueKeysWithValues: layout.enumerated().map { ($1.name, $0) })
        self.written = Array(repeating: false, count: layout.count)
        self.pieces = Array(repeating: [], count: layout.count)

        let header = Self.headerBytes(layout: layout, metadata: metadata)
        self.dataStart = 8 + header.count
        let file = try AtomicFileWriter(destination: url)
        self.file = file
        var prefix = withUnsafeBytes(of: UInt64(header.count).littleEndian) { [UInt8]($0) }
        prefix += header
        do throws(CheckpointError) {
            try prefix.withUnsafeBytes { raw in Result { () throws(CheckpointError) in try file.write(raw, at: 0) } }.get()
        } catch {
            abandon()
            throw error
        }
    }

    /// The JSON header, space-padded to a multiple of 8 bytes.
    static func headerBytes(layout: [TensorInfo], metadata: [String: String]) -> [UInt8] {
        var parts: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted { $0.utf8Precedes($1) }.map {
                JSONWriter.quoted($0) + ":" + JSONWriter.quoted(metadata[$0]!)
            }
            parts.append("\"__metadata__\":{" + pairs.joined(separator: ",") + "}")
        }
        for tensor in layout.sorted(by: { $0.name.utf8Precedes($1.name) }) {
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            parts.append(
                JSONWriter.quoted(tensor.name) + ":{\"dtype\":\"\(tensor.dtype.rawValue)\",\"shape\":[\(shape)],"
                    + "\"data_offsets\":[\(tensor.dataOffsets.lowerBound),\(tensor.dataOffsets.upperBound)]}")
        }
        var bytes = Array(("{" + parts.joined(separator: ",") + "}").utf8)
        let padding = (8 - bytes.count % 8) % 8
        bytes += Array(repeating: UInt8(ascii: " "), count: padding)
        return bytes
    }

    private func slot(for name: String, byteCount: Int) throws(CheckpointError) -> (index: Int, info: TensorInfo) {
        guard let file, !finished else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "the writer is already finished")
        }
        _ = file
        guard let index = indexByName[name] else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "was not declared")
        }
        guard !written[index] else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "was already written")
        }
        let info = layout[index]
        guard byteCount == info.byteCount else {
            throw .payloadMismatch(path: url.path, tensor: name, expectedBytes: info.byteCount, actualBytes: byteCount)
        }
        return (index, info)
    }

    /// Writes a declared tensor's bytes (row-major, little-endian, in its declared dtype).
    public func write(_ name: String, bytes: UnsafeRawBufferPointer) throws(CheckpointError) {
        let (index, info) = try slot(for: name, byteCount: bytes.count)
        if bytes.count > 0 {
            try file!.write(bytes, at: dataStart + info.dataOffsets.lowerBound)
        }
        written[index] = true
    }

    /// Writes a declared tensor's bytes (row-major, little-endian, in its declared dtype).
    public func write(_ name: String, bytes: [UInt8]) throws(CheckpointError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(CheckpointError) in try write(name, bytes: raw) } }.get()
    }

    /// Writes a declared floating-point tensor from row-major `Float` values, converting to its
    /// dtype: F32 and F64 exactly, F16 and BF16 rounding to nearest even (NaN stays NaN).
    /// Integer and BOOL dtypes throw `unsupportedConversion`.
    public func write(_ name: String, floats: [Float]) throws(CheckpointError) {
        guard let index = indexByName[name] else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "was not declared")
        }
        let dtype = layout[index].dtype
        let byteCount = floats.count.multipliedReportingOverflow(by: dtype.byteSize)
        if dtype.isFloatingPoint {
            _ = try slot(for: name, byteCount: byteCount.overflow ? -1 : byteCount.partialValue)
        }
        try floats.withUnsafeBufferPointer { values in
            Result { () throws(CheckpointError) in try write(name, floats: values, startingAt: 0) }
        }.get()
    }

    /// Writes elements `start ..< start + floats.count` (row-major) of a declared floating-point
    /// tensor, converted as ``write(_:floats:)`` does: a tensor can be streamed in pieces, in any
    /// order, and counts as written once they cover it. Memory: 2²⁰ encoded elements.
    /// - Throws: `unexpectedTensor` for an undeclared or already complete tensor, or a piece that
    ///   overlaps one already written or ends past the tensor; `unsupportedConversion` for an
    ///   integer or BOOL dtype.
    public func write(_ name: String, floats: UnsafeBufferPointer<Float>, startingAt start: Int) throws(CheckpointError) {
        guard file != nil, !finished else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "the writer is already finished")
        }
        guard let index = indexByName[name] else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "was not declared")
        }
        let info = layout[index]
        let dtype = info.dtype
        guard dtype.isFloatingPoint else {
            throw .unsupportedConversion(path: url.path, tensor: name, dtype: dtype, target: "\(dtype.rawValue) from Float")
        }
        guard !written[index] else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "was already written")
        }
        let elements = info.byteCount / dtype.byteSize
        guard start >= 0, floats.count <= elements - start else {
            throw .unexpectedTensor(path: url.path, tensor: name,
                                    reason: "piece of \(floats.count) elements at \(start) is outside its \(elements) elements")
        }
        let range = start ..< start + floats.count
        let position = pieces[index].firstIndex { $0.lowerBound >= range.lowerBound } ?? pieces[index].endIndex
        guard position == pieces[index].startIndex || pieces[index][position - 1].upperBound <= range.lowerBound,
              position == pieces[index].endIndex || range.upperBound <= pieces[index][position].lowerBound
        else {
            throw .unexpectedTensor(path: url.path, tensor: name, reason: "piece \(range) overlaps one already written")
        }
        // Encoded and written 2²⁰ elements at a time: one small buffer, reused, rather than a
        // fresh (page-faulting) copy of the whole piece.
        let step = 1 << 20
        let encoded = UnsafeMutableRawBufferPointer.allocate(byteCount: min(floats.count, step) * dtype.byteSize, alignment: 8)
        defer { encoded.deallocate() }
        for offset in stride(from: 0, to: floats.count, by: step) {
            let count = min(step, floats.count - offset)
            let part = UnsafeMutableRawBufferPointer(rebasing: encoded[0 ..< count * dtype.byteSize])
            ElementConversion.encode(UnsafeBufferPointer(rebasing: floats[offset ..< offset + count]), as: dtype, into: part)
            try file!.write(UnsafeRawBufferPointer(part),
                            at: dataStart + info.dataOffsets.lowerBound + (start + offset) * dtype.byteSize)
        }
        if !range.isEmpty { pieces[index].insert(range, at: position) }
        if pieces[index].reduce(0, { $0 + $1.count }) == elements {
            written[index] = true
            pieces[index] = []
        }
    }

    /// Checks that every declared tensor was written, fsyncs, and renames the temporary file over
    /// `url`. Afterwards the writer accepts nothing more.
    public func finish() throws(CheckpointError) {
        guard let file, !finished else {
            throw .writeFailed(path: url.path, reason: "the writer is already finished")
        }
        let missing = layout.indices.filter { !written[$0] }.map { layout[$0].name }
        guard missing.isEmpty else {
            throw .tensorsNotWritten(path: url.path, tensors: missing.sorted { $0.utf8Precedes($1) })
        }
        self.file = nil
        try file.commit()  // removes the temporary file if it fails
        finished = true
    }

    /// Closes and deletes the temporary file (dropping the writer does the same).
    private func abandon() {
        file?.abandon()
        file = nil
    }
}

extension SafetensorsWriter {
    /// Writes a declared tensor's contents (its declaration must match the one made at `init`).
    public func write(_ tensor: TensorPayload) throws(CheckpointError) {
        let declared = indexByName[tensor.declaration.name].map { layout[$0] }
        precondition(declared == nil || (declared!.dtype == tensor.declaration.dtype && declared!.shape == tensor.declaration.shape),
                     "\(tensor.declaration.name): declared with another dtype or shape")
        switch tensor.contents {
        case .bytes(let bytes): try write(tensor.declaration.name, bytes: bytes)
        case .floats(let values): try write(tensor.declaration.name, floats: values)
        }
    }
}

/// One tensor with its contents, for writing a whole file in one call.
public struct TensorPayload: Sendable {
    public enum Contents: Sendable {
        /// Raw bytes in the declared dtype, row-major, little-endian.
        case bytes([UInt8])
        /// Row-major values converted to the declared floating dtype on writing.
        case floats([Float])
    }

    public let declaration: TensorDeclaration
    public let contents: Contents

    public init(name: String, dtype: DType, shape: [Int], contents: Contents) {
        self.declaration = TensorDeclaration(name: name, dtype: dtype, shape: shape)
        self.contents = contents
    }
}

extension SafetensorsFile {
    /// Writes `tensors` and `metadata` to `url` atomically and deterministically (see
    /// `SafetensorsWriter`). Memory: the payloads plus one encoded tensor.
    public static func write(
        _ tensors: [TensorPayload], metadata: [String: String] = [:], to url: URL
    ) throws(CheckpointError) {
        let writer = try SafetensorsWriter(url: url, tensors: tensors.map(\.declaration), metadata: metadata)
        for tensor in tensors { try writer.write(tensor) }
        try writer.finish()
    }
}
