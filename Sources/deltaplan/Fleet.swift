import Analysis
import ArgumentParser
import Foundation
import LinearAlgebra
import Optimizer
import Pipeline
import Quantization
import Reporting

struct FleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Plan several fine-tunes of one base under one shared budget.",
        discussion: """
            Each --store is an analysis store of one fine-tune (all of the same base: stores of different \
            bases are refused). The search minimises Σ w · relative error over the fleet, the matrices of every \
            model competing for the same bits; a preset strategy gives every model the same α instead (the \
            baseline). Writes one plan per model (OUT/NAME.json, the ordinary plan format: compress each with \
            its store) and OUT/fleet.json (budget, per-model storage, α, predicted error, weights).

            Example: deltaplan fleet --store math=math-store --store code=code-store --weight math=3 \\
              --budget 2GiB --out fleet
            """)

    @Option(help: ArgumentHelp("A fine-tune: NAME=STORE (repeat for each).", valueName: "name=store"))
    var store: [String] = []

    @Option(help: ArgumentHelp("A model's weight in the objective, NAME=W (default 1; e.g. traffic shares).", valueName: "name=w"))
    var weight: [String] = []

    @Option(help: ArgumentHelp("The fleet's budget: a total size ('22GiB') or α over all planned matrices ('1/16'), as plan's --budget.",
                               valueName: "budget"), transform: budgetArgument)
    var budget: GivenBudget

    @Option(help: ArgumentHelp("A model's quality floor, NAME=E: the largest predicted relative error its plan may have (searches only). A fleet budget too small for every floor fails, saying the smallest that meets them.",
                               valueName: "name=e"))
    var maxError: [String] = []

    @Option(help: "exact, genetic, greedy, or preset:NAME (every model at the same α: the baseline).")
    var strategy: Strategy = .exact

    @Option(help: "Allowed bit-widths, comma-separated, from 16,8,4,3,2,1; 0 (dropping) is always allowed.", transform: bitMenuArgument)
    var bits: [Int] = BitMenu.default

    @Option(help: "How bits are counted: artifact or paper.")
    var accounting: Accounting = StorageModel.defaultAccounting

    @Option(help: "Quantization group size for artifact accounting.")
    var groupSize: Int = StorageModel.defaultGroupSize

    @Option(help: "Segment order the error model measures (as plan's --order).")
    var order: SegmentOrder = .default

    @Option(help: "Quantizer the error model measures: gptq (with each store's calibration) or rtn.")
    var method: QuantizationMethod = .default

    @Option(help: "Random seed of stochastic strategies.")
    var seed: UInt64 = 0

    @Option(help: "Output directory (replaced atomically).")
    var out: String

    /// `--pin` and `--bits-for`, applied to every model's matrices (fine-tunes of one base share their names).
    @OptionGroup var overrideOptions: OverrideOptions

    func validate() throws {
        guard !store.isEmpty else { throw ValidationError("give at least one --store NAME=STORE") }
        _ = try namedStores(store)
        _ = try weights()
        let floors = try maxErrors()
        if !floors.isEmpty, case .preset = strategy {
            throw ValidationError("--max-error needs a search strategy (exact, genetic or greedy); a preset gives every model the same α")
        }
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive, got \(groupSize)") }
    }

    @OptionGroup var threadOptions: ThreadOptions

    /// `--weight` by name; every name must be a store's.
    func weights() throws -> [String: Double] { try perModel(weight, option: "weight", symbol: "W") }

    /// `--max-error` by name; every name must be a store's.
    func maxErrors() throws -> [String: Double] { try perModel(maxError, option: "max-error", symbol: "E") }

    /// `NAME=X` items (X finite, ≥ 0) by name, each name a store's and given once.
    private func perModel(_ items: [String], option: String, symbol: String) throws -> [String: Double] {
        let names = Set(try namedStores(store).map(\.name))
        var out: [String: Double] = [:]
        for item in items {
            let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let x = Double(parts[1]), x >= 0, x.isFinite else {
                throw ValidationError("--\(option) must be NAME=\(symbol) with \(symbol) ≥ 0, got '\(item)'")
            }
            guard names.contains(parts[0]) else { throw ValidationError("--\(option) names '\(parts[0])', which no --store names") }
            guard out.updateValue(x, forKey: parts[0]) == nil else { throw ValidationError("--\(option) names '\(parts[0])' twice") }
        }
        return out
    }

    func run() throws {
        let weights = try weights(), floors = try maxErrors()
        let measurement = MeasurementOptions(method: method, order: order, groupSize: groupSize)
        let overrides = overrideOptions.overrides
        for (name, path) in try namedStores(store) {
            do { try StorePlanning.check(overrides, against: SpectrumStore(at: URL(fileURLWithPath: path)), menu: bits, measurement: measurement) } catch {
                throw CLIFailure("fleet member '\(name)': \(error)")
            }
        }
        let members = try measuredStores(namedStores(store), measurement: measurement, parallelism: threadOptions.parallelism())
            .map { FleetStore(name: $0.name, planning: $0.planning, weight: weights[$0.name] ?? 1, maxRelativeError: floors[$0.name]) }
        let fleet: FleetPlan
        do {
            fleet = try planFleet(members, budget: budget, storage: StorageModel(accounting: accounting, groupSize: groupSize),
                                  menu: bits, strategy: strategy, seed: seed, overrides: overrides)
            try fleet.write(names: members.map(\.name), to: URL(fileURLWithPath: out))
        } catch { throw CLIFailure(error) }
        print(fleetTable(fleet.summary), terminator: "")
        print("wrote \(out)/fleet.json and \(members.count) plans")
    }
}

