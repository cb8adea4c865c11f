import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles

/// A synthetic base / fine-tuned checkpoint pair and its calibration file, shaped like a profile.
///
/// What it models:
/// - base weights: N(0, 0.02²) projections and embeddings, norms near 1, small biases;
/// - each projection's delta ΔW = U·diag(σ)·Vᵀ with random orthogonal U and V (``RandomOrthogonal``:
///   five layers of Haar 32-blocks and permutations, exactly orthogonal, entries Gaussian-like)
///   and the spectrum of ``DeltaSpectrum``, fitted to the real development pair: a power law
///   (t + t_h)^(−p) in the relative index t = (i + ½)/r times a Marchenko–Pastur edge, with p and
///   t_h drawn per matrix around the attention or MLP fit; no constant floor (``Spectra`` keeps
///   the old floor model). Scaled so that ‖ΔW‖_F is 3% of the base's expected norm
///   0.02·√(h_out·h_in) in the first layer rising to 4.5% in the last;
/// - non-projection tensors change by N(0, 0.001²) in fine-tuning (they are carried, not planned);
/// - both checkpoints are stored in `dtype` (BF16 by default), so the delta read back carries the
///   rounding of both sides, as real BF16 deltas do (a noise floor of a few tenths of a percent of
///   its energy, as in the development pair);
/// - calibration: per layer input (shared by q/k/v, by gate/up), `tokens` activations
///   x = z + B·w (z ~ N(0, I), a rank-8 correlated part B·w) with 1% of the channels (at least
///   one) scaled by 20, as the outlier channels of real LLM activations; the Gram Σ x xᵀ over all
///   tokens and the first `sampleRows` rows as `.inputs`.
///
/// What it does not model: the structure of real fine-tuning deltas beyond their spectrum
/// (aligned singular vectors across layers, sparsity), real token statistics, attention.
///
/// Deterministic for a seed, whatever the parallelism: every tensor (every 4M-element chunk of
/// an embedding-sized one) draws from its own ``Xoshiro256`` seeded by the seed and the tensor's
/// name, and each is computed by the same single-threaded code (set ``BLASThreads/count`` to 1
/// when running with more than one thread, as `--threads` does).
///
/// Cost per m × n projection: about 2·m·n·32·9 flops of block GEMMs for U and V (against
/// 4–5·n³ for the QRs of Gaussian matrices this replaced) and m·n Gaussian draws.
/// Memory: two m·n Float buffers per matrix in flight (three for h_in > h_out), reused across
/// matrices (``Workspace``); the base is drawn in 2²⁰-element pieces as it is written beside
/// W + ΔW; the calibration is streamed entry by entry (``CalibrationWriter``), one Gram at a time.
/// A full-size Llama-2-7B layer: about 13 s of CPU and 0.8 GiB (BENCHMARKS.md, "synth").
public struct SyntheticPair: Sendable {
    public var profile: ModelProfile
    public var seed: UInt64
    public var dtype: DType
    public var tokens: Int
    public var sampleRows: Int
    public var maxShardBytes: Int
    public var spectra: Spectra

    /// The deltas' singular values.
    public enum Spectra: Sendable, Hashable {
        /// ``DeltaSpectrum``, fitted to a real fine-tune: the default.
        case fitted
        /// The model before the fit: σᵢ ∝ (i + 1)^(−p) + 0.03, p = 0.85 (attention) or 0.65 (MLP)
        /// ± 0.1 per matrix. A constant floor that puts half the energy of a 4096-wide delta in
        /// flat noise; kept for tests whose thresholds were calibrated on it.
        case powerLawWithFloor

        func values(for m: ProfileMatrix, using generator: inout Xoshiro256) -> [Double] {
            switch self {
            case .fitted:
                return DeltaSpectrum.family(of: m.type).draw(using: &generator).values(rows: m.rows, columns: m.columns)
            case .powerLawWithFloor:
                let exponent = (m.type == .attention ? 0.85 : 0.65) + 0.2 * (generator.uniform() - 0.5)
                let sigma = (0..<min(m.rows, m.columns)).map { pow(Double($0 + 1), -exponent) + 0.03 }
                let norm = sigma.reduce(0) { $0 + $1 * $1 }.squareRoot()
                return sigma.map { $0 / norm }
            }
        }
    }

