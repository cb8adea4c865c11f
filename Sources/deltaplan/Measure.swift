import Analysis
import ArgumentParser
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Reporting

/// `deltaplan measure`: the error model's measurement pass alone, whole or in shards.
struct MeasureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Run the error model's measurement pass of a store (what a store's first plan runs), whole or in shards.",
        discussion: """
        Measures eᵢ(k), the quantization error of every stored vector at every bit-width, into the store's \
        errors/ORDER/ cache, where plan, compare and fleet find it. With --shard I/N only a deterministic 1/N \
        of the matrices (balanced by estimated cost); shards may run at once, on machines sharing the store. \
        When all N have finished, the same command with --finalize instead of --shard checks every table \
        (a missing or damaged one is named with its shard; rerunning that shard alone repairs it).
        """)

    @Argument(help: "The spectrum store.")
    var store: String

    @Option(help: "Calibration file of the store (default: the one recorded in the store's manifest).")
    var calibration: String?

    @Option(help: "Quantizer the error model measures: gptq (with the calibration) or rtn.")
    var method: QuantizationMethod = .default

    @Option(help: "Segment order the error model measures: feedback or paper (as for plan and compress).")
    var order: SegmentOrder = .default

    @Option(help: "Quantization group size.")
    var groupSize: Int = StorageModel.defaultGroupSize

    @Option(help: "Measure only shard I of N (e.g. 2/4) of the matrices; then --finalize.", transform: shardArgument)
    var shard: Shard?

    @Flag(help: "Check the tables every shard measured (the same options as the shards'); measures nothing.")
    var finalize = false

    @OptionGroup var threadOptions: ThreadOptions

    func validate() throws {
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
        if finalize, let shard { throw ValidationError("--finalize checks what every shard left; it takes no --shard (got \(shard))") }
    }

    func run() throws {
        let store: SpectrumStore
        do { store = try SpectrumStore(at: URL(fileURLWithPath: self.store)) } catch { throw CLIFailure(error) }
        let calibrationSet: CalibrationSet?
        do { calibrationSet = try store.calibrationSet(given: calibration.map { URL(fileURLWithPath: $0) }) } catch { throw CLIFailure(error) }
        let options = MeasurementOptions(method: method, order: order, groupSize: groupSize)
        do {
            if finalize {
                let count = try finalizeMeasurement(store: store, calibration: calibrationSet, options: options)
                say("finalized the measurement pass of \(store.url.path): \(count) tables")
                return
            }
            let progress = TerminalProgress(label: shard.map { "measure \($0)" } ?? "measure")
            if let shard {
                try measureShard(store: store, calibration: calibrationSet, options: options, shard: shard,
                                 parallelism: threadOptions.parallelism(), progress: progress.step)
                progress.finish("measure \(shard): done")
                say("measured shard \(shard) of \(store.url.path); when all \(shard.count) have finished, "
                    + "rerun this command with --finalize instead of --shard")
                return
            }
            let spectra = try measuredSpectra(store: store, calibration: calibrationSet, options: options,
                                              parallelism: threadOptions.parallelism(), progress: progress.step)
            progress.finish("measure: done")
            say("measured \(spectra.count) tables of \(store.url.path)")
        } catch { throw CLIFailure(error) }
    }
}
