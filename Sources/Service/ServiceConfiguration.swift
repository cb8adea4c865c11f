import Foundation

/// How `deltaplan serve` runs: where it listens, where it keeps its jobs, which server-side paths
/// requests may name, and how many analyses run at once.
public struct ServiceConfiguration: Sendable {
    /// Bind address; loopback by default. Port 0 lets the system choose (tests).
    public var host: String
    public var port: Int
    /// Holds `jobs.sqlite`, `analyses/<id>/` (spectrum stores) and `plans/<id>.json`.
    public var dataDirectory: URL
    /// Paths in requests must resolve (symlinks followed) to one of these directories or below.
    public var allowedRoots: [URL]
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>`.
    public var token: String?
    /// Worker threads for jobs (CPU-heavy; they never run on the event loop).
    public var workers: Int
    /// Largest accepted request body, in bytes (413 above).
    public var maxBodyBytes: Int
    /// Where the jobs are kept: nil for `jobs.sqlite` in the data directory (one node), or a
    /// `postgres://` URL whose database several nodes share (``PostgresJobStore``; the data
    /// directory must then be shared storage, where each node finds the others' stores).
    public var database: String?
    /// With a shared database: how long a running job stays this node's without a renewal.
    public var leaseSeconds: Double
    /// Where analyses and compressions run: the workers, or Slurm array jobs (the data directory
    /// must then be on storage every node mounts at the same path).
    public var executor: JobExecutor

    public init(host: String = "127.0.0.1", port: Int = 8080, dataDirectory: URL, allowedRoots: [URL] = [],
                token: String? = nil, workers: Int = 1, maxBodyBytes: Int = 1 << 20, database: String? = nil,
                leaseSeconds: Double = 30, executor: JobExecutor = .local) {
        self.host = host
        self.port = port
        self.dataDirectory = dataDirectory
        self.allowedRoots = allowedRoots
        self.token = token
        self.workers = workers
        self.maxBodyBytes = maxBodyBytes
        self.database = database
        self.leaseSeconds = leaseSeconds
        self.executor = executor
    }

    /// Reads a bearer token from `file`: its content with surrounding whitespace removed.
    public static func readToken(from file: URL) throws(ServiceSetupError) -> String {
        let text: String
        do { text = try String(contentsOf: file, encoding: .utf8) } catch {
            throw .unreadableTokenFile(path: file.path, reason: error.localizedDescription)
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw .unreadableTokenFile(path: file.path, reason: "the file is empty") }
        return token
    }
}

/// Why the service cannot start. Each case names the option or file to fix.
public enum ServiceSetupError: Error, Equatable, CustomStringConvertible {
    case unreadableTokenFile(path: String, reason: String)
    case invalidOption(option: String, reason: String)
    case database(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadableTokenFile(path, reason): "--token-file \(path): \(reason)"
        case let .invalidOption(option, reason): "\(option): \(reason)"
        case let .database(path, reason): "job database \(path): \(reason)"
        }
    }
}
