import ArgumentParser
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization

struct FootprintCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "footprint",
        abstract: "Memory of one base model plus N compressed deltas, against N full models.",
        discussion: """
            The full model M counts every tensor of the profile at its dtype (BF16: 2 bytes). The paper \
            counts a compressed delta as α·M. The artifact accounting counts the planned matrices' real \
            artifact size (payload, group scales and zeros, singular values; planned with --preset under \
            the budget) plus the non-planned tensors (embeddings, norms, lm_head) carried uncompressed \
            with each delta, unless --share-unplanned. GPU fit: uncompressed ⌊G/M⌋, compressed ⌊(G−M)/delta⌋; \
            activations and KV cache are not counted.

            The other way round: with --gpu-memory and --store NAME=STORE for each fine-tune (analyses of \
            fine-tunes of the profile's model), the memory left after the base (and each delta's carried \
            tensors) is the fleet's budget: the fleet is planned as `deltaplan fleet --strategy exact` \
            would, and each model's predicted relative error is printed.
            """)

    @OptionGroup var model: ProfileOptions

    @Option(help: "Numbers of fine-tuned models, comma-separated.")
    var models: String = "2,4,8,16,32,50"

    @Option(help: ArgumentHelp("Delta budget: α ('1/16'), a size per delta ('850MiB') or bits per parameter ('1bpp').", valueName: "budget"),
            transform: budgetArgument)
    var budget: GivenBudget = .ratio(1.0 / 16)

    @Option(help: "Precision preset used to plan the artifact accounting column.")
    var preset: String = "delta-come"

    @Option(help: "Quantization group size for the artifact accounting.")
    var groupSize: Int = StorageModel.defaultGroupSize

    @Option(help: ArgumentHelp("GPU memory to fit models in, e.g. '80GiB' or '80GB' (GiB = 2³⁰ bytes, GB = 10⁹).", valueName: "size"))
    var gpuMemory: String?

    @Flag(help: "Assume the non-planned tensors (embeddings, norms, lm_head) are shared with the base, not carried per delta.")
    var shareUnplanned = false

    @Option(help: ArgumentHelp("With --gpu-memory: a fine-tune's analysis store, NAME=STORE (repeat); prints what quality each gets when all share the GPU.",
                               valueName: "name=store"))
    var store: [String] = []

    @OptionGroup var threadOptions: ThreadOptions

    func parsedModels() throws -> [Int] {
        let parts = models.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--models must be a comma-separated list of positive integers, got '\(models)'")
        }
        return parts.map { $0! }
    }

    func parsedGPU() throws -> Int? {
        guard let gpuMemory else { return nil }
        guard case let .bytes(b) = try? Budget(parsing: gpuMemory, field: "--gpu-memory") else {
            throw ValidationError("--gpu-memory must be a size such as '80GiB', '80GB' or '85899345920B', got '\(gpuMemory)'")
        }
        return b
    }

    func validate() throws {
        _ = try parsedModels()
        _ = try parsedGPU()
        guard groupSize > 0 else { throw ValidationError("--group-size must be positive") }
        _ = try namedStores(store)
        if !store.isEmpty, gpuMemory == nil { throw ValidationError("--store needs --gpu-memory: the memory the fleet shares") }
    }

    func run() throws {
        let (library, profile) = try model.load()
        let p: PrecisionPreset
        do { p = try library.preset(named: preset) } catch { throw CLIFailure(error) }
        let plan: Plan
        do {
            plan = try planFromShapes(profile: profile, preset: p, budget: budget,
                                      storage: StorageModel(accounting: .artifact, groupSize: groupSize),
                                      scope: .type, toolVersion: DeltaPlanVersion.string)
        } catch { throw CLIFailure(error) }
        let alpha = Double(plan.budget.bits) / Double(plan.totals.denseBits)
        let f = footprint(profile: profile, alpha: alpha, artifactPlannedBits: plan.totals.storageBits,
                          models: try parsedModels(), gpuMemoryBytes: try parsedGPU(), carryUnplanned: !shareUnplanned)
        print(footprintReport(f))
        if let g = try parsedGPU(), !store.isEmpty { try planSharedGPU(g, footprint: f) }
    }

    /// The stores as one fleet in what G leaves after the base and each delta's carried tensors.
    private func planSharedGPU(_ g: Int, footprint f: Footprint) throws {
        let stores = try namedStores(store)
        let carried = shareUnplanned ? 0 : f.carriedBytes
        let left = g - f.modelBytes - stores.count * carried
        guard left > 0 else {
            throw CLIFailure("\(gib(g)) holds no deltas: the base takes \(gib(f.modelBytes))"
                             + (carried > 0 ? " and \(stores.count) × \(gib(carried)) of carried tensors" : ""))
        }
        let members = try measuredStores(stores, measurement: MeasurementOptions(groupSize: groupSize), parallelism: threadOptions.parallelism())
        let fleet: FleetPlan
        do {
            fleet = try planFleet(members, budget: .bytes(left), storage: StorageModel(accounting: .artifact, groupSize: groupSize),
                                  menu: BitMenu.default, strategy: .exact, seed: 0)
        } catch { throw CLIFailure(error) }
        print("\n\(stores.count) fine-tunes sharing \(gib(g)): \(gib(left)) for their planned matrices after the base"
              + (carried > 0 ? " and their carried tensors" : ""))
        print(fleetTable(fleet.summary), terminator: "")
    }
}

func gib(_ bytes: Int) -> String { String(format: "%.2f GiB", Double(bytes) / Double(1 << 30)) }

func footprintReport(_ f: Footprint) -> String {
    var text = """
        \(f.profile): \(f.modelParameters) parameters (\(f.plannedParameters) in planned matrices), \(f.bytesPerValue) bytes each
          full model M             = \(f.modelParameters) × \(f.bytesPerValue) B = \(f.modelBytes) B = \(gib(f.modelBytes))
          delta, paper (α·M)       = \(String(format: "%.6f", f.alpha)) × M = \(f.paperDeltaBytes) B = \(gib(f.paperDeltaBytes))
          delta, artifact          = \(f.artifactPlannedBytes) B planned matrices + \(f.carriedBytes) B carried tensors = \(f.artifactDeltaBytes) B = \(gib(f.artifactDeltaBytes))

        """
    var rows = [["models", "N full models (N·M)", "base + N deltas, paper", "base + N deltas, artifact", "saving (artifact)"]]
    for r in f.rows {
        rows.append(["\(r.models)", gib(r.uncompressedBytes), gib(r.paperBytes), gib(r.artifactBytes),
                     String(format: "%.1f×", Double(r.uncompressedBytes) / Double(r.artifactBytes))])
    }
    text += alignedTable(rows, rightAligned: [0, 1, 2, 3, 4])
    if let g = f.gpuMemoryBytes, let u = f.fitUncompressed, let p = f.fitPaper, let a = f.fitArtifact {
        text += """

            fit in \(gib(g)) (\(g) B):
              uncompressed: ⌊G / M⌋ = ⌊\(g) / \(f.modelBytes)⌋ = \(u) models
              paper:        ⌊(G − M) / (α·M)⌋ = ⌊\(g - f.modelBytes) / \(f.paperDeltaBytes)⌋ = \(p) deltas
              artifact:     ⌊(G − M) / delta⌋ = ⌊\(g - f.modelBytes) / \(f.artifactDeltaBytes)⌋ = \(a) deltas
            (activations and KV cache not counted)

            """
    }
    return text
}
