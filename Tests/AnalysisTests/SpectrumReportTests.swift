import Foundation
import Testing
@testable import Analysis

@Suite struct SpectrumReportTests {
    func record(rows: Int, columns: Int, weightEnergy: Double, activationEnergy: Double) -> StoreManifest.MatrixRecord {
        StoreManifest.MatrixRecord(
            name: "m.q_proj.weight", type: .attention, rows: rows, columns: columns, inputDType: "BF16", status: .done,
            calibration: .gram, calibrationEntry: "m.q_proj", storedRank: 200, weightEnergy: weightEnergy,
            activationEnergy: activationEnergy)
    }

    /// On an exact power law σᵢ = 3·(i + 1)^−0.7 the tail fit recovers p = 0.7 and c = 3 with R² = 1;
    /// energy shares and the effective rank match their closed forms.
    @Test func closedFormsOnAnExactPowerLaw() throws {
        let sigma = (0..<256).map { 3 * pow(Double($0 + 1), -0.7) }
        let g = (0..<256).map { 1 + Double($0 % 3) }
        let energy = sigma.reduce(0) { $0 + $1 * $1 }
        let activation = zip(sigma, g).reduce(0) { $0 + $1.0 * $1.0 * $1.1 }
        let e = SpectrumReport.entry(record(rows: 256, columns: 300, weightEnergy: energy, activationEnergy: activation),
                                     sigma: sigma, g: g, calibrated: true)
        #expect(abs(try #require(e.tailExponent) - 0.7) < 1e-9)
        #expect(abs(try #require(e.tailCoefficient) - 3) < 1e-8)
        #expect(abs(try #require(e.tailRSquared) - 1) < 1e-12)
        #expect(abs(e.energyTop2 - (sigma[0] * sigma[0] + sigma[1] * sigma[1]) / energy) < 1e-12)
        let top34 = zip(sigma, g).prefix(34).reduce(0) { $0 + $1.0 * $1.0 * $1.1 } / activation
        #expect(abs(try #require(e.activationEnergyTop34) - top34) < 1e-12)
        let p = sigma.map { $0 / sigma.reduce(0, +) }
        #expect(abs(e.effectiveRank - exp(-p.reduce(0) { $0 + $1 * log($1) })) < 1e-9)
        // A flat spectrum has full effective rank.
        let flat = SpectrumReport.entry(record(rows: 10, columns: 10, weightEnergy: 10, activationEnergy: 10),
                                        sigma: Array(repeating: 1, count: 10), g: Array(repeating: 1, count: 10), calibrated: false)
        #expect(abs(flat.effectiveRank - 10) < 1e-9)
        #expect(flat.activationEnergyTop2 == nil)
    }

    @Test func renderingsAgree() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: nil,
                                 options: AnalysisOptions(), store: dir("store")).run()
        let report = try SpectrumReport(store)
        #expect(report.dataFree && report.entries.count == 7)
        let decoded = try JSONDecoder().decode(SpectrumReport.self, from: Data(report.json().utf8))
        #expect(decoded == report)
        #expect(report.text().contains("data-free"))
        #expect(report.markdown().split(separator: "\n").filter { $0.hasPrefix("| model.layers.") }.count == 7)
        let svg = report.plot().svg()
        #expect(svg.hasPrefix("<svg") && svg.contains("attention") && svg.contains("mlp"))
    }
}
