import Analysis
import ArtifactFormat
import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra
import Optimizer
import Quantization

/// Options of ``compress(store:plan:calibration:options:to:progress:)``.
public struct CompressionOptions: Sendable {
    /// GPTQ (with the calibration H) or RTN for 2…8-bit segments; matrices with H = I always use RTN.
    public var method: QuantizationMethod
    /// The segment order (``SegmentOrder``); nil: the order the plan was measured in
    /// (`plan.segmentOrder`), or the default (error feedback) for a plan that records none.
    public var order: SegmentOrder?
    /// GPTQ damping, a fraction of mean(diag H).
    public var dampening: Double
    /// Overrides of the store's recorded input paths (checked by size and header hash only).
    public var base: URL?
    public var finetuned: URL?
    /// The plan file as given, recorded in the manifest.
    public var planPath: String?
    public var toolVersion: String

    public init(method: QuantizationMethod = .default, order: SegmentOrder? = nil, dampening: Double = QuantizationMethod.defaultDampening, base: URL? = nil,
                finetuned: URL? = nil, planPath: String? = nil, toolVersion: String) {
        self.method = method
        self.order = order
        self.dampening = dampening
        self.base = base
        self.finetuned = finetuned
        self.planPath = planPath
        self.toolVersion = toolVersion
    }
}

/// What ``compress(store:plan:calibration:options:to:progress:)`` reports while it runs.
public enum CompressionEvent: Sendable {
    /// `work[i]`: the relative cost of matrix i (for an ETA); `carried`: tensors to copy.
    case started(matrices: [String], work: [Double], carried: Int)
    case matrixStarted(index: Int, total: Int, name: String)
    case matrixFinished(index: Int, total: Int, name: String, seconds: Double)
    /// Matrix `index` was quantized by an earlier, interrupted run (its segments are in the work
    /// directory, ``compressionWorkDirectory(for:)``): reused, not quantized again.
    case matrixResumed(index: Int, total: Int, name: String)
    case carried(name: String)
    /// Something the user should know that does not stop the compression (the plan was measured
    /// in another segment order, so its predictions do not describe this artifact).
    case warning(String)
    case finished(artifact: URL)
}

/// The segment order a compression uses (`options.order`, else the plan's, else the default),
/// and a warning when the plan's predicted errors were measured in another order (a store plan
/// that records none was measured in the paper's order, before orders existed).
func resolveOrder(plan: Plan, requested: SegmentOrder?) -> (order: SegmentOrder, warning: String?) {
    let order = requested ?? plan.segmentOrder ?? .default
    guard plan.source.kind == "store" else { return (order, nil) }
    let measured = plan.segmentOrder ?? .paper
    guard measured != order else { return (order, nil) }
    let recorded = plan.segmentOrder == nil ? " (it records no order: it was made before orders existed)" : ""
    return (order, "the plan's predicted errors were measured in the \(measured.rawValue) order\(recorded), "
        + "this artifact is compressed in the \(order.rawValue) order: evaluate will compare it with predictions "
        + "of another quantizer; plan again with --order \(order.rawValue) for predictions that match")
}

/// A warning when a plan is compressed with another quantizer or damping than its predicted
/// errors were measured with (they then describe another artifact).
func quantizerWarning(plan: Plan, method: QuantizationMethod, dampening: Double) -> String? {
    guard let q = plan.quantizer, q != MeasurementOptions(method: method, dampening: dampening).quantizer else { return nil }
    return "the plan's predicted errors were measured with \(q.method), damping \(q.dampening); "
        + "this artifact is compressed with \(method.rawValue), damping \(dampening): evaluate will compare it with predictions "
        + "of another quantizer; compress with --method \(q.method) --dampening \(q.dampening) for an artifact they describe"
}

