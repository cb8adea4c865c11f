import Analysis
import ArgumentParser
import Foundation
import ModelProfiles
import Optimizer
import Quantization

/// `deltaplan demo`: the pipeline on a small seeded synthetic pair.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the pipeline on a small synthetic Llama-shaped pair: synth → analyze → spectrum report → compare strategies.")

    @Option(help: "Working directory for the demo's files (default: a new temporary directory).")
    var workdir: String?

    @Option(help: "Seed of the synthetic pair.")
    var seed: UInt64 = 7

    func run() throws {
        let dir = workdir.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-demo-\(ProcessInfo.processInfo.processIdentifier)")
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 16, layers: 2)
        say("== synth: \(profile.description)")
        let paths = try SyntheticPair(profile: profile, seed: seed, tokens: 1024).writeWithProgress(to: dir)
        say("== analyze: \(paths.base.path) vs \(paths.finetuned.path), calibration \(paths.calibration.lastPathComponent)")
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir.appendingPathComponent("store")).runWithProgress()
        let report = try SpectrumReport(store)
        say("== spectrum report (\(store.matrices.count) matrices)")
        say(report.text())
        let plot = dir.appendingPathComponent("spectra.svg")
        try writeAtomically(report.plot().svg(), to: plot)
        say("spectrum plot: \(plot.path)")

        say("== compare at α = 1/32, 1/20, 1/16 (artifact accounting, global budget)")
        let measuring = TerminalProgress(label: "measure")
        let planning = try StorePlanning(store: store.url) { done, total, name in
            measuring.update(done: Double(done), total: Double(total), step: done, steps: total, current: name, finished: done == total)
        }
        let comparison = try planning.compare(
            budgets: try ["1/32", "1/20", "1/16"].map { (try Budget(parsing: $0), $0) },
            strategies: ["greedy", "genetic", "exact", "preset:delta-come", "low-rank", "bitdelta"],
            library: try ProfileLibrary.builtIn(), storage: StorageModel(), scope: .global, menu: [16, 8, 4, 3, 2, 1],
            seed: seed, clock: { Date().timeIntervalSinceReferenceDate })
        say(comparison.render(.table))
        let comparisonPlot = dir.appendingPathComponent("comparison.svg")
        try writeAtomically(comparison.render(.svg), to: comparisonPlot)
        say("comparison plot: \(comparisonPlot.path)")
    }
}
