import Foundation
import Logging
import PostgresNIO

/// The jobs in a PostgreSQL database (`serve --database postgres://USER:PASSWORD@HOST:PORT/DB`),
/// shared by several `serve` processes on different machines: one queue, each job run by one node
/// at a time.
///
/// - A node claims the oldest queued job with `SELECT … FOR UPDATE SKIP LOCKED` (two nodes never
///   take the same row, neither waits for the other) and holds it under a lease until
///   `lease_until`, which it renews every third of the lease while it runs (``start()``).
/// - A node that dies stops renewing: once the lease has expired, the next claim by any node takes
///   the job again if its kind can resume (from its store, on the shared data directory), or ends
///   it — cancelled if a cancel was asked, else failed with the reason.
/// - Progress, finish and requeue apply only while this node holds the job (`owner`): a node that
///   lost its lease cannot overwrite the result of the one that took the job over.
/// - Every claim is recorded in `deltaplan_job_run` (job, node, claimed and ended at, outcome):
///   which node ran what, and when.
///
/// Times are the database server's (`clock_timestamp()`), so nodes' clocks need not agree.
public final class PostgresJobStore: JobQueue {
    /// This process's identity in `owner` and the run records.
    public let node: String
    public let leaseSeconds: Double
    public let location: String
    private let client: PostgresClient
    private let resumable: [String]
    private let logger: Logger
    private let tasks: Task<Void, Never>

    /// Connects (the client runs until ``shutdown()``), creates the tables if they are missing,
    /// and starts renewing the leases of the jobs this node runs.
    ///
    /// - Parameters:
    ///   - url: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (TLS disabled: loopback or a
    ///     private network).
    ///   - resumable: which kinds another node may resume after this one died.
    public init(url: String, leaseSeconds: Double = 30, resumable: @Sendable (JobKind) -> Bool,
                logger: Logger = Logger(label: "deltaplan.jobs")) throws(ServiceSetupError) {
        guard leaseSeconds > 0, leaseSeconds.isFinite else {
            throw .invalidOption(option: "--lease-seconds", reason: "must be positive, got \(leaseSeconds)")
        }
        let configuration = try Self.configuration(url)
        node = UUID().uuidString.lowercased()
        location = Self.redacted(url)
        self.leaseSeconds = leaseSeconds
        self.resumable = JobKind.allCases.filter(resumable).map(\.rawValue)
        self.logger = logger
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        self.client = client
        tasks = Task { await client.run() }
        do { try blocking { try await Self.migrate(client, logger: logger) } } catch {
            tasks.cancel()
            throw .database(path: Self.redacted(url), reason: "\(String(reflecting: error))")
        }
        Thread.detachNewThread { [weak self] in self?.renewLeases() }
    }

    /// Stops the connection pool (and with it the lease renewal).
    public func shutdown() { tasks.cancel() }

    deinit { tasks.cancel() }

    /// The URL without its password, for messages.
    static func redacted(_ url: String) -> String {
        guard var parts = URLComponents(string: url), parts.password != nil else { return url }
        parts.password = "…"
        return parts.string ?? url
    }

    static func configuration(_ url: String) throws(ServiceSetupError) -> PostgresClient.Configuration {
        guard let parts = URLComponents(string: url), ["postgres", "postgresql"].contains(parts.scheme ?? ""),
              let host = parts.host, !host.isEmpty, let user = parts.user, !user.isEmpty else {
            throw .invalidOption(option: "--database", reason: "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, got \(redacted(url))")
        }
        let database = String(parts.path.drop { $0 == "/" })
        return .init(host: host, port: parts.port ?? 5432, username: user, password: parts.password,
                     database: database.isEmpty ? nil : database, tls: .disable)
    }

    // MARK: Schema

