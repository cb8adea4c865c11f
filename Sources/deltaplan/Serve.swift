import ArgumentParser
import Foundation
import Service

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the optimizer service: an HTTP API with analyses and plans as persisted jobs.",
        discussion: """
            Jobs are kept in DATA-DIR/jobs.sqlite and resume after a restart; with --database, in a \
            PostgreSQL database that several serve processes share (a job is claimed under a lease its \
            node renews; the jobs of a node that dies resume on another). Request paths must lie \
            under an --allow-root (symlinks followed). The API is described at GET /v1/openapi.json.

            Example:
              deltaplan serve --data-dir /var/lib/deltaplan --allow-root /models --token-file token.txt
            """)

    @Option(help: "Address to bind (loopback by default).")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port).")
    var port: Int = 8080

    @Option(help: "Directory for the job database, analysis stores and plans.")
    var dataDir: String

    @Option(help: "A directory whose files requests may name; repeat for several.")
    var allowRoot: [String] = []

    @Option(help: "File with a bearer token; when given, every request but /healthz must carry it.")
    var tokenFile: String?

    @Option(help: "Worker threads running jobs (analyses are CPU-heavy).")
    var workers: Int = 1

    @Option(help: ArgumentHelp(
        "Keep the jobs in this PostgreSQL database (postgres://USER:PASSWORD@HOST:PORT/DB) instead of DATA-DIR/jobs.sqlite: several serve processes sharing it (and DATA-DIR, on shared storage) share one queue.",
        valueName: "url"))
    var database: String?

    @Option(help: "With --database: seconds a running job stays this node's without renewal (renewed every third); a node that dies loses its jobs to the others after it.")
    var leaseSeconds: Double = 30

    func validate() throws {
        guard workers >= 1 else { throw ValidationError("--workers must be at least 1, got \(workers)") }
        guard leaseSeconds > 0, leaseSeconds.isFinite else { throw ValidationError("--lease-seconds must be positive, got \(leaseSeconds)") }
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
    }

    func run() async throws {
        do {
            let configuration = ServiceConfiguration(
                host: host, port: port, dataDirectory: URL(fileURLWithPath: dataDir, isDirectory: true),
                allowedRoots: allowRoot.map { URL(fileURLWithPath: $0, isDirectory: true) },
                token: try tokenFile.map { try ServiceConfiguration.readToken(from: URL(fileURLWithPath: $0)) },
                workers: workers, database: database, leaseSeconds: leaseSeconds)
            let app = try buildApplication(configuration, onServerRunning: { port in
                // Unbuffered: a supervisor reading the port (with --port 0) sees the line at once.
                say("deltaplan serve: listening on http://\(host):\(port)")
            })
            try await app.runService()
        } catch let error as ServiceSetupError {
            throw CLIFailure(error)
        }
    }
}
