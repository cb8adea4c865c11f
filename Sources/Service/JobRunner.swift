import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Pipeline
import Quantization

/// Why a running job is asked to stop.
public enum StopReason: Sendable, Equatable {
    /// `DELETE /v1/jobs/{id}`: stop, discard partial output, end as cancelled.
    case cancelled
    /// The server is shutting down: stop, keep partial output, resume at the next start.
    case shutdown
}

/// What a runner gets: the job's identity and validated parameters, where to write, and two
/// callbacks. Runners run on a worker thread and may block.
public struct JobContext: Sendable {
    public var id: String
    public var kind: JobKind
    /// The validated request as JSON (see the `*Parameters` types).
    public var parameters: Data
    public var dataDirectory: URL
    /// Reports progress: a fraction in [0, 1] and a short message. Stored with the job.
    public var reportProgress: @Sendable (Double, String) -> Void
    /// Non-nil once the job should stop; checked between units of work (matrices).
    public var stopReason: @Sendable () -> StopReason?
    /// The job's share of the cores: matrices it works on at once (the worker pool divides the
    /// cores among its workers, so that busy workers do not oversubscribe them).
    public var parallelism: Parallelism

    public init(id: String, kind: JobKind, parameters: Data, dataDirectory: URL,
                reportProgress: @escaping @Sendable (Double, String) -> Void,
                stopReason: @escaping @Sendable () -> StopReason?, parallelism: Parallelism = .serial) {
        self.id = id
        self.kind = kind
        self.parameters = parameters
        self.dataDirectory = dataDirectory
        self.reportProgress = reportProgress
        self.stopReason = stopReason
        self.parallelism = parallelism
    }

    public var shouldStop: Bool { stopReason() != nil }

    public func decodeParameters<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(type, from: parameters)
    }

    /// `<data-dir>/analyses/<id>`: an analysis job's spectrum store.
    public var analysisStore: URL { Self.analysisStore(id: id, in: dataDirectory) }
    /// `<data-dir>/plans/<id>.json`: a plan job's plan.
    public var planFile: URL { Self.planFile(id: id, in: dataDirectory) }

    public static func analysisStore(id: String, in dataDirectory: URL) -> URL {
        dataDirectory.appendingPathComponent("analyses", isDirectory: true).appendingPathComponent(id, isDirectory: true)
    }

    public static func planFile(id: String, in dataDirectory: URL) -> URL {
        dataDirectory.appendingPathComponent("plans", isDirectory: true).appendingPathComponent("\(id).json")
    }
}

/// A job runner failed in a way to report to the client (stored as the job's error).
public struct JobFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How one kind of job runs.
///
/// `run` does the work on a worker thread and returns the result location; it throws
/// `CancellationError` when ``JobContext/stopReason`` became non-nil (checked between units of
/// work), any other error to fail the job (its description becomes the job's error message). A
/// runner that hands `context.shouldStop` to a library call may let the library's
/// `QuantizationError.stopped` through: `init` turns it into `CancellationError`.
/// `discard` removes partial output after a cancel. `resumable` says whether a job interrupted
/// by a server stop can run again from where it was (else it fails with the reason).
///
/// `remote`: the job runs elsewhere (on Slurm) and `run` only waits for it: the worker pool runs it
/// on a thread of its own and its worker takes the next job at once.
public struct JobRunner: Sendable {
    public var resumable: Bool
    public var remote: Bool
    public var run: @Sendable (JobContext) throws -> String
    public var discard: @Sendable (JobContext) -> Void

    public init(resumable: Bool, remote: Bool = false, run: @escaping @Sendable (JobContext) throws -> String,
                discard: @escaping @Sendable (JobContext) -> Void = { _ in }) {
        self.resumable = resumable
        self.remote = remote
        self.run = { context in
            do { return try run(context) } catch QuantizationError.stopped, ArtifactError.quantization(.stopped) {
                throw CancellationError()
            }
        }
        self.discard = discard
    }

