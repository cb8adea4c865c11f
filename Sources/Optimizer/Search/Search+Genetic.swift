import ModelProfiles

extension SearchContext {
    /// A genetic search in the spirit of the paper's Appendix B.
    ///
    /// Genome: the counts of vectors per menu width *per matrix* (`M × L` integers), under every
    /// scope, so that sensitive matrices can take more than their share within a unit (under
    /// `.matrix` each unit is one matrix anyway). The population is one flat `[Int]` buffer of
    /// `population × M·L` with stride `M·L`.
    ///
    /// - Initial population: the greedy plan, the paper's 8×2 + 3×32 + 2 preset (when its widths
    ///   are on the menu), heavy mutations of the greedy plan, and random genomes; all repaired.
    /// - Each generation: the `elitism` best are copied; every other child takes two parents by
    ///   tournament, inherits each matrix's counts from either parent (uniform crossover per matrix,
    ///   with probability `crossoverRate`), has each matrix mutated with probability
    ///   `mutationRate` (a random number of vectors moved between two widths, dropped, or added),
    ///   and is repaired per unit by ``UnitRepair`` (trim by least loss per bit, fill by best gain
    ///   per bit, then up to `exchangesPerChild` improving exchanges between matrices).
    /// - Fitness: predicted error summed over the model; a NaN fitness is replaced by +∞ before
    ///   selection. Stops after `generations`, or `patience` generations without improvement.
    ///
    /// Every random number comes from `MersenneTwister(seed:)`, so a run is reproducible.
    func genetic(_ options: GeneticOptions, seed: UInt64) -> ([Int], [Double], Int, Int) {
        let stride = tables.count * levels
        // The greedy plan seeds the population; when its shared mix is impossible (members
        // without a common width) the repair fills an empty plan instead.
        let greedyCounts = (try? greedy())?.0 ?? [Int](repeating: 0, count: stride)
        guard stride > 0 else { return (greedyCounts, [], 0, 0) }
        let population = max(2, options.population)
        let elitism = min(max(0, options.elitism), population - 1)
        var rng = MersenneTwister(seed: seed)
        let repairs = units.filter { !$0.members.isEmpty }.map {
            UnitRepair(tables: tables, members: $0.members, budget: $0.budgetBits, levels: levels)
        }
        var current = [Int](repeating: 0, count: population * stride)
        var next = current
        var fitness = [Double](repeating: .infinity, count: population)
        var nextFitness = fitness
        var evaluations = 0

        func evaluate(_ g: UnsafeMutablePointer<Int>) -> Double {
            evaluations += 1
            let e = error(g)
            return e.isNaN ? .infinity : e
        }
        func mutate(_ g: UnsafeMutablePointer<Int>, matrix m: Int) {
            let t = tables[m], c = g + m * levels
            guard !t.usable.isEmpty, t.rank > 0 else { return }
            var kept = 0
            for l in 0..<levels { kept += c[l] }
            let nonEmpty = t.usable.filter { c[$0] > 0 }
            if nonEmpty.isEmpty || (kept < t.rank && rng.uniformInt(below: 4) == 0) {
                // Keep more vectors at a random width.
                let room = t.rank - kept
                let n = 1 + rng.uniformInt(below: max(1, min(room, max(1, kept / 4 + 1))))
                c[t.usable[rng.uniformInt(below: t.usable.count)]] += min(n, room)
                return
            }
            let from = nonEmpty[rng.uniformInt(below: nonEmpty.count)]
            let n = 1 + rng.uniformInt(below: max(1, c[from] / 3))
            c[from] -= n
            let target = rng.uniformInt(below: t.usable.count + 1)
            if target < t.usable.count, t.usable[target] != from { c[t.usable[target]] += n }
        }
        func repair(_ g: UnsafeMutablePointer<Int>, exchanges: Int) {
            for r in repairs { r.repair(g, exchanges: exchanges) }
        }

        // Initial population.
        var seeds: [[Int]] = [greedyCounts]
        let paper = PrecisionPreset(
            name: "delta-come", description: "", segments: [.init(bits: 8, count: 2), .init(bits: 3, count: 32), .init(bits: 2, count: nil)])
        if let counts = try? presetCounts(paper) { seeds.append(counts) }
        current.withUnsafeMutableBufferPointer { pop in
            let base = pop.baseAddress!
            for p in 0..<population {
                let g = base + p * stride
                if p < seeds.count {
                    for i in 0..<stride { g[i] = seeds[p][i] }
                } else if p % 2 == 0 {
                    for i in 0..<stride { g[i] = greedyCounts[i] }
                    for m in tables.indices where rng.uniform() < 0.3 { mutate(g, matrix: m) }
                } else {
                    for m in tables.indices {
                        let t = tables[m]
                        for l in 0..<levels { g[m * levels + l] = 0 }
                        var remaining = t.rank > 0 ? rng.uniformInt(below: t.rank + 1) : 0
                        for l in t.usable where remaining > 0 {
                            let n = rng.uniformInt(below: remaining + 1)
                            g[m * levels + l] = n
                            remaining -= n
                        }
                    }
                }
                repair(g, exchanges: p < seeds.count ? 1_000_000 : options.exchangesPerChild)
                fitness[p] = evaluate(g)
            }
        }

        func bestIndex(_ f: [Double]) -> Int { f.indices.min { (f[$0], $0) < (f[$1], $1) }! }
        var bestFitness = fitness[bestIndex(fitness)]
        var bestGenome = Array(current[bestIndex(fitness) * stride ..< (bestIndex(fitness) + 1) * stride])
        var convergence = [bestFitness]
        var stale = 0, generation = 0
        let tournament = max(1, options.tournamentSize)

        while generation < options.generations && stale < max(1, options.patience) {
            generation += 1
            let order = fitness.indices.sorted { (fitness[$0], $0) < (fitness[$1], $1) }
            current.withUnsafeMutableBufferPointer { pop in
                next.withUnsafeMutableBufferPointer { out in
                    let src = pop.baseAddress!, dst = out.baseAddress!
                    func select() -> Int {
                        var winner = rng.uniformInt(below: population)
                        for _ in 1..<tournament {
                            let other = rng.uniformInt(below: population)
                            if (fitness[other], other) < (fitness[winner], winner) { winner = other }
                        }
                        return winner
                    }
                    for p in 0..<population {
                        let child = dst + p * stride
                        if p < elitism {
                            let elite = src + order[p] * stride
                            for i in 0..<stride { child[i] = elite[i] }
                            nextFitness[p] = fitness[order[p]]
                            continue
                        }
                        let a = src + select() * stride, b = src + select() * stride
                        let mix = rng.uniform() < options.crossoverRate
                        for m in tables.indices {
                            let parent = mix && rng.uniformInt(below: 2) == 1 ? b : a
                            for l in 0..<levels { child[m * levels + l] = parent[m * levels + l] }
                        }
                        for m in tables.indices where rng.uniform() < options.mutationRate { mutate(child, matrix: m) }
                        repair(child, exchanges: options.exchangesPerChild)
                        nextFitness[p] = evaluate(child)
                    }
                }
            }
            swap(&current, &next)
            swap(&fitness, &nextFitness)
            let winner = bestIndex(fitness), best = fitness[winner]
            if best < bestFitness * (1 - 1e-12) { stale = 0 } else { stale += 1 }
            if best < bestFitness {
                bestFitness = best
                bestGenome = Array(current[winner * stride ..< (winner + 1) * stride])
            }
            convergence.append(bestFitness)
        }
        return (bestGenome, convergence, generation, evaluations)
    }
}
