import Checkpoint
import Foundation

/// The Slurm jobs of one service job: an array job of `shards` tasks (task I runs `--shard I/N`)
/// and the finalize job that depends on it. Kept in `<data-dir>/slurm/<job id>/submission.json`,
/// written as soon as sbatch returns each id, so that a restarted server (or, with a shared
/// database, another node) follows the jobs instead of submitting them again.
struct SlurmSubmission: Codable, Sendable, Equatable {
    var shards: Int
    var arrayJob: String
    var finalizeJob: String?

    /// Both ids, for squeue and scancel.
    var jobs: [String] { [arrayJob] + (finalizeJob.map { [$0] } ?? []) }

    /// What the states of the jobs say about the service job. A shard that ended without
    /// completing decides first (the lowest index), then the finalize job's state.
    func outcome(_ states: [String: SlurmJobState]) -> SlurmOutcome {
        let tasks = (1...shards).map { states["\(arrayJob)_\($0)"] }
        for (offset, state) in tasks.enumerated() {
            if case let .ended(name) = state { return .shardEnded(index: offset + 1, state: name) }
        }
        let done = tasks.filter { $0 == .completed }.count
        switch finalizeJob.flatMap({ states[$0] }) {
        case .completed: return .completed
        case let .ended(name): return .finalizeEnded(state: name)
        case .active: return .running(shardsDone: done)
        case nil:
            // Forgotten (squeue's memory and no accounting), or not submitted yet.
            let anyActive = tasks.contains { if case .active = $0 { true } else { false } }
            return anyActive || finalizeJob == nil ? .running(shardsDone: done) : .unknown
        }
    }
}

/// What a look at the Slurm jobs of a service job found.
enum SlurmOutcome: Equatable {
    /// Shards or the finalize job still pending or running; `shardsDone` tasks have completed.
    case running(shardsDone: Int)
    /// The finalize job completed (its result is then verified).
    case completed
    /// Array task `index` ended FAILED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, CANCELLED, … .
    case shardEnded(index: Int, state: String)
    /// The finalize job ended without completing (CANCELLED when its dependency can never be met).
    case finalizeEnded(state: String)
    /// Slurm knows none of the jobs any more (squeue forgot them and sacct has no record).
    case unknown
}

/// `<data-dir>/slurm/<job id>/`: the submission record, the two batch scripts and the jobs' logs.
/// On storage every node mounts (as the data directory must be for `--executor slurm`).
struct SlurmDirectory {
    let url: URL

    init(_ context: JobContext) {
        url = context.dataDirectory.appendingPathComponent("slurm", isDirectory: true).appendingPathComponent(context.id, isDirectory: true)
    }

    var record: URL { url.appendingPathComponent("submission.json") }
    var shardScript: URL { url.appendingPathComponent("shard.sh") }
    var finalizeScript: URL { url.appendingPathComponent("finalize.sh") }
    /// sbatch's `--output` patterns: `%A` the array job, `%a` the task, `%j` the job id.
    var shardLogPattern: String { url.appendingPathComponent("shard-%A_%a.out").path }
    var finalizeLogPattern: String { url.appendingPathComponent("finalize-%j.out").path }

    func shardLog(_ submission: SlurmSubmission, index: Int) -> URL {
        url.appendingPathComponent("shard-\(submission.arrayJob)_\(index).out")
    }

    func finalizeLog(_ job: String) -> URL { url.appendingPathComponent("finalize-\(job).out") }

    /// The record, nil when none was written (the job was never submitted).
    func read() throws -> SlurmSubmission? {
        guard FileManager.default.fileExists(atPath: record.path) else { return nil }
        do { return try JSONDecoder().decode(SlurmSubmission.self, from: Data(contentsOf: record)) } catch {
            throw JobFailure("cannot read the Slurm submission record \(record.path): \(error.localizedDescription)")
        }
    }

    func write(_ submission: SlurmSubmission) throws {
        try AtomicFile.write(data: try submission.parametersJSON(), to: record)
    }
}