    /// A runner that fails every job: the kind is accepted and validated by the API but this
    /// build cannot run it yet.
    public static func unavailable(_ kind: JobKind, needs: String) -> JobRunner {
        JobRunner(resumable: false) { _ in
            throw JobFailure("\(kind.rawValue) jobs are not available in this build (they need \(needs))")
        }
    }
}

/// The runner of each job kind.
public struct JobRunners: Sendable {
    private var runners: [JobKind: JobRunner]

    public init(_ runners: [JobKind: JobRunner]) { self.runners = runners }

    public subscript(kind: JobKind) -> JobRunner {
        get { runners[kind] ?? .unavailable(kind, needs: "a runner registered for this kind") }
        set { runners[kind] = newValue }
    }

    /// The runners of this build. THE place where job kinds get wired: when plans from an
    /// analysis (error model + searches), comparisons and compressions land in the library,
    /// replace their `.unavailable` entries with runners that decode ``PlanJobParameters``,
    /// ``ComparisonJobParameters`` or ``CompressionJobParameters`` and call it.
    public static func builtIn() -> JobRunners {
        JobRunners([
            .analysis: .analysis,
            .plan: .plan,
            .comparison: .comparison,
            .compression: .compression,
            .evaluation: .evaluation,
            .merge: .merge,
            .fleet: .fleet,
        ])
    }
}

