import LinearAlgebra
import Optimizer

/// Round-to-nearest quantization with min–max groups: each row's columns are split into groups of
/// `groupSize` consecutive columns, each with its own ``GroupGrid`` (scale and zero in F16); with
/// `clipSearch` the grid's range is the shrunk min–max with the least squared error (``rowGrids``).
///
/// Without `clipSearch` every value ends within scale/2 of its dequantized value (scale = the
/// stored F16 scale). O(rows·columns) (×80 with `clipSearch`), no BLAS.
public struct RTN: Sendable, Hashable {
    /// 2…8.
    public var bits: Int
    /// Columns per group; ≥ columns gives one group per row.
    public var groupSize: Int
    /// Symmetric grid (zero fixed at 2^(k−1)) instead of asymmetric min–max.
    public var symmetric: Bool
    /// Search each group's clipping range (``rowGrids``) instead of taking its min–max.
    public var clipSearch: Bool

    public init(bits: Int, groupSize: Int = StorageModel.defaultGroupSize, symmetric: Bool = false, clipSearch: Bool = false) {
        self.bits = bits
        self.groupSize = groupSize
        self.symmetric = symmetric
        self.clipSearch = clipSearch
    }

    /// Quantizes `w` (`rows × columns`, input dimension = columns).
    /// - Throws: ``QuantizationError/invalidOption(option:reason:)`` for bits outside 2…8 or a
    ///   non-positive group size, ``QuantizationError/nonFiniteInput(what:)``,
    ///   ``QuantizationError/notRepresentableInF16(what:value:)`` for values beyond F16's range.
    public func quantize(_ w: Matrix<Float>) throws(QuantizationError) -> QuantizedWeight {
        try validateBits(bits)
        guard groupSize > 0 else { throw .invalidOption(option: "group size", reason: "must be positive, got \(groupSize)") }
        try validateFinite(w, "weight")
        let (rows, columns) = (w.rows, w.columns)
        let groups = (columns + groupSize - 1) / groupSize
        var codes = [UInt8](repeating: 0, count: rows * columns)
        var scales = [Float16](repeating: 0, count: rows * groups)
        var zeros = [Float16](repeating: 0, count: rows * groups)
        var out = Matrix<Float>(rows: rows, columns: columns)
        for g in 0..<groups {
            let range = (g * groupSize)..<min((g + 1) * groupSize, columns)
            let grids = try rowGrids(w, columns: range, bits: bits, symmetric: symmetric, clipSearch: clipSearch)
            for (r, grid) in grids.enumerated() {
                scales[r * groups + g] = Float16(grid.scale)
                zeros[r * groups + g] = Float16(grid.zero)
            }
            w.withUnsafeBufferPointer { pw in
                out.withUnsafeMutableBufferPointer { po in
                    for j in range {
                        for r in 0..<rows {
                            let q = grids[r].code(pw[r + j * rows])
                            codes[r * columns + j] = UInt8(q)
                            po[r + j * rows] = grids[r].value(ofCode: q)
                        }
                    }
                }
            }
        }
        return QuantizedWeight(rows: rows, columns: columns, bits: bits, groupSize: groupSize, codes: codes,
                               scales: scales, zeros: zeros, halfValues: [], permutation: nil, dequantized: out,
                               dampening: nil, warnings: [])
    }
}

/// Per row, the grid of the columns in `range` of `w`: from the row's min–max;
/// with `clipSearch`, from the min–max shrunk by the factor p ∈ {1, 0.99, …, 0.21} whose grid
/// gives the least Σ (ŵ − w)² over the group (the first such p; the search of the GPTQ
/// reference's `mse` option, with a squared norm). Values beyond a shrunk range are clamped to
/// its ends, which costs less than the coarser steps of the full range when a few values stand out.
func rowGrids(
    _ w: Matrix<Float>, columns range: Range<Int>, bits: Int, symmetric: Bool, clipSearch: Bool
) throws(QuantizationError) -> [GroupGrid] {
    try w.withUnsafeBufferPointer { p in
        Result { () throws(QuantizationError) in
            try rowGrids(p, rows: w.rows, columns: range, bits: bits, symmetric: symmetric, clipSearch: clipSearch)
        }
    }.get()
}

