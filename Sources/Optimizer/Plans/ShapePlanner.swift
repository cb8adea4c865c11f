import Foundation
import ModelProfiles

/// Why a plan request cannot be served (beyond an infeasible budget).
public enum PlanRequestError: Error, Equatable, CustomStringConvertible {
    /// Shape-only plans have no error model, so only presets can make them.
    case strategyNeedsErrorModel(strategy: String)
    /// The preset uses a bit-width the bits menu does not allow.
    case presetOutsideMenu(preset: String, bits: Int, menu: [Int])
    case infeasible(PlanningError)

    public var description: String {
        switch self {
        case let .strategyNeedsErrorModel(strategy):
            "strategy '\(strategy)' needs measured spectra (an analysis store); a plan from a profile's shapes alone can only use a preset (--strategy preset:NAME)"
        case let .presetOutsideMenu(preset, bits, menu):
            "preset '\(preset)' uses \(bits)-bit vectors, which --bits \(menu.map(String.init).joined(separator: ",")) does not allow"
        case let .infeasible(error): error.description
        }
    }
}

/// The budget units of `scope` for matrices of the given shapes, with the same sharing rule as
/// ``PlanningProblem/units``: one unit for `global`, one per layer type (sorted), one per matrix;
/// a unit's budget is `⌊total · dense(unit) / dense(all)⌋`.
public func budgetUnits(for shapes: [MatrixShape], budgetBits: Int, scope: Scope) -> [PlanningProblem.Unit] {
    let dense = shapes.map { Double(StorageModel.denseBits(rows: $0.rows, columns: $0.columns)) }
    let total = dense.reduce(0, +)
    func share(_ members: [Int]) -> Int {
        total > 0 ? Int((Double(budgetBits) * members.reduce(0) { $0 + dense[$1] } / total).rounded(.down)) : 0
    }
    switch scope {
    case .global:
        return [PlanningProblem.Unit(name: "global", members: Array(shapes.indices), budgetBits: budgetBits)]
    case .type:
        return LayerType.allCases.compactMap { type in
            let members = shapes.indices.filter { shapes[$0].type == type }
            return members.isEmpty ? nil : PlanningProblem.Unit(name: type.rawValue, members: members, budgetBits: share(members))
        }
    case .matrix:
        return shapes.indices.map { PlanningProblem.Unit(name: shapes[$0].name, members: [$0], budgetBits: share([$0])) }
    }
}

/// Identity of a profile: SHA-256 of its canonical JSON (sorted keys, no whitespace).
public func profileHash(_ profile: ModelProfile) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // Encoding plain structs of strings and integers cannot fail.
    let data = (try? encoder.encode(profile)) ?? Data()
    return sha256Hex(Array(data))
}

/// The planned matrices of a profile as shapes.
public func matrixShapes(of profile: ModelProfile) -> [MatrixShape] {
    profile.expandedMatrices().map { MatrixShape(name: $0.name, type: $0.type, rows: $0.rows, columns: $0.columns) }
}

/// A plan computed from a profile's shapes alone, with a preset: the columns per bit-width that
/// fill each budget unit (no error model, so predicted errors are null).
///
/// The budget resolves to bits over all planned matrices (``Budget/bits(forShapes:)``), is split
/// into units by `scope`, and each unit gets ``PrecisionPreset/allocations(for:budgetBits:storage:unit:)``.
/// Complexity O(units · matrices · log rank).
public func planFromShapes(
    profile: ModelProfile, preset: PrecisionPreset, budget: GivenBudget,
    storage: StorageModel, scope: Scope, menu: [Int] = ProfileLibrary.bitWidths.sorted(by: >),
    seed: UInt64 = 0, toolVersion: String
) throws(PlanRequestError) -> Plan {
    for s in preset.segments where !menu.contains(s.bits) {
        throw .presetOutsideMenu(preset: preset.name, bits: s.bits, menu: menu)
    }
    let shapes = matrixShapes(of: profile)
    let budgetBits = budget.budget.bits(forShapes: shapes.map { ($0.rows, $0.columns) })
    var allocations = [Allocation](repeating: .empty, count: shapes.count)
    for unit in budgetUnits(for: shapes, budgetBits: budgetBits, scope: scope) {
        let members = unit.members.map { shapes[$0] }
        let result: [Allocation]
        do {
            result = try preset.allocations(for: members, budgetBits: unit.budgetBits, storage: storage, unit: unit.name)
        } catch {
            throw .infeasible(error)
        }
        for (i, a) in zip(unit.members, result) { allocations[i] = a }
    }
    let matrices = zip(shapes, allocations).map { shape, a in
        Plan.Matrix(name: shape.name, type: shape.type, shape: [shape.rows, shape.columns], segments: a.segments,
                    storageBits: storage.bits(of: a, rows: shape.rows, columns: shape.columns))
    }
    return Plan(
        toolVersion: toolVersion,
        source: .init(kind: "profile", name: profile.name, hash: profileHash(profile)),
        budget: .init(given: budget.text, bits: budgetBits),
        storage: storage, scope: scope,
        strategy: .init(name: "preset", preset: preset.name, seed: seed),
        bits: menu, matrices: matrices)
}
