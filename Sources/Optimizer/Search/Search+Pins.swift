import ModelProfiles

extension PlanningProblem {
    /// Each pinned matrix's allocation at ``budgetBits``: explicit segments, dense (`keep`) or
    /// empty (`drop`) as resolved; a preset at the matrix's share of the budget,
    /// `⌊budgetBits · dense(m) / dense(all)⌋` (the `matrix` scope's share), by
    /// ``PrecisionPreset/allocations(for:budgetBits:storage:unit:)``.
    ///
    /// - Throws: ``PlanningError/pinnedPresetInfeasible(pin:matrix:shareBits:smallestBits:)`` when a
    ///   preset's fixed segments exceed its matrix's share.
    public func pinnedAllocations() throws(PlanningError) -> [Int: Allocation] {
        let dense = models.reduce(0.0) { $0 + Double(StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns)) }
        var out: [Int: Allocation] = [:]
        for (m, pinned) in overrides.pins {
            switch pinned.form {
            case let .allocation(a): out[m] = a
            case let .preset(preset):
                let s = models[m].spectrum
                let share = dense > 0
                    ? Int((Double(budgetBits) * Double(StorageModel.denseBits(rows: s.rows, columns: s.columns)) / dense).rounded(.down)) : 0
                do {
                    out[m] = try preset.allocations(
                        for: [MatrixShape(name: s.name, type: s.type, rows: s.rows, columns: s.columns, maxRank: s.storedRank)],
                        budgetBits: max(share, 0), storage: storage, unit: s.name)[0]
                } catch {
                    guard case let .infeasibleBudget(_, _, smallest) = error else { throw error }
                    throw .pinnedPresetInfeasible(pin: pinned.pin.description, matrix: s.name, shareBits: share, smallestBits: smallest)
                }
            }
        }
        return out
    }

    /// The bits of `pinned` allocations.
    func storageBits(of pinned: [Int: Allocation]) -> Int {
        pinned.reduce(0) { $0 + storage.bits(of: $1.value, rows: models[$1.key].spectrum.rows, columns: models[$1.key].spectrum.columns) }
    }

    /// What the search solves once `pinned` is fixed: the other matrices (with their own menus),
    /// under the budget the pins leave, shared by ``scope`` among them; and their indices here.
    public func remainder(after pinned: [Int: Allocation]) -> (problem: PlanningProblem, indices: [Int]) {
        let free = models.indices.filter { pinned[$0] == nil }
        var menus: [Int: [Int]] = [:]
        for (j, m) in free.enumerated() { menus[j] = overrides.menus[m] }
        let rest = PlanningProblem(
            models: free.map { models[$0] }, storage: storage, budgetBits: budgetBits - storageBits(of: pinned), scope: scope,
            menu: menu, overrides: ResolvedOverrides(menus: menus))
        return (rest, free)
    }

    /// The least budget any plan of this problem needs for its fixed pins (explicit segments,
    /// `keep`); preset pins, which take a share of the budget, count 0.
    var fixedPinBits: Int {
        overrides.pins.reduce(0) { total, entry in
            guard case let .allocation(a) = entry.value.form else { return total }
            let s = models[entry.key].spectrum
            return total + storage.bits(of: a, rows: s.rows, columns: s.columns)
        }
    }
}

/// ``solve(_:strategy:seed:)`` for a problem with pins: the pinned matrices spend their bits first
/// (``PlanningProblem/pinnedAllocations()``); the strategy then solves
/// ``PlanningProblem/remainder(after:)`` — the other matrices under the budget left, shared by the
/// problem's scope among them — exactly as it would solve that problem given directly. Reports are
/// the remainder's, with the pinned matrices' predicted error added to the exact lower bound and
/// the genetic convergence (so they bound and trace the whole plan's error).
///
/// - Throws: ``PlanningError/pinsExceedBudget(budgetBits:pinnedBits:pins:)`` when the pins alone
///   need more than the budget; the remainder's errors, an infeasible unit named as what the pins
///   leave.
func solvePinned(_ problem: PlanningProblem, strategy: Strategy, seed: UInt64) throws(PlanningError) -> Solution {
    let pinned = try problem.pinnedAllocations()
    let pinnedBits = problem.storageBits(of: pinned)
    guard pinnedBits <= problem.budgetBits else {
        var costs: [PlanningError.PinCost] = []
        for pin in problem.overrides.rules.pins {
            let mine = pinned.filter { problem.overrides.pins[$0.key]?.pin == pin }
            guard !mine.isEmpty else { continue }
            costs.append(.init(pin: pin.description, matrices: mine.count, bits: problem.storageBits(of: mine)))
        }
        throw .pinsExceedBudget(budgetBits: problem.budgetBits, pinnedBits: pinnedBits, pins: costs)
    }
    let (rest, free) = problem.remainder(after: pinned)
    let pinnedError = pinned.reduce(0.0) { $0 + problem.models[$1.key].error(of: $1.value) }
    var solution: Solution
    if rest.models.isEmpty {
        let report: SearchReport = switch strategy {
        case .preset: .preset
        case .greedy: .greedy(path: [])
        case .genetic: .genetic(convergence: [0], generations: 0, evaluations: 0)
        case .exact: .exact(lowerBound: 0)
        }
        solution = Solution(allocations: [], predictedError: 0, storageBits: 0, report: report)
    } else {
        do { solution = try solve(rest, strategy: strategy, seed: seed) } catch {
            guard case let .infeasibleBudget(unit, bits, smallest) = error else { throw error }
            throw .infeasibleBudget(unit: "\(unit), with what the pins leave (\(pinnedBits) of \(problem.budgetBits) bits pinned)",
                                    budgetBits: bits, smallestFeasibleBits: smallest)
        }
    }
    var allocations = [Allocation](repeating: .empty, count: problem.models.count)
    for (m, a) in pinned { allocations[m] = a }
    for (j, m) in free.enumerated() { allocations[m] = solution.allocations[j] }
    switch solution.report {
    case let .exact(bound): solution.report = .exact(lowerBound: bound + pinnedError)
    case let .genetic(curve, generations, evaluations):
        solution.report = .genetic(convergence: curve.map { $0 + pinnedError }, generations: generations, evaluations: evaluations)
    case .preset, .greedy: break
    }
    return Solution(allocations: allocations, predictedError: problem.predictedError(allocations),
                    storageBits: problem.storageBits(allocations), report: solution.report)
}
