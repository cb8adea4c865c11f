import Analysis
import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra
import Optimizer
import Quantization

/// Why an artifact cannot be written, read, merged or evaluated. Every case names the file,
/// tensor, input or field at fault.
public enum ArtifactError: Error, Equatable, CustomStringConvertible {
    /// The plan does not belong to the store (hash, names or shapes differ).
    case planMismatch(plan: String, reason: String)
    /// A base or fine-tuned checkpoint is not the one the store (or artifact) was made from.
    case inputMismatch(input: String, path: String, reason: String)
    /// The artifact is damaged or inconsistent: `file` is `manifest.json`, `delta.safetensors` or
    /// `model-files/<name>`.
    case corrupt(artifact: String, file: String, reason: String)
    /// A file of the fine-tuned checkpoint directory that ``ModelFiles`` carries cannot be carried
    /// (a link out of the directory, not a regular file, too large).
    case modelFile(path: String, reason: String)
    /// An option or argument is out of range.
    case invalidOption(option: String, reason: String)
    case checkpoint(String)
    /// A value the format cannot hold (a kept ΔW beyond F16's range): `tensor` names the matrix.
    case unrepresentable(tensor: String, reason: String)
    case quantization(QuantizationError)
    /// A compression run in shards cannot be finalized yet (a shard missing or unfinished, a matrix
    /// missing or damaged): the reason names the shard to rerun.
    case shards(artifact: String, reason: String)
    /// A file of fitted values for `deltaplan distil apply` that does not fit the artifact.
    case distillation(file: String, reason: String)
    case io(path: String, reason: String)

    public var description: String {
        switch self {
        case let .planMismatch(plan, reason): "plan \(plan) does not belong to this store: \(reason)"
        case let .inputMismatch(input, path, reason): "the \(input) checkpoint \(path) is not the one expected: \(reason)"
        case let .corrupt(artifact, file, reason): "artifact \(artifact) is damaged (\(file)): \(reason)"
        case let .modelFile(path, reason): "model file \(path) of the fine-tuned checkpoint cannot be carried: \(reason)"
        case let .invalidOption(option, reason): "\(option): \(reason)"
        case let .checkpoint(message): message
        case let .unrepresentable(tensor, reason): "\(tensor): \(reason)"
        case let .quantization(error): error.description
        case let .shards(artifact, reason): "artifact \(artifact): \(reason)"
        case let .distillation(file, reason): "distillation file \(file): \(reason)"
        case let .io(path, reason): "\(path): \(reason)"
        }
    }
}