    public init(profile: ModelProfile, seed: UInt64 = 0, dtype: DType = .bf16, tokens: Int = 512,
                sampleRows: Int = 128, maxShardBytes: Int = 5 << 30, spectra: Spectra = .fitted) {
        precondition(dtype.isFloatingPoint, "synthetic checkpoints are floating point")
        precondition(tokens > 0 && sampleRows >= 0)
        self.profile = profile
        self.seed = seed
        self.dtype = dtype
        self.tokens = tokens
        self.sampleRows = sampleRows
        self.maxShardBytes = maxShardBytes
        self.spectra = spectra
    }

    /// The three paths `write(to:)` creates inside its directory.
    public struct Paths: Sendable {
        public var base: URL
        public var finetuned: URL
        public var calibration: URL

        public init(in directory: URL) {
            base = directory.appendingPathComponent("base")
            finetuned = directory.appendingPathComponent("finetuned")
            calibration = directory.appendingPathComponent("calibration.safetensors")
        }
    }

    /// Writes `base/`, `finetuned/` and `calibration.safetensors` into `directory`, working on
    /// `parallelism.threads` tensors at once. `progress(done, total, name)` is called (on the
    /// calling thread) after each tensor, tensor chunk and calibration entry.
    @discardableResult
    public func write(to directory: URL, parallelism: Parallelism = .serial,
                      progress: (Int, Int, String) -> Void = { _, _, _ in }) throws(AnalysisError) -> Paths {
        let paths = Paths(in: directory)
        let matrices = profile.expandedMatrices()
        let others = profile.expandedTensors()
        let declarations = matrices.map { TensorDeclaration(name: $0.name, dtype: dtype, shape: [$0.rows, $0.columns]) }
            + others.map { TensorDeclaration(name: $0.name, dtype: dtype, shape: $0.shape) }
        let metadata = ["format": "pt", "generator": "deltaplan synth", "profile": profile.name, "seed": String(seed)]
        let (entries, aliases) = calibrationLayout(matrices)
        let work: [Work] = matrices.map { .matrix($0) } + others.flatMap { Self.chunks(of: $0) } + entries.map { .calibration($0.0, group: $0.1) }
        do {
            let base = try ShardedCheckpointWriter(directory: paths.base, tensors: declarations,
                                                   maxShardBytes: maxShardBytes, metadata: metadata)
            let finetuned = try ShardedCheckpointWriter(directory: paths.finetuned, tensors: declarations,
                                                        maxShardBytes: maxShardBytes, metadata: metadata)
            let calibration = try CalibrationWriter(url: paths.calibration, entries: entries.map(\.0), aliases: aliases)
            let workspace = Workspace()
            var piece = [Float](repeating: 0, count: Self.pieceElements)
            var failure: Error?
            var done = 0
            let outcome = runConcurrently(
                count: work.count, parallelism: parallelism, estimate: { work[$0].estimatedBytes(tokens: tokens) },
                shouldStop: { failure != nil },
                body: { i in Result<Output, Never>.success(self.generate(work[i], workspace: workspace)) },
                finished: { i, output in
                    do {
                        switch output {
                        case let .projection(m, delta):
                            try writeProjection(m, delta: delta, base: base, finetuned: finetuned, piece: &piece)
                            workspace.give(delta)
                        case let .tensor(name, start, baseValues, finetunedValues):
                            try baseValues.withUnsafeBufferPointer { values in
                                Result { () throws(CheckpointError) in try base.write(name, floats: values, startingAt: start) }
                            }.get()
                            try finetunedValues.withUnsafeBufferPointer { values in
                                Result { () throws(CheckpointError) in try finetuned.write(name, floats: values, startingAt: start) }
                            }.get()
                        case let .calibration(entry):
                            try calibration.write(entry)
                        }
                    } catch {
                        failure = failure ?? error
                    }
                    done += 1
                    progress(done, work.count, work[i].name)
                })
            if let failure { throw failure }
            if case .stopped = outcome { preconditionFailure("synth stopped without a failure") }
            try base.finish()
            try finetuned.finish()
            try calibration.finish()
        } catch let error as AnalysisError {
            throw error
        } catch {
            throw .checkpoint("\(error)")
        }
        return paths
    }

    /// One unit of work: a projection's delta, a chunk of another tensor, or a calibration entry.
    enum Work: Sendable {
        case matrix(ProfileMatrix)
        case chunk(ProfileTensor, elements: Range<Int>, index: Int)
        case calibration(CalibrationWriter.Layout, group: String)

