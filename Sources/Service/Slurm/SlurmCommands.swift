import Foundation

/// The Slurm client commands (`sbatch`, `squeue`, `sacct`, `scancel`) as the service runs them:
/// the only place that starts them. Each is looked up on the `PATH` of the service's environment
/// and must end within ``timeout`` seconds (a controller that does not answer fails the call, it
/// does not block a worker for ever).
struct SlurmCommands: Sendable {
    var environment: [String: String] = ProcessInfo.processInfo.environment
    var timeout: Double = 120

    /// `name`'s executable on `PATH`, or nil.
    func locate(_ name: String) -> URL? {
        let path = environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = URL(fileURLWithPath: String(directory), isDirectory: true).appendingPathComponent(name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        return nil
    }

    /// Submits a batch script (`sbatch --parsable ARGUMENTS`) and returns the job id it printed.
    func submit(_ arguments: [String]) throws(SlurmError) -> String {
        let result = try run("sbatch", ["--parsable"] + arguments)
        guard result.status == 0 else { throw .failed(command: "sbatch", status: result.status, errors: result.errors) }
        // `--parsable` prints "ID" or "ID;CLUSTER".
        let printed = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let id = printed.split(separator: ";").first.map(String.init) ?? ""
        guard !id.isEmpty, id.allSatisfy(\.isNumber) else { throw .unexpectedOutput(command: "sbatch", output: printed) }
        return id
    }

    /// The states of `jobs` and of their array tasks: squeue's for the jobs it still remembers
    /// (`--states=all`), sacct's for the others when accounting is on. A job neither knows is
    /// absent. Throws when squeue itself fails (e.g. the controller does not answer): the caller
    /// looks again later.
    func states(of jobs: [String]) throws(SlurmError) -> [String: SlurmJobState] {
        let queue = try run("squeue", ["--noheader", "--array", "--states=all", "--jobs=\(jobs.joined(separator: ","))", "--format=%i|%T"])
        var states: [String: SlurmJobState] = [:]
        if queue.status == 0 {
            states = parseSlurmStates(queue.output)
        } else if !queue.errors.localizedCaseInsensitiveContains("invalid job id") {
            // "Invalid job id specified": squeue has forgotten every job named; anything else is a failure.
            throw .failed(command: "squeue", status: queue.status, errors: queue.errors)
        }
        let forgotten = jobs.filter { job in !states.keys.contains { $0 == job || $0.hasPrefix(job + "_") } }
        guard !forgotten.isEmpty, locate("sacct") != nil else { return states }
        // Without accounting (AccountingStorageType=none) sacct fails: it then knows nothing.
        if let accounted = try? run("sacct", ["--noheader", "--parsable2", "--allocations", "--jobs=\(forgotten.joined(separator: ","))",
                                                "--format=JobID,State"]), accounted.status == 0 {
            states.merge(parseSlurmStates(accounted.output)) { queued, _ in queued }
        }
        return states
    }

    /// `scancel JOBS`: every task of the array jobs among them too.
    func cancel(_ jobs: [String]) throws(SlurmError) {
        guard !jobs.isEmpty else { return }
        let result = try run("scancel", jobs)
        guard result.status == 0 else { throw .failed(command: "scancel", status: result.status, errors: result.errors) }
    }

    /// Runs `name ARGUMENTS` to its end (at most ``timeout`` seconds), its output and errors read
    /// from temporary files (no pipe to fill up).
    func run(_ name: String, _ arguments: [String]) throws(SlurmError) -> (status: Int32, output: String, errors: String) {
        guard let executable = locate(name) else { throw .notFound(command: name) }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-\(name)-\(UUID().uuidString)")
        let outputURL = scratch.appendingPathExtension("out"), errorURL = scratch.appendingPathExtension("err")
        defer {
            try? FileManager.default.removeItem(at: outputURL)
            try? FileManager.default.removeItem(at: errorURL)
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        let ended = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in ended.signal() }
        do {
            guard FileManager.default.createFile(atPath: outputURL.path, contents: nil),
                  FileManager.default.createFile(atPath: errorURL.path, contents: nil) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: scratch.path])
            }
            let output = try FileHandle(forWritingTo: outputURL), errors = try FileHandle(forWritingTo: errorURL)
            defer {
                try? output.close()
                try? errors.close()
            }
            process.standardOutput = output
            process.standardError = errors
            try process.run()
        } catch {
            throw .cannotRun(command: name, reason: "\(error)")
        }
        if ended.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            // Bounded too: Foundation reports the end only once every inherited descriptor is
            // closed, which a background child of a wrapper script may never do.
            _ = ended.wait(timeout: .now() + 10)
            throw .timedOut(command: name, seconds: timeout)
        }
        let read = { (url: URL) in
            ((try? String(contentsOf: url, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return (process.terminationStatus, read(outputURL), read(errorURL))
    }
}
