import Foundation
import LinearAlgebra
import ModelProfiles
import Testing
@testable import Optimizer

/// `--pin REGEX=SPEC` and `--bits-for REGEX=BITS`: the one parser, resolution against a
/// problem's matrices, and searches that plan the unpinned rest with what the pins leave.
@Suite struct PinSyntaxTests {
    /// Every form parses, prints as it was written, and parses back to the same pin.
    @Test(arguments: ["q_proj=keep", "layers\\.0\\.=drop", "mlp=delta-come", "mlp=preset:single-3", "a=b=8:2,3:32,2:fill",
                      "x=16:4", "x=4:1,1:fill", "x=8:2,3:32,2:100"])
    func formsRoundTrip(text: String) throws {
        let pin = try Pin(parsing: text)
        #expect(pin.description == text)
        #expect(try Pin(parsing: pin.description) == pin)
        let data = try JSONEncoder().encode(pin)
        #expect(try JSONDecoder().decode(Pin.self, from: data) == pin)
        // Split at the last '=': a pattern may hold '=', a spec never does.
        #expect(pin.pattern == String(text[..<text.lastIndex(of: "=")!]))
    }

    @Test func specsMeanWhatTheySay() throws {
        #expect(try Pin(parsing: "x=keep").spec == .keep)
        #expect(try Pin(parsing: "x=drop").spec == .drop)
        #expect(try Pin(parsing: "x=single-3").spec == .preset("single-3"))
        #expect(try Pin(parsing: "x=8:2,3:32,2:fill").spec
                == .segments([.init(bits: 8, count: 2), .init(bits: 3, count: 32), .init(bits: 2, count: nil)]))
        #expect(try BitsFor(parsing: "mlp=16,8,4").bits == [16, 8, 4])
        #expect(try BitsFor(parsing: "mlp=2,8,0").bits == [8, 2])  // as --bits: sorted, 0 (dropping) implied
    }

    /// Bad syntax is refused by name: the option (or request field) and the rule as written.
    @Test(arguments: [
        ("x", "expected REGEX=SPEC"), ("=keep", "the pattern before '=' is empty"), ("x=", "nothing after '='"),
        ("x=8:2,8:3", "strictly decrease"), ("x=3:2,8:3", "strictly decrease"), ("x=8:0", "positive integer"),
        ("x=8:two", "positive integer"), ("x=8:fill,3:2", "only the last segment"), ("x=5:2", "5 is not a bit-width"),
        ("x=8:2,3", "is not BITS:COUNT"), ("x=0:4", "0 is not a bit-width"), ("[=keep", "not a valid regular expression"),
        ("x=a b", "is not a SPEC"), ("x=preset:", "is not a SPEC"),
    ])
    func badPinsNameThemselves(text: String, reason: String) {
        for field in ["--pin", "pins[3]"] {
            do {
                _ = try Pin(parsing: text, field: field)
                Issue.record("'\(text)' parsed")
            } catch {
                guard case let .malformed(f, t, _) = error else { Issue.record("\(error)"); continue }
                #expect(f == field && t == text)
                #expect(error.description.hasPrefix("invalid \(field) '\(text)': "), "\(error)")
                #expect(error.description.contains(reason), "\(error)")
            }
        }
    }

    @Test(arguments: [("mlp=", "nothing after"), ("mlp=16,5", "unsupported bit-width 5"), ("mlp=8,8", "listed twice"),
                      ("mlp=0", "no positive bit-width"), ("(=8", "not a valid regular expression"), ("mlp", "expected REGEX=BITS")])
    func badBitsForNameThemselves(text: String, reason: String) {
        do {
            _ = try BitsFor(parsing: text, field: "bitsFor[0]")
            Issue.record("'\(text)' parsed")
        } catch {
            #expect(error.description.hasPrefix("invalid bitsFor[0] '\(text)': "), "\(error)")
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    /// An unknown preset is an error naming the pin (and listing the presets), before any work.
    @Test func unknownPresetsAreRefused() throws {
        let overrides = try Overrides(pins: ["mlp=delta-comet"], bitsFor: [])
        #expect(throws: OverrideError.self) { try overrides.checkPresets() }
        do { try overrides.checkPresets() } catch {
            #expect(error.description.contains("pin 'mlp=delta-comet'") && error.description.contains("delta-come"), "\(error)")
        }
    }
}

@Suite struct PinPlanningTests {
    static let names = (0..<6).map { "m\($0)" }

    /// Six matrices (ranks 6…12, every width measured) at α, scope `scope`.
    static func problem(_ seed: UInt64, alpha: Double = 0.5, scope: Scope = .global, menu: [Int] = SearchFixtures.fullMenu) -> PlanningProblem {
        SearchFixtures.problem(seed: seed, count: 6, dims: [16, 24, 32], ranks: 6...12, menu: menu, alpha: alpha, scope: scope)
    }

    static func strategies() throws -> [Strategy] {
        [.exact, .greedy, .genetic(GeneticOptions(population: 6, generations: 6)),
         .preset(try ProfileLibrary.builtIn().preset(named: "delta-come"))]
    }

    /// The pinned matrices get exactly their pins (explicit segments with `fill` = the stored
    /// vectors left, `keep` dense, `drop` empty); the whole plan stays within the budget; and the
    /// rest is what the strategy makes of the reduced problem given directly — the other matrices,
    /// the budget minus the pins' bits, the same scope — built here by hand.
    @Test(arguments: 0..<6 as Range<UInt64>)
    func pinnedSegmentsAreAsPinnedAndTheRestIsTheReducedProblem(seed: UInt64) throws {
        for strategy in try Self.strategies() {
            let full = Self.problem(seed, alpha: 0.6, scope: strategy.defaultScope)
            let problem = try full.applying(try Overrides(pins: ["^m0$=8:2,3:fill", "^m1$=keep", "m2=drop", "^m[0]$=8:2,3:fill"], bitsFor: []))
            let rank0 = full.models[0].spectrum.storedRank
            let expected: [Int: Allocation] = [0: Allocation(counts: [8: 2, 3: rank0 - 2]), 1: .dense, 2: .empty]
            let pinnedBits = expected.reduce(0) { $0 + full.storage.bits(of: $1.value, rows: full.models[$1.key].spectrum.rows,
                                                                         columns: full.models[$1.key].spectrum.columns) }
            // The reduced problem, directly: where it has no plan, the pinned problem has none either.
            let free = [3, 4, 5]
            let reduced = PlanningProblem(models: free.map { full.models[$0] }, storage: full.storage,
                                          budgetBits: full.budgetBits - pinnedBits, scope: full.scope, menu: full.menu)
            guard pinnedBits <= full.budgetBits, let direct = try? solve(reduced, strategy: strategy, seed: 3) else {
                #expect(throws: PlanningError.self) { try solve(problem, strategy: strategy, seed: 3) }
                continue
            }
            let solution = try solve(problem, strategy: strategy, seed: 3)
            for (m, a) in expected {
                #expect(solution.allocations[m] == a, "seed \(seed) \(strategy.name): m\(m) is \(solution.allocations[m])")
            }
            #expect(solution.allocations[0].segments == [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: rank0, bits: 3)])
            let s1 = full.models[1].spectrum
            #expect(full.storage.bits(of: solution.allocations[1], rows: s1.rows, columns: s1.columns) == 16 * s1.rows * s1.columns)
            #expect(solution.storageBits <= full.budgetBits, "seed \(seed) \(strategy.name)")
            #expect(solution.storageBits == full.storageBits(solution.allocations))
            #expect(solution.predictedError == full.predictedError(solution.allocations))
            let rest = free.map { solution.allocations[$0] }
            #expect(rest == direct.allocations, "seed \(seed) \(strategy.name)")
            for (used, budget) in SearchFixtures.unitBits(reduced, direct.allocations) { #expect(used <= budget) }
        }
    }

    /// On tiny problems the pinned `exact` plan's rest is the optimum of the rest (brute force over
    /// every allocation of the unpinned matrices within what the pin leaves), and its lower bound
    /// bounds the whole plan.
    @Test(arguments: 0..<12 as Range<UInt64>)
    func exactWithAPinIsOptimalForTheRest(seed: UInt64) throws {
        let full = SearchFixtures.problem(seed: seed, count: 3, dims: [8, 12], ranks: 2...4, menu: [8, 3, 2], alpha: 0.4,
                                          storage: StorageModel(groupSize: 2))
        let problem = try full.applying(try Overrides(pins: ["^m1$=3:1"], bitsFor: []))
        let s1 = full.models[1].spectrum
        let pinBits = full.storage.bits(of: Allocation(counts: [3: 1]), rows: s1.rows, columns: s1.columns)
        guard pinBits <= full.budgetBits else { return }
        let solution = try solve(problem, strategy: .exact, seed: 0)
        var rest = full
        rest.models = [full.models[0], full.models[2]]
        rest.budgetBits = full.budgetBits - pinBits
        let optimum = SearchExactTests.bruteForce(rest)
        let restError = solution.predictedError - full.models[1].error(of: Allocation(counts: [3: 1]))
        #expect(abs(restError - optimum) <= 1e-12 * max(1, optimum), "seed \(seed)")
        guard case let .exact(bound) = solution.report else { Issue.record("\(solution.report)"); return }
        #expect(bound <= solution.predictedError * (1 + 1e-12))
    }

    /// A preset pin gives its matrix the preset at the matrix's share of the budget: what the
    /// preset gives it when every matrix has its own share (`--scope matrix`).
    @Test(arguments: ["delta-come", "single-3", "double-8+3"])
    func presetPinsTakeTheirMatrixShare(preset: String) throws {
        let library = try ProfileLibrary.builtIn()
        var planned = 0
        for seed: UInt64 in 0..<4 {
            for alpha in [0.3, 0.8] {
                let full = Self.problem(seed, alpha: alpha)
                let problem = try full.applying(try Overrides(pins: ["^m[24]$=\(preset)"], bitsFor: []))
                var perMatrix = full
                perMatrix.scope = .matrix
                let reference: [Allocation]
                let strategy = Strategy.preset(try library.preset(named: preset))
                do { reference = try solve(perMatrix, strategy: strategy, seed: 0).allocations } catch {
                    // The share cannot hold the preset's fixed segments: the pin says so with the same numbers.
                    guard case let .infeasibleBudget(unit, share, smallest) = error, ["m2", "m4"].contains(unit) else { continue }
                    #expect(throws: PlanningError.pinnedPresetInfeasible(pin: "^m[24]$=\(preset)", matrix: unit, shareBits: share, smallestBits: smallest)) {
                        try solve(problem, strategy: .exact, seed: 0)
                    }
                    continue
                }
                let solution = try solve(problem, strategy: .exact, seed: 0)
                for m in [2, 4] { #expect(solution.allocations[m] == reference[m], "seed \(seed) α \(alpha) m\(m)") }
                planned += 1
            }
        }
        #expect(planned >= 4)
    }

    /// `--bits-for`: every segment of a matching matrix uses an allowed width, for every search;
    /// without the rule the same searches use other widths there (so the rule did something).
    @Test func bitsForRestrictsEverySearch() throws {
        var unrestrictedUsesOthers = false
        for seed: UInt64 in 0..<6 {
            for strategy in try Self.strategies().dropLast() {  // a preset's mix is fixed; see presetsOutsideAMatrixMenuAreRefused
                let full = Self.problem(seed, alpha: 0.15, scope: strategy.defaultScope)
                let problem = try full.applying(try Overrides(pins: [], bitsFor: ["^m[0-2]$=16,4,2"]))
                #expect(problem.menu(of: 1) == [16, 4, 2] && problem.menu(of: 4) == full.menu)
                let solution = try solve(problem, strategy: strategy, seed: 5)
                for m in 0...2 {
                    let widths = Set(solution.allocations[m].counts.keys)
                    #expect(widths.isSubset(of: [16, 4, 2]), "seed \(seed) \(strategy.name) m\(m): \(widths)")
                }
                #expect(solution.storageBits <= full.budgetBits)
                let free = try solve(full, strategy: strategy, seed: 5)
                if (0...2).contains(where: { !Set(free.allocations[$0].counts.keys).isSubset(of: [16, 4, 2]) }) {
                    unrestrictedUsesOthers = true
                }
            }
        }
        #expect(unrestrictedUsesOthers)
    }

    @Test func presetsOutsideAMatrixMenuAreRefused() throws {
        let problem = try Self.problem(1, scope: .type).applying(try Overrides(pins: [], bitsFor: ["^m0$=4,2"]))
        let preset = try ProfileLibrary.builtIn().preset(named: "delta-come")
        #expect(throws: PlanningError.bitWidthUnavailable(unit: "attention", bits: 8)) {
            try solve(problem, strategy: .preset(preset), seed: 0)
        }
    }

    /// Pins that alone exceed the budget: an error giving the pins' bits, the budget and the
    /// difference, and each pin's share of it.
    @Test func pinsOverTheBudgetSayByHowMuch() throws {
        var full = Self.problem(2)
        let dense = [0, 1].reduce(0) { $0 + 16 * full.models[$1].spectrum.rows * full.models[$1].spectrum.columns }
        let s5 = full.models[5].spectrum
        let sixteen = full.storage.bits(of: Allocation(counts: [16: 3]), rows: s5.rows, columns: s5.columns)
        full.budgetBits = (dense + sixteen) * 3 / 4
        let problem = try full.applying(try Overrides(pins: ["^m[01]$=keep", "^m5$=16:3"], bitsFor: []))
        do {
            _ = try solve(problem, strategy: .exact, seed: 0)
            Issue.record("pins over the budget were planned")
        } catch {
            #expect(error == .pinsExceedBudget(budgetBits: full.budgetBits, pinnedBits: dense + sixteen, pins: [
                .init(pin: "^m[01]$=keep", matrices: 2, bits: dense), .init(pin: "^m5$=16:3", matrices: 1, bits: sixteen),
            ]))
            #expect(error.description.contains("by \(dense + sixteen - full.budgetBits) bits"), "\(error)")
            #expect(error.description.contains("'^m[01]$=keep' \(dense) bits"), "\(error)")
        }
        // Pins that fit but leave the rest less than one vector: the rest's unit says what the pins left.
        let rest = full.models.indices.filter { $0 > 1 }.flatMap { m in
            full.menu.map { full.storage.segmentBits(bits: $0, count: 1, rows: full.models[m].spectrum.rows, columns: full.models[m].spectrum.columns) }
        }.min()!
        var tight = try full.applying(try Overrides(pins: ["^m[01]$=keep"], bitsFor: []))
        tight.budgetBits = dense + rest - 1
        do {
            _ = try solve(tight, strategy: .exact, seed: 0)
            Issue.record("an infeasible rest was planned")
        } catch {
            guard case let .infeasibleBudget(unit, bits, smallest) = error else { Issue.record("\(error)"); return }
            #expect(bits == rest - 1 && smallest == rest)
            #expect(unit.contains("what the pins leave (\(dense) of \(dense + rest - 1) bits pinned)"), "\(unit)")
        }
    }

    /// Patterns that match nothing, pins that disagree, counts beyond the stored rank, widths a
    /// matrix cannot use and menus left empty: errors naming the rule and the matrix.
    @Test func rulesThatDoNotFitAreRefused() throws {
        let problem = Self.problem(4, menu: [8, 4, 3, 2])
        func refusal(_ pins: [String], _ bitsFor: [String] = []) throws -> OverrideError? {
            do {
                _ = try problem.applying(try Overrides(pins: pins, bitsFor: bitsFor))
                return nil
            } catch { return error }
        }
        #expect(try refusal(["q_proj=keep"]) == .noMatch(kind: "pin", rule: "q_proj=keep", matrices: 6))
        #expect(try refusal(["m1=keep"], ["q_proj=8"]) == .noMatch(kind: "bits-for rule", rule: "q_proj=8", matrices: 6))
        #expect(try refusal(["^m[01]$=keep", "^m[12]$=drop"]) == .conflict(kind: "pin", matrix: "m1", first: "^m[01]$=keep", second: "^m[12]$=drop"))
        #expect(try refusal(["^m[01]$=keep", "m1=keep"]) == nil)  // overlapping, but saying the same
        let rank1 = problem.models[1].spectrum.storedRank
        #expect(try refusal(["^m[01]$=8:2,3:fill", "m1=8:2,3:\(rank1 - 2)", "^m[1]$=8:2,3:fill"]) == nil)  // the same segments
        #expect(try refusal(["m1=single-3", "^m1$=preset:single-3"]) == nil)
        #expect(try refusal(["m1=8:2,3:fill", "m1=8:2,3:1"]) == .conflict(kind: "pin", matrix: "m1", first: "m1=8:2,3:fill", second: "m1=8:2,3:1"))
        #expect(try refusal([], ["m1=8,4", "^m=8,2"]) == .conflict(kind: "bits-for rule", matrix: "m1", first: "m1=8,4", second: "^m=8,2"))
        let rank = problem.models[3].spectrum.storedRank
        #expect(try refusal(["m3=8:\(rank),2:1"]) == .beyondRank(pin: "m3=8:\(rank),2:1", matrix: "m3", vectors: rank + 1, storedRank: rank))
        #expect(try refusal(["m3=8:\(rank),2:fill"]) == nil)  // fill may be empty
        #expect(try refusal(["m3=16:2"]) == .widthUnavailable(pin: "m3=16:2", matrix: "m3", bits: 16, menu: [8, 4, 3, 2]))
        #expect(try refusal(["m3=8:2,3:fill"], ["m3=8,2"]) == .widthUnavailable(pin: "m3=8:2,3:fill", matrix: "m3", bits: 3, menu: [8, 2]))
        #expect(try refusal(["m3=delta-come"], ["m3=8,2"]) == .widthUnavailable(pin: "m3=delta-come", matrix: "m3", bits: 3, menu: [8, 2]))
        #expect(try refusal([], ["m3=16,1"]) == .emptyMenu(rule: "m3=16,1", matrix: "m3", menu: [8, 4, 3, 2]))
        let message = try #require(try refusal(["^m[01]$=keep", "^m[12]$=drop"])).description
        #expect(message.contains("m1") && message.contains("'^m[01]$=keep'") && message.contains("'^m[12]$=drop'"))
        let beyond = try #require(try refusal(["m3=8:\(rank),2:1"])).description
        #expect(beyond.contains("m3") && beyond.contains("\(rank) stored"))
    }

    /// A quality target with pins: the pins hold in the plan found, which meets the target over
    /// every matrix, and one bit less of budget does not.
    @Test(arguments: 0..<6 as Range<UInt64>)
    func targetsPlanAroundPins(seed: UInt64) throws {
        let full = SearchFixtures.problem(seed: seed, count: 3, dims: [8, 12], ranks: 3...5, menu: [8, 3, 2], alpha: 1,
                                          storage: StorageModel(groupSize: 2))
        let problem = try full.applying(try Overrides(pins: ["^m0$=8:1,2:fill", "^m2$=drop"], bitsFor: []))
        let energy = full.models.reduce(0) { $0 + $1.spectrum.objectiveEnergy }
        let reachable = try solve(problem, strategy: .exact, seed: 0).predictedError
        let allowed = reachable + 0.3 * (energy - reachable)
        let (bits, solution) = try solve(problem, strategy: .exact, seed: 0, target: ErrorTarget(error: allowed / energy))
        #expect(solution.allocations[0] == Allocation(counts: [8: 1, 2: full.models[0].spectrum.storedRank - 1]))
        #expect(solution.allocations[2] == .empty)
        #expect(solution.predictedError <= allowed * (1 + 1e-12))
        var smaller = problem
        smaller.budgetBits = bits - 1
        if let below = try? solve(smaller, strategy: .exact, seed: 0) {
            #expect(below.predictedError > allowed, "seed \(seed): \(bits - 1) bits also meet the target")
        }
    }
}