        var name: String {
            switch self {
            case let .matrix(m): m.name
            case let .chunk(t, _, _): t.name
            case let .calibration(layout, _): layout.module + " (calibration)"
            }
        }

        /// Bytes held while it runs and until it is written (for ``runConcurrently``'s memory limit).
        func estimatedBytes(tokens: Int) -> Int {
            switch self {
            case let .matrix(m): 3 * 4 * m.rows * m.columns
            case let .chunk(_, elements, _): 2 * 4 * elements.count
            case let .calibration(layout, _): 4 * (2 * layout.width * layout.width + 3 * layout.width * tokens)
            }
        }
    }

    enum Output: Sendable {
        /// A projection's ΔW, row-major; its base is drawn as it is written.
        case projection(ProfileMatrix, delta: [Float])
        /// Elements `start ..< start + base.count` of a tensor, in both checkpoints (row-major).
        case tensor(name: String, start: Int, base: [Float], finetuned: [Float])
        case calibration(CalibrationEntry)
    }

    /// Elements drawn, encoded and written at a time when a projection's base is streamed.
    static let pieceElements = 1 << 20

    /// Writes a projection: its base W ~ N(0, 0.02²) drawn in pieces (row-major, from the base
    /// generator) and, beside each, the same piece of W + ΔW. Memory: one piece.
    func writeProjection(_ m: ProfileMatrix, delta: [Float], base: ShardedCheckpointWriter, finetuned: ShardedCheckpointWriter,
                         piece: inout [Float]) throws(CheckpointError) {
        var g = generator(m.name, "base")
        for start in stride(from: 0, to: delta.count, by: piece.count) {
            let count = min(piece.count, delta.count - start)
            try piece.withUnsafeMutableBufferPointer { p throws(CheckpointError) in
                let values = UnsafeMutableBufferPointer(rebasing: p[0..<count])
                g.fillGaussian(values, sigma: Self.baseSigma)
                try base.write(m.name, floats: UnsafeBufferPointer(values), startingAt: start)
                delta.withUnsafeBufferPointer { d in for i in 0..<count { values[i] += d[start + i] } }
                try finetuned.write(m.name, floats: UnsafeBufferPointer(values), startingAt: start)
            }
        }
    }

    /// The standard deviation of base projections and embeddings.
    static let baseSigma = 0.02

    /// Elements per chunk of a non-projection tensor: whole rows, up to 2²² elements (16 MiB
    /// of Float: small enough for the allocator to reuse rather than map afresh each time).
    static let chunkElements = 1 << 22

    /// A non-projection tensor in chunks of whole rows of at most `size` elements (at least one row).
    static func chunks(of t: ProfileTensor, size limit: Int = chunkElements) -> [Work] {
        let count = t.shape.reduce(1, *)
        let row = max(1, t.shape.last ?? 1)
        let size = max(row, limit / row * row)
        return stride(from: 0, to: max(count, 1), by: size).enumerated().map { index, start in
            .chunk(t, elements: start ..< min(count, start + size), index: index)
        }
    }

    func generate(_ work: Work, workspace: Workspace) -> Output {
        switch work {
        case let .matrix(m):
            return .projection(m, delta: delta(for: m, workspace: workspace).elements)
        case let .chunk(t, elements, index):
            let isNorm = t.name.lowercased().contains("norm") && t.name.hasSuffix(".weight")
            let isBias = t.name.hasSuffix(".bias")
            var g = generator(t.name, "base", chunk: index), change = generator(t.name, "finetune", chunk: index)
            var base = [Float](repeating: 0, count: elements.count), finetuned = base
            base.withUnsafeMutableBufferPointer { g.fillGaussian($0, sigma: isNorm || isBias ? 0.01 : Self.baseSigma) }
            finetuned.withUnsafeMutableBufferPointer { change.fillGaussian($0, sigma: 0.001) }
            for i in base.indices {
                if isNorm { base[i] += 1 }
                finetuned[i] += base[i]
            }
            return .tensor(name: t.name, start: elements.lowerBound, base: base, finetuned: finetuned)
        case let .calibration(layout, group):
            let x = activations(width: layout.width, group: group)
            return .calibration(CalibrationEntry(module: layout.module, gram: gram(x), tokenCount: tokens,
                                                 inputs: layout.inputRows > 0 ? x.columnSlice(0..<layout.inputRows).matrix : nil))
        }
    }

