import ArtifactFormat
import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra
import Quantization

/// End-to-end distillation of an artifact's singular values, in three steps:
/// 1. ``exportFactors(of:to:)`` (`deltaplan distil export`) writes every segment's dequantized
///    factors in F32: `<prefix>.u` (`[h_out, c]`), `<prefix>.sigma` (`[c]`) and `<prefix>.vt`
///    (`[c, h_in]`), where `<prefix>` is the segment's prefix in the manifest (`<matrix>.seg<j>`),
///    so that Σ over a matrix's segments of u · diag(sigma) · vt is the artifact's ΔŴ;
/// 2. the companion (`deltaplan-model distil`) fits a multiplier per singular value, per row of
///    each segment's Û and per group of each row of its V̂ᵀ so that the model with W_base + ΔŴ reproduces the fine-tuned model's last
///    hidden state on calibration text, and writes the new σ as `<prefix>.sigma` (F32, `[c]`), the
///    row multipliers as `<prefix>.u_rows` (F32, `[h_out]`) and a multiplier per group of each row of
///    V̂ᵀ as `<prefix>.vt_groups` (F32, `[c, g]`: the groups of V̂ᵀ's F16 scales, whose width in
///    columns the export names per segment under ``Distillation/vtGroupColumnsKey``);
/// 3. ``applyDistillation(_:to:out:toolVersion:)`` (`deltaplan distil apply`) writes a copy of the
///    artifact with those values in its F16 σ and the scales of Û and V̂ᵀ (or 16-bit values) and the fitted file
///    recorded in its manifest (``ArtifactManifest/distillation``).
///
/// Both files carry the artifact's delta SHA-256 under ``artifactKey`` so that values fitted for
/// one artifact cannot be applied to another. Nothing else changes: same plan, codes, zeros,
/// sizes; `merge` and `evaluate` read the result as any artifact.
public enum Distillation {
    /// Metadata key of both files: the SHA-256 of the artifact's `delta.safetensors`.
    public static let artifactKey = "deltaplan.artifact.delta.sha256"
    /// Metadata key of the exported factors: a JSON object giving, per segment prefix, the width in
    /// columns of a group of V̂ᵀ's scales (the artifact's group size; a whole row at 1 bit, whose rows
    /// have one scale each; 16-bit values are grouped at the group size too).
    public static let vtGroupColumnsKey = "deltaplan.distil.vt_group_columns"
    public static let uSuffix = ".u", sigmaSuffix = ".sigma", vtSuffix = ".vt", uRowsSuffix = ".u_rows", vtGroupsSuffix = ".vt_groups"

    /// The width in columns of a group of V̂ᵀ's multipliers in a segment of `bits` bits.
    static func vtGroupColumns(bits: Int, columns: Int, groupSize: Int) -> Int { bits == 1 ? columns : min(groupSize, columns) }
}

/// What ``exportFactors(of:to:)`` wrote.
public struct ExportedFactors: Sendable, Equatable {
    public var matrices: Int
    public var segments: Int
    public var bytes: Int
}

/// Writes the dequantized factors of every segment of `artifact` to the safetensors file `out`
/// (atomically); dense (`keep`) matrices have no factors and are left out.
public func exportFactors(of artifact: Artifact, to out: URL) throws(ArtifactError) -> ExportedFactors {
    let records = artifact.manifest.matrices.filter { !$0.isDense && !$0.segments.isEmpty }
    var declarations: [TensorDeclaration] = []
    var groupColumns: [String: Int] = [:]
    for record in records {
        let (rows, columns) = (record.shape[0], record.shape[1])
        for s in record.segments {
            let c = s.end - s.start
            groupColumns[s.prefix] = Distillation.vtGroupColumns(bits: s.bits, columns: columns, groupSize: record.groupSize)
            declarations += [
                TensorDeclaration(name: s.prefix + Distillation.uSuffix, dtype: .f32, shape: [rows, c]),
                TensorDeclaration(name: s.prefix + Distillation.sigmaSuffix, dtype: .f32, shape: [c]),
                TensorDeclaration(name: s.prefix + Distillation.vtSuffix, dtype: .f32, shape: [c, columns]),
            ]
        }
    }
    do {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let writer = try SafetensorsWriter(url: out, tensors: declarations, metadata: [
            Distillation.artifactKey: artifact.manifest.delta.sha256,
            Distillation.vtGroupColumnsKey: String(decoding: try encoder.encode(groupColumns), as: UTF8.self),
        ])
        for record in records {
            for (s, segment) in zip(record.segments, try artifact.segments(of: record)) {
                try writer.write(s.prefix + Distillation.uSuffix, floats: rowMajor(segment.u.dequantized))
                try writer.write(s.prefix + Distillation.sigmaSuffix, floats: segment.singularValues.map(Float.init))
                try writer.write(s.prefix + Distillation.vtSuffix, floats: rowMajor(segment.vt.dequantized))
            }
        }
        try writer.finish()
    } catch let error as ArtifactError {
        throw error
    } catch {
        throw .io(path: out.path, reason: "\(error)")
    }
    let bytes = (try? FileManager.default.attributesOfItem(atPath: out.path)[.size] as? NSNumber)?.intValue ?? 0
    return ExportedFactors(matrices: records.count, segments: records.reduce(0) { $0 + $1.segments.count }, bytes: bytes)
}