/// `--store NAME=STORE` items as (name, path), names unique.
func namedStores(_ items: [String]) throws -> [(name: String, path: String)] {
    var seen = Set<String>()
    return try items.map { item in
        let parts = item.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw ValidationError("--store must be NAME=STORE, got '\(item)'")
        }
        guard seen.insert(parts[0]).inserted else { throw ValidationError("--store names '\(parts[0])' twice") }
        return (parts[0], parts[1])
    }
}

/// Each store with its error model measured (progress per store), weight 1, no floor.
func measuredStores(
    _ stores: [(name: String, path: String)], measurement: MeasurementOptions, parallelism: Parallelism
) throws -> [FleetStore] {
    try stores.map { name, path in
        let progress = TerminalProgress(label: "measure \(name)")
        do {
            return FleetStore(name: name, planning: try StorePlanning(store: URL(fileURLWithPath: path), measurement: measurement,
                                                                      parallelism: parallelism, progress: progress.step))
        } catch { throw CLIFailure(error) }
    }
}

/// One row per model, then the fleet's totals.
func fleetTable(_ s: FleetSummary) -> String {
    var rows = [["model", "weight", "storage", "α", "predicted rel. error", "floor"]]
    for m in s.members {
        rows.append([m.name, Format.significant(m.weight, digits: 3), Format.bytes(Double(m.storageBits) / 8),
                     "1/\(Format.significant(1 / max(m.alpha, 1e-12), digits: 4))", String(format: "%.4e", m.predictedRelativeError),
                     m.maxRelativeError.map { String(format: "≤ %.4e", $0) } ?? "–"])
    }
    var text = "fleet: budget \(s.budget.given) = \(Format.bytes(Double(s.budget.bits) / 8)), strategy \(s.strategy.name)"
        + (s.strategy.preset.map { ":" + $0 } ?? "") + "\n"
    text += alignedTable(rows, rightAligned: [1, 2, 3, 4, 5])
    text += "total \(Format.bytes(Double(s.storageBits) / 8)); Σ weight · relative error = \(String(format: "%.4e", s.weightedRelativeError))\n"
    return text
}
