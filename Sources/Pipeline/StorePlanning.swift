import Analysis
import ArtifactFormat
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Quantization

/// A spectrum store with its error models measured: what `plan STORE` and `compare STORE` search.
///
/// One code path for the CLI and the service: open the store, find its calibration (the file
/// recorded in the manifest unless another path is given; its fingerprint must match), run or
/// reuse the measurement pass, and build ``PlanningProblem``s for any budget.
public struct StorePlanning: Sendable {
    public let store: SpectrumStore
    public internal(set) var spectra: [MatrixSpectrum]
    public let measurement: MeasurementOptions
    /// The calibration the error models were measured on (nil for data-free stores).
    public let calibration: CalibrationSet?
    /// The objective every plan of this store minimizes and predicts.
    public let objective: ErrorObjective

    /// - Parameters:
    ///   - calibration: the calibration file; nil uses the one recorded in the store's manifest
    ///     (data-free stores need none).
    ///   - objective: what plans minimize; nil takes the strongest objective the store's statistics
    ///     support for every matrix (`paired` > `kronecker` > `activation`). A stronger objective
    ///     than the store supports is an error.
    ///   - parallelism: matrices measured at once (tables identical for every thread count).
    ///   - progress: measurement progress, (done, total, matrix name) after each matrix.
    ///   - shouldStop: checked before each matrix of the measurement pass (``QuantizationError/stopped``).
    public init(
        store url: URL, calibration: URL? = nil, measurement: MeasurementOptions = MeasurementOptions(),
        objective: ErrorObjective? = nil, parallelism: Parallelism = .serial,
        progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
    ) throws(QuantizationError) {
        do { store = try SpectrumStore(at: url) } catch { throw .store(error) }
        let set: CalibrationSet?
        do { set = try store.calibrationSet(given: calibration) } catch { throw .store(error) }
        self.measurement = measurement
        self.calibration = set
        let supported = store.manifest.supportedSensitivity
        let chosen = objective ?? supported
        guard chosen <= supported else {
            throw .invalidOption(option: "--objective", reason: "the store \(url.path) supports the \(supported.rawValue) objective at most (capture output sensitivities with `deltaplan-model capture` for more)")
        }
        self.objective = chosen
        var spectra = try measuredSpectra(store: store, calibration: set, options: measurement, parallelism: parallelism,
                                          progress: progress, shouldStop: shouldStop)
        if chosen != .activation {
            for (i, record) in store.matrices.enumerated() {
                let projection: (weights: [Double], dropped: [Double], feedback: [Double]?)?
                do { projection = try store.objectiveProjection(of: record) } catch { throw .store(error) }
                guard let projection, record.objective == chosen else {
                    throw .invalidOption(option: "--objective", reason: "\(record.name) has no \(chosen.rawValue) statistics in \(url.path)")
                }
                // With error feedback the kept segments absorb part of the dropped vectors.
                let dropped = measurement.order == .feedback ? projection.feedback ?? projection.dropped : projection.dropped
                spectra[i].sensitivity = .init(objective: chosen, vectorWeights: projection.weights, dropped: dropped)
            }
        }
        self.spectra = spectra
    }

    /// Resolves `overrides` against `store`'s matrices as its manifest lists them (names, stored
    /// ranks; every width of `measurement` taken as measured), before any measurement pass: a
    /// pattern that matches nothing, a conflict or a count beyond a stored rank is reported at
    /// once, with the error planning would give after measuring.
    public static func check(
        _ overrides: Overrides, against store: SpectrumStore, menu: [Int], measurement: MeasurementOptions,
        library: ProfileLibrary? = nil
    ) throws(OverrideError) {
        guard !overrides.isEmpty else { return }
        let records = store.matrices
        _ = try overrides.resolve(
            names: records.map(\.name), ranks: records.map { $0.storedRank ?? 0 },
            available: records.map { _ in Set(measurement.bits) }, menu: menu.filter(measurement.bits.contains), library: library)
    }

    /// The problem of planning this store under `budget`.
    public func problem(budget: Budget, storage: StorageModel, scope: Scope, menu: [Int]) -> PlanningProblem {
        let bits = budget.bits(forShapes: spectra.map { ($0.rows, $0.columns) })
        let usable = menu.filter { measurement.bits.contains($0) }
        return PlanningProblem(models: spectra.map(ErrorModel.init), storage: storage, budgetBits: bits, scope: scope, menu: usable)
    }

