import Analysis
import Foundation

/// The parameters of an analysis job, as validated by `POST /v1/analyses` (paths resolved).
public struct AnalysisJobParameters: Codable, Sendable, Equatable {
    public var base: String
    public var finetuned: String
    public var calibration: String?
    public var include: [String]
    public var exclude: [String]
    public var maxRank: Int?
    public var seed: UInt64
    public var skipMismatched: Bool
    public var allowMissingCalibration: Bool

    var options: AnalysisOptions {
        AnalysisOptions(include: include, exclude: exclude, maxRank: maxRank, skipMismatched: skipMismatched,
                        allowMissingCalibration: allowMissingCalibration, seed: seed)
    }
}

extension JobRunner {
    /// `deltaplan analyze` into `<data-dir>/analyses/<id>`. Resumable: the store keeps every
    /// finished matrix, and a rerun with the same inputs continues with the next one. A cancel
    /// removes the partial store.
    public static let analysis = JobRunner(
        resumable: true,
        run: { context in
            let p = try context.decodeParameters(AnalysisJobParameters.self)
            let store = context.analysisStore
            do {
                try FileManager.default.createDirectory(at: store.deletingLastPathComponent(), withIntermediateDirectories: true)
            } catch {
                throw JobFailure("cannot create \(store.deletingLastPathComponent().path): \(error.localizedDescription)")
            }
            let analyzer = Analyzer(
                base: URL(fileURLWithPath: p.base), finetuned: URL(fileURLWithPath: p.finetuned),
                calibration: p.calibration.map { URL(fileURLWithPath: $0) }, options: p.options, store: store)
            var total = 0, done = 0
            try analyzer.run(
                parallelism: context.parallelism,
                progress: { event in
                    switch event {
                    case let .started(matrices):
                        total = matrices.count
                        done = matrices.filter(\.alreadyDone).count
                        context.reportProgress(total > 0 ? Double(done) / Double(total) : 0,
                                               done > 0 ? "resuming: \(done) of \(total) matrices already analyzed" : "\(total) matrices to analyze")
                    case let .matrixStarted(index, total, name, _, _):
                        context.reportProgress(total > 0 ? Double(done) / Double(total) : 0, "analyzing \(name) (\(index + 1)/\(total))")
                    case let .matrixFinished(_, total, name, _):
                        done += 1
                        context.reportProgress(Double(done) / Double(max(total, 1)), "analyzed \(name) (\(done)/\(total) done)")
                    case .skipped, .finished:
                        break
                    }
                },
                shouldStop: { context.shouldStop })
            return store.path
        },
        discard: { context in
            try? FileManager.default.removeItem(at: context.analysisStore)
        })
}