/// `manifest.json` of a compressed-delta artifact (format documented in `Docs/artifact-format.md`).
///
/// Encoded with sorted keys; the delta file's SHA-256, each tensor's SHA-256, each model file's
/// SHA-256 and the embedded plan's SHA-256 are verified when an artifact is opened
/// (``Artifact/init(at:)``).
///
/// Format 2 added ``modelFiles``; format 3 dense matrices (``MatrixRecord/dense``, a `keep` pin's
/// ΔW stored whole in F16). Formats 1 (no model files) and 2 (no dense matrices) are still read.
public struct ArtifactManifest: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 3
    /// The versions readers accept.
    public static let readableFormatVersions: ClosedRange<Int> = 1...3
    public static let fileName = "manifest.json"
    public static let deltaFileName = "delta.safetensors"

    public var formatVersion: Int
    public var toolVersion: String
    /// The plan realized, embedded.
    public var plan: Plan
    /// SHA-256 of the plan's canonical encoding (`Plan.encoded()`, the bytes `deltaplan plan` writes).
    public var planSHA256: String
    /// The plan file as given to `compress`, informational.
    public var planPath: String?
    public var store: StoreRecord
    /// The checkpoints the artifact is a delta between (as recorded in the store).
    public var inputs: Inputs
    /// GPTQ damping used (fraction of mean(diag H)).
    public var dampening: Double
    public var delta: FileRecord
    public var matrices: [MatrixRecord]
    /// Tensors stored as the fine-tuned tensor's bytes (`carried: finetuned`).
    public var carried: [CarriedRecord]
    /// Tensors identical (dtype, shape, bytes) in base and fine-tuned: nothing stored, merge copies the base.
    public var unchanged: [String]
    /// Tensors of the base absent from the fine-tuned checkpoint: merge leaves them out.
    public var removed: [String]
    /// Every tensor of `delta.safetensors`, sorted by name.
    public var tensors: [TensorRecord]
    /// The fine-tuned checkpoint's non-tensor files (``ModelFiles``), stored byte for byte as
    /// `model-files/<name>`, sorted by name. Present (possibly empty) from format 2 on; nil in a
    /// format-1 artifact, which has none.
    public var modelFiles: [ModelFileRecord]?
    public var totals: Totals
    /// Set by `deltaplan distil apply`: the segments' σ and the scales of Û and V̂ᵀ are those fitted end to end by
    /// `deltaplan-model distil` in this file, not the compressor's. Absent otherwise.
    public var distillation: DistillationRecord?

    public init(
        formatVersion: Int, toolVersion: String, plan: Plan, planSHA256: String, planPath: String? = nil,
        store: StoreRecord, inputs: Inputs, dampening: Double, delta: FileRecord, matrices: [MatrixRecord],
        carried: [CarriedRecord], unchanged: [String], removed: [String], tensors: [TensorRecord],
        modelFiles: [ModelFileRecord]? = nil, totals: Totals
    ) {
        self.formatVersion = formatVersion
        self.toolVersion = toolVersion
        self.plan = plan
        self.planSHA256 = planSHA256
        self.planPath = planPath
        self.store = store
        self.inputs = inputs
        self.dampening = dampening
        self.delta = delta
        self.matrices = matrices
        self.carried = carried
        self.unchanged = unchanged
        self.removed = removed
        self.tensors = tensors
        self.modelFiles = modelFiles
        self.totals = totals
    }

    /// Where an artifact's fitted values came from when `deltaplan distil apply` replaced them.
    public struct DistillationRecord: Codable, Sendable, Equatable {
        /// The fitted file as given.
        public var path: String
        public var sha256: String
        /// The delta SHA-256 of the artifact whose values were replaced.
        public var replacedFrom: String
        /// The fitted file's own metadata (the distillation's settings and errors).
        public var metadata: [String: String]

        public init(path: String, sha256: String, replacedFrom: String, metadata: [String: String]) {
            self.path = path
            self.sha256 = sha256
            self.replacedFrom = replacedFrom
            self.metadata = metadata
        }
    }

    public struct StoreRecord: Codable, Sendable, Equatable {
        public var path: String
        /// SHA-256 of the store's manifest (= `plan.source.hash`).
        public var identity: String
        public var dataFree: Bool

        public init(path: String, identity: String, dataFree: Bool) {
            self.path = path
            self.identity = identity
            self.dataFree = dataFree
        }
    }

    public struct Inputs: Codable, Sendable, Equatable {
        public var base: StoreManifest.InputRecord
        public var finetuned: StoreManifest.InputRecord

        public init(base: StoreManifest.InputRecord, finetuned: StoreManifest.InputRecord) {
            self.base = base
            self.finetuned = finetuned
        }
    }

    public struct FileRecord: Codable, Sendable, Equatable {
        public var name: String
        public var size: Int
        public var sha256: String
        /// 8 + the safetensors JSON header length.
        public var headerBytes: Int

        public init(name: String, size: Int, sha256: String, headerBytes: Int) {
            self.name = name
            self.size = size
            self.sha256 = sha256
            self.headerBytes = headerBytes
        }
    }

    public struct SegmentRecord: Codable, Sendable, Equatable {
        public var start: Int
        public var end: Int
        public var bits: Int
        /// Tensor-name prefix, `<matrix>.seg<i>`.
        public var prefix: String

        public init(start: Int, end: Int, bits: Int, prefix: String) {
            self.start = start
            self.end = end
            self.bits = bits
            self.prefix = prefix
        }
    }

    public struct MatrixRecord: Codable, Sendable, Equatable {
        public var name: String
        public var type: LayerTypeName
        /// `[h_out, h_in]`.
        public var shape: [Int]
        /// `gptq` or `rtn` (what was actually used for the 2…8-bit segments: `rtn` whenever H = I).
        public var method: QuantizationMethod
        /// The segment order used (``SegmentOrder``); nil in artifacts written before orders
        /// existed, which used the paper's (``effectiveOrder``).
        public var order: SegmentOrder?
        public var groupSize: Int
        /// The calibration entry of H (nil: H = I).
        public var calibrationEntry: String?
        public var segments: [SegmentRecord]
        /// True when ΔW is stored whole as the F16 tensor `<name>.dense` (`[h_out, h_in]`, row-major;
        /// the plan's `dense`, a `keep` pin): `segments` is then empty. Absent otherwise (and
        /// before format 3).
        public var dense: Bool?
        /// The plan's storage bits for this matrix.
        public var planStorageBits: Int
        /// Bytes of this matrix's tensors in `delta.safetensors`.
        public var storedBytes: Int
        public var warnings: [String]

        /// The order the segments were quantized in: `order`, or `paper` for older artifacts.
        public var effectiveOrder: SegmentOrder { order ?? .paper }

        /// Whether the matrix is stored dense (``dense`` true).
        public var isDense: Bool { dense == true }

        public init(
            name: String, type: LayerTypeName, shape: [Int], method: QuantizationMethod, order: SegmentOrder? = nil,
            groupSize: Int, calibrationEntry: String? = nil, segments: [SegmentRecord], dense: Bool? = nil, planStorageBits: Int,
            storedBytes: Int, warnings: [String]
        ) {
            self.name = name
            self.type = type
            self.shape = shape
            self.method = method
            self.order = order
            self.groupSize = groupSize
            self.calibrationEntry = calibrationEntry
            self.segments = segments
            self.dense = dense
            self.planStorageBits = planStorageBits
            self.storedBytes = storedBytes
            self.warnings = warnings
        }
    }

    public struct CarriedRecord: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        /// Always `finetuned`: the tensor is the fine-tuned tensor's bytes, as stored there.
        public var carried: String

        public init(name: String, dtype: String, shape: [Int], carried: String) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.carried = carried
        }
    }

    public struct TensorRecord: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: Int
        public var sha256: String

        public init(name: String, dtype: String, shape: [Int], bytes: Int, sha256: String) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
            self.sha256 = sha256
        }
    }

    public struct ModelFileRecord: Codable, Sendable, Equatable {
        /// The file's name in the fine-tuned checkpoint directory, and in the merged one.
        public var name: String
        public var size: Int
        /// SHA-256 of its bytes.
        public var sha256: String

        public init(name: String, size: Int, sha256: String) {
            self.name = name
            self.size = size
            self.sha256 = sha256
        }
    }

    public struct Totals: Codable, Sendable, Equatable {
        /// Σ plan storage bits over the planned matrices (`plan.totals.storageBits`).
        public var planStorageBits: Int
        /// Bytes of the planned matrices' tensors (codes, scales, zeros, values, σ).
        public var plannedBytes: Int
        /// 8 · plannedBytes / planStorageBits.
        public var plannedOverPlan: Double
        public var carriedBytes: Int
        /// The safetensors header (8 + JSON) of `delta.safetensors`.
        public var headerBytes: Int
        public var fileBytes: Int

        public init(
            planStorageBits: Int, plannedBytes: Int, plannedOverPlan: Double, carriedBytes: Int, headerBytes: Int,
            fileBytes: Int
        ) {
            self.planStorageBits = planStorageBits
            self.plannedBytes = plannedBytes
            self.plannedOverPlan = plannedOverPlan
            self.carriedBytes = carriedBytes
            self.headerBytes = headerBytes
            self.fileBytes = fileBytes
        }
    }
}

