import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import Optimizer
import Quantization

/// The spectra of every matrix of `store` with their measured eᵢ(k), for the optimizer.
///
/// With error feedback each spectrum also carries the dropped-error weights of
/// ``droppedErrorWeights(_:hessian:order:dampening:)`` (the kept segments absorb part of the
/// dropped vectors); in the paper's order it has none (σᵢ² gᵢ).
///
/// Each matrix's table is cached in `STORE/errors/ORDER/NNNNN.safetensors` (the segment order,
/// then the index of its matrix file), so that plans in both orders share one store: one tensor `e_k<bits>` F64 `[r]` per bit-width (and `dropped` F64 `[r]`, the
/// feedback order's dropped-error weights), metadata recording the method actually
/// used (`rtn` whenever H = I), the segment order, group size, dampening, the calibration file's
/// fingerprint and the matrix file's SHA-256 (tables written before orders existed have no
/// `order` and are measured again; format 2: the feedback order's searched clipping ranges). A table whose metadata match is reused (only missing bit-widths are
/// measured and added); otherwise it is recomputed. Files are written atomically.
///
/// H: the calibration Gram of the matrix's entry; H = I for data-free stores and for matrices
/// analyzed with `identity-missing` calibration.
///
/// - Parameters:
///   - calibration: the calibration set the store was analyzed with (nil for a data-free store);
///     its fingerprint is checked against the store's manifest.
///   - progress: called after each matrix with (done, total, name).
///   - shouldStop: checked before each matrix; when it returns true the pass throws
///     ``QuantizationError/stopped`` (the tables measured so far stay cached: a rerun resumes).
/// - Throws: ``QuantizationError/calibrationMismatch(store:reason:)`` for the wrong calibration,
///   ``QuantizationError/store(_:)`` for an unreadable store, and the errors of the quantizers.
public func measuredSpectra(
    store: SpectrumStore, calibration: CalibrationSet?, options: MeasurementOptions,
    progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
) throws(QuantizationError) -> [MatrixSpectrum] {
    try options.validate()
    let calibrationKey = try checkCalibration(store: store, calibration: calibration)
    let folder = store.url.appendingPathComponent(ErrorTableCache.folder).appendingPathComponent(options.order.rawValue)
    do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
        throw .io(path: folder.path, reason: "cannot create the error-table folder: \(error.localizedDescription)")
    }
    var hessians = HessianCache(capacity: 3)
    let matrices = store.matrices
    var spectra: [MatrixSpectrum] = []
    for (index, record) in matrices.enumerated() {
        if shouldStop() { throw .stopped }
        let spectrum: (singularValues: [Double], inputEnergy: [Double])
        do { spectrum = try store.spectrum(of: record) } catch { throw .store(error) }
        let r = record.storedRank ?? 0
        let entry = store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
        let method: QuantizationMethod = entry == nil ? .rtn : options.method
        let fileName = ((record.file ?? record.name) as NSString).lastPathComponent
        let cache = ErrorTableCache(
            url: folder.appendingPathComponent(fileName),
            metadata: [
                "deltaplan.errors.format": "2",
                "tensor": record.name,
                "method": method.rawValue,
                "order": options.order.rawValue,
                "group_size": String(options.groupSize),
                "dampening": String(options.dampening),
                "calibration": calibrationKey,
                "matrix_sha256": record.fileSHA256 ?? "",
                "stored_rank": String(r),
            ])
        var (table, dropped) = cache.read(rank: r)
        let missing = options.bits.filter { table[$0] == nil }
        let needsDropped = options.order == .feedback && dropped == nil
        if !missing.isEmpty || needsDropped {
            let factors: StoredFactors
            do { factors = try store.factors(of: record) } catch { throw .store(error) }
            var hessian: Matrix<Float>?, prepared: PreparedHessian?
            if let entry, let calibration {
                (hessian, prepared) = try hessians.get(entry, calibration: calibration,
                                                       prepare: method == .gptq && missing.contains { (2...8).contains($0) },
                                                       dampening: options.dampening)
            }
            if !missing.isEmpty {
                var measureOptions = options
                measureOptions.bits = missing
                let measured = try measure(factors, hessian: hessian, options: measureOptions, preparedV: prepared,
                                           droppedWeights: needsDropped)
                table.merge(measured.table) { _, new in new }
                if needsDropped { dropped = measured.dropped }
            } else if needsDropped {
                dropped = droppedErrorWeights(factors, hessian: hessian, order: .feedback, dampening: options.dampening)
            }
            try cache.write(table, dropped: dropped)
        }
        spectra.append(MatrixSpectrum(
            name: record.name, type: record.type, rows: record.rows, columns: record.columns,
            singularValues: Array(spectrum.singularValues.prefix(r)), inputEnergy: Array(spectrum.inputEnergy.prefix(r)),
            activationEnergy: record.activationEnergy ?? 0, weightEnergy: record.weightEnergy ?? 0,
            relativeQuantizationError: table.filter { options.bits.contains($0.key) },
            droppedWeights: options.order == .feedback ? dropped : nil))
        progress(index + 1, matrices.count, record.name)
    }
    return spectra
}

