// ============================================================================================
// TEMPORARY — DELETE AT MERGE. Stand-ins for the `search` branch's Sources/Optimizer/Search/ API
// (Strategy, GeneticOptions, Solution, SearchReport, GreedyStage, solve), so that the `planio`
// branch compiles before that branch lands. `solve` here handles presets ONLY.
// ============================================================================================
import ModelProfiles

public enum Strategy: Sendable, Equatable { case preset(PrecisionPreset), greedy, genetic(GeneticOptions), exact }

public struct GeneticOptions: Sendable, Equatable, Codable {
    public var population: Int
    public var generations: Int
    public init(population: Int = 64, generations: Int = 100) {
        self.population = population
        self.generations = generations
    }
}

public struct GreedyStage: Sendable, Equatable {}

public enum SearchReport: Sendable, Equatable {
    case preset, greedy(path: [GreedyStage]), genetic(convergence: [Double], generations: Int, evaluations: Int)
    case exact(lowerBound: Double)
}

public struct Solution: Sendable {
    public var allocations: [Allocation]
    public var predictedError: Double
    public var storageBits: Int
    public var report: SearchReport
}

public func solve(_ problem: PlanningProblem, strategy: Strategy, seed: UInt64) throws(PlanningError) -> Solution {
    guard case let .preset(preset) = strategy else {
        preconditionFailure("temporary solve handles presets only; the search branch provides the rest")
    }
    var allocations = [Allocation](repeating: .empty, count: problem.models.count)
    for unit in problem.units {
        let shapes = unit.members.map { i in
            let s = problem.models[i].spectrum
            return MatrixShape(name: s.name, type: s.type, rows: s.rows, columns: s.columns, maxRank: s.storedRank)
        }
        let result = try preset.allocations(for: shapes, budgetBits: unit.budgetBits, storage: problem.storage, unit: unit.name)
        for (i, a) in zip(unit.members, result) { allocations[i] = a }
    }
    return Solution(allocations: allocations, predictedError: problem.predictedError(allocations),
                    storageBits: problem.storageBits(allocations), report: .preset)
}