    private static func migrate(_ client: PostgresClient, logger: Logger) async throws {
        try await client.withConnection { connection in
            // One node at a time: concurrent CREATE … IF NOT EXISTS can still collide.
            _ = try await connection.query("SELECT pg_advisory_lock(7243911)", logger: logger)
            do {
                for statement: PostgresQuery in [
                    """
                    CREATE TABLE IF NOT EXISTS deltaplan_job (
                        seq BIGSERIAL UNIQUE, id TEXT PRIMARY KEY, kind TEXT NOT NULL, parameters TEXT NOT NULL,
                        state TEXT NOT NULL, progress DOUBLE PRECISION NOT NULL DEFAULT 0,
                        progress_message TEXT NOT NULL DEFAULT '', created_at DOUBLE PRECISION NOT NULL,
                        started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, error TEXT, result TEXT,
                        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE, attempts INTEGER NOT NULL DEFAULT 0,
                        owner TEXT, lease_until DOUBLE PRECISION)
                    """,
                    "CREATE INDEX IF NOT EXISTS deltaplan_job_queue ON deltaplan_job (state, created_at, seq)",
                    """
                    CREATE TABLE IF NOT EXISTS deltaplan_job_run (
                        job_id TEXT NOT NULL REFERENCES deltaplan_job (id), node TEXT NOT NULL,
                        claimed_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION, outcome TEXT)
                    """,
                    "CREATE INDEX IF NOT EXISTS deltaplan_job_run_job ON deltaplan_job_run (job_id)",
                ] {
                    _ = try await connection.query(statement, logger: logger)
                }
            } catch {
                _ = try? await connection.query("SELECT pg_advisory_unlock(7243911)", logger: logger)
                throw error
            }
            _ = try await connection.query("SELECT pg_advisory_unlock(7243911)", logger: logger)
        }
    }

    private static let columns = """
        id, kind, parameters, state, progress, progress_message, created_at, started_at, finished_at, error, result, \
        cancel_requested, attempts
        """

    private static let now = "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION"

    private func jobs(_ query: PostgresQuery) async throws -> [Job] {
        var out: [Job] = []
        let rows = try await client.query(query, logger: logger)
        for try await (id, kind, parameters, state, progress, message, created, started, finished, error, result, cancel, attempts)
            in rows.decode((String, String, String, String, Double, String, Double, Double?, Double?, String?, String?, Bool, Int).self) {
            guard let kind = JobKind(rawValue: kind), let state = JobState(rawValue: state) else { continue }
            out.append(Job(id: id, kind: kind, parameters: Data(parameters.utf8), state: state, progress: progress,
                           progressMessage: message, createdAt: created, startedAt: started, finishedAt: finished, error: error,
                           result: result, cancelRequested: cancel, attempts: attempts))
        }
        return out
    }

    private func execute(_ query: PostgresQuery) async throws {
        _ = try await client.query(query, logger: logger)
    }

    // MARK: API side

    public func create(kind: JobKind, parameters: Data) async throws -> Job {
        let id = UUID().uuidString.lowercased()
        let text = String(decoding: parameters, as: UTF8.self)
        let created = try await jobs("""
            INSERT INTO deltaplan_job (id, kind, parameters, state, created_at)
            VALUES (\(id), \(kind.rawValue), \(text), 'queued', \(unescaped: Self.now)) RETURNING \(unescaped: Self.columns)
            """)
        return created[0]
    }

    public func job(id: String) async throws -> Job? {
        try await jobs("SELECT \(unescaped: Self.columns) FROM deltaplan_job WHERE id = \(id)").first
    }

    public func jobs(state: JobState?, kind: JobKind?, limit: Int) async throws -> [Job] {
        try await jobs("""
            SELECT \(unescaped: Self.columns) FROM deltaplan_job
            WHERE (\(state?.rawValue)::TEXT IS NULL OR state = \(state?.rawValue)) AND (\(kind?.rawValue)::TEXT IS NULL OR kind = \(kind?.rawValue))
            ORDER BY created_at DESC, seq DESC LIMIT \(limit)
            """)
    }

    public func countsByState() async throws -> [JobState: Int] {
        var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
        let rows = try await client.query("SELECT state, COUNT(*)::BIGINT FROM deltaplan_job GROUP BY state", logger: logger)
        for try await (state, n) in rows.decode((String, Int).self) {
            if let state = JobState(rawValue: state) { counts[state] = n }
        }
        return counts
    }

    public func cancel(id: String) async throws -> CancelOutcome {
        // Queued: cancelled at once. Running: asked (its node stops it at its next check).
        let changed = try await jobs("""
            UPDATE deltaplan_job SET
                state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                finished_at = CASE WHEN state = 'queued' THEN \(unescaped: Self.now) ELSE finished_at END,
                progress_message = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE progress_message END,
                cancel_requested = cancel_requested OR state = 'running'
            WHERE id = \(id) AND state IN ('queued', 'running')
            RETURNING \(unescaped: Self.columns)
            """)
        if let job = changed.first { return job.state == .cancelled ? .cancelled(job) : .requested(job) }
        guard let job = try await job(id: id) else { return .notFound }
        return .finished(job)
    }

    // MARK: Worker side

