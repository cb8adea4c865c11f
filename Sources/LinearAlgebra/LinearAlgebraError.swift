/// The shape of a matrix, printed as `rows×columns`.
public struct Shape: Hashable, Sendable, CustomStringConvertible {
    public var rows: Int
    public var columns: Int

    public init(rows: Int, columns: Int) {
        self.rows = rows
        self.columns = columns
    }

    public var description: String { "\(rows)×\(columns)" }
}

/// Failures of the linear-algebra layer. Every case names the operation that failed.
///
/// LAPACK's `info < 0` (an illegal argument) is a bug in this module and traps; `info > 0`
/// (a numerical failure) becomes one of these cases.
public enum LinearAlgebraError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The operands' shapes do not fit together for `operation`.
    case shapeMismatch(operation: String, lhs: Shape, rhs: Shape)
    /// `operation` needs a square matrix.
    case notSquare(operation: String, shape: Shape)
    /// The input of `operation` contains NaN or ±∞.
    case nonFiniteInput(operation: String)
    /// Cholesky (`potrf`) failed: the leading minor of this order (1-based) is not positive
    /// definite (LAPACK `info > 0`).
    case notPositiveDefinite(order: Int)
    /// A triangular factor has an exact zero on its diagonal at this 1-based index
    /// (`trtrs`/`potri` `info > 0`).
    case singularMatrix(operation: String, diagonalIndex: Int)
    /// `gesdd`'s bidiagonal divide and conquer did not converge (`info > 0`, the count of
    /// superdiagonals that failed).
    case svdDidNotConverge(operation: String, unconvergedSuperdiagonals: Int)
    /// A symmetric eigensolver did not converge (`sterf`/`stemr`/`syevd` `info > 0`, LAPACK's code).
    case eigenDidNotConverge(operation: String, info: Int)
    /// Any other unusable argument, with the reason.
    case invalidArgument(operation: String, reason: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(operation, lhs, rhs):
            return "\(operation): shapes \(lhs) and \(rhs) do not match"
        case let .notSquare(operation, shape):
            return "\(operation): needs a square matrix, got \(shape)"
        case let .nonFiniteInput(operation):
            return "\(operation): input contains NaN or infinity"
        case let .notPositiveDefinite(order):
            return "Cholesky factorization: matrix is not positive definite (leading minor of order \(order))"
        case let .singularMatrix(operation, index):
            return "\(operation): matrix is singular (zero diagonal element at position \(index))"
        case let .svdDidNotConverge(operation, count):
            return "\(operation): SVD did not converge (\(count) superdiagonals unconverged)"
        case let .eigenDidNotConverge(operation, info):
            return "\(operation): eigensolver did not converge (LAPACK info \(info))"
        case let .invalidArgument(operation, reason):
            return "\(operation): \(reason)"
        }
    }
}
