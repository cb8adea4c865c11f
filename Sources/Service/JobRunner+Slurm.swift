import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import Optimizer
import Pipeline

extension JobRunner {
    /// An analysis or compression run as Slurm jobs (`serve --executor slurm`): an array job whose
    /// task I runs `deltaplan analyze|compress … --shard I/N`, and a finalize job
    /// (`--dependency=afterok`, `--kill-on-invalid-dep=yes`) that runs `--finalize`, both
    /// submitted by the worker that claims the job and followed (``SlurmJob``) on a thread of their
    /// own, so that the worker goes on with the next job.
    /// The commands are the CLI's, with the options the local runner gives the library, so the
    /// store or artifact is the local executor's, byte for byte.
    ///
    /// Resumable: each job id is recorded as soon as sbatch prints it, and a restarted server
    /// follows the jobs it finds recorded instead of submitting them again (a crash between sbatch
    /// printing an id and the record reaching the disk would submit that job twice). A cancel runs
    /// `scancel` on both jobs, waits for Slurm to end them, then removes the partial output.
    static func slurm(_ kind: JobKind, _ configuration: SlurmConfiguration, commands: SlurmCommands = SlurmCommands()) -> JobRunner {
        precondition(kind == .analysis || kind == .compression, "only analyses and compressions run on Slurm, not \(kind.rawValue) jobs")
        return JobRunner(resumable: true, remote: true) { context in
            try SlurmJob(context: context, configuration: configuration, commands: commands).run()
        } discard: { context in
            SlurmJob(context: context, configuration: configuration, commands: commands).discard()
        }
    }
}

extension JobRunner {
    /// This (local) runner, failing a job whose Slurm jobs a server with `--executor slurm` submitted
    /// (a restart with `--executor local` while they ran): they may still write its output.
    func refusingSlurmSubmissions() -> JobRunner {
        let run = self.run
        return JobRunner(resumable: resumable, remote: remote, run: { context in
            if let submission = try? SlurmDirectory(context).read() {
                throw JobFailure("this job was submitted to Slurm (array job \(submission.arrayJob), finalize job \(submission.finalizeJob ?? "-")) "
                                 + "by a server with --executor slurm; restart serve with --executor slurm to follow it, or submit it again")
            }
            return try run(context)
        }, discard: discard)
    }
}

/// What one service job runs on Slurm: the command of a shard (without `--shard`), the finalize
/// command, and the output both write.
struct SlurmStage {
    /// `deltaplan analyze|compress …`: every option but `--shard I/N` and `--threads`.
    var shardCommand: [String]
    var finalizeCommand: [String]
    /// The store or artifact the finalize job completes: the job's result.
    var output: URL
    /// Opens the output as the next stages will (complete store, every matrix file's SHA-256;
    /// artifact manifest, sizes): a completed finalize job whose output does not open fails the job.
    var verify: () throws -> Void

    init(_ context: JobContext, executable: URL) throws {
        switch context.kind {
        case .analysis:
            let p = try context.decodeParameters(AnalysisJobParameters.self)
            let store = context.analysisStore
            var command = [executable.path, "analyze", "--base=\(p.base)", "--finetuned=\(p.finetuned)"]
            if let calibration = p.calibration { command.append("--calibration=\(calibration)") }
            command += p.include.map { "--include=\($0)" } + p.exclude.map { "--exclude=\($0)" }
            if let maxRank = p.maxRank { command.append("--max-rank=\(maxRank)") }
            if p.skipMismatched { command.append("--skip-mismatched") }
            if p.allowMissingCalibration { command.append("--allow-missing-calibration") }
            shardCommand = command + ["--seed=\(p.seed)", "--out=\(store.path)"]
            finalizeCommand = [executable.path, "analyze", "--finalize=\(store.path)"]
            output = store
            verify = {
                let opened = try SpectrumStore(at: store)
                for record in opened.matrices { try opened.verify(record) }
            }
        case .compression:
            let p = try context.decodeParameters(CompressionJobParameters.self)
            let plan = try Plan.read(from: URL(fileURLWithPath: p.planFile))
            let store = try JobRunner.analysisStore(identity: plan.source.hash, in: context.dataDirectory)
            let artifact = JobRunner.artifactDirectory(context)
            var command = [executable.path, "compress", store.url.path, "--plan=\(p.planFile)", "--out=\(artifact.path)",
                           "--base=\(p.base)", "--finetuned=\(p.finetuned)"]
            if let calibration = p.calibration { command.append("--calibration=\(calibration)") }
            if let method = p.method { command.append("--method=\(method.rawValue)") }
            if let order = p.order { command.append("--order=\(order.rawValue)") }
            if let dampening = p.dampening { command.append("--dampening=\(dampening)") }
            shardCommand = command
            finalizeCommand = command + ["--finalize"]
            output = artifact
            verify = { _ = try Artifact(at: artifact) }
        default:
            preconditionFailure("only analyses and compressions run on Slurm, not \(context.kind.rawValue) jobs")
        }
    }