/// `deltaplan compress`: quantizes every planned matrix's segments in order with a
/// ``MatrixQuantizer`` (Delta-CoMe: GPTQ on Vᵀ with H, then on U with Σ̂ V̂ᵀ H V̂ Σ̂; sign for 1 bit;
/// F16 for 16 bits; with error feedback, the default, U toward its least-squares target and σ
/// refitted, each segment absorbing the residual of the earlier ones) and writes an artifact
/// directory: `delta.safetensors` (the segments' codes, scales, zeros, values and σ, and the
/// carried tensors), `model-files/` (the fine-tuned directory's configuration, tokenizer and
/// generation files, byte for byte: ``ModelFiles``) and `manifest.json`. Layout:
/// `Docs/artifact-format.md`.
///
/// - The plan must belong to the store: `plan.source.hash == store.identity`, and every planned
///   matrix is a store matrix with the same shape and a stored rank covering its segments.
/// - The calibration must be the store's (fingerprint check); data-free stores use RTN.
/// - The base and fine-tuned checkpoints (the store's recorded paths, or the overrides) must
///   match the store's fingerprints. Every fine-tuned tensor outside the plan is carried as its
///   fine-tuned bytes, unless it is byte-identical to the base (then recorded as unchanged).
/// - Model files: the ones ``ModelFiles`` selects in the fine-tuned checkpoint directory (none for
///   a single-file checkpoint), checked before any quantization (a link out of the directory, a
///   file that is not regular or too large is an error naming it). They are not part of the
///   store's fingerprint: they are whatever the directory holds when `compress` runs.
/// - Order: `options.order`, else the plan's `segmentOrder`, else error feedback; recorded per
///   matrix. A plan measured in another order gets a ``CompressionEvent/warning(_:)``.
/// - Resumable: each matrix's encoded segments are written (atomically) to the work directory
///   ``compressionWorkDirectory(for:)`` as soon as they are quantized, keyed by the plan's
///   SHA-256, the store's identity, the calibration and the options; a rerun after an interruption
///   reuses every matching matrix (``CompressionEvent/matrixResumed(index:total:name:)``) and the
///   artifact comes out byte-identical to an uninterrupted run's. The work directory is removed
///   once the artifact is published; a stop or a failure leaves it for the rerun.
/// - Concurrent: `parallelism.threads` matrices at once (one BLAS thread each, results identical
///   for every thread count), within `parallelism.memoryLimit` by each matrix's estimate.
/// - Streaming: per running matrix its factors, H and its prepared factor, and the encoded
///   segments (with error feedback also the earlier segments' V̂ and Û diag(σ̃) of that matrix, at
///   most (h_out + h_in) × stored rank Floats; ΔW itself is never formed); carried tensors are
///   compared and copied in place in the checkpoints' mappings, one at a time.
/// - Atomic: the artifact is assembled in a temporary sibling directory from the work directory's
///   segments, then renamed over `out` (an existing `out` is replaced only once the new artifact is
///   complete).
/// - `shouldStop` is checked before each matrix and before the artifact is assembled: when it
///   returns true, `.quantization(.stopped)` is thrown once the running matrices are saved.
@discardableResult
public func compress(
    store: SpectrumStore, plan: Plan, calibration: CalibrationSet?, options: CompressionOptions, to out: URL,
    parallelism: Parallelism = .serial,
    progress: (CompressionEvent) -> Void = { _ in }, shouldStop: () -> Bool = { false }
) throws(ArtifactError) -> ArtifactManifest {
    try compress(store: store, plan: plan, calibration: calibration, options: options, to: out, run: .whole, parallelism: parallelism,
                 progress: progress, shouldStop: shouldStop)!
}

/// One shard of a compression (`compress --shard I/N`): quantizes the shard's matrices (``Shard/assignment(costs:count:)``
/// by each matrix's estimated cost) into the work directory ``compressionWorkDirectory(for:)``,
/// which several processes may share, and records them, with each file's SHA-256, in the work
/// directory's `shard-I-of-N.json`. Resumable like a whole compression. Then
/// ``finalizeCompression(store:plan:calibration:options:to:progress:)`` with the same inputs.
public func compress(
    store: SpectrumStore, plan: Plan, calibration: CalibrationSet?, options: CompressionOptions, to out: URL, shard: Shard,
    parallelism: Parallelism = .serial,
    progress: (CompressionEvent) -> Void = { _ in }, shouldStop: () -> Bool = { false }
) throws(ArtifactError) {
    _ = try compress(store: store, plan: plan, calibration: calibration, options: options, to: out, run: .shard(shard),
                     parallelism: parallelism, progress: progress, shouldStop: shouldStop)
}

/// Assembles the artifact of a compression run in shards once every shard has finished: checks
/// that the work directory holds the record of every shard of one count N and every matrix's file
/// with the SHA-256 its shard recorded, then writes the artifact exactly as a whole compression
/// does (the same bytes). Quantizes nothing.
///
/// - Throws: ``ArtifactError/shards(artifact:reason:)`` naming the shard to rerun (not run,
///   unfinished, or a matrix of it missing or damaged).
@discardableResult
public func finalizeCompression(
    store: SpectrumStore, plan: Plan, calibration: CalibrationSet?, options: CompressionOptions, to out: URL,
    progress: (CompressionEvent) -> Void = { _ in }
) throws(ArtifactError) -> ArtifactManifest {
    try compress(store: store, plan: plan, calibration: calibration, options: options, to: out, run: .finalize,
                 parallelism: .serial, progress: progress, shouldStop: { false })!
}

