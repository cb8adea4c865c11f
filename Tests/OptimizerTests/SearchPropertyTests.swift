import Foundation
import Testing
import LinearAlgebra
import ModelProfiles
@testable import Optimizer

@Suite struct SearchPropertyTests {
    static let smallGenetic = GeneticOptions(population: 8, generations: 12, patience: 6, exchangesPerChild: 16)

    static func medium(_ seed: UInt64) -> PlanningProblem {
        let rng = SeededGenerator(seed: seed &+ 77)
        return SearchFixtures.problem(
            seed: seed, count: 4 + rng.uniformInt(below: 5), dims: [16, 32, 48, 64], ranks: 8...48,
            alpha: 0.2 + 0.4 * rng.uniform(), scope: Scope.allCases[Int(seed % 3)],
            storage: seed % 4 == 3 ? StorageModel(accounting: .paper) : StorageModel(groupSize: 8))
    }

    static func single(_ k: Int) -> PrecisionPreset {
        PrecisionPreset(name: "single-\(k)", description: "", segments: [.init(bits: k, count: nil)])
    }

    @Test(arguments: 0..<18 as Range<UInt64>)
    func strategiesRespectBudgetsAndTheBound(seed: UInt64) throws {
        let problem = Self.medium(seed)
        let exact = try solve(problem, strategy: .exact, seed: seed)
        guard case .exact(let bound) = exact.report else { Issue.record("not an exact report"); return }
        #expect(bound <= exact.predictedError * (1 + 1e-9))

        var solutions = [("exact", exact)]
        solutions.append(("greedy", try solve(problem, strategy: .greedy, seed: seed)))
        solutions.append(("genetic", try solve(problem, strategy: .genetic(Self.smallGenetic), seed: seed)))
        for k in problem.menu {
            solutions.append(("single-\(k)", try solve(problem, strategy: .preset(Self.single(k)), seed: seed)))
        }
        for (name, solution) in solutions {
            #expect(solution.predictedError >= bound * (1 - 1e-9), "seed \(seed) \(name) beats the bound")
            for (used, budget) in SearchFixtures.unitBits(problem, solution.allocations) {
                #expect(used <= budget, "seed \(seed) \(name): \(used) > \(budget)")
            }
            for (model, a) in zip(problem.models, solution.allocations) {
                #expect(model.admits(a) && a.counts.keys.allSatisfy(problem.menu.contains), "seed \(seed) \(name)")
            }
            #expect(abs(solution.predictedError - problem.predictedError(solution.allocations))
                    <= 1e-9 * solution.predictedError)
        }
        // Every double preset the paper's ladder reaches: c vectors at one width, a lower one filling.
        for high in problem.menu { for low in problem.menu where low < high { for c in [1, 2, 4, 8, 32] {
            let double = PrecisionPreset(name: "double-\(high)x\(c)+\(low)", description: "",
                                         segments: [.init(bits: high, count: c), .init(bits: low, count: nil)])
            if let solution = try? solve(problem, strategy: .preset(double), seed: seed) { solutions.append((double.name, solution)) }
        } } }
        let error = Dictionary(uniqueKeysWithValues: solutions.map { ($0.0, $0.1.predictedError) })
        for (name, e) in error where name.hasPrefix("single-") || name.hasPrefix("double-") {
            #expect(error["greedy"]! <= e * (1 + 1e-12), "seed \(seed): greedy worse than \(name)")
        }
        #expect(error["genetic"]! <= error["greedy"]! * (1 + 1e-12), "seed \(seed): genetic worse than its greedy seed")
        // When the exact knapsack ran, its plan is the optimum: nothing beats it.
        if exact.predictedError <= bound * (1 + 1e-12) {
            for (name, e) in error { #expect(e >= exact.predictedError * (1 - 1e-12), "seed \(seed) \(name)") }
        }
    }

    @Test(arguments: 0..<4 as Range<UInt64>)
    func geneticIsReproducible(seed: UInt64) throws {
        let problem = Self.medium(seed)
        let a = try solve(problem, strategy: .genetic(Self.smallGenetic), seed: 42)
        let b = try solve(problem, strategy: .genetic(Self.smallGenetic), seed: 42)
        #expect(a.allocations == b.allocations)
        #expect(a.report == b.report)
        guard case .genetic(let curve, let generations, let evaluations) = a.report else {
            Issue.record("not a genetic report"); return
        }
        #expect(curve.count == generations + 1)
        #expect(zip(curve, curve.dropFirst()).allSatisfy { $1 <= $0 }, "best fitness never worsens")
        #expect(evaluations >= Self.smallGenetic.population)
        #expect(abs(curve.last! - a.predictedError) <= 1e-9 * a.predictedError)
    }

    @Test func greedyPathAddsOneWidthPerStageAndImproves() throws {
        let problem = SearchFixtures.problem(seed: 5, count: 6, dims: [64, 96], ranks: 40...60, alpha: 0.2,
                                             storage: StorageModel(accounting: .paper))
        let solution = try solve(problem, strategy: .greedy, seed: 0)
        guard case .greedy(let path) = solution.report else { Issue.record("not a greedy report"); return }
        #expect((1...2).contains(path.first?.segments.count ?? 0))
        for (a, b) in zip(path, path.dropFirst()) {
            #expect(b.segments.count == a.segments.count + 1)
            #expect(b.predictedError < a.predictedError)
        }
        #expect(abs(path.last!.predictedError - solution.predictedError) <= 1e-9 * solution.predictedError)
    }

