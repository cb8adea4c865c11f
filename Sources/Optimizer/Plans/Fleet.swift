import ModelProfiles
import Reporting

/// One fine-tune of a fleet: its matrices' spectra (with their error model) and what its quality
/// is worth against the others.
public struct FleetMember: Sendable {
    public var name: String
    public var spectra: [MatrixSpectrum]
    /// w_m ≥ 0 (e.g. a traffic share); the fleet minimises Σ w_m · relative error_m.
    public var weight: Double
    /// What its plan records as its source (the store).
    public var source: Plan.Source
    /// A quality floor: the largest predicted relative error its plan may have (nil: none).
    public var maxRelativeError: Double?

    public init(name: String, spectra: [MatrixSpectrum], weight: Double = 1, source: Plan.Source, maxRelativeError: Double? = nil) {
        precondition(weight >= 0 && weight.isFinite, "a fleet weight is finite and not negative")
        precondition(maxRelativeError.map { $0 >= 0 && $0.isFinite } ?? true, "a quality floor is finite and not negative")
        self.name = name
        self.spectra = spectra
        self.weight = weight
        self.source = source
        self.maxRelativeError = maxRelativeError
    }

    /// Σ objective energies: the error of dropping this member's whole delta.
    public var energy: Double { spectra.reduce(0) { $0 + $1.objectiveEnergy } }
}

/// A fleet's plans: one per member, each in the ordinary plan format (consumable by `compress`),
/// and the summary written as `fleet.json`.
public struct FleetPlan: Sendable {
    public var plans: [Plan]
    public var summary: FleetSummary
}

/// `fleet.json`: the shared budget, and per member its storage, α, prediction and weight.
public struct FleetSummary: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var budget: Plan.BudgetRecord
    public var strategy: Plan.StrategyRecord
    public var accounting: Accounting
    public var groupSize: Int
    /// Σ w_m · relative error_m, the objective the fleet minimises.
    public var weightedRelativeError: Double
    public var storageBits: Int
    public var members: [Member]

    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        public var weight: Double
        public var storageBits: Int
        public var denseBits: Int
        public var alpha: Double
        public var predictedError: Double
        public var predictedRelativeError: Double
        /// Its quality floor, when it has one.
        public var maxRelativeError: Double?
    }
}

extension MatrixSpectrum {
    /// The same matrix with every error scaled by `factor` (every energy multiplied, singular
    /// values and relative quantization errors unchanged): ``ErrorModel`` errors scale exactly.
    func scaled(by factor: Double) -> MatrixSpectrum {
        var s = self
        s.inputEnergy = inputEnergy.map { $0 * factor }
        s.activationEnergy *= factor
        s.droppedWeights = droppedWeights?.map { $0 * factor }
        if let sensitivity {
            s.sensitivity = .init(objective: sensitivity.objective, vectorWeights: sensitivity.vectorWeights.map { $0 * factor },
                                  dropped: sensitivity.dropped.map { $0 * factor })
        }
        return s
    }
}

/// Why a fleet has no plan.
public enum FleetPlanningError: Error, Equatable, CustomStringConvertible {
    case planning(PlanningError)
    /// A member's floor is below what even its whole dense budget reaches.
    case floorUnreachable(member: String, maxRelativeError: Double, smallestRelativeError: Double)
    /// The floors together need more than the fleet's budget: `smallestBits` meets every floor
    /// (each floored member at its smallest plan meeting it, the others keeping nothing).
    case floorsExceedBudget(budgetBits: Int, smallestBits: Int)
    /// Presets give every member the same α, which floors would contradict.
    case floorsNeedSearch(strategy: String)
    /// Pins or bits-for rules that do not fit a member's matrices.
    case overrides(member: String, OverrideError)

    public var description: String {
        switch self {
        case let .planning(error): error.description
        case let .floorUnreachable(member, floor, smallest):
            "no plan of '\(member)' meets its max relative error \(floor): with its whole dense budget the smallest predicted "
                + "relative error is \(smallest); raise the floor or widen the bit menu"
        case let .floorsExceedBudget(budget, smallest):
            "the quality floors need more than the fleet's budget: \(budget) bits (\(Format.bytes(Double(budget) / 8))) given, "
                + "the smallest budget that meets every floor is \(smallest) bits (\(Format.bytes(Double(smallest) / 8)))"
        case let .floorsNeedSearch(strategy):
            "quality floors need a search strategy (exact, genetic or greedy); \(strategy) gives every model the same α"
        case let .overrides(member, error): "fleet member '\(member)': \(error.description)"
        }
    }
}