/// What a call of the compression runs: every matrix and the artifact, one shard's matrices, or
/// the artifact from the shards' matrices.
private enum CompressionRun {
    case whole
    case shard(Shard)
    case finalize
}

private func compress(
    store: SpectrumStore, plan: Plan, calibration: CalibrationSet?, options: CompressionOptions, to out: URL, run: CompressionRun,
    parallelism: Parallelism, progress: (CompressionEvent) -> Void, shouldStop: () -> Bool
) throws(ArtifactError) -> ArtifactManifest? {
    let planName = options.planPath ?? "<plan>"
    guard plan.source.kind == "store", plan.source.hash == store.identity else {
        throw .planMismatch(plan: planName, reason: "its source is \(plan.source.kind) \(plan.source.name) with hash \(plan.source.hash), the store \(store.url.path) has identity \(store.identity)")
    }
    guard options.dampening >= 0, options.dampening.isFinite else {
        throw .invalidOption(option: "dampening", reason: "must be a finite fraction ≥ 0, got \(options.dampening)")
    }
    var records: [StoreManifest.MatrixRecord] = []
    for (i, m) in plan.matrices.enumerated() {
        guard let record = store.matrices.first(where: { $0.name == m.name }) else {
            throw .planMismatch(plan: planName, reason: "matrices[\(i)] \(m.name) is not in the store")
        }
        guard [record.rows, record.columns] == m.shape else {
            throw .planMismatch(plan: planName, reason: "matrices[\(i)] \(m.name) has shape \(m.shape), the store \([record.rows, record.columns])")
        }
        let kept = m.segments.last?.end ?? 0
        guard kept <= (record.storedRank ?? 0) else {
            throw .planMismatch(plan: planName, reason: "matrices[\(i)] \(m.name) keeps \(kept) vectors, the store has \(record.storedRank ?? 0)")
        }
        records.append(record)
    }
    let calibrationKey: String
    do { calibrationKey = try checkCalibration(store: store, calibration: calibration) } catch { throw .quantization(error) }
    let (order, orderWarning) = resolveOrder(plan: plan, requested: options.order)

    // Inputs.
    let recorded = store.manifest.inputs
    let basePath = options.base?.path ?? recorded.base.path
    let finetunedPath = options.finetuned?.path ?? recorded.finetuned.path
    let base = try openCheckpoint(URL(fileURLWithPath: basePath))
    let finetuned = try openCheckpoint(URL(fileURLWithPath: finetunedPath))
    try verifyInput(base, path: basePath, against: recorded.base, role: "base", checkModified: options.base == nil)
    try verifyInput(finetuned, path: finetunedPath, against: recorded.finetuned, role: "fine-tuned", checkModified: options.finetuned == nil)

    // Declarations.
    let planned = Set(plan.matrices.map(\.name))
    var declarations: [TensorDeclaration] = []
    var matrixDeclarations: [[TensorDeclaration]] = []
    for m in plan.matrices {
        let decls = ArtifactTensor.declarations(of: m, groupSize: plan.groupSize)
        matrixDeclarations.append(decls)
        declarations += decls
    }
    var carried: [ArtifactManifest.CarriedRecord] = [], unchanged: [String] = []
    for t in finetuned.tensors where !planned.contains(t.name) {
        if let b = try? base.tensor(t.name), b.info.dtype == t.info.dtype, b.info.shape == t.info.shape,
           try sameBytes(base, finetuned, t.name) {
            unchanged.append(t.name)
            continue
        }
        carried.append(.init(name: t.name, dtype: t.info.dtype.rawValue, shape: t.info.shape, carried: "finetuned"))
        declarations.append(TensorDeclaration(name: t.name, dtype: t.info.dtype, shape: t.info.shape))
    }
    let finetunedNames = Set(finetuned.tensors.map(\.name))
    let removed = base.tensors.map(\.name).filter { !finetunedNames.contains($0) }
    let modelFileSources = try ModelFiles.collect(in: URL(fileURLWithPath: finetunedPath))

    // Matrices, into the work directory (reusing what an interrupted run left there).
    let planData: Data
    do { planData = try plan.encoded() } catch { throw .planMismatch(plan: planName, reason: "\(error)") }
    let planSHA256 = Digest.sha256(planData)
    let costs = plan.matrices.map { m in Double(m.shape[0]) * Double(m.shape[1]) * Double(max(1, m.segments.last?.end ?? 0)) }
    let mine: [Int] = if case let .shard(shard) = run {
        zip(plan.matrices.indices, Shard.assignment(costs: costs, count: shard.count)).filter { $0.1 == shard.index }.map(\.0)
    } else {
        Array(plan.matrices.indices)
    }
    let work = try CompressionWork(
        directory: compressionWorkDirectory(for: out), matrices: plan.matrices.count, own: Set(mine),
        key: ["plan_sha256": planSHA256, "store": store.identity, "calibration": calibrationKey, "method": options.method.rawValue,
              "order": order.rawValue, "dampening": String(options.dampening), "group_size": String(plan.groupSize),
              "tool": options.toolVersion])
    switch run {
    case .whole: break
    case let .shard(shard): ShardRecords.discardDamaged(shard, files: mine.map(CompressionWork.fileName), in: work.directory)
    case .finalize: try work.checkShards(plan: plan, costs: costs, artifact: out)
    }
    let owned = Set(mine)
    progress(.started(matrices: plan.matrices.map(\.name), work: costs.indices.map { owned.contains($0) ? costs[$0] : 0 },
                      carried: carried.count))
    if let orderWarning { progress(.warning(orderWarning)) }
    if let warning = quantizerWarning(plan: plan, method: options.method, dampening: options.dampening) { progress(.warning(warning)) }
    var matrixRecords = [ArtifactManifest.MatrixRecord?](repeating: nil, count: plan.matrices.count)
    var todo: [Int] = []
    for index in mine {
        let m = plan.matrices[index]
        if let saved = work.saved(index, name: m.name) {
            matrixRecords[index] = matrixRecord(m, method: saved.method, order: order, groupSize: plan.groupSize,
                                                calibrationEntry: saved.calibrationEntry, storedBytes: saved.storedBytes,
                                                warnings: saved.warnings)
            progress(.matrixResumed(index: index, total: plan.matrices.count, name: m.name))
        } else {
            todo.append(index)
        }
    }
    let hessians = HessianCache(capacity: 2 + parallelism.threads)
    var uses: [String: Int] = [:]
    for index in todo { if let entry = records[index].calibrationEntry { uses[entry, default: 0] += 1 } }
    var starts: [Int: Date] = [:]
    let outcome = runConcurrently(
        count: todo.count, parallelism: parallelism,
        estimate: { compressionBytes(plan.matrices[todo[$0]], record: records[todo[$0]], calibrated: calibration != nil) },
        shouldStop: shouldStop,
        started: { t in
            starts[t] = Date()
            progress(.matrixStarted(index: todo[t], total: plan.matrices.count, name: plan.matrices[todo[t]].name))
        },
        body: { [todo, matrixDeclarations, records] t in
            let index = todo[t]
            return Result { () throws(ArtifactError) in
                if plan.matrices[index].dense {
                    return try keepMatrix(plan.matrices[index], index: index, record: records[index], store: store, base: base,
                                          finetuned: finetuned, declaration: matrixDeclarations[index][0], work: work)
                }
                return try compressMatrix(plan.matrices[index], index: index, record: records[index], store: store, calibration: calibration,
                                   method: options.method, order: order, groupSize: plan.groupSize, dampening: options.dampening,
                                   declarations: matrixDeclarations[index], hessians: hessians, work: work)
            }
        },
        finished: { t, saved in
            let index = todo[t]
            matrixRecords[index] = matrixRecord(plan.matrices[index], method: saved.method, order: order,
                                                groupSize: plan.groupSize, calibrationEntry: saved.calibrationEntry,
                                                storedBytes: saved.storedBytes, warnings: saved.warnings)
            if let entry = records[index].calibrationEntry {
                uses[entry]! -= 1
                if uses[entry] == 0 { hessians.release(entry) }
            }
            progress(.matrixFinished(index: index, total: plan.matrices.count, name: plan.matrices[index].name,
                                     seconds: Date().timeIntervalSince(starts[t] ?? Date())))
        })
    switch outcome {
    case .completed: break
    case .stopped: throw .quantization(.stopped)
    case let .failed(_, error): throw error
    }
    if shouldStop() { throw .quantization(.stopped) }
    if case let .shard(shard) = run {
        try work.recordShard(shard, matrices: mine)
        return nil
    }

    // The artifact, assembled in a temporary sibling directory.
    let fm = FileManager.default
    let temporary = try makeTemporaryDirectory(for: out)
    var published = false
    defer { if !published { try? fm.removeItem(at: temporary) } }

    let deltaURL = temporary.appendingPathComponent(ArtifactManifest.deltaFileName)
    let writer: SafetensorsWriter
    do {
        writer = try SafetensorsWriter(url: deltaURL, tensors: declarations, metadata: [
            "deltaplan.artifact.format": String(ArtifactManifest.currentFormatVersion),
            "deltaplan.store.identity": store.identity,
        ])
    } catch { throw .checkpoint("\(error)") }
    var tensorRecords: [ArtifactManifest.TensorRecord] = []
    func put(_ name: String, _ bytes: UnsafeRawBufferPointer, _ d: TensorDeclaration) throws(ArtifactError) {
        do { try writer.write(name, bytes: bytes) } catch { throw .checkpoint("\(error)") }
        tensorRecords.append(.init(name: name, dtype: d.dtype.rawValue, shape: d.shape, bytes: bytes.count, sha256: Digest.sha256(bytes)))
    }
    for index in plan.matrices.indices where !matrixDeclarations[index].isEmpty {
        let part = try work.open(index)
        for d in matrixDeclarations[index] {
            do {
                try part.withRawBytes(of: d.name) { raw in
                    guard raw.count == d.byteCount else {
                        throw ArtifactError.io(path: work.url(index).path, reason: "\(d.name) has \(raw.count) bytes, \(d.byteCount.map(String.init) ?? "an invalid size") declared")
                    }
                    try put(d.name, raw, d)
                }
            } catch let error as ArtifactError { throw error } catch {
                throw .io(path: work.url(index).path, reason: "cannot read \(d.name): \(error)")
            }
        }
    }

    // Carried tensors.
    var carriedBytes = 0
    for c in carried {
        let declaration = TensorDeclaration(name: c.name, dtype: DType(rawValue: c.dtype)!, shape: c.shape)
        do {
            carriedBytes += try finetuned.withRawBytes(of: c.name) { raw in
                try put(c.name, raw, declaration)
                return raw.count
            }
        } catch let error as ArtifactError { throw error } catch { throw .checkpoint("\(error)") }
        progress(.carried(name: c.name))
    }
    do { try writer.finish() } catch { throw .checkpoint("\(error)") }

    // Model files.
    var modelFiles: [ArtifactManifest.ModelFileRecord] = []
    if !modelFileSources.isEmpty {
        let folder = temporary.appendingPathComponent(ModelFiles.folder)
        do { try fm.createDirectory(at: folder, withIntermediateDirectories: false) } catch {
            throw .io(path: folder.path, reason: "cannot create: \(error.localizedDescription)")
        }
        for source in modelFileSources { modelFiles.append(try ModelFiles.copy(source, into: folder)) }
    }

    // Manifest.
    let size = (try? fm.attributesOfItem(atPath: deltaURL.path)[.size] as? NSNumber)?.intValue ?? 0
    let deltaSHA: String
    do { deltaSHA = try Digest.sha256(fileAt: deltaURL) } catch { throw .io(path: deltaURL.path, reason: "\(error)") }
    let headerBytes: Int
    do { headerBytes = try SafetensorsFile(contentsOf: deltaURL).dataStart } catch { throw .checkpoint("\(error)") }
    let finalRecords = matrixRecords.map { $0! }
    let plannedBytes = finalRecords.reduce(0) { $0 + $1.storedBytes }
    let manifest = ArtifactManifest(
        formatVersion: ArtifactManifest.currentFormatVersion, toolVersion: options.toolVersion, plan: plan,
        planSHA256: planSHA256, planPath: options.planPath,
        store: .init(path: store.url.path, identity: store.identity, dataFree: store.manifest.dataFree),
        inputs: .init(base: recorded.base, finetuned: recorded.finetuned), dampening: options.dampening,
        delta: .init(name: ArtifactManifest.deltaFileName, size: size, sha256: deltaSHA, headerBytes: headerBytes),
        matrices: finalRecords, carried: carried, unchanged: unchanged, removed: removed,
        tensors: tensorRecords.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }, modelFiles: modelFiles,
        totals: .init(planStorageBits: plan.totals.storageBits, plannedBytes: plannedBytes,
                      plannedOverPlan: plan.totals.storageBits > 0 ? Double(8 * plannedBytes) / Double(plan.totals.storageBits) : 0,
                      carriedBytes: carriedBytes, headerBytes: headerBytes, fileBytes: size))
    try writeJSON(manifest, to: temporary.appendingPathComponent(ArtifactManifest.fileName))
    try publishDirectory(temporary, as: out)
    published = true
    work.remove()
    progress(.finished(artifact: out))
    return manifest
}

