import ArgumentParser
import Foundation
import Quantization
import Reporting

/// `deltaplan merge`: base + Δ̂ as a Hugging Face checkpoint.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Write base + the artifact's delta as a checkpoint in the base's dtype and shard layout.",
        discussion: "The artifact's checksums are verified first; carried tensors come out bit-exact.")

    @Option(help: "The base checkpoint (file or directory).")
    var base: String

    @Option(help: "The artifact directory (deltaplan compress --out).")
    var artifact: String

    @Option(help: "The checkpoint directory to write (atomically).")
    var out: String

    func run() throws {
        let progress = TerminalProgress(label: "merge")
        let summary: MergeSummary
        do {
            let artifact = try Artifact(at: URL(fileURLWithPath: self.artifact))
            summary = try merge(base: URL(fileURLWithPath: base), artifact: artifact, to: URL(fileURLWithPath: out)) { done, total, name in
                progress.update(done: Double(done), total: Double(total), step: done, steps: total, current: name, finished: done == total)
            }
        } catch { throw CLIFailure(error) }
        progress.finish("merge: done")
        say("wrote \(out): \(summary.shards.count) shard(s), \(summary.merged) merged, \(summary.carried) carried, \(summary.copied) copied from the base")
    }
}
