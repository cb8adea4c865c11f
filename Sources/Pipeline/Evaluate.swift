import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Quantization

/// Errors of one reconstruction ΔŴ of a matrix against the true ΔW = W_ft − W_base.
public struct ReconstructionError: Codable, Sendable, Equatable {
    /// ‖(ΔW − ΔŴ) X‖² (see ``MatrixEvaluation/errorSource``).
    public var activationError: Double
    /// activationError / ‖ΔW X‖².
    public var relativeActivationError: Double
    /// ‖ΔW − ΔŴ‖_F / ‖ΔW‖_F.
    public var relativeWeightError: Double
    /// L(ΔW − ΔŴ) under the store's sensitivity objective (``EvaluationReport/sensitivityObjective``);
    /// nil without one.
    public var objectiveError: Double?
}

/// The evaluation of one planned matrix.
public struct MatrixEvaluation: Codable, Sendable, Equatable {
    public var name: String
    public var type: String
    public var shape: [Int]
    /// `inputs` (‖E X‖² over the calibration entry's raw input rows), `gram` (tr(E H Eᵀ) with the
    /// entry's Gram), or `identity` (H = I: ‖E‖²_F).
    public var errorSource: String
    /// Tokens behind the activation figures: the input rows for `inputs`, the Gram's token count
    /// for `gram`; nil for `identity`. The plan's predictions always come from the Gram, so when
    /// the input rows are a sample, actual and predicted are measured on different tokens.
    public var tokens: Int?
    /// ‖ΔW X‖² with the same X (or H).
    public var activationEnergy: Double
    /// ‖ΔW‖²_F.
    public var weightEnergy: Double
    /// L(ΔW) under the store's sensitivity objective, from the calibration's output statistics
    /// (Docs/calibration-format.md); nil without one.
    public var objectiveEnergy: Double?
    public var plan: ReconstructionError
    public var predictedError: Double?
    public var predictedRelativeError: Double?
    /// The actual relative error under the plan's objective over predictedRelativeError
    /// (relative errors compare even when X is a sample of the calibration tokens).
    public var actualOverPredicted: Double?
    /// The plan's storage bits and the low-rank baseline's rank at that storage.
    public var planStorageBits: Int
    public var lowRankRank: Int
    /// 16-bit top-r SVD: F16 U_r, σ_r, V_r with r = ⌊storage / (16·(h_out + h_in) + 16)⌋.
    public var lowRank: ReconstructionError
    /// BitDelta: s·sign(ΔW) with s = F16(mean |ΔW|) (1 bit per parameter, the α = 1/16 budget).
    public var bitDelta: ReconstructionError
}

/// Sums over a group of matrices (a layer type, or all).
public struct EvaluationSummary: Codable, Sendable, Equatable {
    public var group: String
    public var matrices: Int
    public var activationEnergy: Double
    public var planError: Double
    public var planRelativeError: Double
    /// Σ predicted errors / Σ predicted energies (nil when the plan has no predictions).
    public var predictedRelativeError: Double?
    public var actualOverPredicted: Double?
    public var lowRankRelativeError: Double
    public var bitDeltaRelativeError: Double
    /// √(Σ ‖ΔW − ΔŴ‖²_F / Σ ‖ΔW‖²_F).
    public var planRelativeWeightError: Double
    /// Σ L(ΔW − ΔŴ) / Σ L(ΔW) under the store's sensitivity objective, and the baselines' (nil
    /// without one).
    public var planObjectiveRelativeError: Double?
    public var lowRankObjectiveRelativeError: Double?
    public var bitDeltaObjectiveRelativeError: Double?
}

public struct EvaluationReport: Codable, Sendable, Equatable {
    public var artifact: String
    public var strategy: String
    /// The objective the plan predicted (and `actualOverPredicted` compares).
    public var objective: ErrorObjective
    /// The sensitivity objective of the `objective…` fields: the strongest the store's calibration
    /// supports (`paired` or `kronecker`), measured whatever the plan minimized, so plans made
    /// under different objectives compare; nil when the calibration has no output statistics.
    @EncodedAsNull public var sensitivityObjective: ErrorObjective?
    public var matrices: [MatrixEvaluation]
    public var byType: [EvaluationSummary]
    public var total: EvaluationSummary
    /// What makes actual and predicted incomparable: the plan's predictions measured in another
    /// segment order than the artifact was compressed in.
    public var warnings: [String]
}

