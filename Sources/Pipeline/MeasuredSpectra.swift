import Analysis
import Checkpoint
import ContentHash
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
/// `order` and are measured again; format 2: the feedback order's searched clipping ranges; format 3:
/// measured in chunks, whose size is recorded as `chunk_size`). A table whose metadata match is reused (only missing bit-widths are
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
    store: SpectrumStore, calibration: CalibrationSet?, options: MeasurementOptions, parallelism: Parallelism = .serial,
    progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
) throws(QuantizationError) -> [MatrixSpectrum] {
    try measure(store.matrices, of: store, calibration: calibration, options: options, parallelism: parallelism, progress: progress,
                shouldStop: shouldStop).map(\.spectrum)
}

/// One shard of the measurement pass (`deltaplan measure STORE --shard I/N`): the tables of the
/// shard's matrices (``Shard/assignment(costs:count:)`` by h_out·h_in·r), cached as
/// ``measuredSpectra(store:calibration:options:parallelism:progress:shouldStop:)`` caches them;
/// shards may run at once on machines sharing the store. The shard's record
/// `STORE/errors/ORDER/shard-I-of-N.json` lists its tables' SHA-256. Then
/// ``finalizeMeasurement(store:calibration:options:)``, after which `plan` finds every table.
public func measureShard(
    store: SpectrumStore, calibration: CalibrationSet?, options: MeasurementOptions, shard: Shard, parallelism: Parallelism = .serial,
    progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
) throws(QuantizationError) {
    let matrices = store.matrices
    let assignment = Shard.assignment(costs: matrices.map(measurementCost), count: shard.count)
    let mine = zip(matrices, assignment).filter { $0.1 == shard.index }.map(\.0)
    let folder = errorTableFolder(store, options)
    let files = mine.map(ErrorTableCache.fileName)
    ShardRecords.discardDamaged(shard, files: files, in: folder)
    try measure(mine, of: store, calibration: calibration, options: options, parallelism: parallelism, progress: progress,
                shouldStop: shouldStop)
    do { try ShardRecords.write(shard, files: files, in: folder) } catch {
        throw .io(path: folder.path, reason: "cannot record shard \(shard): \(error)")
    }
}

/// After every shard of the measurement pass: checks that the shards of one count N all recorded
/// their tables, and that every matrix's table is cached for `options` (every width, the dropped
/// weights in the feedback order) with the SHA-256 its shard recorded; then removes the records.
/// Measures nothing. Returns the number of tables.
///
/// - Throws: ``QuantizationError/shards(store:reason:)`` naming the shard to rerun.
@discardableResult
public func finalizeMeasurement(store: SpectrumStore, calibration: CalibrationSet?, options: MeasurementOptions) throws(QuantizationError) -> Int {
    try options.validate()
    let calibrationKey = try checkCalibration(store: store, calibration: calibration)
    let folder = errorTableFolder(store, options)
    func failure(_ reason: String) -> QuantizationError { .shards(store: store.url.path, reason: reason) }
    let (shards, recorded): ([Shard], [String: String])
    do throws(Shard.Problem) { (shards, recorded) = try ShardRecords.all(in: folder, command: "measure") } catch {
        throw failure("\(error)")
    }
    let count = shards[0].count
    let matrices = store.matrices
    for (record, shard) in zip(matrices, Shard.assignment(costs: matrices.map(measurementCost), count: count)) {
        let cache = errorTableCache(store: store, record: record, calibrationKey: calibrationKey, options: options, folder: folder)
        let (table, dropped) = cache.read(rank: record.storedRank ?? 0)
        let complete = options.bits.allSatisfy { table[$0] != nil } && (options.order != .feedback || dropped != nil)
        guard complete, let sha = try? Digest.sha256(fileAt: cache.url), sha == recorded[cache.url.lastPathComponent] else {
            throw failure("the table of \(record.name) (shard \(shard)/\(count)) is missing, damaged or of other options: "
                          + "rerun measure with --shard \(shard)/\(count) and the same options")
        }
    }
    for shard in shards { try? FileManager.default.removeItem(at: folder.appendingPathComponent(Shard.recordName(shard))) }
    return matrices.count
}

/// What measuring a matrix costs, relatively: h_out·h_in·r.
private func measurementCost(_ record: StoreManifest.MatrixRecord) -> Double {
    Double(record.rows) * Double(record.columns) * Double(max(1, record.storedRank ?? 0))
}

