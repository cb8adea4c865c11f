import Testing
import LinearAlgebra
import ModelProfiles
@testable import Optimizer

@Suite struct SearchExactTests {
    /// Brute force over every combination of count vectors, with storage and error recomputed by
    /// `StorageModel` and `ErrorModel`: the smallest error within the budget.
    static func bruteForce(_ problem: PlanningProblem) -> Double {
        let options = problem.models.map { model -> [(bits: Int, error: Double)] in
            let widths = problem.menu.filter { model.availableBits.contains($0) }
            return SearchFixtures.allAllocations(rank: model.spectrum.storedRank, widths: widths).map {
                (problem.storage.bits(of: $0, rows: model.spectrum.rows, columns: model.spectrum.columns), model.error(of: $0))
            }
        }
        var best = Double.infinity
        func walk(_ m: Int, _ bits: Int, _ error: Double) {
            guard bits <= problem.budgetBits else { return }
            if m == options.count { best = min(best, error); return }
            for o in options[m] { walk(m + 1, bits + o.bits, error + o.error) }
        }
        walk(0, 0, 0)
        return best
    }

    static func tiny(_ seed: UInt64) -> PlanningProblem {
        let rng = SeededGenerator(seed: seed &+ 1000)
        let menus = [[8, 3, 2], [16, 4, 2, 1], [4, 3, 2]]
        return SearchFixtures.problem(
            seed: seed, count: 1 + rng.uniformInt(below: 3), dims: [8, 12, 16], ranks: 1...5,
            menu: menus[rng.uniformInt(below: menus.count)], alpha: 0.15 + 0.5 * rng.uniform(),
            storage: seed % 2 == 0 ? StorageModel(groupSize: 2) : StorageModel(accounting: .paper))
    }

    @Test(arguments: 0..<24 as Range<UInt64>)
    func exactEqualsBruteForceOnTinyProblems(seed: UInt64) throws {
        let problem = Self.tiny(seed)
        let solution = try solve(problem, strategy: .exact, seed: 0)
        let optimum = Self.bruteForce(problem)
        #expect(abs(solution.predictedError - optimum) <= 1e-12 * max(1, optimum), "seed \(seed)")
        #expect(solution.storageBits <= problem.budgetBits)
        guard case .exact(let bound) = solution.report else { Issue.record("not an exact report"); return }
        #expect(abs(bound - optimum) <= 1e-12 * max(1, optimum))
        // No other strategy beats the optimum.
        let presets = problem.menu.map {
            Strategy.preset(PrecisionPreset(name: "single", description: "", segments: [.init(bits: $0, count: nil)]))
        }
        for strategy in [Strategy.greedy, .genetic(GeneticOptions(population: 6, generations: 5))] + presets {
            let other = try solve(problem, strategy: strategy, seed: seed)
            #expect(other.predictedError >= optimum * (1 - 1e-12), "seed \(seed) \(strategy)")
        }
    }

    @Test(arguments: 0..<12 as Range<UInt64>)
    func exactErrorNeverGrowsWithBudgetOnTinyProblems(seed: UInt64) throws {
        var problem = Self.tiny(seed)
        var last = Double.infinity
        for step in 0..<6 {
            problem.budgetBits = problem.budgetBits + step * problem.budgetBits / 4
            let e = try solve(problem, strategy: .exact, seed: 0).predictedError
            #expect(e <= last, "seed \(seed) step \(step)")
            last = e
        }
    }

    /// Larger problems (Lagrangian path): the bound at a larger budget never exceeds the plan
    /// error at a smaller one (bound ≤ optimum(B₂) ≤ optimum(B₁) ≤ plan(B₁)).
    @Test(arguments: 0..<6 as Range<UInt64>)
    func boundAtLargerBudgetBelowPlanAtSmallerOne(seed: UInt64) throws {
        var problem = SearchFixtures.problem(seed: seed, count: 6, dims: [24, 32, 48], ranks: 16...40, alpha: 0.25)
        let small = try solve(problem, strategy: .exact, seed: 0)
        problem.budgetBits += problem.budgetBits / 3
        let large = try solve(problem, strategy: .exact, seed: 0)
        guard case .exact(let bound) = large.report else { Issue.record("not an exact report"); return }
        #expect(bound <= small.predictedError * (1 + 1e-9))
        #expect(large.predictedError <= small.predictedError * (1 + 1e-3))
    }

    /// The DP minimises error + λ·(linear bits) over all count vectors: compare with enumeration.
    @Test(arguments: 0..<8 as Range<UInt64>)
    func lagrangianDPMatchesEnumeration(seed: UInt64) {
        let problem = SearchFixtures.problem(seed: seed, count: 1, dims: [8, 16], ranks: 3...7, alpha: 0.3,
                                             storage: StorageModel(groupSize: 2))
        let table = MatrixTable(problem.models[0], menu: problem.menu, storage: problem.storage)
        for upper in [false, true] {
            let lin = LinearStorage(table, upper: upper)
            for lambda in [0, 1e-6, 1e-4, 1e-3, 1e-2] {
                let dp = table.lagrangian(lin, lambda: lambda)
                var best = Double.infinity
                for a in SearchFixtures.allAllocations(rank: table.rank, widths: problem.menu) {
                    var c = table.counts(a)
                    let linear = c.withUnsafeMutableBufferPointer { lin.bits($0.baseAddress!, levels: table.levels) }
                    best = min(best, problem.models[0].error(of: a) + lambda * linear)
                }
                #expect(abs(dp.objective - best) <= 1e-12 * max(1, best), "seed \(seed) λ \(lambda) upper \(upper)")
            }
        }
    }

    /// Lower linearization ≤ exact storage ≤ upper linearization, for every width and count.
    @Test(arguments: [StorageModel(), StorageModel(groupSize: 8), StorageModel(accounting: .paper)])
    func linearStorageBracketsExactStorage(storage: StorageModel) {
        let problem = SearchFixtures.problem(seed: 3, count: 1, dims: [300], ranks: 300...300, alpha: 0.3, storage: storage)
        let table = MatrixTable(problem.models[0], menu: problem.menu, storage: storage)
        let lower = LinearStorage(table, upper: false), upper = LinearStorage(table, upper: true)
        for l in 0..<table.levels {
            for c in 1...300 {
                let exact = Double(storage.segmentBits(bits: table.widths[l], count: c, rows: 300, columns: 300))
                let low = lower.perVector[l] * Double(c) + lower.entry[l]
                let high = upper.perVector[l] * Double(c) + upper.entry[l]
                #expect(low <= exact * (1 + 1e-12) && exact <= high * (1 + 1e-12), "width \(table.widths[l]) count \(c)")
            }
        }
    }
}
