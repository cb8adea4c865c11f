extension Matrix {
    /// Element-wise conversion between precisions (`Matrix<Double>(floatMatrix)` and back).
    /// Float → Double is exact; Double → Float rounds to nearest. O(rows·columns).
    public init<Other: LinearAlgebraScalar>(_ other: Matrix<Other>) {
        if let same = other as? Matrix<Scalar> {
            self = same
            return
        }
        var out = Matrix(rows: other.rows, columns: other.columns)
        other.withUnsafeBufferPointer { source in
            out.storage.withUnsafeMutableBufferPointer { Kernels.convert(source, into: $0) }
        }
        self = out
    }

    /// Aᵀ as a new `columns×rows` matrix (`cblas_somatcopy`/`cblas_domatcopy`; O(rows·columns)).
    public func transposed() -> Matrix {
        var out = Matrix(rows: columns, columns: rows)
        guard !isEmpty else { return out }
        storage.withUnsafeBufferPointer { a in
            out.storage.withUnsafeMutableBufferPointer { b in
                BLAS.transpose(rows: rows, columns: columns, a: a.baseAddress!, b: b.baseAddress!)
            }
        }
        return out
    }
}

extension ColumnMajorMatrix {
    /// ‖A‖²_F = Σᵢⱼ aᵢⱼ², accumulated in Double (four partial sums; relative rounding error about
    /// n·2⁻⁵³ for n elements). NaN or ∞ if any element is. O(rows·columns).
    public var squaredFrobeniusNorm: Double {
        withUnsafeBufferPointer { Kernels.sumOfSquares($0).sum }
    }

    /// ‖A‖_F = √(Σᵢⱼ aᵢⱼ²), accumulated in Double.
    public var frobeniusNorm: Double { squaredFrobeniusNorm.squareRoot() }

    /// True when no element is NaN or ±∞. O(rows·columns), branch-free.
    public var isFinite: Bool {
        withUnsafeBufferPointer { Kernels.allFinite($0) }
    }
}