/// `deltaplan evaluate`: the actual errors of an artifact's ΔŴ against ΔW = W_ft − W_base, per
/// planned matrix, beside the plan's predictions and two baselines at the same storage.
///
/// - Activation error: ‖(ΔW − ΔŴ) X‖² over the entry's raw input rows X when the calibration
///   has `.inputs`, else tr(E H Eᵀ) = Σᵢⱼ (E H)ᵢⱼ Eᵢⱼ with the Gram (one `sgemm`, h_out·h_in²
///   multiply-adds), else ‖E‖²_F (H = I). Sums in Double.
/// - Baselines: `low-rank` is the top r of the store's factors at 16 bits (r capped at the stored
///   rank); `bitdelta` is recomputed from ΔW.
/// - Inputs are verified against the artifact's recorded fingerprints (size and header hash), the
///   store by its identity, the calibration against the store's.
///
/// One matrix at a time per thread (ΔW, ΔŴ, the baselines, and H or X), `parallelism.threads`
/// matrices at once within `parallelism.memoryLimit` (the report is the same for every thread
/// count). `shouldStop` is checked before each matrix (``QuantizationError/stopped`` inside
/// ``ArtifactError/quantization(_:)``); `progress` gets (matrices done, total, name).
public func evaluate(
    artifact: Artifact, base baseURL: URL, finetuned finetunedURL: URL, calibration: CalibrationSet?, store: SpectrumStore,
    parallelism: Parallelism = .serial,
    progress: (Int, Int, String) -> Void = { _, _, _ in }, shouldStop: () -> Bool = { false }
) throws(ArtifactError) -> EvaluationReport {
    let m = artifact.manifest
    let base = try openCheckpoint(baseURL)
    let finetuned = try openCheckpoint(finetunedURL)
    try verifyInput(base, path: baseURL.path, against: m.inputs.base, role: "base", checkModified: false)
    try verifyInput(finetuned, path: finetunedURL.path, against: m.inputs.finetuned, role: "fine-tuned", checkModified: false)
    guard store.identity == m.store.identity else {
        throw .planMismatch(plan: m.planPath ?? "<embedded plan>", reason: "the store \(store.url.path) has identity \(store.identity), the artifact was made from \(m.store.identity)")
    }
    do { _ = try checkCalibration(store: store, calibration: calibration) } catch { throw .quantization(error) }
    let objective = m.plan.objective ?? .activation
    let sensitivityObjective = store.manifest.supportedSensitivity == .activation ? nil : store.manifest.supportedSensitivity
    var evaluated = [MatrixEvaluation?](repeating: nil, count: m.matrices.count)
    var done = 0
    let outcome = runConcurrently(
        count: m.matrices.count, parallelism: parallelism,
        estimate: { i in
            let (rows, columns) = (m.matrices[i].shape[0], m.matrices[i].shape[1])
            let rank = store.record(named: m.matrices[i].name)?.storedRank ?? 0
            return 4 * (7 * rows * columns + columns * columns + rank * (rows + columns))
        },
        shouldStop: shouldStop,
        body: { index in
            Result { () throws(ArtifactError) in
                try evaluateMatrix(index, artifact: artifact, base: base, finetuned: finetuned, calibration: calibration, store: store,
                                   objective: objective, sensitivityObjective: sensitivityObjective)
            }
        },
        finished: { index, evaluation in
            evaluated[index] = evaluation
            done += 1
            progress(done, m.matrices.count, m.matrices[index].name)
        })
    switch outcome {
    case .completed: break
    case .stopped: throw .quantization(.stopped)
    case let .failed(_, error): throw error
    }
    let results = evaluated.map { $0! }
    var types: [String] = []
    for r in results where !types.contains(r.type) { types.append(r.type) }
    let strategy = m.plan.strategy.name + (m.plan.strategy.preset.map { ":" + $0 } ?? "")
    var warnings: [String] = []
    for order in Set(m.matrices.map(\.effectiveOrder)).sorted(by: { $0.rawValue < $1.rawValue }) {
        if let warning = resolveOrder(plan: m.plan, requested: order).warning { warnings.append(warning) }
    }
    return EvaluationReport(
        artifact: artifact.url.path, strategy: strategy, objective: objective, sensitivityObjective: sensitivityObjective,
        matrices: results, byType: types.map { t in summarize(t, results.filter { $0.type == t }, objective: objective) },
        total: summarize("total", results, objective: objective),
        warnings: warnings)
}

