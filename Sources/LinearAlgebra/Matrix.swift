/// Read access to a dense column-major matrix: element `(i, j)` is at offset `i + j·rows`, with
/// no padding (leading dimension = `rows`).
///
/// ``Matrix`` and ``MatrixColumns`` (a no-copy view of a column range) conform, so every operation
/// of this module (GEMM, SVD, QR, …) accepts either.
public protocol ColumnMajorMatrix<Scalar> {
    associatedtype Scalar: LinearAlgebraScalar
    /// Number of rows (the leading dimension).
    var rows: Int { get }
    /// Number of columns.
    var columns: Int { get }
    /// Calls `body` with the `rows·columns` elements in column-major order. The pointer must not
    /// escape `body`.
    func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Scalar>) throws -> R) rethrows -> R
}

extension ColumnMajorMatrix {
    /// `rows×columns`.
    public var shape: Shape { Shape(rows: rows, columns: columns) }
    /// `rows · columns`.
    public var count: Int { rows * columns }
    /// True when the matrix has no elements.
    public var isEmpty: Bool { rows == 0 || columns == 0 }
}

/// A dense matrix of `Float` or `Double`, stored column-major in one flat array.
///
/// Layout: element `(i, j)` is `elements[i + j·rows]` (LAPACK's layout with `lda = rows`), so a
/// range of columns is a contiguous slice (see ``columnSlice(_:)``). A value type: copies share
/// storage until one of them is mutated (copy-on-write of the underlying `Array`).
public struct Matrix<Scalar: LinearAlgebraScalar>: ColumnMajorMatrix, Sendable, Hashable {
    /// Number of rows.
    public let rows: Int
    /// Number of columns.
    public let columns: Int
    @usableFromInline var storage: [Scalar]

    /// The elements in column-major order (`rows·columns` of them).
    @inlinable public var elements: [Scalar] { storage }

    /// A `rows×columns` matrix of zeros.
    ///
    /// The zeros come from a concrete `[Float]` or `[Double]` (a `memset`): in generic code that
    /// is not specialized (any generic caller in another module), `Array(repeating: 0, count:)`
    /// would copy every element through the type's value witnesses, about a second for a
    /// 4096 × 11008 matrix.
    @inlinable public init(rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0, "Matrix shape must be non-negative, got \(rows)×\(columns)")
        self.rows = rows
        self.columns = columns
        switch Scalar.precision {
        case .single: self.storage = unsafeBitCast([Float](repeating: 0, count: rows * columns), to: [Scalar].self)
        case .double: self.storage = unsafeBitCast([Double](repeating: 0, count: rows * columns), to: [Scalar].self)
        }
    }

    /// A matrix over existing column-major `elements`; `elements.count` must be `rows·columns`
    /// (a caller bug otherwise: validate user-supplied shapes before calling).
    @inlinable public init(rows: Int, columns: Int, elements: [Scalar]) {
        precondition(rows >= 0 && columns >= 0, "Matrix shape must be non-negative, got \(rows)×\(columns)")
        precondition(elements.count == rows * columns,
                     "Matrix \(rows)×\(columns) needs \(rows * columns) elements, got \(elements.count)")
        self.rows = rows
        self.columns = columns
        self.storage = elements
    }

    /// A matrix whose element `(i, j)` is `element(i, j)`, called in column-major order.
    @inlinable public init(rows: Int, columns: Int, _ element: (_ row: Int, _ column: Int) throws -> Scalar) rethrows {
        precondition(rows >= 0 && columns >= 0, "Matrix shape must be non-negative, got \(rows)×\(columns)")
        var values = [Scalar]()
        values.reserveCapacity(rows * columns)
        for j in 0..<columns {
            for i in 0..<rows { values.append(try element(i, j)) }
        }
        self.init(rows: rows, columns: columns, elements: values)
    }

    /// The `n×n` identity.
    public static func identity(_ n: Int) -> Matrix {
        var m = Matrix(rows: n, columns: n)
        for i in 0..<n { m.storage[i + i * n] = 1 }
        return m
    }

    /// A square matrix with `diagonal` on its diagonal.
    public init(diagonal: [Scalar]) {
        let n = diagonal.count
        self.init(rows: n, columns: n)
        for i in 0..<n { storage[i + i * n] = diagonal[i] }
    }

    /// Element `(row, column)`; bounds are checked.
    @inlinable public subscript(row: Int, column: Int) -> Scalar {
        get {
            precondition(row >= 0 && row < rows && column >= 0 && column < columns,
                         "index (\(row), \(column)) out of range for \(rows)×\(columns) matrix")
            return storage[row + column * rows]
        }
        set {
            precondition(row >= 0 && row < rows && column >= 0 && column < columns,
                         "index (\(row), \(column)) out of range for \(rows)×\(columns) matrix")
            storage[row + column * rows] = newValue
        }
    }

    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Scalar>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    /// Calls `body` with the mutable column-major elements (unique storage, copied first if shared).
    /// The count must not change and the pointer must not escape.
    @inlinable public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (inout UnsafeMutableBufferPointer<Scalar>) throws -> R
    ) rethrows -> R {
        try storage.withUnsafeMutableBufferPointer(body)
    }

    /// Element-wise map into a new matrix of the same shape.
    @inlinable public func map<T: LinearAlgebraScalar>(_ transform: (Scalar) throws -> T) rethrows -> Matrix<T> {
        Matrix<T>(rows: rows, columns: columns, elements: try storage.map(transform))
    }
}

extension Matrix: CustomStringConvertible {
    /// Shape plus, for small matrices, the rows.
    public var description: String {
        guard rows * columns <= 64 else { return "Matrix<\(Scalar.self)>(\(rows)×\(columns))" }
        let lines = (0..<rows).map { i in (0..<columns).map { j in "\(self[i, j])" }.joined(separator: " ") }
        return "Matrix<\(Scalar.self)>(\(rows)×\(columns))[\n  " + lines.joined(separator: "\n  ") + "\n]"
    }
}

/// Runs a linear-algebra call on shapes the caller validated: a failure there is a bug, so it
/// traps (`preconditionFailure`) instead of throwing.
public func checked<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { preconditionFailure("linear algebra on validated shapes failed: \(error)") }
}
