import Analysis
import ArtifactFormat
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Testing

/// `--threads` and resumed runs: every heavy stage gives the same bytes with one thread or two, and
/// a compression stopped between matrices resumes into the artifact an uninterrupted run writes.
@Suite(.serialized) struct ThreadsAndResumeTests {
    /// One OpenBLAS thread per matrix, as the CLI sets it (``Parallelism``): the results are then
    /// the same for every thread count.
    init() { BLASThreads.count = 1 }

    /// Every regular file under `directory`, by relative path, with its bytes.
    static func files(_ directory: URL) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let base = directory.standardizedFileURL.path
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = enumerator?.nextObject() as? URL {
            guard (try url.resourceValues(forKeys: [.isRegularFileKey])).isRegularFile == true else { continue }
            out[String(url.standardizedFileURL.path.dropFirst(base.count))] = try Data(contentsOf: url)
        }
        return out
    }

    @Test func measurementIsTheSameWithTwoThreads() throws {
        let (store, calibration, dir) = try MeasurementTests.makeStore("threads")
        defer { try? FileManager.default.removeItem(at: dir) }
        let errors = store.url.appendingPathComponent("errors")
        let options = MeasurementOptions(bits: [16, 8, 3, 2, 1], chunkSize: 8)
        let one = try measuredSpectra(store: store, calibration: calibration, options: options, parallelism: .serial)
        let tables = try Self.files(errors)
        try FileManager.default.removeItem(at: errors)
        var done: [Int] = []
        let two = try measuredSpectra(store: store, calibration: calibration, options: options, parallelism: Parallelism(threads: 2),
                                      progress: { n, _, _ in done.append(n) })
        #expect(one == two)
        #expect(try Self.files(errors) == tables)
        #expect(done == Array(1...store.matrices.count))
    }

    /// `plan --threads N`: the plan's bytes, measurement pass included, do not depend on N.
    @Test func planIsTheSameForEveryThreadCount() throws {
        let (store, _, dir) = try MeasurementTests.makeStore("plan-threads")
        defer { try? FileManager.default.removeItem(at: dir) }
        let errors = store.url.appendingPathComponent("errors")
        let library = try ProfileLibrary.builtIn()
        var plans: [Data] = []
        for threads in [1, 2, 3] {
            try? FileManager.default.removeItem(at: errors)
            let planning = try StorePlanning(store: store.url, measurement: MeasurementOptions(chunkSize: 8),
                                             parallelism: Parallelism(threads: threads))
            let plan = try planning.plan(budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(), scope: .global,
                                         menu: [16, 8, 4, 3, 2, 1], strategy: try Strategy(parsing: "exact", library: library), seed: 0)
            let kept = plan.matrices.reduce(0) { $0 + $1.segments.count }
            #expect(kept > 0)
            plans.append(try plan.encoded())
        }
        #expect(plans[0] == plans[1] && plans[0] == plans[2])
    }

    @Test func analysisIsTheSameWithTwoThreads() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-analyze-threads-\(getpid())")
        try? FileManager.default.removeItem(at: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 2)
        let paths = try SyntheticPair(profile: profile, seed: 9).write(to: dir)
        var stores: [[String: Data]] = []
        for (name, threads) in [("one", 1), ("two", 2)] {
            let analyzer = Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                    options: AnalysisOptions(), store: dir.appendingPathComponent(name))
            try analyzer.run(parallelism: Parallelism(threads: threads))
            stores.append(try Self.files(dir.appendingPathComponent(name)))
        }
        #expect(stores[0].count > 2)
        #expect(stores[0] == stores[1])
    }

    @Test func compressionAndEvaluationAreTheSameWithTwoThreads() throws {
        let f = try ArtifactFixture.get()
        let out = f.url("two-threads-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                     to: out, parallelism: Parallelism(threads: 2))
        #expect(try Self.files(out) == Self.files(f.exactArtifact))
        let artifact = try Artifact(at: f.exactArtifact)
        let two = try evaluate(artifact: artifact, base: f.paths.base, finetuned: f.paths.finetuned, calibration: f.calibration,
                               store: f.store, parallelism: Parallelism(threads: 2))
        #expect(two == (try f.evaluation(f.exactArtifact)))
    }

    /// A stop between matrices leaves no artifact, only the work directory with the matrices
    /// quantized so far; the rerun quantizes only the others, writes the artifact an uninterrupted
    /// run writes (byte for byte) and removes the work directory.
    @Test(arguments: [1, 2]) func stoppedCompressionResumes(threads: Int) throws {
        let f = try ArtifactFixture.get()
        let out = f.url("resumed-\(threads)-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        let work = compressionWorkDirectory(for: out)
        var finished = 0
        #expect(throws: ArtifactError.quantization(.stopped)) {
            try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                         to: out, parallelism: Parallelism(threads: threads),
                         progress: { if case .matrixFinished = $0 { finished += 1 } }, shouldStop: { finished >= 2 })
        }
        #expect(!FileManager.default.fileExists(atPath: out.path))
        let saved = try FileManager.default.contentsOfDirectory(atPath: work.path)
        #expect(saved.count == finished && finished >= 2 && finished < f.exactPlan.matrices.count)
        let siblings = try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path)
        #expect(siblings.filter { $0.contains(out.lastPathComponent) } == [work.lastPathComponent])

        var resumed = 0, quantized = 0
        try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                     to: out, parallelism: Parallelism(threads: threads),
                     progress: {
                         if case .matrixResumed = $0 { resumed += 1 }
                         if case .matrixFinished = $0 { quantized += 1 }
                     })
        #expect(resumed == finished && resumed + quantized == f.exactPlan.matrices.count)
        #expect(try Self.files(out) == Self.files(f.exactArtifact))
        #expect(!FileManager.default.fileExists(atPath: work.path))
    }

    /// Saved matrices of another compression (another order here) are not reused.
    @Test func workOfAnotherCompressionIsNotReused() throws {
        let f = try ArtifactFixture.get()
        let out = f.url("other-work-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        var finished = 0
        #expect(throws: ArtifactError.quantization(.stopped)) {
            try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration,
                         options: CompressionOptions(order: .paper, toolVersion: "test"), to: out,
                         progress: { if case .matrixFinished = $0 { finished += 1 } }, shouldStop: { finished >= 3 })
        }
        var resumed = 0
        try compress(store: f.store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                     to: out, progress: { if case .matrixResumed = $0 { resumed += 1 } })
        #expect(resumed == 0)
        #expect(try Self.files(out) == Self.files(f.exactArtifact))
    }
}
