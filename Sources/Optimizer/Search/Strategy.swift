import ModelProfiles

/// How ``solve(_:strategy:seed:)`` searches for an allocation.
public enum Strategy: Sendable, Equatable {
    /// A fixed mix (the paper's form): per budget unit, the same counts for every member, the
    /// last segment filled as far as the unit's budget allows.
    case preset(PrecisionPreset)
    /// The paper's §5.1 staged search made automatic: best single precision, then add a second
    /// width, then a third, while the predicted error improves. Counts are shared per unit.
    case greedy
    /// A genetic algorithm over per-matrix counts per bit-width (the paper's Appendix B).
    case genetic(GeneticOptions)
    /// The optimum under the error model (Lagrangian relaxation with a proven lower bound; an
    /// exact multiple-choice knapsack on tiny problems).
    case exact
}

extension Strategy {
    /// The scope a strategy runs at when none is given: a preset is a per-layer-type rule (the
    /// paper's released script keeps one set of counts per type), so `type`, and so is `greedy`,
    /// the paper's staged search over such rules (globally it would give a 384×384 and a
    /// 1536×384 matrix the same counts); `genetic` and `exact` exist to move bits to where they
    /// help most, so `global` (one budget for the model).
    public var defaultScope: Scope {
        switch self {
        case .preset, .greedy: .type
        case .genetic, .exact: .global
        }
    }
}

/// Settings of the genetic search. The defaults reach within 1% of `exact` on a
/// Llama-2-7B-shaped problem (224 matrices, 6 widths) in a few seconds (see BENCHMARKS.md).
public struct GeneticOptions: Sendable, Equatable, Codable {
    /// Individuals per generation (values below 2 count as 2).
    public var population: Int
    /// Most generations to run.
    public var generations: Int
    /// Individuals drawn per tournament (≥ 1); the fittest of them becomes a parent.
    public var tournamentSize: Int
    /// Probability that a child mixes its parents' matrices (uniform crossover per matrix);
    /// otherwise it copies its first parent.
    public var crossoverRate: Double
    /// Probability per matrix that a child's counts of that matrix are mutated.
    public var mutationRate: Double
    /// The best individuals copied unchanged into the next generation (at most population − 1).
    public var elitism: Int
    /// Early stopping: generations without improvement of the best fitness before stopping.
    public var patience: Int
    /// Most improving exchanges (trim one matrix, fill another) the repair makes per child.
    public var exchangesPerChild: Int

    public init(
        population: Int = 12, generations: Int = 50, tournamentSize: Int = 3,
        crossoverRate: Double = 0.9, mutationRate: Double = 0.03, elitism: Int = 2,
        patience: Int = 15, exchangesPerChild: Int = 32
    ) {
        self.population = population
        self.generations = generations
        self.tournamentSize = tournamentSize
        self.crossoverRate = crossoverRate
        self.mutationRate = mutationRate
        self.elitism = elitism
        self.patience = patience
        self.exchangesPerChild = exchangesPerChild
    }

    private enum CodingKeys: String, CodingKey {
        case population, generations, tournamentSize, crossoverRate, mutationRate, elitism, patience
        case exchangesPerChild
    }

    /// Decodes the fields present; missing ones keep their defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GeneticOptions()
        self.init(
            population: try c.decodeIfPresent(Int.self, forKey: .population) ?? d.population,
            generations: try c.decodeIfPresent(Int.self, forKey: .generations) ?? d.generations,
            tournamentSize: try c.decodeIfPresent(Int.self, forKey: .tournamentSize) ?? d.tournamentSize,
            crossoverRate: try c.decodeIfPresent(Double.self, forKey: .crossoverRate) ?? d.crossoverRate,
            mutationRate: try c.decodeIfPresent(Double.self, forKey: .mutationRate) ?? d.mutationRate,
            elitism: try c.decodeIfPresent(Int.self, forKey: .elitism) ?? d.elitism,
            patience: try c.decodeIfPresent(Int.self, forKey: .patience) ?? d.patience,
            exchangesPerChild: try c.decodeIfPresent(Int.self, forKey: .exchangesPerChild) ?? d.exchangesPerChild)
    }
}

