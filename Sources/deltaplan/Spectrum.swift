import Analysis
import ArgumentParser
import Checkpoint
import Foundation

/// `deltaplan spectrum STORE`: per-matrix spectrum statistics and a plot.
struct Spectrum: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report the singular-value spectra of a spectrum store.",
        discussion: """
        Per matrix: shape, stored rank, effective rank (exp of the entropy of σ/Σσ), the share of ‖ΔW‖²_F \
        in the top 2 / 34 / 128 singular vectors (and of ‖ΔW X‖² when calibrated), and a least-squares \
        power-law fit σᵢ ≈ c·(i+1)^(−p) of the tail (i ≥ 2) with its R². JSON lists every stored σ.
        """)

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case table, markdown, json }

    @Argument(help: "The spectrum store directory (from `deltaplan analyze`).")
    var store: String

    @Option(help: "Output format: table, markdown or json.")
    var format: OutputFormat = .table

    @Option(help: "Also write an SVG plot of the normalized spectra by layer type to this file.")
    var plot: String?

    func run() throws {
        let report = try SpectrumReport(SpectrumStore(at: URL(fileURLWithPath: store)))
        switch format {
        case .table: print(report.text(), terminator: "")
        case .markdown: print(report.markdown(), terminator: "")
        case .json: print(report.json(), terminator: "")
        }
        if let plot {
            try writeAtomically(report.plot().svg(), to: URL(fileURLWithPath: plot))
        }
    }
}

/// Writes text to a file with `AtomicFile` (unique temporary name, fsync, rename, directory fsync).
/// A failure is a run failure (exit 1) naming the path, not a usage error.
func writeAtomically(_ text: String, to url: URL) throws {
    do { try AtomicFile.write(data: Array(text.utf8), to: url) } catch {
        throw CLIFailure("cannot write \(url.path): \(error)")
    }
}