    /// What a cancel removes: the output and, for a compression, its work directory.
    static func partialOutputs(_ context: JobContext) -> [URL] {
        switch context.kind {
        case .analysis: [context.analysisStore]
        case .compression:
            [JobRunner.artifactDirectory(context), compressionWorkDirectory(for: JobRunner.artifactDirectory(context))]
        default: []
        }
    }
}

/// One service job on Slurm: submits its jobs (once: see ``SlurmSubmission``), then looks at
/// their states every ``SlurmConfiguration/pollSeconds`` until the finalize job has completed
/// (then verifies the output) or something ended without completing (then fails the job with the
/// Slurm job id, the shard and its log). Runs on a thread of its own (a remote runner: its worker
/// takes the next job meanwhile).
struct SlurmJob {
    let context: JobContext
    let configuration: SlurmConfiguration
    let commands: SlurmCommands
    let directory: SlurmDirectory

    init(context: JobContext, configuration: SlurmConfiguration, commands: SlurmCommands) {
        self.context = context
        self.configuration = configuration
        self.commands = commands
        directory = SlurmDirectory(context)
    }

    /// Lost jobs (``SlurmOutcome/unknown`` with an output that does not open) fail the job after
    /// this many looks in a row.
    static let unknownLooks = 3

    func run() throws -> String {
        let stage = try SlurmStage(context, executable: configuration.executable)
        let submission = try submit(stage)
        var lastMessage = "", lastFraction = 0.0, unknown = 0
        func report(_ fraction: Double, _ message: String) {
            guard message != lastMessage else { return }
            (lastMessage, lastFraction) = (message, fraction)
            context.reportProgress(fraction, message)
        }
        let n = submission.shards, ids = "array job \(submission.arrayJob), finalize job \(submission.finalizeJob ?? "-")"
        while true {
            if context.shouldStop { throw CancellationError() }
            let states: [String: SlurmJobState]
            do { states = try commands.states(of: submission.jobs) } catch {
                report(lastFraction, "Slurm (\(ids)): cannot read the jobs' states, trying again: \(error)")
                try pause()
                continue
            }
            switch submission.outcome(states) {
            case let .running(done):
                report(Double(done) / Double(n), done < n ? "Slurm: \(done) of \(n) shards done (\(ids))"
                                                          : "Slurm: \(n) of \(n) shards done, finalizing (\(ids))")
                unknown = 0
            case .completed:
                do { try stage.verify() } catch {
                    throw JobFailure("Slurm finalize job \(submission.finalizeJob ?? "-") completed, but \(stage.output.path) does not open: \(error)")
                }
                report(1, "Slurm: \(n) of \(n) shards and the finalize job completed (\(ids))")
                return stage.output.path
            case let .shardEnded(index, state):
                let cancelled = cancelQuietly(submission)
                let log = directory.shardLog(submission, index: index)
                throw JobFailure("shard \(index)/\(n) (Slurm job \(submission.arrayJob)_\(index)) ended \(state)"
                                 + (state == "CANCELLED" ? " (cancelled outside the service)" : "")
                                 + "; its log: \(log.path)\(lastLine(of: log)); \(cancelled)")
            case let .finalizeEnded(state):
                let job = submission.finalizeJob ?? "-"
                if state == "CANCELLED" {
                    _ = cancelQuietly(submission)
                    throw JobFailure("Slurm finalize job \(job) was cancelled (a shard of array job \(submission.arrayJob) did not complete, "
                                     + "or it was cancelled outside the service); the logs are in \(directory.url.path)")
                }
                let log = directory.finalizeLog(job)
                throw JobFailure("Slurm finalize job \(job) ended \(state); its log: \(log.path)\(lastLine(of: log))")
            case .unknown:
                if (try? stage.verify()) != nil {
                    report(1, "Slurm: no longer knows the jobs; the output is complete (\(ids))")
                    return stage.output.path
                }
                unknown += 1
                if unknown >= Self.unknownLooks {
                    throw JobFailure("Slurm knows neither \(ids) any more (squeue, sacct) and \(stage.output.path) is not complete; "
                                     + "the logs are in \(directory.url.path)")
                }
            }
            try pause()
        }
    }

