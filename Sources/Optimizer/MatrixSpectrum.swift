import ModelProfiles

/// What the optimizer knows of one delta matrix ΔW = U Σ Vᵀ (`rows × columns` = `h_out × h_in`):
/// everything the error model needs, produced by `analyze` and the measurement pass.
public struct MatrixSpectrum: Sendable, Equatable {
    public var name: String
    public var type: LayerType
    /// h_out.
    public var rows: Int
    /// h_in.
    public var columns: Int
    /// σᵢ for the stored vectors, descending (the stored rank may be below min(rows, columns)).
    public var singularValues: [Double]
    /// gᵢ = vᵢᵀ H vᵢ for the stored vectors, H = Σ x xᵀ the calibration Gram (H = I when data-free).
    public var inputEnergy: [Double]
    /// ‖ΔW X‖² = tr(ΔW H ΔWᵀ) = Σ over all vectors of σᵢ² gᵢ, including any not stored.
    public var activationEnergy: Double
    /// ‖ΔW‖²_F.
    public var weightEnergy: Double
    /// eᵢ(k): the relative activation error of vector i quantized at k bits, measured by quantizing
    /// it the way the backend does. Keyed by bit-width; each array covers the stored vectors.
    /// A bit-width without an entry cannot be used for this matrix.
    public var relativeQuantizationError: [Int: [Double]]
    /// The objective the error model minimizes, and its costs when it is a sensitivity objective
    /// (`kronecker` or `paired`, from the store's output statistics; nil: the activation objective).
    public var sensitivity: Sensitivity?

    /// A sensitivity objective's costs for one matrix (Docs/calibration-format.md).
    public struct Sensitivity: Sendable, Equatable {
        public var objective: ErrorObjective
        /// wᵢ per stored vector: dropping vector i alone costs σᵢ² wᵢ.
        public var vectorWeights: [Double]
        /// dropped[j], j = 0…r: the cost of dropping every vector from j on; dropped[0] = L(ΔW).
        public var dropped: [Double]

        public init(objective: ErrorObjective, vectorWeights: [Double], dropped: [Double]) {
            precondition(dropped.count == vectorWeights.count + 1, "one dropped cost per rank 0…r")
            self.objective = objective
            self.vectorWeights = vectorWeights
            self.dropped = dropped
        }
    }
    /// wᵢ: the error of dropping stored vector i when the vectors before it are kept, so that
    /// dropping every vector from K on costs Σ_{i≥K} wᵢ (plus the vectors never stored). Nil: σᵢ² gᵢ
    /// (dropped vectors do not interact, the paper's order); error feedback's kept segments absorb
    /// part of the dropped vectors and measure smaller weights with the same total.
    public var droppedWeights: [Double]?

    public init(
        name: String, type: LayerType, rows: Int, columns: Int,
        singularValues: [Double], inputEnergy: [Double],
        activationEnergy: Double, weightEnergy: Double,
        relativeQuantizationError: [Int: [Double]], sensitivity: Sensitivity? = nil,
        droppedWeights: [Double]? = nil
    ) {
        precondition(singularValues.count == inputEnergy.count, "one gᵢ per stored σᵢ")
        precondition(singularValues.count <= min(rows, columns), "more singular values than the rank allows")
        precondition(relativeQuantizationError.values.allSatisfy { $0.count == singularValues.count },
                     "one eᵢ(k) per stored vector and bit-width")
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
        self.singularValues = singularValues
        self.inputEnergy = inputEnergy
        self.activationEnergy = activationEnergy
        self.weightEnergy = weightEnergy
        precondition(droppedWeights.map { $0.count == singularValues.count } ?? true, "one dropped weight per stored vector")
        self.relativeQuantizationError = relativeQuantizationError
        if let sensitivity {
            precondition(sensitivity.vectorWeights.count == singularValues.count, "one wᵢ per stored σᵢ")
        }
        self.sensitivity = sensitivity
        self.droppedWeights = droppedWeights
    }

    /// The objective the error model minimizes.
    public var objective: ErrorObjective { sensitivity?.objective ?? .activation }

    /// The whole delta's cost under ``objective``: L(ΔW), or ‖ΔW X‖² for the activation objective.
    public var objectiveEnergy: Double { sensitivity?.dropped[0] ?? activationEnergy }

    /// The number of stored vectors: the largest rank a plan can give this matrix.
    public var storedRank: Int { singularValues.count }
}
