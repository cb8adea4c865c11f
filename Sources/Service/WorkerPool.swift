import Foundation
import LinearAlgebra
import Logging

/// A fixed number of dedicated threads that take queued jobs from the ``JobStore`` and run them
/// (a remote job, which only waits for work done elsewhere, gets a thread of its own: ``follow(_:)``).
///
/// CPU-heavy work (SVDs) must not run on the event loop or Swift's cooperative pool, whose few
/// threads also serve the API: each worker is its own `Thread`, so the API stays responsive
/// while every worker is busy. Workers sleep on a condition variable, are woken by ``wake()``
/// after a submission, and poll once a second as a backstop.
///
/// `@unchecked Sendable`: every mutable field is guarded by `condition` (an `NSCondition`,
/// which is also the lock).
final class WorkerPool: @unchecked Sendable {
    private let store: any JobQueue
    private let runners: JobRunners
    private let dataDirectory: URL
    private let metrics: ServiceMetrics
    private let logger: Logger
    private let workerCount: Int

    private let condition = NSCondition()
    private var stopping = false
    private var started = false
    private var liveWorkers = 0
    private var wakeups = 0
    private var busy = 0
    /// Jobs whose cancel was requested while running.
    private var cancelRequests: Set<String> = []

    init(store: any JobQueue, runners: JobRunners, dataDirectory: URL, workers: Int, metrics: ServiceMetrics, logger: Logger) {
        precondition(workers >= 1, "a worker pool needs at least one worker, got \(workers)")
        self.store = store
        self.runners = runners
        self.dataDirectory = dataDirectory
        self.workerCount = workers
        self.metrics = metrics
        self.logger = logger
    }

    var busyWorkers: Int { condition.withLock { busy } }
    var workers: Int { workerCount }

    /// Starts the threads (once).
    func start() {
        condition.withLock {
            guard !started else { return }
            started = true
            liveWorkers = workerCount
        }
        for i in 0..<workerCount {
            let thread = Thread { [self] in loop() }
            thread.name = "deltaplan-worker-\(i)"
            thread.stackSize = 16 << 20
            thread.start()
        }
    }

    /// A job was queued: wake an idle worker.
    func wake() {
        condition.withLock {
            wakeups += 1
            condition.broadcast()
        }
    }

    /// Asks a running job to stop at its next check.
    func requestCancel(id: String) {
        condition.withLock { _ = cancelRequests.insert(id) }
    }

    /// Stops taking jobs, asks running ones to stop (they go back to the queue and resume at the
    /// next start), and blocks until every worker thread has returned.
    func stopAndWait() {
        condition.lock()
        stopping = true
        condition.broadcast()
        while liveWorkers > 0 { condition.wait() }
        condition.unlock()
    }

    /// Each job's share of the cores: all of them over the number of workers (at least one), so
    /// that the workers together use every core and no more.
    static func jobParallelism(workers: Int) -> Parallelism {
        Parallelism(threads: max(1, Parallelism.machineThreads / max(workers, 1)))
    }

    private func stopReason(for id: String) -> StopReason? {
        condition.withLock {
            if cancelRequests.contains(id) { return .cancelled }
            return stopping ? .shutdown : nil
        }
    }

    private func loop() {
        while true {
            let generation: Int = condition.withLock { stopping ? -1 : wakeups }
            if generation < 0 { break }
            let job: Job?
            do { job = try store.claimNext() } catch {
                logger.error("cannot take a job from \(store.location): \(error)")
                job = nil
            }
            if let job {
                if runners[job.kind].remote {
                    follow(job)
                } else {
                    execute(job)
                }
                continue
            }
            condition.lock()
            if !stopping && wakeups == generation { _ = condition.wait(until: Date().addingTimeInterval(1)) }
            condition.unlock()
        }
        condition.withLock {
            liveWorkers -= 1
            condition.broadcast()
        }
    }

    /// Runs a remote job (one that waits for work done elsewhere, e.g. on Slurm) on a thread of its
    /// own, counted with the workers so that ``stopAndWait()`` waits for it too.
    private func follow(_ job: Job) {
        condition.withLock { liveWorkers += 1 }
        let thread = Thread { [self] in
            execute(job)
            condition.withLock {
                liveWorkers -= 1
                condition.broadcast()
            }
        }
        thread.name = "deltaplan-follow-\(job.id.prefix(8))"
        thread.start()
    }

    private func execute(_ job: Job) {
        // A followed remote job does not take a worker: `busy` counts the workers' jobs only.
        let local = !runners[job.kind].remote
        condition.withLock { if local { busy += 1 } }
        defer { condition.withLock { if local { busy -= 1 }; cancelRequests.remove(job.id) } }
        // A cancel persisted while the job was queued for a restart.
        if job.cancelRequested { requestCancel(id: job.id) }
        let store = self.store, logger = self.logger, id = job.id
        let context = JobContext(
            id: job.id, kind: job.kind, parameters: job.parameters, dataDirectory: dataDirectory,
            reportProgress: { fraction, message in
                do { try store.updateProgress(id: id, fraction: fraction, message: message) } catch {
                    logger.error("cannot record progress of job \(id): \(error)")
                }
            },
            stopReason: { [self] in stopReason(for: id) },
            parallelism: Self.jobParallelism(workers: workerCount))
        let runner = runners[job.kind]
        let start = Date()
        logger.info("job \(job.id) (\(job.kind.rawValue)) started, attempt \(job.attempts)")
        var final: JobState?
        do {
            let result = try runner.run(context)
            try store.finish(id: job.id, state: .succeeded, error: nil, result: result)
            final = .succeeded
        } catch is CancellationError {
            switch stopReason(for: job.id) {
            case .cancelled:
                runner.discard(context)
                final = recordEnd { try store.finish(id: job.id, state: .cancelled, error: "cancelled by request", result: nil) }
            case .shutdown where runner.resumable:
                recordRequeue { try store.requeue(id: job.id, message: "interrupted by a server stop; resumes at the next start") }
            case .shutdown, nil:
                final = recordEnd { try store.finish(id: job.id, state: .failed, error: "interrupted by a server stop; \(job.kind.rawValue) jobs cannot resume, submit it again", result: nil) }
            }
        } catch {
            final = recordEnd { try store.finish(id: job.id, state: .failed, error: "\(error)", result: nil) }
        }
        if let final {
            metrics.recordJob(kind: job.kind, state: final, seconds: Date().timeIntervalSince(start))
            logger.info("job \(job.id) (\(job.kind.rawValue)) \(final.rawValue)")
        }
    }

    /// Runs a store update, logging a failure (the job is then repaired at the next start).
    @discardableResult
    private func recordEnd(_ update: () throws -> Job?) -> JobState? {
        do { return try update()?.state } catch {
            logger.error("cannot record a job's end: \(error)")
            return nil
        }
    }

    private func recordRequeue(_ update: () throws -> Void) {
        do { try update() } catch { logger.error("cannot re-queue a job: \(error)") }
    }
}
