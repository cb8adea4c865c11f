import Analysis
import Foundation
import LinearAlgebra
import Pipeline
import Quantization

/// `deltaplan-bench measure STORE [--threads N] [--blas-threads M] [--chunk C]`: the measurement
/// pass of `deltaplan plan STORE` (every matrix, the default bit menu, the feedback order) with N
/// matrices at once and M OpenBLAS threads, after removing the store's cached feedback tables;
/// prints each matrix's time (with one thread, the time between its start and the previous
/// matrix's end), the total and the peak resident memory (VmHWM).
func runMeasureBenchmark(_ arguments: [String]) throws {
    func value(_ flag: String) -> Int? {
        arguments.firstIndex(of: flag).flatMap { arguments.indices.contains($0 + 1) ? Int(arguments[$0 + 1]) : nil }
    }
    guard let path = arguments.first(where: { !$0.hasPrefix("--") && Int($0) == nil }) else {
        print("usage: deltaplan-bench measure STORE [--threads N] [--blas-threads M] [--chunk C]")
        exit(2)
    }
    let threads = value("--threads") ?? 1
    let blasThreads = value("--blas-threads") ?? 1
    BLASThreads.count = blasThreads
    let store = try SpectrumStore(at: URL(fileURLWithPath: path))
    let calibration = try store.calibrationSet(given: nil)
    var options = MeasurementOptions()
    if let chunk = value("--chunk") { options.chunkSize = chunk }
    try? FileManager.default.removeItem(at: store.url.appendingPathComponent("errors").appendingPathComponent(options.order.rawValue))
    print("measure \(path): \(store.matrices.count) matrices, threads \(threads), BLAS threads \(BLASThreads.count), chunk \(options.chunkSize)")
    let start = Date()
    var last = start
    _ = try measuredSpectra(store: store, calibration: calibration, options: options, parallelism: Parallelism(threads: threads),
                            progress: { done, total, name in
                                let now = Date()
                                let record = store.record(named: name)
                                print(String(format: "  [%d/%d] %@ %d×%d r=%d: %.1f s", done, total, name, record?.rows ?? 0,
                                             record?.columns ?? 0, record?.storedRank ?? 0, now.timeIntervalSince(last)))
                                last = now
                            })
    let total = Date().timeIntervalSince(start)
    print(String(format: "RESULT measure_total %.2f", total))
    print(String(format: "RESULT measure_per_matrix %.2f", total / Double(max(1, store.matrices.count))))
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM") }) {
        print("peak \(line)")
    }
}
