// Generic ↔ concrete pointer reinterpretation for the closed set Float/Double.
//
// Generic code checks `S.precision` first; the memory of a `[S]` with `S == Float` is bound to
// `Float`, so `assumingMemoryBound(to: Float.self)` is exact, never a type pun.

@inline(__always) func floatPointer<S>(_ p: UnsafePointer<S>) -> UnsafePointer<Float> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
}
@inline(__always) func floatPointer<S>(_ p: UnsafeMutablePointer<S>) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Float.self)
}
@inline(__always) func doublePointer<S>(_ p: UnsafePointer<S>) -> UnsafePointer<Double> {
    UnsafeRawPointer(p).assumingMemoryBound(to: Double.self)
}
@inline(__always) func doublePointer<S>(_ p: UnsafeMutablePointer<S>) -> UnsafeMutablePointer<Double> {
    UnsafeMutableRawPointer(p).assumingMemoryBound(to: Double.self)
}
@inline(__always) func floatBuffer<S>(_ b: UnsafeBufferPointer<S>) -> UnsafeBufferPointer<Float> {
    UnsafeBufferPointer(start: b.baseAddress.map { floatPointer($0) }, count: b.count)
}
@inline(__always) func doubleBuffer<S>(_ b: UnsafeBufferPointer<S>) -> UnsafeBufferPointer<Double> {
    UnsafeBufferPointer(start: b.baseAddress.map { doublePointer($0) }, count: b.count)
}
@inline(__always) func floatBuffer<S>(_ b: UnsafeMutableBufferPointer<S>) -> UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: b.baseAddress.map { floatPointer($0) }, count: b.count)
}
@inline(__always) func doubleBuffer<S>(_ b: UnsafeMutableBufferPointer<S>) -> UnsafeMutableBufferPointer<Double> {
    UnsafeMutableBufferPointer(start: b.baseAddress.map { doublePointer($0) }, count: b.count)
}
/// `x` as a Float; only called when `S == Float`.
@inline(__always) func asFloat<S: LinearAlgebraScalar>(_ x: S) -> Float { unsafeBitCast(x, to: Float.self) }
/// `x` as a Double; only called when `S == Double`.
@inline(__always) func asDouble<S: LinearAlgebraScalar>(_ x: S) -> Double { unsafeBitCast(x, to: Double.self) }
/// A Float as `S`; only called when `S == Float`.
@inline(__always) func fromFloat<S: LinearAlgebraScalar>(_ x: Float, as _: S.Type = S.self) -> S { unsafeBitCast(x, to: S.self) }
/// A Double as `S`; only called when `S == Double`.
@inline(__always) func fromDouble<S: LinearAlgebraScalar>(_ x: Double, as _: S.Type = S.self) -> S { unsafeBitCast(x, to: S.self) }
