import Foundation
import ModelProfiles

/// ``Overrides`` matched against a problem's matrices: what each pinned matrix is fixed to, and
/// each restricted matrix's menu. Indices are the problem's ``PlanningProblem/models`` indices.
public struct ResolvedOverrides: Sendable, Equatable {
    /// The rules as given (recorded in plans).
    public var rules: Overrides
    /// The pinned matrices.
    public var pins: [Int: PinnedMatrix]
    /// Matrices with their own menu (from `--bits-for`): a subset of the problem's, descending.
    public var menus: [Int: [Int]]

    public init(rules: Overrides = Overrides(), pins: [Int: PinnedMatrix] = [:], menus: [Int: [Int]] = [:]) {
        self.rules = rules
        self.pins = pins
        self.menus = menus
    }

    public static let none = ResolvedOverrides()
}

/// What a pin fixes one matrix to.
public struct PinnedMatrix: Sendable, Equatable {
    public enum Form: Sendable, Equatable {
        /// Known before the budget: explicit segments (fill resolved), ``Allocation/dense`` (keep)
        /// or ``Allocation/empty`` (drop).
        case allocation(Allocation)
        /// A preset, applied at the matrix's share of the budget when the budget is known.
        case preset(PrecisionPreset)
    }

    /// The first pin that matched (any other that matched says the same).
    public var pin: Pin
    public var form: Form
}

extension Overrides {
    /// Matches the rules against matrices.
    ///
    /// - Parameters:
    ///   - names: the matrices' names, which the patterns search.
    ///   - ranks: each matrix's stored rank (the most vectors a pin may keep; `fill` takes them all).
    ///   - available: each matrix's measured widths.
    ///   - menu: the plan's menu (`--bits`), descending.
    ///   - library: where preset pins' presets come from (nil: the built-in presets).
    /// - Throws: a rule that matches nothing (``OverrideError/noMatch(kind:rule:matrices:)``); two
    ///   pins that match one matrix and fix it differently (or two bits-for rules with different
    ///   widths); a bits-for rule whose
    ///   widths miss the menu; a pin that keeps more vectors than stored, uses a width its matrix
    ///   cannot (menu, bits-for, measured), or names an unknown preset.
    /// Complexity: O(rules · matrices) regular-expression searches.
    public func resolve(
        names: [String], ranks: [Int], available: [Set<Int>], menu: [Int], library: ProfileLibrary? = nil
    ) throws(OverrideError) -> ResolvedOverrides {
        precondition(names.count == ranks.count && names.count == available.count, "one rank and width set per matrix")
        func matches(_ pattern: String) -> [Int] {
            // Patterns were compiled when parsed (``splitRule``); a rule built otherwise that does not
            // compile matches nothing, which is reported as such.
            guard let regex = try? NSRegularExpression(pattern: pattern) else { return [] }
            return names.indices.filter { regex.firstMatch(in: names[$0], range: NSRange(names[$0].startIndex..., in: names[$0])) != nil }
        }
        var resolved = ResolvedOverrides(rules: self)

        var menuRule: [Int: BitsFor] = [:]
        for rule in bitsFor {
            let matched = matches(rule.pattern)
            guard !matched.isEmpty else { throw .noMatch(kind: "bits-for rule", rule: rule.description, matrices: names.count) }
            for m in matched {
                if let first = menuRule[m] {
                    guard first.bits == rule.bits else {
                        throw .conflict(kind: "bits-for rule", matrix: names[m], first: first.description, second: rule.description)
                    }
                    continue
                }
                let own = menu.filter(rule.bits.contains)
                guard !own.isEmpty else { throw .emptyMenu(rule: rule.description, matrix: names[m], menu: menu) }
                menuRule[m] = rule
                resolved.menus[m] = own
            }
        }

        for pin in pins {
            let matched = matches(pin.pattern)
            guard !matched.isEmpty else { throw .noMatch(kind: "pin", rule: pin.description, matrices: names.count) }
            let preset = try pin.preset(in: library)
            for m in matched {
                let widths = (resolved.menus[m] ?? menu).filter(available[m].contains)
                func check(_ bits: Int) throws(OverrideError) {
                    guard widths.contains(bits) else {
                        throw .widthUnavailable(pin: pin.description, matrix: names[m], bits: bits, menu: widths)
                    }
                }
                let form: PinnedMatrix.Form
                switch pin.spec {
                case .keep: form = .allocation(.dense)
                case .drop: form = .allocation(.empty)
                case let .segments(parts):
                    let fixed = parts.reduce(0) { $0 + ($1.count ?? 0) }
                    guard fixed <= ranks[m] else {
                        throw .beyondRank(pin: pin.description, matrix: names[m], vectors: fixed, storedRank: ranks[m])
                    }
                    var a = Allocation()
                    for part in parts {
                        try check(part.bits)
                        a.setCount(part.count ?? ranks[m] - fixed, bits: part.bits)
                    }
                    form = .allocation(a)
                case .preset:
                    guard let preset else { preconditionFailure("a preset pin resolves to a preset") }
                    for s in preset.segments { try check(s.bits) }
                    form = .preset(preset)
                }
                // Pins that fix the matrix alike agree (`8:2,3:fill` and `8:2,3:30` at rank 32,
                // `single-3` and `preset:single-3`); the first is recorded.
                if let first = resolved.pins[m] {
                    guard first.form == form else {
                        throw .conflict(kind: "pin", matrix: names[m], first: first.pin.description, second: pin.description)
                    }
                    continue
                }
                resolved.pins[m] = PinnedMatrix(pin: pin, form: form)
            }
        }
        return resolved
    }
}

extension PlanningProblem {
    /// This problem with `overrides` resolved against its matrices (stored ranks, measured widths,
    /// ``menu``): ``Overrides/resolve(names:ranks:available:menu:library:)``.
    public func applying(_ overrides: Overrides, library: ProfileLibrary? = nil) throws(OverrideError) -> PlanningProblem {
        var problem = self
        problem.overrides = try overrides.resolve(
            names: models.map(\.spectrum.name), ranks: models.map(\.spectrum.storedRank),
            available: models.map { Set($0.availableBits) }, menu: menu, library: library)
        return problem
    }

    /// The widths matrix `m` may use: its `--bits-for` menu, else the problem's.
    public func menu(of m: Int) -> [Int] { overrides.menus[m] ?? menu }
}
