import Analysis
import ArgumentParser
import ArtifactFormat
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Reporting

/// `deltaplan demo`: the pipeline on a small seeded synthetic pair.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the whole pipeline on a small synthetic Llama-shaped pair.",
        discussion: """
        synth (seeded, 2 layers at 1/16 scale) → analyze → spectrum report → compare (greedy, genetic, exact, \
        preset:delta-come, low-rank, bitdelta at α = 1/32, 1/20, 1/16) → plan (exact, 1/16) → compress (GPTQ) → \
        evaluate (actual against predicted error, and the baselines) → merge (a Hugging Face checkpoint of base + Δ̂).
        """)

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
        let spectra = try SpectrumReport(store)
        say("== spectrum report (\(store.matrices.count) matrices)")
        say(spectra.text())
        let plot = dir.appendingPathComponent("spectra.svg")
        try writeAtomically(spectra.plot().svg(), to: plot)
        say("spectrum plot: \(plot.path)")

        say("== compare at α = 1/32, 1/20, 1/16 (artifact accounting, global budget: at these small shapes the paper's per-type delta-come does not fit 1/16)")
        let measuring = TerminalProgress(label: "measure")
        let planning = try StorePlanning(store: store.url, progress: measuring.step)
        let library = try ProfileLibrary.builtIn()
        let comparison = try planning.compare(
            budgets: [32, 20, 16].map { .ratio(1 / Double($0)) },
            candidates: try Candidate.defaultNames.map { try Candidate(parsing: $0, library: library) },
            storage: StorageModel(), scope: .global, menu: BitMenu.default,
            seed: seed, clock: { Date().timeIntervalSinceReferenceDate })
        say(comparison.render(.table))
        let comparisonPlot = dir.appendingPathComponent("comparison.svg")
        try writeAtomically(comparison.render(.svg), to: comparisonPlot)
        say("comparison plot: \(comparisonPlot.path)")

        say("== plan: exact at α = 1/16")
        let plan = try planning.plan(
            budget: .ratio(1.0 / 16), storage: StorageModel(), scope: .global,
            menu: BitMenu.default, strategy: .exact, seed: seed)
        let planURL = dir.appendingPathComponent("plan.json")
        try plan.write(to: planURL)
        say("wrote \(planURL.path): \(Format.bytes(Double(plan.totals.storageBits) / 8)), α = \(Format.significant(plan.totals.alpha, digits: 4))")

        say("== compress (GPTQ, group size 128)")
        let artifactURL = dir.appendingPathComponent("artifact")
        try? FileManager.default.removeItem(at: artifactURL)
        _ = try compress(store: store, plan: plan, calibration: try CalibrationSet(url: paths.calibration),
                         options: CompressionOptions(planPath: planURL.path, toolVersion: DeltaPlanVersion.string), to: artifactURL)
        let artifact = try Artifact(at: artifactURL)
        say("wrote \(artifactURL.path)")

        say("== evaluate: actual calibration-activation error against the prediction and the baselines")
        let report = try evaluate(artifact: artifact, base: paths.base, finetuned: paths.finetuned,
                                  calibration: try CalibrationSet(url: paths.calibration), store: store)
        for (title, table) in evaluationTables(report) { say("\(title):"); say(table.text()) }

        say("== merge: base + Δ̂ as a Hugging Face checkpoint")
        let mergedURL = dir.appendingPathComponent("merged")
        try? FileManager.default.removeItem(at: mergedURL)
        let merged = try merge(base: paths.base, artifact: artifact, to: mergedURL)
        say("wrote \(mergedURL.path): \(merged.merged) merged, \(merged.carried) carried bit-exact, \(merged.copied) copied tensors")
        say(modelFilesLine(merged, artifact: artifact))
    }
}
