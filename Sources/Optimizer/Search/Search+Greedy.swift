import ModelProfiles

extension SearchContext {
    /// The paper's staged search (§5.1), per budget unit, over preset-shaped mixes whose counts
    /// every member of the unit shares.
    ///
    /// Stage 1 scores every single width of the menu (vectors from index 0 until the budget is
    /// used) and every double (c vectors at one width, then a lower width until the budget is
    /// used, c from the count ladder below) and keeps the best. Each further stage tries to add one width not yet in the mix,
    /// anywhere: above the filling width it becomes a fixed segment of `c` vectors; below it, the
    /// old filling width gets the fixed count `c` and the new width fills. `c` runs over
    /// 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, … (so the paper's 8×2 + 3×32 + 2 is reachable), then every
    /// fixed count of the best candidate is refined by coordinate descent with halving steps.
    /// A stage is accepted only if it lowers the unit's predicted error; the search stops at the
    /// first stage that does not. Since stage 1 is the best single or double mix, greedy is
    /// never worse than any single- or double-precision preset of the same scope (the paper's
    /// 8+3 has c = 2, on the ladder).
    ///
    /// Complexity: O(L² · log r) mixes per stage, each costing a preset fill (binary search,
    /// O(members · log r)) and an error evaluation.
    func greedy() throws(PlanningError) -> ([Int], [GreedyStage]) {
        var counts = [Int](repeating: 0, count: tables.count * levels)
        var path: [GreedyStage] = []
        for unit in units where !unit.members.isEmpty && levels > 0 {
            let shared = sharedLevels(unit)
            guard !shared.isEmpty else { throw .bitWidthUnavailable(unit: unit.name, bits: problem.menu.last!) }
            let widths = shared.map { problem.menu[$0] }
            let maxRank = unit.members.map { tables[$0].rank }.max() ?? 0

            var scratch = [Int](repeating: 0, count: tables.count * levels)
            func evaluate(_ segments: [PrecisionPreset.Segment]) -> Double? {
                scratch.withUnsafeMutableBufferPointer { b -> Double? in
                    let g = b.baseAddress!
                    guard fillMix(segments, unit: unit, into: g) else { return nil }
                    return unit.members.reduce(0) { $0 + tables[$1].error(g + $1 * levels) }
                }
            }

            var candidates: [Int] = []
            var c = 1
            while c <= maxRank {
                candidates.append(c)
                if c >= 2 && c.isPowerOfTwo { if c + c / 2 <= maxRank { candidates.append(c + c / 2) } }
                c *= 2
            }
            candidates.sort()

            // Stage 1: the best single precision, or double (c vectors at one width, the next width
            // filling), so greedy is never worse than any single or double preset of the unit.
            var best: (segments: [PrecisionPreset.Segment], error: Double)?
            func consider(_ segments: [PrecisionPreset.Segment]) {
                if let e = evaluate(segments), e.isFinite, best == nil || e < best!.error { best = (segments, e) }
            }
            for k in widths { consider([PrecisionPreset.Segment(bits: k, count: nil)]) }
            for high in widths { for low in widths where low < high { for c in candidates {
                consider([PrecisionPreset.Segment(bits: high, count: c), PrecisionPreset.Segment(bits: low, count: nil)])
            } } }
            guard var current = best else { continue }
            path.append(GreedyStage(unit: unit.name, segments: current.segments, predictedError: current.error))

            // Further stages: add one width while the error improves.
            while true {
                var stageBest: (segments: [PrecisionPreset.Segment], error: Double)?
                let used = Set(current.segments.map(\.bits))
                for k in widths where !used.contains(k) {
                    for c in candidates {
                        let segments = Self.insert(k, count: c, into: current.segments)
                        if let e = evaluate(segments), e.isFinite, stageBest == nil || e < stageBest!.error {
                            stageBest = (segments, e)
                        }
                    }
                }
                guard var candidate = stageBest, candidate.error < current.error else { break }
                // Refine every fixed count by coordinate descent with halving steps.
                for _ in 0..<3 {
                    var moved = false
                    for j in candidate.segments.indices where candidate.segments[j].count != nil {
                        var step = max(1, candidate.segments[j].count! / 2)
                        while step >= 1 {
                            var improved = false
                            for delta in [step, -step] {
                                let n = candidate.segments[j].count! + delta
                                guard n >= 1, n <= maxRank else { continue }
                                var trial = candidate.segments
                                trial[j].count = n
                                if let e = evaluate(trial), e < candidate.error {
                                    candidate = (trial, e)
                                    improved = true
                                    moved = true
                                    break
                                }
                            }
                            if !improved { step /= 2 }
                        }
                    }
                    if !moved { break }
                }
                current = candidate
                path.append(GreedyStage(unit: unit.name, segments: current.segments, predictedError: current.error))
            }
            try applyPreset(
                PrecisionPreset(name: "greedy", description: "", segments: current.segments), unit: unit, into: &counts)
        }
        return (counts, path)
    }

    /// The counts `PrecisionPreset.allocations(for:budgetBits:storage:unit:)` gives the mix in
    /// `unit` (fixed segments capped at each member's stored rank, then the same fill `n` for all,
    /// the largest `n` within the budget, by binary search), written into `g`, computed on the flat
    /// tables. False when the fixed segments alone exceed the budget.
    func fillMix(_ segments: [PrecisionPreset.Segment], unit: PlanningProblem.Unit, into g: UnsafeMutablePointer<Int>) -> Bool {
        let segmentLevels = segments.map { s in problem.menu.firstIndex(of: s.bits)! }
        func fill(_ n: Int) -> Int {
            var total = 0
            for m in unit.members {
                let c = g + m * levels, rank = tables[m].rank
                for l in 0..<levels { c[l] = 0 }
                var used = 0
                for (s, l) in zip(segments, segmentLevels) {
                    let take = min(s.count ?? n, rank - used)
                    guard take > 0 else { break }
                    c[l] += take
                    used += take
                }
                total += tables[m].bits(c)
            }
            return total
        }
        guard fill(0) <= unit.budgetBits else { return false }
        guard segments.last?.count == nil else { return true }
        var low = 0, high = unit.members.map { tables[$0].rank }.max() ?? 0
        while low < high {
            let mid = (low + high + 1) / 2
            if fill(mid) <= unit.budgetBits { low = mid } else { high = mid - 1 }
        }
        _ = fill(low)
        return true
    }

    /// `segments` (fixed counts, then one filling width, widths descending) with width `k` added:
    /// above the filling width as a fixed segment of `count`, below it as the new filling width
    /// (the old one then keeps `count` vectors).
    static func insert(
        _ k: Int, count: Int, into segments: [PrecisionPreset.Segment]
    ) -> [PrecisionPreset.Segment] {
        var fixed = segments.dropLast().map { $0 }
        let fill = segments.last!.bits
        let newFill: Int
        if k > fill {
            fixed.append(.init(bits: k, count: count))
            newFill = fill
        } else {
            fixed.append(.init(bits: fill, count: count))
            newFill = k
        }
        fixed.sort { $0.bits > $1.bits }
        return fixed + [.init(bits: newFill, count: nil)]
    }
}

private extension Int {
    var isPowerOfTwo: Bool { self > 0 && self & (self - 1) == 0 }
}