/// Checks that `calibration` is the one the store was made with; returns the key recorded in
/// error tables ("data-free", or the calibration file's size and header SHA-256).
func checkCalibration(store: SpectrumStore, calibration: CalibrationSet?) throws(QuantizationError) -> String {
    let path = store.url.path
    guard let recorded = store.manifest.inputs.calibration, let file = recorded.files.first, !store.manifest.dataFree else {
        if let calibration {
            throw .calibrationMismatch(store: path, reason: "the store was analyzed without calibration (data-free), but \(calibration.url.path) was given")
        }
        return "data-free"
    }
    guard let calibration else {
        throw .calibrationMismatch(store: path, reason: "the store was analyzed with calibration \(recorded.path), and none was given")
    }
    let now: FileFingerprint
    do { now = try FileFingerprint(of: calibration.url, name: file.name) } catch { throw .store(error) }
    let change: String?
    do { change = try now.change(from: file, at: calibration.url) } catch { throw .store(error) }
    if let change {
        throw .calibrationMismatch(store: path, reason: "\(calibration.url.path) is not the file the store was analyzed with (\(recorded.path)): \(change)")
    }
    return "\(file.size):\(file.headerSHA256)"
}

/// One matrix's cached error table.
struct ErrorTableCache {
    static let folder = "errors"
    var url: URL
    var metadata: [String: String]

    static func tensorName(bits: Int) -> String { "e_k\(bits)" }

    static let droppedName = "dropped"

    /// The cached eᵢ(k) and dropped-error weights when the file exists and its metadata match
    /// (any unreadable or mismatched file reads as empty: it will be recomputed).
    func read(rank: Int) -> (table: [Int: [Double]], dropped: [Double]?) {
        guard FileManager.default.fileExists(atPath: url.path),
              let file = try? SafetensorsFile(contentsOf: url), file.metadata == metadata else { return ([:], nil) }
        var table: [Int: [Double]] = [:], dropped: [Double]?
        for info in file.tensors {
            guard info.dtype == .f64, info.shape == [rank], let values = try? file.doubles(info.name),
                  values.allSatisfy(\.isFinite) else { return ([:], nil) }
            if info.name == Self.droppedName {
                dropped = values
            } else if info.name.hasPrefix("e_k"), let k = Int(info.name.dropFirst(3)) {
                table[k] = values
            }
        }
        return (table, dropped)
    }

    /// Writes the table atomically (tensors in ascending bit order, then `dropped`; deterministic bytes).
    func write(_ table: [Int: [Double]], dropped: [Double]? = nil) throws(QuantizationError) {
        var payloads = table.keys.sorted().map { k in
            TensorPayload(name: Self.tensorName(bits: k), dtype: .f64, shape: [table[k]!.count],
                          contents: .bytes(table[k]!.withUnsafeBytes { Array($0) }))
        }
        if let dropped {
            payloads.append(TensorPayload(name: Self.droppedName, dtype: .f64, shape: [dropped.count],
                                          contents: .bytes(dropped.withUnsafeBytes { Array($0) })))
        }
        do { try SafetensorsFile.write(payloads, metadata: metadata, to: url) } catch {
            throw .io(path: url.path, reason: "cannot write the error table: \(error)")
        }
    }
}

/// The last few calibration Grams (and their GPTQ preparations) by entry: q/k/v and gate/up
/// share entries, and matrices come layer by layer.
struct HessianCache {
    let capacity: Int
    private var order: [String] = []
    private var grams: [String: Matrix<Float>] = [:]
    private var prepared: [String: PreparedHessian] = [:]

    init(capacity: Int) { self.capacity = capacity }

    mutating func get(
        _ entry: String, calibration: CalibrationSet, prepare: Bool, dampening: Double
    ) throws(QuantizationError) -> (Matrix<Float>, PreparedHessian?) {
        if grams[entry] == nil {
            let gram: Matrix<Float>
            do { gram = try calibration.gram(ofEntry: entry) } catch { throw .store(error) }
            grams[entry] = gram
            order.append(entry)
            while order.count > capacity {
                let old = order.removeFirst()
                grams[old] = nil
                prepared[old] = nil
            }
        }
        if prepare, prepared[entry] == nil {
            prepared[entry] = try PreparedHessian(hessian: grams[entry]!, dampening: dampening, name: "calibration Hessian of \(entry)")
        }
        return (grams[entry]!, prepare ? prepared[entry] : nil)
    }
}
