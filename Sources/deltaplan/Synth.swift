import Analysis
import ArgumentParser
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles

/// `deltaplan synth`: a synthetic base / fine-tuned pair with calibration, shaped like a profile.
struct Synth: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a synthetic base and fine-tuned checkpoint and a calibration file shaped like a model profile.",
        discussion: """
        Writes OUT/base/, OUT/finetuned/ (model.safetensors, or shards with an index when larger than \
        --shard-size) and OUT/calibration.safetensors. Deltas have the long-tailed spectra of a real \
        fine-tune (a power law in the relative index times a Marchenko-Pastur edge, fitted to the \
        development pair) with random orthogonal factors; activations have outlier channels. See README.md \
        for what the model covers. Deterministic for a seed, whatever --threads.
        """)

    @Option(help: "Model profile (see `deltaplan profiles`).")
    var profile: String

    @Option(help: "Multiply every dimension by this factor (e.g. 0.015625 = 1/64) for small test models.")
    var scale: Double = 1

    @Option(help: "Number of layers (default: the profile's).")
    var layers: Int?

    @Option(help: "Seed of every random draw.")
    var seed: UInt64 = 0

    @Option(help: "Stored dtype of both checkpoints: BF16, F16 or F32.")
    var dtype: String = "BF16"

    @Option(help: "Calibration tokens per layer input.")
    var tokens: Int = 512

    @Option(help: "Largest shard in bytes before a checkpoint is split (Hugging Face layout with an index).")
    var shardSize: Int = 5 << 30

    @Option(help: "Output directory.")
    var out: String

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard scale > 0, scale <= 1 else { throw ValidationError("--scale must be in (0, 1], got \(scale)") }
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1, got \(layers)") }
        guard ["BF16", "F16", "F32"].contains(dtype.uppercased()) else {
            throw ValidationError("--dtype must be BF16, F16 or F32, got \(dtype)")
        }
        guard tokens >= 1 else { throw ValidationError("--tokens must be at least 1") }
        guard shardSize >= 1 else { throw ValidationError("--shard-size must be positive") }
    }

    func run() throws {
        let model = try ProfileLibrary.builtIn().model(named: profile)
        let pair = SyntheticPair(profile: scale == 1 && layers == nil ? model : model.scaled(by: scale, layers: layers),
                                 seed: seed, dtype: DType(rawValue: dtype.uppercased())!, tokens: tokens,
                                 maxShardBytes: shardSize)
        let paths = try pair.writeWithProgress(to: URL(fileURLWithPath: out), parallelism: threadOptions.parallelism())
        print("wrote \(paths.base.path), \(paths.finetuned.path) and \(paths.calibration.path)")
    }
}

extension SyntheticPair {
    func writeWithProgress(to directory: URL, parallelism: Parallelism = .serial) throws -> Paths {
        let progress = TerminalProgress(label: "synth")
        let paths = try write(to: directory, parallelism: parallelism) { done, total, name in
            progress.update(done: Double(done), total: Double(total), step: done, steps: total, current: name,
                            finished: done == total)
        }
        progress.finish("synth: done")
        return paths
    }
}
