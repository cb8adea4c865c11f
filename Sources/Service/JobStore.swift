import Foundation
import GRDB

/// The job table in `<data-dir>/jobs.sqlite`, through GRDB: the ``JobQueue`` of one node (WAL mode: readers never wait for the
/// writer). Every state change is one transaction, so a crash leaves each job in one well-defined
/// state; ``recoverInterrupted(resumable:)`` repairs the `running` ones at the next start.
///
/// Thread-safe: `DatabasePool` serializes writes and runs reads concurrently.
public final class JobStore: JobQueue {
    public let path: String
    public var location: String { path }
    private let pool: DatabasePool

    public init(path: String) throws(ServiceSetupError) {
        self.path = path
        do {
            var configuration = Configuration()
            configuration.busyMode = .timeout(10)
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw .database(path: path, reason: "\(error)")
        }
    }

    /// Schema history; never edit a registered migration, add a new one.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: jobs") { db in
            try db.create(table: "job") { t in
                t.column("id", .text).primaryKey()
                t.column("kind", .text).notNull()
                t.column("parameters", .text).notNull()
                t.column("state", .text).notNull().indexed()
                t.column("progress", .double).notNull().defaults(to: 0)
                t.column("progressMessage", .text).notNull().defaults(to: "")
                t.column("createdAt", .double).notNull()
                t.column("startedAt", .double)
                t.column("finishedAt", .double)
                t.column("error", .text)
                t.column("result", .text)
                t.column("cancelRequested", .boolean).notNull().defaults(to: false)
                t.column("attempts", .integer).notNull().defaults(to: 0)
            }
        }
        return migrator
    }

    private static func job(_ row: Row) -> Job? {
        guard let kind = JobKind(rawValue: row["kind"]), let state = JobState(rawValue: row["state"]) else { return nil }
        let parameters: String = row["parameters"]
        return Job(id: row["id"], kind: kind, parameters: Data(parameters.utf8), state: state, progress: row["progress"],
                   progressMessage: row["progressMessage"], createdAt: row["createdAt"], startedAt: row["startedAt"],
                   finishedAt: row["finishedAt"], error: row["error"], result: row["result"],
                   cancelRequested: row["cancelRequested"], attempts: row["attempts"])
    }

    private static func fetch(_ db: Database, _ id: String) throws -> Job? {
        try Row.fetchOne(db, sql: "SELECT * FROM job WHERE id = ?", arguments: [id]).flatMap(job)
    }

    private static var now: Double { Date().timeIntervalSince1970 }

    // MARK: API side (async: never blocks the event loop)

    public func create(kind: JobKind, parameters: Data) async throws -> Job {
        let id = UUID().uuidString.lowercased()
        let text = String(decoding: parameters, as: UTF8.self)
        let created = Self.now
        return try await pool.write { db in
            try db.execute(sql: "INSERT INTO job (id, kind, parameters, state, createdAt) VALUES (?, ?, ?, 'queued', ?)",
                           arguments: [id, kind.rawValue, text, created])
            return try Self.fetch(db, id)!
        }
    }

    public func job(id: String) async throws -> Job? {
        try await pool.read { db in try Self.fetch(db, id) }
    }

    /// Newest first.
    public func jobs(state: JobState?, kind: JobKind?, limit: Int) async throws -> [Job] {
        try await pool.read { db in
            var sql = "SELECT * FROM job"
            var conditions: [String] = [], arguments: StatementArguments = []
            if let state { conditions.append("state = ?"); arguments += [state.rawValue] }
            if let kind { conditions.append("kind = ?"); arguments += [kind.rawValue] }
            if !conditions.isEmpty { sql += " WHERE " + conditions.joined(separator: " AND ") }
            sql += " ORDER BY createdAt DESC, rowid DESC LIMIT ?"
            arguments += [limit]
            return try Row.fetchAll(db, sql: sql, arguments: arguments).compactMap(Self.job)
        }
    }

    /// Number of jobs in each state (every state present, zero when none).
    public func countsByState() async throws -> [JobState: Int] {
        try await pool.read { db in
            var counts = Dictionary(uniqueKeysWithValues: JobState.allCases.map { ($0, 0) })
            for row in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM job GROUP BY state") {
                if let state = JobState(rawValue: row["state"]) { counts[state] = row["n"] }
            }
            return counts
        }
    }

    public func cancel(id: String) async throws -> CancelOutcome {
        let finished = Self.now
        return try await pool.write { db in
            guard let job = try Self.fetch(db, id) else { return .notFound }
            switch job.state {
            case .queued:
                try db.execute(sql: "UPDATE job SET state = 'cancelled', finishedAt = ?, progressMessage = 'cancelled before it started' WHERE id = ?",
                               arguments: [finished, id])
                return .cancelled(try Self.fetch(db, id)!)
            case .running:
                try db.execute(sql: "UPDATE job SET cancelRequested = 1 WHERE id = ?", arguments: [id])
                return .requested(try Self.fetch(db, id)!)
            case .succeeded, .failed, .cancelled:
                return .finished(job)
            }
        }
    }

    // MARK: Worker side (synchronous: workers are dedicated threads)

    /// Atomically takes the oldest queued job and marks it running.
    public func claimNext() throws -> Job? {
        let started = Self.now
        return try pool.write { db in
            guard let id = try String.fetchOne(db, sql: "SELECT id FROM job WHERE state = 'queued' ORDER BY createdAt, rowid LIMIT 1") else {
                return nil
            }
            try db.execute(sql: "UPDATE job SET state = 'running', startedAt = ?, attempts = attempts + 1, error = NULL WHERE id = ?",
                           arguments: [started, id])
            return try Self.fetch(db, id)
        }
    }

    public func updateProgress(id: String, fraction: Double, message: String) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE job SET progress = ?, progressMessage = ? WHERE id = ? AND state = 'running'",
                           arguments: [min(max(fraction, 0), 1), message, id])
        }
    }

    /// Ends a running job. Returns the job as stored.
    @discardableResult
    public func finish(id: String, state: JobState, error: String?, result: String?) throws -> Job? {
        precondition(state.isFinished, "finish(id:state:) needs a final state, got \(state)")
        let finished = Self.now
        return try pool.write { db in
            try db.execute(
                sql: "UPDATE job SET state = ?, finishedAt = ?, error = ?, result = ?, progress = CASE WHEN ? THEN 1 ELSE progress END WHERE id = ?",
                arguments: [state.rawValue, finished, error, result, state == .succeeded, id])
            return try Self.fetch(db, id)
        }
    }

    /// Puts a running job back in the queue (shutdown while it ran; it resumes at the next start).
    public func requeue(id: String, message: String) throws {
        try pool.write { db in
            try db.execute(sql: "UPDATE job SET state = 'queued', progressMessage = ? WHERE id = ? AND state = 'running'",
                           arguments: [message, id])
        }
    }

    /// At start, before any worker runs: every job still `running` was interrupted by a crash.
    /// Cancel-requested ones become cancelled, resumable kinds go back to the queue, the others fail
    /// with the reason. Returns the repaired jobs (as they were before) for cleanup and logging.
    @discardableResult
    public func recoverInterrupted(resumable: @Sendable (JobKind) -> Bool) throws -> [Job] {
        let finished = Self.now
        return try pool.write { db in
            let interrupted = try Row.fetchAll(db, sql: "SELECT * FROM job WHERE state = 'running'").compactMap(Self.job)
            for job in interrupted {
                if job.cancelRequested {
                    try db.execute(sql: "UPDATE job SET state = 'cancelled', finishedAt = ? WHERE id = ?", arguments: [finished, job.id])
                } else if resumable(job.kind) {
                    try db.execute(sql: "UPDATE job SET state = 'queued', progressMessage = 'interrupted by a server stop; resumes' WHERE id = ?",
                                   arguments: [job.id])
                } else {
                    try db.execute(
                        sql: "UPDATE job SET state = 'failed', finishedAt = ?, error = ? WHERE id = ?",
                        arguments: [finished, "interrupted by a server stop while running; \(job.kind.rawValue) jobs cannot resume, submit it again", job.id])
                }
            }
            return interrupted
        }
    }

    /// Synchronous lookup, for tests and workers.
    public func jobNow(id: String) throws -> Job? {
        try pool.read { db in try Self.fetch(db, id) }
    }

    /// Test support: forces a job's state as a crashed process would have left it.
    func forceState(id: String, _ state: JobState) throws {
        try pool.write { db in try db.execute(sql: "UPDATE job SET state = ? WHERE id = ?", arguments: [state.rawValue, id]) }
    }
}
