import ModelProfiles

/// Serving memory of one base model plus N compressed deltas, against N full models.
///
/// - Full model `M`: every tensor of the profile (planned matrices and the rest: embeddings,
///   norms, `lm_head`) at the profile's dtype width (BF16/F16: 2 bytes, F32: 4).
/// - Paper accounting: a compressed delta is `α · M` bytes (the paper counts the whole delta at
///   ratio α). Memory = `M + N·α·M`.
/// - Artifact accounting: a delta is the planned matrices' artifact size (payload, group scales
///   and zeros, 1-bit row scales, singular values; see ``StorageModel``) plus the non-planned
///   tensors carried uncompressed at the dtype width, since a fine-tune may change them too
///   (assumption; set `carryUnplanned` false if they are shared with the base). Memory = `M + N·D`.
/// - Fit in `G` bytes: uncompressed `⌊G / M⌋`; compressed `⌊(G − M) / D⌋` (0 when `G < M`).
///   Activations and KV cache are not counted.
public struct Footprint: Sendable, Equatable {
    public struct Row: Sendable, Equatable {
        public var models: Int
        public var uncompressedBytes: Int
        public var paperBytes: Int
        public var artifactBytes: Int
    }

    public var profile: String
    public var alpha: Double
    public var bytesPerValue: Int
    public var modelParameters: Int
    public var plannedParameters: Int
    /// M.
    public var modelBytes: Int
    /// α · M, rounded up.
    public var paperDeltaBytes: Int
    /// Artifact size of the planned matrices.
    public var artifactPlannedBytes: Int
    /// Non-planned tensors carried with each delta (0 when not carried).
    public var carriedBytes: Int
    public var artifactDeltaBytes: Int { artifactPlannedBytes + carriedBytes }
    public var rows: [Row]
    public var gpuMemoryBytes: Int?
    /// ⌊G / M⌋.
    public var fitUncompressed: Int?
    /// ⌊(G − M) / (α·M)⌋.
    public var fitPaper: Int?
    /// ⌊(G − M) / D⌋.
    public var fitArtifact: Int?
}

/// Bytes per value of a checkpoint dtype name (`BF16`, `F16` → 2, `F32` → 4, `F64` → 8, `I8`/`U8` → 1).
public func bytesPerValue(dtype: String) -> Int {
    switch dtype.uppercased() {
    case "F32", "FLOAT32": 4
    case "F64", "FLOAT64": 8
    case "I8", "U8", "F8_E4M3", "F8_E5M2": 1
    default: 2
    }
}

/// Computes ``Footprint`` for `models` deltas of `profile` under `plan` (its artifact storage must
/// be under ``Accounting/artifact`` for the artifact column; the paper column uses `plan`'s α
/// target `alpha`). O(tensors + models).
public func footprint(
    profile: ModelProfile, alpha: Double, artifactPlannedBits: Int, models: [Int],
    gpuMemoryBytes: Int? = nil, carryUnplanned: Bool = true
) -> Footprint {
    let width = bytesPerValue(dtype: profile.dtype)
    let planned = profile.expandedMatrices().reduce(0) { $0 + $1.rows * $1.columns }
    let other = profile.expandedTensors().reduce(0) { $0 + $1.shape.reduce(1, *) }
    let modelBytes = (planned + other) * width
    let paperDelta = Int((alpha * Double(modelBytes)).rounded(.up))
    let artifactPlanned = (artifactPlannedBits + 7) / 8
    let carried = carryUnplanned ? other * width : 0
    let delta = artifactPlanned + carried
    let rows = models.map { n in
        Footprint.Row(models: n, uncompressedBytes: n * modelBytes, paperBytes: modelBytes + n * paperDelta,
                      artifactBytes: modelBytes + n * delta)
    }
    func fit(_ g: Int, _ d: Int) -> Int { g < modelBytes ? 0 : (d > 0 ? (g - modelBytes) / d : Int.max) }
    return Footprint(
        profile: profile.name, alpha: alpha, bytesPerValue: width, modelParameters: planned + other,
        plannedParameters: planned, modelBytes: modelBytes, paperDeltaBytes: paperDelta,
        artifactPlannedBytes: artifactPlanned, carriedBytes: carried, rows: rows, gpuMemoryBytes: gpuMemoryBytes,
        fitUncompressed: gpuMemoryBytes.map { $0 / modelBytes },
        fitPaper: gpuMemoryBytes.map { fit($0, paperDelta) },
        fitArtifact: gpuMemoryBytes.map { fit($0, delta) })
}
