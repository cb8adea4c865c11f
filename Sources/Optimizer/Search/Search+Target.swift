import ModelProfiles

/// A quality a plan must meet instead of a budget: its predicted error in the problem's objective,
/// relative to the error of dropping every delta (Σ objective energies) or absolute.
public struct ErrorTarget: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Unit: String, Codable, Sendable, CaseIterable {
        /// Predicted error / the error with every vector dropped (the plans' `predictedRelativeError`).
        case relative
        /// Predicted error in the objective's own units (the plans' `predictedError`).
        case absolute
    }

    public var error: Double
    public var unit: Unit

    public init(error: Double, unit: Unit = .relative) {
        self.error = error
        self.unit = unit
    }

    /// The absolute predicted error allowed for `problem`.
    public func allowedError(in problem: PlanningProblem) -> Double {
        switch unit {
        case .absolute: error
        case .relative: error * problem.models.reduce(0) { $0 + $1.spectrum.objectiveEnergy }
        }
    }

    public var description: String { "\(unit.rawValue) error \(error)" }
}

/// Why no plan meets a target.
public enum TargetError: Error, Equatable, CustomStringConvertible {
    /// Not even every vector at the best width the menu offers gets below the target.
    case unreachable(target: ErrorTarget, smallestError: Double, smallestRelativeError: Double)
    case planning(PlanningError)

    public var description: String {
        switch self {
        case let .unreachable(target, smallest, relative):
            "no plan meets the \(target): with the whole dense budget the smallest predicted error is \(smallest) "
                + "(relative \(relative)); raise the target or widen the bit menu"
        case let .planning(error): error.description
        }
    }
}

/// The plan of `strategy` with the smallest budget whose predicted error meets `target`, and that
/// budget (`problem.budgetBits` is ignored; `problem.scope` shares each trial budget as usual, and
/// pins take their bits from each trial budget first, a preset pin its share of it).
///
/// Bisection on the budget in whole bits between 0 and the dense F16 size of the planned
/// matrices (plus the bits of any fixed pins): a budget is good when the strategy's plan there (the same search, repair included)
/// predicts at most the target. The result is minimal to the bit: one bit less, the strategy's
/// plan misses the target (for `exact` on problems small enough for its exact knapsack, no plan
/// within that budget meets it). Budgets no plan fits count as missing. O(log₂(dense bits)) ≈ 40
/// searches for a 7B model.
///
/// - Throws: ``TargetError/unreachable(target:smallestError:smallestRelativeError:)`` when even the
///   dense budget's plan misses the target.
public func solve(
    _ problem: PlanningProblem, strategy: Strategy, seed: UInt64, target: ErrorTarget
) throws(TargetError) -> (budgetBits: Int, solution: Solution) {
    let allowed = target.allowedError(in: problem)
    let energy = problem.models.reduce(0) { $0 + $1.spectrum.objectiveEnergy }
    func attempt(_ bits: Int) throws(PlanningError) -> Solution {
        var trial = problem
        trial.budgetBits = bits
        return try solve(trial, strategy: strategy, seed: seed)
    }
    func meets(_ bits: Int) -> Solution? {
        guard let solution = try? attempt(bits), solution.predictedError <= allowed else { return nil }
        return solution
    }
    // Every matrix dense, plus what fixed pins need (a 16-bit pin of every vector can exceed it).
    let dense = problem.models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }
        + problem.fixedPinBits
    guard var best = meets(dense) else {
        let smallest: Solution
        do { smallest = try attempt(dense) } catch { throw .planning(error) }
        throw .unreachable(target: target, smallestError: smallest.predictedError,
                           smallestRelativeError: energy > 0 ? smallest.predictedError / energy : 0)
    }
    var low = 0, high = dense  // low misses (or is infeasible), high meets
    if let solution = meets(0) { return (0, solution) }
    while high - low > 1 {
        let mid = low + (high - low) / 2
        if let solution = meets(mid) { (high, best) = (mid, solution) } else { low = mid }
    }
    return (high, best)
}
