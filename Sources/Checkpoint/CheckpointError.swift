/// Everything that can go wrong reading or writing a checkpoint. Every case names the file and,
/// where one is involved, the tensor, so the message tells the user what to fix.
///
/// Paths are stored as strings (the file system path the user gave, resolved by `URL.path`).
public enum CheckpointError: Error, Equatable, Sendable {
    // MARK: Opening a file
    /// The path does not exist.
    case fileNotFound(path: String)
    /// The path exists but could not be read or mapped (permissions, a directory where a file was
    /// expected, an I/O error).
    case unreadable(path: String, reason: String)
    /// The file is shorter than the 8-byte header length prefix.
    case fileTooSmall(path: String, size: Int)

    // MARK: Header framing
    /// The declared header length exceeds the safetensors limit (100 000 000 bytes).
    case headerTooLarge(path: String, headerLength: UInt64, limit: Int)
    /// The declared header length runs past the end of the file: a truncated file.
    case truncatedFile(path: String, headerLength: UInt64, fileSize: Int)
    /// The header bytes are not valid UTF-8.
    case headerNotUTF8(path: String)
    /// The header is not a syntactically valid JSON object (the reason gives the byte position).
    case headerNotJSONObject(path: String, reason: String)
    /// The same key appears twice in the header object.
    case duplicateHeaderKey(path: String, key: String)
    /// `__metadata__` is present but is not an object mapping strings to strings.
    case invalidMetadata(path: String, reason: String)

    // MARK: Tensor entries
    /// A tensor entry is not a JSON object.
    case tensorEntryNotObject(path: String, tensor: String)
    /// A tensor entry lacks `dtype`, `shape` or `data_offsets`.
    case missingField(path: String, tensor: String, field: String)
    /// A field has the wrong JSON type (e.g. `shape` is not an array of non-negative integers).
    case invalidField(path: String, tensor: String, field: String, expected: String)
    /// The dtype string is not one of the supported dtypes.
    case unknownDType(path: String, tensor: String, dtype: String)
    /// A shape dimension is negative.
    case negativeDimension(path: String, tensor: String, shape: [Int])
    /// `data_offsets` has `begin > end`.
    case invertedOffsets(path: String, tensor: String, begin: Int, end: Int)
    /// `data_offsets.end` lies beyond the data section.
    case offsetOutOfBounds(path: String, tensor: String, end: Int, dataSize: Int)
    /// Two tensors share bytes.
    case overlappingTensors(path: String, tensor: String, other: String)
    /// Unused bytes between tensors (the spec requires the data section to be fully covered).
    case gapInData(path: String, before: String, gapStart: Int, gapEnd: Int)
    /// The tensors end before the data section does (unused trailing bytes).
    case trailingBytes(path: String, coveredEnd: Int, dataSize: Int)
    /// `product(shape) × dtype size ≠ end − begin`.
    case sizeMismatch(path: String, tensor: String, expectedBytes: Int, actualBytes: Int)
    /// `product(shape) × dtype size` overflows `Int`.
    case sizeOverflow(path: String, tensor: String)

    // MARK: Access
    /// No tensor of that name in the file or checkpoint.
    case tensorNotFound(path: String, tensor: String)
    /// The requested conversion is not defined for the tensor's dtype (e.g. BOOL to Float, or an
    /// integer dtype without `allowIntegers`).
    case unsupportedConversion(path: String, tensor: String, dtype: DType, target: String)
    /// A matrix was requested from a tensor that is not 2-D.
    case notAMatrix(path: String, tensor: String, shape: [Int])

    // MARK: Checkpoints
    /// A directory holds neither `model.safetensors` nor `model.safetensors.index.json`.
    case noCheckpointInDirectory(path: String)
    /// The index JSON is malformed (not an object, no `weight_map`, a non-string shard name…).
    case invalidIndex(path: String, reason: String)
    /// The index names a shard that does not exist, or a shard path that leaves the directory.
    case missingShard(index: String, shard: String)
    /// The index maps a tensor to a shard that does not contain it.
    case tensorMissingFromShard(index: String, tensor: String, shard: String)
    /// A shard contains a tensor that the index does not map to it.
    case tensorNotInIndex(index: String, tensor: String, shard: String)
    /// The same tensor name occurs in two shards.
    case duplicateTensorAcrossShards(tensor: String, firstShard: String, secondShard: String)

    // MARK: Writing
    /// A tensor name was declared twice, is empty, or is the reserved `__metadata__`.
    case invalidTensorName(path: String, tensor: String, reason: String)
    /// The bytes, values or buffer given do not match the tensor's dtype and shape.
    case payloadMismatch(path: String, tensor: String, expectedBytes: Int, actualBytes: Int)
    /// `write` was called for an undeclared tensor, or twice for the same tensor.
    case unexpectedTensor(path: String, tensor: String, reason: String)
    /// `finish()` was called before every declared tensor was written.
    case tensorsNotWritten(path: String, tensors: [String])
    /// A system call failed while writing (the reason carries `strerror`).
    case writeFailed(path: String, reason: String)
}

