import Analysis
import ArgumentParser
import Foundation
import Checkpoint
import LinearAlgebra
import ModelProfiles
import Optimizer
import Quantization
import Reporting
import Service

// The library's vocabulary as command-line arguments: each value is parsed by the library's own
// parser (the one the service uses too), so both faces accept and reject the same text.

extension Accounting: ExpressibleByArgument {}
extension Scope: ExpressibleByArgument {}
extension ComparisonFormat: ExpressibleByArgument {}
extension QuantizationMethod: ExpressibleByArgument {}
extension ErrorObjective: ExpressibleByArgument {}
extension SegmentOrder: ExpressibleByArgument {}
extension ExecutorKind: ExpressibleByArgument {}
extension ErrorTarget.Unit: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument.uppercased()) }
}

/// `greedy`, `genetic`, `exact` or `preset:NAME` with a built-in preset (``Strategy/init(parsing:library:)``).
extension Strategy: ExpressibleByArgument {
    public init?(argument: String) {
        guard let library = try? ProfileLibrary.builtIn(), let strategy = try? Strategy(parsing: argument, library: library) else {
            return nil
        }
        self = strategy
    }

    /// Listed in the error for an unknown strategy.
    public static var allValueStrings: [String] {
        ["exact", "genetic", "greedy"] + ((try? ProfileLibrary.builtIn())?.presets.map { "preset:\($0.name)" } ?? [])
    }
}

// Values whose errors need their reason (a budget's range, a width that is not offered): parsed by
// `transform`, so that the message says what is wrong, not only that the value is invalid.

/// `--budget`: ``GivenBudget/init(parsing:field:)``.
@Sendable func budgetArgument(_ text: String) throws -> GivenBudget {
    do { return try GivenBudget(parsing: text) } catch { throw ValidationError(error.description) }
}

/// `--budgets`: a comma-separated list of budgets.
@Sendable func budgetsArgument(_ text: String) throws -> [GivenBudget] {
    let budgets = try text.split(separator: ",").map { part in
        do throws(BudgetError) { return try GivenBudget(parsing: String(part), field: "--budgets") } catch {
            throw ValidationError(error.description)
        }
    }
    guard !budgets.isEmpty else { throw ValidationError("--budgets lists no budget") }
    return budgets
}

/// `--shard`: ``Shard/init(parsing:)``.
@Sendable func shardArgument(_ text: String) throws -> Shard {
    do { return try Shard(parsing: text) } catch { throw ValidationError(error.description) }
}

/// `--bits`: ``BitMenu/parse(_:field:)``.
@Sendable func bitMenuArgument(_ text: String) throws -> [Int] {
    do { return try BitMenu.parse(text) } catch { throw ValidationError(error.description) }
}

/// `--strategies`: a comma-separated list of ``Candidate``s.
@Sendable func candidatesArgument(_ text: String) throws -> [Candidate] {
    let library: ProfileLibrary
    do { library = try ProfileLibrary.builtIn() } catch { throw ValidationError("\(error)") }
    return try text.split(separator: ",").map { name in
        do throws(StrategyNameError) { return try Candidate(parsing: String(name), library: library) } catch {
            throw ValidationError(error.description)
        }
    }
}

/// `--pin`: ``Pin/init(parsing:field:)``.
@Sendable func pinArgument(_ text: String) throws -> Pin {
    do { return try Pin(parsing: text) } catch { throw ValidationError(error.description) }
}

/// `--bits-for`: ``BitsFor/init(parsing:field:)``.
@Sendable func bitsForArgument(_ text: String) throws -> BitsFor {
    do { return try BitsFor(parsing: text) } catch { throw ValidationError(error.description) }
}

/// `--pin` and `--bits-for`, repeatable: what the user fixes before the search (``Overrides``).
struct OverrideOptions: ParsableArguments {
    @Option(name: .customLong("pin"), help: ArgumentHelp(
        "Fix every matrix whose name REGEX matches (unanchored) before the search; repeatable. SPEC: a preset name (applied to the matrix alone at its share of the budget), segments BITS:COUNT from the widest ('8:2,3:32,2:fill'; 'fill' = the stored vectors left), 'keep' (ΔW carried dense in F16, 16 bits per parameter counted against the budget) or 'drop' (Δ̂ = 0). Pinned matrices spend their bits first; the strategy plans the others with what is left.",
        valueName: "REGEX=SPEC"), transform: pinArgument)
    var pins: [Pin] = []

    @Option(name: .customLong("bits-for"), help: ArgumentHelp(
        "Restrict the widths of every matrix whose name REGEX matches to BITS (comma-separated, within --bits); repeatable.",
        valueName: "REGEX=BITS"), transform: bitsForArgument)
    var bitsFor: [BitsFor] = []

    var overrides: Overrides { Overrides(pins: pins, bitsFor: bitsFor) }

    /// A preset a pin names must exist, before any work.
    func validate() throws {
        do { try overrides.checkPresets() } catch { throw ValidationError(error.description) }
    }
}

/// `--threads`: how many matrices a heavy command works on at once.
struct ThreadOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Cores to use: matrices worked on at once, each on one BLAS thread; the output is byte-identical for every N (default: the number of cores).",
        valueName: "N"))
    var threads: Int = Parallelism.machineThreads

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    /// The parallelism of `--threads`, with OpenBLAS set to one thread (each matrix runs on one).
    func parallelism() -> Parallelism {
        BLASThreads.count = 1
        return Parallelism(threads: threads)
    }
}

/// `--sweep`: ``BudgetSweep/init(parsing:field:)``.
@Sendable func sweepArgument(_ text: String) throws -> BudgetSweep {
    do { return try BudgetSweep(parsing: text) } catch { throw ValidationError(error.description) }
}

/// Checks, before any work, that a file can be written at `path` (given to `option`): its
/// directory exists and is a writable directory, and the path is not a directory itself.
func validateOutputPath(_ path: String, option: String) throws {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw ValidationError("\(option) \(path) is a directory; give a file name")
    }
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
        throw ValidationError("\(option) \(path): directory \(directory) does not exist")
    }
    guard isDirectory.boolValue else { throw ValidationError("\(option) \(path): \(directory) is not a directory") }
    guard FileManager.default.isWritableFile(atPath: directory) else {
        throw ValidationError("\(option) \(path): directory \(directory) is not writable")
    }
}
