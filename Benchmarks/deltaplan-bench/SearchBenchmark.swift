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
func runSearchBenchmark() {
    let rng = SeededGenerator(seed: 2024)
    let menu = [16, 8, 4, 3, 2, 1]
    let shapes: [(String, LayerType, Int, Int)] = [
        ("q_proj", .attention, 4096, 4096), ("k_proj", .attention, 4096, 4096),
        ("v_proj", .attention, 4096, 4096), ("o_proj", .attention, 4096, 4096),
        ("gate_proj", .mlp, 11008, 4096), ("up_proj", .mlp, 11008, 4096), ("down_proj", .mlp, 4096, 11008),
    ]
    var models: [ErrorModel] = []
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
            let spectrum = MatrixSpectrum(
                name: "model.layers.\(layer).\(name)", type: type, rows: rows, columns: columns,
                singularValues: Array(sigma[..<stored]), inputEnergy: g, activationEnergy: kept + tail,
                weightEnergy: sigma.reduce(0) { $0 + $1 * $1 }, relativeQuantizationError: errors)
            models.append(ErrorModel(spectrum))
        }
    }
    let dense = models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }
    let problem = PlanningProblem(
        models: models, storage: StorageModel(), budgetBits: dense / 16, scope: .global, menu: menu)
    print("search: \(models.count) matrices, \(models.reduce(0) { $0 + $1.spectrum.storedRank }) stored vectors, "
          + "widths \(menu), budget \(Format.bytes(Double(problem.budgetBits) / 8)) (α = 1/16, artifact accounting)")

    /// Process CPU time in seconds (the searches are single-threaded: wall time on a quiet machine).
    func cpuSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
    func timed(_ strategy: Strategy) -> (Solution, Double, Double) {
        let start = ContinuousClock.now, cpuStart = cpuSeconds()
        do {
            let solution = try solve(problem, strategy: strategy, seed: 1)
            let elapsed = ContinuousClock.now - start
            let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
            return (solution, wall, cpuSeconds() - cpuStart)
        } catch {
            fatalError("search benchmark: \(error)")
        }
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
