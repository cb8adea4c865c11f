import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import Testing

/// `analyze` on format-2 calibration files: gᵢ = vᵢᵀ H vᵢ with a diagonal H, h_out checked against
/// the matrix, and the statistics of every matrix recorded in the manifest and the reports.
@Suite struct AnalyzerStatisticsTests {
    static let q = "model.layers.0.self_attn.q_proj", k = "model.layers.0.self_attn.k_proj"
    static let v = "model.layers.0.self_attn.v_proj", gate = "model.layers.0.mlp.gate_proj"
    static let metadata = CalibrationMetadata(probes: 2, objective: .nextTokenFisher,
                                              samples: CalibrationSamples(rows: 160, tokens: 160, probes: 2, seed: 3), source: "test")

    /// The synthetic pair's calibration rewritten as format 2: q's entry (shared by k and v) with
    /// only the diagonal of H, q with a full G and paired gradient rows, k with a diagonal G,
    /// gate with a full G; the other entries as they were.
    static func writeVersion2(from v1: URL, to url: URL, qOutputWidth: Int = 64, gradsOnly: Bool = false) throws {
        let set = try CalibrationSet(url: v1)
        let g = SeededGenerator(seed: 21)
        var entries: [CalibrationEntry] = []
        for entry in set.entryNames {
            let inputs = try set.inputs(ofEntry: entry)
            if entry == q {
                let grads = Matrix<Float>.gaussian(rows: qOutputWidth, columns: 160, using: g)
                entries.append(CalibrationEntry(
                    module: entry, gram: .diagonal(try set.gramDiagonal(ofEntry: entry)), tokenCount: set.tokenCount(ofEntry: entry),
                    inputs: inputs, outputGram: gradsOnly ? nil : .full(try multiply(grads, grads, transposeB: true)), grads: grads))
            } else if entry == gate {
                let r = Matrix<Float>.gaussian(rows: 172, columns: 20, using: g)
                entries.append(CalibrationEntry(module: entry, gram: try set.gram(ofEntry: entry), tokenCount: set.tokenCount(ofEntry: entry),
                                                inputs: inputs, outputGram: .full(try multiply(r, r, transposeB: true))))
            } else {
                entries.append(CalibrationEntry(module: entry, gram: try set.gram(ofEntry: entry), tokenCount: set.tokenCount(ofEntry: entry),
                                                inputs: inputs))
            }
        }
        try CalibrationSet.write(entries, outputs: [CalibrationOutputs(module: k, outputGram: .diagonal((0..<64).map { Float($0) + 1 }))],
                                 aliases: set.aliases, metadata: metadata, to: url)
    }

