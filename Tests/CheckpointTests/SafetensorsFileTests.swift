import Foundation
import Testing
@testable import Checkpoint

@Suite("Reading safetensors files")
struct SafetensorsFileTests {
    /// Independent decoding of little-endian element bytes to Double, per dtype.
    static func referenceDecode(_ bytes: [UInt8], dtype: DType) -> [Double] {
        let size = dtype.byteSize
        return stride(from: 0, to: bytes.count, by: size).map { start in
            var raw: UInt64 = 0
            for k in 0..<size { raw |= UInt64(bytes[start + k]) << (8 * UInt64(k)) }
            switch dtype {
            case .f64: return Double(bitPattern: raw)
            case .f32: return Double(Float(bitPattern: UInt32(raw)))
            case .bf16: return Double(Float(bitPattern: UInt32(raw) << 16))
            case .f16:
                // binary16 by its definition: (-1)^s × 2^(e−15) × (1 + m/1024), subnormal 2^−14 × m/1024.
                let s = raw >> 15 & 1, e = Int(raw >> 10 & 0x1F), m = Double(raw & 0x3FF)
                let sign: Double = s == 1 ? -1 : 1
                if e == 0 { return sign * m / 1024 * 0x1p-14 }
                if e == 31 { return m == 0 ? sign * .infinity : .nan }
                return sign * (1 + m / 1024) * Double(sign: .plus, exponent: e - 15, significand: 1)
            case .i64: return Double(Int64(bitPattern: raw))
            case .i32: return Double(Int32(truncatingIfNeeded: raw))
            case .i16: return Double(Int16(truncatingIfNeeded: raw))
            case .i8: return Double(Int8(truncatingIfNeeded: raw))
            case .u8: return Double(raw)
            case .bool: return Double(raw)
            }
        }
    }

    static func randomBytes(count: Int, dtype: DType, generator: inout SplitMix64) -> [UInt8] {
        var bytes = (0..<count).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        if dtype == .bool { bytes = bytes.map { $0 & 1 } }
        return bytes
    }

    /// Reads release the pages they touched (MADV_DONTNEED): bytes must read back the same after a
    /// release, including a page shared with a tensor whose read is still in progress.
    @Test func readsSurviveReleasedPages() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var generator = SplitMix64(seed: 99)
        let sizes = ["a": 3 * 4096 + 7, "b": 5, "c": 2 * 4096 + 1]  // unaligned, sharing pages
        let contents = sizes.mapValues { Self.randomBytes(count: $0, dtype: .u8, generator: &generator) }
        let url = dir.file("pages.safetensors")
        try SafetensorsFile.write(contents.keys.sorted().map {
            TensorPayload(name: $0, dtype: .u8, shape: [contents[$0]!.count], contents: .bytes(contents[$0]!))
        }, to: url)
        let file = try SafetensorsFile(contentsOf: url)
        for name in ["a", "b", "c", "c", "a", "b"] { #expect(try file.rawBytes(name) == contents[name]) }
        let nested = try file.withRawBytes(of: "a") { a in
            let inner = try file.withRawBytes(of: "b") { [UInt8]($0) }
            return (outer: [UInt8](a), inner: inner)
        }
        #expect(nested.outer == contents["a"] && nested.inner == contents["b"])
        let checkpoint = try Checkpoint(at: url)
        #expect(try checkpoint.withRawBytes(of: "c") { [UInt8]($0) } == contents["c"])
    }

    @Test("Every dtype round-trips through the writer and reader", arguments: DType.allCases)
    func roundTrip(dtype: DType) throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var generator = SplitMix64(seed: 1234)
        let shape = [3, 5]
        let bytes = Self.randomBytes(count: 15 * dtype.byteSize, dtype: dtype, generator: &generator)
        let scalar = Self.randomBytes(count: dtype.byteSize, dtype: dtype, generator: &generator)
        let url = dir.file("t.safetensors")
        try SafetensorsFile.write([
            TensorPayload(name: "w", dtype: dtype, shape: shape, contents: .bytes(bytes)),
            TensorPayload(name: "s", dtype: dtype, shape: [], contents: .bytes(scalar)),
            TensorPayload(name: "empty", dtype: dtype, shape: [0, 4], contents: .bytes([])),
        ], metadata: ["format": "pt"], to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.tensors.map(\.name) == ["empty", "s", "w"])
        #expect(file.metadata == ["format": "pt"])
        let info = try file.info("w")
        #expect(info.dtype == dtype && info.shape == shape && info.byteCount == bytes.count)
        #expect(try file.rawBytes("w") == bytes)
        #expect(try file.rawBytes("s") == scalar)
        #expect(try file.info("s").elementCount == 1)
        #expect(try file.rawBytes("empty") == [])

