import Foundation
import ModelProfiles

// The pieces of plan making that depend on the search API (`Strategy`, `Solution`, `solve`).

extension Plan.StrategyRecord {
    /// The record of `strategy`: its name, preset name, and numeric parameters (the genetic options'
    /// JSON fields, so new options appear without changes here).
    public init(_ strategy: Strategy, seed: UInt64) {
        switch strategy {
        case let .preset(p): self.init(name: "preset", preset: p.name, seed: seed)
        case .greedy: self.init(name: "greedy", seed: seed)
        case .exact: self.init(name: "exact", seed: seed)
        case let .genetic(options):
            var parameters: [String: Double] = [:]
            if let data = try? JSONEncoder().encode(options),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                for (key, value) in object {
                    if let n = value as? NSNumber { parameters[key] = n.doubleValue }
                }
            }
            self.init(name: "genetic", parameters: parameters, seed: seed)
        }
    }
}

extension Plan.Report {
    /// The plan report of a search report, with the exact gap computed against `error`.
    public init(_ report: SearchReport, predictedError error: Double) {
        switch report {
        case .preset: self.init()
        case let .greedy(path): self.init(greedyPath: path.map { "\($0.unit): \($0.mix), predicted error \($0.predictedError)" })
        case let .genetic(convergence, generations, evaluations):
            self.init(convergence: convergence, generations: generations, evaluations: evaluations)
        case let .exact(lowerBound):
            self.init(exactLowerBound: lowerBound, exactGap: lowerBound > 0 ? (error - lowerBound) / lowerBound : 0)
        }
    }
}

/// Solves `problem` with `strategy` and records the result as a ``Plan``.
public func makePlan(
    _ problem: PlanningProblem, strategy: Strategy, seed: UInt64, budget: Plan.BudgetRecord,
    source: Plan.Source, toolVersion: String
) throws(PlanningError) -> Plan {
    plan(of: try solve(problem, strategy: strategy, seed: seed), problem, strategy: strategy, seed: seed, budget: budget,
         source: source, toolVersion: toolVersion)
}

/// The plan of `strategy` with the smallest budget that meets `target`
/// (``solve(_:strategy:seed:target:)``); it records the target and the budget found.
public func makePlan(
    _ problem: PlanningProblem, strategy: Strategy, seed: UInt64, target: ErrorTarget,
    source: Plan.Source, toolVersion: String
) throws(TargetError) -> Plan {
    let (bits, solution) = try solve(problem, strategy: strategy, seed: seed, target: target)
    var found = problem
    found.budgetBits = bits
    return plan(of: solution, found, strategy: strategy, seed: seed,
                budget: .init(given: "max \(target)", bits: bits, target: target), source: source, toolVersion: toolVersion)
}

func plan(
    of solution: Solution, _ problem: PlanningProblem, strategy: Strategy, seed: UInt64, budget: Plan.BudgetRecord,
    source: Plan.Source, toolVersion: String
) -> Plan {
    let matrices = zip(problem.models, solution.allocations).enumerated().map { m, pair in
        let (model, a) = pair
        let s = model.spectrum, e = model.error(of: a)
        return Plan.Matrix(
            name: s.name, type: s.type, shape: [s.rows, s.columns], segments: a.segments, dense: a.isDense,
            storageBits: problem.storage.bits(of: a, rows: s.rows, columns: s.columns),
            predictedError: e, predictedRelativeError: model.relative(e),
            pin: problem.overrides.pins[m]?.pin, bits: problem.overrides.menus[m])
    }
    return Plan(
        toolVersion: toolVersion, source: source, budget: budget, storage: problem.storage, scope: problem.scope,
        strategy: .init(strategy, seed: seed), bits: problem.menu, matrices: matrices,
        objectiveEnergies: problem.models.map(\.spectrum.objectiveEnergy),
        objective: problem.models.first?.spectrum.objective ?? .activation,
        report: .init(solution.report, predictedError: solution.predictedError), overrides: problem.overrides.rules)
}