/// Plans several fine-tunes of one base under one shared budget.
///
/// - Searches (`exact`, `genetic`, `greedy`): one problem over every member's matrices, each
///   member's errors scaled by w_m / E_m (E_m: the error of dropping its delta), so the search
///   minimises Σ w_m · relative error_m over all of them at once, under `budget` resolved over all
///   their matrices (global scope: matrices of any member compete for the same bits).
/// - Presets: every member planned alone at the same α (the budget's bits over the fleet's dense
///   bits, each member's share ⌊α · dense_m⌋, per type as the paper): the baseline a fleet plan
///   must beat.
///
/// Quality floors (``FleetMember/maxRelativeError``), searches only: the fleet is solved; a
/// member it leaves above its floor gets a Lagrange multiplier λ_m on its error (its weight
/// becomes w_m + λ_m), the smallest that brings it under (bisection), and again for whoever that
/// pushed above. Beside it, the members above their floor are fixed at their own smallest plan
/// meeting it (``solve(_:strategy:seed:target:)``, alone, global scope) and the others solved with
/// what is left: the better of the two is kept (multipliers cannot reach every split of a step
/// frontier). When even the fixed plans do not fit, the error names the smallest budget that meets
/// every floor. Every floored member's plan records its floor as the budget's target. Cost: about
/// ten fleet solves per floor and round, and one search per floor and budget bisection step.
///
/// Pins and bits-for rules (`overrides`) apply to every member's matrices (fine-tunes of one base
/// share their names): each is resolved against each member, the pinned matrices spend their bits
/// first in every solve (``solve(_:strategy:seed:)``), and each plan records them. A budget that
/// cannot hold the floors counts the fixed pins of the members without one.
///
/// Each member's plan carries its own (unscaled) predictions, and its budget record is its share:
/// the bits the fleet gave it (`given`: `fleet share of B`). Deterministic for a seed.
public func planFleet(
    _ members: [FleetMember], budget: GivenBudget, storage: StorageModel, menu: [Int], strategy: Strategy, seed: UInt64,
    toolVersion: String, overrides: Overrides = Overrides(), library: ProfileLibrary? = nil
) throws(FleetPlanningError) -> FleetPlan {
    precondition(!members.isEmpty, "a fleet has members")
    // Each member's problem alone (its unscaled error models, its pins), built once.
    var owns: [PlanningProblem] = []
    for member in members {
        let own = PlanningProblem(models: member.spectra.map(ErrorModel.init), storage: storage, budgetBits: 0, scope: .global, menu: menu)
        do { owns.append(overrides.isEmpty ? own : try own.applying(overrides, library: library)) } catch {
            throw .overrides(member: member.name, error)
        }
    }
    let all = members.flatMap(\.spectra)
    let budgetBits = budget.budget.bits(forShapes: all.map { ($0.rows, $0.columns) })
    let dense = all.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) }
    let shareText = "fleet share of \(budget.text)"
    var plans: [Plan] = []
    if case .preset = strategy {
        if members.contains(where: { $0.maxRelativeError != nil }) { throw .floorsNeedSearch(strategy: strategy.name) }
        let alpha = dense > 0 ? Double(budgetBits) / Double(dense) : 0
        for (i, member) in members.enumerated() {
            var problem = owns[i]
            problem.budgetBits = Int((alpha * Double(member.spectra.reduce(0) { $0 + StorageModel.denseBits(rows: $1.rows, columns: $1.columns) })).rounded(.down))
            problem.scope = strategy.defaultScope
            do {
                plans.append(try makePlan(problem, strategy: strategy, seed: seed, budget: .init(given: shareText, bits: problem.budgetBits),
                                          source: member.source, toolVersion: toolVersion))
            } catch { throw .planning(error) }
        }
    } else {
        // Each floored member's smallest plan meeting its floor (alone), computed when needed.
        var floors: [Int: (bits: Int, solution: Solution)] = [:]
        func computeFloors() throws(FleetPlanningError) {
            for (i, member) in members.enumerated() {
                guard let floor = member.maxRelativeError else { continue }
                do {
                    let (bits, solution) = try solve(owns[i], strategy: strategy, seed: seed, target: ErrorTarget(error: floor, unit: .relative))
                    floors[i] = (bits, solution)
                } catch {
                    switch error {
                    case let .unreachable(_, _, smallest):
                        throw .floorUnreachable(member: member.name, maxRelativeError: floor, smallestRelativeError: smallest)
                    case let .planning(error): throw .planning(error)
                    }
                }
            }
            // The members without a floor can keep nothing but their fixed pins.
            let smallest = floors.values.reduce(0) { $0 + $1.bits }
                + members.indices.filter { floors[$0] == nil }.reduce(0) { $0 + owns[$1].fixedPinBits }
            if budgetBits < smallest { throw .floorsExceedBudget(budgetBits: budgetBits, smallestBits: smallest) }
        }
        // The fleet over `free` members, member m's errors weighted w_m + λ_m, in `bits`: each
        // member's allocations (all empty when `bits` holds no vector and floors left that little).
        func solveFleet(_ free: [Int], extra λ: [Double], bits: Int) throws(FleetPlanningError) -> [Int: [Allocation]] {
            guard !free.isEmpty else { return [:] }
            let scaled = free.flatMap { i in
                let energy = members[i].energy
                return members[i].spectra.map { $0.scaled(by: energy > 0 ? (members[i].weight + λ[i]) / energy : 0) }
            }
            // Every free member's pins and menus, at its matrices' place in the fleet.
            var pinned = ResolvedOverrides(rules: overrides), place = 0
            for i in free {
                for (m, pin) in owns[i].overrides.pins { pinned.pins[place + m] = pin }
                for (m, own) in owns[i].overrides.menus { pinned.menus[place + m] = own }
                place += members[i].spectra.count
            }
            let problem = PlanningProblem(models: scaled.map(ErrorModel.init), storage: storage, budgetBits: bits, scope: .global, menu: menu,
                                          overrides: pinned)
            let allocations: [Allocation]
            do { allocations = try solve(problem, strategy: strategy, seed: seed).allocations } catch {
                guard case .infeasibleBudget = error, members.contains(where: { $0.maxRelativeError != nil }) else { throw .planning(error) }
                // Nothing but the pins (whose bits the floors' check counted).
                let fixed = (try? problem.pinnedAllocations()) ?? [:]
                allocations = scaled.indices.map { fixed[$0] ?? .empty }
            }
            var shares: [Int: [Allocation]] = [:], offset = 0
            for i in free {
                shares[i] = Array(allocations[offset..<(offset + members[i].spectra.count)])
                offset += members[i].spectra.count
            }
            return shares
        }
        func meetsFloor(_ i: Int, _ allocations: [Allocation]) -> Bool {
            guard let floor = members[i].maxRelativeError else { return true }
            return owns[i].predictedError(allocations) <= floor * members[i].energy
        }
        func above(_ shares: [Int: [Allocation]]) -> [Int] {
            shares.keys.sorted().filter { !meetsFloor($0, shares[$0]!) }
        }

        let everyone = Array(members.indices)
        var λ = Array(repeating: 0.0, count: members.count)
        var shares = try solveFleet(everyone, extra: λ, bits: budgetBits)
        if !above(shares).isEmpty {
            // Floors as Lagrange multipliers: raise λ_m of a member above its floor, by bisection
            // on log λ (to 5 %, from 10⁻⁴ Σ w: about eight solves; from a λ already raised, four),
            // to the smallest that brings it under; again for whoever that pushed above, one
            // round per floor and one more.
            let totalWeight = members.reduce(0) { $0 + $1.weight } + 1
            var rounds = 0
            while let i = above(shares).first, rounds <= members.filter({ $0.maxRelativeError != nil }).count {
                rounds += 1
                var low = max(λ[i], 1e-4 * totalWeight), high = λ[i] > 0 ? 2 * λ[i] : totalWeight
                var met: [Int: [Allocation]]?
                while met == nil, high < 1e6 * totalWeight {
                    λ[i] = high
                    let trial = try solveFleet(everyone, extra: λ, bits: budgetBits)
                    if meetsFloor(i, trial[i]!) { met = trial } else { (low, high) = (high, 4 * high) }
                }
                guard var best = met else { break }
                while high > 1.05 * low {
                    let mid = (low * high).squareRoot()
                    λ[i] = mid
                    let trial = try solveFleet(everyone, extra: λ, bits: budgetBits)
                    if meetsFloor(i, trial[i]!) { (high, best) = (mid, trial) } else { low = mid }
                }
                λ[i] = high
                shares = best
            }
            // And the floored members above their floor in the fleet fixed at their own smallest
            // plan meeting it (alone), the rest solved with what is left, until none is above:
            // multipliers cannot reach every split of a step frontier (the better of the two is
            // kept), and this says when the budget cannot hold the floors at all.
            var candidates: [(shares: [Int: [Allocation]], fixed: Set<Int>)] = []
            if above(shares).isEmpty { candidates.append((shares, [])) }
            try computeFloors()
            var pinned = Set<Int>()
            while true {
                let free = everyone.filter { !pinned.contains($0) }
                let left = budgetBits - pinned.reduce(0) { $0 + floors[$1]!.bits }
                let trial = try solveFleet(free, extra: Array(repeating: 0, count: members.count), bits: left)
                let over = above(trial)
                if over.isEmpty {
                    candidates.append((trial, pinned))
                    break
                }
                pinned.formUnion(over)
            }
            func objective(_ c: (shares: [Int: [Allocation]], fixed: Set<Int>)) -> Double {
                members.indices.reduce(0) { total, i in
                    let energy = members[i].energy
                    guard energy > 0 else { return total }
                    let error = c.fixed.contains(i) ? floors[i]!.solution.predictedError : owns[i].predictedError(c.shares[i]!)
                    return total + members[i].weight * error / energy
                }
            }
            // A member fixed at its floor has no share: its plan is its own smallest one.
            shares = candidates.min { objective($0) < objective($1) }!.shares
        }
        for (i, member) in members.enumerated() {
            var share = owns[i]
            if let allocations = shares[i] {
                share.budgetBits = share.storageBits(allocations)
                plans.append(plan(
                    of: Solution(allocations: allocations, predictedError: share.predictedError(allocations),
                                 storageBits: share.budgetBits, report: .preset),
                    share, strategy: strategy, seed: seed,
                    budget: .init(given: shareText, bits: share.budgetBits,
                                  target: member.maxRelativeError.map { ErrorTarget(error: $0, unit: .relative) }),
                    source: member.source, toolVersion: toolVersion))
            } else {
                let floor = floors[i]!
                share.budgetBits = floor.bits
                plans.append(plan(of: floor.solution, share, strategy: strategy, seed: seed,
                                  budget: .init(given: shareText, bits: floor.bits,
                                                target: member.maxRelativeError.map { ErrorTarget(error: $0, unit: .relative) }),
                                  source: member.source, toolVersion: toolVersion))
            }
        }
    }
    let rows = zip(members, plans).map { member, plan in
        FleetSummary.Member(
            name: member.name, weight: member.weight, storageBits: plan.totals.storageBits, denseBits: plan.totals.denseBits,
            alpha: plan.totals.alpha, predictedError: plan.totals.predictedError ?? 0,
            predictedRelativeError: plan.totals.predictedRelativeError ?? 0, maxRelativeError: member.maxRelativeError)
    }
    let summary = FleetSummary(
        formatVersion: FleetSummary.currentFormatVersion, budget: .init(given: budget.text, bits: budgetBits),
        strategy: .init(strategy, seed: seed), accounting: storage.accounting, groupSize: storage.groupSize,
        weightedRelativeError: rows.reduce(0) { $0 + $1.weight * $1.predictedRelativeError },
        storageBits: rows.reduce(0) { $0 + $1.storageBits }, members: rows)
    return FleetPlan(plans: plans, summary: summary)
}

