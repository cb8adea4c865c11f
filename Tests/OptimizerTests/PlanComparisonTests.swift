import Foundation
import Testing
@testable import Optimizer

@Suite struct PlanComparisonTests {
    static let comparison: Comparison = {
        var rows: [Comparison.Row] = []
        for (s, strategy) in ["preset:delta-come", "greedy", "exact"].enumerated() {
            for (b, inverse) in [32, 20, 16].enumerated() {
                let alpha = 1 / Double(inverse)
                let rel = 0.2 * pow(0.5, Double(b)) * (1 + 0.1 * Double(2 - s))
                rows.append(.init(strategy: strategy, budget: "1/\(inverse)", scope: s == 0 ? .type : .global, budgetBits: 1000 * (b + 1),
                                  storageBits: 990 * (b + 1), alpha: alpha, predictedError: rel * 50,
                                  predictedRelativeError: rel, relativeErrorByType: ["attention": rel * 0.8, "mlp": rel * 1.1],
                                  seconds: 0.5 * Double(s + 1), gapToExact: strategy == "exact" ? nil : 0.1 * Double(2 - s)))
            }
        }
        return Comparison(title: "synthetic", accounting: .artifact, rows: rows)
    }()

    @Test func jsonParsesBack() throws {
        let text = Self.comparison.render(.json)
        let back = try JSONDecoder().decode(Comparison.self, from: Data(text.utf8))
        #expect(back == Self.comparison)
        #expect(text.contains("\"gapToExact\" : null"))
    }

    @Test func markdownHasOneRowPerStrategyAndBudget() {
        let lines = Self.comparison.render(.markdown).split(separator: "\n")
        #expect(lines.count == 2 + 9)
        #expect(lines[0].hasPrefix("| strategy | budget |"))
        #expect(lines[0].contains("rel. attention") && lines[0].contains("rel. mlp"))
        let columns = lines[0].filter { $0 == "|" }.count
        for line in lines { #expect(line.filter { $0 == "|" }.count == columns) }
        for s in ["preset:delta-come", "greedy", "exact"] {
            for b in ["1/32", "1/20", "1/16"] {
                #expect(lines.filter { $0.hasPrefix("| \(s) | \(b) |") }.count == 1)
            }
        }
    }

    @Test func textTableIsAligned() {
        let lines = Self.comparison.render(.table).split(separator: "\n")
        #expect(lines.count == 2 + 9)
        // Right-aligned last column: every data line ends at the same width as the rule.
        let width = lines[1].count
        for line in lines.dropFirst(2) { #expect(line.count == width) }
    }

    @Test func svgHasOneLinePerStrategyAndALegend() {
        let svg = Self.comparison.render(.svg)
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>\n"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 3)
        for s in ["preset:delta-come", "greedy", "exact"] { #expect(svg.contains(">\(s)</text>")) }
        #expect(svg.contains("1/16") && svg.contains("1/32"))
        #expect(svg.contains("predicted ‖(ΔW−ΔŴ)X‖² / ‖ΔW X‖²"))
        if let dir = ProcessInfo.processInfo.environment["DELTAPLAN_TEST_ARTIFACTS"] {
            try? svg.write(toFile: dir + "/comparison.svg", atomically: true, encoding: .utf8)
        }
        // Every opened element closes (self-closing or explicit).
        #expect(svg.components(separatedBy: "<text").count == svg.components(separatedBy: "</text>").count)
    }
}
