import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra

extension Analyzer {
    /// Analyzes one matrix and writes its file; returns its finished record.
    func analyze(
        _ job: Job, index: Int, record: StoreManifest.MatrixRecord, gram: CalibrationGram?, outputs: OutputStatistics?,
        base: Checkpoint, finetuned: Checkpoint
    ) throws(AnalysisError) -> StoreManifest.MatrixRecord {
        let delta = try loadDelta(job.name, base: base, finetuned: finetuned)
        let (m, n) = (job.rows, job.columns)
        let k = min(m, n)
        let cap = options.storedRank(rows: m, columns: n)
        let weightEnergy = delta.squaredFrobeniusNorm

        // SVD through the eigendecomposition of the Float64 Gram matrix (`gramSVD`): every value a
        // plan can use (σᵢ above the rank threshold below) to ≲ 10⁻⁶ relative, at about half the
        // cost of `sgesdd` for the default stored rank. All k values, `cap` vectors.
        var sigma: [Float], u: Matrix<Float>, v: Matrix<Float>
        // With calibration, the activation energy tr(ΔW H ΔWᵀ): for m ≥ n it is ⟨ΔWᵀΔW, H⟩ from the
        // Gram the SVD needs anyway (n² flops); for m < n it is Σᵢ σᵢ² vᵢᵀ H vᵢ over all k vectors,
        // the tail (past the stored ones) through the Gram's extra eigenvectors uᵢ (ΔWᵀuᵢ = σᵢvᵢ).
        var shortSide: Matrix<Float>?
        var gramEnergy: Double?
        do {
            var shortGram: Matrix<Double>?
            if let gram, m >= n {
                let g = shortSideGram(of: delta)
                gramEnergy = gram.inner(g)
                shortGram = g
            }
            let wantsTail = gram != nil && m < n
            let t = try gramSVD(delta, rank: cap, shortSideVectors: wantsTail ? k : cap, gram: consume shortGram)
            sigma = t.singularValues
            (u, v) = (t.u, t.v)
            if wantsTail { shortSide = u }
            if u.columns > v.columns { u = u.columnSlice(0..<v.columns).matrix }
        } catch {
            throw .numerical(tensor: job.name, reason: "SVD of the delta failed: \(error)")
        }
        // Keep only numerically nonzero directions: σᵢ > max(m, n)·ε·σ₁ (a zero delta has rank 0).
        let threshold = Float(max(m, n)) * Float.ulpOfOne * (sigma.first ?? 0)
        let rank = min(u.columns, sigma.prefix { $0 > threshold && $0 > 0 }.count)
        if rank < u.columns {
            u = u.columnSlice(0..<rank).matrix
            v = v.columnSlice(0..<rank).matrix
        }

        // Calibration projections.
        let inputEnergy: [Double], activationEnergy: Double, bitDelta: (activation: Double, weight: Double)
        var projection: ObjectiveProjection?
        let signApproximation = Self.bitDelta(delta)
        if let gram {
            let hv = gram.times(v)
            inputEnergy = (0..<rank).map { Self.dot(v.column($0), hv.column($0)) }
            let stored = (0..<rank).reduce(0.0) { $0 + Double(sigma[$1]) * Double(sigma[$1]) * inputEnergy[$1] }
            if let gramEnergy {
                activationEnergy = gramEnergy
            } else if let shortSide, shortSide.columns > rank {
                // m < n: Σᵢ σᵢ² vᵢᵀ H vᵢ = Σᵢ yᵢᵀ H yᵢ with yᵢ = ΔWᵀuᵢ over the unstored vectors
                // (2·(k − r)·(m·n + n²) flops instead of 2·m·n² for ΔW·H). Vectors the Gram does not
                // resolve (σᵢ < 10⁻⁶·σ₁) are left out: relatively < 10⁻¹².
                let y = checked { try multiply(delta, transposeA: true, shortSide.columnSlice(rank..<shortSide.columns).matrix) }
                let hy = gram.times(y)
                activationEnergy = stored + (0..<y.columns).reduce(0.0) { $0 + Self.dot(y.column($1), hy.column($1)) }
            } else {
                activationEnergy = stored
            }
            bitDelta = (gram.quadraticTrace(signApproximation.residual), signApproximation.residual.squaredFrobeniusNorm)
            projection = outputs?.project(delta: delta, sigma: sigma, u: u, v: v, hv: hv, inputEnergy: inputEnergy, gram: gram,
                                          bitDeltaResidual: signApproximation.residual)
        } else {
            inputEnergy = (0..<rank).map { Self.dot(v.column($0), v.column($0)) }
            activationEnergy = weightEnergy
            let e = signApproximation.residual.squaredFrobeniusNorm
            bitDelta = (e, e)
        }

        // Write the matrix file, then fill the record.
        let file = "\(SpectrumStore.matricesFolder)/\(Self.matrixFileName(index: index))"
        let url = store.appendingPathComponent(file)
        func doubles(_ name: String, _ values: [Double]) -> TensorPayload {
            TensorPayload(name: name, dtype: .f64, shape: [values.count], contents: .bytes(values.withUnsafeBytes { Array($0) }))
        }
        var payloads = [
            TensorPayload(name: "singular_values", dtype: .f32, shape: [sigma.count], contents: .floats(sigma)),
            TensorPayload(name: "u_t", dtype: .f32, shape: [rank, m], contents: .floats(u.elements)),
            TensorPayload(name: "v_t", dtype: .f32, shape: [rank, n], contents: .floats(v.elements)),
            doubles("input_energy", inputEnergy),
        ]
        if let projection {
            payloads += [doubles("objective_weight", projection.vectorWeights), doubles("objective_dropped", projection.dropped)]
            if let feedback = projection.droppedFeedback { payloads.append(doubles("objective_dropped_feedback", feedback)) }
        }
        do {
            try SafetensorsFile.write(payloads, metadata: ["tensor": job.name], to: url)
        } catch {
            throw .io(path: url.path, reason: "cannot write: \(error)")
        }
        var done = record
        done.status = .done
        done.file = file
        do { done.fileSHA256 = try Digest.sha256(fileAt: url) } catch { throw .io(path: url.path, reason: "\(error)") }
        done.fileSize = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue
        done.svd = "gram-eigen"
        done.singularValueCount = sigma.count
        done.storedRank = rank
        done.weightEnergy = weightEnergy
        done.activationEnergy = activationEnergy
        done.bitDeltaError = bitDelta.activation
        done.bitDeltaWeightError = bitDelta.weight
        done.objective = projection?.objective
        done.objectiveEnergy = projection?.dropped[0]
        done.bitDeltaObjectiveError = projection?.bitDeltaError
        return done
    }

