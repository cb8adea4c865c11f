import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra

/// What ``merge(base:baseURL:artifact:to:progress:)`` wrote.
public struct MergeSummary: Sendable, Equatable {
    public var directory: URL
    public var shards: [String]
    /// base + ΔŴ, rounded to the base dtype.
    public var merged: Int
    /// The fine-tuned tensor's bytes, bit-exact.
    public var carried: Int
    /// The base tensor's bytes (unchanged by fine-tuning).
    public var copied: Int
    /// The fine-tuned checkpoint's model files (`config.json`, tokenizer, …) written byte for byte,
    /// by name. Empty when the artifact has none: a format-1 artifact, or a fine-tuned checkpoint
    /// that was a single file or a directory without such files.
    public var modelFiles: [String]
}

/// `deltaplan merge`: writes base + Δ̂ as a Hugging Face checkpoint directory.
///
/// - The artifact is opened and verified first (``Artifact/init(at:)``: manifest, plan hash,
///   delta file checksum); each tensor's checksum is checked as it is read. The base must match
///   the artifact's recorded base fingerprint (size and header hash of each file).
/// - Layout: the base's own — a single-file base gives `model.safetensors`; a sharded base gives
///   the same shard file names, each tensor in the same shard as in the base, and an index
///   `model.safetensors.index.json` (`weight_map`, `metadata.total_size`). Tensors only in the
///   fine-tuned model go to the last shard; tensors the fine-tuned model lacks are left out.
/// - Planned matrices: W = W_base + ΔŴ computed in Float32 and rounded to the base's dtype
///   (nearest even), or written as `plannedDType` (F32 keeps W_base + ΔŴ unrounded, as a server
///   that applies the delta beside the base computes it). Carried tensors: the fine-tuned bytes as stored (bit-exact, their own dtype).
///   Unchanged tensors: the base's bytes.
/// - Model files: the artifact's `model-files/` (the fine-tuned directory's `config.json`,
///   tokenizer and generation files) are written beside the shards byte for byte, each checked
///   against its SHA-256 as it is read. Nothing is taken from the base directory: where the base's
///   `config.json` differs, the fine-tuned one describes the merged weights (a resized vocabulary,
///   say). A format-1 artifact has none; the summary's `modelFiles` is then empty.
/// - Streaming: one tensor at a time (plus one matrix's decoded segments); every shard is written
///   through `SafetensorsWriter` in a temporary sibling directory (model files included) renamed
///   into place at the end.
/// - `shouldStop` is checked before each tensor: when it returns true, the temporary directory is
///   removed and `.quantization(.stopped)` thrown.
@discardableResult
public func merge(
    base baseURL: URL, artifact: Artifact, to out: URL, plannedDType: DType? = nil,
    progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
) throws(ArtifactError) -> MergeSummary {
    if let plannedDType {
        precondition([.f64, .f32, .f16, .bf16].contains(plannedDType), "planned matrices are written as a floating dtype, not \(plannedDType)")
    }
    let base = try openCheckpoint(baseURL)
    try verifyInput(base, path: baseURL.path, against: artifact.manifest.inputs.base, role: "base", checkModified: false)
    let m = artifact.manifest
    // Unique names: `Artifact.init` refused a manifest listing any name twice.
    let planned = Dictionary(uniqueKeysWithValues: m.matrices.map { ($0.name, $0) })
    let carried = Dictionary(uniqueKeysWithValues: m.carried.map { ($0.name, $0) })
    let removed = Set(m.removed)

    // Shard assignment: the base's.
    let single: Bool
    if case .sharded = base.kind { single = false } else { single = true }
    var shards: [String: [TensorDeclaration]] = [:]
    var assignment: [(name: String, shard: String)] = []
    var shardOrder: [String] = []
    for t in base.tensors where !removed.contains(t.name) {
        let shard = single ? Checkpoint.singleFileName : t.shard!
        if shards[shard] == nil { shardOrder.append(shard) }
        let declaration: TensorDeclaration
        if let c = carried[t.name] {
            declaration = TensorDeclaration(name: t.name, dtype: DType(rawValue: c.dtype)!, shape: c.shape)
        } else {
            if let p = planned[t.name] {
                guard t.info.shape == p.shape, t.info.dtype.isFloatingPoint else {
                    throw .inputMismatch(input: "base", path: baseURL.path,
                                         reason: "\(t.name) is \(t.info.dtype.rawValue) \(t.info.shape), the artifact plans a floating \(p.shape) matrix")
                }
            }
            let dtype = planned[t.name] != nil ? plannedDType ?? t.info.dtype : t.info.dtype
            declaration = TensorDeclaration(name: t.name, dtype: dtype, shape: t.info.shape)
        }
        shards[shard, default: []].append(declaration)
        assignment.append((t.name, shard))
    }
    shardOrder.sort { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    let baseNames = Set(base.tensors.map(\.name))
    for c in m.carried where !baseNames.contains(c.name) {
        let shard = shardOrder.last ?? Checkpoint.singleFileName
        if shards[shard] == nil { shardOrder.append(shard) }
        shards[shard, default: []].append(TensorDeclaration(name: c.name, dtype: DType(rawValue: c.dtype)!, shape: c.shape))
        assignment.append((c.name, shard))
    }
    for p in m.matrices where !baseNames.contains(p.name) {
        throw .inputMismatch(input: "base", path: baseURL.path, reason: "planned matrix \(p.name) is not in the base")
    }
    let modelFiles = m.modelFiles ?? []
    for f in modelFiles where shards[f.name] != nil {
        throw .inputMismatch(input: "base", path: baseURL.path, reason: "its shard \(f.name) has the name of a model file the artifact carries")
    }

    let fm = FileManager.default
    let temporary = try makeTemporaryDirectory(for: out)
    var published = false
    defer { if !published { try? fm.removeItem(at: temporary) } }

    let total = assignment.count
    var done = 0, merged = 0, carriedCount = 0, copied = 0, totalSize = 0
    for shard in shardOrder {
        let declarations = shards[shard]!
        let metadata = (single ? base.files.first : base.files.first { $0.url.lastPathComponent == shard })?.metadata ?? ["format": "pt"]
        let writer: SafetensorsWriter
        do { writer = try SafetensorsWriter(url: temporary.appendingPathComponent(shard), tensors: declarations, metadata: metadata) } catch {
            throw .checkpoint("\(error)")
        }
        for d in declarations {
            if shouldStop() { throw .quantization(.stopped) }
            do {
                if carried[d.name] != nil {
                    try writer.write(d.name, bytes: try artifact.tensorBytes(d.name))
                    carriedCount += 1
                } else if let p = planned[d.name] {
                    let delta = try artifact.reconstruction(of: p)
                    var w = try base.floats(d.name)
                    // The analyzed base held finite values here (a non-finite delta is refused), so
                    // this is another base under the same header: refused, not merged into NaN.
                    if let bad = w.firstIndex(where: { !$0.isFinite }) {
                        throw ArtifactError.inputMismatch(
                            input: "base", path: baseURL.path,
                            reason: "\(d.name) holds NaN or infinite values (element \(bad) is \(w[bad])); the base the artifact was made from held none")
                    }
                    let (rows, columns) = (p.shape[0], p.shape[1])
                    delta.withUnsafeBufferPointer { pd in
                        for r in 0..<rows { for c in 0..<columns { w[r * columns + c] += pd[r + c * rows] } }
                    }
                    try writer.write(d.name, floats: w)
                    merged += 1
                } else {
                    try base.withRawBytes(of: d.name) { raw in try writer.write(d.name, bytes: raw) }
                    copied += 1
                }
            } catch let error as ArtifactError {
                throw error
            } catch {
                throw .checkpoint("\(error)")
            }
            totalSize += d.byteCount ?? 0
            done += 1
            progress(done, total, d.name)
        }
        do { try writer.finish() } catch { throw .checkpoint("\(error)") }
    }
    if !single {
        let weightMap = Dictionary(uniqueKeysWithValues: assignment.map { ($0.name, $0.shard) })
        struct Index: Encodable {
            struct Metadata: Encodable { var total_size: Int }
            var metadata: Metadata
            var weight_map: [String: String]
        }
        try writeJSON(Index(metadata: .init(total_size: totalSize), weight_map: weightMap),
                      to: temporary.appendingPathComponent(Checkpoint.indexFileName))
    }
    for f in modelFiles {
        if shouldStop() { throw .quantization(.stopped) }
        let target = temporary.appendingPathComponent(f.name)
        try writeFile(try artifact.modelFileContents(f), to: target)
    }
    try publishDirectory(temporary, as: out)
    published = true
    return MergeSummary(directory: out, shards: shardOrder, merged: merged, carried: carriedCount, copied: copied,
                        modelFiles: modelFiles.map(\.name))
}
