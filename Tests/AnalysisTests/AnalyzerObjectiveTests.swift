import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Testing

/// The sensitivity objectives `analyze` stores (`objective_weight`, `objective_dropped`), against
/// Float64 computations straight from ΔW and the calibration file.
@Suite struct AnalyzerObjectiveTests {
    /// The synthetic pair's calibration with output statistics for every module: paired gradient
    /// rows (and a full G) when `paired`, else only a full G.
    static func writeSensitivities(from v1: URL, to url: URL, paired: Bool, seed: UInt64 = 5) throws {
        let set = try CalibrationSet(url: v1)
        let g = SeededGenerator(seed: seed)
        let checkpointWidths = ["q_proj": 64, "k_proj": 64, "v_proj": 64, "o_proj": 64, "gate_proj": 172, "up_proj": 172, "down_proj": 64]
        func width(_ module: String) -> Int { checkpointWidths.first { module.hasSuffix($0.key) }!.value }
        func statistics(_ module: String, rows: Int) throws -> (CalibrationGram, Matrix<Float>?) {
            let grads = Matrix<Float>.gaussian(rows: width(module), columns: rows, using: g)
            return (.full(try multiply(grads, grads, transposeB: true)), paired ? grads : nil)
        }
        var entries: [CalibrationEntry] = []
        for entry in set.entryNames {
            let inputs = try #require(try set.inputs(ofEntry: entry))
            let (gram, grads) = try statistics(entry, rows: inputs.columns)
            entries.append(CalibrationEntry(module: entry, gram: try set.gram(ofEntry: entry), tokenCount: set.tokenCount(ofEntry: entry),
                                            inputs: inputs, outputGram: gram, grads: grads))
        }
        var outputs: [CalibrationOutputs] = []
        for module in set.aliases.keys.sorted() {
            let rows = try #require(try set.inputs(ofEntry: set.aliases[module]!)).columns
            let (gram, grads) = try statistics(module, rows: rows)
            outputs.append(CalibrationOutputs(module: module, outputGram: gram, grads: grads))
        }
        try CalibrationSet.write(entries, outputs: outputs, aliases: set.aliases,
                                 metadata: CalibrationMetadata(probes: 1, objective: .hiddenGaussNewton), to: url)
    }