        let reference = Self.referenceDecode(bytes, dtype: dtype)
        if dtype == .bool {
            #expect(throws: CheckpointError.unsupportedConversion(path: url.path, tensor: "w", dtype: .bool, target: "Float")) {
                try file.floats("w", allowIntegers: true)
            }
        } else if dtype.isFloatingPoint {
            let doubles = try file.doubles("w")
            let floats = try file.floats("w")
            for i in reference.indices {
                if reference[i].isNaN {
                    #expect(doubles[i].isNaN && floats[i].isNaN)
                } else {
                    #expect(doubles[i] == reference[i], "element \(i)")
                    #expect(floats[i] == Float(reference[i]), "element \(i)")
                }
            }
        } else {
            #expect(throws: CheckpointError.unsupportedConversion(path: url.path, tensor: "w", dtype: dtype, target: "Float")) {
                try file.floats("w")
            }
            #expect(try file.doubles("w", allowIntegers: true) == reference)
            #expect(try file.floats("w", allowIntegers: true) == reference.map { Float($0) })
        }
    }

    @Test("Floats written as F16/BF16/F32/F64 read back rounded to nearest even")
    func floatWriting() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        var generator = SplitMix64(seed: 99)
        let values = (0..<64).map { _ in Float(Double(generator.next() % 2_000_000) / 1000 - 1000) } + [0, -0.0, .infinity, .nan]
        let url = dir.file("f.safetensors")
        let dtypes: [DType] = [.f64, .f32, .f16, .bf16]
        try SafetensorsFile.write(
            dtypes.map { TensorPayload(name: $0.rawValue, dtype: $0, shape: [values.count], contents: .floats(values)) }, to: url)
        let file = try SafetensorsFile(contentsOf: url)
        for dtype in dtypes {
            let read = try file.floats(dtype.rawValue)
            for (value, back) in zip(values, read) {
                let expected: Float = switch dtype {
                case .f16: ScalarConversion.float(fromFloat16: ScalarConversion.float16Bits(from: value))
                case .bf16: ScalarConversion.float(fromBFloat16: ScalarConversion.bfloat16Bits(from: value))
                default: value
                }
                if value.isNaN { #expect(back.isNaN) } else { #expect(back.bitPattern == expected.bitPattern) }
                // Relative error of the 16-bit formats is at most half an ulp: 2^-11 (F16), 2^-8 (BF16).
                if value.isFinite && value != 0 && dtype == .bf16 {
                    #expect(abs(Double(back) - Double(value)) <= abs(Double(value)) * 0x1p-8)
                }
            }
        }
    }

    @Test("A tensor at an odd byte offset is read correctly")
    func unalignedTensor() throws {
        // Data: one U8 byte, then an F32 [3] at data offset 1, then a BF16 [2] at offset 13.
        let floats: [Float] = [1.5, -2.25, 1e-30]
        let bf16: [UInt16] = [0x3F80, 0xC040]
        let data: [UInt8] = [7] + littleEndianBytes(floats.map(\.bitPattern)) + littleEndianBytes(bf16)
        var header = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"#
            + #""b":{"dtype":"F32","shape":[3],"data_offsets":[1,13]},"#
            + #""c":{"dtype":"BF16","shape":[2],"data_offsets":[13,17]}}"#
        if (8 + header.utf8.count) % 2 == 0 { header += " " }  // make the data section start odd
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let url = dir.file("odd.safetensors")
        try Data(craftedFile(header: header, data: data)).write(to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.dataStart % 2 == 1)
        #expect(try file.floats("b") == floats)
        #expect(try file.doubles("b") == floats.map(Double.init))
        #expect(try file.floats("c") == [1, -3])
        #expect(try file.floats("a", allowIntegers: true) == [7])
        var buffer = [Float](repeating: .nan, count: 3)
        try buffer.withUnsafeMutableBufferPointer { try file.readFloats("b", into: $0) }
        #expect(buffer == floats)
        var doubles = [Double](repeating: .nan, count: 2)
        try doubles.withUnsafeMutableBufferPointer { try file.readDoubles("c", into: $0) }
        #expect(doubles == [1, -3])
        var wrongSize = [Float](repeating: 0, count: 2)
        #expect(throws: CheckpointError.payloadMismatch(path: url.path, tensor: "b", expectedBytes: 12, actualBytes: 8)) {
            try wrongSize.withUnsafeMutableBufferPointer { try file.readFloats("b", into: $0) }
        }
    }

    @Test("A 2-D [out, in] tensor becomes a column-major out × in matrix")
    func columnMajor() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let (rows, columns) = (3, 4)
        // Row-major W[r][c] = 10 r + c.
        let rowMajor = (0..<rows).flatMap { r in (0..<columns).map { c in Float(10 * r + c) } }
        let url = dir.file("m.safetensors")
        try SafetensorsFile.write([
            TensorPayload(name: "w", dtype: .f32, shape: [rows, columns], contents: .floats(rowMajor)),
            TensorPayload(name: "v", dtype: .f32, shape: [4], contents: .floats([1, 2, 3, 4])),
        ], to: url)
        let matrix = try Checkpoint(at: url).matrixColumnMajor("w")
        #expect(matrix.rows == rows && matrix.columns == columns)
        for r in 0..<rows {
            for c in 0..<columns { #expect(matrix.values[r + c * rows] == Float(10 * r + c)) }
        }
        #expect(throws: CheckpointError.notAMatrix(path: url.path, tensor: "v", shape: [4])) {
            try Checkpoint(at: url).matrixColumnMajor("v")
        }
        #expect(throws: CheckpointError.tensorNotFound(path: url.path, tensor: "nope")) {
            try SafetensorsFile(contentsOf: url).floats("nope")
        }
    }

    @Test("An empty header with no data is a valid file")
    func emptyFile() throws {
        #expect(try openError(craftedFile(header: "{}      ", data: [])) == nil)
    }
}

