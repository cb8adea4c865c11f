import Foundation
import LinearAlgebra
import ModelProfiles
@testable import Optimizer

/// Random planning problems for the search tests, reproducible from a seed.
enum SearchFixtures {
    static let fullMenu = [16, 8, 4, 3, 2, 1]

    /// A spectrum with decaying σᵢ over a noise floor, positive gᵢ, and eᵢ(k) ≈ c·4^(−k) with
    /// per-vector noise (so eᵢ(k) decreases in k).
    static func spectrum(
        name: String, type: LayerType, rows: Int, columns: Int, rank: Int, widths: [Int], rng: SeededGenerator
    ) -> MatrixSpectrum {
        let scale = 0.5 + 2 * rng.uniform(), decay = 0.02 + 0.3 * rng.uniform(), floor = 0.01 + 0.05 * rng.uniform()
        let sigma = (0..<rank).map { scale * exp(-decay * Double($0)) + floor * (1 + 0.2 * rng.uniform()) }
            .sorted(by: >)
        let g = (0..<rank).map { _ in 0.3 + 1.5 * rng.uniform() }
        let c = 1.5 + rng.uniform()
        var errors: [Int: [Double]] = [:]
        for k in widths {
            errors[k] = (0..<rank).map { _ in c * pow(4, -Double(k)) * (1 + 0.3 * rng.uniform()) }
        }
        let stored = zip(sigma, g).reduce(0) { $0 + $1.0 * $1.0 * $1.1 }
        let tail = stored * 0.1 * rng.uniform()
        return MatrixSpectrum(
            name: name, type: type, rows: rows, columns: columns, singularValues: sigma, inputEnergy: g,
            activationEnergy: stored + tail, weightEnergy: sigma.reduce(0) { $0 + $1 * $1 } + tail,
            relativeQuantizationError: errors)
    }

    /// `count` matrices with shapes drawn from `dims`, stored rank in `ranks` (capped by the shape),
    /// alternating attention / MLP; budget α·(dense F16 size).
    static func problem(
        seed: UInt64, count: Int, dims: [Int], ranks: ClosedRange<Int>, menu: [Int] = fullMenu,
        alpha: Double, scope: Scope = .global, storage: StorageModel = StorageModel(groupSize: 8)
    ) -> PlanningProblem {
        let rng = SeededGenerator(seed: seed)
        var models: [ErrorModel] = []
        for i in 0..<count {
            let rows = dims[rng.uniformInt(below: dims.count)], columns = dims[rng.uniformInt(below: dims.count)]
            let rank = min(min(rows, columns), ranks.lowerBound + rng.uniformInt(below: ranks.count))
            let s = spectrum(
                name: "m\(i)", type: i % 2 == 0 ? .attention : .mlp, rows: rows, columns: columns,
                rank: rank, widths: fullMenu, rng: rng)
            models.append(ErrorModel(s))
        }
        let dense = models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }
        return PlanningProblem(
            models: models, storage: storage, budgetBits: Int(alpha * Double(dense)), scope: scope, menu: menu)
    }

    /// Every count vector over `widths` with Σ ≤ `rank`, as allocations.
    static func allAllocations(rank: Int, widths: [Int]) -> [Allocation] {
        var out: [Allocation] = []
        var counts: [Int: Int] = [:]
        func walk(_ w: Int, _ remaining: Int) {
            if w == widths.count { out.append(Allocation(counts: counts)); return }
            for n in 0...remaining {
                counts[widths[w]] = n
                walk(w + 1, remaining - n)
            }
            counts[widths[w]] = nil
        }
        walk(0, rank)
        return out
    }

    /// Storage of each unit of `problem` for `allocations`, recomputed from the storage model.
    static func unitBits(_ problem: PlanningProblem, _ allocations: [Allocation]) -> [(Int, Int)] {
        problem.units.map { unit in
            let used = unit.members.reduce(0) {
                let s = problem.models[$1].spectrum
                return $0 + problem.storage.bits(of: allocations[$1], rows: s.rows, columns: s.columns)
            }
            return (used, unit.budgetBits)
        }
    }
}
