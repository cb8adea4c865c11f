import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles

/// The options of an analysis; part of the store's identity (a rerun with other options is refused).
public struct AnalysisOptions: Codable, Sendable, Equatable {
    /// Selection patterns (empty: the default projections; see ``Selection``).
    public var include: [String]
    public var exclude: [String]
    /// Stored rank cap R; nil for the default, the rank at which a budget of α = 1/8 is used up at
    /// 2 bits under the paper's accounting: ⌊h_out·h_in / (h_out + h_in)⌋ (capped at min(h_out, h_in)).
    public var maxRank: Int?
    /// Report and skip tensors missing on one side or with different shapes, instead of failing.
    public var skipMismatched: Bool
    /// Proceed with H = I for modules without a calibration entry.
    public var allowMissingCalibration: Bool
    /// Seed of the randomized SVD's test matrices. Unused since every SVD of `analyze` goes through
    /// the Float64 Gram (`gramSVD`, exact where the randomized SVD missed by percents on flat
    /// spectra); kept so stores that record it still match their options.
    public var seed: UInt64
    /// Power iterations of the randomized SVD; unused, as ``seed``.
    public var powerIterations: Int

    public init(include: [String] = [], exclude: [String] = [], maxRank: Int? = nil, skipMismatched: Bool = false,
                allowMissingCalibration: Bool = false, seed: UInt64 = 0, powerIterations: Int = 2) {
        self.include = include
        self.exclude = exclude
        self.maxRank = maxRank
        self.skipMismatched = skipMismatched
        self.allowMissingCalibration = allowMissingCalibration
        self.seed = seed
        self.powerIterations = powerIterations
    }

    /// The stored rank for an h_out × h_in matrix.
    public func storedRank(rows: Int, columns: Int) -> Int {
        let cap = maxRank ?? (rows + columns > 0 ? rows * columns / (rows + columns) : 0)
        return min(cap, min(rows, columns))
    }
}

/// What an analysis reports while it runs.
public enum AnalysisEvent: Sendable {
    /// The selected matrices in analysis order, each with its shape and whether the store
    /// already has it from an earlier run.
    case started(matrices: [(name: String, rows: Int, columns: Int, alreadyDone: Bool)])
    case skipped(tensor: String, reason: String)
    case matrixStarted(index: Int, total: Int, name: String, rows: Int, columns: Int)
    case matrixFinished(index: Int, total: Int, name: String, seconds: Double)
    case finished(store: URL)
}

/// `deltaplan analyze`: for every selected 2-D weight present in both checkpoints, ΔW = W_ft − W_base
/// in Float32, its SVD (full `gesdd` when the stored rank is a large part of min(h_out, h_in), else
/// randomized), the calibration projections gᵢ = vᵢᵀ H vᵢ, ‖ΔW X‖² = tr(ΔW H ΔWᵀ) and the BitDelta
/// baseline's error, into a spectrum store.
///
/// Streams one matrix at a time: peak memory is a small multiple of the largest matrix in Float32
/// (the two weights, the delta, the SVD's copy, factors and workspace). Each matrix file is
/// written atomically and the manifest rewritten atomically after it, so an interrupted run
/// resumes where it stopped and never leaves a store that reads as complete.
public struct Analyzer: Sendable {
    public var base: URL
    public var finetuned: URL
    public var calibration: URL?
    public var options: AnalysisOptions
    public var store: URL

    public init(base: URL, finetuned: URL, calibration: URL?, options: AnalysisOptions, store: URL) {
        self.base = base
        self.finetuned = finetuned
        self.calibration = calibration
        self.options = options
        self.store = store
    }

    /// A selected matrix, before analysis.
    struct Job: Sendable {
        var name: String
        var rows: Int
        var columns: Int
        var inputDType: String
        var calibration: StoreManifest.CalibrationSource
        var calibrationEntry: String?
        var statistics: CalibrationStatistics?
    }

    /// Runs (or resumes) the analysis. `shouldStop` is checked between matrices: when it returns
    /// true the run stops with the store incomplete (the matrices running finish and are kept) and
    /// throws `CancellationError`.
    ///
    /// `parallelism`: matrices analyzed at once, each on one BLAS thread, within its memory limit
    /// by each matrix's estimate; the store is byte-identical for every thread count (each matrix's
    /// file depends on that matrix alone, the manifest records them by index).
    @discardableResult
    public func run(
        parallelism: Parallelism = .serial,
        progress: (AnalysisEvent) -> Void = { _ in }, shouldStop: () -> Bool = { false }
    ) throws -> SpectrumStore {
        try process(shard: nil, parallelism: parallelism, progress: progress, shouldStop: shouldStop)
        // A whole run supersedes any shards' work.
        try? FileManager.default.removeItem(at: store.appendingPathComponent(Shard.folder))
        progress(.finished(store: store))
        return try SpectrumStore(at: store)
    }

