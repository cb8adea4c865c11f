import Foundation
import ModelProfiles
import Reporting

/// Why a plan cannot be made.
public enum PlanningError: Error, Equatable, CustomStringConvertible {
    /// The budget of `unit` cannot hold the smallest plan the strategy can make there.
    case infeasibleBudget(unit: String, budgetBits: Int, smallestFeasibleBits: Int)
    /// A mix needs `bits`-bit vectors, which a member of `unit` cannot use (not in the menu or
    /// its `--bits-for` menu, or no measured error at that width).
    case bitWidthUnavailable(unit: String, bits: Int)
    /// The pins alone need `pinnedBits`, more than the budget: each pin's bits and matrices.
    case pinsExceedBudget(budgetBits: Int, pinnedBits: Int, pins: [PinCost])
    /// A preset pin's fixed segments need `smallestBits` in `matrix`, more than its share of the budget.
    case pinnedPresetInfeasible(pin: String, matrix: String, shareBits: Int, smallestBits: Int)
    /// Pins or bits-for rules that do not fit the matrices (``OverrideError``).
    case overrides(OverrideError)

    /// What one pin costs: the bits of the matrices it fixed.
    public struct PinCost: Sendable, Equatable {
        public var pin: String
        public var matrices: Int
        public var bits: Int
    }

    public var description: String {
        func bits(_ n: Int) -> String { "\(n) bits (\(Format.bytes(Double(n) / 8)))" }
        switch self {
        case let .infeasibleBudget(unit, budget, smallest):
            return "budget infeasible for \(unit): \(budget) bits given, the smallest feasible is \(smallest) bits"
                + " (\(Format.bytes(Double(smallest) / 8)))"
        case let .bitWidthUnavailable(unit, bits):
            return "\(bits)-bit vectors are not available for \(unit): the width is not in the menu (--bits, --bits-for) or was not measured"
        case let .pinsExceedBudget(budget, pinned, pins):
            let each = pins.map { "'\($0.pin)' \(bits($0.bits)) on \($0.matrices) matri\($0.matrices == 1 ? "x" : "ces")" }
            return "the pins alone need \(bits(pinned)), more than the budget of \(bits(budget)) by \(bits(pinned - budget)): "
                + each.joined(separator: ", ")
        case let .pinnedPresetInfeasible(pin, matrix, share, smallest):
            return "pin '\(pin)': the preset's fixed segments need \(bits(smallest)) in \(matrix), "
                + "more than its share of the budget, \(bits(share))"
        case let .overrides(error): return error.description
        }
    }
}

/// The shape of one matrix, for planning without an error model.
public struct MatrixShape: Sendable, Equatable {
    public var name: String
    public var type: LayerType
    public var rows: Int
    public var columns: Int
    /// The most vectors a plan may keep: min(rows, columns), or the stored rank of an analysis.
    public var maxRank: Int

    public init(name: String, type: LayerType, rows: Int, columns: Int, maxRank: Int? = nil) {
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
        self.maxRank = maxRank ?? min(rows, columns)
    }
}

extension PrecisionPreset {
    /// The preset's allocations for matrices that share one budget and one mix: every matrix gets
    /// the fixed segments (capped at its rank), then the same number `n` of vectors at the last
    /// segment's width, `n` as large as the shared budget allows (binary search: storage grows
    /// with `n`). A last segment with a count is not filled.
    ///
    /// - Throws: ``PlanningError/infeasibleBudget(unit:budgetBits:smallestFeasibleBits:)`` when the
    ///   fixed segments alone exceed the budget.
    public func allocations(
        for shapes: [MatrixShape], budgetBits: Int, storage: StorageModel, unit: String
    ) throws(PlanningError) -> [Allocation] {
        func allocations(fill n: Int) -> [Allocation] {
            shapes.map { shape in
                var a = Allocation(), used = 0
                for s in segments {
                    let take = min(s.count ?? n, shape.maxRank - used)
                    guard take > 0 else { break }
                    a.setCount(a.count(bits: s.bits) + take, bits: s.bits)
                    used += take
                }
                return a
            }
        }
        func bits(_ allocations: [Allocation]) -> Int {
            zip(shapes, allocations).reduce(0) { $0 + storage.bits(of: $1.1, rows: $1.0.rows, columns: $1.0.columns) }
        }
        let fixed = bits(allocations(fill: 0))
        guard fixed <= budgetBits else {
            throw .infeasibleBudget(unit: unit, budgetBits: budgetBits, smallestFeasibleBits: fixed)
        }
        guard segments.last?.count == nil else { return allocations(fill: 0) }
        // Largest n in [0, maxRank] with bits(n) ≤ budget.
        var low = 0, high = shapes.map(\.maxRank).max() ?? 0
        while low < high {
            let mid = (low + high + 1) / 2
            if bits(allocations(fill: mid)) <= budgetBits { low = mid } else { high = mid - 1 }
        }
        return allocations(fill: low)
    }
}