/// `LayerType`'s raw value, kept as a string so the manifest does not depend on the profile module.
public typealias LayerTypeName = String

/// Tensor names of a segment: `<matrix>.seg<i>` + one of these suffixes.
public enum ArtifactTensor {
    public static let vCodes = ".v.codes", vScales = ".v.scales", vZeros = ".v.zeros", vValues = ".v.values"
    public static let uCodes = ".u.codes", uScales = ".u.scales", uZeros = ".u.zeros", uValues = ".u.values"
    public static let sigma = ".sigma"
    /// A dense matrix's ΔW: `<matrix>.dense`.
    public static let dense = ".dense"

    public static func prefix(matrix: String, segment: Int) -> String { "\(matrix).seg\(segment)" }

    /// The declaration of a dense matrix's ΔW: F16 `[h_out, h_in]`, row-major (the checkpoint's layout).
    public static func denseDeclaration(matrix: String, rows: Int, columns: Int) -> TensorDeclaration {
        TensorDeclaration(name: matrix + dense, dtype: .f16, shape: [rows, columns])
    }

    /// Every tensor declaration of a planned matrix, in order: its segments', or its dense ΔW.
    public static func declarations(of matrix: Plan.Matrix, groupSize: Int) -> [TensorDeclaration] {
        let (rows, columns) = (matrix.shape[0], matrix.shape[1])
        if matrix.dense { return [denseDeclaration(matrix: matrix.name, rows: rows, columns: columns)] }
        return matrix.segments.enumerated().flatMap { j, s in
            declarations(prefix: prefix(matrix: matrix.name, segment: j), segment: s, rows: rows, columns: columns, groupSize: groupSize)
        }
    }

