import Foundation

// The Checkpoint module reads and writes model weights in the safetensors format (Foundation
// only; no numerics). Pipeline: checkpoints are read here, deltas analysed in Analysis, plans made
// in Optimizer, artifacts written by Quantization.
//
// Layout convention: safetensors tensors are row-major (C order). A 2-D weight `[out, in]` keeps
// that shape in `TensorInfo.shape`; `floats(_:)` returns the row-major values as stored, and
// `matrixColumnMajor(_:)` returns the same matrix W (out × in, not its transpose) in column-major
// order, which is what LinearAlgebra's `Matrix` and LAPACK expect.

/// One tensor of a checkpoint and the shard file that holds it.
public struct CheckpointTensor: Sendable, Hashable {
    public let info: TensorInfo
    /// The shard's file name inside the checkpoint directory; `nil` for a single-file checkpoint.
    public let shard: String?

    public var name: String { info.name }
}

/// A model checkpoint: a single `.safetensors` file, or a directory holding either
/// `model.safetensors` or a Hugging Face sharded checkpoint (`model.safetensors.index.json` with
/// `weight_map` name → shard file and optional `metadata.total_size`).
///
/// Opening validates every file (see `SafetensorsFile`) and, for a sharded checkpoint, the index
/// against the shards: every mapped shard exists inside the directory, every mapped tensor is in
/// its shard, every shard tensor is mapped to that shard, and no name occurs in two shards. Only
/// headers are read; each tensor is read on demand from its memory-mapped shard, so peak memory
/// stays near the largest tensor read. When a directory holds both `model.safetensors` and an
/// index, the single file wins (as in `transformers`).
public struct Checkpoint: Sendable {
    public enum Kind: Sendable, Equatable {
        case file
        case sharded(index: URL)
    }

    public static let singleFileName = "model.safetensors"
    public static let indexFileName = "model.safetensors.index.json"

    /// The path that was opened (file or directory).
    public let url: URL
    public let kind: Kind
    /// Every tensor across all shards, sorted by name (UTF-8 byte order).
    public let tensors: [CheckpointTensor]
    /// The opened files: one for a single-file checkpoint, else one per shard (sorted by name).
    public let files: [SafetensorsFile]
    /// `metadata.total_size` from the index, when present (informational; not checked, since
    /// published indexes do not always agree with the shards).
    public let indexTotalSize: Int?

    private let locations: [String: Int]  // tensor name → index into `files`
    private let tensorIndex: [String: Int]  // tensor name → index into `tensors`

