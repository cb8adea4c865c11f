import Analysis
import ArtifactFormat
import Foundation
import ModelProfiles
import Optimizer
@testable import Pipeline
import Quantization
import Testing

/// `plan --verify`: a verified plan's predictions are what `evaluate` measures of its artifact.
@Suite struct VerifyTests {
    static func planning(_ dir: URL) throws -> (SyntheticPair.Paths, URL, SpectrumStore, StorePlanning) {
        let (paths, calibration, store) = try ObjectivePlanningTests.pairedStore(dir)
        return (paths, calibration, store, try StorePlanning(store: store.url))
    }

    static func exact(_ planning: StorePlanning) throws -> Plan {
        try planning.plan(budget: try GivenBudget(parsing: "1/8"), storage: StorageModel(), scope: .global,
                          menu: [16, 8, 4, 3, 2], strategy: .exact, seed: 0)
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-verify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test(arguments: [ErrorObjective.paired, .activation])
    func verifiedPredictionsAreWhatEvaluateMeasures(objective: ErrorObjective) throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (paths, calibrationURL, store, _) = try Self.planning(dir)
        let planning = try StorePlanning(store: store.url, objective: objective)
        let plan = try Self.exact(planning)
        let verified = try planning.verified(plan, rounds: 2, replan: { try? Self.exact($0) })
        let verification = try #require(verified.report.verification)
        #expect(verification.plansMeasured == verification.rounds + 1 && verification.rounds <= 2)

        let calibration = try CalibrationSet(url: calibrationURL)
        let artifactURL = dir.appendingPathComponent("artifact")
        try compress(store: store, plan: verified, calibration: calibration, options: CompressionOptions(toolVersion: "test"), to: artifactURL)
        let report = try evaluate(artifact: try Artifact(at: artifactURL), base: paths.base, finetuned: paths.finetuned,
                                  calibration: calibration, store: store)
        // Per matrix, the verified relative error is evaluate's actual one in the plan's objective
        // (the activation error over the file's sample rows, the paired L(E)); the absolute error
        // is in the error model's units (the store's energy of ΔW).
        for (row, m) in zip(report.matrices, verified.matrices) {
            let actual = objective == .activation ? row.plan.relativeActivationError : try #require(row.plan.objectiveError) / row.objectiveEnergy!
            let predicted = try #require(m.predictedRelativeError)
            #expect(abs(actual - predicted) <= 1e-4 * max(actual, 1e-12), "\(m.name): evaluate \(actual), verified \(predicted)")
            let energy = try #require(planning.spectra.first { $0.name == m.name }?.objectiveEnergy)
            #expect(abs(m.predictedError! - predicted * energy) <= 1e-9 * max(m.predictedError!, 1e-12))
        }
        if objective == .paired {
            let ratio = try #require(report.total.actualOverPredicted)
            #expect(abs(ratio - 1) < 1e-4, "actual/predicted \(ratio)")
        }
        // The error model's own prediction for the kept allocations is recorded beside the measurement.
        let model = zip(planning.spectra, verified.matrices).reduce(0.0) { $0 + ErrorModel($1.0).error(of: $1.1.allocation) }
        #expect(abs(verification.modelPredictedError - model) <= 1e-9 * model)
        // Keeping the lowest measured plan: never worse than the plan it started from.
        let first = try planning.measured(plan).reduce(0, +)
        #expect(verified.totals.predictedError! <= first * (1 + 1e-12))
        if verification.rounds == 0 { #expect(verified.matrices.map(\.allocation) == plan.matrices.map(\.allocation)) }
        // The quantizer it was measured with is recorded; compressing with another is warned about
        // (not for a plan that records none: written before it was recorded).
        #expect(verified.quantizer == planning.measurement.quantizer && plan.quantizer == planning.measurement.quantizer)
        #expect(quantizerWarning(plan: verified, method: planning.measurement.method, dampening: planning.measurement.dampening) == nil)
        let other = try #require(quantizerWarning(plan: verified, method: .rtn, dampening: planning.measurement.dampening))
        #expect(other.contains("measured with gptq") && other.contains("compressed with rtn"), "\(other)")
        #expect(quantizerWarning(plan: plan, method: .gptq, dampening: 0.1) != nil)
        var old = plan
        old.quantizer = nil
        #expect(quantizerWarning(plan: old, method: .rtn, dampening: 0.1) == nil)
    }

    @Test func roundsStopWhenAReSolveRepeatsAMeasuredPlan() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, _, _, planning) = try Self.planning(dir)
        let plan = try Self.exact(planning)
        var calls = 0
        let same = try planning.verified(plan, rounds: 5, replan: { _ in calls += 1; return plan })
        #expect(calls == 1 && same.report.verification?.rounds == 0 && same.report.verification?.plansMeasured == 1)
        #expect(same.matrices.map(\.allocation) == plan.matrices.map(\.allocation))
        // A re-solve that fails ends the rounds; the first plan's measurement stands.
        let failed = try planning.verified(plan, rounds: 5, replan: { _ in nil })
        #expect(failed.report.verification?.rounds == 0)
        #expect(failed.totals.predictedError == same.totals.predictedError)
        // Measuring is deterministic: the same plan measures the same, bit for bit.
        #expect(try planning.measured(plan) == planning.measured(plan))
    }

    /// `plan(_:…verify:)`, what the CLI and the service run: the goal's plan, verified for the same goal.
    @Test func aGoalIsPlannedThenVerified() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, _, _, planning) = try Self.planning(dir)
        let target = ErrorTarget(error: 0.05, unit: .relative)
        let plain = try planning.plan(.target(target), storage: StorageModel(), scope: .global, menu: BitMenu.default, strategy: .exact, seed: 0)
        #expect(plain == (try planning.plan(target: target, storage: StorageModel(), scope: .global, menu: BitMenu.default,
                                            strategy: .exact, seed: 0)))
        #expect(plain.report.verification == nil)
        let verified = try planning.plan(.target(target), storage: StorageModel(), scope: .global, menu: BitMenu.default, strategy: .exact,
                                         seed: 0, verify: 0)
        #expect(verified == (try planning.verified(plain, rounds: 0, replan: { _ in nil })))
        #expect(verified.report.verification?.plansMeasured == 1)
    }

    @Test func correctedTablesPredictTheMeasurement() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, _, _, planning) = try Self.planning(dir)
        let plan = try Self.exact(planning)
        let measured = try planning.measured(plan)
        let corrected = planning.corrected(by: plan, measured: measured)
        var checked = 0
        for (i, m) in plan.matrices.enumerated() where !m.dense && !m.segments.isEmpty {
            let before = ErrorModel(planning.spectra[i]), after = ErrorModel(corrected.spectra[i])
            let dropped = before.droppedError(from: m.allocation.rank)
            let quantized = before.error(of: m.allocation) - dropped
            let c = (measured[i] - dropped) / quantized
            // Inside the clamp the corrected model predicts the measurement; outside it, the clamp's end.
            let expected = dropped + quantized * min(4, max(0.25, c))
            #expect(abs(after.error(of: m.allocation) - expected) <= 1e-9 * expected, "\(m.name)")
            #expect(after.droppedError(from: m.allocation.rank) == dropped)
            if (0.25...4).contains(c) { checked += 1 }
        }
        #expect(checked > 0)
    }
}