@Suite struct PinnedPlanFileTests {
    /// A plan made with pins and bits-for rules records them (and, per matrix, its pin, its own
    /// menu, and whether it is dense), round-trips byte for byte, and a plan contradicting itself
    /// is refused naming the field.
    @Test func pinsAreRecordedAndValidated() throws {
        let full = PinPlanningTests.problem(3, alpha: 0.9)
        let overrides = try Overrides(pins: ["^m1$=keep", "^m2$=8:2,3:fill"], bitsFor: ["^m[45]$=8,4,2"])
        let problem = try full.applying(overrides)
        let plan = try makePlan(problem, strategy: .exact, seed: 0, budget: .init(given: "1/2", bits: problem.budgetBits),
                                source: .init(kind: "store", name: "s", hash: "h"), toolVersion: "t")
        #expect(plan.overrides == overrides)
        #expect(plan.matrices[1].dense && plan.matrices[1].segments.isEmpty && plan.matrices[1].pin == overrides.pins[0])
        #expect(plan.matrices[1].storageBits == 16 * plan.matrices[1].shape[0] * plan.matrices[1].shape[1])
        #expect(plan.matrices[1].predictedError == 0)
        #expect(plan.matrices[2].pin == overrides.pins[1] && !plan.matrices[2].dense)
        #expect(plan.matrices[4].bits == [8, 4, 2] && plan.matrices[3].bits == nil && plan.matrices[3].pin == nil)
        let data = try plan.encoded()
        let read = try Plan.decode(data, file: "p.json")
        #expect(read == plan)
        #expect(try read.encoded() == data)

        let good = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        func refusal(_ change: (inout [[String: Any]]) -> Void) throws -> String? {
            var object = good
            var matrices = try #require(object["matrices"] as? [[String: Any]])
            change(&matrices)
            object["matrices"] = matrices
            do {
                _ = try Plan.decode(try JSONSerialization.data(withJSONObject: object), file: "p.json")
                return nil
            } catch { return "\(error)" }
        }
        let dense = try refusal { $0[1]["segments"] = [["start": 0, "end": 1, "bits": 8]] }
        #expect(dense?.contains("matrices[1].segments") == true && dense?.contains("dense") == true, "\(dense ?? "accepted")")
        let notKept = try refusal { $0[3]["dense"] = true; $0[3]["segments"] = []; $0[3]["storageBits"] = 16 * (($0[3]["shape"] as? [Int]) ?? [0, 0]).reduce(1, *) }
        #expect(notKept?.contains("matrices[3].dense") == true, "\(notKept ?? "accepted")")
        let strayPin = try refusal { $0[3]["pin"] = ["pattern": "^m3$", "spec": "drop"] }
        #expect(strayPin?.contains("matrices[3].pin") == true && strayPin?.contains("not one of the plan's overrides.pins") == true)
        let badSpec = try refusal { $0[2]["pin"] = ["pattern": "^m2$", "spec": "8:2,8:3"] }
        #expect(badSpec?.contains("matrices[2].pin") == true && badSpec?.contains("strictly decrease") == true, "\(badSpec ?? "accepted")")
        let outsideMenu = try refusal { $0[4]["bits"] = [32] }
        #expect(outsideMenu?.contains("matrices[4]") == true, "\(outsideMenu ?? "accepted")")
        let wrongWidth = try refusal { m in
            m[5]["segments"] = [["start": 0, "end": 1, "bits": 3]]
        }
        #expect(wrongWidth?.contains("matrices[5].segments[0].bits") == true, "\(wrongWidth ?? "accepted")")
        // A pattern that would take exponential time to match a name is read without matching it
        // (plans, and the plans artifacts embed, are validated without running their patterns).
        var hostile = good
        var overridesObject = try #require(good["overrides"] as? [String: Any])
        var pinObjects = try #require(overridesObject["pins"] as? [[String: Any]])
        pinObjects[0]["pattern"] = "^(a|aa)*$"
        overridesObject["pins"] = pinObjects
        hostile["overrides"] = overridesObject
        var hostileMatrices = try #require(good["matrices"] as? [[String: Any]])
        hostileMatrices[1]["name"] = String(repeating: "a", count: 200) + "b"
        hostileMatrices[1]["pin"] = pinObjects[0]
        hostile["matrices"] = hostileMatrices
        let decoded = try Plan.decode(try JSONSerialization.data(withJSONObject: hostile), file: "hostile.json")
        #expect(decoded.matrices[1].pin?.pattern == "^(a|aa)*$")
    }
}
