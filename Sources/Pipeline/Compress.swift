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
/// - Streaming: one matrix's factors, H and its prepared factor, and the encoded segments at a
///   time (with error feedback also the earlier segments' V̂ and Û diag(σ̃) of that matrix, at
///   most (h_out + h_in) × stored rank Floats; ΔW itself is never formed); carried tensors are
///   compared and copied in place in the checkpoints' mappings, one at a time.
/// - Atomic: built in a temporary sibling directory, then renamed over `out` (an existing `out`
///   is replaced only once the new artifact is complete).
/// - `shouldStop` is checked before each matrix and before the carried tensors: when it returns
///   true, the temporary directory is removed and `.quantization(.stopped)` thrown.
@discardableResult
public func compress(
    store: SpectrumStore, plan: Plan, calibration: CalibrationSet?, options: CompressionOptions, to out: URL,
    progress: (CompressionEvent) -> Void = { _ in }, shouldStop: () -> Bool = { false }
) throws(ArtifactError) -> ArtifactManifest {
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
    do { _ = try checkCalibration(store: store, calibration: calibration) } catch { throw .quantization(error) }
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
        var decls: [TensorDeclaration] = []
        for (j, s) in m.segments.enumerated() {
            decls += ArtifactTensor.declarations(prefix: ArtifactTensor.prefix(matrix: m.name, segment: j), segment: s,
                                                 rows: m.shape[0], columns: m.shape[1], groupSize: plan.groupSize)
        }
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

    // Temporary sibling directory.
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

    // Matrices.
    let work = plan.matrices.map { m in Double(m.shape[0]) * Double(m.shape[1]) * Double(max(1, m.segments.last?.end ?? 0)) }
    progress(.started(matrices: plan.matrices.map(\.name), work: work, carried: carried.count))
    if let orderWarning { progress(.warning(orderWarning)) }
    var hessians = HessianCache(capacity: 3)
    var matrixRecords: [ArtifactManifest.MatrixRecord] = []
    for (index, (m, record)) in zip(plan.matrices, records).enumerated() {
        if shouldStop() { throw .quantization(.stopped) }
        progress(.matrixStarted(index: index, total: plan.matrices.count, name: m.name))
        let start = Date()
        let entry = store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
        let method: QuantizationMethod = entry == nil ? .rtn : options.method
        var warnings: [String] = []
        var storedBytes = 0
        let decls = Dictionary(uniqueKeysWithValues: matrixDeclarations[index].map { ($0.name, $0) })
        if !m.segments.isEmpty {
            let factors: StoredFactors
            do { factors = try store.factors(of: record) } catch { throw .quantization(.store(error)) }
            var hessian: Matrix<Float>?, prepared: PreparedHessian?
            if let entry, let calibration {
                do {
                    (hessian, prepared) = try hessians.get(entry, calibration: calibration,
                                                           prepare: method == .gptq && m.segments.contains { (2...8).contains($0.bits) },
                                                           dampening: options.dampening)
                } catch { throw .quantization(error) }
            }
            let segmentOptions = SegmentOptions(method: method, order: order, groupSize: plan.groupSize, dampening: options.dampening)
            var quantizer: MatrixQuantizer
            do {
                quantizer = try MatrixQuantizer(factors, segments: m.segments, hessian: hessian, options: segmentOptions, preparedV: prepared)
            } catch { throw .quantization(error) }
            for j in m.segments.indices {
                let q: QuantizedSegment
                do { q = try quantizer.next() } catch { throw .quantization(error) }
                warnings += q.warnings.map { "segment \(j): \($0)" }
                let encoded = ArtifactTensor.encode(q, prefix: ArtifactTensor.prefix(matrix: m.name, segment: j))
                for name in encoded.keys.sorted() {
                    let bytes = encoded[name]!
                    guard let d = decls[name], d.byteCount == bytes.count else {
                        preconditionFailure("encoded tensor \(name) does not match its declaration")
                    }
                    try bytes.withUnsafeBytes { raw in Result { () throws(ArtifactError) in try put(name, raw, d) } }.get()
                    storedBytes += bytes.count
                }
            }
        }
        matrixRecords.append(.init(
            name: m.name, type: m.type.rawValue, shape: m.shape, method: method, order: order, groupSize: plan.groupSize,
            calibrationEntry: entry,
            segments: m.segments.enumerated().map { j, s in
                .init(start: s.start, end: s.end, bits: s.bits, prefix: ArtifactTensor.prefix(matrix: m.name, segment: j))
            },
            planStorageBits: m.storageBits, storedBytes: storedBytes, warnings: warnings))
        progress(.matrixFinished(index: index, total: plan.matrices.count, name: m.name, seconds: Date().timeIntervalSince(start)))
    }

    // Carried tensors.
    if shouldStop() { throw .quantization(.stopped) }
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
    let planData: Data
    do { planData = try plan.encoded() } catch { throw .planMismatch(plan: planName, reason: "\(error)") }
    let plannedBytes = matrixRecords.reduce(0) { $0 + $1.storedBytes }
    let manifest = ArtifactManifest(
        formatVersion: ArtifactManifest.currentFormatVersion, toolVersion: options.toolVersion, plan: plan,
        planSHA256: Digest.sha256(planData), planPath: options.planPath,
        store: .init(path: store.url.path, identity: store.identity, dataFree: store.manifest.dataFree),
        inputs: .init(base: recorded.base, finetuned: recorded.finetuned), dampening: options.dampening,
        delta: .init(name: ArtifactManifest.deltaFileName, size: size, sha256: deltaSHA, headerBytes: headerBytes),
        matrices: matrixRecords, carried: carried, unchanged: unchanged, removed: removed,
        tensors: tensorRecords.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }, modelFiles: modelFiles,
        totals: .init(planStorageBits: plan.totals.storageBits, plannedBytes: plannedBytes,
                      plannedOverPlan: plan.totals.storageBits > 0 ? Double(8 * plannedBytes) / Double(plan.totals.storageBits) : 0,
                      carriedBytes: carriedBytes, headerBytes: headerBytes, fileBytes: size))
    try writeJSON(manifest, to: temporary.appendingPathComponent(ArtifactManifest.fileName))
    try publishDirectory(temporary, as: out)
    published = true
    progress(.finished(artifact: out))
    return manifest
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
