import Analysis
import ArgumentParser
import ArtifactFormat
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Reporting

/// `deltaplan compress`: realize a plan as an artifact directory.
struct Compress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Quantize a plan's segments and write a compressed-delta artifact (delta.safetensors, model-files/, manifest.json).",
        discussion: """
        The plan must come from the store (its source.hash is the store's identity). Base and fine-tuned \
        checkpoints default to the paths the store recorded and must still match its fingerprints. Every \
        tensor outside the plan is carried as the fine-tuned tensor's bytes, so artifact + base is the whole \
        fine-tuned model. The fine-tuned directory's config.json, tokenizer, generation and chat-template \
        files are stored too (byte for byte), for merge to write. Layout: Docs/artifact-format.md.
        """)

    @Argument(help: "The spectrum store the plan was made from.")
    var store: String

    @Option(help: "The plan file (deltaplan plan … --out).")
    var plan: String

    @Option(help: "The calibration file the store was analyzed with (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "Quantizer for 2…8-bit segments: gptq or rtn (data-free stores always use rtn).")
    var method: QuantizationMethod = .default

    @Option(help: "Segment order: feedback (error feedback: U toward its least-squares target, σ refitted, later segments absorbing earlier residuals) or paper (Delta-CoMe as published). Default: the order the plan was measured in, else feedback; another order than the plan's is warned about.")
    var order: SegmentOrder?

    @Option(help: "GPTQ damping as a fraction of mean(diag H).")
    var dampening: Double = QuantizationMethod.defaultDampening

    @Option(help: "The fine-tuned checkpoint, if it moved since the analysis (checked by size and header hash).")
    var finetuned: String?

    @Option(help: "The base checkpoint, if it moved since the analysis (checked by size and header hash).")
    var base: String?

    @Option(help: "The artifact directory to write (atomically). An interrupted run keeps the matrices it quantized in the hidden sibling .NAME.partial, and a rerun with the same plan and options resumes from them.")
    var out: String

    @Option(help: "Quantize only shard I of N (e.g. 2/4) of the plan's matrices into the work directory, which the shards may share; then --finalize.", transform: shardArgument)
    var shard: Shard?

    @Flag(help: "Assemble the artifact once every shard has finished (the same inputs and options as the shards'); quantizes nothing.")
    var finalize = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        if finalize, let shard { throw ValidationError("--finalize assembles what every shard left; it takes no --shard (got \(shard))") }
    }

    func run() throws {
        let store: SpectrumStore
        do { store = try SpectrumStore(at: URL(fileURLWithPath: self.store)) } catch { throw CLIFailure(error) }
        let plan: Plan
        do { plan = try Plan.read(from: URL(fileURLWithPath: self.plan)) } catch { throw CLIFailure(error) }
        let calibrationSet: CalibrationSet?
        do { calibrationSet = try store.calibrationSet(given: calibration.map { URL(fileURLWithPath: $0) }) } catch { throw CLIFailure(error) }
        let progress = TerminalProgress(label: shard.map { "compress \($0)" } ?? "compress")
        var work: [Double] = [], done = 0.0, total = 0.0, finished = 0, resumed = 0
        let options = CompressionOptions(method: method, order: order, dampening: dampening, base: base.map { URL(fileURLWithPath: $0) },
                                         finetuned: finetuned.map { URL(fileURLWithPath: $0) }, planPath: self.plan,
                                         toolVersion: DeltaPlanVersion.string)
        let destination = URL(fileURLWithPath: out)
        let manifest: ArtifactManifest
        do {
            let report: (CompressionEvent) -> Void = { event in
                switch event {
                case let .started(_, w, carried):
                    work = w
                    total = w.reduce(0, +)
                    progress.note("\(w.count) planned matrices, \(carried) carried tensors")
                case let .matrixResumed(index, _, _):
                    // Only the work left counts toward the ETA.
                    total -= work[index]
                    finished += 1
                    resumed += 1
                case let .matrixStarted(_, count, name):
                    if resumed > 0 {
                        progress.note("resuming: \(resumed) of \(count) matrices already quantized")
                        resumed = 0
                    }
                    progress.update(done: done, total: total, step: finished, steps: count, current: name)
                case let .matrixFinished(index, count, name, seconds):
                    done += work[index]
                    finished += 1
                    progress.update(done: done, total: total, step: finished, steps: count,
                                    current: "\(name) in \(Format.duration(seconds))", finished: true)
                case .carried: break
                case let .warning(text): progress.note("warning: \(text)")
                case let .finished(url): progress.finish("compress: done, artifact \(url.path)")
                }
            }
            if let shard {
                try compress(store: store, plan: plan, calibration: calibrationSet, options: options, to: destination, shard: shard,
                             parallelism: threadOptions.parallelism(), progress: report)
                progress.finish("compress \(shard): done")
                say("quantized shard \(shard) into \(compressionWorkDirectory(for: destination).path); when all \(shard.count) have finished, "
                    + "rerun this command with --finalize instead of --shard")
                return
            }
            manifest = finalize
                ? try finalizeCompression(store: store, plan: plan, calibration: calibrationSet, options: options, to: destination,
                                          progress: report)
                : try compress(store: store, plan: plan, calibration: calibrationSet, options: options, to: destination,
                               parallelism: threadOptions.parallelism(), progress: report)
        } catch { throw CLIFailure(error) }
        let t = manifest.totals
        say("planned: \(Format.bytes(Double(t.plannedBytes))) (\(t.plannedBytes) B) for \(Format.bytes(Double(t.planStorageBits) / 8)) in the plan "
            + "(×\(Format.fixed(t.plannedOverPlan, decimals: 5)))")
        say("carried: \(Format.bytes(Double(t.carriedBytes))) in \(manifest.carried.count) tensors; unchanged: \(manifest.unchanged.count); "
            + "header \(t.headerBytes) B; file \(Format.bytes(Double(t.fileBytes)))")
        let files = manifest.modelFiles ?? []
        say(files.isEmpty
            ? "model files: none (the fine-tuned checkpoint is a single file, or its directory has no config.json or tokenizer files)"
            : "model files: \(files.count), \(Format.bytes(Double(files.reduce(0) { $0 + $1.size }))) (\(files.map(\.name).joined(separator: ", ")))")
        for m in manifest.matrices where !m.warnings.isEmpty { say("warning: \(m.name): \(m.warnings.joined(separator: "; "))") }
        say("wrote \(out)")
    }
}