extension JobRunner {
    /// A plan from an analysis store, by the same library call as `deltaplan plan STORE`, so the
    /// plan bytes are the CLI's. The measurement pass is cached in the store: a resumed job reuses it.
    public static let plan = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(PlanJobParameters.self)
        let planning = try storePlanning(p.analysisStore, calibration: p.calibration, groupSize: p.groupSize, objective: p.objective,
                                         order: p.order, method: p.method, context: context)
        let strategy = try Strategy(parsing: p.strategy, library: try ProfileLibrary.builtIn())
        let storage = StorageModel(accounting: p.accounting, groupSize: p.groupSize)
        let goal: PlanGoal = try p.target.map { .target($0) } ?? .budget(try GivenBudget(parsing: p.budget ?? ""))
        let plan = try planning.plan(
            goal, storage: storage, scope: p.scope, menu: p.bits, strategy: strategy, seed: p.seed,
            overrides: try Overrides(jobPins: p.pins, bitsFor: p.bitsFor), verify: p.verify, parallelism: context.parallelism,
            progress: { done, total, name in
                context.reportProgress(0.9 + 0.09 * Double(done) / Double(max(total, 1)), "verified \(name)")
            },
            shouldStop: { context.shouldStop })
        try FileManager.default.createDirectory(at: context.planFile.deletingLastPathComponent(), withIntermediateDirectories: true)
        try plan.write(to: context.planFile)
        context.reportProgress(1, "plan written")
        return context.planFile.path
    } discard: { context in
        try? FileManager.default.removeItem(at: context.planFile)
    }

    /// A comparison of strategies and baselines on an analysis store (as `deltaplan compare STORE`),
    /// written as JSON to `<data-dir>/comparisons/<id>.json`.
    public static let comparison = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(ComparisonJobParameters.self)
        let planning = try storePlanning(p.analysisStore, calibration: p.calibration, groupSize: p.groupSize, objective: p.objective,
                                         order: p.order, method: p.method, context: context)
        let library = try ProfileLibrary.builtIn()
        let comparison = try planning.compare(
            budgets: try p.budgets.map { try GivenBudget(parsing: $0) },
            candidates: try p.strategies.map { try Candidate(parsing: $0, library: library) },
            storage: StorageModel(accounting: p.accounting, groupSize: p.groupSize),
            scope: p.scope, menu: p.bits ?? BitMenu.default, seed: p.seed,
            overrides: try Overrides(jobPins: p.pins, bitsFor: p.bitsFor), clock: { Date().timeIntervalSinceReferenceDate })
        let url = comparisonFile(context)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try AtomicFile.write(data: Array(comparison.render(.json).utf8), to: url)
        context.reportProgress(1, "comparison written")
        return url.path
    } discard: { context in
        try? FileManager.default.removeItem(at: comparisonFile(context))
    }

    /// A fleet plan (as `deltaplan fleet`) into `<data-dir>/fleets/<id>/`: NAME.json per member and
    /// fleet.json. Each member's measurement pass is cached in its store.
    public static let fleet = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(FleetJobParameters.self)
        var stores: [FleetStore] = []
        for (i, m) in p.members.enumerated() {
            context.reportProgress(0.9 * Double(i) / Double(p.members.count), "measuring \(m.name)")
            let planning = try StorePlanning(
                store: URL(fileURLWithPath: m.analysisStore),
                measurement: MeasurementOptions(method: p.method, order: p.order, groupSize: p.groupSize),
                shouldStop: { context.shouldStop })
            stores.append(FleetStore(name: m.name, planning: planning, weight: m.weight, maxRelativeError: m.maxRelativeError))
        }
        let fleet = try planFleet(stores, budget: try GivenBudget(parsing: p.budget),
                                  storage: StorageModel(accounting: p.accounting, groupSize: p.groupSize), menu: p.bits,
                                  strategy: try Strategy(parsing: p.strategy, library: try ProfileLibrary.builtIn()), seed: p.seed,
                                  overrides: try Overrides(jobPins: p.pins, bitsFor: p.bitsFor))
        let out = fleetDirectory(context)
        try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
        try fleet.write(names: stores.map(\.name), to: out)
        context.reportProgress(1, "fleet written")
        return out.path
    } discard: { context in
        try? FileManager.default.removeItem(at: fleetDirectory(context))
    }

    private static func fleetDirectory(_ context: JobContext) -> URL {
        context.dataDirectory.appendingPathComponent("fleets", isDirectory: true).appendingPathComponent(context.id, isDirectory: true)
    }

    private static func comparisonFile(_ context: JobContext) -> URL {
        context.dataDirectory.appendingPathComponent("comparisons", isDirectory: true).appendingPathComponent("\(context.id).json")
    }

    /// The store with its error models measured; the measurement is most of the job's time. A
    /// cancel stops it at the next matrix (the tables measured so far stay cached in the store).
    private static func storePlanning(
        _ store: String, calibration: String?, groupSize: Int, objective: ErrorObjective?, order: SegmentOrder?,
        method: QuantizationMethod?, context: JobContext
    ) throws -> StorePlanning {
        context.reportProgress(0, "measuring the error model")
        return try StorePlanning(
            store: URL(fileURLWithPath: store), calibration: calibration.map { URL(fileURLWithPath: $0) },
            measurement: MeasurementOptions(method: method ?? .default, order: order ?? .default, groupSize: groupSize),
            objective: objective, parallelism: context.parallelism,
            progress: { done, total, name in
                context.reportProgress(0.9 * Double(done) / Double(max(total, 1)), "measured \(name)")
            },
            shouldStop: { context.shouldStop })
    }
}

