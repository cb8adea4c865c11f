import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra

/// A finished analysis: a directory with `manifest.json` and one safetensors file per matrix,
/// `matrices/NNNNN.safetensors`, holding
/// - `singular_values`: F32 `[k]`, descending (all min(h_out, h_in), or the top ones);
/// - `u_t`: F32 `[r, h_out]`, row i = left singular vector uᵢ;
/// - `v_t`: F32 `[r, h_in]`, row i = right singular vector vᵢ;
/// - `input_energy`: F64 `[r]`, gᵢ = vᵢᵀ H vᵢ;
/// - with output statistics (the record's `objective`): `objective_weight` F64 `[r]`, wᵢ, the
///   objective's cost of the unit error uᵢ vᵢᵀ, and `objective_dropped` F64 `[r + 1]`, the cost of
///   dropping every vector from j on (see `ObjectiveProjection`), and for the paired objective
///   `objective_dropped_feedback` F64 `[r + 1]`, the same after error feedback's absorption;
/// where r is the stored rank. A store analyzed in shards (``Shard``) has `shards/I-of-N.json`
/// instead of `manifest.json` until ``Analyzer/finalize(store:)``; the measurement pass caches its
/// tables in `errors/ORDER/` (with `shard-I-of-N.json` records while it runs in shards).
public struct SpectrumStore: Sendable {
    public static let manifestName = "manifest.json"
    public static let matricesFolder = "matrices"

    public let url: URL
    public let manifest: StoreManifest
    /// SHA-256 of `manifest.json`: what plans record as the store they belong to.
    public let identity: String

    /// Opens a store. Later stages need `requireComplete` (the default): an interrupted analysis
    /// is refused with the list of matrices still missing.
    public init(at url: URL, requireComplete: Bool = true) throws(AnalysisError) {
        try self.init(at: url, manifest: url.appendingPathComponent(Self.manifestName), requireComplete: requireComplete)
    }

    /// A store read through another of its manifests (a shard's, ``Shard/manifestPath``).
    init(at url: URL, manifest manifestURL: URL, requireComplete: Bool) throws(AnalysisError) {
        self.url = url
        let name = String(manifestURL.path.dropFirst(url.path.count + 1))
        let data: Data
        do { data = try Data(contentsOf: manifestURL) } catch {
            if name == Self.manifestName, FileManager.default.fileExists(atPath: url.appendingPathComponent(Shard.folder).path) {
                throw .shards(store: url.path, reason: "it was analyzed in shards and not finalized yet (no manifest.json); "
                              + "run `deltaplan analyze --finalize \(url.path)` once every shard has finished")
            }
            throw .io(path: manifestURL.path, reason: "not a spectrum store (no readable \(name))")
        }
        do {
            manifest = try JSONDecoder().decode(StoreManifest.self, from: data)
        } catch {
            throw .storeCorrupt(store: url.path, file: name, reason: "\(error)")
        }
        guard manifest.formatVersion == StoreManifest.currentFormatVersion else {
            throw .storeCorrupt(store: url.path, file: name,
                                reason: "format version \(manifest.formatVersion), this tool reads \(StoreManifest.currentFormatVersion)")
        }
        if requireComplete, !manifest.complete {
            throw .storeIncomplete(store: url.path, missing: manifest.matrices.filter { $0.status != .done }.map(\.name))
        }
        identity = Digest.sha256(data)
    }

    /// The done matrices, in analysis order.
    public var matrices: [StoreManifest.MatrixRecord] { manifest.matrices.filter { $0.status == .done } }

    public func record(named name: String) -> StoreManifest.MatrixRecord? {
        manifest.matrices.first { $0.name == name }
    }

    /// σ (all stored values) and g (one per stored vector) of a matrix, without its vectors.
    public func spectrum(of record: StoreManifest.MatrixRecord) throws(AnalysisError) -> (singularValues: [Double], inputEnergy: [Double]) {
        let file = try open(record)
        do {
            return (try file.doubles("singular_values"), try file.doubles("input_energy"))
        } catch {
            throw .storeCorrupt(store: url.path, file: record.file ?? record.name, reason: "\(error)")
        }
    }

    /// wᵢ and the dropped-suffix costs under the record's sensitivity objective (`feedback`: with
    /// error feedback's absorption, `paired` stores analyzed since it was added); nil without one.
    public func objectiveProjection(
        of record: StoreManifest.MatrixRecord
    ) throws(AnalysisError) -> (weights: [Double], dropped: [Double], feedback: [Double]?)? {
        guard record.objective != nil else { return nil }
        let file = try open(record)
        let r = record.storedRank ?? 0
        do {
            let weights = try file.doubles("objective_weight"), dropped = try file.doubles("objective_dropped")
            let feedback = file.tensors.contains { $0.name == "objective_dropped_feedback" }
                ? try file.doubles("objective_dropped_feedback") : nil
            guard weights.count == r, dropped.count == r + 1, (feedback?.count ?? r + 1) == r + 1 else {
                throw AnalysisError.storeCorrupt(store: url.path, file: record.file ?? record.name,
                                                 reason: "objective_weight has \(weights.count) values, objective_dropped \(dropped.count) and objective_dropped_feedback \(feedback?.count ?? 0); the stored rank is \(r)")
            }
            return (weights, dropped, feedback)
        } catch let error as AnalysisError {
            throw error
        } catch {
            throw .storeCorrupt(store: url.path, file: record.file ?? record.name, reason: "\(error)")
        }
    }

