/// A linear stand-in for a matrix's storage, for the Lagrangian dynamic programme: a segment of
/// `c` vectors at level `l` costs `perVector[l]·c + entry[l]` (`entry` paid once per segment).
///
/// Under ``Accounting/artifact`` the U-side metadata `32·h_out·⌈c/g⌉` of a segment is not linear
/// in `c`. Two linearizations bracket it: the *lower* one amortizes it as `32·h_out·c/g`
/// (≤ exact: a valid relaxation, used for the dual lower bound); the *upper* one adds an entry
/// charge `32·h_out·(1 − 1/g)` (≥ exact, since ⌈c/g⌉ ≤ (c + g − 1)/g: a plan within the budget
/// under it is within the budget exactly, used for the primal plan, whose slack the exact fill
/// step then spends). The 1-bit per-row scales `16·h_out` are a true per-segment constant and
/// enter both as an entry charge. Everything else is linear.
struct LinearStorage {
    var perVector: [Double]
    var entry: [Double]

    init(_ t: MatrixTable, upper: Bool) {
        let h = Double(t.rows), n = Double(t.columns)
        perVector = [Double](repeating: 0, count: t.levels)
        entry = perVector
        for l in t.usable {
            let k = Double(t.widths[l])
            guard t.storage.accounting == .artifact else {
                perVector[l] = k * (h + n)
                continue
            }
            let g = Double(t.storage.groupSize)
            switch t.widths[l] {
            case 16:
                perVector[l] = 16 * (h + n) + 16
            case 1:
                perVector[l] = (h + n) + 16 + 16
                entry[l] = 16 * h
            default:
                perVector[l] = k * (h + n) + 32 * Double(ceilDiv(t.columns, t.storage.groupSize)) + 32 * h / g + 16
                entry[l] = upper ? 32 * h * (1 - 1 / g) : 0
            }
        }
    }

    func bits(_ c: UnsafePointer<Int>, levels: Int) -> Double {
        var total = 0.0
        for l in 0..<levels where c[l] > 0 { total += perVector[l] * Double(c[l]) + entry[l] }
        return total
    }
}

extension MatrixTable {
    /// min over allocations of `error + λ·linearBits`, by dynamic programming over the ordered
    /// vectors: state = level of the last kept vector; vector `i` may stay at that level or move
    /// to a narrower one (paying the entry charge), and the plan may stop (drop the rest) after
    /// any vector. O(r·L) time, O(L) memory; with `choice` (r·L bytes) and `counts`, also the
    /// minimizing counts. Returns the objective and the linear bits of the minimizer.
    func lagrangian(
        _ lin: LinearStorage, lambda: Double,
        choice: UnsafeMutablePointer<UInt8>? = nil, counts: UnsafeMutablePointer<Int>? = nil
    ) -> (objective: Double, bits: Double) {
        let L = levels, r = rank, U = usable.count
        var bestObjective = dropped[0], bestBits = 0.0, bestI = 0, bestL = -1
        guard U > 0, r > 0 else {
            if let counts { for l in 0..<L { counts[l] = 0 } }
            return (bestObjective, 0)
        }
        // Per usable level u: level index, λ·perVector, λ·entry, perVector, entry; state f, s.
        withUnsafeTemporaryAllocation(of: Double.self, capacity: 6 * U) { buffer in
            let base = buffer.baseAddress!
            let price = base, entryPrice = base + U, per = base + 2 * U, entry = base + 3 * U
            let f = base + 4 * U, s = base + 5 * U
            for u in 0..<U {
                let l = usable[u]
                price[u] = lambda * lin.perVector[l]
                entryPrice[u] = lambda * lin.entry[l]
                per[u] = lin.perVector[l]
                entry[u] = lin.entry[l]
                f[u] = .infinity
                s[u] = 0
            }
            withUnsafeTemporaryAllocation(of: Int.self, capacity: U) { offsets in
                for u in 0..<U { offsets[u] = usable[u] * (r + 1) }
                prefix.withUnsafeBufferPointer { pb in
                    dropped.withUnsafeBufferPointer { db in
                        let p = pb.baseAddress!, d = db.baseAddress!
                        for i in 0..<r {
                            var prevMin = i == 0 ? 0.0 : Double.infinity, prevBits = 0.0, prevArg = 255
                            let dropRest = d[i + 1]
                            for u in 0..<U {
                                let old = f[u], oldBits = s[u]
                                let enter = prevMin + entryPrice[u]
                                let o = offsets[u] + i
                                let step = p[o + 1] - p[o] + price[u]
                                // Branch-free: which of stay / enter wins is data-dependent.
                                let stay = old <= enter
                                f[u] = (stay ? old : enter) + step
                                s[u] = (stay ? oldBits : prevBits + entry[u]) + per[u]
                                if let choice { choice[i * L + u] = UInt8(truncatingIfNeeded: stay ? u : prevArg) }
                                if old < prevMin { prevMin = old; prevBits = oldBits; prevArg = u }
                                let stop = f[u] + dropRest
                                if stop < bestObjective { bestObjective = stop; bestBits = s[u]; bestI = i + 1; bestL = u }
                            }
                        }
                    }
                }
            }
        }
        if let counts, let choice {
            for l in 0..<L { counts[l] = 0 }
            var i = bestI, u = bestL
            while i > 0 {
                counts[usable[u]] += 1
                let previous = Int(choice[(i - 1) * L + u])
                i -= 1
                if previous == 255 { precondition(i == 0, "DP traceback left the start state early"); break }
                u = previous
            }
        }
        return (bestObjective, bestBits)
    }
}