extension JobRunner {
    /// A compression (as `deltaplan compress`) into `<data-dir>/artifacts/<id>`. The store is the
    /// analysis of this server whose identity the plan records; the checkpoints are the request's.
    public static let compression = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(CompressionJobParameters.self)
        let plan = try Plan.read(from: URL(fileURLWithPath: p.planFile))
        let store = try analysisStore(identity: plan.source.hash, in: context.dataDirectory)
        let calibration = try calibrationSet(p.calibration, for: store)
        let out = artifactDirectory(context)
        try? FileManager.default.removeItem(at: out)  // a resumed job starts its artifact anew
        try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
        let total = Double(max(plan.matrices.count, 1))
        var done = 0.0
        _ = try compress(
            store: store, plan: plan, calibration: calibration,
            options: CompressionOptions(method: p.method ?? .default, order: p.order, dampening: p.dampening ?? QuantizationMethod.defaultDampening,
                                        base: URL(fileURLWithPath: p.base), finetuned: URL(fileURLWithPath: p.finetuned),
                                        planPath: p.planFile, toolVersion: DeltaPlanVersion.string),
            to: out, parallelism: context.parallelism,
            progress: { event in
                switch event {
                case .matrixFinished, .matrixResumed:
                    done += 1
                    context.reportProgress(done / total, "compressed \(Int(done)) of \(Int(total)) matrices")
                default: break
                }
            },
            shouldStop: { context.shouldStop })
        return out.path
    } discard: { context in
        try? FileManager.default.removeItem(at: artifactDirectory(context))
        try? FileManager.default.removeItem(at: compressionWorkDirectory(for: artifactDirectory(context)))
    }

    static func artifactDirectory(_ context: JobContext) -> URL {
        context.dataDirectory.appendingPathComponent("artifacts", isDirectory: true).appendingPathComponent(context.id, isDirectory: true)
    }

    /// An evaluation (as `deltaplan evaluate`) written as JSON to `<data-dir>/evaluations/<id>.json`.
    /// The store, for the low-rank baseline, is the analysis of this server the artifact was made from.
    public static let evaluation = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(EvaluationJobParameters.self)
        let artifact = try Artifact(at: URL(fileURLWithPath: p.artifact))
        let store = try analysisStore(identity: artifact.manifest.store.identity, in: context.dataDirectory)
        let calibration = try calibrationSet(p.calibration, for: store)
        let report = try evaluate(
            artifact: artifact, base: URL(fileURLWithPath: p.base), finetuned: URL(fileURLWithPath: p.finetuned),
            calibration: calibration, store: store, parallelism: context.parallelism,
            progress: { done, total, name in context.reportProgress(Double(done) / Double(max(total, 1)), "evaluated \(name)") },
            shouldStop: { context.shouldStop })
        let url = evaluationFile(context)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try AtomicFile.write(data: try encoder.encode(report), to: url)
        return url.path
    } discard: { context in
        try? FileManager.default.removeItem(at: evaluationFile(context))
    }

    /// A merge (as `deltaplan merge`) into `<data-dir>/merges/<id>`: base + Δ̂ in the base's dtype
    /// and shard layout.
    public static let merge = JobRunner(resumable: true) { context in
        let p = try context.decodeParameters(MergeJobParameters.self)
        let artifact = try Artifact(at: URL(fileURLWithPath: p.artifact))
        let out = mergeDirectory(context)
        try? FileManager.default.removeItem(at: out)  // a resumed job starts anew
        try FileManager.default.createDirectory(at: out.deletingLastPathComponent(), withIntermediateDirectories: true)
        _ = try Pipeline.merge(
            base: URL(fileURLWithPath: p.base), artifact: artifact, to: out,
            progress: { done, total, _ in context.reportProgress(Double(done) / Double(max(total, 1)), "wrote \(done) of \(total) tensors") },
            shouldStop: { context.shouldStop })
        return out.path
    } discard: { context in
        try? FileManager.default.removeItem(at: mergeDirectory(context))
    }

    private static func evaluationFile(_ context: JobContext) -> URL {
        context.dataDirectory.appendingPathComponent("evaluations", isDirectory: true).appendingPathComponent("\(context.id).json")
    }

    private static func mergeDirectory(_ context: JobContext) -> URL {
        context.dataDirectory.appendingPathComponent("merges", isDirectory: true).appendingPathComponent(context.id, isDirectory: true)
    }

    private static func calibrationSet(_ given: String?, for store: SpectrumStore) throws -> CalibrationSet? {
        try store.calibrationSet(given: given.map { URL(fileURLWithPath: $0) })
    }

    /// The finished analysis store of this server with the given identity (SHA-256 of its manifest).
    static func analysisStore(identity: String, in dataDirectory: URL) throws -> SpectrumStore {
        let folder = dataDirectory.appendingPathComponent("analyses", isDirectory: true)
        let candidates = (try? FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)) ?? []
        for url in candidates.sorted(by: { $0.path < $1.path }) {
            if let store = try? SpectrumStore(at: url), store.identity == identity { return store }
        }
        throw JobFailure("no finished analysis of this server has the store identity \(identity) (the plan's or artifact's source)")
    }
}
