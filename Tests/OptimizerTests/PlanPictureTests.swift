import Foundation
import ModelProfiles
import Reporting
import Testing
@testable import Optimizer

@Suite struct PlanPictureTests {
    /// A store-like plan of a 3-layer Llama at 1/8 scale with the embeddings first and `lm_head`
    /// last, its matrices listed by name as a store lists them (down_proj before q_proj), each with
    /// its own allocation and predicted error; one error is negative (a paired-objective sample
    /// estimate), so it is drawn grey.
    static func storePlan(layers: Int = 3) throws -> Plan {
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 8, layers: layers)
        let shapes = [("model.embed_tokens.weight", [4000, 512])]
            + profile.expandedMatrices().map { ($0.name, [$0.rows, $0.columns]) }.sorted { $0.0 < $1.0 }
            + [("lm_head.weight", [4000, 512])]
        let matrices = shapes.enumerated().map { i, m in
            let kept = 4 * (i % 9 + 1)
            return Plan.Matrix(name: m.0, type: m.0.contains("mlp") ? .mlp : m.0.contains("attn") ? .attention : .other, shape: m.1,
                               segments: [Segment(start: 0, end: kept / 2, bits: 8), Segment(start: kept / 2, end: kept, bits: 3)],
                               storageBits: m.1[0] * m.1[1] * (i % 9) / 4,  // 0 to 2 bits per parameter
                               predictedError: i == 5 ? -0.01 : 0.5 * pow(0.8, Double(i)),
                               predictedRelativeError: i == 5 ? -0.0001 : 0.2 * pow(0.8, Double(i)))
        }
        return Plan(toolVersion: "test", source: .init(kind: "store", name: "store", hash: "00"), budget: .init(given: "1/16", bits: 1 << 20),
                    storage: StorageModel(), scope: .global, strategy: .init(name: "exact", seed: 0), bits: BitMenu.default,
                    matrices: matrices, objectiveEnergies: matrices.map { _ in 2.5 }, objective: .paired)
    }

    static func shapePlan(_ profile: String = "llama-2-7b", layers: Int = 2) throws -> Plan {
        let library = try ProfileLibrary.builtIn()
        return try planFromShapes(profile: try library.model(named: profile).scaled(by: profile == "bert-base" ? 1 : 1.0 / 8, layers: layers),
                                  preset: try library.preset(named: "delta-come"), budget: .ratio(1.0 / 16), storage: StorageModel(),
                                  scope: .type, toolVersion: "test")
    }

    /// The cells of an SVG in document order: fill and value (nil when the cell has none).
    static func cells(_ svg: String) -> [(fill: String, value: Double?)] {
        svg.components(separatedBy: "<rect class=\"cell\"").dropFirst().map { element in
            func attribute(_ name: String) -> String {
                let after = element.components(separatedBy: " \(name)=\"")[1]
                return String(after.prefix { $0 != "\"" })
            }
            return (attribute("fill"), Double(attribute("data-value")))
        }
    }

    @Test func gridPutsLayersInRowsKindsInColumnsAndOtherMatricesInRowsOfTheirOwn() throws {
        let plan = try Self.storePlan()
        let grid = plan.grid()
        #expect(grid.rows == ["model.embed_tokens", "0", "1", "2", "lm_head"])
        #expect(grid.columns == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        #expect(grid.places.count == plan.matrices.count)
        for (m, place) in zip(plan.matrices, grid.places) {
            let name = MatrixName(m.name)
            if let layer = name.layer {
                #expect(grid.rows[place.row] == String(layer) && place.span == 1)
                #expect(name.kind.hasSuffix(grid.columns[place.column]))
            } else {
                #expect(grid.rows[place.row] == name.kind && place.column == 0 && place.span == 7)
            }
        }
        // No two matrices share a cell.
        #expect(Set(grid.places.map { "\($0.row),\($0.column)" }).count == plan.matrices.count)
        // Layers sort by number, not by name (a store lists layers.10 before layers.2).
        #expect(try Self.storePlan(layers: 12).grid().rows.dropFirst().dropLast() == (0..<12).map(String.init))
    }

    @Test func bertKindsAreLabelledByTheirShortestDistinctSuffix() throws {
        let grid = try Self.shapePlan("bert-base").grid()
        #expect(grid.columns == ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"])
        #expect(grid.rows == ["0", "1"])
    }

    /// One cell per matrix in each panel; bits per parameter coloured monotonically (more bits,
    /// lighter viridis), errors on their own scale, the negative one grey and explained.
    @Test func heatmapHasOneCellPerMatrixAndColoursMonotoneInBits() throws {
        let plan = try Self.storePlan()
        let svg = plan.svg()
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        let cells = Self.cells(svg)
        #expect(cells.count == 2 * plan.matrices.count)
        let bits = Array(cells.prefix(plan.matrices.count)), errors = Array(cells.suffix(plan.matrices.count))
        #expect(bits.map(\.value) == plan.bitsPerParameter.map { Double(String(format: "%.6g", $0)) })
        let ranked = bits.compactMap { cell in cell.value.map { ($0, RGB(hex: cell.fill)!.luminance) } }.sorted { $0.0 < $1.0 }
        let range = (ranked.last?.0 ?? 0) - (ranked.first?.0 ?? 0)
        #expect(range > 0)
        for (a, b) in zip(ranked, ranked.dropFirst()) {
            #expect(a.1 <= b.1, "bits \(a.0) → \(b.0) but luminance \(a.1) → \(b.1)")
            if b.0 - a.0 > 0.02 * range { #expect(a.1 < b.1) }
        }
        #expect(errors.filter { $0.value == nil }.count == 1 && errors.filter { $0.fill == Heatmap.missingColor }.count == 1)
        #expect(svg.contains("≤ 0 (a sample estimate)"))
        #expect(svg.contains("predicted relative error") && !svg.contains("no predicted errors"))
        #expect(svg.components(separatedBy: "<text").count == svg.components(separatedBy: "</text>").count)
    }

    @Test func aShapeOnlyPlanSaysItHasNoErrorsInsteadOfDrawingZeros() throws {
        let plan = try Self.shapePlan()
        let svg = plan.svg()
        #expect(Self.cells(svg).count == plan.matrices.count)  // the bits panel only
        #expect(svg.contains("no predicted errors"))
        #expect(!svg.contains("data-value=\"0\""))
    }

    @Test(.enabled(if: PNGRendering.enabled, PNGRendering.skipReason), arguments: [("store", 3), ("store", 32), ("shapes", 2), ("bert", 12)])
    func picturesRenderToPNGsOfTheirSize(kind: String, layers: Int) throws {
        let plan = switch kind {
        case "store": try Self.storePlan(layers: layers)
        case "bert": try Self.shapePlan("bert-base", layers: layers)
        default: try Self.shapePlan(layers: layers)
        }
        let figure = plan.picture()
        let png = try PNGRendering.render(figure.svg(), name: "plan-\(kind)-\(layers)")
        let size = try #require(PNGRendering.size(png), "not a PNG")
        #expect(size.width == Int(figure.size.width) && size.height == Int(figure.size.height))
        #expect(size.width >= 400 && size.height >= 200)
    }
}

