import Analysis
import ArgumentParser
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Reporting

/// What `--export` can write.
enum ExportFormat: String, ExpressibleByArgument, CaseIterable {
    /// The flags of the paper's released compression script (thunlp/Delta-CoMe run.sh / llama.py).
    case deltaCome = "delta-come"
}

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Make an allocation plan: how many singular vectors of each matrix get each bit-width.",
        discussion: """
            From an analysis store (STORE, from `deltaplan analyze`) every strategy applies: the error model \
            predicts ‖(ΔW − ΔŴ)X‖² of any allocation from the store's spectra and a measurement pass (run once \
            and cached in the store). From a model profile's shapes alone (--profile) only preset strategies \
            apply, since there is no error model; predicted errors are then null. Budgets are shared according to --scope: \
            'global' (one budget for all matrices), 'type' (one per layer type, as the paper's script), \
            'matrix' (each matrix its own share). Without --scope, presets run per type (the paper's rule) and \
            greedy per type (the paper's staged search over per-type rules), genetic and exact globally.

            Example (the paper's Llama-2-7B setting):
              deltaplan plan --profile llama-2-7b --budget 1/16 \\
                --strategy preset:delta-come --accounting paper \\
                --scope type --out plan.json --export delta-come
            """)

    @Argument(help: "Analysis store directory (from `deltaplan analyze`); or give --profile instead.")
    var store: String?

    @Option(help: "Model profile name for shape-only planning (see `deltaplan profiles`), e.g. llama-2-7b.")
    var profile: String?

    @Option(help: "Calibration file of the store (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "Quantizer the error model measures: gptq (with the calibration) or rtn.")
    var method: QuantizationMethod = .default

    @Option(help: "What plans minimize: activation (‖(ΔW − ΔŴ)X‖²), kronecker or paired (the model's output sensitivity, from a calibration file with output statistics; see Docs/calibration-format.md). Default: the strongest the store supports.")
    var objective: ErrorObjective?

    @Option(help: "Segment order the error model measures (recorded in the plan; compress uses it): feedback (error feedback: U toward its least-squares target, σ refitted, later segments absorbing earlier residuals) or paper (Delta-CoMe as published).")
    var order: SegmentOrder = .default

    @OptionGroup var storageOptions: StorageOptions

    @Option(help: "Search strategy: 'preset:NAME' (see `deltaplan profiles`), 'greedy', 'genetic' or 'exact'. Only presets work from a profile's shapes. Default: exact from a store, preset:delta-come from a profile.")
    var strategy: Strategy?

    @Option(help: "Who shares the budget: global, type or matrix (default: type for presets and greedy, global for genetic and exact).")
    var scope: Scope?

    @Option(help: "Allowed bit-widths, comma-separated, from 16,8,4,3,2,1; 0 (dropping) is always allowed.", transform: bitMenuArgument)
    var bits: [Int] = BitMenu.default

    @Option(help: "Random seed of stochastic strategies (recorded in the plan).")
    var seed: UInt64 = 0

    @OptionGroup var overrideOptions: OverrideOptions

    @Option(help: ArgumentHelp("Verify the plan: quantize its segments as compress will and record the measured errors as its predictions (from a STORE; needs the store's checkpoints). ROUNDS: re-solves after that, each with every matrix's error table rescaled to its last measurement; the lowest measured plan is kept.", valueName: "rounds"))
    var verify: Int?

    @Option(help: "Write the plan JSON here (atomically).")
    var out: String?

    @OptionGroup var threadOptions: ThreadOptions

    @Option(help: "Also write a picture of the plan here (SVG, atomically): bits per delta parameter and predicted relative error per matrix, layers × matrix kinds.")
    var plot: String?

    @Option(help: "Also print the plan in another tool's form: 'delta-come' (flags of the paper's released compression script; per-type uniform plans only).")
    var export: ExportFormat?

    func validate() throws {
        guard (store == nil) != (profile == nil) else {
            throw ValidationError("give either an analysis STORE or --profile NAME")
        }
        if profile != nil, calibration != nil { throw ValidationError("--calibration goes with a STORE, not --profile") }
        if profile != nil, storageOptions.maxError != nil {
            throw ValidationError("--max-error needs an error model: plan from an analysis STORE, or give --budget")
        }
        if profile != nil, !overrideOptions.overrides.isEmpty {
            throw ValidationError("--pin and --bits-for need an analysis STORE (its stored ranks and measured widths), not --profile")
        }
        if let plot { try validateOutputPath(plot, option: "--plot") }
        if let verify {
            guard store != nil else { throw ValidationError("--verify needs an analysis STORE (its checkpoints and calibration), not --profile") }
            guard (0...10).contains(verify) else { throw ValidationError("--verify takes 0…10 re-solve rounds, got \(verify)") }
        }
    }

    func run() throws {
        let plan = try store.map(planFromStore) ?? planFromProfile()
        if let out {
            do { try plan.write(to: URL(fileURLWithPath: out)) } catch { throw CLIFailure(error) }
        }
        print(planSummary(plan), terminator: "")
        if let out { print("wrote \(out)") }
        if let plot {
            try writeAtomically(plan.svg(), to: URL(fileURLWithPath: plot))
            print("wrote \(plot)")
        }
        if export == .deltaCome {
            do { print(try plan.deltaComeFlags()) } catch {
                throw CLIFailure("cannot export to delta-come: \(error.description)")
            }
        }
    }

    /// `--strategy`, or the default for what is planned from.
    func resolvedStrategy() throws -> Strategy {
        if let strategy { return strategy }
        do { return try Strategy(parsing: Strategy.defaultName(hasErrorModel: store != nil), library: try ProfileLibrary.builtIn()) } catch {
            throw CLIFailure(error)
        }
    }

    func planFromStore(_ path: String) throws -> Plan {
        let parsed = try resolvedStrategy()
        let progress = TerminalProgress(label: "measure")
        let measurement = MeasurementOptions(method: method, order: order, groupSize: storageOptions.groupSize)
        let planning: StorePlanning
        do {
            try StorePlanning.check(overrideOptions.overrides, against: SpectrumStore(at: URL(fileURLWithPath: path)), menu: bits,
                                    measurement: measurement)
            planning = try StorePlanning(
                store: URL(fileURLWithPath: path), calibration: calibration.map { URL(fileURLWithPath: $0) },
                measurement: measurement,
                objective: objective, parallelism: threadOptions.parallelism(), progress: progress.step)
        } catch { throw CLIFailure(error) }
        progress.finish("measure: done")
        let goal: PlanGoal = storageOptions.target.map { .target($0) } ?? .budget(storageOptions.budget!)
        let verifying = TerminalProgress(label: "verify")
        do {
            let plan = try planning.plan(goal, storage: storageOptions.storage, scope: scope ?? parsed.defaultScope, menu: bits,
                                         strategy: parsed, seed: seed, overrides: overrideOptions.overrides, verify: verify,
                                         parallelism: threadOptions.parallelism(), progress: verifying.step)
            if verify != nil { verifying.finish("verify: done") }
            return plan
        } catch { throw CLIFailure(error) }
    }

    func planFromProfile() throws -> Plan {
        let budget = storageOptions.budget!  // validate(): a profile plan has a budget
        let (_, profile) = try ProfileOptions(profile: profile!).load()
        let strategy = try resolvedStrategy()
        guard case let .preset(preset) = strategy else {
            throw CLIFailure(PlanRequestError.strategyNeedsErrorModel(strategy: strategy.name))
        }
        let plan: Plan
        do {
            plan = try planFromShapes(
                profile: profile, preset: preset, budget: budget, storage: storageOptions.storage,
                scope: scope ?? .type, menu: bits, seed: seed, toolVersion: DeltaPlanVersion.string)
        } catch { throw CLIFailure(error) }
        return plan
    }
}

