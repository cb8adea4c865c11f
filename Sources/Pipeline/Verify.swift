import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra
import Optimizer
import Quantization

/// What a plan from a store is to meet: a budget, or a quality target (the smallest plan whose
/// predicted error meets it).
public enum PlanGoal: Sendable {
    case budget(GivenBudget)
    case target(ErrorTarget)
}

extension StorePlanning {
    /// A plan for `goal` (``plan(budget:storage:scope:menu:strategy:seed:overrides:library:)`` or
    /// ``plan(target:storage:scope:menu:strategy:seed:overrides:library:)``); with `verify`,
    /// ``verified(_:rounds:parallelism:progress:shouldStop:replan:)`` with that many rounds, each
    /// re-solve for the same goal. What `deltaplan plan STORE` and the service's plan jobs run.
    public func plan(
        _ goal: PlanGoal, storage: StorageModel, scope: Scope, menu: [Int], strategy: Strategy, seed: UInt64,
        overrides: Overrides = Overrides(), verify rounds: Int? = nil, parallelism: Parallelism = .serial,
        progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
    ) throws -> Plan {
        func solve(_ planning: StorePlanning) throws -> Plan {
            switch goal {
            case let .budget(budget):
                try planning.plan(budget: budget, storage: storage, scope: scope, menu: menu, strategy: strategy, seed: seed,
                                  overrides: overrides)
            case let .target(target):
                try planning.plan(target: target, storage: storage, scope: scope, menu: menu, strategy: strategy, seed: seed,
                                  overrides: overrides)
            }
        }
        let plan = try solve(self)
        guard let rounds else { return plan }
        return try verified(plan, rounds: rounds, parallelism: parallelism, progress: progress, shouldStop: shouldStop,
                            replan: { try? solve($0) })
    }

