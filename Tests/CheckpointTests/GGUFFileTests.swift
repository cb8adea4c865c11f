import Foundation
import Testing
import _GGUFTestSupport
@testable import Checkpoint

/// Writes `bytes` to a temporary `crafted.gguf` and opens it.
private func openGGUF(_ bytes: [UInt8]) throws -> Result<GGUFFile, GGUFError> {
    let dir = try TemporaryDirectory()
    defer { dir.cleanup() }
    let url = dir.file("crafted.gguf")
    try Data(bytes).write(to: url)
    do { return .success(try GGUFFile(contentsOf: url)) } catch { return .failure(error) }
}

/// The error opening `bytes` gives; checks that it names the file.
private func ggufError(_ bytes: [UInt8]) throws -> GGUFError? {
    guard case let .failure(error) = try openGGUF(bytes) else { return nil }
    // Every case names the file; check it, then compare the rest with the path normalized.
    let payload = Mirror(reflecting: error).children.first.map { Mirror(reflecting: $0.value) }
    let path = payload?.children.first { $0.label == "path" }?.value as? String
    #expect(path?.hasSuffix("crafted.gguf") == true, "error does not name the file: \(error)")
    #expect(error.description.contains("crafted.gguf"))
    return error
}

private func pathOf(_ error: GGUFError?) -> String {
    guard let error else { return "" }
    let payload = Mirror(reflecting: error).children.first.map { Mirror(reflecting: $0.value) }
    return payload?.children.first { $0.label == "path" }?.value as? String ?? ""
}

private func check(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation, _ expected: (String) -> GGUFError) throws {
    let actual = try ggufError(bytes)
    #expect(actual == expected(pathOf(actual)), "got \(String(describing: actual))", sourceLocation: sourceLocation)
}

@Suite("Reading GGUF files")
struct GGUFFileTests {
    /// Every metadata type, arrays, plain and quantized tensors, and a non-default alignment read
    /// back as written; 2-D `ne` dimensions give the reversed (outermost-first) shape.
    @Test(arguments: [32, 64, 8])
    func roundTrip(alignment: Int) throws {
        var builder = GGUFBuilder(metadata: [
            ("general.type", .string("imatrix")),
            ("general.alignment", .uint32(UInt32(alignment))),
            ("u8", .uint8(200)), ("i8", .int8(-7)), ("u16", .uint16(60000)), ("i16", .int16(-300)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-2_000_000)), ("u64", .uint64(1 << 40)), ("i64", .int64(-(1 << 40))),
            ("f32", .float32(1.5)), ("f64", .float64(-2.25)), ("yes", .bool(true)), ("no", .bool(false)),
            ("名前", .string("ünïcode")),
            ("datasets", .array(elementType: 8, [.string("a.txt"), .string("")])),
            ("sizes", .array(elementType: 4, [.uint32(1), .uint32(2), .uint32(3)])),
            ("empty", .array(elementType: 6, [])),
        ])
        builder.alignment = alignment
        let matrix: [Float] = [1, 2, 3, 4, 5, 6]
        let q8 = (0..<68).map { UInt8($0) }  // two Q8_0 blocks of 34 bytes: 64 elements
        builder.tensors = [
            .f32("vector.in_sum2", [0.5, 1e-20, 3e30]),
            .f32("matrix", matrix, dimensions: [3, 2]),
            GGUFBuilder.Tensor(name: "half", dimensions: [2], type: 1, data: [0x00, 0x3C, 0x00, 0xC0]),  // 1, -2
            GGUFBuilder.Tensor(name: "quantized", dimensions: [64], type: 8, data: q8),
            GGUFBuilder.Tensor(name: "empty", dimensions: [0, 5], type: 0, data: []),
        ]
        let file = try openGGUF(builder.bytes()).get()
        #expect(file.version == 3 && file.alignment == alignment && file.dataStart % alignment == 0)
        #expect(file.metadata.map(\.key) == builder.metadata.map(\.key))
        #expect(file.value("general.type") == .string("imatrix"))
        #expect(file.value("u8") == .uint8(200) && file.value("i8") == .int8(-7))
        #expect(file.value("u16") == .uint16(60000) && file.value("i16") == .int16(-300))
        #expect(file.value("u32") == .uint32(4_000_000_000) && file.value("i32") == .int32(-2_000_000))
        #expect(file.value("u64") == .uint64(1 << 40) && file.value("i64") == .int64(-(1 << 40)))
        #expect(file.value("f32") == .float32(1.5) && file.value("f64") == .float64(-2.25))
        #expect(file.value("yes") == .bool(true) && file.value("no") == .bool(false))
        #expect(file.value("名前")?.stringValue == "ünïcode")
        #expect(file.value("datasets")?.stringArray == ["a.txt", ""])
        #expect(file.value("sizes") == .array(elementType: .uint32, values: [.uint32(1), .uint32(2), .uint32(3)]))
        #expect(file.value("empty") == .array(elementType: .float32, values: []))
        #expect(file.value("missing") == nil)
        #expect(file.value("u32")?.integerValue == 4_000_000_000)