/// Where ``compress(store:plan:calibration:options:to:parallelism:progress:shouldStop:)`` keeps each
/// matrix's encoded segments until the artifact at `out` is published: the hidden sibling
/// `.NAME.partial`. Remove it to make a rerun start over.
public func compressionWorkDirectory(for out: URL) -> URL {
    let name = out.standardizedFileURL.lastPathComponent
    return out.standardizedFileURL.deletingLastPathComponent().appendingPathComponent(".\(name).partial", isDirectory: true)
}

/// The artifact's record of matrix `m`.
private func matrixRecord(
    _ m: Plan.Matrix, method: QuantizationMethod, order: SegmentOrder, groupSize: Int, calibrationEntry: String?,
    storedBytes: Int, warnings: [String]
) -> ArtifactManifest.MatrixRecord {
    .init(
        name: m.name, type: m.type.rawValue, shape: m.shape, method: method, order: order, groupSize: groupSize,
        calibrationEntry: calibrationEntry,
        segments: m.segments.enumerated().map { j, s in
            .init(start: s.start, end: s.end, bits: s.bits, prefix: ArtifactTensor.prefix(matrix: m.name, segment: j))
        },
        dense: m.dense ? true : nil, planStorageBits: m.storageBits, storedBytes: storedBytes, warnings: warnings)
}

