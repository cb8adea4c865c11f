import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles

/// A fresh temporary directory, removed by the caller with `cleanUp()`.
struct TemporaryDirectory {
    let url: URL

    init() {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-analysis-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: url) }

    func callAsFunction(_ name: String) -> URL { url.appendingPathComponent(name) }
}

/// A one-layer Llama-shaped profile at 1/64 scale: q/k/v/o 64×64, gate/up 172×64, down 64×172.
func tinyProfile(layers: Int = 1) throws -> ModelProfile {
    try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: layers)
}

/// Writes a synthetic pair into `dir` and returns its paths.
@discardableResult
func writePair(in dir: URL, seed: UInt64 = 1, layers: Int = 1, tokens: Int = 200, sampleRows: Int = 200,
               maxShardBytes: Int = 1 << 30, dtype: DType = .bf16) throws -> SyntheticPair.Paths {
    try SyntheticPair(profile: tinyProfile(layers: layers), seed: seed, dtype: dtype, tokens: tokens,
                      sampleRows: sampleRows, maxShardBytes: maxShardBytes).write(to: dir)
}

/// ΔW in Float64 read independently of the analyzer: row-major values → column-major h_out × h_in.
func referenceDelta(_ name: String, base: URL, finetuned: URL) throws -> Matrix<Double> {
    let b = try Checkpoint(at: base), f = try Checkpoint(at: finetuned)
    let info = try b.tensor(name).info
    let (rows, columns) = (info.shape[0], info.shape[1])
    let bv = try b.doubles(name), fv = try f.doubles(name)
    return Matrix(rows: rows, columns: columns) { i, j in fv[i * columns + j] - bv[i * columns + j] }
}

/// Writes a checkpoint file of the given F32 tensors (row-major values).
func writeTensors(_ tensors: [(String, [Int], [Float])], to url: URL, dtype: DType = .f32) throws {
    try SafetensorsFile.write(tensors.map { TensorPayload(name: $0.0, dtype: dtype, shape: $0.1, contents: .floats($0.2)) }, to: url)
}

func relativeDifference(_ a: Double, _ b: Double) -> Double {
    abs(a - b) / max(abs(a), abs(b), .leastNormalMagnitude)
}
