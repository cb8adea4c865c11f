import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra
import Quantization

/// `deltaplan-bench quantizers`: what the feedback order's clipping search and `analyze`'s input
/// content hashes cost, each beside its reference in the same run (ratios, not absolute times).
///
/// - GPTQ at 3 bits, group size 128, min–max grids against searched clipping ranges, on the two
///   shapes a Llama-2-7B segment quantizes: V̂ᵀ (128 vectors × 4096 inputs, a correlated H) and
///   Û of a short segment (11008 outputs × 32 vectors, H_U diagonal-dominant).
/// - SHA-256 of a 1 GiB file against reading it (the extra pass `analyze` makes per input file).
func runQuantizerBenchmark() throws {
    let g = SeededGenerator(seed: 7)
    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = Date()
        try body()
        return Date().timeIntervalSince(start)
    }
    func hessian(_ n: Int, rank: Int) throws -> Matrix<Float> {
        let a = Matrix<Float>.gaussian(rows: n, columns: rank, using: g)
        var h = try multiply(a, a, transposeB: true, alpha: 1 / Float(rank))
        for i in 0..<n { h[i, i] += 0.1 }
        return h
    }
    for (name, rows, columns, rank) in [("V̂ᵀ 128 × 4096", 128, 4096, 512), ("Û 11008 × 32", 11008, 32, 32)] {
        let w = Matrix<Float>.gaussian(rows: rows, columns: columns, sigma: 0.02, using: g)
        let prepared = try PreparedHessian(hessian: try hessian(columns, rank: rank))
        var times: [Bool: Double] = [:]
        for clip in [false, true, false, true] {
            let t = try seconds { _ = try GPTQ(bits: 3, clipSearch: clip).quantize(w, prepared: prepared) }
            times[clip] = min(times[clip] ?? .infinity, t)
        }
        print(String(format: "GPTQ 3-bit %@: min–max %.3f s, clipping search %.3f s, ratio %.2f",
                     name, times[false]!, times[true]!, times[true]! / times[false]!))
    }
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-bench-\(UUID().uuidString)")
    defer { try? FileManager.default.removeItem(at: file) }
    let chunk = Data((0..<(1 << 24)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761) })
    FileManager.default.createFile(atPath: file.path, contents: nil)
    let handle = try FileHandle(forWritingTo: file)
    for _ in 0..<64 { try handle.write(contentsOf: chunk) }
    try handle.close()
    var read = Double.infinity, hash = Double.infinity
    for _ in 0..<2 {
        read = min(read, try seconds {
            let h = try FileHandle(forReadingFrom: file)
            while let d = try h.read(upToCount: 1 << 24), !d.isEmpty {}
            try h.close()
        })
        hash = min(hash, try seconds { _ = try Digest.sha256(fileAt: file) })
    }
    print(String(format: "1 GiB file: read %.3f s (%.2f GB/s), SHA-256 %.3f s (%.2f GB/s), ratio %.2f",
                 read, 1.073741824 / read, hash, 1.073741824 / hash, hash / read))
}