    /// ΔW = W_ft − W_base in Float32, h_out × h_in column-major; NaN/Inf entries are an error.
    private func loadDelta(_ name: String, base: Checkpoint, finetuned: Checkpoint) throws(AnalysisError) -> Matrix<Float> {
        var b: (rows: Int, columns: Int, values: [Float])
        let f: (rows: Int, columns: Int, values: [Float])
        do {
            b = try base.matrixColumnMajor(name)
            f = try finetuned.matrixColumnMajor(name)
        } catch { throw .checkpoint("\(error)") }
        var nonFinite = 0
        b.values.withUnsafeMutableBufferPointer { pb in
            f.values.withUnsafeBufferPointer { pf in
                for i in pb.indices {
                    let d = pf[i] - pb[i]
                    pb[i] = d
                    if !d.isFinite { nonFinite += 1 }
                }
            }
        }
        guard nonFinite == 0 else { throw .nonFiniteDelta(tensor: name, count: nonFinite) }
        return Matrix(rows: b.rows, columns: b.columns, elements: b.values)
    }

    /// BitDelta's training-free form: ΔŴ = s·sign(ΔW), s = mean |ΔW|; returns ΔW − ΔŴ.
    static func bitDelta(_ delta: Matrix<Float>) -> (scale: Float, residual: Matrix<Float>) {
        let count = delta.count
        guard count > 0 else { return (0, delta) }
        let scale = Float(delta.withUnsafeBufferPointer { p in p.reduce(0.0) { $0 + Double(abs($1)) } } / Double(count))
        let residual = delta.map { $0 - ($0 > 0 ? scale : $0 < 0 ? -scale : 0) }
        return (scale, residual)
    }

    static func dot<C: Collection<Float>>(_ a: C, _ b: C) -> Double {
        var sum = 0.0
        for (x, y) in zip(a, b) { sum += Double(x) * Double(y) }
        return sum
    }
}

extension CalibrationGram {
    /// H·A (h_in × columns): one GEMM (`sgemm`, h_in²·columns flops) for a full H; for a diagonal
    /// one, row i of A scaled by dᵢ (h_in·columns), without forming diag(d).
    func times(_ a: Matrix<Float>) -> Matrix<Float> {
        switch self {
        case let .full(h): return checked { try multiply(h, a) }
        case let .diagonal(d):
            precondition(a.rows == d.count, "H is \(d.count) wide, the matrix has \(a.rows) rows")
            var out = a
            out.withUnsafeMutableBufferPointer { p in
                for j in 0..<a.columns { for i in 0..<a.rows { p[j * a.rows + i] *= d[i] } }
            }
            return out
        }
    }

    /// ⟨G, H⟩ = Σᵢⱼ Gᵢⱼ Hᵢⱼ for a symmetric G of h_in × h_in, accumulated in Double: tr(A H Aᵀ)
    /// when G = AᵀA (h_in² flops; Σⱼ Gⱼⱼ dⱼ for a diagonal H).
    func inner<S: LinearAlgebraScalar>(_ g: Matrix<S>) -> Double {
        precondition(g.rows == width && g.columns == width, "H is \(width) wide, the Gram is \(g.shape)")
        switch self {
        case let .full(h):
            return g.withUnsafeBufferPointer { pg in
                h.withUnsafeBufferPointer { ph in
                    var sum = 0.0
                    for i in 0..<pg.count { sum += Double(pg[i]) * Double(ph[i]) }
                    return sum
                }
            }
        case let .diagonal(d):
            return (0..<d.count).reduce(0.0) { $0 + Double(g[$1, $1]) * Double(d[$1]) }
        }
    }

    /// tr(A H Aᵀ) for A of h_out × h_in, accumulated in Double: ⟨AᵀA, H⟩ with AᵀA by `ssyrk`
    /// (h_out·h_in² flops, half of the GEMM A·H) for a full H, Σⱼ dⱼ Σᵢ Aᵢⱼ² (h_out·h_in) for a
    /// diagonal one.
    func quadraticTrace(_ a: Matrix<Float>) -> Double {
        switch self {
        case .full:
            precondition(a.columns == width, "H is \(width) wide, the matrix has \(a.columns) columns")
            return inner(gram(a, transpose: true))
        case let .diagonal(d):
            precondition(a.columns == d.count, "H is \(d.count) wide, the matrix has \(a.columns) columns")
            return a.withUnsafeBufferPointer { p in
                var sum = 0.0
                for j in 0..<a.columns {
                    var column = 0.0
                    for i in 0..<a.rows { let x = Double(p[j * a.rows + i]); column += x * x }
                    sum += Double(d[j]) * column
                }
                return sum
            }
        }
    }
}
