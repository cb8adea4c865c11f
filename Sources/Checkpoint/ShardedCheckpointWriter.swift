import Foundation

/// Writes a checkpoint directory in the Hugging Face sharded layout, streaming tensor by tensor.
///
/// Shard plan: tensors in name order (UTF-8 bytes) are packed greedily; a new shard starts when
/// adding the next tensor would exceed `maxShardBytes` of tensor data (a tensor larger than the
/// limit gets a shard of its own). Shards are named `model-00001-of-0000N.safetensors`, and
/// `model.safetensors.index.json` maps every tensor to its shard with `metadata.total_size` = the
/// sum of tensor bytes. With a single shard the result is just `model.safetensors`, no index.
///
/// Every file is written with `SafetensorsWriter` (temporary file, fsync, rename); the index is
/// written last, atomically, once all shards are in place. Tensors may be written in any order;
/// peak memory is about one tensor. If `finish()` fails part-way, shards already renamed stay in
/// the directory but no (new) index refers to them.
///
/// A class because it owns the open shard writers.
public final class ShardedCheckpointWriter {
    public let directory: URL
    /// Tensor name → shard file name.
    public let shardAssignment: [String: String]
    /// Shard file names in order.
    public let shardNames: [String]
    private let writers: [String: SafetensorsWriter]
    private let totalSize: Int
    private var finished = false

    /// Plans the shards and opens one writer per shard. Creates `directory` if needed.
    public init(
        directory: URL, tensors: [TensorDeclaration], maxShardBytes: Int, metadata: [String: String] = [:]
    ) throws(CheckpointError) {
        precondition(maxShardBytes > 0, "maxShardBytes must be positive")
        self.directory = directory
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw .writeFailed(path: directory.path, reason: error.localizedDescription)
        }
        var seen = Set<String>()
        for tensor in tensors where !seen.insert(tensor.name).inserted {
            throw .invalidTensorName(path: directory.path, tensor: tensor.name, reason: "declared twice")
        }
        var groups: [[TensorDeclaration]] = []
        var current: [TensorDeclaration] = []
        var currentBytes = 0
        var total = 0
        for tensor in tensors.sorted(by: { $0.name.utf8Precedes($1.name) }) {
            guard let bytes = tensor.byteCount else {
                throw .payloadMismatch(path: directory.path, tensor: tensor.name, expectedBytes: -1, actualBytes: -1)
            }
            if !current.isEmpty && currentBytes + bytes > maxShardBytes {
                groups.append(current)
                current = []
                currentBytes = 0
            }
            current.append(tensor)
            currentBytes += bytes
            total += bytes
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        self.totalSize = total

        let count = groups.count
        func pad(_ n: Int) -> String {
            let digits = String(n)
            return String(repeating: "0", count: max(0, 5 - digits.count)) + digits
        }
        let names = count == 1
            ? [Checkpoint.singleFileName]
            : (1...count).map { "model-\(pad($0))-of-\(pad(count)).safetensors" }
        var assignment: [String: String] = [:]
        var writers: [String: SafetensorsWriter] = [:]
        for (name, group) in zip(names, groups) {
            writers[name] = try SafetensorsWriter(
                url: directory.appendingPathComponent(name), tensors: group, metadata: metadata)
            for tensor in group { assignment[tensor.name] = name }
        }
        self.shardNames = names
        self.shardAssignment = assignment
        self.writers = writers
    }

    private func writer(for name: String) throws(CheckpointError) -> SafetensorsWriter {
        guard let shard = shardAssignment[name] else {
            throw .unexpectedTensor(path: directory.path, tensor: name, reason: "was not declared")
        }
        return writers[shard]!
    }

    /// Writes a declared tensor's bytes (row-major, little-endian, declared dtype).
    public func write(_ name: String, bytes: [UInt8]) throws(CheckpointError) {
        try writer(for: name).write(name, bytes: bytes)
    }

    /// Writes a declared floating tensor from `Float` values (see `SafetensorsWriter`).
    public func write(_ name: String, floats: [Float]) throws(CheckpointError) {
        try writer(for: name).write(name, floats: floats)
    }

    /// Writes elements `start ..< start + floats.count` of a declared floating tensor: a tensor
    /// streamed in pieces, in order (see `SafetensorsWriter`).
    public func write(_ name: String, floats: UnsafeBufferPointer<Float>, startingAt start: Int) throws(CheckpointError) {
        try writer(for: name).write(name, floats: floats, startingAt: start)
    }

    /// Finishes every shard, then writes the index (when there is more than one shard).
    public func finish() throws(CheckpointError) {
        guard !finished else { throw .writeFailed(path: directory.path, reason: "the writer is already finished") }
        for name in shardNames { try writers[name]!.finish() }
        finished = true
        guard shardNames.count > 1 else { return }
        let entries = shardAssignment.keys.sorted { $0.utf8Precedes($1) }.map {
            "    " + JSONWriter.quoted($0) + ": " + JSONWriter.quoted(shardAssignment[$0]!)
        }
        let json = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {\n"
            + entries.joined(separator: ",\n") + "\n  }\n}\n"
        try AtomicFile.write(data: Array(json.utf8), to: directory.appendingPathComponent(Checkpoint.indexFileName))
    }
}
