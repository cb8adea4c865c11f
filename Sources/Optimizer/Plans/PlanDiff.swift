import ModelProfiles

/// Where two plans put their bits differently: per matrix (only the matrices whose segments
/// differ) and per layer type (every type), in storage bits, bits per delta parameter and
/// predicted error (null where a plan has no error model).
public struct PlanDiff: Sendable, Equatable {
    public struct Side: Sendable, Equatable {
        public var segments: [Segment]
        /// ΔW stored dense (a `keep` pin).
        public var dense: Bool
        public var storageBits: Int
        public var predictedError: Double?
        /// The pin that fixed the matrix in this plan, if one did.
        public var pin: Pin?
    }

    public struct MatrixRow: Sendable, Equatable {
        public var name: String
        public var type: LayerType
        public var parameters: Int
        public var a: Side
        public var b: Side
    }

    public struct Totals: Sendable, Equatable {
        public var storageBits: Int
        public var predictedError: Double?
    }

    public struct TypeRow: Sendable, Equatable {
        public var type: LayerType
        public var parameters: Int
        public var a: Totals
        public var b: Totals
    }

    /// The matrices whose segments (or dense form) differ, in plan `a`'s order.
    public var matrices: [MatrixRow]
    /// Every layer type of the plans, in `LayerType` order.
    public var types: [TypeRow]

    /// Compares two plans of the same matrices (same names and shapes, in any order).
    /// - Throws: ``PlanFileError/invalid(file:field:reason:)`` naming the first matrix one plan
    ///   has and the other lacks, or whose shapes disagree (`a` and `b` name the plans in errors).
    public init(_ planA: Plan, _ planB: Plan, a: String = "a", b: String = "b") throws(PlanFileError) {
        let byName = Dictionary(planB.matrices.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        for m in planA.matrices {
            guard let other = byName[m.name] else {
                throw .invalid(file: b, field: "matrices", reason: "has no matrix '\(m.name)', which \(a) plans")
            }
            guard other.shape == m.shape else {
                throw .invalid(file: b, field: "matrices", reason: "'\(m.name)' is \(other.shape) there, \(m.shape) in \(a)")
            }
        }
        let namesA = Set(planA.matrices.map(\.name))
        if let extra = planB.matrices.first(where: { !namesA.contains($0.name) }) {
            throw .invalid(file: a, field: "matrices", reason: "has no matrix '\(extra.name)', which \(b) plans")
        }
        func side(_ m: Plan.Matrix) -> Side {
            Side(segments: m.segments, dense: m.dense, storageBits: m.storageBits, predictedError: m.predictedError, pin: m.pin)
        }
        matrices = planA.matrices.compactMap { m in
            let other = byName[m.name]!
            guard other.segments != m.segments || other.dense != m.dense else { return nil }
            return MatrixRow(name: m.name, type: m.type, parameters: m.shape[0] * m.shape[1], a: side(m), b: side(other))
        }
        types = LayerType.allCases.compactMap { type in
            let ma = planA.matrices.filter { $0.type == type }
            guard !ma.isEmpty else { return nil }
            let mb = ma.map { byName[$0.name]! }
            func error(_ ms: [Plan.Matrix]) -> Double? {
                ms.allSatisfy { $0.predictedError != nil } ? ms.reduce(0) { $0 + $1.predictedError! } : nil
            }
            return TypeRow(type: type, parameters: ma.reduce(0) { $0 + $1.shape[0] * $1.shape[1] },
                           a: Totals(storageBits: ma.reduce(0) { $0 + $1.storageBits }, predictedError: error(ma)),
                           b: Totals(storageBits: mb.reduce(0) { $0 + $1.storageBits }, predictedError: error(mb)))
        }
    }
}