extension SearchContext {
    /// The optimum under the error model, per unit, and a proven lower bound on any plan's error.
    ///
    /// Small units (every member's allocations within the budget enumerable, ≤ 100 000 each, and
    /// a bounded merged frontier) are solved exactly as a multiple-choice knapsack over the
    /// members' Pareto frontiers (exact storage); the bound is then the optimum itself.
    ///
    /// Otherwise: Lagrangian relaxation. For a price λ on storage, each member's
    /// `min error + λ·bits` is a DP over its ordered vectors (``MatrixTable/lagrangian``, storage
    /// linearized as ``LinearStorage`` explains). Geometric bisection on λ (over 16 decades, to a
    /// relative width of 10⁻⁶) finds the smallest λ whose plan fits the unit budget under the upper
    /// linearization, hence exactly; a repair step (``UnitRepair``: fill by best marginal error per
    /// bit under exact storage, then improving exchanges) spends the slack. The lower bound is
    /// `max_λ Σᵢ minᵢ(errorᵢ + λ·bitsᵢ) − λ·B` under the lower linearization, maximised by bisection
    /// on its subgradient (to a relative width of 10⁻⁵); every evaluated λ gives a valid bound,
    /// the largest is reported.
    ///
    /// Complexity: O(iterations · Σ r·L) (≈ 70 DPs per matrix) plus the repair.
    func exact() -> ([Int], Double) {
        var counts = [Int](repeating: 0, count: tables.count * levels)
        var bound = 0.0
        for unit in units where !unit.members.isEmpty {
            guard levels > 0 else {
                bound += unit.members.reduce(0) { $0 + tables[$1].dropped[0] }
                continue
            }
            if let (choice, optimum) = knapsack(unit) {
                for (m, c) in zip(unit.members, choice) {
                    for l in 0..<levels { counts[m * levels + l] = c[l] }
                }
                bound += optimum
                continue
            }
            bound += counts.withUnsafeMutableBufferPointer { lagrangian(unit, into: $0.baseAddress!) }
        }
        return (counts, bound)
    }

    /// Writes the unit's plan into `g` (flat counts) and returns the unit's lower bound.
    private func lagrangian(_ unit: PlanningProblem.Unit, into g: UnsafeMutablePointer<Int>) -> Double {
        let members = unit.members, budget = Double(unit.budgetBits)
        let upper = members.map { LinearStorage(tables[$0], upper: true) }
        let lower = members.map { LinearStorage(tables[$0], upper: false) }

        func evaluate(_ lambda: Double, _ lin: [LinearStorage]) -> (objective: Double, bits: Double) {
            var objective = 0.0, bits = 0.0
            for (j, m) in members.enumerated() {
                let r = tables[m].lagrangian(lin[j], lambda: lambda)
                objective += r.objective
                bits += r.bits
            }
            return (objective, bits)
        }

        // λ large enough that no vector is worth keeping: its whole energy below λ·(its bits).
        var maxWeight = 0.0, minBits = Double.infinity
        for (j, m) in members.enumerated() {
            let t = tables[m]
            for i in 0..<t.rank { maxWeight = max(maxWeight, t.dropped[i] - t.dropped[i + 1]) }
            for l in t.usable { minBits = min(minBits, lower[j].perVector[l]) }
        }
        let lambdaMax = minBits.isFinite && minBits > 0 && maxWeight > 0 ? 2 * maxWeight / minBits : 1

        // Primal: the smallest λ whose plan fits under the upper linearization.
        var planLambda = 0.0, overLambda = 0.0
        if evaluate(0, upper).bits > budget {
            var low = lambdaMax * 1e-16, high = lambdaMax
            if evaluate(low, upper).bits <= budget {
                high = low
            } else {
                while high > low * (1 + 1e-6) {
                    let mid = (low * high).squareRoot()
                    if evaluate(mid, upper).bits <= budget { high = mid } else { low = mid }
                }
            }
            planLambda = high
            overLambda = low
        }

        // Dual: max over λ of Σ min(error + λ·bits) − λ·B under the lower linearization.
        var dual = -Double.infinity, dualLow = 0.0, dualHigh = 0.0
        func value(_ lambda: Double) -> Double {
            let r = evaluate(lambda, lower)
            dual = max(dual, r.objective - lambda * budget)
            return r.bits - budget
        }
        if value(0) > 0 {
            var low = max(planLambda / 4, lambdaMax * 1e-16), high = max(planLambda * 4, lambdaMax * 1e-15)
            while value(low) <= 0, low > lambdaMax * 1e-18 { high = low; low /= 16 }
            while value(high) > 0, high < lambdaMax * 4 { low = high; high *= 16 }
            while high > low * (1 + 1e-5) {
                let mid = (low * high).squareRoot()
                if value(mid) > 0 { low = mid } else { high = mid }
            }
            dualLow = low
            dualHigh = high
        }

        // Candidate plans: the DP minimisers at the bracketing λs (feasible or not), each made
        // feasible and spent by the exact repair; the best is kept. Plans whose λ straddles a jump
        // of a non-convex frontier differ, and the repair of either side may win.
        let maxRank = members.map { tables[$0].rank }.max() ?? 0
        var choice = [UInt8](repeating: 0, count: max(1, maxRank * levels))
        var trial = [Int](repeating: 0, count: tables.count * levels)
        var bestError = Double.infinity
        let repair = UnitRepair(tables: tables, members: members, budget: unit.budgetBits, levels: levels)
        let candidates: [(Double, [LinearStorage])] = [
            (planLambda, upper), (overLambda, upper), (dualHigh, lower), (dualLow, lower),
        ]
        for (lambda, lin) in candidates {
            let e = choice.withUnsafeMutableBufferPointer { ch in
                trial.withUnsafeMutableBufferPointer { t in
                    let base = t.baseAddress!
                    var e = 0.0
                    for (j, m) in members.enumerated() {
                        _ = tables[m].lagrangian(lin[j], lambda: lambda, choice: ch.baseAddress!, counts: base + m * levels)
                    }
                    repair.repair(base, exchanges: 1_000_000)
                    for m in members { e += tables[m].error(base + m * levels) }
                    return e
                }
            }
            if e < bestError {
                bestError = e
                for m in members { for l in 0..<levels { g[m * levels + l] = trial[m * levels + l] } }
            }
        }
        return dual
    }

