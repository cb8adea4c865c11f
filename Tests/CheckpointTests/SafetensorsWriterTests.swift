import Foundation
import Testing
@testable import Checkpoint

@Suite("Writing safetensors files")
struct SafetensorsWriterTests {
    static func sampleTensors(reversed: Bool = false) -> [TensorPayload] {
        var generator = SplitMix64(seed: 5)
        let tensors = [
            TensorPayload(name: "z.bias", dtype: .bf16, shape: [3], contents: .floats([1, 2, 3])),
            TensorPayload(name: "a.weight", dtype: .f32, shape: [2, 3], contents: .floats([1, 2, 3, 4, 5, 6])),
            TensorPayload(name: "mask", dtype: .bool, shape: [5], contents: .bytes([1, 0, 1, 1, 0])),
            TensorPayload(name: "ids", dtype: .i64, shape: [2],
                          contents: .bytes((0..<16).map { _ in UInt8(truncatingIfNeeded: generator.next()) })),
            TensorPayload(name: "ü.half", dtype: .f16, shape: [1, 1], contents: .floats([0.5])),
        ]
        return reversed ? tensors.reversed() : tensors
    }

    @Test("The same input gives byte-identical files, whatever the declaration order")
    func deterministic() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let metadata = ["format": "pt", "b": "2", "a": "\"quoted\"\n"]
        try SafetensorsFile.write(Self.sampleTensors(), metadata: metadata, to: dir.file("one.safetensors"))
        try SafetensorsFile.write(Self.sampleTensors(reversed: true), metadata: metadata, to: dir.file("two.safetensors"))
        let one = try Data(contentsOf: dir.file("one.safetensors"))
        let two = try Data(contentsOf: dir.file("two.safetensors"))
        #expect(one == two)
        #expect(try dir.contents() == ["one.safetensors", "two.safetensors"])  // no temporary files left
        let file = try SafetensorsFile(contentsOf: dir.file("one.safetensors"))
        #expect(file.metadata == metadata)
        #expect(file.tensors.map(\.name) == ["a.weight", "ids", "mask", "z.bias", "ü.half"])
    }

    @Test("Header is space-padded to a multiple of 8 and every tensor is naturally aligned")
    func alignment() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("a.safetensors")
        try SafetensorsFile.write(Self.sampleTensors(), to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.headerLength % 8 == 0)
        #expect(file.dataStart % 8 == 0)
        for tensor in file.tensors {
            #expect((file.dataStart + tensor.dataOffsets.lowerBound) % tensor.dtype.byteSize == 0, "\(tensor.name)")
        }
        let bytes = try Data(contentsOf: url)
        let header = String(decoding: bytes[8 ..< 8 + file.headerLength], as: UTF8.self)
        #expect(header.hasPrefix("{\"a.weight\""))
        #expect(header.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
    }

    @Test("A streaming writer accepts tensors in any order")
    func streamingAnyOrder() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("s.safetensors")
        let writer = try SafetensorsWriter(url: url, tensors: [
            TensorDeclaration(name: "a", dtype: .f32, shape: [2]),
            TensorDeclaration(name: "b", dtype: .u8, shape: [3]),
            TensorDeclaration(name: "c", dtype: .f64, shape: [1]),
        ])
        try writer.write("b", bytes: [9, 8, 7])
        try writer.write("c", floats: [0.1])
        try writer.write("a", floats: [1, 2])
        #expect(!FileManager.default.fileExists(atPath: url.path))  // nothing published before finish
        try writer.finish()
        let file = try SafetensorsFile(contentsOf: url)
        #expect(try file.rawBytes("b") == [9, 8, 7])
        #expect(try file.doubles("c") == [Double(Float(0.1))])
        #expect(try file.floats("a") == [1, 2])
        #expect(try dir.contents() == ["s.safetensors"])
    }

    @Test("A tensor streamed in pieces, in any order, gives the bytes of a whole write; overlaps and gaps are refused")
    func pieces() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let values: [Float] = (0..<10).map { Float($0) * 1.25 - 3 }
        let declarations = [TensorDeclaration(name: "w", dtype: .bf16, shape: [2, 5]), TensorDeclaration(name: "e", dtype: .f32, shape: [0])]
        let whole = try SafetensorsWriter(url: dir.file("whole.safetensors"), tensors: declarations)
        try whole.write("w", floats: values)
        try whole.write("e", floats: [])
        try whole.finish()
        let url = dir.file("pieces.safetensors")
        let path = url.path
        let writer = try SafetensorsWriter(url: url, tensors: declarations)
        func piece(_ range: Range<Int>, _ writer: SafetensorsWriter) throws {
            try values[range].withUnsafeBufferPointer { try writer.write("w", floats: $0, startingAt: range.lowerBound) }
        }
        try piece(6..<10, writer)
        try piece(0..<2, writer)
        #expect(throws: CheckpointError.unexpectedTensor(path: path, tensor: "w", reason: "piece 1..<7 overlaps one already written")) {
            try piece(1..<7, writer)
        }
        #expect(throws: CheckpointError.unexpectedTensor(path: path, tensor: "w", reason: "piece of 4 elements at 8 is outside its 10 elements")) {
            try values[0..<4].withUnsafeBufferPointer { try writer.write("w", floats: $0, startingAt: 8) }
        }
        try [Float]().withUnsafeBufferPointer { try writer.write("e", floats: $0, startingAt: 0) }
        #expect(throws: CheckpointError.tensorsNotWritten(path: path, tensors: ["w"])) { try writer.finish() }
        let retry = try SafetensorsWriter(url: url, tensors: declarations)
        for range in [6..<10, 2..<6, 0..<2] { try piece(range, retry) }
        try retry.write("e", floats: [])
        #expect(throws: CheckpointError.unexpectedTensor(path: path, tensor: "w", reason: "was already written")) { try piece(0..<1, retry) }
        try retry.finish()
        #expect(try Data(contentsOf: url) == Data(contentsOf: dir.file("whole.safetensors")))
    }

    @Test("Writer errors name the tensor, and an abandoned writer leaves nothing behind")
    func writerErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("e.safetensors")
        let path = url.path
        #expect(throws: CheckpointError.invalidTensorName(path: path, tensor: "a", reason: "declared twice")) {
            try SafetensorsWriter(url: url, tensors: [
                TensorDeclaration(name: "a", dtype: .f32, shape: [1]), TensorDeclaration(name: "a", dtype: .f32, shape: [1]),
            ])
        }
        #expect(throws: CheckpointError.invalidTensorName(path: path, tensor: "__metadata__", reason: "reserved for metadata")) {
            try SafetensorsWriter(url: url, tensors: [TensorDeclaration(name: "__metadata__", dtype: .f32, shape: [1])])
        }
        do {
            let writer = try SafetensorsWriter(url: url, tensors: [
                TensorDeclaration(name: "a", dtype: .f32, shape: [2]), TensorDeclaration(name: "n", dtype: .i32, shape: [1]),
            ])
            #expect(throws: CheckpointError.payloadMismatch(path: path, tensor: "a", expectedBytes: 8, actualBytes: 12)) {
                try writer.write("a", floats: [1, 2, 3])
            }
            #expect(throws: CheckpointError.unsupportedConversion(path: path, tensor: "n", dtype: .i32, target: "I32 from Float")) {
                try writer.write("n", floats: [1])
            }
            #expect(throws: CheckpointError.unexpectedTensor(path: path, tensor: "x", reason: "was not declared")) {
                try writer.write("x", bytes: [])
            }
            try writer.write("a", floats: [1, 2])
            #expect(throws: CheckpointError.unexpectedTensor(path: path, tensor: "a", reason: "was already written")) {
                try writer.write("a", floats: [1, 2])
            }
            #expect(throws: CheckpointError.tensorsNotWritten(path: path, tensors: ["n"])) { try writer.finish() }
            #expect(try dir.contents().count == 1)  // only the temporary file while the writer lives
        }
        #expect(try dir.contents() == [])  // the abandoned writer removed its temporary file
    }

    @Test("Sharded writer rejects duplicate names")
    func shardedDuplicates() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let declaration = TensorDeclaration(name: "w", dtype: .f32, shape: [1])
        #expect(throws: CheckpointError.invalidTensorName(path: dir.url.path, tensor: "w", reason: "declared twice")) {
            try ShardedCheckpointWriter(directory: dir.url, tensors: [declaration, declaration], maxShardBytes: 4)
        }
        #expect(try dir.contents() == [])
    }

    @Test("Rewriting replaces the file atomically")
    func replace() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("r.safetensors")
        try SafetensorsFile.write([TensorPayload(name: "x", dtype: .f32, shape: [1], contents: .floats([1]))], to: url)
        try SafetensorsFile.write([TensorPayload(name: "y", dtype: .f32, shape: [1], contents: .floats([2]))], to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.tensors.map(\.name) == ["y"])
        #expect(try dir.contents() == ["r.safetensors"])
    }
}