    /// Opens a file or directory checkpoint and validates it.
    public init(at url: URL) throws(CheckpointError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw .fileNotFound(path: url.path)
        }
        if !isDirectory.boolValue {
            try self.init(singleFile: url, reportedAs: url)
            return
        }
        let single = url.appendingPathComponent(Self.singleFileName)
        if FileManager.default.fileExists(atPath: single.path) {
            try self.init(singleFile: single, reportedAs: url)
            return
        }
        let index = url.appendingPathComponent(Self.indexFileName)
        guard FileManager.default.fileExists(atPath: index.path) else {
            throw .noCheckpointInDirectory(path: url.path)
        }
        try self.init(directory: url, index: index)
    }

    private init(singleFile: URL, reportedAs url: URL) throws(CheckpointError) {
        let file = try SafetensorsFile(contentsOf: singleFile)
        self.url = url
        self.kind = .file
        self.files = [file]
        self.tensors = file.tensors.map { CheckpointTensor(info: $0, shard: nil) }
        self.indexTotalSize = nil
        self.locations = Dictionary(uniqueKeysWithValues: file.tensors.map { ($0.name, 0) })
        self.tensorIndex = Dictionary(uniqueKeysWithValues: tensors.enumerated().map { ($1.name, $0) })
    }

    private init(directory: URL, index: URL) throws(CheckpointError) {
        let indexPath = index.path
        let parsed = try Self.parseIndex(at: index)
        var shardNames = Array(Set(parsed.weightMap.values))
        shardNames.sort { $0.utf8Precedes($1) }

        var files: [SafetensorsFile] = []
        var owner: [String: String] = [:]  // tensor → shard actually holding it
        var all: [CheckpointTensor] = []
        var locations: [String: Int] = [:]
        for shard in shardNames {
            guard !shard.isEmpty, !shard.contains("/"), shard != ".", shard != ".." else {
                throw .missingShard(index: indexPath, shard: shard)
            }
            let shardURL = directory.appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardURL.path) else {
                throw .missingShard(index: indexPath, shard: shard)
            }
            let file = try SafetensorsFile(contentsOf: shardURL)
            for tensor in file.tensors {
                if let first = owner[tensor.name] {
                    throw .duplicateTensorAcrossShards(tensor: tensor.name, firstShard: first, secondShard: shard)
                }
                owner[tensor.name] = shard
                guard parsed.weightMap[tensor.name] == shard else {
                    throw .tensorNotInIndex(index: indexPath, tensor: tensor.name, shard: shard)
                }
                locations[tensor.name] = files.count
                all.append(CheckpointTensor(info: tensor, shard: shard))
            }
            files.append(file)
        }
        for (tensor, shard) in parsed.weightMap.sorted(by: { $0.key.utf8Precedes($1.key) }) where owner[tensor] != shard {
            throw .tensorMissingFromShard(index: indexPath, tensor: tensor, shard: shard)
        }
        all.sort { $0.name.utf8Precedes($1.name) }
        self.url = directory
        self.kind = .sharded(index: index)
        self.files = files
        self.tensors = all
        self.indexTotalSize = parsed.totalSize
        self.locations = locations
        self.tensorIndex = Dictionary(uniqueKeysWithValues: all.enumerated().map { ($1.name, $0) })
    }

    /// Parses `model.safetensors.index.json`: an object with `weight_map` (object of strings)
    /// and optional `metadata` (object; `total_size` a non-negative integer if present).
    static func parseIndex(at url: URL) throws(CheckpointError) -> (weightMap: [String: String], totalSize: Int?) {
        let path = url.path
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw .unreadable(path: path, reason: error.localizedDescription)
        }
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw .invalidIndex(path: path, reason: "not valid UTF-8")
        }
        let root: JSONValue
        do {
            root = try JSONParser.parse(bytes)
        } catch {
            switch error {
            case .syntax(let reason): throw .invalidIndex(path: path, reason: "not valid JSON: \(reason)")
            case .duplicateKey(let key): throw .invalidIndex(path: path, reason: "key '\(key)' appears more than once")
            }
        }
        guard case .object(let members) = root else {
            throw .invalidIndex(path: path, reason: "the top-level value is a \(root.typeName), not an object")
        }
        guard let weightMapValue = members.first(where: { $0.key == "weight_map" })?.value else {
            throw .invalidIndex(path: path, reason: "missing 'weight_map'")
        }
        guard case .object(let entries) = weightMapValue else {
            throw .invalidIndex(path: path, reason: "'weight_map' is a \(weightMapValue.typeName), not an object")
        }
        var weightMap: [String: String] = [:]
        for entry in entries {
            let (tensor, shard) = (entry.key, entry.value)
            guard let shardName = shard.stringValue else {
                throw .invalidIndex(path: path, reason: "'weight_map' entry for tensor '\(tensor)' is a \(shard.typeName), not a string")
            }
            weightMap[tensor] = shardName
        }
        var totalSize: Int?
        if let metadata = members.first(where: { $0.key == "metadata" })?.value {
            guard case .object(let fields) = metadata else {
                throw .invalidIndex(path: path, reason: "'metadata' is a \(metadata.typeName), not an object")
            }
            if let total = fields.first(where: { $0.key == "total_size" })?.value {
                guard let value = total.integer, value >= 0 else {
                    throw .invalidIndex(path: path, reason: "'metadata.total_size' is not a non-negative integer")
                }
                totalSize = value
            }
        }
        return (weightMap, totalSize)
    }

    // MARK: Access

    private func file(for name: String) throws(CheckpointError) -> SafetensorsFile {
        guard let index = locations[name] else { throw .tensorNotFound(path: url.path, tensor: name) }
        return files[index]
    }

    /// The entry for `name`, with its shard.
    public func tensor(_ name: String) throws(CheckpointError) -> CheckpointTensor {
        guard let index = tensorIndex[name] else { throw .tensorNotFound(path: url.path, tensor: name) }
        return tensors[index]
    }

    /// A copy of the tensor's stored bytes (see `SafetensorsFile.rawBytes(_:)`).
    public func rawBytes(_ name: String) throws(CheckpointError) -> [UInt8] {
        try file(for: name).rawBytes(name)
    }

    /// Calls `body` with the tensor's stored bytes in the mapping, without copying (see
    /// `SafetensorsFile.withRawBytes(of:_:)`).
    public func withRawBytes<R>(of name: String, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try file(for: name).withRawBytes(of: name, body)
    }

    /// The tensor's row-major values as `Float` (see `SafetensorsFile.floats(_:allowIntegers:)`).
    public func floats(_ name: String, allowIntegers: Bool = false) throws(CheckpointError) -> [Float] {
        try file(for: name).floats(name, allowIntegers: allowIntegers)
    }

    /// The tensor's row-major values as `Double` (see `SafetensorsFile.doubles(_:allowIntegers:)`).
    public func doubles(_ name: String, allowIntegers: Bool = false) throws(CheckpointError) -> [Double] {
        try file(for: name).doubles(name, allowIntegers: allowIntegers)
    }

    /// A 2-D `[out, in]` tensor as a column-major `out × in` matrix (see
    /// `SafetensorsFile.matrixColumnMajor(_:)`).
    public func matrixColumnMajor(_ name: String) throws(CheckpointError) -> (rows: Int, columns: Int, values: [Float]) {
        try file(for: name).matrixColumnMajor(name)
    }
}
