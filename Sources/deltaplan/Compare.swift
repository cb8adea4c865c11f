import Analysis
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

    /// Without --budgets or --sweep.
    static let defaultBudgets: [GivenBudget] = [32, 26, 22, 20, 18, 16].map { .ratio(1 / Double($0)) }

    @Option(help: "Budgets, comma-separated (each as for `plan --budget`: '1/16', '850MiB', '1bpp'). Default: 1/32,1/26,1/22,1/20,1/18,1/16.",
            transform: budgetsArgument)
    var budgets: [GivenBudget]?

    @Option(help: "Instead of --budgets, a sweep of budgets spaced evenly in log α: FROM:TO[:COUNT], e.g. 1/64:1/4 (\(BudgetSweep.defaultCount) budgets by default, the powers of √2 there). With --format svg, each strategy's knee is marked: the point farthest from the chord between its ends on the log–log axes.",
            transform: sweepArgument)
    var sweep: BudgetSweep?

    @Option(help: "Strategies, comma-separated: 'preset:NAME', 'greedy', 'genetic', 'exact', and the baselines 'low-rank' and 'bitdelta'. Default: \(Candidate.defaultNames.joined(separator: ",")).",
            transform: candidatesArgument)
    var strategies: [Candidate]?

    @Option(help: "Calibration file of the store (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "Quantizer the error model measures: gptq (with the calibration) or rtn.")
    var method: QuantizationMethod = .default

    @Option(help: "What plans minimize: activation (‖(ΔW − ΔŴ)X‖²), kronecker or paired (the model's output sensitivity, from a calibration file with output statistics; see Docs/calibration-format.md). Default: the strongest the store supports.")
    var objective: ErrorObjective?

    @Option(help: "Segment order the error model measures: feedback or paper (as for plan and compress).")
    var order: SegmentOrder = .default

    @Option(help: "Allowed bit-widths, comma-separated, from 16,8,4,3,2,1; 0 (dropping) is always allowed.", transform: bitMenuArgument)
    var bits: [Int] = BitMenu.default

    @Option(help: "How bits are counted: artifact or paper.")
    var accounting: Accounting = StorageModel.defaultAccounting

    @Option(help: "Quantization group size for artifact accounting.")
    var groupSize: Int = StorageModel.defaultGroupSize

    @Option(help: "Who shares the budget: global, type or matrix (default: each strategy its own: type for presets, low-rank and greedy, global for genetic and exact).")
    var scope: Scope?

    @Option(help: "Random seed of stochastic strategies.")
    var seed: UInt64 = 0

    @OptionGroup var overrideOptions: OverrideOptions

    @Option(help: "Output format: table, markdown, json or svg (a plot of relative error against budget).")
    var format: ComparisonFormat = .table

    @Option(help: "Write the output here instead of standard output.")
    var out: String?

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
        if budgets != nil, sweep != nil { throw ValidationError("--sweep and --budgets are mutually exclusive: give one") }
    }

    /// --budgets, the --sweep's budgets, or the default.
    var resolvedBudgets: [GivenBudget] { budgets ?? sweep?.budgets ?? Self.defaultBudgets }

    func run() throws {
        let candidates = try strategies ?? candidatesArgument(Candidate.defaultNames.joined(separator: ","))
        let progress = TerminalProgress(label: "measure")
        let comparison: Comparison
        do {
            let measurement = MeasurementOptions(method: method, order: order, groupSize: groupSize)
            try StorePlanning.check(overrideOptions.overrides, against: SpectrumStore(at: URL(fileURLWithPath: store)), menu: bits,
                                    measurement: measurement)
            let planning = try StorePlanning(
                store: URL(fileURLWithPath: store), calibration: calibration.map { URL(fileURLWithPath: $0) },
                measurement: measurement,
                objective: objective, parallelism: threadOptions.parallelism(), progress: progress.step)
            progress.finish("measure: done")
            comparison = try planning.compare(
                budgets: resolvedBudgets, candidates: candidates, storage: StorageModel(accounting: accounting, groupSize: groupSize),
                scope: scope, menu: bits, seed: seed, overrides: overrideOptions.overrides,
                clock: { Date().timeIntervalSinceReferenceDate })
        } catch { throw CLIFailure(error) }
        let text = comparison.render(format)
        if let out {
            try writeAtomically(text, to: URL(fileURLWithPath: out))
        } else {
            print(text, terminator: "")
        }
    }
}