private func errorTableFolder(_ store: SpectrumStore, _ options: MeasurementOptions) -> URL {
    store.url.appendingPathComponent(ErrorTableCache.folder).appendingPathComponent(options.order.rawValue)
}

/// The measurement pass over `matrices` (the store's, or a shard's), in their order.
@discardableResult
private func measure(
    _ matrices: [StoreManifest.MatrixRecord], of store: SpectrumStore, calibration: CalibrationSet?, options: MeasurementOptions,
    parallelism: Parallelism, progress: (Int, Int, String) -> Void, shouldStop: () -> Bool
) throws(QuantizationError) -> [(spectrum: MatrixSpectrum, cached: Bool)] {
    try options.validate()
    let calibrationKey = try checkCalibration(store: store, calibration: calibration)
    let folder = errorTableFolder(store, options)
    do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
        throw .io(path: folder.path, reason: "cannot create the error-table folder: \(error.localizedDescription)")
    }
    let hessians = HessianCache(capacity: 2 + parallelism.threads)
    // An entry's H is released once the last matrix reading it is done.
    var uses: [String: Int] = [:]
    for record in matrices { if let entry = record.calibrationEntry { uses[entry, default: 0] += 1 } }
    var measured = [(spectrum: MatrixSpectrum, cached: Bool)?](repeating: nil, count: matrices.count)
    var done = 0
    let outcome = runConcurrently(
        count: matrices.count, parallelism: parallelism,
        estimate: { i in measurementBytes(matrices[i], options: options, calibrated: calibration != nil) },
        shouldStop: shouldStop,
        body: { index in
            Result { () throws(QuantizationError) in
                try measuredSpectrum(store: store, record: matrices[index], calibration: calibration, calibrationKey: calibrationKey,
                                     options: options, folder: folder, hessians: hessians)
            }
        },
        finished: { index, value in
            measured[index] = value
            if let entry = matrices[index].calibrationEntry {
                uses[entry]! -= 1
                if uses[entry] == 0 { hessians.release(entry) }
            }
            done += 1
            progress(done, matrices.count, matrices[index].name)
        })
    switch outcome {
    case .completed: return measured.map { $0! }
    case .stopped: throw .stopped
    case let .failed(_, error): throw error
    }
}

/// One matrix's spectrum with its table, read from the cache or measured (and cached); `cached`
/// when nothing had to be measured.
func measuredSpectrum(
    store: SpectrumStore, record: StoreManifest.MatrixRecord, calibration: CalibrationSet?, calibrationKey: String,
    options: MeasurementOptions, folder: URL, hessians: HessianCache
) throws(QuantizationError) -> (spectrum: MatrixSpectrum, cached: Bool) {
    let spectrum: (singularValues: [Double], inputEnergy: [Double])
    do { spectrum = try store.spectrum(of: record) } catch { throw .store(error) }
    let r = record.storedRank ?? 0
    let entry = store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
    let method: QuantizationMethod = entry == nil ? .rtn : options.method
    let cache = errorTableCache(store: store, record: record, calibrationKey: calibrationKey, options: options, folder: folder)
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
    let result = MatrixSpectrum(
        name: record.name, type: record.type, rows: record.rows, columns: record.columns,
        singularValues: Array(spectrum.singularValues.prefix(r)), inputEnergy: Array(spectrum.inputEnergy.prefix(r)),
        activationEnergy: record.activationEnergy ?? 0, weightEnergy: record.weightEnergy ?? 0,
        relativeQuantizationError: table.filter { options.bits.contains($0.key) },
        droppedWeights: options.order == .feedback ? dropped : nil)
    return (result, missing.isEmpty && !needsDropped)
}