    /// The declarations of one segment's tensors, in suffix order (see `Docs/artifact-format.md`).
    /// Codes: the row-major codes of the whole weight as one stream of `count·k` bits packed into
    /// ⌈count·k/32⌉ little-endian 32-bit words (``BitPacking`` with one row), stored as I32.
    public static func declarations(prefix: String, segment: Segment, rows: Int, columns: Int, groupSize: Int) -> [TensorDeclaration] {
        let r = segment.count, k = segment.bits
        var out = [TensorDeclaration(name: prefix + sigma, dtype: .f16, shape: [r])]
        switch k {
        case 16:
            out.append(.init(name: prefix + vValues, dtype: .f16, shape: [r, columns]))
            out.append(.init(name: prefix + uValues, dtype: .f16, shape: [rows, r]))
        case 1:
            out.append(.init(name: prefix + vCodes, dtype: .i32, shape: [BitPacking.wordsPerRow(columns: r * columns, bits: 1)]))
            out.append(.init(name: prefix + vScales, dtype: .f16, shape: [r]))
            out.append(.init(name: prefix + uCodes, dtype: .i32, shape: [BitPacking.wordsPerRow(columns: rows * r, bits: 1)]))
            out.append(.init(name: prefix + uScales, dtype: .f16, shape: [rows]))
        default:
            let gv = (columns + groupSize - 1) / groupSize, gu = (r + groupSize - 1) / groupSize
            out.append(.init(name: prefix + vCodes, dtype: .i32, shape: [BitPacking.wordsPerRow(columns: r * columns, bits: k)]))
            out.append(.init(name: prefix + vScales, dtype: .f16, shape: [r, gv]))
            out.append(.init(name: prefix + vZeros, dtype: .f16, shape: [r, gv]))
            out.append(.init(name: prefix + uCodes, dtype: .i32, shape: [BitPacking.wordsPerRow(columns: rows * r, bits: k)]))
            out.append(.init(name: prefix + uScales, dtype: .f16, shape: [rows, gu]))
            out.append(.init(name: prefix + uZeros, dtype: .f16, shape: [rows, gu]))
        }
        return out
    }

    /// The bytes of every tensor of a quantized segment, by name.
    package static func encode(_ q: QuantizedSegment, prefix: String) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [prefix + sigma: halfBytes(q.singularValues)]
        func add(_ w: QuantizedWeight, codes: String, scales: String, zeros: String, values: String) {
            switch w.bits {
            case 16: out[prefix + values] = halfBytes(w.halfValues)
            default:
                out[prefix + codes] = BitPacking.bytes(of: BitPacking.pack(w.codes, rows: 1, columns: w.codes.count, bits: w.bits))
                out[prefix + scales] = halfBytes(w.scales)
                if w.bits != 1 { out[prefix + zeros] = halfBytes(w.zeros) }
            }
        }
        add(q.vt, codes: vCodes, scales: vScales, zeros: vZeros, values: vValues)
        add(q.u, codes: uCodes, scales: uScales, zeros: uZeros, values: uValues)
        return out
    }

    package static func halfBytes(_ values: [Float16]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(values.count * 2)
        for v in values {
            let b = v.bitPattern
            out.append(UInt8(truncatingIfNeeded: b))
            out.append(UInt8(truncatingIfNeeded: b >> 8))
        }
        return out
    }
}

/// An opened, verified artifact directory.
///
/// Opening reads `manifest.json`, checks its format version (1 or 2), that no name is listed
/// twice (matrices, carried, unchanged and removed tensors, the tensor table, model files), that
/// the embedded plan hashes to `planSHA256`, that the matrix table agrees with the plan (names,
/// shapes, segments, group size), the size and SHA-256 of `delta.safetensors`, that its header
/// lists exactly the manifest's tensors with their dtypes and shapes, and that `model-files/`
/// holds exactly the manifest's model files with their sizes and SHA-256. Each tensor's SHA-256,
/// and each model file's, is checked again when it is read. Cost: one pass over the delta file and
/// the model files (hashing).
public struct Artifact: Sendable {
    public let url: URL
    public let manifest: ArtifactManifest
    let file: SafetensorsFile
    let records: [String: ArtifactManifest.TensorRecord]