@Suite("Rejecting malformed safetensors files")
struct MalformedHeaderTests {
    static let f32One = #"{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#

    /// The error from opening a crafted file, after checking that it names the file.
    func error(header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) throws -> CheckpointError? {
        try openError(craftedFile(header: header, data: data, declaredLength: declaredLength)).map(Self.checkNamesFile)
    }

    static func checkNamesFile(_ error: CheckpointError) -> CheckpointError {
        // Every header error names the file; check it is there, then compare the rest.
        let mirror = Mirror(reflecting: error)
        let payload = mirror.children.first.map { Mirror(reflecting: $0.value) }
        let path = payload?.children.first { $0.label == "path" }?.value as? String
        #expect(path?.hasSuffix("crafted.safetensors") == true, "error does not name the file: \(error)")
        return error
    }

    func path(of error: CheckpointError?) -> String {
        guard let error else { return "" }
        let payload = Mirror(reflecting: error).children.first.map { Mirror(reflecting: $0.value) }
        return payload?.children.first { $0.label == "path" }?.value as? String ?? ""
    }

    func check(_ actual: CheckpointError?, _ expected: (String) -> CheckpointError) {
        #expect(actual == expected(path(of: actual)), "got \(String(describing: actual))")
    }

    @Test func fileTooSmall() throws {
        check(try openError([1, 2, 3, 4, 5])) { .fileTooSmall(path: $0, size: 5) }
    }

    @Test func headerTooLarge() throws {
        check(try error(header: "{}", declaredLength: 200_000_000)) {
            .headerTooLarge(path: $0, headerLength: 200_000_000, limit: 100_000_000)
        }
    }

    @Test func truncatedHeader() throws {
        check(try error(header: "{}", declaredLength: 100)) { .truncatedFile(path: $0, headerLength: 100, fileSize: 10) }
    }

