import Analysis
import Checkpoint
import Foundation
import LinearAlgebra

/// `deltaplan-bench analyze-svd BASE FINETUNED`: the reference for the analyze benchmark — loads
/// each selected delta exactly as `analyze` does and times the SVD `analyze` runs on it
/// (`gramSVD` at the default stored rank), alone. Prints one line per matrix and the sum.
func runAnalyzeSVDReference(base: String, finetuned: String) throws {
    let b = try Checkpoint(at: URL(fileURLWithPath: base)), f = try Checkpoint(at: URL(fileURLWithPath: finetuned))
    let selection = try Selection()
    var total = 0.0
    for tensor in b.tensors where selection.selects(tensor.name, shape: tensor.info.shape) {
        var w = try b.matrixColumnMajor(tensor.name)
        let ft = try f.matrixColumnMajor(tensor.name)
        for i in w.values.indices { w.values[i] = ft.values[i] - w.values[i] }
        let delta = Matrix(rows: w.rows, columns: w.columns, elements: w.values)
        let rank = AnalysisOptions().storedRank(rows: w.rows, columns: w.columns)
        let start = Date()
        let factors = try gramSVD(delta, rank: rank)
        blackHole(factors)
        let seconds = Date().timeIntervalSince(start)
        total += seconds
        print(String(format: "svd %-45@ %5d×%-5d %8.2f s", tensor.name, w.rows, w.columns, seconds))
    }
    print(String(format: "RESULT svd_total %.2f", total))
}