/// Stores a dense matrix (a `keep` pin): ΔW = W_ft − W_base in Float32, rounded to F16 (nearest
/// even), row-major, saved in the work directory as the one tensor `declaration`. Its only error
/// is that rounding (at most 2⁻¹¹ of each element in F16's normal range, 2⁻²⁵ absolute below it).
/// Nothing is quantized (the record says `rtn`); the calibration entry is recorded as for a
/// factored matrix, so that `evaluate` measures its error with the same statistics.
///
/// - Throws: ``ArtifactError/unrepresentable(tensor:reason:)`` when an element of ΔW is beyond
///   F16's range (±65504) or not finite, naming the matrix and the element.
private func keepMatrix(
    _ m: Plan.Matrix, index: Int, record: StoreManifest.MatrixRecord, store: SpectrumStore, base: Checkpoint, finetuned: Checkpoint,
    declaration: TensorDeclaration, work: CompressionWork
) throws(ArtifactError) -> CompressionWork.Saved {
    let (ft, b): ([Float], [Float])
    do {
        ft = try finetuned.floats(m.name)
        b = try base.floats(m.name)
    } catch { throw .checkpoint("\(error)") }
    guard ft.count == m.shape[0] * m.shape[1], b.count == ft.count else {
        throw .inputMismatch(input: "base/fine-tuned", path: m.name, reason: "\(b.count) / \(ft.count) elements, the plan's shape \(m.shape) has \(m.shape[0] * m.shape[1])")
    }
    var halves = [Float16](repeating: 0, count: ft.count)
    for t in halves.indices {
        let delta = ft[t] - b[t], half = Float16(delta)
        guard half.isFinite else {
            throw .unrepresentable(tensor: m.name, reason: "ΔW element \(t) (row \(t / m.shape[1]), column \(t % m.shape[1])) is \(delta), "
                                   + "beyond F16's range: the matrix cannot be kept dense; pin it to segments instead")
        }
        halves[t] = half
    }
    let bytes = ArtifactTensor.halfBytes(halves)
    let entry = store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
    let saved = CompressionWork.Saved(method: .rtn, calibrationEntry: entry, warnings: [], storedBytes: bytes.count)
    try work.save(index, name: m.name, payloads: [TensorPayload(name: declaration.name, dtype: declaration.dtype, shape: declaration.shape,
                                                              contents: .bytes(bytes))], saved)
    return saved
}