    @Test func diagonalGramProjectionsAndRecordedStatistics() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, tokens: 160, sampleRows: 160)
        try Self.writeVersion2(from: paths.calibration, to: dir("v2.safetensors"))
        let calibration = try CalibrationSet(url: dir("v2.safetensors"))
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("v2.safetensors"),
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.matrices.count == 7)
        for record in store.matrices {
            let entry = try #require(record.calibrationEntry)
            // H in Float64 from the file, independently of the analyzer's diagonal path.
            let h = Matrix<Double>(try calibration.gram(ofEntry: entry))
            let factors = try store.factors(of: record)
            let v = Matrix<Double>(factors.v)
            let hv = try multiply(h, v)
            for i in 0..<factors.storedRank {
                let reference = (0..<v.rows).reduce(0.0) { $0 + v[$1, i] * hv[$1, i] }
                #expect(relativeDifference(factors.inputEnergy[i], reference) < 1e-5, "\(record.name) g\(i)")
            }
            let delta = try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned)
            let dh = try multiply(delta, h)
            let activation = zip(dh.elements, delta.elements).reduce(0.0) { $0 + $1.0 * $1.1 }
            #expect(relativeDifference(record.activationEnergy!, activation) < 1e-4, "\(record.name) ‖ΔW X‖²")
            let s = delta.elements.reduce(0) { $0 + abs($1) } / Double(delta.count)
            let residual = delta.map { $0 - (($0 > 0) ? s : ($0 < 0 ? -s : 0)) }
            let rh = try multiply(residual, h)
            #expect(relativeDifference(record.bitDeltaError!, zip(rh.elements, residual.elements).reduce(0.0) { $0 + $1.0 * $1.1 }) < 1e-3)
        }
        // The diagonal entry really was diagonal: q's H has zeros off the diagonal.
        #expect(calibration.gramIsDiagonal(ofEntry: Self.q))

        let manifest = store.manifest
        #expect(manifest.calibrationFile == .init(formatVersion: 2, metadata: Self.metadata))
        func statistics(_ module: String) -> CalibrationStatistics? { store.record(named: module + ".weight")?.statistics }
        #expect(statistics(Self.q) == CalibrationStatistics(inputGram: .diagonal, outputGram: .full, pairedRows: 160))
        #expect(statistics(Self.k) == CalibrationStatistics(inputGram: .diagonal, outputGram: .diagonal, pairedRows: 0))
        #expect(statistics(Self.v) == CalibrationStatistics(inputGram: .diagonal, outputGram: .absent, pairedRows: 0))
        #expect(statistics(Self.gate) == CalibrationStatistics(inputGram: .full, outputGram: .full, pairedRows: 0))
        #expect(statistics(Self.q)?.objective == .paired && statistics(Self.k)?.objective == .kronecker)
        #expect(statistics(Self.v)?.objective == .activation)
        #expect(manifest.supportedObjective == .activation)
        let json = try String(contentsOf: dir("store/manifest.json"), encoding: .utf8)
        #expect(json.contains(#""inputGram" : "diagonal""#) && json.contains(#""objective" : "next-token-fisher""#))

        let report = try SpectrumReport(store)
        #expect(report.supportedObjective == .activation && report.calibrationFile?.formatVersion == 2)
        #expect(report.text().hasPrefix("objective supported by the statistics: activation (calibration format 2; H full for 4, diagonal for 3;"))
        #expect(report.objectiveLine.contains("G full for 2, diagonal for 1, absent for 4; 160 paired rows for 1 of 7; probes: next-token-fisher × 2)"))
        #expect(try JSONDecoder().decode(SpectrumReport.self, from: Data(report.json().utf8)) == report)

        // q alone supports the paired objective; q and k share kronecker.
        let qOnly = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("v2.safetensors"),
                                 options: AnalysisOptions(include: ["q_proj"]), store: dir("store-q")).run()
        #expect(qOnly.manifest.supportedObjective == .paired)
        #expect(try SpectrumReport(qOnly).objectiveLine.contains("paired (calibration format 2; H diagonal; G full; 160 paired rows; probes: next-token-fisher × 2)"))
        let qk = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("v2.safetensors"),
                              options: AnalysisOptions(include: ["q_proj", "k_proj"]), store: dir("store-qk")).run()
        #expect(qk.manifest.supportedObjective == .kronecker)
    }

    /// h_out of `.out_gram` or `.grads` must be the matrix's row count.
    @Test(arguments: [false, true])
    func outputWidthIsCheckedAgainstTheMatrix(gradsOnly: Bool) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, tokens: 160, sampleRows: 160)
        try Self.writeVersion2(from: paths.calibration, to: dir("v2.safetensors"), qOutputWidth: 10, gradsOnly: gradsOnly)
        let tensor = Self.q + (gradsOnly ? ".grads" : ".out_gram")
        #expect(throws: AnalysisError.calibrationOutputWidthMismatch(module: Self.q, tensor: tensor, expected: 64, found: 10,
                                                                     file: dir("v2.safetensors").path)) {
            try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("v2.safetensors"),
                         options: AnalysisOptions(), store: dir("store")).run()
        }
    }

    /// A store written before statistics were recorded (no `calibrationFile`, no `statistics`)
    /// still opens and reports `activation`; resuming it with the same inputs gains the statistics
    /// and gives the fresh run's manifest byte for byte. Resuming with another calibration file
    /// is refused.
    @Test func storesWithoutStatisticsStillWork() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, tokens: 160, sampleRows: 160)
        func analyzer(_ store: String, calibration: URL? = nil) -> Analyzer {
            Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: calibration ?? paths.calibration,
                     options: AnalysisOptions(), store: dir(store))
        }
        try analyzer("fresh").run()
        try analyzer("old").run()
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: dir("old/manifest.json"))) as? [String: Any])
        object["calibrationFile"] = nil
        object["matrices"] = (object["matrices"] as? [[String: Any]])?.map { var m = $0; m["statistics"] = nil; return m }
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]).write(to: dir("old/manifest.json"))

        let old = try SpectrumStore(at: dir("old"))
        #expect(old.manifest.calibrationFile == nil && old.matrices.allSatisfy { $0.statistics == nil })
        #expect(old.manifest.supportedObjective == .activation)
        #expect(try SpectrumReport(old).text().hasPrefix("objective supported by the statistics: activation (calibration format 1; H full; no G)"))

        var redone = 0
        try analyzer("old").run(progress: { if case .matrixStarted = $0 { redone += 1 } })
        #expect(redone == 0)
        #expect(try Data(contentsOf: dir("old/manifest.json")) == Data(contentsOf: dir("fresh/manifest.json")))

        try Self.writeVersion2(from: paths.calibration, to: dir("v2.safetensors"))
        #expect { try analyzer("old", calibration: dir("v2.safetensors")).run() } throws: { error in
            guard case let .storeMismatch(_, reason) = error as? AnalysisError else { return false }
            return reason.hasPrefix("calibration:")
        }
    }
}