@Suite struct ComparisonSweepPlotTests {
    /// Every strategy's relative error over the sweep 1/64:1/4 follows the closed-form curve of
    /// ``KneeTests`` (Tests/ReportingTests), centred at α = 1/16 on log axes, scaled per strategy:
    /// every line's knee is at budget 1/16; a baseline that ignores the budget has none.
    static func sweepComparison() throws -> Comparison {
        let budgets = try BudgetSweep(parsing: "1/64:1/4").budgets
        var rows: [Comparison.Row] = []
        for (s, strategy) in ["exact", "greedy", "preset:delta-come", "low-rank"].enumerated() {
            for b in budgets {
                guard case let .ratio(alpha) = b.budget else { continue }
                let u = log10(alpha * 16)
                let relative = (1 + 0.3 * Double(s)) * pow(10, -(u + (u * u + 0.09).squareRoot())) / 4
                rows.append(.init(strategy: strategy, budget: b.text, scope: .global, budgetBits: 1_000_000,
                                  storageBits: 1_000_000, alpha: alpha, predictedError: relative, predictedRelativeError: relative,
                                  relativeErrorByType: [:], seconds: 0))
            }
        }
        for b in budgets {
            // One bit per parameter whatever the budget (α = 1/16); the budget's own α stays
            // budgetBits / storageBits · α, as the comparison records it.
            guard case let .ratio(alpha) = b.budget else { continue }
            rows.append(.init(strategy: "bitdelta", budget: b.text, scope: nil, budgetBits: Int(16 * alpha * 1e6), storageBits: 1_000_000,
                              alpha: 1.0 / 16,
                              predictedError: 0.3, predictedRelativeError: 0.3, relativeErrorByType: [:], seconds: 0))
        }
        return Comparison(title: "closed form", accounting: .artifact, rows: rows)
    }

    @Test func everyStrategyIsALineWithItsKneeMarked() throws {
        let svg = try Self.sweepComparison().render(.svg)
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 5)
        #expect(svg.components(separatedBy: "knee at budget 1/16<").count - 1 == 4)
        #expect(svg.components(separatedBy: "r=\"9\"").count - 1 == 4 + 1)  // four knees and the legend's ring
        #expect(svg.contains(">knee</text>") && svg.contains("farthest from the chord"))
        for label in ["1/64", "1/32", "1/16", "1/8", "1/4"] { #expect(svg.contains(">\(label)</text>")) }
    }

    @Test(.enabled(if: PNGRendering.enabled, PNGRendering.skipReason))
    func sweepPlotRendersToAPNGOfItsSize() throws {
        let plot = try Self.sweepComparison().plot()
        let png = try PNGRendering.render(plot.svg(), name: "comparison-sweep")
        let size = try #require(PNGRendering.size(png), "not a PNG")
        #expect(size.width == Int(plot.width) && size.height == Int(plot.height))
    }
}