    /// Exact multiple-choice knapsack over the members' Pareto frontiers (error vs exact storage),
    /// or nil when the unit is too large to enumerate. Returns each member's counts and the optimum.
    ///
    /// Each member's count vectors are enumerated depth-first, pruned as soon as the partial
    /// storage exceeds the budget (storage grows with every count), at most 100 000 per member;
    /// the frontiers are merged pairwise (sums within the budget, Pareto-pruned, at most 5 million
    /// pairs per merge) with back-pointers to recover the choice.
    func knapsack(_ unit: PlanningProblem.Unit) -> ([[Int]], Double)? {
        let budget = unit.budgetBits
        var frontiers: [[Point]] = []
        for m in unit.members {
            let t = tables[m]
            var all: [Point] = []
            var c = [Int](repeating: 0, count: levels)
            var aborted = false
            c.withUnsafeMutableBufferPointer { buffer in
                let counts = buffer.baseAddress!
                func walk(_ u: Int, _ remaining: Int) {
                    guard !aborted else { return }
                    if u == t.usable.count {
                        if all.count >= 100_000 { aborted = true; return }
                        all.append(Point(bits: t.bits(counts), error: t.error(counts), counts: Array(buffer)))
                        return
                    }
                    let level = t.usable[u]
                    for n in 0...remaining {
                        counts[level] = n
                        if n > 0 && t.bits(counts) > budget { break }
                        walk(u + 1, remaining - n)
                    }
                    counts[level] = 0
                }
                walk(0, t.rank)
            }
            guard !aborted else { return nil }
            frontiers.append(Self.pareto(all))
        }
        // Merge: stage k holds (bits, error, index into stage k−1, index into frontier k).
        var stages: [[(bits: Int, error: Double, parent: Int, pick: Int)]] = []
        var merged: [(bits: Int, error: Double, parent: Int, pick: Int)] = [(0, 0, -1, -1)]
        for frontier in frontiers {
            guard merged.count * frontier.count <= 5_000_000 else { return nil }
            var next: [(bits: Int, error: Double, parent: Int, pick: Int)] = []
            for (i, a) in merged.enumerated() {
                for (k, f) in frontier.enumerated() {
                    guard a.bits + f.bits <= budget else { break }  // frontier sorted by bits
                    next.append((a.bits + f.bits, a.error + f.error, i, k))
                }
            }
            next.sort { ($0.bits, $0.error) < ($1.bits, $1.error) }
            merged = []
            for p in next where merged.isEmpty || p.error < merged.last!.error { merged.append(p) }
            stages.append(merged)
        }
        guard var index = merged.indices.last else { return nil }
        let optimum = merged[index].error
        var choice = [[Int]](repeating: [], count: frontiers.count)
        for k in stride(from: frontiers.count - 1, through: 0, by: -1) {
            let entry = stages[k][index]
            choice[k] = frontiers[k][entry.pick].counts
            index = entry.parent
        }
        return (choice, optimum)
    }

    struct Point {
        var bits: Int
        var error: Double
        var counts: [Int]
    }

    /// Pareto frontier: sorted by bits, each entry strictly better in error than all cheaper ones.
    static func pareto(_ points: [Point]) -> [Point] {
        let sorted = points.sorted { ($0.bits, $0.error) < ($1.bits, $1.error) }
        var out: [Point] = []
        for p in sorted where out.isEmpty || p.error < out.last!.error { out.append(p) }
        return out
    }
}