/// Quantizes one planned matrix's segments and saves their encoded tensors in the work directory.
private func compressMatrix(
    _ m: Plan.Matrix, index: Int, record: StoreManifest.MatrixRecord, store: SpectrumStore, calibration: CalibrationSet?,
    method requested: QuantizationMethod, order: SegmentOrder, groupSize: Int, dampening: Double,
    declarations: [TensorDeclaration], hessians: HessianCache, work: CompressionWork
) throws(ArtifactError) -> CompressionWork.Saved {
    var warnings: [String] = []
    var payloads: [TensorPayload] = []
    let decls = Dictionary(uniqueKeysWithValues: declarations.map { ($0.name, $0) })
    let quantized = try quantizeMatrix(m, record: record, store: store, calibration: calibration, method: requested, order: order,
                                       groupSize: groupSize, dampening: dampening, hessians: hessians) { j, q throws(ArtifactError) in
        warnings += q.warnings.map { "segment \(j): \($0)" }
        let encoded = ArtifactTensor.encode(q, prefix: ArtifactTensor.prefix(matrix: m.name, segment: j))
        for name in encoded.keys.sorted() {
            let bytes = encoded[name]!
            guard let d = decls[name], d.byteCount == bytes.count else {
                preconditionFailure("encoded tensor \(name) does not match its declaration")
            }
            payloads.append(TensorPayload(name: name, dtype: d.dtype, shape: d.shape, contents: .bytes(bytes)))
        }
    }
    let storedBytes = payloads.reduce(0) { total, p in
        if case let .bytes(b) = p.contents { return total + b.count }
        return total
    }
    let saved = CompressionWork.Saved(method: quantized.method, calibrationEntry: quantized.entry, warnings: warnings, storedBytes: storedBytes)
    try work.save(index, name: m.name, payloads: payloads, saved)
    return saved
}

