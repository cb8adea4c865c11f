import Analysis
import Foundation
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `deltaplan serve` as a subprocess on a port the system picks, and a JSON client for it.
struct ServeProcess {
    let child: DeltaplanProcess
    let port: Int

    /// Two workers by default: each job works on cores / 2 matrices at once (one on this 2-core
    /// machine), as slow as before `--threads`, so that the kill lands mid-job even when other
    /// suites hold the test threads.
    /// `stopAfter`: the server stops itself after that many matrices of its jobs (`DELTAPLAN_STOP_AFTER`).
    /// `environment`: more variables for the server (e.g. a `PATH` with stand-ins for Slurm's commands).
    init(dataDirectory: URL, allowRoot: URL, logs: URL, options: [String] = ["--workers", "2"], stopAfter: Int? = nil,
         environment: [String: String] = [:]) throws {
        var environment = environment
        if let stopAfter { environment["DELTAPLAN_STOP_AFTER"] = String(stopAfter) }
        child = try DeltaplanProcess(["serve", "--data-dir", dataDirectory.path, "--allow-root", allowRoot.path, "--port", "0"] + options,
                                     logs: logs, environment: environment)
        let prefix = "listening on http://127.0.0.1:"
        let child = self.child
        guard child.wait(until: { child.output.contains(prefix) }, timeout: 60),
              let line = child.output.split(separator: "\n").first(where: { $0.contains(prefix) }),
              let port = Int(line.split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "") else {
            throw CLIFailure("deltaplan serve did not start: \(child.output) \(child.errors)")
        }
        self.port = port
    }

    func request(_ method: String, _ path: String, json: [String: Any]? = nil) async throws -> (status: Int, json: [String: Any]) {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        request.httpMethod = method
        if let json {
            request.httpBody = try JSONSerialization.data(withJSONObject: json)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, object)
    }

    /// Polls a job until `condition` holds for it (or 120 s pass, a failure rather than a hang).
    func waitForJob(_ id: String, _ what: String, until condition: ([String: Any]) -> Bool) async throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(120)
        while true {
            let job = try await request("GET", "/v1/jobs/\(id)").json
            if condition(job) { return job }
            guard Date() < deadline else { throw CLIFailure("job \(id) never \(what); last: \(job)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

private func state(_ job: [String: Any]) -> String? { job["state"] as? String }

/// `kill -9` of `deltaplan serve` in the middle of an analysis job and of a compression job, and a
/// restart on the same data directory (same jobs database).
@Suite("kill -9 of the server mid-job", .serialized)
struct ServeKillTests {
    @Test("serve killed mid-analysis and mid-compression: after a restart both jobs resume and end with the uninterrupted store and artifact")
    func serveKilled() async throws {
        let fixture = try await KillFixtures.shared.get()
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        let data = dir.url.appendingPathComponent("data")

        // Analysis: killed once its manifest records a finished matrix (the server stops itself then).
        var server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, stopAfter: 1)
        let submitted = try await server.request("POST", "/v1/analyses", json: [
            "base": fixture.pair.base.path, "finetuned": fixture.pair.finetuned.path, "calibration": fixture.pair.calibration.path,
        ])
        #expect(submitted.status == 202)
        let analysis = try #require(submitted.json["id"] as? String)
        let store = data.appendingPathComponent("analyses/\(analysis)")
        try server.child.kill9AtStop()
        #expect(server.child.wasKilled)

        let left = try SpectrumStore(at: store, requireComplete: false)
        #expect(!left.manifest.complete && (1..<7).contains(left.matrices.count), "\(left.matrices.count) matrices done")
        for record in left.matrices { try left.verify(record) }
        #expect(throws: AnalysisError.self) { try SpectrumStore(at: store) }

        // The restarted server resumes the analysis (the matrices left), then runs the compression
        // below and stops itself after its first matrix.
        server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url, stopAfter: 7 - left.matrices.count + 1)
        var job = try await server.waitForJob(analysis, "ended") { ["succeeded", "failed", "cancelled"].contains(state($0) ?? "") }
        #expect(state(job) == "succeeded", "\(job)")
        #expect(job["attempts"] as? Int == 2, "\(job)")
        // The resumed store is the uninterrupted one, byte for byte: its identity is the fixture plan's source.
        #expect(try differingFiles(store, fixture.store) == [])

        // Compression of the fixture's plan (its source is this store's identity).
        let compression = try #require(try await server.request("POST", "/v1/compressions", json: [
            "planFile": fixture.plan.path, "base": fixture.pair.base.path, "finetuned": fixture.pair.finetuned.path,
            "calibration": fixture.pair.calibration.path,
        ]).json["id"] as? String)
        // The moment: compress's work directory holds a quantized matrix (the artifact is assembled
        // from the work directory once every matrix is saved).
        let artifacts = data.appendingPathComponent("artifacts")
        let artifact = artifacts.appendingPathComponent(compression)
        let work = artifacts.appendingPathComponent(".\(compression).partial")
        try server.child.kill9AtStop()
        #expect(listing(work).contains { $0.hasSuffix(".safetensors") })
        #expect(server.child.wasKilled)

        #expect(!FileManager.default.fileExists(atPath: artifact.path))
        let merge = try DeltaplanProcess.run(["merge", "--base", fixture.pair.base.path, "--artifact", artifact.path, "--out", dir("merged")],
                                             logs: dir.url)
        #expect(merge.status != 0 && merge.errors.contains("not an artifact"), "\(merge.errors)")

        server = try ServeProcess(dataDirectory: data, allowRoot: fixture.root, logs: dir.url)
        job = try await server.waitForJob(compression, "ended") { ["succeeded", "failed", "cancelled"].contains(state($0) ?? "") }
        #expect(state(job) == "succeeded", "\(job)")
        #expect(job["attempts"] as? Int == 2, "\(job)")
        // The same delta file as the CLI's uninterrupted compression (the manifest differs in the store's path).
        #expect(try Data(contentsOf: artifact.appendingPathComponent("delta.safetensors"))
                == Data(contentsOf: fixture.artifact.appendingPathComponent("delta.safetensors")))
        let merged = try DeltaplanProcess.run(["merge", "--base", fixture.pair.base.path, "--artifact", artifact.path, "--out", dir("merged")],
                                              logs: dir.url)
        #expect(merged.status == 0, "\(merged.errors)")
        #expect(try differingFiles(dir.url.appendingPathComponent("merged"), fixture.merged) == [])
        // The work directory went with the publication; any temporary directory left is refused.
        #expect(!FileManager.default.fileExists(atPath: work.path))
        let leftovers = listing(artifacts, hidden: true).filter { $0.hasPrefix(".\(compression).") }
        for name in leftovers {
            let refused = try DeltaplanProcess.run(["merge", "--base", fixture.pair.base.path, "--artifact",
                                                    artifacts.appendingPathComponent(name).path, "--out", dir("merged-2")], logs: dir.url)
            #expect(refused.status != 0 && refused.errors.contains("not an artifact"), "\(refused.errors)")
        }
        kill(server.child.process.processIdentifier, SIGTERM)
        server.child.process.waitUntilExit()
    }
}