    @Test func geneticOptionsDecodeWithDefaults() throws {
        let options = try JSONDecoder().decode(GeneticOptions.self, from: Data(#"{"population": 40, "mutationRate": 0.1}"#.utf8))
        var expected = GeneticOptions()
        expected.population = 40
        expected.mutationRate = 0.1
        #expect(options == expected)
        #expect(try JSONDecoder().decode(GeneticOptions.self, from: JSONEncoder().encode(expected)) == expected)
    }

    @Test func paperMixIsInTheGreedySearchSpace() {
        let double: [PrecisionPreset.Segment] = [.init(bits: 8, count: 2), .init(bits: 3, count: nil)]
        let triple = SearchContext.insert(2, count: 32, into: double)
        #expect(triple == [.init(bits: 8, count: 2), .init(bits: 3, count: 32), .init(bits: 2, count: nil)])
        let above = SearchContext.insert(16, count: 1, into: double)
        #expect(above == [.init(bits: 16, count: 1), .init(bits: 8, count: 2), .init(bits: 3, count: nil)])
    }

    @Test func typeScopeSharesCountsForPresetAndGreedy() throws {
        let rng = SeededGenerator(seed: 9)
        var models: [ErrorModel] = []
        for i in 0..<6 {
            let type: LayerType = i % 2 == 0 ? .attention : .mlp
            let (rows, columns) = type == .attention ? (32, 32) : (48, 32)
            models.append(ErrorModel(SearchFixtures.spectrum(
                name: "m\(i)", type: type, rows: rows, columns: columns, rank: 24,
                widths: SearchFixtures.fullMenu, rng: rng)))
        }
        let dense = models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }
        let problem = PlanningProblem(models: models, storage: StorageModel(groupSize: 8), budgetBits: dense / 4,
                                      scope: .type, menu: SearchFixtures.fullMenu)
        #expect(problem.units.count == 2)
        for strategy in [Strategy.greedy, .preset(Self.single(3))] {
            let solution = try solve(problem, strategy: strategy, seed: 0)
            for unit in problem.units {
                let first = solution.allocations[unit.members[0]]
                #expect(unit.members.allSatisfy { solution.allocations[$0] == first }, "\(strategy) \(unit.name)")
                #expect(first.rank > 0)
            }
        }
    }

    @Test(arguments: 0..<4 as Range<UInt64>)
    func matrixScopeKeepsEveryMatrixInItsShare(seed: UInt64) throws {
        let problem = SearchFixtures.problem(seed: seed, count: 5, dims: [16, 32, 64], ranks: 10...30, alpha: 0.3,
                                             scope: .matrix)
        for strategy in [Strategy.exact, .greedy, .genetic(Self.smallGenetic)] {
            let solution = try solve(problem, strategy: strategy, seed: seed)
            for unit in problem.units {
                let m = unit.members[0], s = problem.models[m].spectrum
                let bits = problem.storage.bits(of: solution.allocations[m], rows: s.rows, columns: s.columns)
                let share = Int(Double(problem.budgetBits) * Double(StorageModel.denseBits(rows: s.rows, columns: s.columns))
                    / Double(problem.models.reduce(0) { $0 + StorageModel.denseBits(rows: $1.spectrum.rows, columns: $1.spectrum.columns) }))
                #expect(bits <= share, "\(strategy) \(unit.name)")
            }
        }
    }

    @Test func budgetBelowOneVectorIsInfeasible() throws {
        var problem = SearchFixtures.problem(seed: 2, count: 3, dims: [16, 32], ranks: 4...8, alpha: 0.3)
        let cheapest = problem.models.flatMap { m in
            problem.menu.map { problem.storage.segmentBits(bits: $0, count: 1, rows: m.spectrum.rows, columns: m.spectrum.columns) }
        }.min()!
        problem.budgetBits = cheapest - 1
        for strategy in [Strategy.exact, .greedy, .genetic(Self.smallGenetic), .preset(Self.single(2))] {
            #expect(throws: PlanningError.infeasibleBudget(unit: "global", budgetBits: cheapest - 1,
                                                            smallestFeasibleBits: cheapest)) {
                try solve(problem, strategy: strategy, seed: 0)
            }
        }
        problem.budgetBits = cheapest
        let solution = try solve(problem, strategy: .exact, seed: 0)
        #expect(solution.allocations.reduce(0) { $0 + $1.rank } == 1)
    }

    @Test func presetWithAWidthOffTheMenuIsRejected() throws {
        let problem = SearchFixtures.problem(seed: 2, count: 2, dims: [64], ranks: 40...40, menu: [4, 2], alpha: 0.3)
        let preset = try ProfileLibrary.builtIn().preset(named: "delta-come")
        #expect(throws: PlanningError.bitWidthUnavailable(unit: "global", bits: 8)) {
            try solve(problem, strategy: .preset(preset), seed: 0)
        }
    }
}