    public init(at url: URL) throws(ArtifactError) {
        self.url = url
        let path = url.path
        func corrupt(_ file: String, _ reason: String) -> ArtifactError { .corrupt(artifact: path, file: file, reason: reason) }
        let manifestURL = url.appendingPathComponent(ArtifactManifest.fileName)
        let data: Data
        do { data = try Data(contentsOf: manifestURL) } catch {
            throw .io(path: manifestURL.path, reason: "not an artifact (no readable manifest.json)")
        }
        struct Version: Decodable { var formatVersion: Int }
        guard let version = try? JSONDecoder().decode(Version.self, from: data) else {
            throw corrupt(ArtifactManifest.fileName, "not a JSON object with a formatVersion")
        }
        let readable = ArtifactManifest.readableFormatVersions
        guard readable.contains(version.formatVersion) else {
            throw corrupt(ArtifactManifest.fileName,
                          "formatVersion \(version.formatVersion); this build reads \(readable.lowerBound) to \(readable.upperBound)")
        }
        let manifest: ArtifactManifest
        do { manifest = try JSONDecoder().decode(ArtifactManifest.self, from: data) } catch {
            throw corrupt(ArtifactManifest.fileName, "\(error)")
        }
        self.manifest = manifest
        try Self.validate(manifest, corrupt: corrupt)

        let deltaURL = url.appendingPathComponent(manifest.delta.name)
        let size = (try? FileManager.default.attributesOfItem(atPath: deltaURL.path)[.size] as? NSNumber)?.intValue
        guard let size else { throw corrupt(manifest.delta.name, "missing") }
        guard size == manifest.delta.size else {
            throw corrupt(manifest.delta.name, "size \(size) bytes, the manifest records \(manifest.delta.size)")
        }
        let sha: String
        do { sha = try Digest.sha256(fileAt: deltaURL) } catch { throw corrupt(manifest.delta.name, "\(error)") }
        guard sha == manifest.delta.sha256 else {
            throw corrupt(manifest.delta.name, "SHA-256 \(sha) differs from the manifest's \(manifest.delta.sha256) (the file was changed or damaged)")
        }
        do { file = try SafetensorsFile(contentsOf: deltaURL) } catch { throw corrupt(manifest.delta.name, "\(error)") }
        var records: [String: ArtifactManifest.TensorRecord] = [:]
        for t in manifest.tensors { records[t.name] = t }
        self.records = records
        let present = Set(file.tensors.map(\.name))
        for t in manifest.tensors {
            guard let info = try? file.info(t.name) else { throw corrupt(manifest.delta.name, "tensor \(t.name) is missing") }
            guard info.dtype.rawValue == t.dtype, info.shape == t.shape, info.byteCount == t.bytes else {
                throw corrupt(manifest.delta.name, "tensor \(t.name) is \(info.dtype.rawValue) \(info.shape) (\(info.byteCount) bytes), "
                              + "the manifest says \(t.dtype) \(t.shape) (\(t.bytes) bytes)")
            }
        }
        if let extra = present.subtracting(records.keys).sorted().first {
            throw corrupt(manifest.delta.name, "tensor \(extra) is not in the manifest")
        }
        try verifyModelFiles()
    }

