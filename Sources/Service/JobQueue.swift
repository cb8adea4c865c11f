import Foundation

/// Where the service keeps its jobs: ``JobStore`` (SQLite in the data directory, one node, the
/// default) or ``PostgresJobStore`` (a PostgreSQL database that several `serve` processes share).
///
/// The API side is async (never blocks the event loop); the worker side is synchronous (workers
/// are dedicated threads). Every state change is one transaction.
public protocol JobQueue: AnyObject, Sendable {
    /// Where the jobs are, for messages (a file path, or a database URL without its password).
    var location: String { get }

    func create(kind: JobKind, parameters: Data) async throws -> Job
    func job(id: String) async throws -> Job?
    /// Newest first.
    func jobs(state: JobState?, kind: JobKind?, limit: Int) async throws -> [Job]
    /// Number of jobs in each state (every state present, zero when none).
    func countsByState() async throws -> [JobState: Int]
    func cancel(id: String) async throws -> CancelOutcome

    /// Atomically takes the oldest job this node may run and marks it running.
    func claimNext() throws -> Job?
    func updateProgress(id: String, fraction: Double, message: String) throws
    /// Ends a running job this node runs. Returns the job as stored.
    @discardableResult
    func finish(id: String, state: JobState, error: String?, result: String?) throws -> Job?
    /// Puts a running job back in the queue (shutdown while it ran; it resumes later).
    func requeue(id: String, message: String) throws
    /// Synchronous lookup, for workers (a cancel request) and tests.
    func jobNow(id: String) throws -> Job?
}

/// What a cancel request did.
public enum CancelOutcome: Sendable, Equatable {
    /// It was queued: now cancelled.
    case cancelled(Job)
    /// It is running: the worker will stop it at its next check.
    case requested(Job)
    /// It had already finished.
    case finished(Job)
    case notFound
}
