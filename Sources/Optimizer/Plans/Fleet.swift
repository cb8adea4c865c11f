import ModelProfiles

/// One fine-tune of a fleet: its matrices' spectra (with their error model) and what its quality
/// is worth against the others.
public struct FleetMember: Sendable {
    public var name: String
    public var spectra: [MatrixSpectrum]
    /// w_m ≥ 0 (e.g. a traffic share); the fleet minimises Σ w_m · relative error_m.
    public var weight: Double
    /// What its plan records as its source (the store).
    public var source: Plan.Source

    public init(name: String, spectra: [MatrixSpectrum], weight: Double = 1, source: Plan.Source) {
        precondition(weight >= 0 && weight.isFinite, "a fleet weight is finite and not negative")
        self.name = name
        self.spectra = spectra
        self.weight = weight
        self.source = source
    }

    /// Σ objective energies: the error of dropping this member's whole delta.
    public var energy: Double { spectra.reduce(0) { $0 + $1.objectiveEnergy } }
}

/// A fleet's plans: one per member, each in the ordinary plan format (consumable by `compress`),
/// and the summary written as `fleet.json`.
public struct FleetPlan: Sendable {
    public var plans: [Plan]
    public var summary: FleetSummary
}

/// `fleet.json`: the shared budget, and per member its storage, α, prediction and weight.
public struct FleetSummary: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var budget: Plan.BudgetRecord
    public var strategy: Plan.StrategyRecord
    public var accounting: Accounting
    public var groupSize: Int
    /// Σ w_m · relative error_m, the objective the fleet minimises.
    public var weightedRelativeError: Double
    public var storageBits: Int
    public var members: [Member]

    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var weight: Double
        public var storageBits: Int
        public var denseBits: Int
        public var alpha: Double
        public var predictedError: Double
        public var predictedRelativeError: Double
    }
}

extension MatrixSpectrum {
    /// The same matrix with every error scaled by `factor` (every energy multiplied, singular
    /// values and relative quantization errors unchanged): ``ErrorModel`` errors scale exactly.
    func scaled(by factor: Double) -> MatrixSpectrum {
        var s = self
        s.inputEnergy = inputEnergy.map { $0 * factor }
        s.activationEnergy *= factor
        s.droppedWeights = droppedWeights?.map { $0 * factor }
        if let sensitivity {
            s.sensitivity = .init(objective: sensitivity.objective, vectorWeights: sensitivity.vectorWeights.map { $0 * factor },
                                  dropped: sensitivity.dropped.map { $0 * factor })
        }
        return s
    }
}

/// Plans several fine-tunes of one base under one shared budget.
///
/// - Searches (`exact`, `genetic`, `greedy`): one problem over every member's matrices, each
///   member's errors scaled by w_m / E_m (E_m: the error of dropping its delta), so the search
///   minimises Σ w_m · relative error_m over all of them at once, under `budget` resolved over all
///   their matrices (global scope: matrices of any member compete for the same bits).
/// - Presets: every member planned alone at the same α (the budget's bits over the fleet's dense
///   bits, each member's share ⌊α · dense_m⌋, per type as the paper): the baseline a fleet plan
///   must beat.
///
/// Each member's plan carries its own (unscaled) predictions, and its budget record is its share:
/// the bits the fleet gave it (`given`: `fleet share of B`). Deterministic for a seed.
public func planFleet(
    _ members: [FleetMember], budget: GivenBudget, storage: StorageModel, menu: [Int], strategy: Strategy, seed: UInt64,
    toolVersion: String
) throws(PlanningError) -> FleetPlan {
    precondition(!members.isEmpty, "a fleet has members")
    let all = members.flatMap(\.spectra)
    let budgetBits = budget.budget.bits(forShapes: all.map { ($0.rows, $0.columns) })
    let dense = all.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
    var plans: [Plan] = []
    if case .preset = strategy {
        let alpha = dense > 0 ? Double(budgetBits) / Double(dense) : 0
        for member in members {
            let problem = PlanningProblem(
                models: member.spectra.map(ErrorModel.init), storage: storage,
                budgetBits: Int((alpha * Double(member.spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) })).rounded(.down)),
                scope: strategy.defaultScope, menu: menu)
            plans.append(try makePlan(problem, strategy: strategy, seed: seed,
                                      budget: .init(given: "fleet share of \(budget.text)", bits: problem.budgetBits),
                                      source: member.source, toolVersion: toolVersion))
        }
    } else {
        let scaled = members.flatMap { m in
            let energy = m.energy
            return m.spectra.map { $0.scaled(by: energy > 0 ? m.weight / energy : 0) }
        }
        let problem = PlanningProblem(models: scaled.map(ErrorModel.init), storage: storage, budgetBits: budgetBits,
                                      scope: .global, menu: menu)
        let solution = try solve(problem, strategy: strategy, seed: seed)
        var offset = 0
        for member in members {
            let count = member.spectra.count
            let allocations = Array(solution.allocations[offset..<(offset + count)])
            offset += count
            let own = PlanningProblem(models: member.spectra.map(ErrorModel.init), storage: storage, budgetBits: 0,
                                      scope: .global, menu: menu)
            var share = own
            share.budgetBits = own.storageBits(allocations)
            plans.append(plan(
                of: Solution(allocations: allocations, predictedError: own.predictedError(allocations),
                             storageBits: share.budgetBits, report: .preset),
                share, strategy: strategy, seed: seed,
                budget: .init(given: "fleet share of \(budget.text)", bits: share.budgetBits),
                source: member.source, toolVersion: toolVersion))
        }
    }
    let rows = zip(members, plans).map { member, plan in
        FleetSummary.Member(
            name: member.name, weight: member.weight, storageBits: plan.totals.storageBits, denseBits: plan.totals.denseBits,
            alpha: plan.totals.alpha, predictedError: plan.totals.predictedError ?? 0,
            predictedRelativeError: plan.totals.predictedRelativeError ?? 0)
    }
    let summary = FleetSummary(
        formatVersion: FleetSummary.currentFormatVersion, budget: .init(given: budget.text, bits: budgetBits),
        strategy: .init(strategy, seed: seed), accounting: storage.accounting, groupSize: storage.groupSize,
        weightedRelativeError: rows.reduce(0) { $0 + $1.weight * $1.predictedRelativeError },
        storageBits: rows.reduce(0) { $0 + $1.storageBits }, members: rows)
    return FleetPlan(plans: plans, summary: summary)
}