/// One line per distinct (type, shape, allocation) with how many matrices share it, then totals.
/// A plan made with pins or bits-for rules lists them, with the matrices each fixed, and gets a
/// column saying which rows are pinned (and which are kept dense) or restricted.
func planSummary(_ plan: Plan) -> String {
    struct Key: Hashable { var type: LayerType; var shape: [Int]; var segments: [Segment]; var dense: Bool; var pin: String?; var bits: [Int]? }
    var groups: [Key: Int] = [:], order: [Key] = []
    for m in plan.matrices {
        let key = Key(type: m.type, shape: m.shape, segments: m.segments, dense: m.dense, pin: m.pin?.spec.description, bits: m.bits)
        if groups[key] == nil { order.append(key) }
        groups[key, default: 0] += 1
    }
    let widths = plan.bits, overridden = plan.overrides != nil
    var rows = [["type", "shape", "matrices"] + widths.map { "\($0)-bit" } + ["rank", "storage each"] + (overridden ? ["fixed"] : [])]
    for key in order {
        let a = Allocation(segments: key.segments)
        let bitsEach = plan.matrices.first { $0.type == key.type && $0.shape == key.shape && $0.segments == key.segments && $0.dense == key.dense }!.storageBits
        var fixed: [String] = []
        if let pin = key.pin { fixed.append("pin \(pin)" + (key.dense ? " (dense F16)" : "")) }
        if let bits = key.bits { fixed.append("bits \(BitMenu.text(bits))") }
        rows.append([key.type.rawValue, "\(key.shape[0])×\(key.shape[1])", "\(groups[key]!)"]
                    + widths.map { "\(a.count(bits: $0))" } + ["\(a.rank)", Format.bytes(Double(bitsEach) / 8)]
                    + (overridden ? [fixed.isEmpty ? "—" : fixed.joined(separator: ", ")] : []))
    }
    var text = """
        plan: \(plan.source.kind) \(plan.source.name), budget \(plan.budget.given) = \(plan.budget.bits) bits \
        (\(Format.bytes(Double(plan.budget.bits) / 8))), \(plan.accounting.rawValue) accounting, group size \(plan.groupSize), \
        scope \(plan.scope.rawValue), strategy \(plan.strategy.name)\(plan.strategy.preset.map { ":" + $0 } ?? "")

        """
    if let overrides = plan.overrides {
        for pin in overrides.pins {
            let fixed = plan.matrices.filter { $0.pin == pin }
            text += "pin '\(pin)': \(fixed.count) matri\(fixed.count == 1 ? "x" : "ces"), "
                + "\(Format.bytes(Double(fixed.reduce(0) { $0 + $1.storageBits }) / 8))\n"
        }
        for rule in overrides.bitsFor {
            let count = plan.matrices.filter { $0.bits == plan.bits.filter(rule.bits.contains) }.count
            text += "bits-for '\(rule)': \(count) matri\(count == 1 ? "x" : "ces")\n"
        }
    }
    text += alignedTable(rows, rightAligned: Set(2..<(rows[0].count - (overridden ? 1 : 0))))
    let t = plan.totals
    text += String(format: "total: %ld bits (%@), α = %.6f (1/%.2f), %.4f bits per parameter",
                   t.storageBits, Format.bytes(Double(t.storageBits) / 8), t.alpha, 1 / t.alpha, t.bitsPerParameter)
    if let e = t.predictedError, let r = t.predictedRelativeError {
        text += String(format: ", predicted %@ error %.4e (relative %.4e)", (plan.objective ?? .activation).rawValue, e, r)
    }
    if let v = plan.report.verification, let e = plan.totals.predictedError {
        text += String(format: "\nverified: the predicted error is measured (the plan quantized as compress will); the error model predicted %.4e (relative %.4e), measured / model = %.3f; %ld re-solve round%@, %ld plan%@ measured",
                       v.modelPredictedError, v.modelPredictedRelativeError, v.modelPredictedError > 0 ? e / v.modelPredictedError : 1,
                       v.rounds, v.rounds == 1 ? "" : "s", v.plansMeasured, v.plansMeasured == 1 ? "" : "s")
    }
    return text + "\n"
}