    /// Runs (or resumes) one shard of the analysis (see ``Shard``): its matrices into the store's
    /// `matrices/`, its manifest `shards/I-of-N.json` marked complete when they are all done.
    /// The events list and count the shard's matrices only. A store that is already complete is
    /// left as it is (nothing to do). Then ``finalize(store:)`` once every shard has finished.
    public func run(
        shard: Shard, parallelism: Parallelism = .serial,
        progress: (AnalysisEvent) -> Void = { _ in }, shouldStop: () -> Bool = { false }
    ) throws {
        if let existing = try? SpectrumStore(at: store), existing.manifest.complete {
            progress(.started(matrices: []))
            progress(.finished(store: store))
            return
        }
        try process(shard: shard, parallelism: parallelism, progress: progress, shouldStop: shouldStop)
        progress(.finished(store: store))
    }

    /// The analysis of every matrix (`shard` nil) or of one shard's, into the manifest at
    /// `manifest.json` or the shard's, which is marked complete at the end.
    private func process(
        shard: Shard?, parallelism: Parallelism, progress: (AnalysisEvent) -> Void, shouldStop: () -> Bool
    ) throws {
        let selection = try Selection(include: options.include, exclude: options.exclude)
        let baseCheckpoint = try openCheckpoint(base)
        let finetunedCheckpoint = try openCheckpoint(finetuned)
        let calibrationSet = try calibration.map { url throws(AnalysisError) in try CalibrationSet(url: url) }

        var skipped: [StoreManifest.SkippedTensor] = []
        let jobs = try selectJobs(selection, baseCheckpoint, finetunedCheckpoint, calibrationSet, skipped: &skipped)
        for s in skipped { progress(.skipped(tensor: s.name, reason: s.reason)) }
        let mine: [Int] = if let shard {
            zip(jobs.indices, Shard.assignment(costs: jobs.map { Self.estimatedCost(rows: $0.rows, columns: $0.columns) },
                                               count: shard.count)).filter { $0.1 == shard.index }.map(\.0)
        } else {
            Array(jobs.indices)
        }
        let position = Dictionary(uniqueKeysWithValues: mine.enumerated().map { ($1, $0) })

        let inputs = StoreManifest.Inputs(
            base: try fingerprint(baseCheckpoint, path: base),
            finetuned: try fingerprint(finetunedCheckpoint, path: finetuned),
            calibration: try calibration.map { url throws(AnalysisError) in
                StoreManifest.InputRecord(path: url.path, files: [try FileFingerprint(of: url, name: url.lastPathComponent, hashContent: true)])
            })
        let calibrationFile = calibrationSet.map {
            StoreManifest.CalibrationFileRecord(formatVersion: $0.formatVersion, metadata: $0.metadata)
        }
        let manifestURL = store.appendingPathComponent(shard?.manifestPath ?? SpectrumStore.manifestName)
        var manifest = try existingOrNewManifest(at: manifestURL, inputs: inputs, calibrationFile: calibrationFile, jobs: jobs,
                                                 skipped: skipped)
        try removeStrayFiles(manifest, of: shard == nil ? nil : Set(mine), manifestURL: manifestURL)

        progress(.started(matrices: mine.map { (jobs[$0].name, jobs[$0].rows, jobs[$0].columns, manifest.matrices[$0].status == .done) }))
        let gramCache = GramCache(capacity: parallelism.threads)
        let todo = mine.filter { manifest.matrices[$0].status != .done }
        let records = manifest.matrices
        var starts: [Int: Date] = [:]
        var writeFailure: AnalysisError?
        let outcome = runConcurrently(
            count: todo.count, parallelism: parallelism,
            estimate: { t in Self.analysisBytes(jobs[todo[t]], options: options) },
            shouldStop: { writeFailure != nil || shouldStop() },
            started: { t in
                let job = jobs[todo[t]]
                starts[t] = Date()
                progress(.matrixStarted(index: position[todo[t]]!, total: mine.count, name: job.name, rows: job.rows, columns: job.columns))
            },
            body: { [self] t in
                let index = todo[t], job = jobs[index]
                return Result { () throws(AnalysisError) in
                    let gram = try job.calibrationEntry.map { entry throws(AnalysisError) in
                        try gramCache.gram(entry, from: calibrationSet!)
                    }
                    let outputs = try job.calibrationEntry.flatMap { entry throws(AnalysisError) in
                        try OutputStatistics.load(module: Selection.moduleName(of: job.name), from: calibrationSet!, entry: entry)
                    }
                    return try analyze(job, index: index, record: records[index], gram: gram, outputs: outputs,
                                       base: baseCheckpoint, finetuned: finetunedCheckpoint)
                }
            },
            finished: { t, record in
                let index = todo[t]
                manifest.matrices[index] = record
                do throws(AnalysisError) { try Self.write(manifest, to: manifestURL) } catch { writeFailure = writeFailure ?? error }
                progress(.matrixFinished(index: position[index]!, total: mine.count, name: jobs[index].name,
                                         seconds: Date().timeIntervalSince(starts[t] ?? Date())))
            })
        if let writeFailure { throw writeFailure }
        switch outcome {
        case .completed: break
        case .stopped: throw CancellationError()
        case let .failed(_, error): throw error
        }
        manifest.complete = true
        try Self.write(manifest, to: manifestURL)
    }

