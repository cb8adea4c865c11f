import Foundation
import LinearAlgebra

/// The `svd` suite: full thin `sgesdd` of random Float32 matrices and randomized top-r SVD of the
/// larger ones, single BLAS thread, wall-clock time of one run each (the 1024² case: best of 3).
/// Accuracy of the randomized values is measured against the full SVD's values of the same matrix.
struct SVDSuite {
    var quick: Bool
    /// Only this shape ("MxN" or "decay"), or every shape.
    var shape: String?
    /// `.full`: time the full SVD only (runner interleaves with scipy/numpy per shape);
    /// `.randomized`: full SVD as accuracy reference, then the randomized variants; `.all`: both.
    var part: Part

    enum Part: String { case all, full, randomized }

    struct Case {
        var rows: Int, columns: Int
        var randomized: Bool
        var key: String { "\(rows)x\(columns)" }
    }

    func run() throws {
        BLASThreads.count = 1
        let rank = quick ? 128 : 1024
        let cases: [Case] = quick
            ? [Case(rows: 256, columns: 256, randomized: false), Case(rows: 512, columns: 512, randomized: true),
               Case(rows: 1376, columns: 512, randomized: true)]
            : [Case(rows: 1024, columns: 1024, randomized: false), Case(rows: 4096, columns: 4096, randomized: true),
               Case(rows: 11008, columns: 4096, randomized: true)]
        print("svd suite (\(part.rawValue)): Float32, BLAS threads = \(BLASThreads.count), randomized rank = \(rank)")
        for c in cases where shape == nil || shape == c.key {
            if part == .randomized && !c.randomized { continue }
            let a = Matrix<Float>.gaussian(rows: c.rows, columns: c.columns, using: SeededGenerator(seed: 2026))
            let (full, seconds) = try timeFullSVD(a, repetitions: c.randomized ? 1 : 3)
            let tag = part == .randomized ? "svd_fullref_" : "svd_full_"
            report("\(tag)\(c.key)", seconds, "full thin SVD (sgesdd, jobz=S) \(c.key), Gaussian entries")
            guard c.randomized, part != .full else { continue }
            for q in [0, 1, 2] {
                try randomized(a, name: c.key, rank: rank, oversampling: 10, q: q, reference: full, fullSeconds: seconds)
            }
        }
        guard part != .full, shape == nil || shape == "decay" else { return }

        // Decaying spectrum σᵢ = 1/i (plus Gaussian noise 1e-6 per entry), square.
        let n = quick ? 512 : 4096
        let a = try decayingMatrix(n: n)
        let (full, seconds) = try timeFullSVD(a, repetitions: 1)
        report("svd_fullref_decay_\(n)x\(n)", seconds, "full thin SVD of \(n)² with σᵢ = 1/i")
        for (p, q) in [(10, 0), (10, 1), (10, 2), (10, 4), (rank / 4, 2), (rank / 2, 3)] {
            try randomized(a, name: "decay_\(n)x\(n)", rank: rank, oversampling: p, q: q, reference: full, fullSeconds: seconds)
        }
    }

    private func timeFullSVD(_ a: Matrix<Float>, repetitions: Int) throws -> ([Float], Double) {
        var best = Double.infinity
        var values: [Float] = []
        for _ in 0..<repetitions {
            let start = ContinuousClock.now
            let d = try svd(a, vectors: .thin)
            best = min(best, seconds(since: start))
            values = d.singularValues
            blackHole(d.u.count + d.vt.count)
        }
        return (values, best)
    }

    private func randomized(
        _ a: Matrix<Float>, name: String, rank: Int, oversampling: Int, q: Int, reference: [Float], fullSeconds: Double
    ) throws {
        let start = ContinuousClock.now
        let r = try randomizedSVD(a, rank: rank, oversampling: oversampling, powerIterations: q, seed: 7)
        let t = seconds(since: start)
        let errors = (0..<rank).map { Double(abs(r.singularValues[$0] - reference[$0]) / reference[$0]) }
        let within = errors.prefix { $0 <= 1e-3 }.count
        let sorted = errors.sorted()
        report("rsvd_\(name)_r\(rank)_p\(oversampling)_q\(q)", t,
               "randomized top-\(rank) \(name), oversampling \(oversampling), power iterations \(q): "
               + "\(format(fullSeconds / t))× faster than full; rel. error of σ̂ᵢ: median \(sci(sorted[rank / 2])), "
               + "max \(sci(sorted.last!)), at i=\(rank / 2) \(sci(errors[rank / 2 - 1])), at i=\(rank) \(sci(errors[rank - 1])); "
               + "σ̂₁…σ̂_\(within) all within 1e-3")
        blackHole(r.u.count)
    }

    /// U·diag(1/i)·Vᵀ with Haar-like orthogonal U, V (QR of Gaussian matrices), plus N(0, 1e-12) noise.
    private func decayingMatrix(n: Int) throws -> Matrix<Float> {
        let g = SeededGenerator(seed: 99)
        var u = try qr(Matrix<Float>.gaussian(rows: n, columns: n, using: g)).q
        let v = try qr(Matrix<Float>.gaussian(rows: n, columns: n, using: g)).q
        for j in 0..<n {
            let s = Float(1 / Double(j + 1))
            for i in 0..<n { u[i, j] *= s }
        }
        var a = try multiply(u, v, transposeB: true)
        let noise = Matrix<Float>.gaussian(rows: n, columns: n, sigma: 1e-6, using: g)
        a = Matrix(rows: n, columns: n, elements: zip(a.elements, noise.elements).map { $0 + $1 })
        return a
    }

    private func report(_ key: String, _ seconds: Double, _ text: String) {
        print("RESULT \(key) \(format(seconds, digits: 3))")
        print("  \(text): \(format(seconds, digits: 3)) s")
        fflush(nil)
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
}

func format(_ x: Double, digits: Int = 2) -> String {
    var s = "\(Double(Int((x * pow(10, Double(digits))).rounded())) / pow(10, Double(digits)))"
    if !s.contains(".") { s += ".0" }
    return s
}

func sci(_ x: Double) -> String {
    guard x > 0 else { return "0" }
    let e = Int(floor(log10(x)))
    let m = x / pow(10, Double(e))
    return "\(format(m, digits: 1))e\(e)"
}

@inline(never) func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }
