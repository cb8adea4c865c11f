import Reporting
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer

/// The `search` suite: greedy, exact and genetic (default options) on a Llama-2-7B-shaped
/// synthetic problem (32 layers × q, k, v, o 4096×4096, gate, up 11008×4096, down 4096×11008;
/// stored rank m·n/(m+n), the α = 1/8 at 2 bits rule; 6 widths; artifact accounting, group 128;
/// global budget α = 1/16), timed once each after building the problem, with each plan's error
/// relative to exact's and to the paper's delta-come preset.
/// The spectra of a Llama-2-7B-shaped synthetic model (the `search` suite's problem) from `seed`.
func llama7BShapedSpectra(seed: UInt64, menu: [Int]) -> [MatrixSpectrum] {
    let rng = SeededGenerator(seed: seed)
    let shapes: [(String, LayerType, Int, Int)] = [
        ("q_proj", .attention, 4096, 4096), ("k_proj", .attention, 4096, 4096),
        ("v_proj", .attention, 4096, 4096), ("o_proj", .attention, 4096, 4096),
        ("gate_proj", .mlp, 11008, 4096), ("up_proj", .mlp, 11008, 4096), ("down_proj", .mlp, 4096, 11008),
    ]
    var spectra: [MatrixSpectrum] = []
    for layer in 0..<32 {
        let layerScale = 0.5 + 1.5 * Double(layer) / 31 + 0.5 * rng.uniform()
        for (name, type, rows, columns) in shapes {
            let full = min(rows, columns), stored = rows * columns / (rows + columns)
            let power = 0.3 + 0.3 * rng.uniform(), floor = 0.02 * layerScale
            var sigma = (0..<full).map { layerScale * pow(Double($0 + 1), -power) + floor * (1 + 0.1 * rng.uniform()) }
            sigma.sort(by: >)
            let g = (0..<stored).map { _ in exp(0.3 * rng.gaussian()) }
            let c = 1.5 + rng.uniform()
            var errors: [Int: [Double]] = [:]
            for k in menu { errors[k] = (0..<stored).map { _ in c * pow(4, -Double(k)) * (1 + 0.3 * rng.uniform()) } }
            let kept = (0..<stored).reduce(0.0) { $0 + sigma[$1] * sigma[$1] * g[$1] }
            let tail = sigma[stored...].reduce(0.0) { $0 + $1 * $1 }
            spectra.append(MatrixSpectrum(
                name: "model.layers.\(layer).\(name)", type: type, rows: rows, columns: columns,
                singularValues: Array(sigma[..<stored]), inputEnergy: g, activationEnergy: kept + tail,
                weightEnergy: sigma.reduce(0) { $0 + $1 * $1 }, relativeQuantizationError: errors))
        }
    }
    return spectra
}

/// Process CPU time in seconds (the searches are single-threaded: wall time on a quiet machine).
func cpuSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// `body`'s result, wall seconds and CPU seconds.
func clocked<T>(_ body: () throws -> T) rethrows -> (T, Double, Double) {
    let start = ContinuousClock.now, cpuStart = cpuSeconds()
    let result = try body()
    let elapsed = ContinuousClock.now - start
    return (result, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18, cpuSeconds() - cpuStart)
}

func runSearchBenchmark() {
    let menu = [16, 8, 4, 3, 2, 1]
    let models = llama7BShapedSpectra(seed: 2024, menu: menu).map(ErrorModel.init)
    let dense = models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }
    let problem = PlanningProblem(
        models: models, storage: StorageModel(), budgetBits: dense / 16, scope: .global, menu: menu)
    print("search: \(models.count) matrices, \(models.reduce(0) { $0 + $1.spectrum.storedRank }) stored vectors, "
          + "widths \(menu), budget \(Format.bytes(Double(problem.budgetBits) / 8)) (α = 1/16, artifact accounting)")

    func timed(_ strategy: Strategy) -> (Solution, Double, Double) {
        do { return try clocked { try solve(problem, strategy: strategy, seed: 1) } } catch { fatalError("search benchmark: \(error)") }
    }
    let deltaCome: PrecisionPreset
    do { deltaCome = try ProfileLibrary.builtIn().preset(named: "delta-come") } catch { fatalError("\(error)") }
    let (preset, presetTime, presetCPU) = timed(.preset(deltaCome))
    let (exact, exactTime, exactCPU) = timed(.exact)
    let (greedy, greedyTime, greedyCPU) = timed(.greedy)
    var options = GeneticOptions()
    let env = ProcessInfo.processInfo.environment
    if let v = env["GA_POP"].flatMap(Int.init) { options.population = v }
    if let v = env["GA_GEN"].flatMap(Int.init) { options.generations = v }
    if let v = env["GA_EX"].flatMap(Int.init) { options.exchangesPerChild = v }
    if let v = env["GA_MUT"].flatMap(Double.init) { options.mutationRate = v }
    let (genetic, geneticTime, geneticCPU) = timed(.genetic(options))
    guard case .exact(let bound) = exact.report else { fatalError("exact report expected") }

    func row(_ name: String, _ s: Solution, _ t: Double, _ cpu: Double) {
        let vsExact = (s.predictedError / exact.predictedError - 1) * 100
        let vsPreset = (s.predictedError / preset.predictedError - 1) * 100
        let label = name.padding(toLength: 21, withPad: " ", startingAt: 0)
        print(label + String(format: "%7.3f s wall %7.3f s cpu  error %.6e  vs exact %+8.3f%%  vs delta-come %+8.3f%%  ",
                             t, cpu, s.predictedError, vsExact, vsPreset) + "storage " + Format.bytes(Double(s.storageBits) / 8))
    }
    row("  preset:delta-come", preset, presetTime, presetCPU)
    row("  greedy", greedy, greedyTime, greedyCPU)
    row("  exact", exact, exactTime, exactCPU)
    row("  genetic (defaults)", genetic, geneticTime, geneticCPU)
    print(String(format: "  exact lower bound %.6e (plan within %.4f%% of it)", bound,
                 (exact.predictedError / bound - 1) * 100))
    if case .greedy(let path) = greedy.report {
        print("  greedy path: " + path.map { "\($0.mix) (\(String(format: "%.4e", $0.predictedError)))" }.joined(separator: " → "))
    }
    if case .genetic(let curve, let generations, let evaluations) = genetic.report {
        print("  genetic: \(generations) generations, \(evaluations) evaluations, best \(String(format: "%.6e", curve.first!)) → \(String(format: "%.6e", curve.last!))")
    }
}