/// What measuring one matrix holds at its peak, in bytes (for ``Parallelism/memoryLimit``): H and
/// its GPTQ preparation (h_in² Floats each), the factors, Vᵀ H V (r²), and a width's `r × h_in`
/// products (Vᵀ, Vᵀ H, GPTQ's working copy and errors, Δ) and a chunk's.
func measurementBytes(_ record: StoreManifest.MatrixRecord, options: MeasurementOptions, calibrated: Bool) -> Int {
    let (m, n, r) = (record.rows, record.columns, record.storedRank ?? 0)
    let c = min(r, options.chunkSize)
    let hessians = calibrated ? 2 * n * n : 0
    return 4 * (hessians + r * (m + n) + r * r + 5 * r * n + 4 * c * m) + r * n
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

/// The cache of `record`'s table in `folder` under `options`.
func errorTableCache(
    store: SpectrumStore, record: StoreManifest.MatrixRecord, calibrationKey: String, options: MeasurementOptions, folder: URL
) -> ErrorTableCache {
    let entry = store.manifest.dataFree || record.calibration != .gram ? nil : record.calibrationEntry
    let method: QuantizationMethod = entry == nil ? .rtn : options.method
    return ErrorTableCache(
        url: folder.appendingPathComponent(ErrorTableCache.fileName(record)),
        metadata: [
            "deltaplan.errors.format": ErrorTableCache.formatVersion,
            "tensor": record.name,
            "method": method.rawValue,
            "order": options.order.rawValue,
            "group_size": String(options.groupSize),
            "dampening": String(options.dampening),
            "calibration": calibrationKey,
            "matrix_sha256": record.fileSHA256 ?? "",
            "stored_rank": String(record.storedRank ?? 0),
            "chunk_size": String(options.chunkSize),
        ])
}

/// One matrix's cached error table.
struct ErrorTableCache {
    static let folder = "errors"
    /// 3: measured in chunks (`chunk_size`); 2: one segment of all stored vectors, with the
    /// feedback order's searched clipping ranges. Tables of another format are measured again.
    static let formatVersion = "3"
    var url: URL
    var metadata: [String: String]

    static func tensorName(bits: Int) -> String { "e_k\(bits)" }

    /// The table's file name: the matrix file's.
    static func fileName(_ record: StoreManifest.MatrixRecord) -> String { ((record.file ?? record.name) as NSString).lastPathComponent }

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
/// share entries, and matrices come layer by layer. Thread-safe: an entry is read and prepared
/// once, by the first thread that asks; the others wait for it. `@unchecked Sendable`: every
/// stored property is accessed with `condition` held.
final class HessianCache: @unchecked Sendable {
    let capacity: Int
    private let condition = NSCondition()
    private var order: [String] = []
    private var grams: [String: Matrix<Float>] = [:]
    private var prepared: [String: PreparedHessian] = [:]
    /// Entries a thread is reading or preparing.
    private var busy: Set<String> = []

    init(capacity: Int) { self.capacity = capacity }

    func get(
        _ entry: String, calibration: CalibrationSet, prepare: Bool, dampening: Double
    ) throws(QuantizationError) -> (Matrix<Float>, PreparedHessian?) {
        condition.lock()
        while busy.contains(entry) { condition.wait() }
        if let gram = grams[entry], !prepare || prepared[entry] != nil {
            defer { condition.unlock() }
            touch(entry)
            return (gram, prepare ? prepared[entry] : nil)
        }
        busy.insert(entry)
        var gram = grams[entry]
        condition.unlock()
        var made: PreparedHessian?
        let failure: QuantizationError?
        do throws(QuantizationError) {
            if gram == nil {
                do { gram = try calibration.gram(ofEntry: entry) } catch { throw .store(error) }
            }
            if prepare {
                made = try PreparedHessian(hessian: gram!, dampening: dampening, name: "calibration Hessian of \(entry)")
            }
            failure = nil
        } catch { failure = error }
        condition.lock()
        defer { condition.broadcast(); condition.unlock() }
        busy.remove(entry)
        if let failure { throw failure }
        grams[entry] = gram
        if let made { prepared[entry] = made }
        touch(entry)
        while order.count > capacity, let old = order.first(where: { !busy.contains($0) && $0 != entry }) {
            order.removeAll { $0 == old }
            grams[old] = nil
            prepared[old] = nil
        }
        return (gram!, prepare ? prepared[entry] : nil)
    }

    /// Forgets `entry` (no later matrix reads it); a thread reading it keeps its copy.
    func release(_ entry: String) {
        condition.lock()
        defer { condition.unlock() }
        guard !busy.contains(entry) else { return }
        order.removeAll { $0 == entry }
        grams[entry] = nil
        prepared[entry] = nil
    }

    /// Marks `entry` most recently used. Call with `condition` held.
    private func touch(_ entry: String) {
        order.removeAll { $0 == entry }
        order.append(entry)
    }
}
