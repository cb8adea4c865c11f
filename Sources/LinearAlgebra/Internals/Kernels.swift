// Element-wise loops over concrete Float/Double buffers. Generic callers dispatch here so the hot
// loops are specialized (unspecialized generic loops cost a witness call per element).

enum Kernels {
    /// Σ xᵢ² accumulated in Double (four partial sums), and whether every xᵢ is finite.
    static func sumOfSquares<S: LinearAlgebraScalar>(_ x: UnsafeBufferPointer<S>) -> (sum: Double, finite: Bool) {
        switch S.precision {
        case .single: return sumOfSquaresConcrete(floatBuffer(x))
        case .double: return sumOfSquaresConcrete(doubleBuffer(x))
        }
    }

    private static func sumOfSquaresConcrete<T: BinaryFloatingPoint>(_ x: UnsafeBufferPointer<T>) -> (sum: Double, finite: Bool)
    where T: LinearAlgebraScalar {
        var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
        let n = x.count, n4 = n & ~3
        var i = 0
        while i < n4 {
            let a = Double(x[i]), b = Double(x[i + 1]), c = Double(x[i + 2]), d = Double(x[i + 3])
            s0 += a * a; s1 += b * b; s2 += c * c; s3 += d * d
            i += 4
        }
        while i < n { let a = Double(x[i]); s0 += a * a; i += 1 }
        let sum = (s0 + s1) + (s2 + s3)
        // A NaN or ∞ anywhere makes the sum non-finite; an overflowing finite sum (impossible in
        // Double for Float input, ~1e308 for Double) is the only false alarm.
        return (sum, sum.isFinite)
    }

    /// True when no element is NaN or ±∞.
    static func allFinite<S: LinearAlgebraScalar>(_ x: UnsafeBufferPointer<S>) -> Bool {
        switch S.precision {
        case .single: return allFinite(floatBuffer(x))
        case .double: return allFinite(doubleBuffer(x))
        }
    }

    private static func allFinite(_ x: UnsafeBufferPointer<Float>) -> Bool {
        // (x - x) is 0 for finite x and NaN for NaN/∞; summing keeps the loop branch-free.
        var acc: Float = 0
        for v in x { acc += v - v }
        return acc == 0
    }

    private static func allFinite(_ x: UnsafeBufferPointer<Double>) -> Bool {
        var acc: Double = 0
        for v in x { acc += v - v }
        return acc == 0
    }

    /// `destination[i] = T(source[i])`.
    static func convert<S: LinearAlgebraScalar, T: LinearAlgebraScalar>(
        _ source: UnsafeBufferPointer<S>, into destination: UnsafeMutableBufferPointer<T>
    ) {
        precondition(source.count == destination.count)
        switch (S.precision, T.precision) {
        case (.single, .double):
            let s = floatBuffer(source), d = doubleBuffer(destination)
            for i in 0..<s.count { d[i] = Double(s[i]) }
        case (.double, .single):
            let s = doubleBuffer(source), d = floatBuffer(destination)
            for i in 0..<s.count { d[i] = Float(s[i]) }
        case (.single, .single):
            if let base = source.baseAddress { floatBuffer(destination).baseAddress!.update(from: floatPointer(base), count: source.count) }
        case (.double, .double):
            if let base = source.baseAddress { doubleBuffer(destination).baseAddress!.update(from: doublePointer(base), count: source.count) }
        }
    }

    /// Copies the `uplo` triangle of the `n×n` column-major matrix onto the other one.
    static func symmetrize<S: LinearAlgebraScalar>(_ a: UnsafeMutableBufferPointer<S>, n: Int, fromLower: Bool) {
        switch S.precision {
        case .single: symmetrizeConcrete(floatBuffer(a), n: n, fromLower: fromLower)
        case .double: symmetrizeConcrete(doubleBuffer(a), n: n, fromLower: fromLower)
        }
    }

    /// In 64 × 64 tiles, so the strided side of the copy stays in cache (a plain loop misses it
    /// on every element once n is in the thousands).
    private static func symmetrizeConcrete<T: LinearAlgebraScalar>(_ a: UnsafeMutableBufferPointer<T>, n: Int, fromLower: Bool) {
        let tile = 64
        for jb in stride(from: 0, to: n, by: tile) {
            for ib in stride(from: jb, to: n, by: tile) {
                for j in jb..<min(jb + tile, n) {
                    for i in max(ib, j + 1)..<max(max(ib, j + 1), min(ib + tile, n)) {
                        if fromLower { a[j + i * n] = a[i + j * n] } else { a[i + j * n] = a[j + i * n] }
                    }
                }
            }
        }
    }

    /// Zeroes the strict upper (`upper == true`) or strict lower triangle of a `rows×columns` matrix.
    static func zeroTriangle<S: LinearAlgebraScalar>(_ a: UnsafeMutableBufferPointer<S>, rows: Int, columns: Int, upper: Bool) {
        switch S.precision {
        case .single: zeroTriangleConcrete(floatBuffer(a), rows: rows, columns: columns, upper: upper)
        case .double: zeroTriangleConcrete(doubleBuffer(a), rows: rows, columns: columns, upper: upper)
        }
    }

    private static func zeroTriangleConcrete<T: LinearAlgebraScalar>(
        _ a: UnsafeMutableBufferPointer<T>, rows: Int, columns: Int, upper: Bool
    ) {
        for j in 0..<columns {
            if upper {
                for i in 0..<min(j, rows) { a[i + j * rows] = 0 }
            } else {
                for i in min(j + 1, rows)..<rows { a[i + j * rows] = 0 }
            }
        }
    }
}
