@testable import Analysis
import Foundation
import LinearAlgebra
import Quantization

/// Shared fixtures. References are plain loops in Double, independent of the module's kernels.
enum Fixture {
    /// H = X Xᵀ for `tokens` inputs x = z + B w (rank-`directions` correlated part of strength
    /// `strength`), with every `outlierEvery`-th channel scaled by 10.
    static func correlatedHessian(width n: Int, tokens: Int, directions: Int = 4, strength: Double = 3,
                                  outlierEvery: Int = 16, seed: UInt64) -> Matrix<Float> {
        let g = SeededGenerator(seed: seed)
        let z = Matrix<Float>.gaussian(rows: n, columns: tokens, using: g)
        let b = Matrix<Float>.gaussian(rows: n, columns: directions, sigma: strength, using: g)
        let w = Matrix<Float>.gaussian(rows: directions, columns: tokens, using: g)
        var x = try! multiply(b, w)
        for j in 0..<tokens {
            for i in 0..<n { x[i, j] = (x[i, j] + z[i, j]) * (i % outlierEvery == 0 ? 10 : 1) }
        }
        return gram(x)
    }

    /// Orthonormal n × k columns (QR of a Gaussian matrix).
    static func orthonormal(_ n: Int, _ k: Int, _ g: SeededGenerator) -> Matrix<Float> {
        try! qr(Matrix<Float>.gaussian(rows: n, columns: k, using: g)).q
    }

    /// Stored factors of a synthetic ΔW = U diag(σ) Vᵀ, σᵢ = (i + 1)^(−0.7) + 0.05, with gᵢ = vᵢᵀ H vᵢ.
    static func factors(rows: Int, columns: Int, rank: Int, hessian: Matrix<Float>?, seed: UInt64) -> StoredFactors {
        let g = SeededGenerator(seed: seed)
        let u = orthonormal(rows, rank, g), v = orthonormal(columns, rank, g)
        let sigma = (0..<rank).map { Float(pow(Double($0 + 1), -0.7) + 0.05) }
        let energy = (0..<rank).map { i in quadratic(Array(v.column(i)).map(Double.init), hessian) }
        return StoredFactors(singularValues: sigma, u: u, v: v, inputEnergy: energy)
    }

    /// xᵀ H x in Double (H = I when nil).
    static func quadratic(_ x: [Double], _ h: Matrix<Float>?) -> Double {
        guard let h else { return x.reduce(0) { $0 + $1 * $1 } }
        var s = 0.0
        for j in 0..<x.count { var t = 0.0; for i in 0..<x.count { t += Double(h[i, j]) * x[i] }; s += t * x[j] }
        return s
    }

    /// tr(E H Eᵀ) for E = a − b (both rows × n), in Double.
    static func activationError(_ a: Matrix<Double>, _ b: Matrix<Float>, _ h: Matrix<Float>?) -> Double {
        var total = 0.0
        for r in 0..<a.rows {
            total += quadratic((0..<a.columns).map { a[r, $0] - Double(b[r, $0]) }, h)
        }
        return total
    }

    /// U_[a,b) diag(σ) V_[a,b)ᵀ in Double.
    static func product(_ f: StoredFactors, _ range: Range<Int>) -> Matrix<Double> {
        var out = Matrix<Double>(rows: f.u.rows, columns: f.v.rows)
        for i in range {
            let s = Double(f.singularValues[i])
            for c in 0..<f.v.rows { for r in 0..<f.u.rows { out[r, c] += Double(f.u[r, i]) * s * Double(f.v[c, i]) } }
        }
        return out
    }
}

/// A direct Float64 GPTQ, unblocked: the algorithm as written in the paper.
enum ReferenceGPTQ {
    /// The smallest F16 ≥ x.
    static func halfUp(_ x: Double) -> Double {
        var h = Float16(x)
        if Double(h) < x { h = h.nextUp }
        return Double(h)
    }

    static func quantize(_ w: Matrix<Float>, hessian: Matrix<Float>, bits: Int, groupSize: Int, dampening: Double)
        -> (codes: [UInt8], dequantized: Matrix<Double>)
    {
        let (rows, n) = (w.rows, w.columns)
        var wd = Matrix<Double>(w), h = Matrix<Double>(hessian)
        for j in 0..<n where h[j, j] == 0 {
            h[j, j] = 1
            for r in 0..<rows { wd[r, j] = 0 }
        }
        let mean = (0..<n).reduce(0.0) { $0 + h[$1, $1] } / Double(n)
        for j in 0..<n { h[j, j] += dampening * mean }
        let hinv = try! cholesky(try! inverseSPD(h), triangle: .upper)
        let maxq = Double((1 << bits) - 1)
        var codes = [UInt8](repeating: 0, count: rows * n)
        var out = Matrix<Double>(rows: rows, columns: n)
        var scale = [Double](repeating: 0, count: rows), zero = [Double](repeating: 0, count: rows)
        for j in 0..<n {
            if j % groupSize == 0 {
                for r in 0..<rows {
                    let values = (j..<min(j + groupSize, n)).map { wd[r, $0] }
                    let lo = min(values.min()!, 0), hi = max(values.max()!, 0)
                    if values.min()! == values.max()! {
                        let c = values[0]
                        scale[r] = Double(Float16(abs(c)))
                        zero[r] = c >= 0 ? 0 : 1
                    } else {
                        scale[r] = halfUp(Double(Float((hi - lo) / maxq)))
                        zero[r] = (-lo / scale[r]).rounded(.toNearestOrEven)
                    }
                }
            }
            for r in 0..<rows {
                let x = wd[r, j]
                let q = scale[r] > 0 ? min(max((x / scale[r]).rounded(.toNearestOrEven) + zero[r], 0), maxq) : zero[r]
                let v = scale[r] * (q - zero[r])
                codes[r * n + j] = UInt8(q)
                out[r, j] = v
                let e = (x - v) / hinv[j, j]
                for l in (j + 1)..<n { wd[r, l] -= e * hinv[j, l] }
            }
        }
        return (codes, out)
    }
}
