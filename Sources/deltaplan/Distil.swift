import ArgumentParser
import ArtifactFormat
import Foundation
import ModelProfiles
import Pipeline
import Reporting

/// `deltaplan distil`: the Swift half of fitting an artifact's singular values end to end; the
/// fit itself runs in the PyTorch companion (`deltaplan-model distil`), where the model lives.
struct DistilCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "distil",
        abstract: "Export an artifact's factors for `deltaplan-model distil`, and apply what it fits.",
        discussion: """
        deltaplan distil export ART --out ART.factors.safetensors
        deltaplan-model distil FINETUNED_DIR --base BASE_DIR --factors ART.factors.safetensors --text calib.jsonl --out ART.fitted.safetensors
        deltaplan distil apply ART --fitted ART.fitted.safetensors --out ART-distilled

        The companion fits a multiplier per stored singular value, per row of each segment's Û and per \
        group of each row of its V̂ᵀ so that \
        base + ΔŴ reproduces the fine-tuned model's last hidden state on the calibration text; the new \
        artifact has the same plan, codes and size, only its F16 σ and the scales of Û and V̂ᵀ differ (and its manifest \
        records the fitted file).
        """,
        subcommands: [DistilExport.self, DistilApply.self])
}

/// `deltaplan distil export ARTIFACT --out FILE`.
struct DistilExport: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write every segment's dequantized factors (F32 <prefix>.u, .sigma, .vt) to a safetensors file.")

    @Argument(help: "The artifact directory (deltaplan compress --out).")
    var artifact: String

    @Option(help: "The safetensors file to write (atomically).")
    var out: String

    func run() throws {
        let written: ExportedFactors
        do {
            written = try exportFactors(of: try Artifact(at: URL(fileURLWithPath: artifact)), to: URL(fileURLWithPath: out))
        } catch { throw CLIFailure(error) }
        say("wrote \(out): \(written.segments) segment(s) of \(written.matrices) matrices, \(Format.bytes(Double(written.bytes)))")
    }
}

/// `deltaplan distil apply ARTIFACT --fitted FILE --out DIR`.
struct DistilApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Write a copy of an artifact with the σ, Û and V̂ᵀ scales deltaplan-model distil fitted.")

    @Argument(help: "The artifact directory the factors were exported from.")
    var artifact: String

    @Option(help: "The file of fitted values written by deltaplan-model distil.")
    var fitted: String

    @Option(help: "The artifact directory to write (atomically; it must not exist).")
    var out: String

    func run() throws {
        let manifest: ArtifactManifest
        do {
            manifest = try applyDistillation(URL(fileURLWithPath: fitted), to: try Artifact(at: URL(fileURLWithPath: artifact)),
                                      out: URL(fileURLWithPath: out), toolVersion: DeltaPlanVersion.string)
        } catch { throw CLIFailure(error) }
        let notes = manifest.distillation?.metadata ?? [:]
        var line = "wrote \(out): σ, Û and V̂ᵀ scales of \(manifest.matrices.reduce(0) { $0 + $1.segments.count }) segment(s) as fitted"
        if let before = notes["deltaplan.distil.relative_error_before"], let after = notes["deltaplan.distil.relative_error_after"] {
            line += "; the distillation's relative error on its text: \(before) -> \(after)"
        }
        say(line)
    }
}
