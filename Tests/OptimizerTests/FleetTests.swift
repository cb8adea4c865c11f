import Testing
import LinearAlgebra
import ModelProfiles
@testable import Optimizer

/// Fleet plans: several models under one budget, minimising Σ w · relative error.
@Suite struct FleetTests {
    static func member(_ name: String, seed: UInt64, weight: Double, scale: Double) -> FleetMember {
        let problem = SearchFixtures.problem(seed: seed, count: 2, dims: [8, 12, 16], ranks: 2...4, menu: [8, 3, 2],
                                             alpha: 0.3, storage: StorageModel(groupSize: 4))
        // Deltas of different sizes: relative errors make them comparable.
        return FleetMember(name: name, spectra: problem.models.map { $0.spectrum.scaled(by: scale) }, weight: weight,
                           source: .init(kind: "store", name: name, hash: name))
    }

    /// The fleet's objective is never worse than giving every model the same α with `exact`
    /// (tiny models, where `exact` is the true optimum), every plan fits its share, and the shares
    /// fit the fleet's budget.
    @Test(arguments: 0..<12 as Range<UInt64>)
    func neverWorseThanTheSameAlphaForEveryModel(seed: UInt64) throws {
        let members = [
            Self.member("a", seed: seed, weight: 1, scale: 1),
            Self.member("b", seed: seed + 100, weight: 3, scale: 50),
        ]
        let storage = StorageModel(groupSize: 4)
        let budget = GivenBudget.ratio(0.12 + 0.02 * Double(seed % 5))
        let fleet = try planFleet(members, budget: budget, storage: storage, menu: [8, 3, 2], strategy: .exact, seed: 0,
                                  toolVersion: "test")
        #expect(fleet.summary.storageBits <= fleet.summary.budget.bits)
        for plan in fleet.plans { #expect(plan.totals.storageBits <= plan.budget.bits) }
        // The baseline: each model alone at the fleet's α.
        let dense = members.flatMap(\.spectra).reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
        let alpha = Double(fleet.summary.budget.bits) / Double(dense)
        var baseline = 0.0
        for m in members {
            let mDense = m.spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
            let problem = PlanningProblem(models: m.spectra.map(ErrorModel.init), storage: storage,
                                          budgetBits: Int((alpha * Double(mDense)).rounded(.down)), scope: .global, menu: [8, 3, 2])
            // A model whose share holds no vector keeps nothing: relative error 1.
            let error = (try? solve(problem, strategy: .exact, seed: 0))?.predictedError ?? m.energy
            baseline += m.weight * error / m.energy
        }
        #expect(fleet.summary.weightedRelativeError <= baseline * (1 + 1e-9), "seed \(seed)")
        // The summary's objective is what the plans predict, weighted.
        let recomputed = zip(members, fleet.plans).reduce(0.0) { $0 + $1.0.weight * ($1.1.totals.predictedRelativeError ?? 0) }
        #expect(abs(recomputed - fleet.summary.weightedRelativeError) <= 1e-12 * max(1, recomputed))
    }

    /// A heavier weight buys a model more of the budget; a preset gives every model the same α.
    @Test func weightsMoveBitsAndPresetsShareAlpha() throws {
        let storage = StorageModel(groupSize: 4)
        func share(_ weightB: Double) throws -> Int {
            let fleet = try planFleet([Self.member("a", seed: 1, weight: 1, scale: 1), Self.member("b", seed: 2, weight: weightB, scale: 1)],
                                      budget: .ratio(0.15), storage: storage, menu: [8, 3, 2], strategy: .exact, seed: 0,
                                      toolVersion: "test")
            return fleet.summary.members[1].storageBits
        }
        #expect(try share(20) >= share(0.05))
        let library = try ProfileLibrary.builtIn()
        let preset = try Strategy(parsing: "preset:single-3", library: library)
        let members = [Self.member("a", seed: 1, weight: 1, scale: 1), Self.member("b", seed: 2, weight: 1, scale: 1)]
        let fleet = try planFleet(members, budget: .ratio(0.6), storage: storage, menu: [8, 3, 2], strategy: preset, seed: 0,
                                  toolVersion: "test")
        #expect(fleet.plans.allSatisfy { $0.strategy.preset == "single-3" })
        for (m, plan) in zip(members, fleet.plans) {
            let mDense = m.spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
            #expect(abs(Double(plan.budget.bits) / Double(mDense) - Double(fleet.summary.budget.bits) / Double(fleet.plans.reduce(0) { $0 + $1.totals.denseBits })) < 1e-3)
        }
    }

    /// Scaling a spectrum scales every error of its model exactly.
    @Test func scaledSpectraScaleErrors() throws {
        let m = Self.member("a", seed: 4, weight: 1, scale: 1)
        for s in m.spectra {
            let a = ErrorModel(s), b = ErrorModel(s.scaled(by: 7))
            for rank in 0...s.storedRank {
                let allocation = Allocation(segments: rank == 0 ? [] : [Segment(start: 0, end: rank, bits: 3)])
                #expect(abs(b.error(of: allocation) - 7 * a.error(of: allocation)) <= 1e-12 * max(1, b.error(of: allocation)))
            }
        }
    }
}