    public func claimNext() throws -> Job? {
        try blocking { [self] in
            // Expired leases of jobs that cannot resume (or whose cancel was asked) end here.
            try await execute("""
                WITH ended AS (
                    UPDATE deltaplan_job SET
                        state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                        finished_at = \(unescaped: Self.now), owner = NULL, lease_until = NULL,
                        error = CASE WHEN cancel_requested THEN 'cancelled by request'
                            ELSE 'its node stopped while it ran; ' || kind || ' jobs cannot resume, submit it again' END
                    WHERE state = 'running' AND lease_until < \(unescaped: Self.now) AND (cancel_requested OR NOT (kind = ANY(\(resumable))))
                    RETURNING id)
                UPDATE deltaplan_job_run SET ended_at = \(unescaped: Self.now), outcome = 'lease expired'
                FROM ended WHERE deltaplan_job_run.job_id = ended.id AND deltaplan_job_run.ended_at IS NULL
                """)
            let claimed = try await jobs("""
                UPDATE deltaplan_job SET state = 'running', owner = \(node), lease_until = \(unescaped: Self.now) + \(leaseSeconds),
                    started_at = \(unescaped: Self.now), attempts = attempts + 1, error = NULL,
                    progress_message = CASE WHEN state = 'running' THEN 'resumed: the node running it stopped' ELSE progress_message END
                WHERE id = (
                    SELECT id FROM deltaplan_job
                    WHERE state = 'queued' OR (state = 'running' AND lease_until < \(unescaped: Self.now))
                    ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                RETURNING \(unescaped: Self.columns)
                """)
            guard let job = claimed.first else { return nil }
            try await execute("""
                UPDATE deltaplan_job_run SET ended_at = \(unescaped: Self.now), outcome = 'lease expired'
                WHERE job_id = \(job.id) AND ended_at IS NULL
                """)
            try await execute("INSERT INTO deltaplan_job_run (job_id, node, claimed_at) VALUES (\(job.id), \(node), \(unescaped: Self.now))")
            return job
        }
    }

    public func updateProgress(id: String, fraction: Double, message: String) throws {
        try blocking { [self] in
            try await execute("""
                UPDATE deltaplan_job SET progress = \(min(max(fraction, 0), 1)), progress_message = \(message)
                WHERE id = \(id) AND state = 'running' AND owner = \(node)
                """)
        }
    }

    public func finish(id: String, state: JobState, error: String?, result: String?) throws -> Job? {
        precondition(state.isFinished, "finish(id:state:) needs a final state, got \(state)")
        return try blocking { [self] in
            let done = try await jobs("""
                UPDATE deltaplan_job SET state = \(state.rawValue), finished_at = \(unescaped: Self.now), error = \(error), result = \(result),
                    progress = CASE WHEN \(state == .succeeded) THEN 1 ELSE progress END, owner = NULL, lease_until = NULL
                WHERE id = \(id) AND state = 'running' AND owner = \(node)
                RETURNING \(unescaped: Self.columns)
                """)
            try await execute("""
                UPDATE deltaplan_job_run SET ended_at = \(unescaped: Self.now), outcome = \(done.isEmpty ? "lost its lease" : state.rawValue)
                WHERE job_id = \(id) AND node = \(node) AND ended_at IS NULL
                """)
            return done.first
        }
    }

    public func requeue(id: String, message: String) throws {
        try blocking { [self] in
            try await execute("""
                UPDATE deltaplan_job SET state = 'queued', progress_message = \(message), owner = NULL, lease_until = NULL
                WHERE id = \(id) AND state = 'running' AND owner = \(node)
                """)
            try await execute("""
                UPDATE deltaplan_job_run SET ended_at = \(unescaped: Self.now), outcome = 'requeued'
                WHERE job_id = \(id) AND node = \(node) AND ended_at IS NULL
                """)
        }
    }

    public func jobNow(id: String) throws -> Job? {
        try blocking { [self] in try await job(id: id) }
    }

    /// Every third of the lease, extends the leases of the jobs this node runs; returns when the
    /// store is gone or shut down.
    private func renewLeases() {
        while !tasks.isCancelled {
            Thread.sleep(forTimeInterval: leaseSeconds / 3)
            do {
                try blocking { [self] in
                    try await execute("""
                        UPDATE deltaplan_job SET lease_until = \(unescaped: Self.now) + \(leaseSeconds)
                        WHERE owner = \(node) AND state = 'running'
                        """)
                }
            } catch {
                logger.warning("cannot renew the leases of node \(node): \(error)")
            }
        }
    }
}

/// Runs `body` on the cooperative pool and waits for it: for the synchronous worker side, whose
/// callers are dedicated threads (never the event loop or the pool itself).
private func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    let box = ResultBox<T>()
    Task {
        do { box.result = .success(try await body()) } catch { box.result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try box.result!.get()
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    var result: Result<T, any Error>?
}
