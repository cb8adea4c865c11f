import Analysis
import ArgumentParser
import Foundation
import LinearAlgebra
import Reporting

/// `deltaplan analyze`: SVD of every selected delta into a spectrum store.
struct Analyze: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decompose the deltas of a fine-tuned checkpoint against its base into a spectrum store.",
        discussion: """
        For every 2-D weight in both checkpoints selected by the filters (default: the attention and MLP \
        projections of Llama/Mistral- and BERT-style models), computes ΔW = W_finetuned − W_base in Float32, \
        its SVD, and with --calibration the projections gᵢ = vᵢᵀ H vᵢ and ‖ΔW X‖². Checkpoints are \
        .safetensors files or directories (sharded ones with model.safetensors.index.json); weights may \
        be BF16, F16, F32 or F64. A rerun with the same inputs and options resumes an interrupted store.

        Scaling out: `--shard I/N` analyzes a deterministic 1/N of the matrices (balanced by estimated \
        cost) into the same store; shards may run at once, on machines sharing the store's filesystem. \
        When all N have finished, `deltaplan analyze --finalize STORE` checks them and completes the \
        store (the bytes a single run writes); a shard that is missing or damaged is named, and rerunning \
        only that shard repairs it.
        """)

    @Option(help: "The base checkpoint (file or directory).")
    var base: String?

    @Option(help: "The fine-tuned checkpoint (file or directory).")
    var finetuned: String?

    @Option(help: "Calibration statistics (a safetensors file, Docs/calibration-format.md; `deltaplan calibration inspect` lists it); without it the store is data-free (H = I).")
    var calibration: String?

    @Option(help: "Select tensors matching this regular expression (repeatable; replaces the default projections).")
    var include: [String] = []

    @Option(help: "Never select tensors matching this regular expression (repeatable).")
    var exclude: [String] = []

    @Option(help: "Store at most R singular vector pairs per matrix (default: h_out·h_in/(h_out+h_in), all any plan up to α = 1/8 can use).")
    var maxRank: Int?

    @Flag(help: "Report and skip tensors missing on one side or with different shapes, instead of failing.")
    var skipMismatched = false

    @Flag(help: "Use H = I for selected modules without a calibration entry (marked in every report).")
    var allowMissingCalibration = false

    @Option(help: "Seed of the randomized SVD; analyze no longer uses one (every SVD goes through the Float64 Gram), kept for scripts and stores that name it.")
    var seed: UInt64 = 0

    @Option(help: "Power iterations of the randomized SVD; unused since analyze's SVDs go through the Float64 Gram, kept for scripts and stores that name it.")
    var powerIterations: Int = 2

    @Option(help: "The spectrum store directory to write (or resume).")
    var out: String?

    @Option(help: "Analyze only shard I of N (e.g. 2/4) into the store; then --finalize it.", transform: shardArgument)
    var shard: Shard?

    @Option(help: "Complete the store STORE whose N shards have all finished (no other option).")
    var finalize: String?

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if finalize != nil {
            guard base == nil, finetuned == nil, calibration == nil, out == nil, shard == nil, include.isEmpty, exclude.isEmpty,
                  maxRank == nil, !skipMismatched, !allowMissingCalibration else {
                throw ValidationError("--finalize STORE takes no other option: the shards' manifests hold the inputs and options")
            }
            return
        }
        for (value, flag) in [(base, "--base"), (finetuned, "--finetuned"), (out, "--out")] where value == nil {
            throw ValidationError("Missing expected argument '\(flag)' (or --finalize STORE)")
        }
        if let maxRank, maxRank < 1 { throw ValidationError("--max-rank must be at least 1, got \(maxRank)") }
        if powerIterations < 0 { throw ValidationError("--power-iterations must not be negative") }
    }

    func run() throws {
        if let finalize {
            let store = try Analyzer.finalize(store: URL(fileURLWithPath: finalize))
            print("finalized \(store.url.path): \(store.matrices.count) matrices")
            return
        }
        let analyzer = Analyzer(
            base: URL(fileURLWithPath: base!), finetuned: URL(fileURLWithPath: finetuned!),
            calibration: calibration.map { URL(fileURLWithPath: $0) },
            options: AnalysisOptions(include: include, exclude: exclude, maxRank: maxRank, skipMismatched: skipMismatched,
                                     allowMissingCalibration: allowMissingCalibration, seed: seed,
                                     powerIterations: powerIterations),
            store: URL(fileURLWithPath: out!))
        if let shard {
            try analyzer.runWithProgress(shard: shard, parallelism: threadOptions.parallelism())
            print("analyzed shard \(shard) into \(analyzer.store.path); when all \(shard.count) have finished: "
                  + "deltaplan analyze --finalize \(analyzer.store.path)")
            return
        }
        let store = try analyzer.runWithProgress(parallelism: threadOptions.parallelism())
        let statistics = store.manifest.supportedObjective.map { objective in
            " (calibration format \(store.manifest.calibrationFile?.formatVersion ?? 1): statistics support the \(objective.rawValue) objective)"
        }
        print("analyzed \(store.matrices.count) matrices into \(store.url.path)"
              + (store.manifest.dataFree ? " (data-free: no calibration, H = I)" : statistics ?? ""))
    }
}

extension Analyzer {
    /// Runs (the whole analysis, or one shard) with a terminal progress line; the ETA weighs each
    /// matrix by ``Analyzer/estimatedCost(rows:columns:)``.
    func runWithProgress(parallelism: Parallelism = .serial) throws -> SpectrumStore {
        try run(parallelism: parallelism, progress: report(TerminalProgress(label: "analyze")))
    }

    func runWithProgress(shard: Shard, parallelism: Parallelism) throws {
        try run(shard: shard, parallelism: parallelism, progress: report(TerminalProgress(label: "analyze \(shard)")))
    }

    private func report(_ progress: TerminalProgress) -> (AnalysisEvent) -> Void {
        var costs: [Double] = [], done = 0.0, total = 0.0, finished = 0
        return { event in
            switch event {
            case let .started(matrices):
                // Only the work left counts toward the ETA.
                costs = matrices.map { $0.alreadyDone ? 0 : Analyzer.estimatedCost(rows: $0.rows, columns: $0.columns) }
                total = costs.reduce(0, +)
                let resumed = matrices.filter(\.alreadyDone).count
                finished = resumed
                if resumed > 0 { progress.note("resuming: \(resumed) of \(matrices.count) matrices already done") }
            case let .skipped(tensor, reason):
                progress.note("skipped \(tensor): \(reason)")
            case let .matrixStarted(_, count, name, rows, columns):
                progress.update(done: done, total: total, step: finished, steps: count, current: "\(name) \(rows)×\(columns)")
            case let .matrixFinished(index, count, name, seconds):
                done += costs[index]
                finished += 1
                progress.update(done: done, total: total, step: finished, steps: count,
                                current: "\(name) in \(Format.duration(seconds))", finished: true)
            case let .finished(store):
                progress.finish("analyze: done, store \(store.path)")
            }
        }
    }
}
