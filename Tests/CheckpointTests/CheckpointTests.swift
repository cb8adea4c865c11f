import Foundation
import Testing
@testable import Checkpoint

@Suite("Checkpoints: single files, directories, sharded indexes")
struct CheckpointTests {
    static let declarations = [
        TensorDeclaration(name: "layers.0.w", dtype: .f32, shape: [4, 4]),  // 64 bytes
        TensorDeclaration(name: "layers.1.w", dtype: .f32, shape: [4, 4]),  // 64
        TensorDeclaration(name: "embed", dtype: .bf16, shape: [10, 4]),  // 80
        TensorDeclaration(name: "norm", dtype: .f16, shape: [4]),  // 8
        TensorDeclaration(name: "head", dtype: .f32, shape: [2, 4]),  // 32
    ]

    static func values(for declaration: TensorDeclaration) -> [Float] {
        let count = declaration.shape.reduce(1, *)
        let seed = declaration.name.utf8.reduce(0) { $0 &* 31 &+ Int($1) }
        return (0..<count).map { Float((seed + $0) % 97) / 8 }  // exact in F16 and BF16
    }

    static func writeSharded(to directory: URL, maxShardBytes: Int) throws -> ShardedCheckpointWriter {
        let writer = try ShardedCheckpointWriter(
            directory: directory, tensors: declarations, maxShardBytes: maxShardBytes, metadata: ["format": "pt"])
        for declaration in declarations.reversed() {
            try writer.write(declaration.name, floats: values(for: declaration))
        }
        try writer.finish()
        return writer
    }

