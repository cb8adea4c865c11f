/// The element types the linear-algebra layer computes with: `Float` (LAPACK/BLAS `s` routines)
/// and `Double` (`d` routines).
///
/// Conformance is closed: only `Float` and `Double` conform, and generic code dispatches on
/// ``precision`` to the matching C routine. Do not add conformances.
public protocol LinearAlgebraScalar: BinaryFloatingPoint, Sendable {
    /// Which BLAS/LAPACK routine family this type maps to.
    static var precision: ScalarPrecision { get }
}

/// IEEE binary32 (`s` routines) or binary64 (`d` routines).
public enum ScalarPrecision: Sendable, Hashable {
    case single, double
}

extension Float: LinearAlgebraScalar {
    @inlinable public static var precision: ScalarPrecision { .single }
}

extension Double: LinearAlgebraScalar {
    @inlinable public static var precision: ScalarPrecision { .double }
}