    /// The problem of planning this store under `budget` with pins and bits-for rules
    /// (``PlanningProblem/applying(_:library:)``; `library`: the presets of preset pins, nil the
    /// built-in ones). The budget counts every matrix, pinned ones included.
    public func problem(
        budget: Budget, storage: StorageModel, scope: Scope, menu: [Int], overrides: Overrides, library: ProfileLibrary? = nil
    ) throws(PlanningError) -> PlanningProblem {
        let problem = problem(budget: budget, storage: storage, scope: scope, menu: menu)
        guard !overrides.isEmpty else { return problem }
        do { return try problem.applying(overrides, library: library) } catch { throw .overrides(error) }
    }

    /// A plan of this store: the same bytes for the same store, budget, options, overrides and
    /// seed. Greedy and genetic plans also record their gap to the `exact` plan at the same budget.
    /// Pinned matrices get their pins and spend their bits first; the strategy plans the others
    /// with what is left (``solve(_:strategy:seed:)``).
    public func plan(
        budget: GivenBudget, storage: StorageModel, scope: Scope, menu: [Int], strategy: Strategy, seed: UInt64,
        overrides: Overrides = Overrides(), library: ProfileLibrary? = nil
    ) throws(PlanningError) -> Plan {
        let problem = try problem(budget: budget.budget, storage: storage, scope: scope, menu: menu, overrides: overrides, library: library)
        var plan = try makePlan(
            problem, strategy: strategy, seed: seed, budget: .init(given: budget.text, bits: problem.budgetBits),
            source: .init(kind: "store", name: store.url.lastPathComponent, hash: store.identity),
            toolVersion: DeltaPlanVersion.string)
        try finish(&plan, problem, strategy: strategy, seed: seed)
        return plan
    }

    /// The plan with the smallest budget whose predicted error meets `target` (in the store's
    /// objective, over every matrix, pinned ones included;
    /// ``makePlan(_:strategy:seed:target:source:toolVersion:)``), recording the target.
    public func plan(
        target: ErrorTarget, storage: StorageModel, scope: Scope, menu: [Int], strategy: Strategy, seed: UInt64,
        overrides: Overrides = Overrides(), library: ProfileLibrary? = nil
    ) throws(TargetError) -> Plan {
        var problem: PlanningProblem
        do {
            problem = try self.problem(budget: .ratio(1), storage: storage, scope: scope, menu: menu, overrides: overrides, library: library)
        } catch { throw .planning(error) }
        var plan = try makePlan(
            problem, strategy: strategy, seed: seed, target: target,
            source: .init(kind: "store", name: store.url.lastPathComponent, hash: store.identity),
            toolVersion: DeltaPlanVersion.string)
        problem.budgetBits = plan.budget.bits
        do { try finish(&plan, problem, strategy: strategy, seed: seed) } catch { throw .planning(error) }
        return plan
    }

    /// Records in `plan` how its errors were measured: the segment order and the quantizer.
    func recordMeasurement(in plan: inout Plan) {
        plan.segmentOrder = measurement.order
        plan.quantizer = measurement.quantizer
    }

    /// How the errors were measured, and for greedy and genetic the gap to `exact` at the same budget.
    private func finish(_ plan: inout Plan, _ problem: PlanningProblem, strategy: Strategy, seed: UInt64) throws(PlanningError) {
        recordMeasurement(in: &plan)
        switch strategy {
        case .greedy, .genetic: plan.recordGap(toExactError: try solve(problem, strategy: .exact, seed: seed).predictedError)
        case .preset, .exact: break
        }
    }
}