    @Test func pairedWeightsAndDroppedCostsMatchFloat64() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        // 150 tokens summed into H, 120 sampled rows: the sample stands for N / n = 1.25 tokens a row.
        let paths = try writePair(in: dir.url, tokens: 150, sampleRows: 120)
        try Self.writeSensitivities(from: paths.calibration, to: dir("paired.safetensors"), paired: true)
        let calibration = try CalibrationSet(url: dir("paired.safetensors"))
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("paired.safetensors"),
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.manifest.supportedSensitivity == .paired)
        for record in store.matrices {
            #expect(record.objective == .paired)
            let module = record.moduleName
            let (x32, g32) = try #require(try calibration.pairedSamples(ofModule: module))
            let x = Matrix<Double>(x32), gs = Matrix<Double>(g32)
            let scale = Double(calibration.tokenCount(ofEntry: record.calibrationEntry!)) / Double(x.columns)
            let factors = try store.factors(of: record)
            let u = Matrix<Double>(factors.u), v = Matrix<Double>(factors.v)
            let sigma = factors.singularValues.map(Double.init)
            let r = factors.storedRank
            let (weights, dropped, feedback) = try #require(try store.objectiveProjection(of: record))
            #expect(weights.count == r && dropped.count == r + 1)

            // L(E) = (N/n) Σₜ (gₜᵀ E xₜ)², in Float64 from ΔW itself.
            let delta = try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned)
            func objective(_ e: Matrix<Double>) throws -> Double {
                let ex = try multiply(e, x)
                return scale * (0..<x.columns).reduce(0.0) { sum, t in
                    let c = (0..<e.rows).reduce(0.0) { $0 + gs[$1, t] * ex[$1, t] }
                    return sum + c * c
                }
            }
            func truncationError(keeping j: Int) throws -> Double {
                var e = delta
                for i in 0..<j { for c in 0..<e.columns { for row in 0..<e.rows { e[row, c] -= sigma[i] * u[row, i] * v[c, i] } } }
                return try objective(e)
            }
            for j in Set([0, 1, r / 2, r]) {
                #expect(relativeDifference(dropped[j], try truncationError(keeping: j)) < 2e-3, "\(record.name) dropped[\(j)]")
            }
            #expect(relativeDifference(record.objectiveEnergy!, dropped[0]) < 1e-12)
            try checkFeedbackSuffix(try #require(feedback), dropped: dropped, record: record, factors: factors, delta: delta,
                                    h: Matrix<Double>(try calibration.gram(ofEntry: record.calibrationEntry!)), objective: objective)
            let ug = try multiply(u, transposeA: true, gs), vx = try multiply(v, transposeA: true, x)
            for i in Set([0, r / 3, r - 1]) {
                let w = scale * (0..<x.columns).reduce(0.0) { $0 + pow(ug[i, $1] * vx[i, $1], 2) }
                #expect(relativeDifference(weights[i], w) < 1e-4, "\(record.name) w\(i)")
            }
            // Cross terms: the paired objective of a truncation is not the sum of its vectors' costs.
            let additive = (r / 2..<r).reduce(0.0) { $0 + sigma[$1] * sigma[$1] * weights[$1] }
            #expect(abs(additive - (dropped[r / 2] - dropped[r])) > 1e-6 * dropped[r / 2], "\(record.name): no cross terms")
            // BitDelta under the objective.
            let s = delta.elements.reduce(0) { $0 + abs($1) } / Double(delta.count)
            let residual = delta.map { $0 - (($0 > 0) ? s : ($0 < 0 ? -s : 0)) }
            #expect(relativeDifference(record.bitDeltaObjectiveError!, try objective(residual)) < 1e-3)
        }
    }

    /// The absorbed suffix against its definition, built explicitly in Float64: keeping j vectors,
    /// each dropped stored vector i loses its part V_j M̃_j⁻¹ V_jᵀ H vᵢ (M̃: VᵀHV with its diagonal
    /// damped as error feedback's solves are) and the unstored part of ΔW stays whole.
    func checkFeedbackSuffix(
        _ feedback: [Double], dropped: [Double], record: StoreManifest.MatrixRecord, factors: StoredFactors,
        delta: Matrix<Double>, h: Matrix<Double>, objective: (Matrix<Double>) throws -> Double
    ) throws {
        let r = factors.storedRank
        #expect(feedback.count == r + 1)
        let u = Matrix<Double>(factors.u), v = Matrix<Double>(factors.v)
        let sigma = factors.singularValues.map(Double.init)
        let m = try multiply(v, transposeA: true, try multiply(h, v))
        var unstored = delta
        for i in 0..<r { for c in 0..<delta.columns { for row in 0..<delta.rows { unstored[row, c] -= sigma[i] * u[row, i] * v[c, i] } } }
        func absorbed(keeping j: Int) throws -> Double {
            guard j > 0 else { return try objective(delta) }
            let damped = Matrix<Double>(rows: j, columns: j) { a, b in m[a, b] + (a == b ? feedbackDampening * m[a, a] : 0) }
            let rhs = Matrix<Double>(rows: j, columns: r - j) { a, b in m[a, j + b] }
            var coefficients = rhs                                           // M̃_j⁻¹ M_{<j, ≥j}
            try solveCholesky(try cholesky(damped), &coefficients)
            var e = unstored
            for i in j..<r {
                for c in 0..<delta.columns {
                    var vi = v[c, i]
                    for a in 0..<j { vi -= v[c, a] * coefficients[a, i - j] }
                    for row in 0..<delta.rows { e[row, c] += sigma[i] * u[row, i] * vi }
                }
            }
            return try objective(e)
        }
        #expect(feedback[0] == dropped[0], "\(record.name): nothing kept, nothing absorbed")
        for j in Set([1, r / 3, r / 2, r - 1, r]) {
            #expect(relativeDifference(feedback[j], try absorbed(keeping: j)) < 2e-3, "\(record.name) feedback[\(j)]")
        }
        // The fit absorbs something: at half the rank, less is left than the plain truncation's.
        #expect(feedback[r / 2] < dropped[r / 2], "\(record.name): nothing absorbed")
    }

    @Test func kroneckerWeightsAndEnergyMatchFloat64() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url, tokens: 150, sampleRows: 120)
        try Self.writeSensitivities(from: paths.calibration, to: dir("kronecker.safetensors"), paired: false)
        let calibration = try CalibrationSet(url: dir("kronecker.safetensors"))
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("kronecker.safetensors"),
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.manifest.supportedSensitivity == .kronecker)
        for record in store.matrices {
            #expect(record.objective == .kronecker)
            let entry = record.calibrationEntry!
            let n = Double(calibration.tokenCount(ofEntry: entry))
            let h = Matrix<Double>(try calibration.gram(ofEntry: entry))
            let g = Matrix<Double>(try #require(try calibration.outputGram(ofModule: record.moduleName)))
            let factors = try store.factors(of: record)
            let u = Matrix<Double>(factors.u), v = Matrix<Double>(factors.v)
            let (weights, dropped, feedback) = try #require(try store.objectiveProjection(of: record))
            #expect(feedback == nil, "only the paired objective has an absorbed suffix")
            let gu = try multiply(g, u), hv = try multiply(h, v)
            for i in Set([0, factors.storedRank / 2, factors.storedRank - 1]) {
                let ugu = (0..<u.rows).reduce(0.0) { $0 + u[$1, i] * gu[$1, i] }
                let vhv = (0..<v.rows).reduce(0.0) { $0 + v[$1, i] * hv[$1, i] }
                #expect(relativeDifference(weights[i], ugu * vhv / n) < 1e-4, "\(record.name) w\(i)")
            }
            let delta = try referenceDelta(record.name, base: paths.base, finetuned: paths.finetuned)
            let gdh = try multiply(g, try multiply(delta, h))
            let energy = zip(gdh.elements, delta.elements).reduce(0.0) { $0 + $1.0 * $1.1 } / n
            // The additive model: each step of the suffix is one vector's σᵢ² wᵢ, and what the stored
            // vectors leave of L(ΔW) (never negative) is the unstored vectors' share.
            let sigma = factors.singularValues.map(Double.init)
            let stored = (0..<factors.storedRank).reduce(0.0) { $0 + sigma[$1] * sigma[$1] * weights[$1] }
            #expect(relativeDifference(dropped[factors.storedRank], max(0, energy - stored)) < 1e-3 || dropped[factors.storedRank] < 1e-6 * energy,
                    "\(record.name) unstored share")
            #expect(relativeDifference(dropped[0], max(energy, stored)) < 1e-4, "\(record.name) L(ΔW)")
            for i in 0..<factors.storedRank {
                #expect(relativeDifference(dropped[i] - dropped[i + 1], sigma[i] * sigma[i] * weights[i]) < 1e-6)
            }
        }
    }

    /// Without output statistics nothing changes: no objective, no extra tensors, activation only.
    @Test func inputOnlyCalibrationStoresNoObjective() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.manifest.supportedSensitivity == .activation)
        for record in store.matrices {
            #expect(record.objective == nil && record.objectiveEnergy == nil)
            #expect(try store.objectiveProjection(of: record) == nil)
        }
    }
}