/// The `fleet` suite: 8 Llama-2-7B-shaped models (the `search` problem from 8 seeds) under one
/// budget (α = 1/16 over all of them) with `exact`, beside `exact` on one of them alone, timed in
/// the same run (the ratio is the figure that holds on a shared machine).
func runFleetBenchmark() {
    let menu = [16, 8, 4, 3, 2, 1]
    let members = (0..<8).map { i in
        FleetMember(name: "ft\(i)", spectra: llama7BShapedSpectra(seed: 2024 + UInt64(i), menu: menu), weight: Double(1 + i % 3),
                    source: .init(kind: "store", name: "ft\(i)", hash: "ft\(i)"))
    }
    print("fleet: \(members.count) models × \(members[0].spectra.count) matrices, α = 1/16 over the fleet, exact, weights 1, 2, 3, …")
    do {
        let single = PlanningProblem(models: members[0].spectra.map(ErrorModel.init), storage: StorageModel(),
                                     budgetBits: members[0].spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) } / 16,
                                     scope: .global, menu: menu)
        let (_, oneWall, oneCPU) = try clocked { try solve(single, strategy: .exact, seed: 0) }
        let (fleet, wall, cpu) = try clocked {
            try planFleet(members, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: menu, strategy: .exact, seed: 0,
                          toolVersion: DeltaPlanVersion.string)
        }
        let (same, sameWall, _) = try clocked {
            try planFleet(members, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: menu,
                          strategy: .preset(ProfileLibrary.builtIn().preset(named: "single-3")), seed: 0, toolVersion: DeltaPlanVersion.string)
        }
        // The baseline a fleet must beat: every model alone at the same α, with exact.
        var sameAlpha = 0.0
        for m in members {
            let problem = PlanningProblem(models: m.spectra.map(ErrorModel.init), storage: StorageModel(),
                                          budgetBits: m.spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) } / 16,
                                          scope: .global, menu: menu)
            sameAlpha += m.weight * (try solve(problem, strategy: .exact, seed: 0)).predictedError / m.energy
        }
        print(String(format: "  one model, exact:      %7.3f s wall %7.3f s cpu", oneWall, oneCPU))
        print(String(format: "  every model alone at α = 1/16, exact: Σ w·rel. error %.6e", sameAlpha))
        print(String(format: "  fleet of 8, exact:     %7.3f s wall %7.3f s cpu  (%.2f× one model's CPU)  Σ w·rel. error %.6e",
                     wall, cpu, cpu / oneCPU, fleet.summary.weightedRelativeError))
        print(String(format: "  fleet of 8, single-3 at the same α: %7.3f s wall  Σ w·rel. error %.6e", sameWall, same.summary.weightedRelativeError))
        for m in fleet.summary.members {
            print(String(format: "    %@  weight %.0f  α = 1/%.2f  rel. error %.4e", m.name, m.weight, 1 / m.alpha, m.predictedRelativeError))
        }
        // Quality floors: the two lightest models (weight 1) held to 80 % of the error the fleet gave them.
        var floored = members
        for i in [0, 3] { floored[i].maxRelativeError = 0.8 * fleet.summary.members[i].predictedRelativeError }
        let (withFloors, floorWall, floorCPU) = try clocked {
            try planFleet(floored, budget: .ratio(1.0 / 16), storage: StorageModel(), menu: menu, strategy: .exact, seed: 0,
                          toolVersion: DeltaPlanVersion.string)
        }
        print(String(format: "  fleet of 8, exact, floors on ft0 and ft3: %7.3f s wall %7.3f s cpu  (%.2f× the fleet's CPU)  Σ w·rel. error %.6e",
                     floorWall, floorCPU, floorCPU / cpu, withFloors.summary.weightedRelativeError))
        for i in [0, 3] {
            let m = withFloors.summary.members[i]
            print(String(format: "    %@  floor %.4e  rel. error %.4e  α = 1/%.2f", m.name, m.maxRelativeError ?? 0, m.predictedRelativeError, 1 / m.alpha))
        }
    } catch {
        fatalError("fleet benchmark: \(error)")
    }
}
