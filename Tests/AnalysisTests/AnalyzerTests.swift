import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Testing

@Suite struct AnalyzerNumericsTests {
    /// Singular values against an independent Float64 SVD of the delta read from the files, stored
    /// vectors orthonormal, and the truncation error equal to the discarded energy (Eckart–Young).
    @Test func storeMatchesFloat64ReferenceSVD() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.matrices.count == 7)
        #expect(store.manifest.complete && !store.manifest.dataFree)
        for record in store.matrices {
            let delta = try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned)
            let reference = try svd(delta, vectors: .none).singularValues
            let factors = try store.factors(of: record)
            #expect(factors.singularValues.count == min(record.rows, record.columns))
            // Relative to 10⁻⁴, and to 10⁻⁶·σ₀ absolutely: a Float32 SVD's error is about ε·σ₀ for
            // every value, which only the largest ones see as relative (the fitted spectra end near
            // 10⁻⁵·σ₀ for a square delta, where the old constant floor kept every value above 10⁻²·σ₀).
            for (i, (s, r)) in zip(factors.singularValues, reference).enumerated() {
                #expect(abs(Double(s) - r) < 1e-4 * r + 1e-6 * reference[0], "\(record.name) σ\(i): \(s) vs \(r)")
            }
            // Default stored rank: h_out·h_in / (h_out + h_in).
            #expect(factors.storedRank == record.rows * record.columns / (record.rows + record.columns))
            let u = Matrix<Double>(factors.u), v = Matrix<Double>(factors.v)
            let r = factors.storedRank
            for (q, name) in [(u, "U"), (v, "V")] {
                let gram = try multiply(q, transposeA: true, q)
                let offIdentity = (0..<r).flatMap { i in (0..<r).map { j in abs(gram[i, j] - (i == j ? 1 : 0)) } }.max()!
                #expect(offIdentity < 1e-5, "\(record.name) \(name)ᵀ\(name) differs from I by \(offIdentity)")
            }
            var us = u
            for j in 0..<r { for i in 0..<us.rows { us[i, j] *= Double(factors.singularValues[j]) } }
            let approximation = try multiply(us, v, transposeB: true)
            var residual = 0.0
            for j in 0..<delta.columns { for i in 0..<delta.rows { residual += pow(delta[i, j] - approximation[i, j], 2) } }
            let discarded = reference.dropFirst(r).reduce(0) { $0 + $1 * $1 }
            #expect(relativeDifference(residual, discarded) < 1e-3, "\(record.name): residual \(residual) vs discarded \(discarded)")
            #expect(relativeDifference(record.weightEnergy!, reference.reduce(0) { $0 + $1 * $1 }) < 1e-5)
        }
    }

    /// gᵢ = vᵢᵀ H vᵢ and ‖ΔW X‖² against a direct computation from the raw `.inputs` rows (the
    /// synthetic calibration keeps every token, so H = X Xᵀ exactly), and the BitDelta baseline.
    @Test func calibrationProjectionsMatchRawInputs() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, tokens: 160, sampleRows: 160)
        let calibration = try CalibrationSet(url: paths.calibration)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir("store")).run()
        for record in store.matrices {
            let entry = try #require(record.calibrationEntry)
            let x = Matrix<Double>(try #require(try calibration.inputs(ofEntry: entry)))  // h_in × tokens
            #expect(x.columns == 160)
            let factors = try store.factors(of: record)
            let xtv = try multiply(x, transposeA: true, Matrix<Double>(factors.v))      // tokens × r
            for i in 0..<factors.storedRank {
                let direct = (0..<xtv.rows).reduce(0.0) { $0 + xtv[$1, i] * xtv[$1, i] }
                #expect(relativeDifference(factors.inputEnergy[i], direct) < 1e-4, "\(record.name) g\(i)")
            }
            let delta = try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned)
            let dx = try multiply(delta, x)
            let activation = dx.elements.reduce(0) { $0 + $1 * $1 }
            #expect(relativeDifference(record.activationEnergy!, activation) < 1e-4)
            // BitDelta: s = mean |ΔW|, ΔŴ = s·sign(ΔW).
            let s = delta.elements.reduce(0) { $0 + abs($1) } / Double(delta.count)
            let residual = delta.map { $0 - (($0 > 0) ? s : ($0 < 0 ? -s : 0)) }
            let rx = try multiply(residual, x)
            #expect(relativeDifference(record.bitDeltaError!, rx.elements.reduce(0) { $0 + $1 * $1 }) < 1e-3)
            #expect(relativeDifference(record.bitDeltaWeightError!, residual.elements.reduce(0) { $0 + $1 * $1 }) < 1e-4)
        }
    }

    @Test func dataFreeStoreUsesIdentity() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: nil,
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.manifest.dataFree)
        for record in store.matrices {
            #expect(record.calibration == .identityDataFree)
            #expect(record.activationEnergy == record.weightEnergy)
            let (_, g) = try store.spectrum(of: record)
            #expect(g.allSatisfy { abs($0 - 1) < 1e-5 })
        }
    }

    /// A small --max-rank stores exactly that many leading triplets and still every value of the
    /// spectrum; all of them match an independent Float64 SVD to 10⁻⁵ relative (the randomized SVD
    /// that small ranks used before missed the values near the cut by up to 10⁻² on this slowly
    /// decaying spectrum over a noise floor).
    @Test func smallStoredRankIsExact() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let profile = try ProfileLibraryFixture.scaled(1.0 / 16)
        let paths = try SyntheticPair(profile: profile, seed: 3, tokens: 64, sampleRows: 0).write(to: dir.url)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: nil,
                                 options: AnalysisOptions(include: [#"q_proj\.weight$"#], maxRank: 16),
                                 store: dir("store")).run()
        let record = try #require(store.matrices.first)
        #expect(record.svd == "gram-eigen" && record.storedRank == 16)
        #expect(record.singularValueCount == min(record.rows, record.columns))
        let reference = try svd(try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned), vectors: .none).singularValues
        let (sigma, _) = try store.spectrum(of: record)
        for i in 0..<16 {
            #expect(relativeDifference(sigma[i], reference[i]) < 1e-5, "σ\(i): \(sigma[i]) vs \(reference[i])")
        }
        #expect(relativeDifference(record.weightEnergy!, reference.reduce(0) { $0 + $1 * $1 }) < 1e-5)
    }

    /// A sharded checkpoint gives the same store contents as a single-file one.
    @Test func shardedCheckpointAnalyzesLikeASingleFile() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let single = try writePair(in: dir("single"), seed: 5)
        let sharded = try writePair(in: dir("sharded"), seed: 5, maxShardBytes: 40_000)
        #expect(FileManager.default.fileExists(atPath: sharded.base.appendingPathComponent(Checkpoint.indexFileName).path))
        let a = try Analyzer(base: single.base, finetuned: single.finetuned, calibration: single.calibration,
                             options: AnalysisOptions(), store: dir("store-a")).run()
        let b = try Analyzer(base: sharded.base, finetuned: sharded.finetuned, calibration: sharded.calibration,
                             options: AnalysisOptions(), store: dir("store-b")).run()
        for (ra, rb) in zip(a.matrices, b.matrices) {
            #expect(ra.name == rb.name && ra.fileSHA256 == rb.fileSHA256)
        }
    }

    /// A zero delta is valid: rank 0, zero energies.
    @Test func zeroDeltaHasRankZero() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let w = (0..<(8 * 6)).map { Float($0) / 100 }
        try writeTensors([("l.0.q_proj.weight", [8, 6], w)], to: dir("base.safetensors"))
        try writeTensors([("l.0.q_proj.weight", [8, 6], w)], to: dir("ft.safetensors"))
        let store = try Analyzer(base: dir("base.safetensors"), finetuned: dir("ft.safetensors"), calibration: nil,
                                 options: AnalysisOptions(), store: dir("store")).run()
        let record = try #require(store.matrices.first)
        #expect(record.storedRank == 0 && record.weightEnergy == 0 && record.activationEnergy == 0)
    }
}

enum ProfileLibraryFixture {
    static func scaled(_ factor: Double, layers: Int = 1) throws -> ModelProfile {
        try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: factor, layers: layers)
    }
}