    /// `model-files/` holds exactly the manifest's model files (regular files, sizes, SHA-256).
    private func verifyModelFiles() throws(ArtifactError) {
        let records = manifest.modelFiles ?? []
        let folder = url.appendingPathComponent(ModelFiles.folder)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw .corrupt(artifact: url.path, file: ModelFiles.folder, reason: "is not a directory") }
            let present: [String]
            do { present = try FileManager.default.contentsOfDirectory(atPath: folder.path) } catch {
                throw .corrupt(artifact: url.path, file: ModelFiles.folder, reason: "cannot be listed: \(error.localizedDescription)")
            }
            let listed = Set(records.map(\.name))
            if let extra = present.filter({ !listed.contains($0) }).sorted().first {
                throw .corrupt(artifact: url.path, file: "\(ModelFiles.folder)/\(extra)", reason: "is not in the manifest's modelFiles")
            }
        }
        for record in records { _ = try modelFileContents(record) }
    }

    /// A model file's bytes (`model-files/<name>`), after checking that it is a regular file (not a
    /// link) with the manifest's size and SHA-256.
    public func modelFileContents(_ record: ArtifactManifest.ModelFileRecord) throws(ArtifactError) -> Data {
        let file = "\(ModelFiles.folder)/\(record.name)"
        let path = url.appendingPathComponent(ModelFiles.folder).appendingPathComponent(record.name).path
        func corrupt(_ reason: String) -> ArtifactError { .corrupt(artifact: url.path, file: file, reason: reason) }
        var info = stat()
        guard lstat(path, &info) == 0 else { throw corrupt("missing") }
        guard info.st_mode & S_IFMT == S_IFREG else { throw corrupt("is not a regular file") }
        guard Int(info.st_size) == record.size else { throw corrupt("size \(info.st_size) bytes, the manifest records \(record.size)") }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch { throw corrupt("cannot be read: \(error.localizedDescription)") }
        let sha = Digest.sha256(data)
        guard data.count == record.size, sha == record.sha256 else {
            throw corrupt("SHA-256 \(sha) differs from the manifest's \(record.sha256) (the file was changed or damaged)")
        }
        return data
    }

    /// Consistency of the manifest with itself and its embedded plan.
    static func validate(_ m: ArtifactManifest, corrupt: (String, String) -> ArtifactError) throws(ArtifactError) {
        let name = ArtifactManifest.fileName
        try validateNames(m, corrupt: corrupt)
        // The one file name the format has: any other would be read from wherever it points.
        guard m.delta.name == ArtifactManifest.deltaFileName else {
            throw corrupt(name, "delta.name is '\(m.delta.name)'; the delta file of an artifact is \(ArtifactManifest.deltaFileName)")
        }
        let planData: Data
        do { planData = try m.plan.encoded() } catch { throw corrupt(name, "plan: \(error)") }
        let planHash = Digest.sha256(planData)
        guard planHash == m.planSHA256 else {
            throw corrupt(name, "planSHA256 is \(m.planSHA256), the embedded plan hashes to \(planHash)")
        }
        do { _ = try Plan.decode(planData, file: "\(name): plan") } catch { throw corrupt(name, "plan: \(error)") }
        guard m.plan.source.hash == m.store.identity else {
            throw corrupt(name, "store.identity \(m.store.identity) is not the plan's source.hash \(m.plan.source.hash)")
        }
        guard m.matrices.count == m.plan.matrices.count else {
            throw corrupt(name, "\(m.matrices.count) matrices, the plan has \(m.plan.matrices.count)")
        }
        var tensorNames = Set(m.tensors.map(\.name))
        for (i, (a, p)) in zip(m.matrices, m.plan.matrices).enumerated() {
            let at = "matrices[\(i)]"
            guard a.name == p.name, a.shape == p.shape, a.type == p.type.rawValue else {
                throw corrupt(name, "\(at) is \(a.name) \(a.shape), the plan has \(p.name) \(p.shape)")
            }
            guard a.groupSize == m.plan.groupSize else {
                throw corrupt(name, "\(at).groupSize \(a.groupSize) differs from the plan's \(m.plan.groupSize)")
            }
            // Field by field: `Segment(start:end:bits:)` traps on start > end, and these are the file's numbers.
            guard a.segments.count == p.segments.count,
                  zip(a.segments, p.segments).allSatisfy({ $0.start == $1.start && $0.end == $1.end && $0.bits == $1.bits }) else {
                throw corrupt(name, "\(at).segments differ from the plan's")
            }
            guard a.planStorageBits == p.storageBits else {
                throw corrupt(name, "\(at).planStorageBits \(a.planStorageBits) differs from the plan's \(p.storageBits)")
            }
            guard a.isDense == p.dense else {
                throw corrupt(name, "\(at).dense is \(a.isDense), the plan's matrix is \(p.dense ? "" : "not ")dense")
            }
            if a.isDense {
                guard m.formatVersion >= 3 else { throw corrupt(name, "\(at) is dense, which formatVersion \(m.formatVersion) has not (3 added it)") }
                let d = ArtifactTensor.denseDeclaration(matrix: a.name, rows: a.shape[0], columns: a.shape[1])
                guard let t = m.tensors.first(where: { $0.name == d.name }), t.dtype == d.dtype.rawValue, t.shape == d.shape else {
                    throw corrupt(name, "tensor \(d.name) is missing from the tensor table or has the wrong dtype or shape")
                }
                tensorNames.remove(d.name)
            }
            for (j, (s, segment)) in zip(a.segments, p.segments).enumerated() {
                guard s.prefix == ArtifactTensor.prefix(matrix: a.name, segment: j) else {
                    throw corrupt(name, "\(at).segments[\(j)].prefix is \(s.prefix)")
                }
                let decls = ArtifactTensor.declarations(prefix: s.prefix, segment: segment,
                                                        rows: a.shape[0], columns: a.shape[1], groupSize: a.groupSize)
                for d in decls {
                    guard let t = m.tensors.first(where: { $0.name == d.name }), t.dtype == d.dtype.rawValue, t.shape == d.shape else {
                        throw corrupt(name, "tensor \(d.name) is missing from the tensor table or has the wrong dtype or shape")
                    }
                    tensorNames.remove(d.name)
                }
            }
        }
        for c in m.carried {
            guard let t = m.tensors.first(where: { $0.name == c.name }), t.dtype == c.dtype, t.shape == c.shape else {
                throw corrupt(name, "carried tensor \(c.name) is missing from the tensor table or differs in dtype or shape")
            }
            guard c.carried == "finetuned" else { throw corrupt(name, "carried tensor \(c.name): unknown carried value '\(c.carried)'") }
            tensorNames.remove(c.name)
        }
        if let extra = tensorNames.sorted().first { throw corrupt(name, "tensor \(extra) belongs to no matrix or carried entry") }
    }

    /// Every name once: a checkpoint tensor is in at most one of `matrices`, `carried`,
    /// `unchanged` and `removed`, and once there; the tensor table and the model files list each
    /// name once; model files are present from format 2 on, absent in format 1, and named safely
    /// (``ModelFiles/isValidRecordName(_:)``). Checked first, so that nothing builds a table from
    /// a manifest with a repeated key.
    static func validateNames(_ m: ArtifactManifest, corrupt: (String, String) -> ArtifactError) throws(ArtifactError) {
        let name = ArtifactManifest.fileName
        var role: [String: String] = [:]
        let lists: [(String, [String])] = [("matrices", m.matrices.map(\.name)), ("carried", m.carried.map(\.name)),
                                           ("unchanged", m.unchanged), ("removed", m.removed)]
        for (list, names) in lists {
            for tensor in names {
                if let first = role[tensor] {
                    throw corrupt(name, first == list ? "\(tensor) is listed twice in \(list)" : "\(tensor) is listed in both \(first) and \(list)")
                }
                role[tensor] = list
            }
        }
        var seen = Set<String>()
        for t in m.tensors where !seen.insert(t.name).inserted { throw corrupt(name, "tensor \(t.name) is listed twice in tensors") }
        switch (m.formatVersion, m.modelFiles) {
        case (1, .some): throw corrupt(name, "formatVersion 1 has no modelFiles, but the manifest lists them")
        case (1, .none): return
        case (_, .none): throw corrupt(name, "modelFiles is missing (required from formatVersion 2)")
        case let (_, .some(files)):
            seen = []
            for f in files {
                guard ModelFiles.isValidRecordName(f.name) else {
                    throw corrupt(name, "model file name '\(f.name)' is not a plain file name, or names a weight file")
                }
                guard seen.insert(f.name).inserted else { throw corrupt(name, "model file \(f.name) is listed twice in modelFiles") }
                guard f.size >= 0 else { throw corrupt(name, "model file \(f.name) has a negative size") }
            }
        }
    }

    /// A tensor's bytes, after checking them against the manifest's SHA-256.
    public func tensorBytes(_ name: String) throws(ArtifactError) -> [UInt8] {
        guard let record = records[name] else {
            throw .corrupt(artifact: url.path, file: manifest.delta.name, reason: "tensor \(name) is not in the manifest")
        }
        let bytes: [UInt8]
        do { bytes = try file.rawBytes(name) } catch { throw .corrupt(artifact: url.path, file: manifest.delta.name, reason: "\(error)") }
        let sha = Digest.sha256(bytes)
        guard sha == record.sha256 else {
            throw .corrupt(artifact: url.path, file: manifest.delta.name, reason: "tensor \(name) fails its SHA-256 check")
        }
        return bytes
    }

    public func matrix(named name: String) -> ArtifactManifest.MatrixRecord? {
        manifest.matrices.first { $0.name == name }
    }

    /// The stored segments of a matrix, decoded: codes unpacked, scales, zeros and σ read, and each
    /// weight dequantized exactly as the format defines (ŵ = scale·(q − zero) in Float32 for
    /// 2…8 bits, ±scale for 1 bit, the F16 value for 16 bits).
    public func segments(of record: ArtifactManifest.MatrixRecord) throws(ArtifactError) -> [QuantizedSegment] {
        var out: [QuantizedSegment] = []
        let (rows, columns) = (record.shape[0], record.shape[1])
        for s in record.segments {
            let segment = Segment(start: s.start, end: s.end, bits: s.bits)
            let r = segment.count
            let sigma = try finiteHalves(s.prefix + ArtifactTensor.sigma)
            let vt = try weight(s.prefix, v: true, rows: r, columns: columns, bits: s.bits, groupSize: record.groupSize)
            let u = try weight(s.prefix, v: false, rows: rows, columns: r, bits: s.bits, groupSize: record.groupSize)
            out.append(QuantizedSegment(segment: segment, rows: rows, columns: columns, vt: vt, u: u, singularValues: sigma))
        }
        return out
    }

    /// ΔŴ of a matrix, `h_out × h_in` column-major: Σ Û diag(σ̂) V̂ᵀ over its segments, or a
    /// dense matrix's F16 ΔW converted exactly to Float32.
    public func reconstruction(of record: ArtifactManifest.MatrixRecord) throws(ArtifactError) -> Matrix<Float> {
        let (rows, columns) = (record.shape[0], record.shape[1])
        guard record.isDense else { return reconstruct(try segments(of: record), rows: rows, columns: columns) }
        let values = try finiteHalves(record.name + ArtifactTensor.dense)
        var out = Matrix<Float>(rows: rows, columns: columns)
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows { for c in 0..<columns { o[r + c * rows] = Float(values[r * columns + c]) } }
        }
        return out
    }

    private func weight(_ prefix: String, v: Bool, rows: Int, columns: Int, bits: Int, groupSize: Int) throws(ArtifactError) -> QuantizedWeight {
        let T = ArtifactTensor.self
        var out = Matrix<Float>(rows: rows, columns: columns)
        if bits == 16 {
            let values = try finiteHalves(prefix + (v ? T.vValues : T.uValues))
            out.withUnsafeMutableBufferPointer { o in
                for r in 0..<rows { for c in 0..<columns { o[r + c * rows] = Float(values[r * columns + c]) } }
            }
            return QuantizedWeight(rows: rows, columns: columns, bits: 16, groupSize: 0, codes: [], scales: [], zeros: [],
                                   halfValues: values, permutation: nil, dequantized: out, dampening: nil, warnings: [])
        }
        let wordsBytes = try tensorBytes(prefix + (v ? T.vCodes : T.uCodes))
        var words = [UInt32](repeating: 0, count: wordsBytes.count / 4)
        for i in 0..<words.count {
            words[i] = UInt32(wordsBytes[4 * i]) | UInt32(wordsBytes[4 * i + 1]) << 8 | UInt32(wordsBytes[4 * i + 2]) << 16 | UInt32(wordsBytes[4 * i + 3]) << 24
        }
        let codes = BitPacking.unpack(words, rows: 1, columns: rows * columns, bits: bits)
        let scales = try finiteHalves(prefix + (v ? T.vScales : T.uScales))
        if bits == 1 {
            out.withUnsafeMutableBufferPointer { o in
                for r in 0..<rows {
                    let s = Float(scales[r])
                    for c in 0..<columns { o[r + c * rows] = codes[r * columns + c] == 1 ? s : -s }
                }
            }
            return QuantizedWeight(rows: rows, columns: columns, bits: 1, groupSize: columns, codes: codes, scales: scales,
                                   zeros: [], halfValues: [], permutation: nil, dequantized: out, dampening: nil, warnings: [])
        }
        let zeros = try finiteHalves(prefix + (v ? T.vZeros : T.uZeros))
        let groups = (columns + groupSize - 1) / groupSize
        out.withUnsafeMutableBufferPointer { o in
            for r in 0..<rows {
                for c in 0..<columns {
                    let g = r * groups + c / groupSize
                    let scale = Float(scales[g]), zero = Float(zeros[g])
                    o[r + c * rows] = scale * (Float(codes[r * columns + c]) - zero)
                }
            }
        }
        return QuantizedWeight(rows: rows, columns: columns, bits: bits, groupSize: groupSize, codes: codes, scales: scales,
                               zeros: zeros, halfValues: [], permutation: nil, dequantized: out, dampening: nil, warnings: [])
    }

    /// A checked F16 tensor (σ, scales, zeros, 16-bit values): the writer never stores NaN or ±∞
    /// (it refuses values F16 cannot hold), so one here is damage, refused rather than merged.
    package func finiteHalves(_ name: String) throws(ArtifactError) -> [Float16] {
        let bytes = try tensorBytes(name)
        let values = (0..<(bytes.count / 2)).map { Float16(bitPattern: UInt16(bytes[2 * $0]) | UInt16(bytes[2 * $0 + 1]) << 8) }
        guard values.allSatisfy(\.isFinite) else {
            throw .corrupt(artifact: url.path, file: manifest.delta.name, reason: "tensor \(name) holds NaN or infinite values")
        }
        return values
    }
}