    /// The estimated cost of analyzing an h_out × h_in matrix, in the SVD's m·n·min(m, n): what
    /// shards balance and progress lines weigh.
    public static func estimatedCost(rows: Int, columns: Int) -> Double {
        Double(rows) * Double(columns) * Double(min(rows, columns))
    }

    /// What analyzing one matrix holds at its peak, in bytes (for ``Parallelism/memoryLimit``): the
    /// two weights and the delta, the SVD's copy, thin factors and workspace (`gesdd`: about
    /// 4·k² + 4·k beyond them), and H.
    static func analysisBytes(_ job: Job, options: AnalysisOptions) -> Int {
        let (m, n) = (job.rows, job.columns)
        let k = min(m, n)
        let h = job.calibrationEntry == nil ? 0 : n * n
        return 4 * (5 * m * n + k * (m + n) + 5 * k * k + h)
    }

    // MARK: Selection

    private func openCheckpoint(_ url: URL) throws(AnalysisError) -> Checkpoint {
        do { return try Checkpoint(at: url) } catch { throw .checkpoint("\(error)") }
    }

    private func selectJobs(
        _ selection: Selection, _ base: Checkpoint, _ finetuned: Checkpoint, _ calibration: CalibrationSet?,
        skipped: inout [StoreManifest.SkippedTensor]
    ) throws(AnalysisError) -> [Job] {
        var baseTensors: [String: TensorInfo] = [:], finetunedTensors: [String: TensorInfo] = [:]
        for t in base.tensors { baseTensors[t.name] = t.info }
        for t in finetuned.tensors { finetunedTensors[t.name] = t.info }
        var jobs: [Job] = [], missingCalibration: [String] = []
        let names = Set(baseTensors.keys).union(finetunedTensors.keys).filter(selection.matches).sorted {
            Self.naturalOrder($0, $1)
        }
        for name in names {
            guard let b = baseTensors[name], let f = finetunedTensors[name] else {
                let error = AnalysisError.missingOnOneSide(
                    tensor: name, presentIn: baseTensors[name] == nil ? finetuned.url.path : base.url.path,
                    missingFrom: baseTensors[name] == nil ? base.url.path : finetuned.url.path)
                guard options.skipMismatched else { throw error }
                skipped.append(.init(name: name, reason: baseTensors[name] == nil ? "missing in the base" : "missing in the fine-tuned checkpoint"))
                continue
            }
            guard b.shape == f.shape else {
                guard options.skipMismatched else { throw .shapeMismatch(tensor: name, base: b.shape, finetuned: f.shape) }
                skipped.append(.init(name: name, reason: "shape \(b.shape) in the base, \(f.shape) in the fine-tuned checkpoint"))
                continue
            }
            guard b.shape.count == 2 else { continue }
            for (info, url) in [(b, base.url), (f, finetuned.url)] where ![.f32, .f16, .bf16, .f64].contains(info.dtype) {
                throw .unsupportedDType(tensor: name, dtype: info.dtype.rawValue, file: url.path)
            }
            let module = Selection.moduleName(of: name)
            var job = Job(name: name, rows: b.shape[0], columns: b.shape[1],
                          inputDType: b.dtype == f.dtype ? b.dtype.rawValue : "\(b.dtype.rawValue)/\(f.dtype.rawValue)",
                          calibration: .identityDataFree, calibrationEntry: nil, statistics: nil)
            if let calibration {
                if let entry = calibration.entry(for: module) {
                    let width = calibration.width(ofEntry: entry)
                    guard width == job.columns else {
                        throw .calibrationWidthMismatch(module: module, expected: job.columns, found: width, file: calibration.url.path)
                    }
                    if let outputWidth = calibration.outputWidth(ofModule: module), outputWidth != job.rows {
                        let tensor = module + (calibration.outputGramForm(ofModule: module) == .absent ? ".grads" : ".out_gram")
                        throw .calibrationOutputWidthMismatch(module: module, tensor: tensor, expected: job.rows, found: outputWidth,
                                                              file: calibration.url.path)
                    }
                    job.calibration = .gram
                    job.calibrationEntry = entry
                    job.statistics = calibration.statistics(ofModule: module)
                } else {
                    missingCalibration.append(module)
                    job.calibration = .identityMissing
                }
            }
            jobs.append(job)
        }
        if let calibration, !missingCalibration.isEmpty, !options.allowMissingCalibration {
            throw .missingCalibration(modules: missingCalibration, file: calibration.url.path)
        }
        guard !jobs.isEmpty else { throw .nothingSelected(base: base.url.path, patterns: selection.includePatterns) }
        return jobs
    }

