import ModelProfiles

/// Who shares a budget.
public enum Scope: String, Sendable, Codable, CaseIterable {
    /// One budget for all matrices: sensitive matrices can take more than their share.
    case global
    /// One allocation per layer type (attention, MLP), as the paper's released script has it;
    /// each type gets the budget's share of its own dense size.
    case type
    /// Each matrix gets the budget's share of its own dense size.
    case matrix
}

/// A search's input: the matrices with their error models, how storage is counted, the total
/// budget, who shares it, the bit-widths a plan may use, and what the user fixed beforehand
/// (pins and per-matrix menus, ``applying(_:library:)``).
public struct PlanningProblem: Sendable {
    public var models: [ErrorModel]
    public var storage: StorageModel
    /// Total budget over all matrices, in bits (same accounting as `storage`), pinned ones included.
    public var budgetBits: Int
    public var scope: Scope
    /// Allowed positive bit-widths, descending (0, dropping, is always allowed).
    public var menu: [Int]
    /// Pinned matrices and per-matrix menus; ``ResolvedOverrides/none`` when there are none.
    public var overrides: ResolvedOverrides

    public init(
        models: [ErrorModel], storage: StorageModel, budgetBits: Int, scope: Scope, menu: [Int],
        overrides: ResolvedOverrides = .none
    ) {
        precondition(menu.allSatisfy { $0 > 0 } && menu == menu.sorted(by: >) && Set(menu).count == menu.count,
                     "the menu lists distinct positive bit-widths in descending order")
        precondition(overrides.pins.keys.allSatisfy(models.indices.contains) && overrides.menus.keys.allSatisfy(models.indices.contains),
                     "overrides index the problem's matrices")
        self.models = models
        self.storage = storage
        self.budgetBits = budgetBits
        self.scope = scope
        self.menu = menu
        self.overrides = overrides
    }

    /// A set of matrices sharing one budget, and that budget in bits.
    public struct Unit: Sendable, Equatable {
        public var name: String
        /// Indices into ``PlanningProblem/models``.
        public var members: [Int]
        public var budgetBits: Int
    }

    /// The budget units of ``scope``: one for `global`, one per layer type for `type` (sorted by
    /// type), one per matrix for `matrix`. A unit's budget is the total's share of its dense F16
    /// size, rounded down, so units never exceed the total. (With pins, the search's units are
    /// those of the unpinned matrices under what the pins leave: ``solve(_:strategy:seed:)``.)
    public var units: [Unit] {
        budgetUnits(
            for: models.map { MatrixShape(name: $0.spectrum.name, type: $0.spectrum.type, rows: $0.spectrum.rows, columns: $0.spectrum.columns) },
            budgetBits: budgetBits, scope: scope)
    }

    /// Storage in bits of one allocation per model.
    public func storageBits(_ allocations: [Allocation]) -> Int {
        precondition(allocations.count == models.count)
        return zip(models, allocations).reduce(0) {
            $0 + storage.bits(of: $1.1, rows: $1.0.spectrum.rows, columns: $1.0.spectrum.columns)
        }
    }

    /// Predicted error summed over the model, one allocation per model.
    public func predictedError(_ allocations: [Allocation]) -> Double {
        precondition(allocations.count == models.count)
        return zip(models, allocations).reduce(0) { $0 + $1.0.error(of: $1.1) }
    }
}
