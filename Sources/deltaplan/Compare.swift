import ArgumentParser
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare strategies across budgets on an analysis store: storage, α, predicted error, time, gap to exact.")

    @Argument(help: "Analysis store directory (from `deltaplan analyze`).")
    var store: String

    @Option(help: "Budgets, comma-separated (each as for `plan --budget`: '1/16', '850MiB', '1bpp').")
    var budgets: String = "1/32,1/26,1/22,1/20,1/18,1/16"

    @Option(help: "Strategies, comma-separated: 'preset:NAME', 'greedy', 'genetic', 'exact', and the baselines 'low-rank' and 'bitdelta'.")
    var strategies: String = "greedy,genetic,exact,preset:delta-come,low-rank,bitdelta"

    @Option(help: "Calibration file of the store (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "Quantizer the error model measures: gptq (with the calibration) or rtn.")
    var method: QuantizationMethod = .gptq

    @Option(help: "What plans minimize: activation (‖(ΔW − ΔŴ)X‖²), kronecker or paired (the model's output sensitivity, from a calibration file with output statistics; see Docs/calibration-format.md). Default: the strongest the store supports.")
    var objective: ErrorObjective?

    @Option(help: "Segment order the error model measures: feedback or paper (as for plan and compress).")
    var order: SegmentOrder = .default

    @Option(help: "Allowed bit-widths, comma-separated, from 16,8,4,3,2,1; 0 (dropping) is always allowed.")
    var bits: String = "16,8,4,3,2,1,0"

    @Option(help: "How bits are counted: artifact or paper.")
    var accounting: Accounting = .artifact

    @Option(help: "Quantization group size for artifact accounting.")
    var groupSize: Int = 128

    @Option(help: "Who shares the budget: global, type or matrix (default: each strategy its own: type for presets, low-rank and greedy, global for genetic and exact).")
    var scope: Scope?

    @Option(help: "Random seed of stochastic strategies.")
    var seed: UInt64 = 0

    @Option(help: "Output format: table, markdown, json or svg (a plot of relative error against budget).")
    var format: ComparisonFormat = .table

    @Option(help: "Write the output here instead of standard output.")
    var out: String?

    func parsedBudgets() throws -> [Budget] {
        try budgets.split(separator: ",").map { text in
            do throws(BudgetError) { return try Budget(parsing: String(text), field: "--budgets") } catch {
                throw ValidationError(error.description)
            }
        }
    }

    func validate() throws {
        guard try !parsedBudgets().isEmpty else { throw ValidationError("--budgets lists no budget") }
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
        do { _ = try parseBitsMenu(bits) } catch { throw ValidationError(error.description) }
    }

    func run() throws {
        let library: ProfileLibrary
        do { library = try ProfileLibrary.builtIn() } catch { throw CLIFailure(error) }
        let names = strategies.split(separator: ",").map(String.init)
        for name in names where !StorePlanning.baselines.contains(name) {
            do { _ = try Strategy(parsing: name, library: library) } catch { throw CLIFailure(error) }
        }
        let progress = TerminalProgress(label: "measure")
        let comparison: Comparison
        do {
            let planning = try StorePlanning(
                store: URL(fileURLWithPath: store), calibration: calibration.map { URL(fileURLWithPath: $0) },
                measurement: MeasurementOptions(method: method, order: order, groupSize: groupSize),
                objective: objective, progress: progress.step)
            comparison = try planning.compare(
                budgets: Array(zip(try parsedBudgets(), budgets.split(separator: ",").map(String.init))), strategies: names,
                library: library, storage: StorageModel(accounting: accounting, groupSize: groupSize), scope: scope,
                menu: try parseBitsMenu(bits), seed: seed, clock: { Date().timeIntervalSinceReferenceDate })
        } catch { throw CLIFailure(error) }
        let text = comparison.render(format)
        if let out {
            do { try writeAtomically(text, to: URL(fileURLWithPath: out)) } catch { throw CLIFailure(error) }
        } else {
            print(text, terminator: "")
        }
    }
}