    /// Name order with embedded numbers compared numerically (layers.2 before layers.10).
    static func naturalOrder(_ a: String, _ b: String) -> Bool {
        a.compare(b, options: [.numeric]) == .orderedAscending
    }

    // MARK: The store

    private func fingerprint(_ checkpoint: Checkpoint, path: URL) throws(AnalysisError) -> StoreManifest.InputRecord {
        .init(path: path.path, files: try FileFingerprint.files(of: checkpoint, hashContent: true).map(\.fingerprint))
    }

    private func existingOrNewManifest(
        at manifestURL: URL, inputs: StoreManifest.Inputs, calibrationFile: StoreManifest.CalibrationFileRecord?, jobs: [Job],
        skipped: [StoreManifest.SkippedTensor]
    ) throws(AnalysisError) -> StoreManifest {
        let fresh = StoreManifest(
            formatVersion: StoreManifest.currentFormatVersion, toolVersion: DeltaPlanVersion.string,
            inputs: inputs, options: options, dataFree: calibration == nil, calibrationFile: calibrationFile, complete: false,
            skipped: skipped,
            matrices: jobs.map {
                .init(name: $0.name, type: Selection.layerType(of: $0.name), rows: $0.rows, columns: $0.columns,
                      inputDType: $0.inputDType, status: .pending, calibration: $0.calibration,
                      calibrationEntry: $0.calibrationEntry, statistics: $0.statistics)
            })
        guard FileManager.default.fileExists(atPath: manifestURL.path) else {
            for url in [store.appendingPathComponent(SpectrumStore.matricesFolder), manifestURL.deletingLastPathComponent()] {
                do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
                    throw .io(path: store.path, reason: "cannot create the store: \(error.localizedDescription)")
                }
            }
            try Self.write(fresh, to: manifestURL)
            return fresh
        }
        let reader = try SpectrumStore(at: store, manifest: manifestURL, requireComplete: false)
        let old = reader.manifest
        if let reason = try Self.difference(old: old, new: fresh) { throw .storeMismatch(store: store.path, reason: reason) }
        // Resume: keep done matrices whose files are intact, redo the rest.
        var resumed = fresh
        for (i, record) in old.matrices.enumerated() where record.status == .done {
            guard (try? reader.verify(record)) != nil else { continue }
            // The statistics come from the calibration file, which is the same (checked above);
            // a store written before they were recorded gains them.
            resumed.matrices[i] = record
            resumed.matrices[i].statistics = fresh.matrices[i].statistics
        }
        return resumed
    }

    /// Why a store made with `old` cannot be resumed with `new`, or nil.
    static func difference(old: StoreManifest, new: StoreManifest) throws(AnalysisError) -> String? {
        if old.options != new.options { return "the options differ (\(describe(old.options)) then, \(describe(new.options)) now)" }
        let pairs = [("base", old.inputs.base, new.inputs.base), ("fine-tuned", old.inputs.finetuned, new.inputs.finetuned)]
        for (label, o, n) in pairs {
            if let change = try change(o, n) { return "\(label) checkpoint: \(change)" }
        }
        switch (old.inputs.calibration, new.inputs.calibration) {
        case (nil, nil): break
        case (nil, _?): return "it was made without calibration, and calibration is given now"
        case (_?, nil): return "it was made with calibration, and none is given now"
        case let (o?, n?): if let change = try change(o, n) { return "calibration: \(change)" }
        }
        if old.matrices.map(\.name) != new.matrices.map(\.name) { return "the selected matrices differ" }
        return nil
    }

    private static func change(_ old: StoreManifest.InputRecord, _ new: StoreManifest.InputRecord) throws(AnalysisError) -> String? {
        var oldFiles: [String: FileFingerprint] = [:]
        for file in old.files { oldFiles[file.name] = file }
        guard old.files.count == new.files.count, Set(oldFiles.keys) == Set(new.files.map(\.name)) else {
            return "its files differ from \(old.path)'s"
        }
        for file in new.files {
            guard let before = oldFiles[file.name] else { return "its files differ from \(old.path)'s" }
            // `new` was fingerprinted with content hashes, so no file is read again here.
            let url = URL(fileURLWithPath: new.path)
            if let c = try file.change(from: before, at: url.lastPathComponent == file.name ? url : url.appendingPathComponent(file.name)) {
                return c
            }
        }
        return nil
    }

    private static func describe(_ o: AnalysisOptions) -> String {
        let data = try! JSONEncoder.sorted.encode(o)
        return String(decoding: data, as: UTF8.self)
    }

    /// Removes what an interrupted run left: matrix files the manifest does not record as done
    /// (of `own` matrices only, for a shard: the others are other shards' work) and temporaries
    /// beside the manifest.
    private func removeStrayFiles(_ manifest: StoreManifest, of own: Set<Int>?, manifestURL: URL) throws(AnalysisError) {
        let folder = store.appendingPathComponent(SpectrumStore.matricesFolder)
        let keep = Set(manifest.matrices.compactMap { $0.status == .done ? $0.file : nil }.map { ($0 as NSString).lastPathComponent })
        let owned = own.map { Set($0.map { Self.matrixFileName(index: $0) }) }
        let present = (try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []
        for name in present where !keep.contains(name) {
            // A temporary `.NNNNN.safetensors.<UUID>.tmp` belongs to the matrix NNNNN.
            let target = name.hasPrefix(".") ? String(name.dropFirst().prefix { $0 != "." }) + ".safetensors" : name
            if let owned, !owned.contains(target) { continue }
            try? FileManager.default.removeItem(at: folder.appendingPathComponent(name))
        }
        AtomicFile.removeLeftovers(of: manifestURL)
    }

    /// The file name of matrix `index` in the store's `matrices/`.
    static func matrixFileName(index: Int) -> String { String(format: "%05d", index) + ".safetensors" }

    static func write(_ manifest: StoreManifest, to url: URL) throws(AnalysisError) {
        do { try AtomicFile.write(data: StoreManifest.encode(manifest), to: url) } catch {
            throw .io(path: url.path, reason: "cannot write the manifest: \(error)")
        }
    }
}

extension JSONEncoder {
    static var sorted: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return e
    }
}

/// The H of the last few calibration entries read (full, or only its diagonal): consecutive
/// matrices often share one (q/k/v). Thread-safe (`@unchecked Sendable`: its state is accessed
/// with `lock` held); two threads asking for a missing entry at once may both read it.
final class GramCache: @unchecked Sendable {
    private let capacity: Int
    private let lock = NSLock()
    private var order: [String] = []
    private var grams: [String: CalibrationGram] = [:]

    init(capacity: Int = 1) { self.capacity = max(1, capacity) }

    func gram(_ entry: String, from set: CalibrationSet) throws(AnalysisError) -> CalibrationGram {
        if let gram = lock.withLock({ grams[entry] }) { return gram }
        let g = try set.inputGram(ofEntry: entry)
        lock.withLock {
            if grams[entry] == nil { order.append(entry) }
            grams[entry] = g
            while order.count > capacity { grams[order.removeFirst()] = nil }
        }
        return g
    }
}
