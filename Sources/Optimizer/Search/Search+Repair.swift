/// Makes one budget unit's counts feasible and spends its budget, by the moves of
/// ``MatrixTable/forEachMove(_:_:)`` (one vector or one metadata group of vectors kept, dropped or
/// moved to an adjacent width) under the exact storage accounting (per-group metadata included).
///
/// 1. Clamp: counts at levels a matrix cannot use become 0; ranks above the stored rank are cut
///    from the narrowest widths.
/// 2. Trim: while over budget, apply the move with the least error increase per freed bit.
/// 3. Fill: while some move fits the leftover and lowers the error, apply the one with the largest
///    error decrease per added bit (a move freeing bits and gaining ranks first).
/// 4. Exchange (at most `exchanges` times): trim the matrix whose cheapest trim loses least per
///    bit and give the bits to the matrix whose best fill gains most per bit, when that lowers the
///    total error; then fill again. This equalises marginal ratios across matrices, the optimality
///    condition of the Lagrangian relaxation.
///
/// Each step costs O(members) to pick plus O(L²) to re-rank the changed matrix.
struct UnitRepair {
    let tables: [MatrixTable]
    let members: [Int]
    let budget: Int
    let levels: Int

    func repair(_ g: UnsafeMutablePointer<Int>, exchanges: Int) {
        guard !members.isEmpty, levels > 0 else { return }
        clamp(g)
        var used = 0
        for m in members { used += tables[m].bits(g + m * levels) }
        if used > budget { used = trim(g, used: used) }
        var left = budget - used
        left = fill(g, left: left)
        if exchanges > 0 {
            let (afterExchange, changed) = exchange(g, left: left, limit: exchanges)
            if changed { left = fill(g, left: afterExchange) }
        }
    }

    private func clamp(_ g: UnsafeMutablePointer<Int>) {
        for m in members {
            let c = g + m * levels, t = tables[m]
            var kept = 0
            for l in 0..<levels {
                if c[l] < 0 || !t.usable.contains(l) { c[l] = 0 }
                kept += c[l]
            }
            var l = levels - 1
            while kept > t.rank {
                let cut = min(c[l], kept - t.rank)
                c[l] -= cut
                kept -= cut
                l -= 1
            }
        }
    }

    private func trim(_ g: UnsafeMutablePointer<Int>, used start: Int) -> Int {
        var used = start
        var cache = members.map { tables[$0].bestTrim(g + $0 * levels) }
        while used > budget {
            var pick = -1
            for j in cache.indices {
                guard let move = cache[j] else { continue }
                if pick < 0 || move.score > cache[pick]!.score { pick = j }
            }
            precondition(pick >= 0, "nothing left to trim although the unit is over its budget")
            let m = members[pick], move = cache[pick]!
            tables[m].apply(move, to: g + m * levels)
            used += move.deltaBits
            cache[pick] = tables[m].bestTrim(g + m * levels)
        }
        return used
    }

    /// Spends `left` bits; returns what remains.
    private func fill(_ g: UnsafeMutablePointer<Int>, left start: Int) -> Int {
        var left = start
        var cache = members.map { tables[$0].bestFill(g + $0 * levels, maxBits: .max) }
        while true {
            var pick = -1
            for j in cache.indices {
                guard let move = cache[j] else { continue }
                if pick < 0 || move.score > cache[pick]!.score { pick = j }
            }
            guard pick >= 0 else { return left }
            let m = members[pick], move = cache[pick]!
            if move.deltaBits > left {
                // Ranked without the budget: re-rank among the moves that fit.
                cache[pick] = tables[m].bestFill(g + m * levels, maxBits: left)
                continue
            }
            tables[m].apply(move, to: g + m * levels)
            left -= move.deltaBits
            cache[pick] = tables[m].bestFill(g + m * levels, maxBits: .max)
        }
    }

    /// Improving trim-then-fill exchanges (the two may be the same matrix); returns the leftover
    /// and whether anything changed.
    private func exchange(_ g: UnsafeMutablePointer<Int>, left start: Int, limit: Int) -> (Int, Bool) {
        var left = start, changed = false
        var trims = members.map { tables[$0].bestTrim(g + $0 * levels) }
        var fills = members.map { tables[$0].bestFill(g + $0 * levels, maxBits: .max) }
        var saveT = [Int](repeating: 0, count: levels)
        var rejected = [Bool](repeating: false, count: members.count)
        var done = 0
        while done < limit {
            var jf = -1
            for j in fills.indices where !rejected[j] {
                guard let move = fills[j] else { continue }
                if jf < 0 || move.score > fills[jf]!.score { jf = j }
            }
            guard jf >= 0 else { break }
            var jt = -1
            for j in trims.indices {
                guard let move = trims[j] else { continue }
                if jt < 0 || move.score > trims[jt]!.score { jt = j }
            }
            guard jt >= 0 else { break }
            // Gain per bit must beat loss per bit (trim score = −loss per bit).
            guard fills[jf]!.score > -trims[jt]!.score else { break }
            let mt = members[jt], mf = members[jf]
            let ct = g + mt * levels, cf = g + mf * levels
            for l in 0..<levels { saveT[l] = ct[l] }
            var fillMove = fills[jf]!
            var loss = 0.0, room = left
            while room < fillMove.deltaBits, let t = trims[jt], -t.score < fillMove.score {
                tables[mt].apply(t, to: ct)
                loss += t.deltaError
                room -= t.deltaBits
                trims[jt] = tables[mt].bestTrim(ct)
                if jt == jf {
                    // The fill must be re-ranked on the trimmed counts.
                    guard let refill = tables[mf].bestFill(cf, maxBits: .max) else { break }
                    fillMove = refill
                }
            }
            if room >= fillMove.deltaBits && loss + fillMove.deltaError < 0 {
                tables[mf].apply(fillMove, to: cf)
                left = room - fillMove.deltaBits
                changed = true
                done += 1
                for j in rejected.indices { rejected[j] = false }
            } else {
                for l in 0..<levels { ct[l] = saveT[l] }
                trims[jt] = tables[mt].bestTrim(ct)
                rejected[jf] = true
                continue
            }
            trims[jt] = tables[mt].bestTrim(ct)
            trims[jf] = tables[mf].bestTrim(cf)
            fills[jt] = tables[mt].bestFill(ct, maxBits: .max)
            fills[jf] = tables[mf].bestFill(cf, maxBits: .max)
        }
        return (left, changed)
    }
}
