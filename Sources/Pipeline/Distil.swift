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
/// 2. the companion (`deltaplan-model distil`) fits one multiplier per singular value so that the
///    model with W_base + ΔŴ reproduces the fine-tuned model's last hidden state on calibration
///    text, and writes the new values as `<prefix>.sigma` (F32, `[c]`);
/// 3. ``applySigma(_:to:out:toolVersion:)`` (`deltaplan distil apply`) writes a copy of the
///    artifact with those σ (rounded to F16, the format's type) and the σ file recorded in its
///    manifest (``ArtifactManifest/sigma``).
///
/// Both files carry the artifact's delta SHA-256 under ``artifactKey`` so that σ fitted for one
/// artifact cannot be applied to another. Nothing else of the artifact changes: same plan, codes,
/// scales, sizes; `merge` and `evaluate` read the result as any artifact.
public enum Distillation {
    /// Metadata key of both files: the SHA-256 of the artifact's `delta.safetensors`.
    public static let artifactKey = "deltaplan.artifact.delta.sha256"
    public static let uSuffix = ".u", sigmaSuffix = ".sigma", vtSuffix = ".vt"
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

/// Writes to `out` (atomically; it must not exist) a copy of `artifact` whose segments' σ are the
/// `<prefix>.sigma` tensors of the safetensors file `sigmaURL`, rounded to F16.
///
/// The σ file must name this artifact (``Distillation/artifactKey``) and hold exactly one finite
/// F32 (or F16/F64) tensor of the segment's length per segment; anything else is an error naming
/// the file and tensor. The new manifest records the σ file (path, SHA-256, its metadata).
public func applySigma(_ sigmaURL: URL, to artifact: Artifact, out: URL, toolVersion: String) throws(ArtifactError) -> ArtifactManifest {
    let path = sigmaURL.path
    func bad(_ reason: String) -> ArtifactError { .sigma(file: path, reason: reason) }
    let fm = FileManager.default
    guard !fm.fileExists(atPath: out.path) else {
        throw .invalidOption(option: "--out", reason: "\(out.path) already exists; choose a new directory (the artifact is never overwritten)")
    }
    let file: SafetensorsFile
    do { file = try SafetensorsFile(contentsOf: sigmaURL) } catch { throw bad("\(error)") }
    let sha = artifact.manifest.delta.sha256
    guard let named = file.metadata[Distillation.artifactKey] else {
        throw bad("no \(Distillation.artifactKey) in its metadata: not a σ file of `deltaplan-model distil`")
    }
    guard named == sha else {
        throw bad("was fitted for the artifact whose delta SHA-256 is \(named), not \(artifact.url.path) (\(sha))")
    }

    // The new σ of every segment, by tensor name.
    var replaced: [String: [Float16]] = [:]
    for record in artifact.manifest.matrices where !record.isDense {
        for s in record.segments {
            let name = s.prefix + ArtifactTensor.sigma
            let info: TensorInfo
            do { info = try file.info(name) } catch { throw bad("tensor \(name) is missing (one per segment of the artifact)") }
            guard info.shape == [s.end - s.start] else {
                throw bad("tensor \(name) has shape \(info.shape), the segment has \(s.end - s.start) singular values")
            }
            let values: [Float]
            do { values = try file.floats(name) } catch { throw bad("tensor \(name): \(error)") }
            var halves: [Float16] = []
            halves.reserveCapacity(values.count)
            for (i, v) in values.enumerated() {
                let h = Float16(v)
                guard v.isFinite, h.isFinite else {
                    throw .unrepresentable(tensor: name, reason: "σ[\(i)] = \(v) is not a finite F16 value (the artifact stores σ in F16); in \(path)")
                }
                halves.append(h)
            }
            replaced[name] = halves
        }
    }
    if let extra = file.tensors.map(\.name).filter({ replaced[$0] == nil }).sorted().first {
        throw bad("tensor \(extra) is not the σ of a segment of \(artifact.url.path)")
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
                bytes = halves.flatMap { h in [UInt8(truncatingIfNeeded: h.bitPattern), UInt8(truncatingIfNeeded: h.bitPattern >> 8)] }
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
    let sigmaSHA: String
    do { sigmaSHA = try Digest.sha256(fileAt: sigmaURL) } catch { throw bad("\(error)") }
    manifest.sigma = .init(path: path, sha256: sigmaSHA, replacedFrom: sha,
                           metadata: file.metadata.filter { $0.key != Distillation.artifactKey })
    try writeJSON(manifest, to: temporary.appendingPathComponent(ArtifactManifest.fileName))
    try publishDirectory(temporary, as: out)
    published = true
    return manifest
}
