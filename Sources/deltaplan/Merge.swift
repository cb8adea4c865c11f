import ArgumentParser
import ArtifactFormat
import Checkpoint
import Foundation
import Pipeline
import Reporting

/// `deltaplan merge`: base + Δ̂ as a Hugging Face checkpoint.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Write base + the artifact's delta as a checkpoint in the base's dtype and shard layout.",
        discussion: """
        The artifact's checksums are verified first; carried tensors come out bit-exact. The fine-tuned \
        model's config.json, tokenizer and generation files stored in the artifact are written beside the \
        weights byte for byte, so the directory loads in transformers as it is.
        """)

    @Option(help: "The base checkpoint (file or directory).")
    var base: String

    @Option(help: "The artifact directory (deltaplan compress --out).")
    var artifact: String

    @Option(help: "The checkpoint directory to write (atomically).")
    var out: String

    @Option(help: "dtype of the merged matrices: F32, BF16, F16 or F64 (default: the base's). F32 keeps base + Δ̂ unrounded, as a server applying the delta beside the base sees it.")
    var dtype: DType?

    func validate() throws {
        if let dtype, ![.f64, .f32, .f16, .bf16].contains(dtype) {
            throw ValidationError("--dtype must be F32, BF16, F16 or F64, not \(dtype.rawValue)")
        }
    }

    func run() throws {
        let progress = TerminalProgress(label: "merge")
        let summary: MergeSummary
        let artifact: Artifact
        do {
            artifact = try Artifact(at: URL(fileURLWithPath: self.artifact))
            summary = try merge(base: URL(fileURLWithPath: base), artifact: artifact, to: URL(fileURLWithPath: out), plannedDType: dtype) { done, total, name in
                progress.update(done: Double(done), total: Double(total), step: done, steps: total, current: name, finished: done == total)
            }
        } catch { throw CLIFailure(error) }
        progress.finish("merge: done")
        say("wrote \(out): \(summary.shards.count) shard(s), \(summary.merged) merged, \(summary.carried) carried, \(summary.copied) copied from the base")
        say(modelFilesLine(summary, artifact: artifact))
    }
}

/// What merge did with the model files: their count and names, or why there were none and what
/// the user must copy before loading the directory in transformers.
func modelFilesLine(_ summary: MergeSummary, artifact: Artifact) -> String {
    if !summary.modelFiles.isEmpty {
        return "model files: \(summary.modelFiles.count) written byte for byte (\(summary.modelFiles.joined(separator: ", ")))"
    }
    let why = artifact.manifest.formatVersion < 2
        ? "the artifact is format \(artifact.manifest.formatVersion), which stores none"
        : "the fine-tuned checkpoint had no config.json, tokenizer or generation files"
    return "model files: none written (\(why)); copy the fine-tuned model's config.json and tokenizer files into "
        + "\(summary.directory.path) before loading it with transformers"
}
