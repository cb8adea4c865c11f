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

            With --executor slurm, analyses and compressions run as Slurm array jobs instead: the \
            worker that takes such a job submits --slurm-shards tasks of `analyze|compress --shard I/N` \
            and a dependent `--finalize` job (sbatch, with every --slurm-option; sbatch's own variables \
            such as SBATCH_PARTITION apply too), follows them with squeue (sacct for jobs squeue forgot), and cancels them with \
            scancel. The jobs run this executable, and write into DATA-DIR: both must be at the same \
            path on every node. Their ids, scripts and logs are in DATA-DIR/slurm/JOB-ID/; a restarted \
            server follows the jobs it had submitted. Each is followed on a thread of its own: the workers \
            run the other jobs meanwhile.

            Examples:
              deltaplan serve --data-dir /var/lib/deltaplan --allow-root /models --token-file token.txt
              deltaplan serve --data-dir /shared/deltaplan --allow-root /shared/models --executor slurm --slurm-shards 8 \\
                --slurm-option=--cpus-per-task=4 --slurm-option=--mem=8G
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

    @Option(help: "Where analyses and compressions run: local (the worker threads) or slurm (array jobs submitted with sbatch).")
    var executor: ExecutorKind = .local

    @Option(help: ArgumentHelp("With --executor slurm: shards (array tasks) per analysis or compression (default: \(SlurmConfiguration.defaultShards)).",
                               valueName: "n"))
    var slurmShards: Int?

    @Option(help: ArgumentHelp("With --executor slurm: seconds between two looks at a job's Slurm state (default: \(Int(SlurmConfiguration.defaultPollSeconds))).",
                               valueName: "seconds"))
    var slurmPollSeconds: Double?

    @Option(parsing: .unconditionalSingleValue, help: ArgumentHelp("With --executor slurm: an sbatch option for every submission, e.g. --slurm-option=--partition=cpu --slurm-option=--cpus-per-task=8 --slurm-option=--mem=16G (repeatable; shard tasks run with --threads = the task's CPUs).",
                               valueName: "--name=value"))
    var slurmOption: [String] = []

    func validate() throws {
        if executor != .slurm {
            for (given, flag) in [(slurmShards != nil, "--slurm-shards"), (slurmPollSeconds != nil, "--slurm-poll-seconds"),
                                  (!slurmOption.isEmpty, "--slurm-option")] where given {
                throw ValidationError("\(flag) needs --executor slurm")
            }
        }
        for option in slurmOption {
            if let problem = SlurmConfiguration.optionProblem(option) { throw ValidationError("--slurm-option \(problem)") }
        }
        if let slurmShards, slurmShards < 1 { throw ValidationError("--slurm-shards must be at least 1, got \(slurmShards)") }
        if let slurmPollSeconds, !(slurmPollSeconds > 0 && slurmPollSeconds.isFinite) {
            throw ValidationError("--slurm-poll-seconds must be positive, got \(slurmPollSeconds)")
        }
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
                workers: workers, database: database, leaseSeconds: leaseSeconds, executor: try executorConfiguration())
            let app = try buildApplication(configuration, onServerRunning: { port in
                // Unbuffered: a supervisor reading the port (with --port 0) sees the line at once.
                say("deltaplan serve: listening on http://\(host):\(port)")
            })
            try await app.runService()
        } catch let error as ServiceSetupError {
            throw CLIFailure(error)
        }
    }

    /// The executor of `--executor`; Slurm's jobs run this very executable.
    private func executorConfiguration() throws -> JobExecutor {
        switch executor {
        case .local: return .local
        case .slurm:
            let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")).map { URL(fileURLWithPath: $0) }
                ?? Bundle.main.executableURL
            guard let executable else { throw CLIFailure("--executor slurm: cannot find the path of this executable, which the Slurm jobs run") }
            return .slurm(SlurmConfiguration(shards: slurmShards ?? SlurmConfiguration.defaultShards, executable: executable,
                                             pollSeconds: slurmPollSeconds ?? SlurmConfiguration.defaultPollSeconds,
                                             sbatchOptions: slurmOption))
        }
    }
}
