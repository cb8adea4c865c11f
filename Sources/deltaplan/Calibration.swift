import Analysis
import ArgumentParser
import Foundation
import ModelProfiles

/// `deltaplan calibration`: inspect calibration files and import them from other tools.
struct CalibrationCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibration",
        abstract: "Inspect calibration files, or import one from a llama.cpp imatrix.",
        discussion: "The calibration file format is defined in Docs/calibration-format.md.",
        subcommands: [CalibrationInspect.self, ImportImatrix.self])
}

/// `deltaplan calibration inspect FILE [--format table|json]`.
struct CalibrationInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List the modules of a calibration file and the statistics it holds for each.",
        discussion: """
        Per module: the entry it shares by alias, h_in, h_out (from .out_gram or .grads), the token count N, \
        H full or diagonal, G full, diagonal or absent (-), the sampled input rows and paired gradient rows. \
        Then the format version, probes, probe objective, samples and source, and the error objective the \
        statistics support for every module: activation (H), kronecker (H and G) or paired (paired samples). \
        The whole file is validated first; a bad file is reported with the tensor or key at fault.
        """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Argument(help: "A calibration file (.safetensors).")
    var file: String

    @Option(help: "Output format: table or json.")
    var format: Format = .table

    func run() throws {
        let summary = CalibrationSummary(try CalibrationSet(url: URL(fileURLWithPath: file)))
        switch format {
        case .table: print(summary.text(), terminator: "")
        case .json: print(summary.json(), terminator: "")
        }
    }
}

/// `deltaplan calibration import-imatrix FILE.gguf --out calib.safetensors [--profile NAME]`.
struct ImportImatrix: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-imatrix",
        abstract: "Convert a llama.cpp importance matrix (GGUF imatrix) into a diagonal calibration file.",
        discussion: """
        Each weight's <name>.in_sum2 (Σ x² per input channel) becomes the diagonal H of its module, and \
        <name>.counts its token count. llama.cpp names map to Hugging Face Llama modules (blk.N.attn_q → \
        model.layers.N.self_attn.q_proj, attn_k, attn_v, attn_output → o_proj, ffn_gate/ffn_up/ffn_down → \
        mlp.gate_proj/up_proj/down_proj, output → lm_head). Any other name is an error listing them all \
        unless --skip-unknown, which skips and lists them. Mixture-of-experts imatrices are not supported. \
        With --profile (a Llama-family profile), every module's width is checked against the profile.
        """)

    @Argument(help: "The imatrix GGUF file written by llama-imatrix.")
    var file: String

    @Option(help: "The calibration file to write (.safetensors).")
    var out: String

    @Option(help: "Check the modules against this Llama-family model profile (see `deltaplan profiles`).")
    var profile: String?

    @Flag(help: "Skip weights whose names have no Hugging Face module (they are listed) instead of failing.")
    var skipUnknown = false

    func run() throws {
        let model = try profile.map { name in try ProfileLibrary.builtIn().model(named: name) }
        let report = try ImatrixImport(source: URL(fileURLWithPath: file), profile: model, skipUnknown: skipUnknown)
            .run(to: URL(fileURLWithPath: out))
        for name in report.skipped { print("skipped \(name): no Hugging Face module name") }
        var line = "imported \(report.modules.count) modules (diagonal H, up to \(report.tokens) tokens) into \(out)"
        if let chunks = report.chunkCount, let size = report.chunkSize { line += "; \(chunks) chunks of \(size) tokens" }
        if !report.datasets.isEmpty { line += "; datasets: " + report.datasets.joined(separator: ", ") }
        print(line)
    }
}