/// Checks a checkpoint against a recorded fingerprint: same files, sizes and header hashes, and,
/// when `checkModified`, the same modification times or, where they differ and the store recorded
/// them, the same contents (a copy moved elsewhere keeps size and header but not its time, so
/// overrides are checked without it).
package func verifyInput(_ checkpoint: Checkpoint, path: String, against recorded: StoreManifest.InputRecord, role: String,
                 checkModified: Bool) throws(ArtifactError) {
    let now: [(fingerprint: FileFingerprint, url: URL)]
    do { now = try FileFingerprint.files(of: checkpoint, hashContent: false) } catch { throw .io(path: path, reason: "\(error)") }
    guard now.map(\.fingerprint.name) == recorded.files.map(\.name) else {
        throw .inputMismatch(input: role, path: path, reason: "files \(now.map(\.fingerprint.name)), expected \(recorded.files.map(\.name))")
    }
    for ((a, url), b) in zip(now, recorded.files) {
        var a = a
        if !checkModified { a.modified = b.modified }
        let change: String?
        do { change = try a.change(from: b, at: url) } catch { throw .io(path: url.path, reason: "\(error)") }
        if let change { throw .inputMismatch(input: role, path: path, reason: change) }
    }
}

package func openCheckpoint(_ url: URL) throws(ArtifactError) -> Checkpoint {
    do { return try Checkpoint(at: url) } catch { throw .checkpoint("\(error)") }
}
