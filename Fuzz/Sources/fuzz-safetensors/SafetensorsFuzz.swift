import Checkpoint
import FuzzSupport

/// One input: the bytes of a `.safetensors` file. Opening validates the header (framing, the JSON
/// parser, every entry, the tiling of the data section); a file that opens must then read back
/// every tensor through the mapping in every form the pipeline uses, within the file's bounds.
/// A rejection must be a `CheckpointError` whose message renders.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let input = fuzzInput(data, size)
    let url = Scratch.url("input.safetensors")
    Scratch.write(input, to: url)
    let file: SafetensorsFile
    do { file = try SafetensorsFile(contentsOf: url) } catch {
        precondition(!error.description.isEmpty)
        return 0
    }
    let dataSize = size - file.dataStart
    precondition(file.dataStart >= 8 && dataSize >= 0, "the data section starts past the end")
    var covered = 0
    for tensor in file.tensors {
        precondition(tensor.dataOffsets.lowerBound >= 0 && tensor.dataOffsets.upperBound <= dataSize,
                     "tensor \(tensor.name) lies outside the data section")
        covered += tensor.byteCount
        guard let bytes = try? file.rawBytes(tensor.name) else { preconditionFailure("a listed tensor cannot be read") }
        precondition(bytes.count == tensor.byteCount)
        if tensor.dtype != .bool {
            guard let values = try? file.doubles(tensor.name, allowIntegers: true) else {
                preconditionFailure("tensor \(tensor.name) cannot be converted")
            }
            precondition(values.count == tensor.elementCount)
        }
        if tensor.shape.count == 2, tensor.dtype.isFloatingPoint {
            guard let matrix = try? file.matrixColumnMajor(tensor.name) else { preconditionFailure("matrix \(tensor.name)") }
            precondition(matrix.values.count == tensor.elementCount)
        }
    }
    precondition(covered == dataSize, "the tensors do not tile the data section")
    return 0
}