/// The calibration entry whose H a matrix is quantized with: nil (H = I, RTN) in a data-free store
/// or where the matrix had no Gram.
func quantizationEntry(_ record: StoreManifest.MatrixRecord, store: SpectrumStore) -> String? {
    store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
}

/// Planned matrix `m`'s segments quantized in order, as `compress` stores them, each handed to
/// `each` (with its index) as soon as it is quantized; returns the method used (RTN where the
/// matrix has no calibration entry: H = I) and the calibration entry.
func quantizeMatrix(
    _ m: Plan.Matrix, record: StoreManifest.MatrixRecord, store: SpectrumStore, calibration: CalibrationSet?,
    method requested: QuantizationMethod, order: SegmentOrder, groupSize: Int, dampening: Double, hessians: HessianCache,
    each: (Int, QuantizedSegment) throws(ArtifactError) -> Void
) throws(ArtifactError) -> (method: QuantizationMethod, entry: String?) {
    let entry = quantizationEntry(record, store: store)
    let method: QuantizationMethod = entry == nil ? .rtn : requested
    guard !m.segments.isEmpty else { return (method, entry) }
    let factors: StoredFactors
    do { factors = try store.factors(of: record) } catch { throw .quantization(.store(error)) }
    var hessian: Matrix<Float>?, prepared: PreparedHessian?
    if let entry, let calibration {
        do {
            (hessian, prepared) = try hessians.get(entry, calibration: calibration,
                                                   prepare: method == .gptq && m.segments.contains { (2...8).contains($0.bits) },
                                                   dampening: dampening)
        } catch { throw .quantization(error) }
    }
    let segmentOptions = SegmentOptions(method: method, order: order, groupSize: groupSize, dampening: dampening)
    var quantizer: MatrixQuantizer
    do {
        quantizer = try MatrixQuantizer(factors, segments: m.segments, hessian: hessian, options: segmentOptions, preparedV: prepared)
    } catch { throw .quantization(error) }
    for j in m.segments.indices {
        let q: QuantizedSegment
        do { q = try quantizer.next() } catch { throw .quantization(error) }
        try each(j, q)
    }
    return (method, entry)
}

/// What compressing one planned matrix holds at its peak, in bytes (for ``Parallelism/memoryLimit``):
/// H and its GPTQ preparation, the factors, the earlier segments' V̂ and Û σ̃, and the longest
/// segment's working products.
private func compressionBytes(_ m: Plan.Matrix, record: StoreManifest.MatrixRecord, calibrated: Bool) -> Int {
    let (rows, columns, r) = (record.rows, record.columns, record.storedRank ?? 0)
    if m.dense { return 4 * 3 * rows * columns }  // the two weights in Float32 and the F16 delta
    let kept = m.segments.last?.end ?? 0
    let longest = m.segments.map(\.count).max() ?? 0
    let hessians = calibrated ? 2 * columns * columns : 0
    return 4 * (hessians + (r + kept) * (rows + columns) + longest * (6 * columns + 6 * rows))
}

/// The work directory of one compression: `NNNNN.safetensors` per planned matrix (its encoded
/// tensors, by their artifact names), whose metadata holds the compression's key, the matrix and
/// what its record needs. A file whose metadata do not match is ignored and rewritten.
/// `Sendable`: immutable; files are written atomically, each by one thread.
struct CompressionWork: Sendable {
    let directory: URL
    let key: [String: String]

    struct Saved: Sendable {
        var method: QuantizationMethod
        var calibrationEntry: String?
        var warnings: [String]
        /// Bytes of the matrix's encoded tensors.
        var storedBytes: Int
    }

