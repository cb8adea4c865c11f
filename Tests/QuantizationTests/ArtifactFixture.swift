import Analysis
import Checkpoint
import Foundation
import ModelProfiles
import Optimizer
import Quantization

/// One synthetic Llama-2-7B-shaped pair (1/16 scale, one layer), analyzed, with an `exact` and a
/// `preset:delta-come` plan at the paper's α = 1/16 (global scope, artifact accounting) built through the
/// library exactly as the CLI does, each compressed. Built once and shared by the artifact tests
/// (they only read it; tests that damage an artifact work on a copy).
struct ArtifactFixture: Sendable {
    let directory: URL
    let paths: SyntheticPair.Paths
    let store: SpectrumStore
    let calibration: CalibrationSet
    let exactPlan: Plan
    let presetPlan: Plan
    let exactArtifact: URL
    let presetArtifact: URL

    /// The paper's α. At 1/16 scale (256 × 256, 688 × 256 matrices) `delta-come`'s fixed segments
    /// (2 @ 8 bits, 32 @ 3 bits) and their group metadata fit it; at 1/32 scale they would not.
    static let budget = "1/16"

    static let shared: Result<ArtifactFixture, any Error> = Result { try ArtifactFixture() }

    static func get() throws -> ArtifactFixture { try shared.get() }

    private init() throws {
        directory = try Self.makeDirectory()
        let library = try ProfileLibrary.builtIn()
        let profile = try library.model(named: "llama-2-7b").scaled(by: 1.0 / 16, layers: 1)
        paths = try SyntheticPair(profile: profile, seed: 1, tokens: 256, sampleRows: 256).write(to: directory)
        store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                             options: AnalysisOptions(), store: directory.appendingPathComponent("store")).run()
        calibration = try CalibrationSet(url: paths.calibration)
        let spectra = try measuredSpectra(store: store, calibration: calibration, options: MeasurementOptions())
        let budget = try Budget(parsing: Self.budget)
        let bits = budget.bits(forShapes: spectra.map { ($0.rows, $0.columns) })
        let problem = PlanningProblem(models: spectra.map(ErrorModel.init), storage: StorageModel(), budgetBits: bits,
                                      scope: .global, menu: [16, 8, 4, 3, 2, 1])
        let source = Plan.Source(kind: "store", name: "store", hash: store.identity)
        let record = Plan.BudgetRecord(given: Self.budget, bits: bits)
        exactPlan = try makePlan(problem, strategy: .exact, seed: 0, budget: record, source: source, toolVersion: "test")
        presetPlan = try makePlan(problem, strategy: .preset(try library.preset(named: "delta-come")), seed: 0, budget: record,
                                  source: source, toolVersion: "test")
        exactArtifact = directory.appendingPathComponent("exact.artifact")
        presetArtifact = directory.appendingPathComponent("preset.artifact")
        try compress(store: store, plan: exactPlan, calibration: calibration, options: CompressionOptions(toolVersion: "test"),
                     to: exactArtifact)
        try compress(store: store, plan: presetPlan, calibration: calibration, options: CompressionOptions(toolVersion: "test"),
                     to: presetArtifact)
    }

    /// `deltaplan-artifact-<pid>` in the temporary directory. A static fixture has no teardown, so
    /// each run first removes the fixtures of test processes that are no longer running.
    private static func makeDirectory() throws -> URL {
        let fm = FileManager.default
        let prefix = "deltaplan-artifact-"
        for name in (try? fm.contentsOfDirectory(atPath: fm.temporaryDirectory.path)) ?? [] where name.hasPrefix(prefix) {
            if let pid = Int32(name.dropFirst(prefix.count)), pid != getpid(), kill(pid, 0) == 0 { continue }
            try? fm.removeItem(at: fm.temporaryDirectory.appendingPathComponent(name))
        }
        let directory = fm.temporaryDirectory.appendingPathComponent(prefix + String(getpid()))
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    func evaluation(_ artifact: URL) throws -> EvaluationReport {
        try evaluate(artifact: try Artifact(at: artifact), base: paths.base, finetuned: paths.finetuned,
                     calibration: calibration, store: store)
    }

    /// A fresh copy of an artifact directory to damage.
    func copy(_ artifact: URL, as name: String) throws -> URL {
        let target = url(name)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.copyItem(at: artifact, to: target)
        return target
    }
}
