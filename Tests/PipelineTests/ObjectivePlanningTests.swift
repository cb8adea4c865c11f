import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Pipeline
import Testing

/// Planning and evaluating under the paired sensitivity objective: the store's strongest objective
/// is the default, plans record it, and `evaluate` measures the actual error in the same objective.
@Suite struct ObjectivePlanningTests {
    /// A synthetic pair whose calibration has paired gradient rows for every module (aliased ones
    /// included), analyzed into a store.
    static func pairedStore(_ dir: URL) throws -> (SyntheticPair.Paths, URL, SpectrumStore) {
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let paths = try SyntheticPair(profile: profile, seed: 3, tokens: 200, sampleRows: 160).write(to: dir)
        let v1 = try CalibrationSet(url: paths.calibration)
        let g = SeededGenerator(seed: 9)
        let finetuned = try Checkpoint(at: paths.finetuned)
        func grads(_ module: String, rows: Int) throws -> Matrix<Float> {
            Matrix<Float>.gaussian(rows: try finetuned.tensor(module + ".weight").info.shape[0], columns: rows, using: g)
        }
        let entries = try v1.entryNames.map { entry in
            let x = try #require(try v1.inputs(ofEntry: entry))
            return CalibrationEntry(module: entry, gram: try v1.gram(ofEntry: entry), tokenCount: v1.tokenCount(ofEntry: entry),
                                    inputs: x, grads: try grads(entry, rows: x.columns))
        }
        let outputs = try v1.aliases.keys.sorted().map { module in
            CalibrationOutputs(module: module, grads: try grads(module, rows: 160))
        }
        let calibration = dir.appendingPathComponent("paired.safetensors")
        try CalibrationSet.write(entries, outputs: outputs, aliases: v1.aliases,
                                 metadata: CalibrationMetadata(probes: 1, objective: .hiddenGaussNewton), to: calibration)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: calibration,
                                 options: AnalysisOptions(), store: dir.appendingPathComponent("store")).run()
        return (paths, calibration, store)
    }

    @Test func pairedObjectiveIsPlannedCompressedAndEvaluated() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-objective-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (paths, calibrationURL, store) = try Self.pairedStore(dir)
        let planning = try StorePlanning(store: store.url)
        #expect(planning.objective == .paired)
        let budget = try GivenBudget(parsing: "1/8")
        let plan = try planning.plan(budget: budget, storage: StorageModel(), scope: .global,
                                     menu: [16, 8, 4, 3, 2], strategy: .exact, seed: 0)
        #expect(plan.objective == .paired)
        // The plan's relative error is Σ predicted / Σ L(ΔW) in the paired objective.
        let energies = store.matrices.map { $0.objectiveEnergy! }
        let predicted = plan.matrices.reduce(0) { $0 + $1.predictedError! }
        #expect(abs(plan.totals.predictedRelativeError! - predicted / energies.reduce(0, +)) < 1e-12)
        for (m, e) in zip(plan.matrices, energies) { #expect(abs(m.predictedRelativeError! - m.predictedError! / e) < 1e-12) }

        // The activation objective stays selectable, and is what a plan of it records.
        let activation = try StorePlanning(store: store.url, objective: .activation)
        let activationPlan = try activation.plan(budget: budget, storage: StorageModel(), scope: .global,
                                                 menu: [16, 8, 4, 3, 2], strategy: .exact, seed: 0)
        #expect(activationPlan.objective == .activation)
        #expect(activationPlan.totals.predictedRelativeError != plan.totals.predictedRelativeError)

        // Compress and evaluate: the actual paired error of each matrix, recomputed here in Float64
        // from the artifact's reconstruction, the checkpoints and the calibration's paired rows.
        let calibration = try CalibrationSet(url: calibrationURL)
        let artifactURL = dir.appendingPathComponent("artifact")
        try compress(store: store, plan: plan, calibration: calibration, options: CompressionOptions(toolVersion: "test"), to: artifactURL)
        let artifact = try Artifact(at: artifactURL)
        let report = try evaluate(artifact: artifact, base: paths.base, finetuned: paths.finetuned, calibration: calibration, store: store)
        #expect(report.objective == .paired)
        let base = try Checkpoint(at: paths.base), finetuned = try Checkpoint(at: paths.finetuned)
        for (row, record) in zip(report.matrices, artifact.manifest.matrices) {
            let (x32, g32) = try #require(try calibration.pairedSamples(ofModule: Selection.moduleName(of: row.name)))
            let x = Matrix<Double>(x32), gs = Matrix<Double>(g32)
            let scale = Double(calibration.tokenCount(ofEntry: calibration.entry(for: Selection.moduleName(of: row.name))!)) / Double(x.columns)
            let b = try base.doubles(row.name), f = try finetuned.doubles(row.name)
            let hat = Matrix<Double>(try artifact.reconstruction(of: record))
            let (rows, columns) = (row.shape[0], row.shape[1])
            let e = Matrix<Double>(rows: rows, columns: columns) { i, j in f[i * columns + j] - b[i * columns + j] - hat[i, j] }
            let ex = try multiply(e, x)
            let direct = scale * (0..<x.columns).reduce(0.0) { sum, t in
                let c = (0..<rows).reduce(0.0) { $0 + gs[$1, t] * ex[$1, t] }
                return sum + c * c
            }
            let actual = try #require(row.plan.objectiveError)
            #expect(abs(actual - direct) <= 1e-3 * max(direct, 1e-12) + 1e-6 * row.objectiveEnergy!, "\(row.name): \(actual) vs \(direct)")
        }
        let total = report.total
        let ratio = try #require(total.actualOverPredicted)
        #expect(total.planObjectiveRelativeError! > 0 && total.planObjectiveRelativeError! < 1)
        // The additive model ignores cross terms between quantization errors: close, not exact.
        #expect(ratio > 0.6 && ratio < 1.6, "actual/predicted \(ratio)")
        #expect(total.bitDeltaObjectiveRelativeError! > 0 && total.lowRankObjectiveRelativeError! > 0)

        // A plan of the activation objective is still measured in the store's paired objective (so
        // plans made under either compare), while actual/predicted stays in its own objective.
        let activationURL = dir.appendingPathComponent("activation-artifact")
        try compress(store: store, plan: activationPlan, calibration: calibration, options: CompressionOptions(toolVersion: "test"),
                     to: activationURL)
        let other = try evaluate(artifact: try Artifact(at: activationURL), base: paths.base, finetuned: paths.finetuned,
                                 calibration: calibration, store: store)
        #expect(other.objective == .activation && other.sensitivityObjective == .paired)
        let otherTotal = other.total
        #expect(otherTotal.planObjectiveRelativeError != nil)
        #expect(abs(otherTotal.actualOverPredicted! - otherTotal.planRelativeError / otherTotal.predictedRelativeError!) < 1e-12)
        #expect(report.sensitivityObjective == .paired)
    }

    @Test func aStrongerObjectiveThanTheStoreSupportsIsRefused() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-objective-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let paths = try SyntheticPair(profile: profile, seed: 3).write(to: dir)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir.appendingPathComponent("store")).run()
        #expect(try StorePlanning(store: store.url).objective == .activation)
        #expect {
            try StorePlanning(store: store.url, objective: .paired)
        } throws: { error in
            "\(error)".contains("--objective") && "\(error)".contains("activation objective at most")
        }
    }
}