/// One stage of the greedy search in one budget unit: the mix it settled on and its error.
public struct GreedyStage: Sendable, Equatable {
    /// The budget unit (``PlanningProblem/Unit/name``).
    public var unit: String
    /// The mix, highest width first; the last segment (count `nil`) fills the budget.
    public var segments: [PrecisionPreset.Segment]
    /// Predicted error summed over the unit's members.
    public var predictedError: Double

    /// "8×2 + 3×32 + 2" style: fixed counts, then the filling width.
    public var mix: String {
        segments.map { s in s.count.map { "\(s.bits)×\($0)" } ?? "\(s.bits)" }.joined(separator: " + ")
    }
}

/// How a solution was found.
public enum SearchReport: Sendable, Equatable {
    case preset
    /// The stages of every unit, in unit order; within a unit, one stage per accepted width.
    case greedy(path: [GreedyStage])
    /// Best fitness (predicted error) after each generation (index 0: the initial population),
    /// the generations run, and the fitness evaluations made.
    case genetic(convergence: [Double], generations: Int, evaluations: Int)
    /// A proven lower bound on the error of any plan within the budgets (the Lagrangian dual, or
    /// the optimum itself when the exact knapsack was used).
    case exact(lowerBound: Double)
}

/// A plan and what it is predicted to cost.
public struct Solution: Sendable, Equatable {
    /// One allocation per ``PlanningProblem/models`` entry.
    public var allocations: [Allocation]
    /// Predicted error summed over the model.
    public var predictedError: Double
    /// Storage of the plan under the problem's accounting, in bits.
    public var storageBits: Int
    public var report: SearchReport
}

/// Searches the allocation of `problem` with `strategy`.
///
/// Every unit of ``PlanningProblem/units`` stays within its own budget, and every allocation is
/// admitted by its model and uses only widths of its ``PlanningProblem/menu(of:)``. `seed` feeds
/// the genetic search's ``MersenneTwister``; the other strategies are deterministic. Pinned
/// matrices (``PlanningProblem/overrides``) get their pins, and the strategy plans the others
/// with the bits the pins leave (``solvePinned(_:strategy:seed:)``).
///
/// - Throws: ``PlanningError/infeasibleBudget(unit:budgetBits:smallestFeasibleBits:)`` when a
///   unit's budget cannot hold one vector at the cheapest width of its cheapest matrix (or a
///   preset's fixed segments); ``PlanningError/bitWidthUnavailable(unit:bits:)`` when a preset
///   (or the greedy's shared mix) needs a width some member cannot use; the pins' errors
///   (``PlanningError/pinsExceedBudget(budgetBits:pinnedBits:pins:)``,
///   ``PlanningError/pinnedPresetInfeasible(pin:matrix:shareBits:smallestBits:)``).
public func solve(_ problem: PlanningProblem, strategy: Strategy, seed: UInt64) throws(PlanningError) -> Solution {
    if !problem.overrides.pins.isEmpty { return try solvePinned(problem, strategy: strategy, seed: seed) }
    let context = SearchContext(problem)
    try context.checkBudgets()
    switch strategy {
    case .preset(let preset):
        return context.solution(try context.presetCounts(preset), report: .preset)
    case .greedy:
        let (counts, path) = try context.greedy()
        return context.solution(counts, report: .greedy(path: path))
    case .exact:
        let (counts, bound) = context.exact()
        return context.solution(counts, report: .exact(lowerBound: bound))
    case .genetic(let options):
        let (counts, curve, generations, evaluations) = context.genetic(options, seed: seed)
        return context.solution(
            counts, report: .genetic(convergence: curve, generations: generations, evaluations: evaluations))
    }
}
