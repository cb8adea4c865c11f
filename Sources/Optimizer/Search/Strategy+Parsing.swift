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