    @Test func truncatedData() throws {
        // A valid file with its last two bytes cut off: the last tensor runs past the end.
        let full = craftedFile(header: #"{"a":"# + Self.f32One + "}", data: [0, 0, 128, 63])
        check(try openError(Array(full.dropLast(2)))) { .offsetOutOfBounds(path: $0, tensor: "a", end: 4, dataSize: 2) }
    }

    @Test func notUTF8() throws {
        check(try openError(craftedFile(headerBytes: [0x7B, 0x22, 0xFF, 0x22, 0x7D], data: []))) { .headerNotUTF8(path: $0) }
    }

    @Test func notAnObject() throws {
        let notObject = try error(header: "[1, 2]")
        guard case .headerNotJSONObject = notObject else { Issue.record("got \(String(describing: notObject))"); return }
        let syntax = try error(header: #"{"a": "#)
        guard case .headerNotJSONObject = syntax else { Issue.record("got \(String(describing: syntax))"); return }
        let trailing = try error(header: "{} x")
        guard case .headerNotJSONObject = trailing else { Issue.record("got \(String(describing: trailing))"); return }
    }

    @Test func duplicateKey() throws {
        check(try error(header: #"{"a":"# + Self.f32One + #","a":"# + Self.f32One + "}", data: [0, 0, 0, 0])) {
            .duplicateHeaderKey(path: $0, key: "a")
        }
    }

    @Test func invalidMetadata() throws {
        let nonString = try error(header: #"{"__metadata__":{"k":1}}"#)
        guard case .invalidMetadata = nonString else { Issue.record("got \(String(describing: nonString))"); return }
        let nonObject = try error(header: #"{"__metadata__":"x"}"#)
        guard case .invalidMetadata = nonObject else { Issue.record("got \(String(describing: nonObject))"); return }
    }

    @Test func entryNotObject() throws {
        check(try error(header: #"{"a":5}"#)) { .tensorEntryNotObject(path: $0, tensor: "a") }
    }

    @Test("Missing fields", arguments: ["dtype", "shape", "data_offsets"])
    func missingField(field: String) throws {
        var fields = [#""dtype":"F32""#, #""shape":[1]"#, #""data_offsets":[0,4]"#]
        fields.removeAll { $0.hasPrefix("\"\(field)\"") }
        check(try error(header: #"{"a":{"# + fields.joined(separator: ",") + "}}", data: [0, 0, 0, 0])) {
            .missingField(path: $0, tensor: "a", field: field)
        }
    }

    static let wrongTypes: [(String, String)] = [
        (#"{"dtype":3,"shape":[1],"data_offsets":[0,4]}"#, "dtype"),
        (#"{"dtype":"F32","shape":"1","data_offsets":[0,4]}"#, "shape"),
        (#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}"#, "shape"),
        (#"{"dtype":"F32","shape":[1],"data_offsets":[0]}"#, "data_offsets"),
        (#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}"#, "data_offsets"),
        (#"{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}"#, "data_offsets"),
        (#"{"dtype":"F32","shape":[1],"data_offsets":"0-4"}"#, "data_offsets"),
    ]

    @Test("Fields of the wrong type", arguments: wrongTypes)
    func invalidField(entry: String, field: String) throws {
        let actual = try error(header: #"{"a":"# + entry + "}", data: [0, 0, 0, 0])
        guard case .invalidField(_, "a", field, _) = actual else { Issue.record("got \(String(describing: actual))"); return }
    }

    @Test func unknownDType() throws {
        check(try error(header: #"{"w":{"dtype":"Q4","shape":[1],"data_offsets":[0,1]}}"#, data: [0])) {
            .unknownDType(path: $0, tensor: "w", dtype: "Q4")
        }
    }

    @Test func negativeDimension() throws {
        check(try error(header: #"{"w":{"dtype":"F32","shape":[2,-1],"data_offsets":[0,0]}}"#)) {
            .negativeDimension(path: $0, tensor: "w", shape: [2, -1])
        }
    }

    @Test func invertedOffsets() throws {
        check(try error(header: #"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, data: [0, 0, 0, 0])) {
            .invertedOffsets(path: $0, tensor: "w", begin: 4, end: 0)
        }
    }

    @Test func offsetOutOfBounds() throws {
        check(try error(header: #"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: [0, 0, 0, 0])) {
            .offsetOutOfBounds(path: $0, tensor: "w", end: 8, dataSize: 4)
        }
    }

    @Test func overlapping() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#
        check(try error(header: header, data: Array(repeating: 0, count: 6))) {
            .overlappingTensors(path: $0, tensor: "b", other: "a")
        }
    }

    @Test func gap() throws {
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        check(try error(header: header, data: Array(repeating: 0, count: 12))) {
            .gapInData(path: $0, before: "b", gapStart: 4, gapEnd: 8)
        }
    }

    @Test func trailingBytes() throws {
        check(try error(header: #"{"a":"# + Self.f32One + "}", data: Array(repeating: 0, count: 8))) {
            .trailingBytes(path: $0, coveredEnd: 4, dataSize: 8)
        }
    }

    @Test func sizeMismatch() throws {
        check(try error(header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) {
            .sizeMismatch(path: $0, tensor: "a", expectedBytes: 8, actualBytes: 4)
        }
    }

    @Test func sizeOverflow() throws {
        check(try error(header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0])) {
            .sizeOverflow(path: $0, tensor: "a")
        }
    }

    @Test func missingFile() throws {
        let url = URL(fileURLWithPath: "/nonexistent-dir-\(UUID().uuidString)/x.safetensors")
        #expect(throws: CheckpointError.fileNotFound(path: url.path)) { try SafetensorsFile(contentsOf: url) }
        #expect(CheckpointError.fileNotFound(path: url.path).description.contains(url.path))
    }

    @Test("Messages name the file and the tensor")
    func messages() {
        let error = CheckpointError.sizeMismatch(path: "/m/x.safetensors", tensor: "layer.0.w", expectedBytes: 8, actualBytes: 4)
        #expect(error.description.contains("/m/x.safetensors"))
        #expect(error.description.contains("layer.0.w"))
        #expect(error.localizedDescription == error.description)
    }
}
