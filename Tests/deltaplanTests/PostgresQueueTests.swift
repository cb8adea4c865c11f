import Analysis
import ModelProfiles
import Foundation
import Service
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif

/// The database the PostgreSQL tests use, from `DELTAPLAN_TEST_POSTGRES` (a `postgres://` URL;
/// `.ci/run` starts a server on loopback and sets it). They drop and recreate DeltaPlan's tables.
private let postgresURL = ProcessInfo.processInfo.environment["DELTAPLAN_TEST_POSTGRES"]

/// `psql` on the test database: the rows of `sql`, fields separated by `|`.
private func psql(_ sql: String) throws -> [[String]] {
    let process = Process(), output = Pipe()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", postgresURL!, "-c", sql]
    process.standardOutput = output
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CLIFailure("psql failed on: \(sql)") }
    return String(decoding: data, as: UTF8.self).split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
}

/// Two `deltaplan serve` processes sharing one PostgreSQL database and one data directory.
@Suite("serve on two nodes over PostgreSQL", .serialized, .enabled(if: postgresURL != nil, "set DELTAPLAN_TEST_POSTGRES to run"))
struct PostgresQueueTests {
    /// Two nodes' stores in one process: a lease that expired passes the job to the other node, and
    /// the node that lost it can no longer report progress or finish it; expired jobs that cannot
    /// resume fail with the reason, and those whose cancel was asked end cancelled.
    @Test func leasesDecideWhoRunsAJob() async throws {
        _ = try psql("DROP TABLE IF EXISTS deltaplan_job_run, deltaplan_job")
        let resumable: @Sendable (JobKind) -> Bool = { $0 == .analysis }
        // Leases long enough that no renewal (every third of one) falls inside the test, however slow the
        // machine: the test lapses them itself.
        let a = try PostgresJobStore(url: postgresURL!, leaseSeconds: 3600, resumable: resumable)
        let b = try PostgresJobStore(url: postgresURL!, leaseSeconds: 3600, resumable: resumable)
        defer { a.shutdown(); b.shutdown() }
        let first = try await a.create(kind: .analysis, parameters: Data("{}".utf8))
        let second = try await a.create(kind: .evaluation, parameters: Data("{}".utf8))
        let third = try await b.create(kind: .analysis, parameters: Data("{}".utf8))
        #expect(try a.claimNext()?.id == first.id)
        #expect(try b.claimNext()?.id == second.id)   // SKIP LOCKED order: the oldest not taken
        #expect(try a.claimNext()?.id == third.id)
        #expect(try b.claimNext() == nil)              // every lease is live
        #expect(try await b.cancel(id: third.id) == .requested(try b.jobNow(id: third.id)!))

        // Node A stops renewing (as if it died): its leases lapse.
        _ = try psql("UPDATE deltaplan_job SET lease_until = 0 WHERE owner = '\(a.node)'")
        let taken = try #require(try b.claimNext())
        #expect(taken.id == first.id && taken.attempts == 2 && taken.progressMessage.contains("resumed"))
        #expect(try b.jobNow(id: third.id)?.state == .cancelled)
        try a.updateProgress(id: first.id, fraction: 0.5, message: "from the node that lost it")
        #expect(try a.finish(id: first.id, state: .succeeded, error: nil, result: "a") == nil)
        #expect(try b.jobNow(id: first.id)?.progress == 0)
        #expect(try b.finish(id: first.id, state: .succeeded, error: nil, result: "b")?.result == "b")

        // Node B's evaluation lapses too: it cannot resume, so it fails, naming why.
        _ = try psql("UPDATE deltaplan_job SET lease_until = 0 WHERE owner = '\(b.node)'")
        #expect(try a.claimNext() == nil)
        let failed = try #require(try a.jobNow(id: second.id))
        #expect(failed.state == .failed && failed.error?.contains("evaluation jobs cannot resume") == true, "\(failed)")
        let counts = try await a.countsByState()
        #expect(counts[.succeeded] == 1 && counts[.failed] == 1 && counts[.cancelled] == 1 && counts[.running] == 0)
        let runs = try psql("SELECT job_id, node, outcome FROM deltaplan_job_run ORDER BY claimed_at")
        #expect(runs.map { [$0[0] == first.id ? "first" : "other", $0[1] == a.node ? "A" : "B", $0[2]] }.first == ["first", "A", "lease expired"])
        #expect(runs.filter { $0[0] == first.id }.map(\.[2]) == ["lease expired", "succeeded"])
        #expect(runs.filter { $0[0] == second.id }.map(\.[2]) == ["lease expired"])
        #expect(runs.filter { $0[0] == third.id }.map(\.[2]) == ["lease expired"])
    }

