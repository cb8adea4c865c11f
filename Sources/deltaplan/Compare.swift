import ArgumentParser
import Foundation
import Optimizer

/// Produces the comparison of `strategies` at `budgets` on the analysis store at `store`.
///
/// To be wired to the analysis store (Analysis module) and the search strategies at merge; until
/// then the command reports that the store is not available in this build.
func loadComparison(store: String, budgets: [Budget], budgetTexts: [String], strategies: [String],
                    storage: StorageModel, scope: Scope, seed: UInt64) throws -> Comparison {
    throw CLIFailure("reading analysis store '\(store)' is not available in this build yet (the Analysis store lands with the analysis branch)")
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare strategies across budgets on an analysis store: storage, α, predicted error, time, gap to exact.")

    @Argument(help: "Analysis store directory (from `deltaplan analyze`).")
    var store: String

    @Option(help: "Budgets, comma-separated (each as for `plan --budget`: '1/16', '850MiB', '1bpp').")
    var budgets: String = "1/32,1/26,1/22,1/20,1/18,1/16"

    @Option(help: "Strategies, comma-separated ('preset:NAME', 'greedy', 'genetic', 'exact').")
    var strategies: String = "preset:delta-come,greedy,genetic,exact"

    @Option(help: "How bits are counted: artifact or paper.")
    var accounting: Accounting = .artifact

    @Option(help: "Quantization group size for artifact accounting.")
    var groupSize: Int = 128

    @Option(help: "Who shares the budget: global, type or matrix.")
    var scope: Scope = .global

    @Option(help: "Random seed of stochastic strategies.")
    var seed: UInt64 = 0

    @Option(help: "Output format: table, markdown, json or svg (a plot of relative error against budget).")
    var format: ComparisonFormat = .table

    @Option(help: "Write the output here instead of standard output.")
    var out: String?

    func parsedBudgets() throws -> [Budget] {
        try budgets.split(separator: ",").map { text in
            do throws(BudgetError) { return try Budget(parsing: String(text)) } catch { throw ValidationError(error.description) }
        }
    }

    func validate() throws {
        guard try !parsedBudgets().isEmpty else { throw ValidationError("--budgets lists no budget") }
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
    }

    func run() throws {
        let comparison = try loadComparison(
            store: store, budgets: try parsedBudgets(), budgetTexts: budgets.split(separator: ",").map(String.init),
            strategies: strategies.split(separator: ",").map(String.init),
            storage: StorageModel(accounting: accounting, groupSize: groupSize), scope: scope, seed: seed)
        let text = comparison.render(format)
        if let out {
            do { try Data(text.utf8).write(to: URL(fileURLWithPath: out), options: .atomic) } catch {
                throw CLIFailure("cannot write \(out): \(error.localizedDescription)")
            }
        } else {
            print(text, terminator: "")
        }
    }
}