    /// A plan whose predicted errors are measured, not modelled (`plan --verify`): direction 4 of
    /// the error model's calibration.
    ///
    /// `plan` is quantized matrix by matrix as `compress` quantizes it (``measured(_:parallelism:progress:shouldStop:)``),
    /// then up to `rounds` times re-solved by `replan` on this store with each matrix's quantization
    /// part rescaled to its last measurement (``corrected(by:measured:)``), and each new plan measured in
    /// turn; rounds stop early when a re-solve returns a plan already measured. The plan kept is
    /// the measured one with the lowest total; its `predictedError`s and totals are its measurements
    /// and ``Plan/Report-swift.struct/verification`` records the rounds, the plans measured and the
    /// uncorrected model's prediction for its allocations. A re-solve that fails ends the rounds
    /// (the plans measured so far stand). `progress`: (done, total, matrix name), counted over
    /// `rounds` + 1 measurements.
    ///
    /// - Throws: what quantizing or measuring a matrix throws (a checkpoint moved or changed since
    ///   `analyze`, a calibration entry missing: ``ArtifactError``), or ``QuantizationError/stopped``
    ///   inside it when `shouldStop` returns true.
    public func verified(
        _ plan: Plan, rounds: Int, parallelism: Parallelism = .serial,
        progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false },
        replan: (StorePlanning) -> Plan?
    ) throws(ArtifactError) -> Plan {
        // Progress counts matrices over every round the plan may take (an early stop ends short of it).
        let count = plan.matrices.count
        func measure(_ plan: Plan, round: Int) throws(ArtifactError) -> [Double] {
            try measured(plan, parallelism: parallelism,
                         progress: { progress(round * count + $0, (rounds + 1) * count, $2) }, shouldStop: shouldStop)
        }
        var best = plan, bestErrors = try measure(plan, round: 0)
        var measuredPlans = [plan.matrices.map(\.allocation)]
        var (current, currentErrors) = (plan, bestErrors)
        var done = 0
        while done < rounds {
            guard let next = replan(corrected(by: current, measured: currentErrors)) else { break }
            let allocations = next.matrices.map(\.allocation)
            if measuredPlans.contains(allocations) { break }
            done += 1
            let errors = try measure(next, round: done)
            measuredPlans.append(allocations)
            if errors.reduce(0, +) < bestErrors.reduce(0, +) { (best, bestErrors) = (next, errors) }
            (current, currentErrors) = (next, errors)
        }
        let model = zip(spectra, best.matrices).reduce(0.0) { $0 + ErrorModel($1.0).error(of: $1.1.allocation) }
        let energy = spectra.reduce(0.0) { $0 + $1.objectiveEnergy }
        for i in best.matrices.indices {
            best.matrices[i].predictedError = bestErrors[i]
            best.matrices[i].predictedRelativeError = spectra[i].objectiveEnergy > 0 ? bestErrors[i] / spectra[i].objectiveEnergy : 0
        }
        let total = bestErrors.reduce(0, +)
        best.totals.predictedError = total
        best.totals.predictedRelativeError = energy > 0 ? total / energy : 0
        best.report.verification = .init(rounds: done, plansMeasured: measuredPlans.count, modelPredictedError: model,
                                         modelPredictedRelativeError: energy > 0 ? model / energy : 0)
        return best
    }

    /// This store with each planned matrix's measured quantization errors eᵢ(k) rescaled, at every
    /// width, by c = (measured − predicted dropped part) / predicted quantized part of `plan`'s
    /// allocation (clamped to [¼, 4]; matrices with nothing quantized keep their tables), so that
    /// the error model predicts exactly what was measured for that allocation.
    public func corrected(by plan: Plan, measured: [Double]) -> StorePlanning {
        var out = self
        for (i, m) in plan.matrices.enumerated() where !m.dense && !m.segments.isEmpty {
            let model = ErrorModel(spectra[i])
            let a = m.allocation
            let quantized = model.error(of: a) - model.droppedError(from: a.rank)
            guard quantized > 0 else { continue }
            let c = min(4, max(0.25, (measured[i] - model.droppedError(from: a.rank)) / quantized))
            out.spectra[i].relativeQuantizationError = spectra[i].relativeQuantizationError.mapValues { $0.map { $0 * c } }
        }
        return out
    }

    /// Each of `plan`'s matrices quantized as `compress` quantizes it (this store's measurement
    /// method, segment order, group size and damping; a dense matrix rounded to F16), and the
    /// error of ΔŴ against the checkpoints' ΔW = W_ft − W_base measured in this store's objective
    /// with its calibration, as `evaluate` measures an artifact's: the relative error L(ΔW − ΔŴ) / L(ΔW)
    /// that `evaluate` reports, in the error model's units (times the store's energy of ΔW; the
    /// activation error over a file's sample rows and the model's over its Gram differ in scale).
    /// The checkpoints are the store's recorded inputs, checked against its fingerprints.
    /// `progress`: (done, total, matrix name).
    public func measured(
        _ plan: Plan, parallelism: Parallelism = .serial,
        progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
    ) throws(ArtifactError) -> [Double] {
        precondition(plan.matrices.map(\.name) == spectra.map(\.name), "a plan of another store")
        let recorded = store.manifest.inputs
        let base = try openCheckpoint(URL(fileURLWithPath: recorded.base.path))
        let finetuned = try openCheckpoint(URL(fileURLWithPath: recorded.finetuned.path))
        try verifyInput(base, path: recorded.base.path, against: recorded.base, role: "base", checkModified: true)
        try verifyInput(finetuned, path: recorded.finetuned.path, against: recorded.finetuned, role: "fine-tuned", checkModified: true)
        let (spectrumStore, calibration, options, objective) = (store, calibration, measurement, objective)
        let records = plan.matrices.map { spectrumStore.record(named: $0.name)! }
        let energies = spectra.map(\.objectiveEnergy)
        let hessians = HessianCache(capacity: 2 + parallelism.threads)
        var errors = [Double](repeating: 0, count: plan.matrices.count)
        var done = 0
        let outcome = runConcurrently(
            count: plan.matrices.count, parallelism: parallelism,
            estimate: { i in
                let (rows, columns, r) = (records[i].rows, records[i].columns, records[i].storedRank ?? 0)
                return 4 * (4 * rows * columns + 2 * columns * columns + 2 * r * (rows + columns))
            },
            shouldStop: shouldStop,
            body: { i in
                Result { () throws(ArtifactError) in
                    let m = plan.matrices[i], record = records[i]
                    let delta = try trueDelta(m.name, base: base, finetuned: finetuned, rows: record.rows, columns: record.columns)
                    let entry: String?, approximation: Matrix<Float>
                    if m.dense {
                        entry = quantizationEntry(record, store: spectrumStore)
                        approximation = delta.map { Float(Float16($0)) }
                    } else {
                        var segments: [QuantizedSegment] = []
                        entry = try quantizeMatrix(m, record: record, store: spectrumStore, calibration: calibration, method: options.method,
                                                   order: options.order, groupSize: options.groupSize, dampening: options.dampening,
                                                   hessians: hessians) { _, q in segments.append(q) }.entry
                        approximation = reconstruct(segments, rows: record.rows, columns: record.columns)
                    }
                    let measures = try ErrorMeasures(matrix: m.name, entry: entry, calibration: calibration,
                                                     sensitivityObjective: objective == .activation ? nil : objective)
                    let energy = measures.norm(objective, of: delta)
                    return energy > 0 ? measures.error(objective, of: approximation, against: delta) / energy * energies[i] : 0
                }
            },
            finished: { i, error in
                errors[i] = error
                done += 1
                progress(done, plan.matrices.count, plan.matrices[i].name)
            })
        switch outcome {
        case .completed: return errors
        case .stopped: throw .quantization(.stopped)
        case let .failed(_, error): throw error
        }
    }
}
