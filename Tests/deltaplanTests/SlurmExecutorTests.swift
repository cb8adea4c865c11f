import Analysis
import Foundation
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif

/// Stand-ins for Slurm's `sbatch`, `squeue`, `sacct` and `scancel`, first on the `PATH` of the
/// server under test. They keep the jobs' states in files (`state/ID` or `state/ARRAY_TASK`) and
/// really run the batch scripts, in the background, one task at a time, so that the store or
/// artifact they leave is real. Job ids count from 1000 in each instance: a service job's array job
/// is 1000 and its finalize job 1001, the next service job's 1002 and 1003.
///
/// Scripted through the server's environment: `FAKE_SLURM_FAIL_SHARD=K` makes task K end FAILED
/// without running, `FAKE_SLURM_SBATCH_ERROR=TEXT` makes sbatch refuse every submission,
/// `FAKE_SLURM_SQUEUE_FORGETS=1` makes squeue forget finished jobs (sacct then knows them); a file
/// `hold` in the directory keeps every task pending until it is removed. `calls` records the
/// arguments of every sbatch and scancel.
struct FakeSlurm {
    let directory: URL

    init(in parent: URL) throws {
        directory = parent.appendingPathComponent("fake-slurm", isDirectory: true)
        let bin = directory.appendingPathComponent("bin", isDirectory: true)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("state"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        for (name, text) in Self.commands {
            let url = bin.appendingPathComponent(name)
            try Data(text.utf8).write(to: url)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path)
        }
    }

