import ModelProfiles

/// What every strategy shares: the flattened tables, the budget units, and the conversion of a
/// flat count buffer (`M` matrices × `L` menu levels, matrix-major) into a ``Solution``.
struct SearchContext {
    let problem: PlanningProblem
    let tables: [MatrixTable]
    let units: [PlanningProblem.Unit]
    /// L, the stride of one matrix's counts in a flat buffer.
    let levels: Int

    init(_ problem: PlanningProblem) {
        self.problem = problem
        tables = problem.models.indices.map {
            MatrixTable(problem.models[$0], menu: problem.menu, allowed: problem.overrides.menus[$0], storage: problem.storage)
        }
        units = problem.units
        levels = problem.menu.count
    }

    /// Throws when a unit's budget cannot hold one vector at the cheapest usable width of its
    /// cheapest matrix. Units with nothing storable (rank 0 everywhere) are never infeasible.
    func checkBudgets() throws(PlanningError) {
        for unit in units {
            let cheapest = unit.members.flatMap { m in
                tables[m].rank > 0 ? tables[m].usable.map { tables[m].singleVectorBits(level: $0) } : []
            }.min()
            if unit.budgetBits < (cheapest ?? 0) {
                throw .infeasibleBudget(unit: unit.name, budgetBits: unit.budgetBits, smallestFeasibleBits: cheapest ?? 0)
            }
        }
    }

    func solution(_ counts: [Int], report: SearchReport) -> Solution {
        let allocations = tables.indices.map { tables[$0].allocation(counts[$0 * levels ..< ($0 + 1) * levels]) }
        for (m, a) in allocations.enumerated() {
            precondition(problem.models[m].admits(a) && a.counts.keys.allSatisfy(problem.menu(of: m).contains),
                         "search produced an inadmissible allocation")
        }
        for unit in units {
            let bits = unit.members.reduce(0) {
                $0 + problem.storage.bits(of: allocations[$1], rows: tables[$1].rows, columns: tables[$1].columns)
            }
            precondition(bits <= max(unit.budgetBits, 0), "search exceeded the budget of \(unit.name)")
        }
        return Solution(
            allocations: allocations, predictedError: problem.predictedError(allocations),
            storageBits: problem.storageBits(allocations), report: report)
    }

    /// Total predicted error of a flat count buffer.
    func error(_ counts: UnsafeMutablePointer<Int>) -> Double {
        var total = 0.0
        for m in tables.indices { total += tables[m].error(counts + m * levels) }
        return total
    }

    func shapes(_ unit: PlanningProblem.Unit) -> [MatrixShape] {
        unit.members.map {
            let s = problem.models[$0].spectrum
            return MatrixShape(name: s.name, type: s.type, rows: s.rows, columns: s.columns, maxRank: s.storedRank)
        }
    }

    /// Menu levels every member of `unit` can use.
    func sharedLevels(_ unit: PlanningProblem.Unit) -> [Int] {
        (0..<levels).filter { l in unit.members.allSatisfy { tables[$0].usable.contains(l) } }
    }

    /// A preset's counts in `unit` written into `counts`; its widths must be shared by the members.
    func applyPreset(
        _ preset: PrecisionPreset, unit: PlanningProblem.Unit, into counts: inout [Int]
    ) throws(PlanningError) {
        let shared = Set(sharedLevels(unit).map { problem.menu[$0] })
        for s in preset.segments where !shared.contains(s.bits) {
            throw .bitWidthUnavailable(unit: unit.name, bits: s.bits)
        }
        let allocations = try preset.allocations(
            for: shapes(unit), budgetBits: unit.budgetBits, storage: problem.storage, unit: unit.name)
        for (m, a) in zip(unit.members, allocations) {
            for l in 0..<levels { counts[m * levels + l] = a.count(bits: problem.menu[l]) }
        }
    }

    func presetCounts(_ preset: PrecisionPreset) throws(PlanningError) -> [Int] {
        var counts = [Int](repeating: 0, count: tables.count * levels)
        for unit in units where !unit.members.isEmpty {
            try applyPreset(preset, unit: unit, into: &counts)
        }
        return counts
    }
}