    /// 200 plan jobs queued on two nodes; one node is killed with `kill -9` mid-run. Every job ends
    /// once, succeeded; none is lost; the killed node's running jobs are taken over by the other
    /// once their leases expire, never while the first still held them.
    @Test func twoNodesOneKilled() async throws {
        _ = try psql("DROP TABLE IF EXISTS deltaplan_job_run, deltaplan_job")
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let pair = try SyntheticPair(profile: profile, seed: 21, tokens: 64, sampleRows: 0).write(to: dir.url.appendingPathComponent("pair"))
        let data = dir.url.appendingPathComponent("data")
        let options = ["--workers", "1", "--database", postgresURL!, "--lease-seconds", "2"]
        let a = try ServeProcess(dataDirectory: data, allowRoot: dir.url, logs: dir.url, options: options)
        let b = try ServeProcess(dataDirectory: data, allowRoot: dir.url, logs: dir.url, options: options)

        let analysis = try await a.request("POST", "/v1/analyses", json: [
            "base": pair.base.path, "finetuned": pair.finetuned.path, "calibration": pair.calibration.path,
        ])
        #expect(analysis.status == 202, "\(String(describing: analysis.json))")
        let analysisID = try #require(analysis.json["id"] as? String)
        _ = try await b.waitForJob(analysisID, "succeeded") { $0["state"] as? String == "succeeded" }

        var ids: [String] = []
        for i in 0..<200 {
            let node = i.isMultiple(of: 2) ? a : b
            let plan = try await node.request("POST", "/v1/plans", json: [
                "analysis": analysisID, "budget": "1/16", "strategy": "genetic", "seed": i,
            ])
            #expect(plan.status == 202, "\(String(describing: plan.json))")
            ids.append(try #require(plan.json["id"] as? String))
        }
        // Node A's id, from its log line `node ID: jobs in …`.
        let logged = (a.child.output + a.child.errors).split(separator: "\n").first { $0.contains("node ") && $0.contains(": jobs in ") }
        let victim = try #require(logged.flatMap { line in
            line.components(separatedBy: "node ").last?.components(separatedBy: ":").first
        }, "node A logged no id: \(a.child.output)")
        // Kill node A while it runs a job, once both nodes have finished some. A plan job is short:
        // node A is stopped (SIGSTOP) before its jobs are read, so what it holds cannot end between
        // the reading and the kill; if it held nothing at that instant it is resumed and watched again.
        let heldByVictim = "SELECT id FROM deltaplan_job WHERE state = 'running' AND owner = '\(victim)'"
        var held: [String] = []
        for _ in 0..<20 where held.isEmpty {
            let running = a.child.wait(until: {
                let done = (try? psql("SELECT count(*) FROM deltaplan_job WHERE state = 'succeeded'"))?.first?.first
                let running = (try? psql(heldByVictim))?.count
                return (Int(done ?? "") ?? 0) >= 40 && running == 1
            }, timeout: 300)
            try #require(running, "node A never ran a job after 40 had ended: \(a.child.errors) \(b.child.errors)")
            kill(a.child.process.processIdentifier, SIGSTOP)
            held = try psql(heldByVictim).map { $0[0] }
            if held.isEmpty { kill(a.child.process.processIdentifier, SIGCONT) }
        }
        try #require(!held.isEmpty, "node A's jobs always ended before it could be stopped")
        kill(a.child.process.processIdentifier, SIGKILL)
        a.child.process.waitUntilExit()

        // Node B alone ends them all.
        let deadline = Date().addingTimeInterval(600)
        while try psql("SELECT count(*) FROM deltaplan_job WHERE state IN ('queued', 'running')")[0][0] != "0" {
            guard Date() < deadline, b.child.process.isRunning else { throw CLIFailure("jobs never ended: \(b.child.errors)") }
            try await Task.sleep(for: .milliseconds(200))
        }
        let states = try psql("SELECT state, count(*) FROM deltaplan_job GROUP BY state")
        #expect(states.map { $0.joined(separator: ":") } == ["succeeded:201"])
        for id in ids {
            let job = try await b.request("GET", "/v1/jobs/\(id)").json
            #expect(job["state"] as? String == "succeeded", "\(id): \(String(describing: job))")
        }
        // Every job succeeded in exactly one run; each run began after the one before it ended.
        let runs = try psql("SELECT job_id, node, claimed_at, ended_at, outcome FROM deltaplan_job_run ORDER BY job_id, claimed_at")
        let byJob = Dictionary(grouping: runs, by: { $0[0] })
        #expect(byJob.count == 201)
        for (id, jobRuns) in byJob {
            #expect(jobRuns.filter { $0[4] == "succeeded" }.count == 1, "\(id): \(jobRuns)")
            for (earlier, later) in zip(jobRuns, jobRuns.dropFirst()) {
                #expect(Double(later[2])! >= Double(earlier[3]) ?? .infinity, "\(id) ran twice at once: \(jobRuns)")
                #expect(earlier[1] == victim && earlier[4] == "lease expired", "\(id): \(jobRuns)")
            }
        }
        // What the killed node held was taken over, by the other node.
        for id in held {
            let jobRuns = try #require(byJob[id])
            #expect(jobRuns.count == 2 && jobRuns[1][1] != victim, "\(id): \(jobRuns)")
        }
        let attempts = try psql("SELECT count(*) FROM deltaplan_job WHERE attempts > 1")[0][0]
        #expect(Int(attempts) == held.count)
    }
}