    /// Creates the directory if needed, removing files for matrices beyond `matrices` and the
    /// temporaries that writers of the `own` matrices left (other shards' may be in flight).
    init(directory: URL, matrices: Int, own: Set<Int>, key: [String: String]) throws(ArtifactError) {
        self.directory = directory
        self.key = key
        let fm = FileManager.default
        do { try fm.createDirectory(at: directory, withIntermediateDirectories: true) } catch {
            throw .io(path: directory.path, reason: "cannot create the work directory: \(error.localizedDescription)")
        }
        let keep = Set((0..<matrices).map { Self.fileName($0) })
        let owned = Set(own.map { Self.fileName($0) })
        for name in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] where !keep.contains(name) {
            if Shard.parsingRecordName(name) != nil { continue }
            // A temporary `.NNNNN.safetensors.<UUID>.tmp` belongs to the matrix NNNNN.
            if name.hasPrefix("."), !owned.contains(String(name.dropFirst().prefix { $0 != "." }) + ".safetensors") { continue }
            try? fm.removeItem(at: directory.appendingPathComponent(name))
        }
    }

    /// Records that `shard` has saved its `matrices` (``ShardRecords``).
    func recordShard(_ shard: Shard, matrices: [Int]) throws(ArtifactError) {
        do { try ShardRecords.write(shard, files: matrices.map(Self.fileName), in: directory) } catch {
            throw .io(path: directory.path, reason: "cannot record shard \(shard): \(error)")
        }
    }

    /// Before a finalize: every shard of one count has recorded its matrices, and every matrix's
    /// file is this compression's (``saved(_:name:)``) with the SHA-256 its shard recorded.
    func checkShards(plan: Plan, costs: [Double], artifact: URL) throws(ArtifactError) {
        let (shards, recorded): ([Shard], [String: String])
        do throws(Shard.Problem) { (shards, recorded) = try ShardRecords.all(in: directory, command: "compress") } catch {
            throw .shards(artifact: artifact.path, reason: "\(error)")
        }
        let count = shards[0].count
        for (index, shard) in Shard.assignment(costs: costs, count: count).enumerated() {
            let name = plan.matrices[index].name
            let sha = try? Digest.sha256(fileAt: url(index))
            guard saved(index, name: name) != nil, let sha, sha == recorded[Self.fileName(index)] else {
                throw .shards(artifact: artifact.path, reason: "matrix \(name) of shard \(shard)/\(count) is missing or damaged "
                              + "(\(url(index).path)): rerun compress with --shard \(shard)/\(count), which redoes it")
            }
        }
    }

    static func fileName(_ index: Int) -> String { String(format: "%05d.safetensors", index) }

    func url(_ index: Int) -> URL { directory.appendingPathComponent(Self.fileName(index)) }

    private func metadata(_ index: Int, name: String) -> [String: String] {
        key.merging(["deltaplan.compress.work": "1", "matrix": name, "index": String(index)]) { _, new in new }
    }

    /// Matrix `index`'s saved record when its file matches this compression.
    func saved(_ index: Int, name: String) -> Saved? {
        guard let file = try? SafetensorsFile(contentsOf: url(index)) else { return nil }
        var expected = metadata(index, name: name)
        guard let method = file.metadata["method_used"].flatMap(QuantizationMethod.init(rawValue:)),
              let warningsJSON = file.metadata["warnings"],
              let warnings = try? JSONDecoder().decode([String].self, from: Data(warningsJSON.utf8)) else { return nil }
        let entry = file.metadata["calibration_entry"]
        expected["method_used"] = method.rawValue
        expected["warnings"] = warningsJSON
        if let entry { expected["calibration_entry"] = entry }
        guard file.metadata == expected else { return nil }
        let storedBytes = file.tensors.reduce(0) { $0 + $1.byteCount }
        return Saved(method: method, calibrationEntry: entry, warnings: warnings, storedBytes: storedBytes)
    }

    func save(_ index: Int, name: String, payloads: [TensorPayload], _ saved: Saved) throws(ArtifactError) {
        var metadata = metadata(index, name: name)
        metadata["method_used"] = saved.method.rawValue
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let warnings = (try? encoder.encode(saved.warnings)) ?? Data("[]".utf8)
        metadata["warnings"] = String(decoding: warnings, as: UTF8.self)
        if let entry = saved.calibrationEntry { metadata["calibration_entry"] = entry }
        do { try SafetensorsFile.write(payloads, metadata: metadata, to: url(index)) } catch {
            throw .io(path: url(index).path, reason: "cannot save the quantized segments: \(error)")
        }
    }

    func open(_ index: Int) throws(ArtifactError) -> SafetensorsFile {
        do { return try SafetensorsFile(contentsOf: url(index)) } catch {
            throw .io(path: url(index).path, reason: "cannot read the quantized segments: \(error)")
        }
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }
}

/// Whether tensor `name` has the same stored bytes in `a` and `b`, compared in place in the two
/// mappings (no copies).
func sameBytes(_ a: Checkpoint, _ b: Checkpoint, _ name: String) throws(ArtifactError) -> Bool {
    do {
        return try a.withRawBytes(of: name) { x in
            try b.withRawBytes(of: name) { y in
                x.count == y.count && (x.isEmpty || memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0)
            }
        }
    } catch { throw .checkpoint("\(error)") }
}