        #expect(file.tensors.map(\.name) == ["vector.in_sum2", "matrix", "half", "quantized", "empty"])
        #expect(file.tensors.map(\.offset) == builder.offsets())
        #expect(try file.floats("vector.in_sum2") == [0.5, 1e-20, 3e30])
        let m = try file.info("matrix")
        #expect(m.dimensions == [3, 2] && m.shape == [2, 3] && m.byteCount == 24 && m.type == .f32)
        #expect(try file.floats("matrix") == matrix)
        #expect(try file.floats("half") == [1, -2])
        let q = try file.info("quantized")
        #expect(q.type.name == "Q8_0" && q.byteCount == 68 && q.elementCount == 64)
        #expect(try file.rawBytes("quantized") == q8)
        #expect(try file.info("empty").byteCount == 0)
    }

    @Test func versionTwoAndNoTensorsAreRead() throws {
        var builder = GGUFBuilder(metadata: [("general.type", .string("x"))])
        builder.version = 2
        let file = try openGGUF(builder.bytes()).get()
        #expect(file.version == 2 && file.tensors.isEmpty && file.metadata.count == 1)
    }

    // MARK: One test per error case

    @Test func fileNotFound() throws {
        let url = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/x.gguf")
        #expect(throws: GGUFError.fileNotFound(path: url.path)) { try GGUFFile(contentsOf: url) }
    }

    @Test func unreadableDirectory() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        #expect(throws: GGUFError.unreadable(path: dir.url.path, reason: "is a directory")) { try GGUFFile(contentsOf: dir.url) }
    }

    @Test func badMagic() throws {
        var builder = GGUFBuilder()
        builder.magic = Array("GGML".utf8)
        try check(builder.bytes()) { .badMagic(path: $0, found: Array("GGML".utf8)) }
        try check([0x47, 0x47]) { .badMagic(path: $0, found: [0x47, 0x47]) }
    }

    @Test func unsupportedVersion() throws {
        for version: UInt32 in [1, 4, 0x0300_0000] {
            var builder = GGUFBuilder()
            builder.version = version
            try check(builder.bytes()) { .unsupportedVersion(path: $0, version: version) }
        }
        #expect(GGUFError.unsupportedVersion(path: "f", version: 0x0300_0000).description.contains("big-endian"))
    }

    @Test func truncatedHeader() throws {
        let builder = GGUFBuilder(metadata: [("k", .uint8(1))], tensors: [.f32("t", [1, 2])])
        try check(Array(builder.bytes().prefix(10))) { .truncatedHeader(path: $0, field: "the tensor count", offset: 8) }
        // Cut inside the tensor info's offset field, the header's last 8 bytes.
        let header = builder.header()
        #expect(header.count % 32 != 0)
        try check(Array(header.dropLast(3))) { .truncatedHeader(path: $0, field: "the offset of tensor 't'", offset: header.count - 8) }
        // Header complete, the data section's padding missing.
        try check(header) { .truncatedHeader(path: $0, field: "the padding before the data section", offset: header.count) }
    }

    @Test func countTooLarge() throws {
        var builder = GGUFBuilder(metadata: [("k", .uint8(1))])
        builder.tensorCountOverride = 1 << 40
        let bytes = builder.bytes()
        try check(bytes) { .countTooLarge(path: $0, field: "the tensor count", count: 1 << 40, limit: (bytes.count - 24) / 24) }
        var many = GGUFBuilder(metadata: [("k", .uint8(1))])
        many.metadataCountOverride = .max
        try check(many.bytes()) { .countTooLarge(path: $0, field: "the metadata count", count: .max, limit: 1) }
    }

    @Test func stringOutOfBounds() throws {
        // A key declaring 1000 bytes with 10 left.
        var bytes = GGUFBuilder().header()
        bytes.replaceSubrange(16..<24, with: le(UInt64(1)))  // one metadata pair
        bytes += le(UInt64(1000)) + Array("general.ty".utf8)
        try check(bytes) { .stringOutOfBounds(path: $0, field: "metadata key 0", length: 1000, remaining: 10) }
    }

    @Test func invalidUTF8() throws {
        let builder = GGUFBuilder(metadata: [("bad", .raw(type: 8, payload: le(UInt64(2)) + [0xC3, 0x28]))])
        try check(builder.bytes()) { .invalidUTF8(path: $0, field: "the value of 'bad'") }
    }

    @Test func duplicateKey() throws {
        let builder = GGUFBuilder(metadata: [("a", .uint8(1)), ("a", .uint8(2))])
        try check(builder.bytes()) { .duplicateKey(path: $0, key: "a") }
    }

    @Test func unknownValueType() throws {
        let builder = GGUFBuilder(metadata: [("weird", .raw(type: 13, payload: [0, 0, 0, 0]))])
        try check(builder.bytes()) { .unknownValueType(path: $0, key: "weird", type: 13) }
        let inArray = GGUFBuilder(metadata: [("weird", .raw(type: 9, payload: le(UInt32(99)) + le(UInt64(0))))])
        try check(inArray.bytes()) { .unknownValueType(path: $0, key: "weird", type: 99) }
    }

    @Test func nestedArray() throws {
        let builder = GGUFBuilder(metadata: [("nested", .array(elementType: 9, [.array(elementType: 0, [.uint8(1)])]))])
        try check(builder.bytes()) { .nestedArray(path: $0, key: "nested") }
    }

    @Test func arrayTooLong() throws {
        let builder = GGUFBuilder(metadata: [("long", .array(elementType: 10, [.uint64(1)], count: 1 << 50))])
        try check(builder.bytes()) { .arrayTooLong(path: $0, key: "long", count: 1 << 50, remaining: 8) }
    }

    @Test func invalidBool() throws {
        let builder = GGUFBuilder(metadata: [("flag", .raw(type: 7, payload: [2]))])
        try check(builder.bytes()) { .invalidBool(path: $0, key: "flag", byte: 2) }
    }

    @Test func invalidAlignment() throws {
        for (value, summary) in [(GGUFBuilder.Value.uint32(24), "UINT32 24"), (.uint32(0), "UINT32 0"), (.uint64(32), "UINT64 32")] {
            let builder = GGUFBuilder(metadata: [("general.alignment", value)])
            try check(builder.bytes()) { .invalidAlignment(path: $0, value: summary) }
        }
    }

    @Test func duplicateTensorName() throws {
        let builder = GGUFBuilder(tensors: [.f32("t", [1]), .f32("t", [2])])
        try check(builder.bytes()) { .duplicateTensorName(path: $0, tensor: "t") }
    }

    @Test func tooManyDimensions() throws {
        let builder = GGUFBuilder(tensors: [GGUFBuilder.Tensor(name: "t", dimensions: [1, 1, 1, 1, 1], data: [0, 0, 0, 0])])
        try check(builder.bytes()) { .tooManyDimensions(path: $0, tensor: "t", count: 5) }
    }

    @Test func dimensionsOverflow() throws {
        for dims: [UInt64] in [[1 << 63], [1 << 32, 1 << 32], [1 << 61, 2]] {
            let builder = GGUFBuilder(tensors: [GGUFBuilder.Tensor(name: "t", dimensions: dims, data: [0, 0, 0, 0])])
            try check(builder.bytes()) { .dimensionsOverflow(path: $0, tensor: "t", dimensions: dims) }
        }
    }

    @Test func unknownTensorType() throws {
        let builder = GGUFBuilder(tensors: [GGUFBuilder.Tensor(name: "t", dimensions: [1], type: 4, data: [0, 0, 0, 0])])
        try check(builder.bytes()) { .unknownTensorType(path: $0, tensor: "t", type: 4) }
    }

    @Test func partialBlock() throws {
        let builder = GGUFBuilder(tensors: [GGUFBuilder.Tensor(name: "t", dimensions: [48], type: 8, data: [UInt8](repeating: 0, count: 68))])
        try check(builder.bytes()) { .partialBlock(path: $0, tensor: "t", type: "Q8_0", rowLength: 48, blockSize: 32) }
    }

    @Test func misalignedTensor() throws {
        var second = GGUFBuilder.Tensor.f32("b", [1])
        second.offsetOverride = 4
        let builder = GGUFBuilder(tensors: [.f32("a", [1]), second])
        try check(builder.bytes()) { .misalignedTensor(path: $0, tensor: "b", offset: 4, alignment: 32) }
    }

    @Test func tensorOutOfBounds() throws {
        let bytes = GGUFBuilder(tensors: [.f32("a", [1, 2, 3])]).bytes()
        // The padded data section holds 32 bytes; cut it to 8.
        try check(Array(bytes.dropLast(24))) { .tensorOutOfBounds(path: $0, tensor: "a", offset: 0, byteCount: 12, dataSize: 8) }
        var far = GGUFBuilder.Tensor.f32("far", [1])
        far.offsetOverride = 1 << 62
        try check(GGUFBuilder(tensors: [far]).bytes()) {
            .tensorOutOfBounds(path: $0, tensor: "far", offset: 1 << 62, byteCount: 4, dataSize: 32)
        }
    }

    @Test func overlappingTensors() throws {
        var b = GGUFBuilder.Tensor.f32("b", [Float](repeating: 1, count: 4))
        b.offsetOverride = 0
        let builder = GGUFBuilder(tensors: [.f32("a", [Float](repeating: 2, count: 16)), b])
        try check(builder.bytes()) { .overlappingTensors(path: $0, tensor: "a", other: "b") }
    }

    @Test func accessErrors() throws {
        let builder = GGUFBuilder(tensors: [GGUFBuilder.Tensor(name: "q", dimensions: [32], type: 8, data: [UInt8](repeating: 0, count: 34))])
        let file = try openGGUF(builder.bytes()).get()
        #expect(throws: GGUFError.tensorNotFound(path: file.url.path, tensor: "nope")) { try file.floats("nope") }
        #expect(throws: GGUFError.unsupportedConversion(path: file.url.path, tensor: "q", type: "Q8_0")) { try file.floats("q") }
    }
}