func summarize(_ group: String, _ rows: [MatrixEvaluation], objective: ErrorObjective) -> EvaluationSummary {
    let energy = rows.reduce(0) { $0 + $1.activationEnergy }
    let weight = rows.reduce(0) { $0 + $1.weightEnergy }
    func relative(_ f: (MatrixEvaluation) -> Double) -> Double { energy > 0 ? rows.reduce(0) { $0 + f($1) } / energy : 0 }
    let planRelative = relative { $0.plan.activationError }
    // Predicted: Σ predicted errors over Σ predicted energies (energy = error / relative error; a
    // row predicted exactly 0, such as a matrix kept dense, adds no error and its measured energy
    // in the plan's objective).
    var predicted: Double?
    if rows.allSatisfy({ $0.predictedError != nil && ($0.predictedRelativeError ?? 0) > 0 || $0.predictedError == 0 }) {
        let errors = rows.reduce(0) { $0 + $1.predictedError! }
        let energies = rows.reduce(0) { total, row in
            guard row.predictedError! != 0 else {
                return total + (objective == .activation ? row.activationEnergy : row.objectiveEnergy ?? row.activationEnergy)
            }
            return total + row.predictedError! / row.predictedRelativeError!
        }
        predicted = energies > 0 ? errors / energies : nil
    }
    let weightError = rows.reduce(0.0) { $0 + $1.weightEnergy * $1.plan.relativeWeightError * $1.plan.relativeWeightError }
    // Under a sensitivity objective: Σ L(E) / Σ L(ΔW), and actual/predicted in that objective.
    var objectiveRelative: (plan: Double, lowRank: Double, bitDelta: Double)?
    if rows.allSatisfy({ $0.objectiveEnergy != nil }) && !rows.isEmpty {
        let total = rows.reduce(0) { $0 + $1.objectiveEnergy! }
        func share(_ f: (MatrixEvaluation) -> Double?) -> Double { total > 0 ? rows.reduce(0) { $0 + (f($1) ?? 0) } / total : 0 }
        objectiveRelative = (share { $0.plan.objectiveError }, share { $0.lowRank.objectiveError }, share { $0.bitDelta.objectiveError })
    }
    let actualRelative = objective == .activation ? planRelative : objectiveRelative?.plan ?? planRelative
    return EvaluationSummary(
        group: group, matrices: rows.count, activationEnergy: energy, planError: rows.reduce(0) { $0 + $1.plan.activationError },
        planRelativeError: planRelative, predictedRelativeError: predicted,
        actualOverPredicted: predicted.flatMap { $0 > 0 ? actualRelative / $0 : nil },
        lowRankRelativeError: relative { $0.lowRank.activationError }, bitDeltaRelativeError: relative { $0.bitDelta.activationError },
        planRelativeWeightError: weight > 0 ? (weightError / weight).squareRoot() : 0,
        planObjectiveRelativeError: objectiveRelative?.plan, lowRankObjectiveRelativeError: objectiveRelative?.lowRank,
        bitDeltaObjectiveRelativeError: objectiveRelative?.bitDelta)
}

/// ΔW = W_ft − W_base in Float32, column-major `rows × columns`.
func trueDelta(_ name: String, base: Checkpoint, finetuned: Checkpoint, rows: Int, columns: Int) throws(ArtifactError) -> Matrix<Float> {
    let a: (rows: Int, columns: Int, values: [Float]), b: (rows: Int, columns: Int, values: [Float])
    do {
        a = try finetuned.matrixColumnMajor(name)
        b = try base.matrixColumnMajor(name)
    } catch { throw .checkpoint("\(error)") }
    guard a.rows == rows, a.columns == columns, b.rows == rows, b.columns == columns else {
        throw .inputMismatch(input: "base/fine-tuned", path: name, reason: "shapes \(b.rows)×\(b.columns) / \(a.rows)×\(a.columns), expected \(rows)×\(columns)")
    }
    var values = a.values
    for t in 0..<values.count { values[t] -= b.values[t] }
    return Matrix(rows: rows, columns: columns, elements: values)
}

