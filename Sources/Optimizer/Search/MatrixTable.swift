/// One matrix's error model and storage flattened for the searches' inner loops.
///
/// An allocation is a count vector `c[l]` over the problem's menu levels (`l = 0` is the widest
/// width; the vectors are laid out in that order, so bits never increase along the index).
/// `prefix[l·(r+1) + i] = Σ_{j<i} σⱼ² gⱼ eⱼ(k_l)`, `dropped[i]` = error of dropping every vector
/// from `i` on; the error of `c` costs O(L), its storage O(L).
struct MatrixTable {
    let rows: Int
    let columns: Int
    /// Stored rank r.
    let rank: Int
    /// The problem's menu, descending.
    let widths: [Int]
    /// Levels this matrix may use (in its menu and measured), ascending (widest first).
    let usable: [Int]
    let prefix: [Double]
    let dropped: [Double]
    let storage: StorageModel

    /// `allowed`: the widths of the problem's `menu` this matrix may use (its `--bits-for` menu);
    /// nil: all of them.
    init(_ model: ErrorModel, menu: [Int], allowed: [Int]? = nil, storage: StorageModel) {
        let r = model.spectrum.storedRank
        rows = model.spectrum.rows
        columns = model.spectrum.columns
        rank = r
        widths = menu
        let available = Set(model.availableBits).intersection(allowed ?? menu)
        usable = menu.indices.filter { available.contains(menu[$0]) }
        var p = [Double](repeating: 0, count: menu.count * (r + 1))
        for l in usable {
            for i in 0...r { p[l * (r + 1) + i] = model.quantizedError(bits: menu[l], from: 0, to: i) }
        }
        prefix = p
        dropped = (0...r).map { model.droppedError(from: $0) }
        self.storage = storage
    }

    var levels: Int { widths.count }

    /// Predicted error of the counts `c[0..<L]`.
    @inline(__always)
    func error(_ c: UnsafePointer<Int>) -> Double {
        var start = 0, total = 0.0
        for l in 0..<widths.count {
            let n = c[l]
            guard n > 0 else { continue }
            let base = l * (rank + 1)
            total += prefix[base + start + n] - prefix[base + start]
            start += n
        }
        return total + dropped[start]
    }

    /// Exact storage of the counts under the problem's accounting.
    @inline(__always)
    func bits(_ c: UnsafePointer<Int>) -> Int {
        var total = 0
        for l in 0..<widths.count where c[l] > 0 {
            total += storage.segmentBits(bits: widths[l], count: c[l], rows: rows, columns: columns)
        }
        return total
    }

    /// Cost of one vector alone at level `l`.
    func singleVectorBits(level l: Int) -> Int {
        storage.segmentBits(bits: widths[l], count: 1, rows: rows, columns: columns)
    }

    func allocation(_ c: ArraySlice<Int>) -> Allocation {
        var counts: [Int: Int] = [:]
        for (l, n) in zip(widths.indices, c) where n > 0 { counts[widths[l]] = n }
        return Allocation(counts: counts)
    }

    /// The count vector of `allocation` (which must use menu widths only).
    func counts(_ allocation: Allocation) -> [Int] {
        widths.map { allocation.count(bits: $0) }
    }
}

/// A change of one matrix's counts: `count` vectors leave level `from` (−1: new vectors are
/// kept) and enter level `to` (−1: the vectors are dropped).
struct Move {
    var from: Int
    var to: Int
    var count: Int
    /// Change of the predicted error (negative: a gain).
    var deltaError: Double
    /// Change of the exact storage.
    var deltaBits: Int
    /// Ranking value (larger is better), see ``MatrixTable/bestFill`` and ``MatrixTable/bestTrim``.
    var score: Double
}

extension MatrixTable {
    /// Calls `body` with every move of `c`: `n` vectors (n = 1, or the bulk size of one metadata
    /// group) kept at a new level, dropped from a level, or moved to the adjacent usable level
    /// (narrower or wider). Bulk moves let the searches cross the steps of the per-group metadata
    /// that single vectors cannot pay for. O(L) moves, O(L) each.
    @inline(__always)
    func forEachMove(_ c: UnsafeMutablePointer<Int>, _ body: (Int, Int, Int, Double, Int) -> Void) {
        let e0 = error(c), b0 = bits(c)
        var kept = 0
        for l in 0..<levels { kept += c[l] }
        func probe(_ from: Int, _ to: Int, _ n: Int) {
            if from >= 0 { c[from] -= n }
            if to >= 0 { c[to] += n }
            let e = error(c), b = bits(c)
            if from >= 0 { c[from] += n }
            if to >= 0 { c[to] -= n }
            body(from, to, n, e - e0, b - b0)
        }
        for pass in 0..<2 {
            let n = pass == 0 ? 1 : bulk
            for (u, level) in usable.enumerated() {
                if kept + n <= rank { probe(-1, level, n) }
                guard c[level] >= n else { continue }
                probe(level, -1, n)
                if u + 1 < usable.count { probe(level, usable[u + 1], n) }
                if u > 0 { probe(level, usable[u - 1], n) }
            }
        }
    }

    /// Vectors per bulk move: the metadata group size under artifact accounting, 16 otherwise.
    var bulk: Int { storage.accounting == .artifact ? storage.groupSize : 16 }

    /// The move with the largest error gain per added bit among those adding at most `maxBits`
    /// bits; moves that gain and free bits rank first. Nil when nothing gains.
    func bestFill(_ c: UnsafeMutablePointer<Int>, maxBits: Int) -> Move? {
        var best: Move?
        forEachMove(c) { from, to, n, de, db in
            guard de < 0, db <= maxBits else { return }
            let score = db <= 0 ? Double.infinity : -de / Double(db)
            if best == nil || score > best!.score { best = Move(from: from, to: to, count: n, deltaError: de, deltaBits: db, score: score) }
        }
        return best
    }

    /// The move freeing bits with the smallest error loss per freed bit (score = −loss per bit).
    func bestTrim(_ c: UnsafeMutablePointer<Int>) -> Move? {
        var best: Move?
        forEachMove(c) { from, to, n, de, db in
            guard db < 0 else { return }
            let score = -de / Double(-db)
            if best == nil || score > best!.score { best = Move(from: from, to: to, count: n, deltaError: de, deltaBits: db, score: score) }
        }
        return best
    }

    @inline(__always)
    func apply(_ m: Move, to c: UnsafeMutablePointer<Int>) {
        if m.from >= 0 { c[m.from] -= m.count }
        if m.to >= 0 { c[m.to] += m.count }
    }
}