extension CheckpointError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .fileNotFound(let path):
            "\(path): no such file or directory"
        case .unreadable(let path, let reason):
            "\(path): cannot read: \(reason)"
        case .fileTooSmall(let path, let size):
            "\(path): file is \(size) bytes, too small for a safetensors header (needs at least 8)"
        case .headerTooLarge(let path, let length, let limit):
            "\(path): header length \(length) exceeds the safetensors limit of \(limit) bytes"
        case .truncatedFile(let path, let length, let size):
            "\(path): truncated file: header length \(length) runs past the end of the \(size)-byte file"
        case .headerNotUTF8(let path):
            "\(path): header is not valid UTF-8"
        case .headerNotJSONObject(let path, let reason):
            "\(path): header is not a JSON object: \(reason)"
        case .duplicateHeaderKey(let path, let key):
            "\(path): header key '\(key)' appears more than once"
        case .invalidMetadata(let path, let reason):
            "\(path): invalid __metadata__: \(reason)"
        case .tensorEntryNotObject(let path, let tensor):
            "\(path): tensor '\(tensor)': entry is not a JSON object"
        case .missingField(let path, let tensor, let field):
            "\(path): tensor '\(tensor)': missing field '\(field)'"
        case .invalidField(let path, let tensor, let field, let expected):
            "\(path): tensor '\(tensor)': field '\(field)' must be \(expected)"
        case .unknownDType(let path, let tensor, let dtype):
            "\(path): tensor '\(tensor)': unknown dtype '\(dtype)' (supported: \(DType.allCases.map(\.rawValue).joined(separator: ", ")))"
        case .negativeDimension(let path, let tensor, let shape):
            "\(path): tensor '\(tensor)': negative dimension in shape \(shape)"
        case .invertedOffsets(let path, let tensor, let begin, let end):
            "\(path): tensor '\(tensor)': data_offsets begin \(begin) is after end \(end)"
        case .offsetOutOfBounds(let path, let tensor, let end, let dataSize):
            "\(path): tensor '\(tensor)': data_offsets end \(end) is beyond the \(dataSize)-byte data section"
        case .overlappingTensors(let path, let tensor, let other):
            "\(path): tensor '\(tensor)' overlaps tensor '\(other)'"
        case .gapInData(let path, let before, let start, let end):
            "\(path): unused bytes [\(start), \(end)) before tensor '\(before)' (the data section must be fully covered)"
        case .trailingBytes(let path, let covered, let size):
            "\(path): tensors cover only \(covered) of the \(size) data bytes (unused trailing bytes)"
        case .sizeMismatch(let path, let tensor, let expected, let actual):
            "\(path): tensor '\(tensor)': shape × dtype size is \(expected) bytes but data_offsets span \(actual) bytes"
        case .sizeOverflow(let path, let tensor):
            "\(path): tensor '\(tensor)': shape × dtype size overflows"
        case .tensorNotFound(let path, let tensor):
            "\(path): no tensor named '\(tensor)'"
        case .unsupportedConversion(let path, let tensor, let dtype, let target):
            "\(path): tensor '\(tensor)': cannot convert \(dtype.rawValue) to \(target)"
        case .notAMatrix(let path, let tensor, let shape):
            "\(path): tensor '\(tensor)': shape \(shape) is not 2-D"
        case .noCheckpointInDirectory(let path):
            "\(path): directory holds neither model.safetensors nor model.safetensors.index.json"
        case .invalidIndex(let path, let reason):
            "\(path): invalid index: \(reason)"
        case .missingShard(let index, let shard):
            "\(index): shard '\(shard)' does not exist in the checkpoint directory"
        case .tensorMissingFromShard(let index, let tensor, let shard):
            "\(index): tensor '\(tensor)' is mapped to shard '\(shard)' but that shard does not contain it"
        case .tensorNotInIndex(let index, let tensor, let shard):
            "\(index): shard '\(shard)' contains tensor '\(tensor)' which the index does not map to it"
        case .duplicateTensorAcrossShards(let tensor, let first, let second):
            "tensor '\(tensor)' occurs in both shard '\(first)' and shard '\(second)'"
        case .invalidTensorName(let path, let tensor, let reason):
            "\(path): invalid tensor name '\(tensor)': \(reason)"
        case .payloadMismatch(let path, let tensor, let expected, let actual):
            "\(path): tensor '\(tensor)': declared dtype and shape need \(expected) bytes but \(actual) were given"
        case .unexpectedTensor(let path, let tensor, let reason):
            "\(path): tensor '\(tensor)': \(reason)"
        case .tensorsNotWritten(let path, let tensors):
            "\(path): declared tensors never written: \(tensors.joined(separator: ", "))"
        case .writeFailed(let path, let reason):
            "\(path): write failed: \(reason)"
        }
    }
}

#if canImport(Foundation)
import Foundation

extension CheckpointError: LocalizedError {
    public var errorDescription: String? { description }
}
#endif