    /// The submission recorded for this job, or a new one: the array job, then the finalize job,
    /// each id recorded as soon as sbatch prints it.
    private func submit(_ stage: SlurmStage) throws -> SlurmSubmission {
        var submission: SlurmSubmission
        if let recorded = try directory.read() {
            submission = recorded
            context.reportProgress(0, "Slurm: following array job \(recorded.arrayJob) submitted before the restart")
        } else {
            do {
                try FileManager.default.createDirectory(at: directory.url, withIntermediateDirectories: true)
                try FileManager.default.createDirectory(at: stage.output.deletingLastPathComponent(), withIntermediateDirectories: true)
            } catch {
                throw JobFailure("cannot create \(directory.url.path): \(error.localizedDescription)")
            }
            if context.kind == .compression { try? FileManager.default.removeItem(at: stage.output) }  // as the local runner: a new artifact
            let n = configuration.shards
            try writeScript(directory.shardScript, command: stage.shardCommand, shards: n)
            try writeScript(directory.finalizeScript, command: stage.finalizeCommand, shards: nil)
            let array = try slurm { () throws(SlurmError) in
                try commands.submit(["--export=ALL", "--array=1-\(n)", "--job-name=\(jobName)", "--chdir=\(directory.url.path)",
                                     "--output=\(directory.shardLogPattern)"] + configuration.sbatchOptions + [directory.shardScript.path])
            }
            submission = SlurmSubmission(shards: n, arrayJob: array, finalizeJob: nil)
            try directory.write(submission)
        }
        if submission.finalizeJob == nil {
            let array = submission.arrayJob
            let finalize: String
            do {
                finalize = try slurm { () throws(SlurmError) in
                    try commands.submit(["--export=ALL", "--dependency=afterok:\(array)", "--kill-on-invalid-dep=yes",
                                         "--job-name=\(jobName)-finalize", "--chdir=\(directory.url.path)",
                                         "--output=\(directory.finalizeLogPattern)"] + configuration.sbatchOptions + [directory.finalizeScript.path])
                }
            } catch {
                throw JobFailure("\(error); \(cancelQuietly(submission))")
            }
            submission.finalizeJob = finalize
            try directory.write(submission)
            context.reportProgress(0, "Slurm: submitted \(submission.shards) shards as array job \(array), finalize job \(finalize)")
        }
        return submission
    }

    /// After a cancel (or at start, for a job a crash left cancel-requested): `scancel` both jobs,
    /// wait (at most a minute) until Slurm no longer runs them, then remove the partial output and
    /// this job's Slurm directory.
    func discard() {
        if let submission = try? directory.read() {
            _ = cancelQuietly(submission)
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                guard let states = try? commands.states(of: submission.jobs) else { break }
                if !states.values.contains(where: { if case .active = $0 { true } else { false } }) { break }
                Thread.sleep(forTimeInterval: min(configuration.pollSeconds, 1))
            }
        }
        for url in SlurmStage.partialOutputs(context) + [directory.url] { try? FileManager.default.removeItem(at: url) }
    }

    private var jobName: String { "deltaplan-\(context.kind.rawValue)-\(context.id.prefix(8))" }

    /// `scancel` of the submission's jobs; says what happened, for the job's error message.
    private func cancelQuietly(_ submission: SlurmSubmission) -> String {
        do {
            try commands.cancel(submission.jobs)
            return "scancel \(submission.jobs.joined(separator: " ")) stopped the rest"
        } catch {
            return "and the rest could not be cancelled: \(error)"
        }
    }

    /// Sleeps one poll interval, in slices, so that a cancel or a shutdown is seen within 0.1 s.
    private func pause() throws {
        let deadline = Date().addingTimeInterval(configuration.pollSeconds)
        while Date() < deadline {
            if context.shouldStop { throw CancellationError() }
            Thread.sleep(forTimeInterval: min(0.1, max(0, deadline.timeIntervalSinceNow)))
        }
    }

    /// A batch script running `command` (shell-quoted); with `shards`, one array task's shard.
    private func writeScript(_ url: URL, command: [String], shards: Int?) throws {
        var lines = ["#!/bin/sh", "# deltaplan serve, \(context.kind.rawValue) job \(context.id) (written by serve --executor slurm)."]
        var arguments = command.map(shellQuoted)
        if let shards {
            lines += [
                "# One array task of a 1-\(shards) array: shard $SLURM_ARRAY_TASK_ID of \(shards). Rerun shard K alone, with the same environment:",
                "#   sbatch --export=ALL --array=K --output=\(shellQuoted(directory.shardLogPattern)) \(shellQuoted(url.path))",
                ": \"${SLURM_ARRAY_TASK_ID:?not a Slurm array task: submit with sbatch --array=1-\(shards)}\"",
            ]
            arguments += ["--shard=\"$SLURM_ARRAY_TASK_ID/\(shards)\"", "--threads=\"${SLURM_CPUS_PER_TASK:-1}\""]
        } else {
            lines.append("# Runs once every shard has completed (--dependency=afterok on the array job).")
        }
        lines.append("exec " + arguments.joined(separator: " "))
        do { try AtomicFile.write(data: Array((lines.joined(separator: "\n") + "\n").utf8), to: url) } catch {
            throw JobFailure("cannot write \(url.path): \(error)")
        }
    }

    /// `: LAST LINE` of a log, when it has one (the error deltaplan printed).
    private func lastLine(of log: URL) -> String {
        guard let text = try? String(contentsOf: log, encoding: .utf8),
              let line = text.split(whereSeparator: \.isNewline).last(where: { !$0.allSatisfy(\.isWhitespace) }) else { return "" }
        return ": " + String(line.prefix(500))
    }
}

/// Runs a Slurm command, its error as a job failure that names it.
private func slurm<T>(_ body: () throws(SlurmError) -> T) throws -> T {
    do { return try body() } catch { throw JobFailure("Slurm: \(error)") }
}

/// `text` as one word for `sh`: single-quoted, each `'` as `'\''`.
func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
