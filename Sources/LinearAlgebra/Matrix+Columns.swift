/// A read-only view of consecutive columns of a ``Matrix``, sharing its storage (no copy).
///
/// Column-major storage makes a column range contiguous: columns `c₀..<c₁` are elements
/// `c₀·rows ..< c₁·rows`. The view holds an `ArraySlice`, so it keeps the matrix storage alive
/// and is O(1) to create; ``matrix`` copies it out when an owned ``Matrix`` is needed.
public struct MatrixColumns<Scalar: LinearAlgebraScalar>: ColumnMajorMatrix, Sendable {
    public let rows: Int
    public let columns: Int
    @usableFromInline let slice: ArraySlice<Scalar>

    @usableFromInline init(rows: Int, columns: Int, slice: ArraySlice<Scalar>) {
        self.rows = rows
        self.columns = columns
        self.slice = slice
    }

    /// Element `(row, column)` of the view (column 0 is the first column of the range).
    @inlinable public subscript(row: Int, column: Int) -> Scalar {
        precondition(row >= 0 && row < rows && column >= 0 && column < columns,
                     "index (\(row), \(column)) out of range for \(rows)×\(columns) column view")
        return slice[slice.startIndex + row + column * rows]
    }

    /// The column-major elements of the view (shares storage).
    @inlinable public var elements: ArraySlice<Scalar> { slice }

    @inlinable public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Scalar>) throws -> R) rethrows -> R {
        try slice.withUnsafeBufferPointer(body)
    }

    /// An owned copy (O(rows·columns)).
    public var matrix: Matrix<Scalar> { Matrix(rows: rows, columns: columns, elements: Array(slice)) }
}

extension Matrix {
    /// A no-copy view of the columns in `range` (O(1)).
    @inlinable public func columnSlice(_ range: Range<Int>) -> MatrixColumns<Scalar> {
        precondition(range.lowerBound >= 0 && range.upperBound <= columns,
                     "column range \(range) out of bounds for \(rows)×\(columns) matrix")
        return MatrixColumns(rows: rows, columns: range.count,
                             slice: storage[(range.lowerBound * rows)..<(range.upperBound * rows)])
    }

    /// A no-copy view of column `j` as an `ArraySlice` of `rows` elements.
    @inlinable public func column(_ j: Int) -> ArraySlice<Scalar> {
        precondition(j >= 0 && j < columns, "column \(j) out of bounds for \(rows)×\(columns) matrix")
        return storage[(j * rows)..<((j + 1) * rows)]
    }

    /// Overwrites column `j` with `values` (`values.count == rows`).
    public mutating func setColumn(_ j: Int, to values: some Collection<Scalar>) {
        precondition(j >= 0 && j < columns, "column \(j) out of bounds for \(rows)×\(columns) matrix")
        precondition(values.count == rows, "column needs \(rows) values, got \(values.count)")
        storage.replaceSubrange((j * rows)..<((j + 1) * rows), with: values)
    }

    /// A copy of the rows in `range` (rows are strided in column-major storage, so this copies).
    public func rowSlice(_ range: Range<Int>) -> Matrix {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows,
                     "row range \(range) out of bounds for \(rows)×\(columns) matrix")
        var out = [Scalar]()
        out.reserveCapacity(range.count * columns)
        for j in 0..<columns {
            out.append(contentsOf: storage[(j * rows + range.lowerBound)..<(j * rows + range.upperBound)])
        }
        return Matrix(rows: range.count, columns: columns, elements: out)
    }
}