func difference(_ a: Matrix<Float>, _ b: Matrix<Float>) -> Matrix<Float> {
    var out = a
    out.withUnsafeMutableBufferPointer { po in b.withUnsafeBufferPointer { pb in for t in 0..<po.count { po[t] -= pb[t] } } }
    return out
}

func frobenius2(_ a: Matrix<Float>) -> Double {
    a.withUnsafeBufferPointer { p in p.reduce(0.0) { $0 + Double($1) * Double($1) } }
}

/// ‖E X‖² (X: h_in × n), tr(E H Eᵀ), or ‖E‖²_F.
func activationNorm(_ e: Matrix<Float>, x: Matrix<Float>?, h: Matrix<Float>?) -> Double {
    if let x { return frobenius2(checked { try multiply(e, x) }) }
    guard let h else { return frobenius2(e) }
    let eh = checked { try multiply(e, h) }
    return eh.withUnsafeBufferPointer { p in
        e.withUnsafeBufferPointer { q in
            var s = 0.0
            for t in 0..<p.count { s += Double(p[t]) * Double(q[t]) }
            return s
        }
    }
}

/// How a matrix's reconstruction error is measured: the activation error (``activationNorm(_:x:h:)``
/// with its calibration entry's raw inputs, else its Gram, else H = I) and, when the store has
/// one, the sensitivity objective's L(E).
struct ErrorMeasures {
    /// `inputs`, `gram` or `identity` (``MatrixEvaluation/errorSource``).
    let source: String
    let tokens: Int?
    let activation: (Matrix<Float>) -> Double
    let sensitivity: ((Matrix<Float>) -> Double)?

    /// `entry`: the matrix's calibration entry as quantized (nil: H = I).
    init(matrix name: String, entry: String?, calibration: CalibrationSet?, sensitivityObjective: ErrorObjective?) throws(ArtifactError) {
        var source = "identity", tokens: Int?
        var x: Matrix<Float>?, h: Matrix<Float>?
        if let entry {
            guard let calibration else {
                throw .invalidOption(option: "--calibration", reason: "\(name) was quantized with calibration entry \(entry); pass the calibration file")
            }
            guard calibration.entry(for: entry) != nil else {
                throw .invalidOption(option: "--calibration", reason: "\(calibration.url.path) has no entry \(entry) (needed by \(name))")
            }
            do {
                x = try calibration.inputs(ofEntry: entry)
                h = x == nil ? try calibration.gram(ofEntry: entry) : nil
            } catch { throw .quantization(.store(error)) }
            source = x != nil ? "inputs" : "gram"
            tokens = x?.columns ?? calibration.tokenCount(ofEntry: entry)
        }
        self.source = source
        self.tokens = tokens
        activation = { [x, h] e in activationNorm(e, x: x, h: h) }
        guard let sensitivityObjective else {
            sensitivity = nil
            return
        }
        guard let calibration, let entry else {
            throw .invalidOption(option: "--calibration", reason: "the store has \(sensitivityObjective.rawValue) statistics; pass its calibration file")
        }
        do {
            let module = Selection.moduleName(of: name)
            guard let outputs = try OutputStatistics.load(module: module, from: calibration, entry: entry),
                  outputs.objective == sensitivityObjective else {
                throw ArtifactError.invalidOption(option: "--calibration", reason: "\(calibration.url.path) has no \(sensitivityObjective.rawValue) statistics for \(module)")
            }
            let gram = try calibration.inputGram(ofEntry: entry)
            sensitivity = { outputs.error(of: $0, gram: gram) }
        } catch let error as ArtifactError { throw error } catch let error as AnalysisError { throw .quantization(.store(error)) } catch {
            preconditionFailure("\(error)")
        }
    }

    /// The error of `approximation` against `delta` in `objective`: L(E) under a sensitivity
    /// objective, the activation error otherwise.
    func error(_ objective: ErrorObjective, of approximation: Matrix<Float>, against delta: Matrix<Float>) -> Double {
        norm(objective, of: difference(delta, approximation))
    }

    /// L(e) under a sensitivity objective, the activation error ‖e X‖² otherwise (of ΔW itself: the
    /// energy that relative errors divide by).
    func norm(_ objective: ErrorObjective, of e: Matrix<Float>) -> Double {
        objective == .activation ? activation(e) : sensitivity.map { $0(e) } ?? activation(e)
    }
}

