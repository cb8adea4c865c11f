/// How many singular vectors of one matrix get each bit-width.
///
/// Bit-widths never increase along the singular index (vectors of larger singular values never get
/// fewer bits), so an allocation is fully described by its count per bit-width: the vectors are
/// laid out in descending bit-width order, `[0, c₁₆) → 16 bits`, `[c₁₆, c₁₆ + c₈) → 8 bits`, …;
/// everything past ``rank`` is dropped (0 bits).
///
/// One allocation is not a count vector: ``dense``, the delta ΔW kept whole as a dense F16
/// `h_out × h_in` tensor instead of singular vectors (what a `keep` pin asks for). It has no
/// segments and no vectors; ``StorageModel`` counts it as the dense size and ``ErrorModel``
/// predicts no error for it (the F16 rounding is not modelled).
public struct Allocation: Hashable, Sendable {
    /// Vector counts keyed by bit-width (only positive widths, only positive counts).
    public private(set) var counts: [Int: Int]
    /// Whether ΔW is stored dense (``dense``) rather than as singular vectors; `counts` is then empty.
    public private(set) var isDense = false

    public init(counts: [Int: Int] = [:]) {
        precondition(counts.keys.allSatisfy { $0 > 0 }, "allocations list positive bit-widths only")
        precondition(counts.values.allSatisfy { $0 >= 0 }, "vector counts must not be negative")
        self.counts = counts.filter { $0.value > 0 }
    }

    public init(segments: [Segment]) {
        var c: [Int: Int] = [:]
        var expectedStart = 0, lastBits = Int.max
        for s in segments where s.bits > 0 && s.count > 0 {
            precondition(s.start == expectedStart, "segments must be consecutive from 0")
            precondition(s.bits < lastBits, "segment bit-widths must strictly decrease")
            c[s.bits] = s.count
            expectedStart = s.end
            lastBits = s.bits
        }
        self.init(counts: c)
    }

    public static let empty = Allocation()

    /// ΔW kept whole, as a dense F16 tensor (no singular vectors).
    public static let dense: Allocation = {
        var a = Allocation()
        a.isDense = true
        return a
    }()

    /// Number of vectors kept (at any positive bit-width).
    public var rank: Int { counts.values.reduce(0, +) }

    public func count(bits: Int) -> Int { counts[bits] ?? 0 }

    public mutating func setCount(_ count: Int, bits: Int) {
        precondition(bits > 0 && count >= 0)
        precondition(!isDense, "a dense allocation has no vector counts")
        counts[bits] = count > 0 ? count : nil
    }

    /// The consecutive segments, highest bit-width first.
    public var segments: [Segment] {
        var start = 0
        return counts.keys.sorted(by: >).map { bits in
            defer { start += counts[bits]! }
            return Segment(start: start, end: start + counts[bits]!, bits: bits)
        }
    }

    /// Bit-width of vector `i` (0 when dropped).
    public func bits(ofVector i: Int) -> Int {
        segments.first { $0.start <= i && i < $0.end }?.bits ?? 0
    }
}

/// Vectors `[start, end)` of a matrix's singular basis, all at `bits` bits.
public struct Segment: Hashable, Sendable, Codable {
    public var start: Int
    public var end: Int
    public var bits: Int

    public init(start: Int, end: Int, bits: Int) {
        precondition(0 <= start && start <= end, "segment [\(start), \(end)) is not a range")
        self.start = start
        self.end = end
        self.bits = bits
    }

    public var count: Int { end - start }
}
