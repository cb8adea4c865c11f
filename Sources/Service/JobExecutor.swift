import Foundation

/// Where analysis and compression jobs run (`deltaplan serve --executor`): on this server's worker
/// threads, or as Slurm array jobs. Every other kind of job runs on the workers either way.
public enum JobExecutor: Sendable, Equatable {
    /// The worker threads of this server (the default).
    case local
    /// `sbatch` array jobs of `analyze --shard I/N` / `compress --shard I/N` plus a dependent
    /// `--finalize` job; the worker that claims the job submits them and follows them.
    case slurm(SlurmConfiguration)
}

/// `--executor`: the name of a ``JobExecutor``, parsed and printed here only.
public enum ExecutorKind: String, Sendable, CaseIterable {
    case local, slurm
}

/// How `serve --executor slurm` submits and follows its Slurm jobs.
public struct SlurmConfiguration: Sendable, Equatable {
    /// Array tasks per job (`--slurm-shards`): each runs `--shard I/N`.
    public var shards: Int
    /// The `deltaplan` executable every node runs: serve's own binary; every node must reach it at
    /// this path.
    public var executable: URL
    /// Seconds between two looks at a job's state (`squeue`, then `sacct` for what squeue forgot).
    public var pollSeconds: Double
    /// sbatch options added to every submission (`--slurm-option`), as given: the site's partition,
    /// account, CPUs and memory per task, time limit (the shard tasks run `--threads` =
    /// `SLURM_CPUS_PER_TASK`).
    public var sbatchOptions: [String]

    public static let defaultShards = 4
    public static let defaultPollSeconds = 5.0
    /// The sbatch options the service sets itself, which `sbatchOptions` may not repeat.
    public static let reservedOptions = ["--array", "--chdir", "--dependency", "--export", "--job-name", "--kill-on-invalid-dep",
                                         "--output", "--parsable", "--wrap"]

    public init(shards: Int = Self.defaultShards, executable: URL, pollSeconds: Double = Self.defaultPollSeconds,
                sbatchOptions: [String] = []) {
        precondition(shards >= 1, "a Slurm array needs at least one shard, got \(shards)")
        precondition(pollSeconds > 0 && pollSeconds.isFinite, "the poll interval must be positive, got \(pollSeconds)")
        precondition(sbatchOptions.allSatisfy { Self.optionProblem($0) == nil }, "invalid sbatch options \(sbatchOptions)")
        self.shards = shards
        self.executable = executable
        self.pollSeconds = pollSeconds
        self.sbatchOptions = sbatchOptions
    }

    /// Why `option` cannot be added to the service's submissions, or nil: it must be one long
    /// option (`--name` or `--name=value`) that the service does not set itself.
    public static func optionProblem(_ option: String) -> String? {
        guard option.hasPrefix("--"), option.count > 2 else {
            return "'\(option)' is not a long sbatch option (--name=value, e.g. --partition=cpu or --mem=16G)"
        }
        let name = String(option.prefix { $0 != "=" })
        if reservedOptions.contains(name) { return "'\(option)': the service sets \(name) itself" }
        return nil
    }
}