/// A column-major matrix's values in row-major order.
private func rowMajor(_ m: Matrix<Float>) -> [Float] {
    var out = [Float](repeating: 0, count: m.rows * m.columns)
    m.withUnsafeBufferPointer { p in
        for c in 0..<m.columns { for r in 0..<m.rows { out[r * m.columns + c] = p[r + c * m.rows] } }
    }
    return out
}

/// Writes to `out` (atomically; it must not exist) a copy of `artifact` with the values fitted by
/// `deltaplan-model distil` in the safetensors file `fittedURL`: per segment, `<prefix>.sigma`
/// (required: the new σ), `<prefix>.u_rows` (optional, `[h_out]`: a multiplier per row of Û,
/// applied to the row's F16 scales, or to its F16 values in a 16-bit segment) and
/// `<prefix>.vt_groups` (optional, `[c, g]`: a multiplier per group of each row of V̂ᵀ, the groups
/// of ``Distillation/vtGroupColumns(bits:columns:groupSize:)``, applied to the group's F16 scale or,
/// at 16 bits, to its values), rounded to F16.
///
/// The file must name this artifact (``Distillation/artifactKey``) and hold nothing else, each
/// tensor of its segment's length; anything else, or a value F16 cannot hold, is an error naming
/// the file and tensor. Codes and zeros are untouched; the new manifest records the file (path,
/// SHA-256, its metadata).
public func applyDistillation(_ fittedURL: URL, to artifact: Artifact, out: URL, toolVersion: String) throws(ArtifactError) -> ArtifactManifest {
    let path = fittedURL.path
    func bad(_ reason: String) -> ArtifactError { .distillation(file: path, reason: reason) }
    let fm = FileManager.default
    guard !fm.fileExists(atPath: out.path) else {
        throw .invalidOption(option: "--out", reason: "\(out.path) already exists; choose a new directory (the artifact is never overwritten)")
    }
    let file: SafetensorsFile
    do { file = try SafetensorsFile(contentsOf: fittedURL) } catch { throw bad("\(error)") }
    let sha = artifact.manifest.delta.sha256
    guard let named = file.metadata[Distillation.artifactKey] else {
        throw bad("no \(Distillation.artifactKey) in its metadata: not a file of `deltaplan-model distil`")
    }
    guard named == sha else {
        throw bad("was fitted for the artifact whose delta SHA-256 is \(named), not \(artifact.url.path) (\(sha))")
    }
    func fitted(_ name: String, shape: [Int]) throws(ArtifactError) -> [Float] {
        let info: TensorInfo
        do { info = try file.info(name) } catch { throw bad("tensor \(name) is missing") }
        guard info.shape == shape else { throw bad("tensor \(name) has shape \(info.shape), expected \(shape)") }
        let values: [Float]
        do { values = try file.floats(name) } catch { throw bad("tensor \(name): \(error)") }
        if let i = values.firstIndex(where: { !$0.isFinite }) { throw bad("tensor \(name)[\(i)] is \(values[i])") }
        return values
    }
    func halves(_ values: [Float], _ name: String) throws(ArtifactError) -> [Float16] {
        var out: [Float16] = []
        out.reserveCapacity(values.count)
        for (i, v) in values.enumerated() {
            let h = Float16(v)
            guard h.isFinite else {
                throw .unrepresentable(tensor: name, reason: "element \(i) becomes \(v), beyond F16 (the artifact's type); fitted in \(path)")
            }
            out.append(h)
        }
        return out
    }

    // The new F16 values of every replaced tensor, by name.
    var replaced: [String: [Float16]] = [:]
    var used = Set<String>()
    let names = Set(file.tensors.map(\.name))
    /// When the file has the multipliers `name`, multiplies the F16 parameters `target` (`rows` rows,
    /// each held contiguously: its values, its scale or its groups' scales; ŵ is linear in each, zeros
    /// are codes) entry by entry, entry e of row k by multiplier `index(k, e)`.
    func rescale(_ name: String, shape: [Int], _ target: String, rows: Int, index: (_ row: Int, _ entry: Int) -> Int) throws(ArtifactError) {
        guard names.contains(name) else { return }
        used.insert(name)
        let multipliers = try fitted(name, shape: shape)
        let old = try artifact.finiteHalves(target)
        let perRow = old.count / rows
        replaced[target] = try halves(old.indices.map { Float(old[$0]) * multipliers[index($0 / perRow, $0 % perRow)] }, target)
    }

    for record in artifact.manifest.matrices where !record.isDense {
        let (rows, columns) = (record.shape[0], record.shape[1])
        for s in record.segments {
            let c = s.end - s.start
            let sigmaName = s.prefix + Distillation.sigmaSuffix
            replaced[s.prefix + ArtifactTensor.sigma] = try halves(try fitted(sigmaName, shape: [c]), sigmaName)
            used.insert(sigmaName)
            let uTarget = s.prefix + (s.bits == 16 ? ArtifactTensor.uValues : ArtifactTensor.uScales)
            try rescale(s.prefix + Distillation.uRowsSuffix, shape: [rows], uTarget, rows: rows) { row, _ in row }
            // V̂ᵀ's row k: `groups` scales, or (16 bits) `columns` values, value j in group j / width.
            let width = Distillation.vtGroupColumns(bits: s.bits, columns: columns, groupSize: record.groupSize)
            let groups = (columns + width - 1) / width, columnsPerEntry = s.bits == 16 ? 1 : width
            let vTarget = s.prefix + (s.bits == 16 ? ArtifactTensor.vValues : ArtifactTensor.vScales)
            try rescale(s.prefix + Distillation.vtGroupsSuffix, shape: [c, groups], vTarget, rows: c) { k, entry in
                k * groups + entry * columnsPerEntry / width
            }
        }
    }
    if let extra = names.subtracting(used).sorted().first {
        throw bad("tensor \(extra) is not the σ, the row multipliers or the V̂ᵀ group multipliers of a segment of \(artifact.url.path)")
    }

    let temporary = try makeTemporaryDirectory(for: out)
    var published = false
    defer { if !published { try? fm.removeItem(at: temporary) } }
    var manifest = artifact.manifest
    let deltaURL = temporary.appendingPathComponent(ArtifactManifest.deltaFileName)
    do {
        let writer = try SafetensorsWriter(
            url: deltaURL,
            tensors: manifest.tensors.map { TensorDeclaration(name: $0.name, dtype: DType(rawValue: $0.dtype)!, shape: $0.shape) },
            metadata: [
                "deltaplan.artifact.format": String(manifest.formatVersion),
                "deltaplan.store.identity": manifest.store.identity,
            ])
        for (t, record) in manifest.tensors.enumerated() {
            var bytes = try artifact.tensorBytes(record.name)
            if let halves = replaced[record.name] {
                bytes = ArtifactTensor.halfBytes(halves)
                manifest.tensors[t].sha256 = Digest.sha256(bytes)
            }
            try writer.write(record.name, bytes: bytes)
        }
        try writer.finish()
    } catch let error as ArtifactError {
        throw error
    } catch {
        throw .io(path: deltaURL.path, reason: "\(error)")
    }
    if let records = manifest.modelFiles, !records.isEmpty {
        let folder = temporary.appendingPathComponent(ModelFiles.folder)
        do { try fm.createDirectory(at: folder, withIntermediateDirectories: false) } catch {
            throw .io(path: folder.path, reason: "cannot create: \(error.localizedDescription)")
        }
        for record in records {
            try writeFile(try artifact.modelFileContents(record), to: folder.appendingPathComponent(record.name))
        }
    }
    let size = (try? fm.attributesOfItem(atPath: deltaURL.path)[.size] as? NSNumber)?.intValue ?? 0
    let deltaSHA: String
    do { deltaSHA = try Digest.sha256(fileAt: deltaURL) } catch { throw .io(path: deltaURL.path, reason: "\(error)") }
    let headerBytes: Int
    do { headerBytes = try SafetensorsFile(contentsOf: deltaURL).dataStart } catch { throw .checkpoint("\(error)") }
    manifest.delta = .init(name: ArtifactManifest.deltaFileName, size: size, sha256: deltaSHA, headerBytes: headerBytes)
    manifest.toolVersion = toolVersion
    let fittedSHA: String
    do { fittedSHA = try Digest.sha256(fileAt: fittedURL) } catch { throw bad("\(error)") }
    manifest.distillation = .init(path: path, sha256: fittedSHA, replacedFrom: sha,
                                  metadata: file.metadata.filter { $0.key != Distillation.artifactKey })
    try writeJSON(manifest, to: temporary.appendingPathComponent(ArtifactManifest.fileName))
    try publishDirectory(temporary, as: out)
    published = true
    return manifest
}