/// The evaluation of the artifact's matrix `index` (see ``evaluate(artifact:base:finetuned:calibration:store:parallelism:progress:shouldStop:)``).
private func evaluateMatrix(
    _ index: Int, artifact: Artifact, base: Checkpoint, finetuned: Checkpoint, calibration: CalibrationSet?, store: SpectrumStore,
    objective: ErrorObjective, sensitivityObjective: ErrorObjective?
) throws(ArtifactError) -> MatrixEvaluation {
    let m = artifact.manifest
    let (record, planned) = (m.matrices[index], m.plan.matrices[index])
    let (rows, columns) = (record.shape[0], record.shape[1])
    let delta = try trueDelta(record.name, base: base, finetuned: finetuned, rows: rows, columns: columns)
    let deltaHat = try artifact.reconstruction(of: record)

    let measures = try ErrorMeasures(matrix: record.name, entry: record.calibrationEntry, calibration: calibration,
                                     sensitivityObjective: sensitivityObjective)
    let (source, tokens) = (measures.source, measures.tokens)
    let activation = measures.activation, sensitivity = measures.sensitivity

    let energy = activation(delta)
    let weightEnergy = frobenius2(delta)
    let objectiveEnergy = sensitivity?(delta)
    func errors(of approximation: Matrix<Float>) -> ReconstructionError {
        let e = difference(delta, approximation)
        let a = activation(e)
        return ReconstructionError(activationError: a, relativeActivationError: energy > 0 ? a / energy : 0,
                                   relativeWeightError: weightEnergy > 0 ? (frobenius2(e) / weightEnergy).squareRoot() : 0,
                                   objectiveError: sensitivity?(e))
    }
    let planError = errors(of: deltaHat)

    // Low-rank baseline at the same storage.
    let lowRankRank = planned.storageBits / (16 * (rows + columns) + 16)
    var lowRankApproximation = Matrix<Float>(rows: rows, columns: columns)
    var usedRank = 0
    guard let storeRecord = store.record(named: record.name) else {
        throw .planMismatch(plan: m.planPath ?? "<embedded plan>", reason: "\(record.name) is not in the store \(store.url.path)")
    }
    if lowRankRank > 0 {
        let factors: StoredFactors
        do { factors = try store.factors(of: storeRecord) } catch { throw .quantization(.store(error)) }
        usedRank = min(lowRankRank, factors.storedRank)
        if usedRank > 0 {
            let q: QuantizedSegment
            do {
                q = try quantizeSegment(factors, segment: Segment(start: 0, end: usedRank, bits: 16), hessian: nil,
                                        options: SegmentOptions(order: .paper))
            } catch { throw .quantization(error) }
            lowRankApproximation = q.reconstruction
        }
    }
    let lowRank = errors(of: lowRankApproximation)

    // BitDelta baseline.
    var bitDelta = delta
    let meanAbs = delta.withUnsafeBufferPointer { p in p.reduce(0.0) { $0 + Double(abs($1)) } } / Double(max(1, rows * columns))
    let s = Float(Float16(meanAbs))
    bitDelta.withUnsafeMutableBufferPointer { p in for t in 0..<p.count { p[t] = p[t] >= 0 ? s : -s } }
    let bitDeltaError = errors(of: bitDelta)

    var ratio: Double?
    let actualRelative = objective == .activation ? planError.relativeActivationError
        : objectiveEnergy.map { e in e > 0 ? (planError.objectiveError ?? 0) / e : 0 } ?? planError.relativeActivationError
    if let predicted = planned.predictedRelativeError, predicted > 0 { ratio = actualRelative / predicted }
    return MatrixEvaluation(
        name: record.name, type: record.type, shape: record.shape, errorSource: source,
        tokens: tokens, activationEnergy: energy,
        weightEnergy: weightEnergy, objectiveEnergy: objectiveEnergy, plan: planError, predictedError: planned.predictedError,
        predictedRelativeError: planned.predictedRelativeError, actualOverPredicted: ratio,
        planStorageBits: planned.storageBits, lowRankRank: usedRank, lowRank: lowRank, bitDelta: bitDeltaError)
}
