import Analysis
import Checkpoint
import Foundation
import LinearAlgebra

/// `deltaplan-bench gram-svd`: the analysis SVD routes side by side on the same matrices, in one
/// process — thin `sgesdd` (the old route), `gramSVD` with the MRRR top-r eigensolver and with
/// `dsyevd` — at analyze's default stored rank r = m·n/(m + n), with the Gram SVD's phases timed
/// alone; with `--accuracy`, every route against a Float64 `dgesdd` of the same matrix.
///
///     deltaplan-bench gram-svd [--shape MxN] [--spectrum flat|decay] [--accuracy]
///     deltaplan-bench gram-svd --deltas BASE FINETUNED [--tensor NAME] [--accuracy]
///
/// `flat`: i.i.d. N(0, 1) entries (seed 2026), the worst case for a truncated method; `decay`:
/// σᵢ = 1/√i over random orthogonal factors plus N(0, 10⁻¹²) noise; `--deltas`: the deltas of a
/// checkpoint pair (synth's fitted spectra), loaded as `analyze` loads them.
func runGramSVDBenchmark(_ arguments: [String]) throws {
    func value(_ flag: String) -> String? {
        arguments.firstIndex(of: flag).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil }
    }
    BLASThreads.count = 1
    let accuracy = arguments.contains("--accuracy")
    var cases: [(String, Matrix<Float>)] = []
    if let deltas = arguments.firstIndex(of: "--deltas"), arguments.count > deltas + 2 {
        let b = try Checkpoint(at: URL(fileURLWithPath: arguments[deltas + 1]))
        let f = try Checkpoint(at: URL(fileURLWithPath: arguments[deltas + 2]))
        let selection = try Selection()
        var seen = Set<String>()
        for tensor in b.tensors where selection.selects(tensor.name, shape: tensor.info.shape) {
            if let only = value("--tensor"), !tensor.name.contains(only) { continue }
            // One matrix per shape: the others of a layer are the same computation.
            let shape = tensor.info.shape.map(String.init).joined(separator: "x")
            guard value("--tensor") != nil || seen.insert(shape).inserted else { continue }
            var w = try b.matrixColumnMajor(tensor.name)
            let ft = try f.matrixColumnMajor(tensor.name)
            for i in w.values.indices { w.values[i] = ft.values[i] - w.values[i] }
            cases.append((tensor.name, Matrix(rows: w.rows, columns: w.columns, elements: w.values)))
        }
    } else {
        let shape = (value("--shape") ?? "4096x4096").split(separator: "x").compactMap { Int($0) }
        guard shape.count == 2 else { throw LinearAlgebraError.invalidArgument(operation: "gram-svd", reason: "--shape MxN") }
        let (m, n) = (shape[0], shape[1])
        if value("--spectrum") == "decay" {
            let k = min(m, n)
            let generator = SeededGenerator(seed: 2026)
            var u = try qr(Matrix<Float>.gaussian(rows: m, columns: k, using: generator)).q
            let v = try qr(Matrix<Float>.gaussian(rows: n, columns: k, using: generator)).q
            for j in 0..<k { for i in 0..<m { u[i, j] *= Float(1 / Double(j + 1).squareRoot()) } }
            let product = try multiply(u, v, transposeB: true)
            let noise = Matrix<Float>.gaussian(rows: m, columns: n, sigma: 1e-6, using: generator)
            let a = Matrix(rows: m, columns: n, elements: zip(product.elements, noise.elements).map { $0 + $1 })
            cases.append(("decay \(m)x\(n)", a))
        } else {
            cases.append(("flat \(m)x\(n)", Matrix<Float>.gaussian(rows: m, columns: n, using: SeededGenerator(seed: 2026))))
        }
    }
    for (name, a) in cases {
        let (m, n) = (a.rows, a.columns)
        let k = min(m, n), r = AnalysisOptions().storedRank(rows: m, columns: n)
        say("\(name): \(m)×\(n), stored rank \(r)")
        var start = ContinuousClock.now
        let full = try svd(a, vectors: .thin)
        let tGesdd = seconds(since: start)
        start = .now
        let g = shortSideGram(of: a)
        let tGram = seconds(since: start)
        start = .now
        let e = try symmetricEigen(g, top: r, driver: .relativelyRobust)
        let tMRRR = seconds(since: start)
        blackHole(e)
        start = .now
        let d = try symmetricEigen(g, top: r, driver: .divideAndConquer)
        let tEVD = seconds(since: start)
        blackHole(d)
        start = .now
        let route = try gramSVD(a, rank: r)
        let tRoute = seconds(since: start)
        start = .now
        let routeEVD = try gramSVD(a, rank: r, driver: .divideAndConquer)
        let tRouteEVD = seconds(since: start)
        say("  sgesdd (thin)                  \(format(tGesdd)) s")
        say("  Gram AᵀA (dsyrk, Float64)      \(format(tGram)) s")
        say("  eigen top r, MRRR (dsytrd+dstemr+dormtr) \(format(tMRRR)) s;  dsyevd (all) \(format(tEVD)) s")
        say("  gramSVD, MRRR                  \(format(tRoute)) s  = \(format(tRoute / tGesdd, digits: 3)) × sgesdd")
        say("  gramSVD, dsyevd                \(format(tRouteEVD)) s  = \(format(tRouteEVD / tGesdd, digits: 3)) × sgesdd")
        say("RESULT gram_svd \(m)x\(n) sgesdd \(format(tGesdd)) gram \(format(tRoute)) ratio \(format(tRoute / tGesdd, digits: 3))")
        guard accuracy else { continue }
        start = .now
        let reference = try svd(Matrix<Double>(a), vectors: .thin)
        say("  reference dgesdd (Float64)     \(format(seconds(since: start))) s")
        let sigma = reference.singularValues
        // The vectors any plan can use: those above analyze's rank threshold, within the stored rank.
        let threshold = Double(max(m, n)) * Double(Float.ulpOfOne) * sigma[0]
        let usable = min(r, sigma.prefix { $0 > threshold }.count)
        let tailEnergy = sigma[usable...].reduce(0.0) { $0 + $1 * $1 }
        func report(_ label: String, _ s: [Float], _ u: Matrix<Float>, _ v: Matrix<Float>) throws {
            let errors = (0..<usable).map { abs(Double(s[$0]) - sigma[$0]) / sigma[$0] }
            let allErrors = (0..<k).map { abs(Double(s[$0]) - sigma[$0]) / sigma[0] }
            let uu = orthogonalityError(u, columns: usable), vv = orthogonalityError(v, columns: usable)
            // ‖A − U_r Σ_r V_rᵀ‖_F² against the optimum Σ_{i>r} σᵢ² (Eckart–Young).
            var us = Matrix<Double>(rows: m, columns: usable) { i, j in Double(u[i, j]) * Double(s[j]) }
            let approx = try multiply(us, Matrix<Double>(rows: n, columns: usable) { i, j in Double(v[i, j]) }, transposeB: true)
            us = Matrix(rows: 0, columns: 0)
            var residual = 0.0
            for j in 0..<n { for i in 0..<m { let x = Double(a[i, j]) - approx[i, j]; residual += x * x } }
            let sorted = errors.sorted()
            say("  \(label): σ rel. error over \(usable) usable: max \(sci(sorted.last ?? 0)) median \(sci(sorted.isEmpty ? 0 : sorted[sorted.count / 2]))"
                  + "; all k values max |Δσ|/σ₁ \(sci(allErrors.max() ?? 0)); max|UᵀU−I| \(sci(uu)) max|VᵀV−I| \(sci(vv))"
                  + "; ‖A−A_r‖²/optimum − 1 = \(sci(tailEnergy > 0 ? residual / tailEnergy - 1 : residual))")
        }
        try report("sgesdd ", full.singularValues, full.u.columnSlice(0..<usable).matrix,
                   full.vt.rowSlice(0..<usable).transposed())
        try report("gramSVD", route.singularValues, route.u, route.v)
        try report("gramSVD dsyevd", routeEVD.singularValues, routeEVD.u, routeEVD.v)
        say("  σ_1 = \(sci(sigma[0])), σ_usable = \(sci(sigma[max(usable - 1, 0)])), σ_r/σ_1 = \(sci(sigma[max(usable - 1, 0)] / sigma[0]))")
    }
}

/// max |(QᵀQ − I)ᵢⱼ| over the first `columns` columns of q, in Float64.
private func orthogonalityError(_ q: Matrix<Float>, columns: Int) -> Double {
    let qd = Matrix<Double>(rows: q.rows, columns: columns) { i, j in Double(q[i, j]) }
    let g = gram(qd, transpose: true)
    var worst = 0.0
    for j in 0..<columns { for i in 0..<columns { worst = max(worst, abs(g[i, j] - (i == j ? 1 : 0))) } }
    return worst
}

/// `print`, then flush (all streams: Swift 6 cannot name `stdout`), so a long run that is stopped
/// keeps every line it printed.
private func say(_ line: String) {
    print(line)
    fflush(nil)
}
