import ModelProfiles

/// A strategy name that names none, as the CLI and the service take them.
public struct StrategyNameError: Error, Equatable, CustomStringConvertible {
    public var name: String
    public var reason: String

    public var description: String { "unknown strategy '\(name)': \(reason)" }
}

extension Strategy {
    /// The forms the CLI and the service accept.
    public static let acceptedNames = "'preset:NAME' (see `deltaplan profiles`), 'greedy', 'genetic' or 'exact'"

    /// The strategy a plan uses when none is named. With an error model (a store): `exact`, the
    /// best end to end on the development pair (BENCHMARKS.md, "quality"). From shapes alone, where
    /// only presets apply: the paper's 8+3+2.
    public static func defaultName(hasErrorModel: Bool) -> String { hasErrorModel ? "exact" : "preset:delta-come" }

    /// Parses `preset:NAME`, `greedy`, `genetic` (default options) or `exact`; presets come from `library`.
    public init(parsing name: String, library: ProfileLibrary) throws(StrategyNameError) {
        switch name {
        case "greedy": self = .greedy
        case "genetic": self = .genetic(GeneticOptions())
        case "exact": self = .exact
        default:
            guard name.hasPrefix("preset:") else { throw StrategyNameError(name: name, reason: "use \(Self.acceptedNames)") }
            do { self = .preset(try library.preset(named: String(name.dropFirst("preset:".count)))) } catch {
                throw StrategyNameError(name: name, reason: error.description)
            }
        }
    }

    /// The name this strategy is parsed from.
    public var name: String {
        switch self {
        case let .preset(p): "preset:\(p.name)"
        case .greedy: "greedy"
        case .genetic: "genetic"
        case .exact: "exact"
        }
    }
}

/// One row of a comparison: a strategy, or a baseline that is not a search (`low-rank`: the
/// `preset:low-rank` plan, top vectors at 16 bits; `bitdelta`: sign(ΔW) times one scale per
/// matrix, 1 bit per parameter whatever the budget, with the error `analyze` measured).
/// Parsed and named here for the CLI and the service alike.
public struct Candidate: Sendable, Equatable, CustomStringConvertible {
    /// How it is written: a strategy's name, `low-rank` or `bitdelta`.
    public let name: String
    /// What plans it; nil for `bitdelta`, which is not a plan.
    public let strategy: Strategy?

    /// The baselines' names.
    public static let baselines = ["low-rank", "bitdelta"]
    /// What a comparison runs when it is given no list.
    public static let defaultNames = ["greedy", "genetic", "exact", "preset:delta-come", "low-rank", "bitdelta"]
    /// The forms the CLI and the service accept.
    public static let acceptedNames = Strategy.acceptedNames + ", or a baseline: 'low-rank', 'bitdelta'"

    /// Parses a strategy name (``Strategy/init(parsing:library:)``) or a baseline.
    public init(parsing name: String, library: ProfileLibrary) throws(StrategyNameError) {
        self.name = name
        switch name {
        case "bitdelta": strategy = nil
        case "low-rank": strategy = try Strategy(parsing: "preset:low-rank", library: library)
        default:
            do { strategy = try Strategy(parsing: name, library: library) } catch {
                // An unknown preset keeps its own reason (the presets there are).
                throw name.hasPrefix("preset:") ? error : StrategyNameError(name: name, reason: "use \(Self.acceptedNames)")
            }
        }
    }

    /// Each strategy at its ``Strategy/defaultScope``; `bitdelta` has none.
    public var defaultScope: Scope? { strategy?.defaultScope }

    public var description: String { name }
}