    /// The generator of one tensor (or chunk): seeded by the pair's seed and a stable hash
    /// (FNV-1a) of the name, the role and the chunk index.
    func generator(_ name: String, _ role: String, chunk: Int = 0) -> Xoshiro256 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for byte in (role + (chunk > 0 ? "#\(chunk)" : "") + ":" + name).utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return Xoshiro256(seed: hash)
    }

    /// ΔW of one projection as the column-major h_in × h_out matrix ΔWᵀ (the row-major
    /// [h_out, h_in] checkpoint layout): V·diag(σ)·Uᵀ with σ of ``spectra`` scaled to
    /// ‖ΔW‖_F = (3% + 1.5%·depth)·0.02·√(h_out·h_in), that share of the base's expected norm (its
    /// drawn norm is within about 1/√(h_out·h_in) of it). Buffers come from `workspace`.
    func delta(for m: ProfileMatrix, workspace: Workspace = Workspace()) -> Matrix<Float> {
        var g = generator(m.name, "delta")
        let values = spectra.values(for: m, using: &g)
        let depth = profile.layers > 1 ? Double(m.layer) / Double(profile.layers - 1) : 0
        let target = (0.03 + 0.015 * depth) * Self.baseSigma * Double(m.rows * m.columns).squareRoot()
        let sigma = values.map { Float($0 * target) }
        let left = RandomOrthogonal<Float>(order: m.rows, using: &g)
        let right = RandomOrthogonal<Float>(order: m.columns, using: &g)
        // [diag(σ)·Uᵀ; 0], h_in × h_out, then V·(…) = V·diag(σ)·Uᵀ.
        let r = sigma.count
        var rows = workspace.take(rows: r, columns: m.rows)
        left.transposedColumns(scaledBy: sigma, into: &rows)
        var z = rows
        if r < m.columns {
            z = workspace.take(rows: m.columns, columns: m.rows)
            z.withUnsafeMutableBufferPointer { p in
                rows.withUnsafeBufferPointer { t in
                    for j in 0..<m.rows {
                        (p.baseAddress! + j * m.columns).update(from: t.baseAddress! + j * r, count: r)
                        (p.baseAddress! + j * m.columns + r).initialize(repeating: 0, count: m.columns - r)
                    }
                }
            }
            workspace.give(rows.elements)
        }
        rows = Matrix(rows: 0, columns: 0)
        right.apply(to: &z)
        return z
    }

    /// The calibration entries (one per input group, in profile order, with its group) and the
    /// aliases of the modules that share an entry's input.
    private func calibrationLayout(_ matrices: [ProfileMatrix]) -> ([(CalibrationWriter.Layout, String)], [String: String]) {
        var entries: [(CalibrationWriter.Layout, String)] = [], aliases: [String: String] = [:], owner: [String: String] = [:]
        for m in matrices {
            let module = Selection.moduleName(of: m.name)
            if let first = owner[m.inputGroup] {
                aliases[module] = first
                continue
            }
            owner[m.inputGroup] = module
            entries.append((CalibrationWriter.Layout(module: module, width: m.columns, inputRows: min(sampleRows, tokens)), m.inputGroup))
        }
        return (entries, aliases)
    }

    /// X, width × tokens: correlated activations with outlier channels.
    func activations(width h: Int, group: String) -> Matrix<Float> {
        var g = generator(group, "activations")
        let rank = min(8, h)
        let mixing = Matrix<Float>.gaussian(rows: h, columns: rank, sigma: 1 / Double(rank).squareRoot(), using: &g)
        let latent = Matrix<Float>.gaussian(rows: rank, columns: tokens, sigma: 1.5, using: &g)
        var x = Matrix<Float>.gaussian(rows: h, columns: tokens, using: &g)
        multiplyAdd(mixing, .all(mixing), latent, .all(latent), beta: 1, into: &x, .all(x))
        let outliers = max(1, h / 100)
        var channels = Set<Int>()
        while channels.count < outliers { channels.insert(g.uniformInt(below: h)) }
        x.withUnsafeMutableBufferPointer { p in
            for t in 0..<tokens { for c in channels { p[t * h + c] *= 20 } }
        }
        return x
    }
}
