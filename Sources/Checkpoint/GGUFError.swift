/// Everything that can be wrong with a GGUF file. Every case names the file and the field, key or
/// tensor at fault; `GGUFFile` checks each before it trusts a byte of the header.
public enum GGUFError: Error, Equatable, Sendable {
    // MARK: Opening
    case fileNotFound(path: String)
    /// The path exists but could not be read or mapped.
    case unreadable(path: String, reason: String)

    // MARK: Header
    /// The first four bytes are not `GGUF`.
    case badMagic(path: String, found: [UInt8])
    /// A version this reader does not know (it reads 2 and 3; a huge version is usually a
    /// big-endian file, which it does not read either).
    case unsupportedVersion(path: String, version: UInt32)
    /// The file ends inside `field`, which starts at byte `offset`.
    case truncatedHeader(path: String, field: String, offset: Int)
    /// A tensor or metadata count larger than the rest of the file could hold.
    case countTooLarge(path: String, field: String, count: UInt64, limit: Int)
    /// A string's declared length runs past the end of the file.
    case stringOutOfBounds(path: String, field: String, length: UInt64, remaining: Int)
    case invalidUTF8(path: String, field: String)

    // MARK: Metadata
    case duplicateKey(path: String, key: String)
    /// A value type outside the 13 the format defines.
    case unknownValueType(path: String, key: String, type: UInt32)
    /// An array of arrays (the spec allows them, llama.cpp's reader refuses them, and so do we).
    case nestedArray(path: String, key: String)
    /// An array with more elements than the rest of the file could hold.
    case arrayTooLong(path: String, key: String, count: UInt64, remaining: Int)
    /// A BOOL byte other than 0 or 1.
    case invalidBool(path: String, key: String, byte: UInt8)
    /// `general.alignment` is not a UINT32 power of two.
    case invalidAlignment(path: String, value: String)

    // MARK: Tensor infos
    case duplicateTensorName(path: String, tensor: String)
    /// More than 4 dimensions (GGML_MAX_DIMS).
    case tooManyDimensions(path: String, tensor: String, count: UInt32)
    /// A dimension, the element count or the byte size does not fit in a signed 64-bit integer.
    case dimensionsOverflow(path: String, tensor: String, dimensions: [UInt64])
    /// A ggml type id this reader cannot size.
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    /// A block-quantized tensor whose rows (ne[0]) are not whole blocks.
    case partialBlock(path: String, tensor: String, type: String, rowLength: Int, blockSize: Int)
    /// The tensor's offset is not a multiple of the file's alignment.
    case misalignedTensor(path: String, tensor: String, offset: UInt64, alignment: Int)
    /// The tensor's bytes run past the end of the data section.
    case tensorOutOfBounds(path: String, tensor: String, offset: UInt64, byteCount: Int, dataSize: Int)
    /// Two tensors share bytes.
    case overlappingTensors(path: String, tensor: String, other: String)

    // MARK: Access
    case tensorNotFound(path: String, tensor: String)
    /// Values were requested as floats from a tensor of another type (a quantized one, say).
    case unsupportedConversion(path: String, tensor: String, type: String)
}

extension GGUFError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .fileNotFound(path): "\(path): no such file"
        case let .unreadable(path, reason): "\(path): cannot read: \(reason)"
        case let .badMagic(path, found):
            "\(path): not a GGUF file (it starts with \(found.map { String(format: "%02x", $0) }.joined(separator: " ")), not 'GGUF')"
        case let .unsupportedVersion(path, version):
            "\(path): GGUF version \(version) is not supported (this reader reads versions 2 and 3"
                + (version & 0xFFFF == 0 ? "; the version looks byte-swapped: a big-endian file?)" : ")")
        case let .truncatedHeader(path, field, offset): "\(path): truncated header: the file ends inside \(field) at byte \(offset)"
        case let .countTooLarge(path, field, count, limit):
            "\(path): \(field) is \(count), but the rest of the file can hold at most \(limit)"
        case let .stringOutOfBounds(path, field, length, remaining):
            "\(path): \(field) declares a string of \(length) bytes, but only \(remaining) bytes remain"
        case let .invalidUTF8(path, field): "\(path): \(field) is not valid UTF-8"
        case let .duplicateKey(path, key): "\(path): metadata key '\(key)' appears more than once"
        case let .unknownValueType(path, key, type): "\(path): metadata '\(key)' has unknown value type \(type)"
        case let .nestedArray(path, key): "\(path): metadata '\(key)' is an array of arrays, which is not supported"
        case let .arrayTooLong(path, key, count, remaining):
            "\(path): metadata '\(key)' declares \(count) array elements, more than the \(remaining) remaining bytes can hold"
        case let .invalidBool(path, key, byte): "\(path): metadata '\(key)' is a BOOL with byte \(byte) (must be 0 or 1)"
        case let .invalidAlignment(path, value):
            "\(path): general.alignment must be a UINT32 power of two, got \(value)"
        case let .duplicateTensorName(path, tensor): "\(path): tensor '\(tensor)' is declared more than once"
        case let .tooManyDimensions(path, tensor, count): "\(path): tensor '\(tensor)' has \(count) dimensions (at most 4)"
        case let .dimensionsOverflow(path, tensor, dimensions):
            "\(path): tensor '\(tensor)': dimensions \(dimensions) overflow a 64-bit size"
        case let .unknownTensorType(path, tensor, type): "\(path): tensor '\(tensor)' has unknown ggml type \(type)"
        case let .partialBlock(path, tensor, type, rowLength, blockSize):
            "\(path): tensor '\(tensor)' of type \(type) has rows of \(rowLength) elements, not a multiple of its block size \(blockSize)"
        case let .misalignedTensor(path, tensor, offset, alignment):
            "\(path): tensor '\(tensor)' starts at data offset \(offset), not a multiple of the alignment \(alignment)"
        case let .tensorOutOfBounds(path, tensor, offset, byteCount, dataSize):
            "\(path): tensor '\(tensor)' (\(byteCount) bytes at data offset \(offset)) runs past the \(dataSize)-byte data section"
        case let .overlappingTensors(path, tensor, other): "\(path): tensor '\(tensor)' overlaps tensor '\(other)'"
        case let .tensorNotFound(path, tensor): "\(path): no tensor named '\(tensor)'"
        case let .unsupportedConversion(path, tensor, type):
            "\(path): tensor '\(tensor)' is \(type); only F32, F16, BF16 and F64 tensors can be read as numbers"
        }
    }
}

#if canImport(Foundation)
import Foundation

extension GGUFError: LocalizedError {
    public var errorDescription: String? { description }
}
#endif
