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
        abstract: "Export an artifact's factors for `deltaplan-model distil`, and apply the σ it fits.",
        discussion: """
        deltaplan distil export ART --out ART.factors.safetensors
        deltaplan-model distil FINETUNED_DIR --base BASE_DIR --factors ART.factors.safetensors --text calib.jsonl --out ART.sigma.safetensors
        deltaplan distil apply ART --sigma ART.sigma.safetensors --out ART-distilled

        The companion fits one multiplier per stored singular value so that base + ΔŴ reproduces the \
        fine-tuned model's last hidden state on the calibration text; the new artifact has the same plan, \
        codes, scales and size, only its σ differ (and its manifest records the σ file).
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

/// `deltaplan distil apply ARTIFACT --sigma FILE --out DIR`.
struct DistilApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Write a copy of an artifact with the singular values of a σ file from deltaplan-model distil.")

    @Argument(help: "The artifact directory the factors were exported from.")
    var artifact: String

    @Option(help: "The σ file written by deltaplan-model distil.")
    var sigma: String

    @Option(help: "The artifact directory to write (atomically; it must not exist).")
    var out: String

    func run() throws {
        let manifest: ArtifactManifest
        do {
            manifest = try applySigma(URL(fileURLWithPath: sigma), to: try Artifact(at: URL(fileURLWithPath: artifact)),
                                      out: URL(fileURLWithPath: out), toolVersion: DeltaPlanVersion.string)
        } catch { throw CLIFailure(error) }
        let notes = manifest.sigma?.metadata ?? [:]
        var line = "wrote \(out): σ of \(manifest.matrices.reduce(0) { $0 + $1.segments.count }) segment(s) replaced"
        if let before = notes["deltaplan.distil.relative_error_before"], let after = notes["deltaplan.distil.relative_error_after"] {
            line += "; the distillation's relative error on its text: \(before) -> \(after)"
        }
        say(line)
    }
}