    @Test("A sharded checkpoint round-trips, lists every tensor with its shard, and reads each one")
    func shardedRoundTrip() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let writer = try Self.writeSharded(to: dir.url, maxShardBytes: 100)
        // Name order: embed(80) | head(32) + layers.0.w(64) = 96 | layers.1.w(64) + norm(8) = 72, each ≤ 100.
        let shards = (1...3).map { "model-0000\($0)-of-00003.safetensors" }
        #expect(writer.shardNames == shards)
        #expect(writer.shardAssignment == ["embed": shards[0], "head": shards[1], "layers.0.w": shards[1],
                                           "layers.1.w": shards[2], "norm": shards[2]])
        #expect(try dir.contents() == writer.shardNames + ["model.safetensors.index.json"])

        let checkpoint = try Checkpoint(at: dir.url)
        #expect(checkpoint.kind == .sharded(index: dir.file("model.safetensors.index.json")))
        #expect(checkpoint.tensors.map(\.name) == ["embed", "head", "layers.0.w", "layers.1.w", "norm"])
        #expect(checkpoint.indexTotalSize == 64 + 64 + 80 + 8 + 32)
        for declaration in Self.declarations {
            let tensor = try checkpoint.tensor(declaration.name)
            #expect(tensor.shard == writer.shardAssignment[declaration.name])
            #expect(tensor.info.shape == declaration.shape && tensor.info.dtype == declaration.dtype)
            #expect(try checkpoint.floats(declaration.name) == Self.values(for: declaration))
        }
        // The index is valid JSON by an independent parser.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.file("model.safetensors.index.json"))) as? [String: Any]
        #expect((index?["weight_map"] as? [String: String])?.count == 5)
        #expect((index?["metadata"] as? [String: Any])?["total_size"] as? Int == 248)
    }

    @Test("A tensor larger than the shard limit gets a shard of its own")
    func oversizedTensor() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let writer = try Self.writeSharded(to: dir.url, maxShardBytes: 50)
        // embed(80) and the 64-byte tensors exceed 50 alone; head(32) + layers.0.w(64) > 50; layers.1.w + norm > 50.
        #expect(writer.shardNames.count == 5)
        #expect(Set(writer.shardAssignment.values).count == 5)
        let checkpoint = try Checkpoint(at: dir.url)
        for declaration in Self.declarations {
            #expect(try checkpoint.floats(declaration.name) == Self.values(for: declaration))
        }
    }

    @Test("One shard gives a plain model.safetensors that opens as a directory checkpoint")
    func singleShard() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try Self.writeSharded(to: dir.url, maxShardBytes: 1 << 20)
        #expect(try dir.contents() == ["model.safetensors"])
        let checkpoint = try Checkpoint(at: dir.url)
        #expect(checkpoint.kind == .file)
        #expect(checkpoint.tensors.allSatisfy { $0.shard == nil })
        #expect(try checkpoint.floats("head") == Self.values(for: Self.declarations[4]))
    }

    /// Writes shards holding the given tensors (one F32 value each) and an index with `weightMap`.
    func shardedDirectory(shards: [String: [String]], weightMap: [String: String]) throws -> TemporaryDirectory {
        let dir = try TemporaryDirectory()
        for (shard, names) in shards {
            try SafetensorsFile.write(
                names.map { TensorPayload(name: $0, dtype: .f32, shape: [1], contents: .floats([1])) }, to: dir.file(shard))
        }
        let entries = weightMap.map { "\"\($0.key)\": \"\($0.value)\"" }.joined(separator: ", ")
        try Data("{\"metadata\": {\"total_size\": 8}, \"weight_map\": {\(entries)}}".utf8)
            .write(to: dir.file("model.safetensors.index.json"))
        return dir
    }

    func openError(_ dir: TemporaryDirectory) -> CheckpointError? {
        defer { dir.cleanup() }
        do {
            _ = try Checkpoint(at: dir.url)
            return nil
        } catch {
            return error
        }
    }

    @Test func missingShard() throws {
        let dir = try shardedDirectory(shards: ["a.safetensors": ["x"]], weightMap: ["x": "a.safetensors", "y": "b.safetensors"])
        let index = dir.file("model.safetensors.index.json").path
        #expect(openError(dir) == .missingShard(index: index, shard: "b.safetensors"))
    }

    @Test func shardPathOutsideDirectory() throws {
        let dir = try shardedDirectory(shards: [:], weightMap: ["x": "../a.safetensors"])
        let index = dir.file("model.safetensors.index.json").path
        #expect(openError(dir) == .missingShard(index: index, shard: "../a.safetensors"))
    }

    @Test func tensorMissingFromShard() throws {
        let dir = try shardedDirectory(shards: ["a.safetensors": ["x"]], weightMap: ["x": "a.safetensors", "y": "a.safetensors"])
        let index = dir.file("model.safetensors.index.json").path
        #expect(openError(dir) == .tensorMissingFromShard(index: index, tensor: "y", shard: "a.safetensors"))
    }

    @Test func tensorNotInIndex() throws {
        let dir = try shardedDirectory(shards: ["a.safetensors": ["x", "z"]], weightMap: ["x": "a.safetensors"])
        let index = dir.file("model.safetensors.index.json").path
        #expect(openError(dir) == .tensorNotInIndex(index: index, tensor: "z", shard: "a.safetensors"))
    }

    @Test func duplicateAcrossShards() throws {
        let dir = try shardedDirectory(
            shards: ["a.safetensors": ["x"], "b.safetensors": ["x", "y"]], weightMap: ["x": "a.safetensors", "y": "b.safetensors"])
        #expect(openError(dir) == .duplicateTensorAcrossShards(tensor: "x", firstShard: "a.safetensors", secondShard: "b.safetensors"))
    }

    @Test("Malformed index files", arguments: [
        "[]", #"{"metadata": {}}"#, #"{"weight_map": []}"#, #"{"weight_map": {"x": 1}}"#,
        #"{"weight_map": {}, "metadata": {"total_size": "big"}}"#, #"{"weight_map": {"#,
    ])
    func invalidIndex(text: String) throws {
        let dir = try TemporaryDirectory()
        try Data(text.utf8).write(to: dir.file("model.safetensors.index.json"))
        let index = dir.file("model.safetensors.index.json").path
        let error = openError(dir)
        guard case .invalidIndex(index, _) = error else { Issue.record("got \(String(describing: error))"); return }
    }

    @Test func emptyDirectory() throws {
        let dir = try TemporaryDirectory()
        let path = dir.url.path
        #expect(openError(dir) == .noCheckpointInDirectory(path: path))
    }

    @Test func missingPath() {
        let url = URL(fileURLWithPath: "/no-such-checkpoint-\(UUID().uuidString)")
        #expect(throws: CheckpointError.fileNotFound(path: url.path)) { try Checkpoint(at: url) }
    }

    @Test("A bad shard reports the shard file and tensor")
    func badShardPropagates() throws {
        let dir = try shardedDirectory(shards: ["a.safetensors": ["x"]], weightMap: ["x": "a.safetensors"])
        try Data(craftedFile(header: #"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]))
            .write(to: dir.file("a.safetensors"))
        let shard = dir.file("a.safetensors").path
        #expect(openError(dir) == .sizeMismatch(path: shard, tensor: "x", expectedBytes: 8, actualBytes: 4))
    }
}

@Suite("Inspect summaries")
struct CheckpointSummaryTests {
    @Test("Table columns are aligned and totals are right")
    func table() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try CheckpointTests.writeSharded(to: dir.url, maxShardBytes: 100)
        let summary = CheckpointSummary(try Checkpoint(at: dir.url))
        #expect(summary.tensorCount == 5)
        #expect(summary.parameterCount == 16 + 16 + 40 + 4 + 8)
        #expect(summary.byteCount == 248)
        #expect(summary.byDType.map(\.dtype) == [.bf16, .f16, .f32])
        #expect(summary.byDType.map(\.bytes) == [80, 8, 160])

        let lines = summary.table().split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let headerLine = try #require(lines.first { $0.hasPrefix("NAME") })
        let headerIndex = try #require(lines.firstIndex(of: headerLine))
        let rows = Array(lines[(headerIndex + 1)...(headerIndex + 5)])
        #expect(rows.map { String($0.prefix { $0 != " " }) } == ["embed", "head", "layers.0.w", "layers.1.w", "norm"])
        let dtypeColumn = try #require(headerLine.range(of: "DTYPE")).lowerBound.utf16Offset(in: headerLine)
        let shardColumn = try #require(headerLine.range(of: "SHARD")).lowerBound.utf16Offset(in: headerLine)
        let bytesEnd = try #require(headerLine.range(of: "BYTES")).upperBound.utf16Offset(in: headerLine)
        for row in rows {
            let characters = Array(row)
            #expect(characters[dtypeColumn - 1] == " " && characters[dtypeColumn] != " ", "\(row)")
            #expect(String(characters[shardColumn...]).hasPrefix("model-0000"), "\(row)")
            #expect(characters[bytesEnd - 1].isNumber && characters[bytesEnd] == " ", "\(row)")  // right-aligned
        }
        #expect(lines.contains { $0.hasPrefix("tensors: 5   parameters: 84   bytes: 248") })
    }

    @Test("JSON is valid, stable and carries the totals")
    func json() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        _ = try CheckpointTests.writeSharded(to: dir.url, maxShardBytes: 100)
        let text = CheckpointSummary(try Checkpoint(at: dir.url)).json()
        #expect(text == CheckpointSummary(try Checkpoint(at: dir.url)).json())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let tensors = try #require(object["tensors"] as? [[String: Any]])
        #expect(tensors.map { $0["name"] as? String } == ["embed", "head", "layers.0.w", "layers.1.w", "norm"])
        #expect(tensors[0]["shape"] as? [Int] == [10, 4])
        #expect(tensors[0]["dtype"] as? String == "BF16")
        #expect(tensors[0]["shard"] as? String == "model-00001-of-00003.safetensors")
        let totals = try #require(object["totals"] as? [String: Any])
        #expect(totals["parameters"] as? Int == 84)
        #expect(totals["bytes"] as? Int == 248)
        let byDType = try #require(totals["by_dtype"] as? [String: [String: Int]])
        #expect(byDType["F32"]?["bytes"] == 160)
        #expect(object["sharded"] as? Bool == true)
    }

    @Test("Number formatting")
    func formatting() {
        #expect(CheckpointSummary.grouped(0) == "0")
        #expect(CheckpointSummary.grouped(999) == "999")
        #expect(CheckpointSummary.grouped(1000) == "1,000")
        #expect(CheckpointSummary.grouped(13_476_839_424) == "13,476,839,424")
        #expect(CheckpointSummary.humanBytes(1023) == "1023 B")
        #expect(CheckpointSummary.humanBytes(1536) == "1.5 KiB")
        #expect(CheckpointSummary.humanBytes(3 << 30) == "3.0 GiB")
    }
}