    /// The server's environment: these commands first on `PATH`, plus `extra`.
    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return ["PATH": directory.appendingPathComponent("bin").path + ":" + path, "FAKE_SLURM_DIR": directory.path]
            .merging(extra) { _, new in new }
    }

    /// Every sbatch and scancel call, one line each (`sbatch ARGUMENTS`).
    var calls: [String] {
        ((try? String(contentsOf: directory.appendingPathComponent("calls"), encoding: .utf8)) ?? "")
            .split(separator: "\n").map(String.init)
    }

    var submissions: [String] { calls.filter { $0.hasPrefix("sbatch ") } }

    /// The state recorded for a job or task (`1000_2`), nil when there is none.
    func state(_ job: String) -> String? {
        (try? String(contentsOf: directory.appendingPathComponent("state/\(job)"), encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func hold() throws { try Data().write(to: directory.appendingPathComponent("hold")) }
    func release() { try? FileManager.default.removeItem(at: directory.appendingPathComponent("hold")) }

    private static let commands: [String: String] = [
        "sbatch": #"""
            #!/usr/bin/env bash
            set -euo pipefail
            d="$FAKE_SLURM_DIR"
            echo "sbatch $*" >> "$d/calls"
            if [ -n "${FAKE_SLURM_SBATCH_ERROR:-}" ]; then echo "sbatch: error: $FAKE_SLURM_SBATCH_ERROR" >&2; exit 1; fi
            array="" dependency="" output="" script=""
            for a in "$@"; do
              case "$a" in
                --array=*) array="${a#--array=}" ;;
                --dependency=afterok:*) dependency="${a#--dependency=afterok:}" ;;
                --output=*) output="${a#--output=}" ;;
                --*) ;;
                *) script="$a" ;;
              esac
            done
            exec 9>"$d/lock"; flock 9
            id=$(cat "$d/next" 2>/dev/null || echo 1000); echo $((id + 1)) > "$d/next"
            tasks=""
            if [ -n "$array" ]; then
              tasks=$(seq 1 "${array#1-}")
              for k in $tasks; do echo PENDING > "$d/state/${id}_$k"; done
            else
              echo PENDING > "$d/state/$id"
            fi
            flock -u 9; exec 9>&-
            # set_state FILE FROM TO: FROM (a regular expression) -> TO, under the lock; fails when FILE is not in FROM.
            set_state() { (flock 9; [[ "$(cat "$1")" =~ ^($2)$ ]] && echo "$3" > "$1") 9>"$d/lock"; }
            (
              # Nothing inherited stays open (Foundation's Process sees sbatch end when its descriptors close).
              for fd in /proc/$BASHPID/fd/*; do n="${fd##*/}"; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done 2>/dev/null
              while [ -e "$d/hold" ]; do sleep 0.1; done
              if [ -n "$array" ]; then
                for k in $tasks; do
                  f="$d/state/${id}_$k"
                  set_state "$f" PENDING RUNNING || continue
                  log="${output//%A/$id}"; log="${log//%a/$k}"
                  if [ "$k" = "${FAKE_SLURM_FAIL_SHARD:-}" ]; then
                    echo "fake slurm: shard $k fails" > "$log"; set_state "$f" RUNNING FAILED || true; continue
                  fi
                  if SLURM_ARRAY_TASK_ID=$k SLURM_ARRAY_JOB_ID=$id SLURM_JOB_ID=$id sh "$script" > "$log" 2>&1
                  then set_state "$f" RUNNING COMPLETED || true; else set_state "$f" RUNNING FAILED || true; fi
                done
              else
                f="$d/state/$id"
                if [ -n "$dependency" ]; then
                  while grep -qE '^(PENDING|RUNNING)$' "$d/state/${dependency}"_*; do sleep 0.1; done
                  if grep -qvx COMPLETED "$d/state/${dependency}"_*; then set_state "$f" PENDING CANCELLED || true; exit 0; fi
                fi
                set_state "$f" PENDING RUNNING || exit 0
                log="${output//%j/$id}"
                if SLURM_JOB_ID=$id sh "$script" > "$log" 2>&1
                then set_state "$f" RUNNING COMPLETED || true; else set_state "$f" RUNNING FAILED || true; fi
              fi
            ) </dev/null >/dev/null 2>&1 &
            echo "$id"
            """#,
        "squeue": #"""
            #!/usr/bin/env bash
            d="$FAKE_SLURM_DIR" jobs="" found=0
            for a in "$@"; do case "$a" in --jobs=*) jobs="${a#--jobs=}" ;; esac; done
            for j in ${jobs//,/ }; do
              for f in "$d/state/$j" "$d/state/$j"_*; do
                [ -e "$f" ] || continue
                s=$(cat "$f")
                if [ -n "${FAKE_SLURM_SQUEUE_FORGETS:-}" ] && [[ "$s" =~ ^(COMPLETED|FAILED|CANCELLED)$ ]]; then continue; fi
                echo "$(basename "$f")|$s"; found=1
              done
            done
            if [ "$found" = 0 ]; then echo "slurm_load_jobs error: Invalid job id specified" >&2; exit 1; fi
            """#,
        "sacct": #"""
            #!/usr/bin/env bash
            d="$FAKE_SLURM_DIR" jobs=""
            for a in "$@"; do case "$a" in --jobs=*) jobs="${a#--jobs=}" ;; esac; done
            for j in ${jobs//,/ }; do
              for f in "$d/state/$j" "$d/state/$j"_*; do
                [ -e "$f" ] && echo "$(basename "$f")|$(cat "$f")"
              done
            done
            exit 0
            """#,
        "scancel": #"""
            #!/usr/bin/env bash
            d="$FAKE_SLURM_DIR"
            echo "scancel $*" >> "$d/calls"
            for j in "$@"; do
              for f in "$d/state/$j" "$d/state/$j"_*; do
                [ -e "$f" ] || continue
                (flock 9; [[ "$(cat "$f")" =~ ^(PENDING|RUNNING)$ ]] && echo CANCELLED > "$f") 9>"$d/lock" || true
              done
            done
            """#,
    ]
}

private func state(_ job: [String: Any]) -> String? { job["state"] as? String }
private func progress(_ job: [String: Any]) -> (fraction: Double?, message: String?) {
    let progress = job["progress"] as? [String: Any]
    return (progress?["fraction"] as? Double, progress?["message"] as? String)
}
private func ended(_ job: [String: Any]) -> Bool { ["succeeded", "failed", "cancelled"].contains(state(job) ?? "") }

/// `deltaplan serve --executor slurm` against ``FakeSlurm``: analyses and compressions submitted as
/// array jobs plus a finalize job, followed to the end, failed, cancelled and resumed after a
/// restart; the store and artifact are the local executor's, byte for byte.
@Suite("serve --executor slurm (stand-in Slurm commands)", .serialized)
struct SlurmExecutorTests {
    static let options = ["--workers", "1", "--executor", "slurm", "--slurm-shards", "3", "--slurm-poll-seconds", "0.2",
                          "--slurm-option=--partition=cpu", "--slurm-option", "--mem=2G"]

    private func submitAnalysis(_ server: ServeProcess, _ fixture: KillFixture) async throws -> String {
        let submitted = try await server.request("POST", "/v1/analyses", json: [
            "base": fixture.pair.base.path, "finetuned": fixture.pair.finetuned.path, "calibration": fixture.pair.calibration.path,
        ])
        #expect(submitted.status == 202, "\(submitted.json)")
        return try #require(submitted.json["id"] as? String)
    }

    private func submitCompression(_ server: ServeProcess, _ fixture: KillFixture) async throws -> String {
        let submitted = try await server.request("POST", "/v1/compressions", json: [
            "planFile": fixture.plan.path, "base": fixture.pair.base.path, "finetuned": fixture.pair.finetuned.path,
            "calibration": fixture.pair.calibration.path,
        ])
        #expect(submitted.status == 202, "\(submitted.json)")
        return try #require(submitted.json["id"] as? String)
    }

    /// The shared fixture, a temporary directory and stand-in Slurm commands in it, for `body`
    /// (removed after it); with `hold`, the stand-in keeps every job pending until `slurm.release()`.
    private func withStandInSlurm(
        hold: Bool = false, _ body: (KillFixture, TemporaryDirectory, FakeSlurm) async throws -> Void
    ) async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let slurm = try FakeSlurm(in: dir.url)
        defer { slurm.release() }
        if hold { try slurm.hold() }
        try await body(fixture, dir, slurm)
    }

    private func stop(_ server: ServeProcess) {
        kill(server.child.process.processIdentifier, SIGTERM)
        server.child.process.waitUntilExit()
    }

    @Test("an analysis and a compression as 3-task arrays plus finalize jobs: progress by shards, the local executor's store and artifact byte for byte")
    func analysisAndCompression() async throws {
        try await withStandInSlurm(hold: true) { fixture, dir, slurm in
            let data = dir.url.appendingPathComponent("data")
            let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, options: Self.options,
                                          environment: slurm.environment())

            let analysis = try await submitAnalysis(server, fixture)
            // Held, the tasks stay pending: the progress counts shards (polling alone could miss it on a loaded machine).
            let pending = try await server.waitForJob(analysis, "reported shards") {
                ended($0) || progress($0).message?.contains("0 of 3 shards done") == true
            }
            #expect(progress(pending).message?.contains("0 of 3 shards done (array job 1000, finalize job 1001)") == true, "\(pending)")
            slurm.release()
            var job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "succeeded", "\(job)")
            #expect(progress(job).fraction == 1)
            // The byte-identical store: the fixture's is the single-process, local analysis of the same inputs.
            let store = data.appendingPathComponent("analyses/\(analysis)")
            #expect(try differingFiles(store, fixture.store) == [])
            #expect(job["result"] as? String == store.path)
            // One array job of 3 tasks, one finalize job that depends on it; no scancel.
            let submissions = slurm.submissions
            #expect(submissions.count == 2, "\(submissions)")
            #expect(submissions.first?.contains("--array=1-3") == true, "\(submissions)")
            #expect(submissions.last?.contains("--dependency=afterok:1000") == true, "\(submissions)")
            // The site's options, on both submissions, before the script.
            #expect(submissions.allSatisfy { $0.contains("--partition=cpu --mem=2G /") && $0.hasSuffix(".sh") }, "\(submissions)")
            #expect(!slurm.calls.contains { $0.hasPrefix("scancel") })
            #expect((1...3).allSatisfy { slurm.state("1000_\($0)") == "COMPLETED" } && slurm.state("1001") == "COMPLETED")
            let logs = data.appendingPathComponent("slurm/\(analysis)")
            #expect(Set(listing(logs)).isSuperset(of: ["submission.json", "shard.sh", "finalize.sh", "shard-1000_1.out", "shard-1000_3.out", "finalize-1001.out"]),
                    "\(listing(logs))")

            // The compression of the fixture's plan (made from the fixture store, whose identity this store has).
            let compression = try await submitCompression(server, fixture)
            job = try await server.waitForJob(compression, "ended") { ended($0) }
            #expect(state(job) == "succeeded", "\(job)")
            #expect(slurm.submissions.count == 4)
            #expect(slurm.submissions.last?.contains("--dependency=afterok:1002") == true, "\(slurm.submissions)")
            let artifact = data.appendingPathComponent("artifacts/\(compression)")
            #expect(try Data(contentsOf: artifact.appendingPathComponent("delta.safetensors"))
                    == Data(contentsOf: fixture.artifact.appendingPathComponent("delta.safetensors")))
            #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("artifacts/.\(compression).partial").path))
            stop(server)

            // The same compression by the local executor, on the same data directory: the same artifact, byte for byte.
            let local = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url)
            let again = try await submitCompression(local, fixture)
            job = try await local.waitForJob(again, "ended") { ended($0) }
            #expect(state(job) == "succeeded", "\(job)")
            #expect(try differingFiles(artifact, data.appendingPathComponent("artifacts/\(again)")) == [])
            stop(local)
        }
    }

    @Test("a shard that fails: the job fails naming the Slurm task, the shard and its log, and the rest is cancelled")
    func failedShard() async throws {
        try await withStandInSlurm { fixture, dir, slurm in
            let data = dir.url.appendingPathComponent("data")
            let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, options: Self.options,
                                          environment: slurm.environment(["FAKE_SLURM_FAIL_SHARD": "2"]))
            let analysis = try await submitAnalysis(server, fixture)
            let job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "failed", "\(job)")
            let error = try #require(job["error"] as? String)
            let log = data.appendingPathComponent("slurm/\(analysis)/shard-1000_2.out").path
            #expect(error.contains("shard 2/3 (Slurm job 1000_2) ended FAILED"), "\(error)")
            #expect(error.contains("its log: \(log): fake slurm: shard 2 fails"), "\(error)")
            #expect(slurm.calls.contains("scancel 1000 1001"), "\(slurm.calls)")
            stop(server)
        }
    }

    @Test("sbatch refuses the submission: the job fails with sbatch's message")
    func sbatchError() async throws {
        try await withStandInSlurm { fixture, dir, slurm in
            let server = try ServeProcess(dataDirectory: dir.url.appendingPathComponent("data"), allowRoot: fixture.root, logs: dir.url,
                                          options: Self.options,
                                          environment: slurm.environment(["FAKE_SLURM_SBATCH_ERROR": "invalid partition name specified"]))
            let analysis = try await submitAnalysis(server, fixture)
            let job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "failed", "\(job)")
            let error = try #require(job["error"] as? String)
            #expect(error.contains("sbatch failed (exit status 1): sbatch: error: invalid partition name specified"), "\(error)")
            stop(server)
        }
    }

    @Test("while the Slurm jobs are pending the only worker runs a merge; a cancel runs scancel on both jobs and removes the partial store")
    func cancel() async throws {
        try await withStandInSlurm(hold: true) { fixture, dir, slurm in
            let data = dir.url.appendingPathComponent("data")
            let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, options: Self.options,
                                          environment: slurm.environment())
            let analysis = try await submitAnalysis(server, fixture)
            _ = try await server.waitForJob(analysis, "followed its Slurm jobs") { progress($0).message?.contains("shards done") == true }
            // The only worker is free meanwhile: a merge of the fixture's artifact runs on it.
            let merge = try await server.request("POST", "/v1/merges", json: ["artifact": fixture.artifact.path, "base": fixture.pair.base.path])
            #expect(merge.status == 202, "\(merge.json)")
            let mergeJob = try await server.waitForJob(try #require(merge.json["id"] as? String), "ended") { ended($0) }
            #expect(state(mergeJob) == "succeeded", "\(mergeJob)")
            #expect(state(try await server.request("GET", "/v1/jobs/\(analysis)").json) == "running")
            let cancelled = try await server.request("DELETE", "/v1/jobs/\(analysis)")
            #expect(cancelled.status == 202, "\(cancelled.json)")
            let job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "cancelled", "\(job)")
            #expect(slurm.calls.contains("scancel 1000 1001"), "\(slurm.calls)")
            #expect((1...3).allSatisfy { slurm.state("1000_\($0)") == "CANCELLED" } && slurm.state("1001") == "CANCELLED")
            #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("analyses/\(analysis)").path))
            #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("slurm/\(analysis)").path))
            stop(server)
        }
    }

    @Test("serve killed while its Slurm jobs are pending: the restarted server follows them (sacct once squeue forgets), submits nothing again")
    func restart() async throws {
        try await withStandInSlurm(hold: true) { fixture, dir, slurm in
            let (data, analysis) = try await submitAndKill(fixture, dir, slurm)
            #expect(slurm.submissions.count == 2)

            let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, options: Self.options,
                                          environment: slurm.environment(["FAKE_SLURM_SQUEUE_FORGETS": "1"]))
            slurm.release()
            let job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "succeeded", "\(job)")
            #expect(job["attempts"] as? Int == 2, "\(job)")
            #expect(slurm.submissions.count == 2, "\(slurm.submissions)")
            #expect(try differingFiles(data.appendingPathComponent("analyses/\(analysis)"), fixture.store) == [])
            stop(server)
        }
    }

    @Test("serve restarted with --executor local while its Slurm jobs are pending: the job fails saying so, nothing runs locally beside them")
    func restartedLocal() async throws {
        try await withStandInSlurm(hold: true) { fixture, dir, slurm in
            let (data, analysis) = try await submitAndKill(fixture, dir, slurm)

            let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url)
            let job = try await server.waitForJob(analysis, "ended") { ended($0) }
            #expect(state(job) == "failed", "\(job)")
            #expect((job["error"] as? String)?.contains("submitted to Slurm (array job 1000, finalize job 1001) by a server with --executor slurm") == true,
                    "\(job)")
            #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("analyses/\(analysis)/manifest.json").path))
            stop(server)
        }
    }

    /// A `--executor slurm` server in `dir/data` that submits an analysis of the fixture, follows its
    /// held Slurm jobs, and is then killed with SIGKILL: the data directory and the job's id.
    private func submitAndKill(_ fixture: KillFixture, _ dir: TemporaryDirectory, _ slurm: FakeSlurm) async throws -> (URL, String) {
        let data = dir.url.appendingPathComponent("data")
        let server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, options: Self.options,
                                      environment: slurm.environment())
        let analysis = try await submitAnalysis(server, fixture)
        _ = try await server.waitForJob(analysis, "followed its Slurm jobs") { progress($0).message?.contains("shards done") == true }
        kill(server.child.process.processIdentifier, SIGKILL)
        server.child.process.waitUntilExit()
        return (data, analysis)
    }

    @Test("serve --executor slurm without sbatch on PATH refuses to start (the option parsing: ValidationTests)")
    func sbatchMissing() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let empty = dir.url.appendingPathComponent("empty-bin")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let child = try DeltaplanProcess(["serve", "--data-dir", dir("data"), "--port", "0", "--executor", "slurm"], logs: dir.url,
                                         environment: ["PATH": empty.path])
        child.process.waitUntilExit()
        #expect(child.process.terminationStatus != 0)
        #expect(child.errors.contains("--executor slurm: sbatch is not on PATH (\(empty.path))"), "\(child.errors)")
        #expect(!child.output.contains("listening"))
    }
}