    /// The stored factors of a matrix: ΔW ≈ U·diag(σ[..<r])·Vᵀ with U h_out × r and V h_in × r.
    /// Values that are NaN or infinite (an analysis never stores them) are refused, naming the tensor.
    public func factors(of record: StoreManifest.MatrixRecord) throws(AnalysisError) -> StoredFactors {
        let file = try open(record)
        let r = record.storedRank ?? 0
        let name = record.file ?? record.name
        do {
            let sigma = try file.floats("singular_values"), u = try file.floats("u_t"), v = try file.floats("v_t")
            let energy = try file.doubles("input_energy")
            for (tensor, finite) in [("singular_values", sigma.allSatisfy(\.isFinite)), ("u_t", u.allSatisfy(\.isFinite)),
                                     ("v_t", v.allSatisfy(\.isFinite)), ("input_energy", energy.allSatisfy(\.isFinite))] where !finite {
                throw AnalysisError.storeCorrupt(store: url.path, file: name, reason: "\(tensor) holds NaN or infinite values")
            }
            return StoredFactors(singularValues: sigma, u: Matrix(rows: record.rows, columns: r, elements: u),
                                 v: Matrix(rows: record.columns, columns: r, elements: v), inputEnergy: energy)
        } catch let error as AnalysisError {
            throw error
        } catch {
            throw .storeCorrupt(store: url.path, file: name, reason: "\(error)")
        }
    }

    /// Checks a matrix file against the size and SHA-256 the manifest recorded.
    public func verify(_ record: StoreManifest.MatrixRecord) throws(AnalysisError) {
        guard let name = record.file, let sha = record.fileSHA256 else {
            throw .storeCorrupt(store: url.path, file: record.name, reason: "not analyzed")
        }
        let fileURL = url.appendingPathComponent(name)
        let actual: String
        do { actual = try Digest.sha256(fileAt: fileURL) } catch { throw .storeCorrupt(store: url.path, file: name, reason: "\(error)") }
        guard actual == sha else {
            throw .storeCorrupt(store: url.path, file: name, reason: "checksum mismatch (the file was changed or damaged)")
        }
    }

    private func open(_ record: StoreManifest.MatrixRecord) throws(AnalysisError) -> SafetensorsFile {
        guard record.status == .done, let name = record.file else {
            throw .storeCorrupt(store: url.path, file: record.name, reason: "matrix not analyzed")
        }
        let fileURL = url.appendingPathComponent(name)
        let file: SafetensorsFile
        do { file = try SafetensorsFile(contentsOf: fileURL) } catch {
            throw .storeCorrupt(store: url.path, file: name, reason: "\(error)")
        }
        let size = (try? FileManager.default.attributesOfItem(atPath: fileURL.path)[.size] as? NSNumber)?.intValue
        guard size == record.fileSize else {
            throw .storeCorrupt(store: url.path, file: name, reason: "size \(size ?? -1) differs from the recorded \(record.fileSize ?? -1)")
        }
        // The shapes every reader relies on, against the manifest's (a matrix file of another
        // shape would otherwise be indexed out of range, or fill a matrix of the wrong size).
        let r = record.storedRank ?? 0
        let expected: [(String, [Int])] = [("u_t", [r, record.rows]), ("v_t", [r, record.columns]), ("input_energy", [r])]
        for (tensor, shape) in expected {
            let found = (try? file.info(tensor))?.shape
            guard found == shape else {
                throw .storeCorrupt(store: url.path, file: name, reason: "\(tensor) has shape \(found.map { "\($0)" } ?? "none"), the manifest's "
                                    + "\(record.rows) × \(record.columns) matrix of stored rank \(r) needs \(shape)")
            }
        }
        let values = (try? file.info("singular_values"))?.shape
        guard let values, values.count == 1, values[0] >= r else {
            throw .storeCorrupt(store: url.path, file: name, reason: "singular_values has shape \(values.map { "\($0)" } ?? "none"), "
                                + "the manifest's stored rank \(r) needs [k] with k ≥ \(r)")
        }
        return file
    }
}

/// The stored SVD factors of one delta.
public struct StoredFactors: Sendable {
    /// All stored singular values (at least the stored rank of them).
    public var singularValues: [Float]
    /// h_out × r, orthonormal columns.
    public var u: Matrix<Float>
    /// h_in × r, orthonormal columns.
    public var v: Matrix<Float>
    /// gᵢ = vᵢᵀ H vᵢ.
    public var inputEnergy: [Double]

    public var storedRank: Int { u.columns }
}

extension SpectrumStore {
    /// The calibration to use with this store: the file `given`, else the one its manifest records;
    /// none for a data-free store. (Whether it is the file the store was analyzed with is checked
    /// where it is used, against the manifest's fingerprint.) One lookup for every stage.
    public func calibrationSet(given: URL?) throws(AnalysisError) -> CalibrationSet? {
        guard !manifest.dataFree else { return nil }
        let url = given ?? manifest.inputs.calibration.map { URL(fileURLWithPath: $0.path) }
        return try url.map { url throws(AnalysisError) in try CalibrationSet(url: url) }
    }
}
