import Foundation
import Testing
@testable import Checkpoint

/// Hostile safetensors headers (issue #12, item 4; Fuzz/run.sh fuzzes the same reader): numbers
/// beyond `Int`, names that differ only in their Unicode form, nesting meant to exhaust the
/// stack, empty tensors placed inside others, and empty tensors with a huge dimension. Each is a
/// named `CheckpointError` naming the file and the tensor, or a valid file read without a trap.
@Suite struct HostileHeaderTests {
    func open(_ header: String, data: [UInt8] = []) throws -> Result<SafetensorsFile, CheckpointError> {
        let dir = try TemporaryDirectory()
        let url = dir.file("hostile.safetensors")
        try Data(craftedFile(header: header, data: data)).write(to: url)
        // The mapping outlives the directory: the file stays readable until unmapped.
        defer { dir.cleanup() }
        return Result { () throws(CheckpointError) in try SafetensorsFile(contentsOf: url) }
    }

    func failure(_ header: String, data: [UInt8] = []) throws -> CheckpointError? {
        guard case let .failure(error) = try open(header, data: data) else { return nil }
        #expect(error.description.contains("hostile.safetensors"), "\(error)")
        return error
    }

    @Test("Offsets and dimensions beyond Int are invalid fields, not traps", arguments: [
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}"#, "data_offsets"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[-9223372036854775809,4]}}"#, "data_offsets"),
        (#"{"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,4]}}"#, "shape"),
        (#"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}"#, "shape"),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4e0]}}"#, "data_offsets"),
    ])
    func numbersBeyondInt(header: String, field: String) throws {
        let error = try failure(header, data: [0, 0, 0, 0])
        guard case let .invalidField(_, tensor, found, _)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(tensor == "a" && found == field)
    }

    @Test("A huge dimension times the others overflows: a named error")
    func productOverflow() throws {
        let error = try failure(#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}}"#)
        guard case .sizeOverflow(_, "a")? = error else { Issue.record("got \(String(describing: error))"); return }
    }

    /// `é` precomposed and decomposed are one `String` to Swift: the parser's duplicate check and
    /// the reader's name index must agree, or building the index traps.
    @Test("Names equal as Swift strings but different in bytes are duplicate keys")
    func canonicallyEquivalentNames() throws {
        let header = "{\"caf\u{E9}\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
            + "\"cafe\u{301}\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}"
        let error = try failure(header, data: [1, 2])
        guard case .duplicateHeaderKey? = error else { Issue.record("got \(String(describing: error))"); return }
    }

    @Test("Nesting deeper than 64 levels is refused before it can exhaust the stack")
    func deepNesting() throws {
        let header = #"{"__metadata__":"# + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "}"
        let error = try failure(header)
        guard case let .headerNotJSONObject(_, reason)? = error else { Issue.record("got \(String(describing: error))"); return }
        #expect(reason.contains("nesting deeper than 64"))
    }

    @Test("An empty tensor placed inside another overlaps it")
    func emptyTensorInsideAnother() throws {
        let header = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}"#
        let error = try failure(header, data: [UInt8](repeating: 0, count: 8))
        guard case .overlappingTensors(_, "b", "a")? = error else { Issue.record("got \(String(describing: error))"); return }
    }

    /// Found by review while writing the fuzz harness: `matrixColumnMajor` looped over the rows of
    /// an empty `[2⁴⁰, 0]` matrix, a trillion empty iterations (a hang on a 40-byte file).
    @Test("An empty matrix with a huge dimension reads at once as no values")
    func emptyMatrixWithAHugeDimension() throws {
        let header = #"{"w":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}"#
        let file = try open(header).get()
        let start = Date()
        let matrix = try file.matrixColumnMajor("w")
        #expect(matrix.rows == 1 << 40 && matrix.columns == 0 && matrix.values.isEmpty)
        #expect(Date().timeIntervalSince(start) < 1)
        #expect(try file.floats("w").isEmpty)
    }
}
