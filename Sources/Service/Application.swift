import Foundation
import Hummingbird
import LinearAlgebra
import Logging
import ModelProfiles
import NIOCore
import ServiceLifecycle

/// Opens the data directory, repairs jobs a crash left `running`, and assembles the shared state.
public func buildState(_ configuration: ServiceConfiguration, runners: JobRunners = .builtIn(),
                       logger: Logger = Logger(label: "deltaplan.serve")) throws -> ServiceState {
    guard configuration.workers >= 1 else {
        throw ServiceSetupError.invalidOption(option: "--workers", reason: "must be at least 1, got \(configuration.workers)")
    }
    guard (0...65535).contains(configuration.port) else {
        throw ServiceSetupError.invalidOption(option: "--port", reason: "must be in 0...65535, got \(configuration.port)")
    }
    let runners = try runners.on(configuration.executor, logger: logger)
    let data = configuration.dataDirectory
    do { try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true) } catch {
        throw ServiceSetupError.invalidOption(option: "--data-dir", reason: "cannot create \(data.path): \(error.localizedDescription)")
    }
    let store: any JobQueue
    var repaired: [Job] = []
    if let database = configuration.database {
        // Jobs another node left running are taken over when their leases expire.
        let shared = try PostgresJobStore(url: database, leaseSeconds: configuration.leaseSeconds, resumable: { runners[$0].resumable },
                                          logger: logger)
        logger.info("node \(shared.node): jobs in \(shared.location), leases of \(shared.leaseSeconds) s")
        store = shared
    } else {
        let local = try JobStore(path: data.appendingPathComponent("jobs.sqlite").path)
        repaired = try local.recoverInterrupted(resumable: { runners[$0].resumable })
        store = local
    }
    for job in repaired {
        logger.info("job \(job.id) (\(job.kind.rawValue)) was running when the server stopped: \(job.cancelRequested ? "cancelled" : runners[job.kind].resumable ? "re-queued" : "failed")")
        if job.cancelRequested {
            runners[job.kind].discard(JobContext(id: job.id, kind: job.kind, parameters: job.parameters, dataDirectory: data,
                                                 reportProgress: { _, _ in }, stopReason: { .cancelled }))
        }
    }
    let library: ProfileLibrary
    do { library = try ProfileLibrary.builtIn() } catch {
        throw ServiceSetupError.invalidOption(option: "profiles", reason: "\(error)")
    }
    let metrics = ServiceMetrics()
    let pool = WorkerPool(store: store, runners: runners, dataDirectory: data, workers: configuration.workers,
                          metrics: metrics, logger: logger)
    return ServiceState(configuration: configuration, store: store, pool: pool, metrics: metrics,
                        validator: RequestValidator(roots: try AllowedRoots(configuration.allowedRoots), library: library),
                        library: library)
}

/// The whole service: HTTP server plus worker pool, as one `Service` for a `ServiceGroup`.
///
/// `onServerRunning` receives the bound port (useful with port 0). Shutdown (SIGINT/SIGTERM or a
/// graceful shutdown of the group) stops the server, then the workers: a running job stops at
/// its next check and goes back to the queue, to resume at the next start.
public func buildApplication(_ configuration: ServiceConfiguration, runners: JobRunners = .builtIn(),
                             logger: Logger = Logger(label: "deltaplan.serve"),
                             onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
    let state = try buildState(configuration, runners: runners, logger: logger)
    // Jobs run on their own threads, each on its share of the cores (WorkerPool.jobParallelism):
    // matrices in parallel, each on one OpenBLAS thread, so the workers never oversubscribe the cores.
    BLASThreads.count = 1
    return Application(
        router: buildRouter(state),
        configuration: ApplicationConfiguration(address: .hostname(configuration.host, port: configuration.port),
                                                serverName: "deltaplan/\(DeltaPlanVersion.string)"),
        services: [WorkerService(pool: state.pool)],
        onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
        logger: logger)
}

extension JobRunners {
    /// These runners with analyses and compressions on `executor`. With Slurm, refuses (before the
    /// server starts, rather than failing every analysis later) when sbatch, squeue or scancel is
    /// not on PATH. Locally, a job that a server with `--executor slurm` submitted fails instead of
    /// running beside its Slurm jobs into the same output.
    func on(_ executor: JobExecutor, logger: Logger) throws(ServiceSetupError) -> JobRunners {
        guard case let .slurm(slurm) = executor else {
            var runners = self
            for kind in [JobKind.analysis, .compression] { runners[kind] = self[kind].refusingSlurmSubmissions() }
            return runners
        }
        let commands = SlurmCommands()
        for command in ["sbatch", "squeue", "scancel"] where commands.locate(command) == nil {
            throw .invalidOption(
                option: "--executor slurm",
                reason: "\(command) is not on PATH (\(commands.environment["PATH"] ?? "unset")): install the Slurm client commands or use --executor local")
        }
        var runners = self
        runners[.analysis] = .slurm(.analysis, slurm, commands: commands)
        runners[.compression] = .slurm(.compression, slurm, commands: commands)
        logger.info("executor slurm: analyses and compressions as array jobs of \(slurm.shards) shards running \(slurm.executable.path)")
        return runners
    }
}

/// Runs the worker pool for the lifetime of the application.
struct WorkerService: Service {
    let pool: WorkerPool

    func run() async throws {
        pool.start()
        // Returns at graceful shutdown; throws CancellationError when the task is cancelled.
        try? await gracefulShutdown()
        let pool = self.pool
        // stopAndWait blocks until the workers return: keep it off the cooperative pool.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                pool.stopAndWait()
                continuation.resume()
            }
        }
    }
}
