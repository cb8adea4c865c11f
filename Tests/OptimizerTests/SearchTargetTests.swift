import Testing
import LinearAlgebra
import ModelProfiles
@testable import Optimizer

/// Plans that meet a quality target with the smallest budget (`plan --max-error`).
@Suite struct SearchTargetTests {
    /// On tiny problems (where `exact` is the true optimum, checked against brute force in
    /// ``SearchExactTests``): the plan meets the target, one bit less of budget has no plan that
    /// meets it (brute force), and dropping the plan's cheapest removable segment (a matrix's last)
    /// breaks the target.
    @Test(arguments: 0..<16 as Range<UInt64>)
    func exactFindsTheSmallestBudget(seed: UInt64) throws {
        let problem = SearchExactTests.tiny(seed)
        let given = try solve(problem, strategy: .exact, seed: 0)  // the plan at the problem's budget: a reachable target
        let energy = problem.models.reduce(0) { $0 + $1.spectrum.objectiveEnergy }
        // Targets between the given budget's optimum and half the whole delta's energy.
        for fraction in [0.0, 0.3, 0.7] {
            let allowed = given.predictedError + fraction * max(0, energy / 2 - given.predictedError)
            let target = ErrorTarget(error: allowed / energy)
            let (bits, solution) = try solve(problem, strategy: .exact, seed: 0, target: target)
            #expect(solution.predictedError <= allowed * (1 + 1e-12), "seed \(seed): misses its target")
            #expect(solution.storageBits <= bits)
            var smaller = problem
            smaller.budgetBits = bits - 1
            #expect(SearchExactTests.bruteForce(smaller) > allowed * (1 + 1e-12), "seed \(seed): \(bits - 1) bits also meet it")
            // Minimality of the plan itself: without its cheapest final segment it misses the target.
            var cheapest: (matrix: Int, segment: Int, bits: Int)?
            for (m, a) in solution.allocations.enumerated() {
                let s = problem.models[m].spectrum
                func bits(_ n: Int) -> Int {
                    problem.storage.bits(of: Allocation(segments: Array(a.segments.prefix(n))), rows: s.rows, columns: s.columns)
                }
                // Only the last segment can go alone (segments are consecutive from vector 0).
                if let last = a.segments.indices.last, a.segments[last].count > 0 {
                    let cost = bits(last + 1) - bits(last)
                    if cost < cheapest?.bits ?? .max { cheapest = (m, last, cost) }
                }
            }
            if let cheapest {
                var reduced = solution.allocations
                reduced[cheapest.matrix] = Allocation(segments: Array(reduced[cheapest.matrix].segments.prefix(cheapest.segment)))
                #expect(problem.predictedError(reduced) > allowed, "seed \(seed): the plan is not minimal")
            }
        }
    }

    /// Tighter targets never need less budget, and absolute and relative targets agree.
    @Test func budgetGrowsAsTheTargetTightens() throws {
        let problem = SearchFixtures.problem(seed: 3, count: 4, dims: [24, 32, 48], ranks: 6...10, menu: [8, 3, 2],
                                             alpha: 1, storage: StorageModel(groupSize: 8))
        let energy = problem.models.reduce(0) { $0 + $1.spectrum.objectiveEnergy }
        let floor = try solve(problem, strategy: .exact, seed: 0).predictedError / energy  // every vector kept
        var previous = 0
        for relative in [0.6, 0.4, 0.25, 0.1, 0.02].map({ floor + $0 * (1 - floor) }) {
            let (bits, solution) = try solve(problem, strategy: .exact, seed: 0, target: ErrorTarget(error: relative))
            #expect(bits >= previous, "\(relative): \(bits) bits < \(previous)")
            #expect(solution.predictedError <= relative * energy)
            let absolute = try solve(problem, strategy: .exact, seed: 0, target: ErrorTarget(error: relative * energy, unit: .absolute))
            #expect(absolute.budgetBits == bits)
            previous = bits
        }
        // Genetic meets the same target, with at least exact's budget (exact is optimal per budget).
        let target = floor + 0.1 * (1 - floor)
        let genetic = try solve(problem, strategy: .genetic(GeneticOptions(population: 8, generations: 4)), seed: 1,
                                target: ErrorTarget(error: target))
        #expect(genetic.solution.predictedError <= target * energy)
    }

    /// A target below what the whole dense budget achieves is refused with that smallest error.
    @Test func unreachableTargetsSayWhatIsReachable() throws {
        let problem = SearchFixtures.problem(seed: 5, count: 3, dims: [32, 48], ranks: 5...8, menu: [3, 2],
                                             alpha: 0.2, storage: StorageModel())
        do {
            _ = try solve(problem, strategy: .exact, seed: 0, target: ErrorTarget(error: 1e-12))
            Issue.record("an unreachable target was met")
        } catch let error {
            guard case let .unreachable(_, smallest, relative) = error else { Issue.record("\(error)"); return }
            #expect(smallest > 0 && relative > 1e-12)
            #expect(error.description.contains("smallest predicted error"))
        }
    }
}