private func rowGrids(
    _ p: UnsafeBufferPointer<Float>, rows: Int, columns range: Range<Int>, bits: Int, symmetric: Bool, clipSearch: Bool
) throws(QuantizationError) -> [GroupGrid] {
    let extremes = rowMinMax(p, rows: rows, columns: range)
    var grids = [GroupGrid]()
    grids.reserveCapacity(rows)
    for (lo, hi) in extremes { grids.append(try GroupGrid(minimum: lo, maximum: hi, bits: bits, symmetric: symmetric)) }
    guard clipSearch, !range.isEmpty else { return grids }
    // Eight rows at a time (consecutive rows are contiguous in column-major storage), the rest one
    // by one. Both evaluate a trial exactly as the scalar loop did (the same Float operations, the
    // squared errors summed in Double in column order), so they choose the same grids.
    var first = 0
    var hints = [Int](repeating: 0, count: ClipSearch.lanes)
    while first + ClipSearch.lanes <= rows {
        try ClipSearch.searchLanes(p, rows: rows, first: first, columns: range, bits: bits, symmetric: symmetric,
                                   extremes: extremes, grids: &grids, hints: &hints)
        first += ClipSearch.lanes
    }
    var values = [Float](repeating: 0, count: range.count)
    for r in first..<rows {
        // The row's values once, contiguous (a column-major row is strided by `rows`), and each
        // trial stopped as soon as it cannot beat the best: the same choice, fewer operations.
        for (k, j) in range.enumerated() { values[k] = p[r + j * rows] }
        func squaredError(_ grid: GroupGrid, below bound: Double) -> Double {
            var e = 0.0
            for x in values {
                let d = Double(grid.value(ofCode: grid.code(x)) - x)
                e += d * d
                if e >= bound { return e }
            }
            return e
        }
        let (lo, hi) = extremes[r]
        var best = grids[r]
        var bestError = squaredError(best, below: .infinity)
        for step in 1..<ClipSearch.trials {
            let grid = try GroupGrid(minimum: lo * ClipSearch.shrink(step), maximum: hi * ClipSearch.shrink(step), bits: bits, symmetric: symmetric)
            let e = squaredError(grid, below: bestError)
            if e < bestError { best = grid; bestError = e }
        }
        grids[r] = best
    }
    return grids
}

/// The clipping search of ``rowGrids(_:columns:bits:symmetric:clipSearch:)``: trial `step` shrinks
/// the min–max range by (100 − step)/100, steps 0…79; the first trial with the least Σ (ŵ − w)² wins.
enum ClipSearch {
    static let trials = 80
    static let lanes = 8

    @inline(__always) static func shrink(_ step: Int) -> Float { Float(100 - step) / 100 }

    /// The search for rows `first ..< first + 8` at once, one row per SIMD lane. A lane's error is
    /// Σⱼ Double(ŵⱼ − wⱼ)² over the columns in order, as the scalar loop sums it; the code and value
    /// of each element are the scalar ``GroupGrid/code(_:)`` and ``GroupGrid/value(ofCode:)`` (IEEE
    /// division, ``roundToEven(_:)``, clamp; a lane with scale 0 takes its zero).
    ///
    /// Each lane first tries its `hints` step (the step the same lane of the previous block chose:
    /// neighbouring rows tend to clip alike), then every step in order; a lane keeps the least
    /// error, ties going to the smaller step — the scalar search's choice, whatever the order. A
    /// trial stops once every lane's partial sum exceeds its best (or equals it at a later step:
    /// partial sums of squares never decrease, so a stopped lane could not have won), which a good
    /// hint makes early for most steps. `hints` becomes this block's choices. Cost per trial
    /// evaluated: one division and ~12 vector operations per 8 values.
    static func searchLanes(
        _ p: UnsafeBufferPointer<Float>, rows: Int, first: Int, columns range: Range<Int>, bits: Int, symmetric: Bool,
        extremes: [(Float, Float)], grids: inout [GroupGrid], hints: inout [Int]
    ) throws(QuantizationError) {
        let base = UnsafeRawPointer(p.baseAddress! + first)
        let stride = rows * MemoryLayout<Float>.stride
        let maxqValue = Float((1 << bits) - 1)
        let maxq = SIMD8<Float>(repeating: maxqValue)
        let zeros = SIMD8<Float>()
        /// Σ (ŵ − w)² per lane, stopped once no lane can beat (best, bestStep) at step `step`.
        func squaredErrors(_ scale: SIMD8<Float>, _ zero: SIMD8<Float>, step: SIMD8<Int32>,
                           best: SIMD8<Double>, bestStep: SIMD8<Int32>) -> SIMD8<Double> {
            var e = SIMD8<Double>()
            let flat = scale .<= zeros
            let anyFlat = any(flat)
            let later = step .> bestStep
            var j = range.lowerBound
            while j < range.upperBound {
                let stop = Swift.min(j + 16, range.upperBound)
                while j < stop {
                    let x = (base + j * stride).loadUnaligned(as: SIMD8<Float>.self)
                    var q = roundToEven(x / scale) + zero
                    q = q.replacing(with: zeros, where: q .< zeros)
                    q = q.replacing(with: maxq, where: q .> maxq)
                    if anyFlat { q = q.replacing(with: zero, where: flat) }
                    let d = SIMD8<Double>(scale * (q - zero) - x)
                    e += d * d
                    j += 1
                }
                let above = e .> best, equal = e .== best
                var done = true
                for l in 0..<lanes where !(above[l] || (equal[l] && later[l])) { done = false; break }
                if done { break }
            }
            return e
        }
        func grid(_ lane: Int, step: Int) throws(QuantizationError) -> GroupGrid {
            let (lo, hi) = extremes[first + lane]
            guard step > 0 else { return grids[first + lane] }
            let shrink = Self.shrink(step)
            return try GroupGrid(minimum: lo * shrink, maximum: hi * shrink, bits: bits, symmetric: symmetric)
        }
        var bestScale = SIMD8<Float>(), bestZero = SIMD8<Float>()
        var bestError = SIMD8<Double>(repeating: .infinity), bestStep = SIMD8<Int32>(repeating: Int32(trials))
        var scale = SIMD8<Float>(), zero = SIMD8<Float>(), steps = SIMD8<Int32>()
        // The hinted steps, then every step in order.
        for pass in -1..<trials {
            for l in 0..<lanes {
                let step = pass < 0 ? hints[l] : pass
                let g = try grid(l, step: step)
                scale[l] = g.scale
                zero[l] = g.zero
                steps[l] = Int32(step)
            }
            let e = squaredErrors(scale, zero, step: steps, best: bestError, bestStep: bestStep)
            let better = e .< bestError
            let tie = e .== bestError
            for l in 0..<lanes where better[l] || (tie[l] && steps[l] < bestStep[l]) {
                bestScale[l] = scale[l]
                bestZero[l] = zero[l]
                bestError[l] = e[l]
                bestStep[l] = steps[l]
            }
        }
        for l in 0..<lanes {
            grids[first + l] = GroupGrid(scale: bestScale[l], zero: bestZero[l], maxq: maxqValue)
            hints[l] = Int(bestStep[l])
        }
    }
}

