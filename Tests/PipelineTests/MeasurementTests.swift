import Analysis
import ArtifactFormat
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Testing

@Suite(.serialized) struct MeasurementTests {
    static func makeStore(_ name: String, calibrated: Bool = true) throws -> (SpectrumStore, CalibrationSet?, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-quant-\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let paths = try SyntheticPair(profile: profile, seed: 7).write(to: dir)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: calibrated ? paths.calibration : nil,
                                 options: AnalysisOptions(), store: dir.appendingPathComponent("store")).run()
        return (store, calibrated ? try CalibrationSet(url: paths.calibration) : nil, dir)
    }

    @Test func measuresAndCaches() throws {
        let (store, calibration, dir) = try Self.makeStore("cache")
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = MeasurementOptions(bits: [16, 4, 2, 1])
        var calls = 0
        let first = try measuredSpectra(store: store, calibration: calibration, options: options) { done, total, _ in
            calls += 1
            #expect(done <= total)
        }
        #expect(first.count == store.matrices.count && calls == first.count)
        for (s, record) in zip(first, store.matrices) {
            #expect(s.name == record.name && s.storedRank == record.storedRank)
            #expect(Set(s.relativeQuantizationError.keys) == [16, 4, 2, 1])
            let sums = [1, 2, 4, 16].map { s.relativeQuantizationError[$0]!.reduce(0, +) }
            #expect(zip(sums, sums.dropFirst()).allSatisfy { $1 <= $0 }, "\(s.name): \(sums)")
            #expect(s.relativeQuantizationError.values.allSatisfy { $0.allSatisfy(\.isFinite) })
        }
        let file = store.url.appendingPathComponent("errors/feedback/00000.safetensors")
        let tensors = try SafetensorsFileNames.names(file)
        #expect(tensors == ["dropped", "e_k1", "e_k16", "e_k2", "e_k4"])
        let before = try Data(contentsOf: file)
        let stamp = try FileManager.default.attributesOfItem(atPath: file.path)[.modificationDate] as? Date

        // Same options (and a subset of the bits): read from the cache, file untouched.
        let second = try measuredSpectra(store: store, calibration: calibration, options: options)
        #expect(second == first)
        let subset = try measuredSpectra(store: store, calibration: calibration, options: MeasurementOptions(bits: [4]))
        #expect(subset[0].relativeQuantizationError[4] == first[0].relativeQuantizationError[4])
        #expect(try Data(contentsOf: file) == before)
        #expect(try FileManager.default.attributesOfItem(atPath: file.path)[.modificationDate] as? Date == stamp)

        // The feedback order (the default) records its order and its dropped-error weights, which
        // keep the total of σᵢ² gᵢ and never exceed it from any K on.
        #expect(try SafetensorsFileNames.metadata(file)["order"] == "feedback")
        for s in first {
            let dropped = try #require(s.droppedWeights)
            let weights = zip(s.singularValues, s.inputEnergy).map { $0 * $0 * $1 }
            let (total, paperTotal): (Double, Double) = (dropped.reduce(0, +), weights.reduce(0, +))
            #expect(abs(total - paperTotal) <= 1e-4 * paperTotal, "\(s.name)")
            var suffix = 0.0, paperSuffix = 0.0
            for i in stride(from: dropped.count - 1, through: 0, by: -1) {
                suffix += dropped[i]
                paperSuffix += weights[i]
                let bound: Double = paperSuffix * (1 + 1e-4) + 1e-12
                #expect(suffix <= bound, "\(s.name) from \(i)")
                #expect(dropped[i] >= 0)
            }
        }

        // A changed option recomputes; the other order has its own tables, without dropped weights.
        let changed = try measuredSpectra(store: store, calibration: calibration, options: MeasurementOptions(groupSize: 16, bits: [4]))
        #expect(try Data(contentsOf: file) != before)
        #expect(changed[0].relativeQuantizationError[4] != first[0].relativeQuantizationError[4])
        let feedbackTable = try Data(contentsOf: file)
        let paper = try measuredSpectra(store: store, calibration: calibration, options: MeasurementOptions(order: .paper, bits: [4]))
        let paperFile = store.url.appendingPathComponent("errors/paper/00000.safetensors")
        #expect(try SafetensorsFileNames.metadata(paperFile)["order"] == "paper")
        #expect(try SafetensorsFileNames.names(paperFile) == ["e_k4"])
        #expect(try Data(contentsOf: file) == feedbackTable)
        #expect(paper[0].droppedWeights == nil)
        #expect(paper[0].relativeQuantizationError[4] != first[0].relativeQuantizationError[4])

        // The wrong calibration is refused.
        #expect(throws: QuantizationError.self) { try measuredSpectra(store: store, calibration: nil, options: options) }
    }

    /// A stop request ends the pass before the next matrix; what was measured stays cached, so a
    /// rerun measures only the rest and gives the same tables as an uninterrupted pass.
    @Test func stopsBetweenMatricesAndResumes() throws {
        let (store, calibration, dir) = try Self.makeStore("stop")
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = MeasurementOptions(bits: [4, 2])
        var finished = 0
        #expect(throws: QuantizationError.stopped) {
            try measuredSpectra(store: store, calibration: calibration, options: options,
                                progress: { done, _, _ in finished = done }, shouldStop: { finished >= 2 })
        }
        #expect(finished == 2)
        let errors = store.url.appendingPathComponent("errors/feedback")
        #expect(try FileManager.default.contentsOfDirectory(atPath: errors.path).filter { $0.hasSuffix(".safetensors") }.count == 2)
        var measuredAgain: [String] = []
        let resumed = try measuredSpectra(store: store, calibration: calibration, options: options,
                                          progress: { _, _, name in measuredAgain.append(name) })
        #expect(measuredAgain.count == store.matrices.count)
        try FileManager.default.removeItem(at: errors)
        let fresh = try measuredSpectra(store: store, calibration: calibration, options: options)
        #expect(resumed == fresh)
    }

    @Test func dataFreeStoresUseRTN() throws {
        let (store, _, dir) = try Self.makeStore("free", calibrated: false)
        defer { try? FileManager.default.removeItem(at: dir) }
        let spectra = try measuredSpectra(store: store, calibration: nil, options: MeasurementOptions(bits: [3]))
        let record = store.matrices[0]
        let factors = try store.factors(of: record)
        let direct = try measureQuantizationErrors(factors, hessian: nil, options: MeasurementOptions(method: .rtn, bits: [3]))
        #expect(spectra[0].relativeQuantizationError[3] == direct[3])
        let metadata = try SafetensorsFileNames.metadata(store.url.appendingPathComponent("errors/feedback/00000.safetensors"))
        #expect(metadata["method"] == "rtn" && metadata["calibration"] == "data-free")
    }
}

import Checkpoint

enum SafetensorsFileNames {
    static func names(_ url: URL) throws -> [String] { try SafetensorsFile(contentsOf: url).tensors.map(\.name) }
    static func metadata(_ url: URL) throws -> [String: String] { try SafetensorsFile(contentsOf: url).metadata }
}