extension StorePlanning {
    /// Every strategy at every budget: storage, α, predicted error (total and by layer type), time,
    /// and the gap to `exact` at the same budget when `exact` is among the strategies.
    ///
    /// `scope`: who shares each budget; nil runs each strategy at its ``Strategy/defaultScope``
    /// (presets, `low-rank` and `greedy` per layer type as the paper does, `genetic` and `exact` globally), and every
    /// row records the scope it ran at.
    ///
    /// Baselines (``Candidate``): `low-rank` is the `preset:low-rank` plan (top vectors at 16 bits);
    /// `bitdelta` is sign(ΔW) times one scale per matrix at 1 bit per parameter whatever the budget,
    /// with the error `analyze` measured on the weights (not a plan; one row per budget for the plot).
    ///
    /// `overrides`: pins and bits-for rules every strategy's plan honours (the pinned matrices
    /// spend their bits first in every row, so rows stay comparable); `bitdelta` is not a plan and
    /// ignores them, which the comparison's notes say.
    ///
    /// - Throws: ``PlanningError/overrides(_:)`` when the rules do not fit the store's matrices
    ///   (a strategy that fails at a budget is a note, not an error).
    public func compare(
        budgets: [GivenBudget], candidates: [Candidate], storage: StorageModel, scope: Scope?, menu: [Int], seed: UInt64,
        overrides: Overrides = Overrides(), library: ProfileLibrary? = nil, clock: () -> Double
    ) throws(PlanningError) -> Comparison {
        var rows: [Comparison.Row] = [], notes: [String] = []
        // Resolved once: the matching depends on the names, ranks and menu, not on the budget or scope.
        let resolved = try problem(budget: .ratio(1), storage: storage, scope: .global, menu: menu, overrides: overrides,
                                   library: library).overrides
        if !overrides.pins.isEmpty, candidates.contains(where: { $0.strategy == nil }) {
            notes.append("bitdelta is not a plan: its rows ignore the pins (sign(ΔW) of every matrix)")
        }
        let energy = spectra.reduce(0) { $0 + $1.objectiveEnergy }
        let dense = spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
        func byType(_ errors: [Double]) -> [String: Double] {
            Dictionary(grouping: spectra.indices, by: { spectra[$0].type.rawValue }).mapValues { members in
                let e = members.reduce(0.0) { $0 + errors[$1] }, a = members.reduce(0.0) { $0 + spectra[$1].objectiveEnergy }
                return a > 0 ? e / a : 0
            }
        }
        for given in budgets {
            let (budget, text) = (given.budget, given.text)
            var problems: [Scope: PlanningProblem] = [:]
            func problem(_ scope: Scope) -> PlanningProblem {
                if let p = problems[scope] { return p }
                var p = self.problem(budget: budget, storage: storage, scope: scope, menu: menu)
                p.overrides = resolved
                problems[scope] = p
                return p
            }
            var budgetRows: [Comparison.Row] = []
            for candidate in candidates {
                let name = candidate.name, start = clock()
                guard let strategy = candidate.strategy else {  // bitdelta
                    let errors = store.matrices.map { (objective == .activation ? $0.bitDeltaError : $0.bitDeltaObjectiveError) ?? 0 }
                    let bits = spectra.reduce(0) { $0 + $1.rows * $1.columns + (storage.accounting == .artifact ? 16 : 0) }
                    budgetRows.append(.init(
                        strategy: name, budget: text, scope: nil, budgetBits: problem(.global).budgetBits,
                        storageBits: bits, alpha: Double(bits) / Double(dense),
                        predictedError: errors.reduce(0, +), predictedRelativeError: energy > 0 ? errors.reduce(0, +) / energy : 0,
                        relativeErrorByType: byType(errors), seconds: clock() - start))
                    continue
                }
                let unitScope = scope ?? strategy.defaultScope
                let problem = problem(unitScope)
                let solution: Solution
                do { solution = try solve(problem, strategy: strategy, seed: seed) } catch {
                    notes.append("\(name) at \(text): \(error.description)")
                    continue
                }
                let errors = zip(problem.models, solution.allocations).map { $0.error(of: $1) }
                budgetRows.append(.init(
                    strategy: name, budget: text, scope: unitScope, budgetBits: problem.budgetBits, storageBits: solution.storageBits,
                    alpha: Double(solution.storageBits) / Double(dense), predictedError: solution.predictedError,
                    predictedRelativeError: energy > 0 ? solution.predictedError / energy : 0,
                    relativeErrorByType: byType(errors), seconds: clock() - start))
            }
            if let exact = budgetRows.first(where: { $0.strategy == "exact" }), exact.predictedError > 0 {
                for i in budgetRows.indices where budgetRows[i].strategy != "exact" && budgetRows[i].strategy != "bitdelta" {
                    budgetRows[i].gapToExact = (budgetRows[i].predictedError - exact.predictedError) / exact.predictedError
                }
            }
            rows += budgetRows
        }
        return Comparison(title: store.url.lastPathComponent, accounting: storage.accounting, objective: objective, rows: rows, notes: notes)
    }
}
