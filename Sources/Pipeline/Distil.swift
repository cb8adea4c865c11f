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
/// 2. the companion (`deltaplan-model distil`) fits a multiplier per singular value and per row of
///    each segment's Û so that the model with W_base + ΔŴ reproduces the fine-tuned model's last
///    hidden state on calibration text, and writes the new σ as `<prefix>.sigma` (F32, `[c]`) and
///    the row multipliers as `<prefix>.u_rows` (F32, `[h_out]`);
/// 3. ``applyDistillation(_:to:out:toolVersion:)`` (`deltaplan distil apply`) writes a copy of the
///    artifact with those values in its F16 σ and Û scales (or 16-bit values) and the fitted file
///    recorded in its manifest (``ArtifactManifest/distillation``).
///
/// Both files carry the artifact's delta SHA-256 under ``artifactKey`` so that values fitted for
/// one artifact cannot be applied to another. Nothing else changes: same plan, codes, zeros,
/// sizes; `merge` and `evaluate` read the result as any artifact.
public enum Distillation {
    /// Metadata key of both files: the SHA-256 of the artifact's `delta.safetensors`.
    public static let artifactKey = "deltaplan.artifact.delta.sha256"
    public static let uSuffix = ".u", sigmaSuffix = ".sigma", vtSuffix = ".vt", uRowsSuffix = ".u_rows"
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
    for record in records {
        let (rows, columns) = (record.shape[0], record.shape[1])
        for s in record.segments {
            let c = s.end - s.start
            declarations += [
                TensorDeclaration(name: s.prefix + Distillation.uSuffix, dtype: .f32, shape: [rows, c]),
                TensorDeclaration(name: s.prefix + Distillation.sigmaSuffix, dtype: .f32, shape: [c]),
                TensorDeclaration(name: s.prefix + Distillation.vtSuffix, dtype: .f32, shape: [c, columns]),
            ]
        }
    }
    do {
        let writer = try SafetensorsWriter(url: out, tensors: declarations, metadata: [
            Distillation.artifactKey: artifact.manifest.delta.sha256,
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
/// (required: the new σ) and `<prefix>.u_rows` (optional, `[h_out]`: a multiplier per row of Û,
/// applied to the row's F16 scales, or to its F16 values in a 16-bit segment), rounded to F16.
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
    func fitted(_ name: String, count: Int) throws(ArtifactError) -> [Float] {
        let info: TensorInfo
        do { info = try file.info(name) } catch { throw bad("tensor \(name) is missing") }
        guard info.shape == [count] else { throw bad("tensor \(name) has shape \(info.shape), expected [\(count)]") }
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
    for record in artifact.manifest.matrices where !record.isDense {
        let rows = record.shape[0]
        for s in record.segments {
            let sigmaName = s.prefix + Distillation.sigmaSuffix
            replaced[s.prefix + ArtifactTensor.sigma] = try halves(try fitted(sigmaName, count: s.end - s.start), sigmaName)
            used.insert(sigmaName)
            let rowsName = s.prefix + Distillation.uRowsSuffix
            guard names.contains(rowsName) else { continue }
            used.insert(rowsName)
            let multipliers = try fitted(rowsName, count: rows)
            // Û's F16 parameters hold each row's values contiguously: its values (16 bits), its scale
            // (1 bit) or its groups' scales (2…8 bits); ŵ is linear in each, zeros are codes.
            let target = s.prefix + (s.bits == 16 ? ArtifactTensor.uValues : ArtifactTensor.uScales)
            let old = try artifact.finiteHalves(target)
            let perRow = old.count / rows
            replaced[target] = try halves(old.indices.map { Float(old[$0]) * multipliers[$0 / perRow] }, target)
        }
    }
    if let extra = names.subtracting(used).sorted().first {
        throw bad("tensor \(extra) is not the σ or the row multipliers of a segment of \(artifact.url.path)")
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