/// Per row, the minimum and maximum over the columns in `range` of a column-major buffer.
private func rowMinMax(_ p: UnsafeBufferPointer<Float>, rows: Int, columns range: Range<Int>) -> [(Float, Float)] {
    var lo = [Float](repeating: .infinity, count: rows), hi = [Float](repeating: -.infinity, count: rows)
    for j in range {
        for r in 0..<rows {
            let x = p[r + j * rows]
            lo[r] = min(lo[r], x)
            hi[r] = max(hi[r], x)
        }
    }
    return Array(zip(lo, hi))
}

/// 1-bit quantization (BitDelta-style, per row): ŵ = s·sign(w) with s = mean |w| of the row
/// (accumulated in Double), stored in F16 (rounded to nearest); code 1 for w ≥ 0, 0 for w < 0
/// (a zero weight becomes +s: one bit has no zero). O(rows·columns).
public struct Sign: Sendable, Hashable {
    public init() {}

    public func quantize(_ w: Matrix<Float>) throws(QuantizationError) -> QuantizedWeight {
        try validateFinite(w, "weight")
        let (rows, columns) = (w.rows, w.columns)
        var sums = [Double](repeating: 0, count: rows)
        w.withUnsafeBufferPointer { p in
            for j in 0..<columns { for r in 0..<rows { sums[r] += Double(abs(p[r + j * rows])) } }
        }
        var scales = [Float16]()
        for r in 0..<rows {
            let s = Float16(columns > 0 ? sums[r] / Double(columns) : 0)
            guard s.isFinite else { throw .notRepresentableInF16(what: "1-bit scale of row \(r)", value: sums[r] / Double(columns)) }
            scales.append(s)
        }
        var codes = [UInt8](repeating: 0, count: rows * columns)
        var out = Matrix<Float>(rows: rows, columns: columns)
        w.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for j in 0..<columns {
                    for r in 0..<rows {
                        let positive = p[r + j * rows] >= 0
                        codes[r * columns + j] = positive ? 1 : 0
                        o[r + j * rows] = positive ? Float(scales[r]) : -Float(scales[r])
                    }
                }
            }
        }
        return QuantizedWeight(rows: rows, columns: columns, bits: 1, groupSize: columns, codes: codes, scales: scales,
                               zeros: [], halfValues: [], permutation: nil, dequantized: out, dampening: nil, warnings: [])
    }
}

/// 16-bit storage: each value rounded to the nearest F16 (relative error ≤ 2⁻¹¹ for normal
/// values). O(rows·columns).
public struct F16: Sendable, Hashable {
    public init() {}

    public func quantize(_ w: Matrix<Float>) throws(QuantizationError) -> QuantizedWeight {
        try validateFinite(w, "weight")
        let (rows, columns) = (w.rows, w.columns)
        var halves = [Float16](repeating: 0, count: rows * columns)
        var out = Matrix<Float>(rows: rows, columns: columns)
        var overflow: Float?
        w.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                for j in 0..<columns {
                    for r in 0..<rows {
                        let h = Float16(p[r + j * rows])
                        if !h.isFinite { overflow = p[r + j * rows] }
                        halves[r * columns + j] = h
                        o[r + j * rows] = Float(h)
                    }
                }
            }
        }
        if let overflow { throw .notRepresentableInF16(what: "16-bit value", value: Double(overflow)) }
        return QuantizedWeight(rows: rows, columns: columns, bits: 16, groupSize: 0, codes: [], scales: [], zeros: [],
                               halfValues: halves, permutation: nil, dequantized: out, dampening: nil, warnings: [])
    }
}
