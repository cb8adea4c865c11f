import Analysis
import Foundation
import ModelProfiles
import Optimizer
import Testing
@testable import deltaplan
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One vocabulary, two faces: for each job kind, `deltaplan serve` given a set of options and the
/// CLI given the same options produce the same bytes. Every option is set away from its default,
/// so an option one face drops or maps differently shows as a difference.
@Suite("the service's results are the CLI's", .serialized)
struct ServiceParityTests {
    @Test("plan, comparison, compression and evaluation: the service's result bytes equal the CLI's for the same options")
    func sameBytes() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanUp() }
        // A one-layer Llama-2-7B-shaped pair at 1/64 scale: the measurement pass takes seconds in a debug build.
        let profile = try ProfileLibrary.builtIn().model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
        let pair = try SyntheticPair(profile: profile, seed: 5, tokens: 128, sampleRows: 0).write(to: dir.url.appendingPathComponent("pair"))
        let server = try ServeProcess(dataDirectory: dir.url.appendingPathComponent("data"), allowRoot: dir.url, logs: dir.url)
        defer {
            kill(server.child.process.processIdentifier, SIGTERM)
            server.child.process.waitUntilExit()
        }
        let paths = ["base": pair.base.path, "finetuned": pair.finetuned.path, "calibration": pair.calibration.path]

        let analysis = try await server.submit("/v1/analyses", paths)
        let store = try #require(try await server.succeeded(analysis)["result"] as? String)
        // The error tables a measurement pass caches in the store: removed before each face plans,
        // so that each measures for itself.
        let measured = URL(fileURLWithPath: store).appendingPathComponent("errors")

        // A plan: every option but the objective (the store supports one) away from its default.
        try? FileManager.default.removeItem(at: measured)
        let cliPlan = dir.url.appendingPathComponent("cli-plan.json")
        try runCLI(["plan", store, "--budget", "1/12", "--strategy", "genetic", "--seed", "7", "--scope", "type",
                    "--bits", "8,4,3,2,0", "--accounting", "paper", "--group-size", "64", "--order", "paper", "--method", "rtn",
                    "--calibration", pair.calibration.path, "--out", cliPlan.path], logs: dir.url)
        try? FileManager.default.removeItem(at: measured)
        let plan = try await server.submit("/v1/plans", [
            "analysis": analysis, "budget": "1/12", "strategy": "genetic", "seed": 7, "scope": "type", "bits": [8, 4, 3, 2, 0],
            "accounting": "paper", "groupSize": 64, "order": "paper", "method": "rtn", "calibration": pair.calibration.path,
        ])
        let planFile = try #require(try await server.succeeded(plan)["result"] as? String)
        let cliPlanBytes = try Data(contentsOf: cliPlan)
        #expect(try Data(contentsOf: URL(fileURLWithPath: planFile)) == cliPlanBytes)
        #expect(try await server.body("/v1/plans/\(plan)") == cliPlanBytes)

        // A plan asked for a quality instead of a budget: the smallest whose predicted error meets
        // it, here an absolute error (1.5 × the plan above's, reachable).
        let totals = try #require((try JSONSerialization.jsonObject(with: cliPlanBytes) as? [String: Any])?["totals"] as? [String: Any])
        let target = 1.5 * (try #require(totals["predictedError"] as? Double))
        let cliTargetPlan = dir.url.appendingPathComponent("cli-target-plan.json")
        try runCLI(["plan", store, "--max-error", "\(target)", "--error-unit", "absolute", "--strategy", "exact", "--bits", "8,3,2",
                    "--out", cliTargetPlan.path], logs: dir.url)
        let targetPlan = try await server.submit("/v1/plans", [
            "analysis": analysis, "maxError": target, "errorUnit": "absolute", "strategy": "exact", "bits": [8, 3, 2],
        ])
        _ = try await server.succeeded(targetPlan)
        let cliTargetBytes = try Data(contentsOf: cliTargetPlan)
        #expect(try await server.body("/v1/plans/\(targetPlan)") == cliTargetBytes)
        #expect(String(decoding: cliTargetBytes, as: UTF8.self).contains("\"target\""))

        // A plan with pins (every form) and a bits-for rule: the same bytes; and the same errors,
        // from the one parser and the same check against the store (a 400 from the service).
        try? FileManager.default.removeItem(at: measured)
        let pins = ["q_proj=keep", "o_proj=drop", "v_proj=8:2,3:fill", "k_proj=single-3"], bitsFor = ["mlp=8,4,2"]
        let cliPinnedPlan = dir.url.appendingPathComponent("cli-pinned-plan.json")
        try runCLI(["plan", store, "--budget", "1/4", "--strategy", "greedy", "--seed", "2", "--out", cliPinnedPlan.path]
                   + pins.flatMap { ["--pin", $0] } + bitsFor.flatMap { ["--bits-for", $0] }, logs: dir.url)
        try? FileManager.default.removeItem(at: measured)
        let pinnedPlan = try await server.submit("/v1/plans", [
            "analysis": analysis, "budget": "1/4", "strategy": "greedy", "seed": 2, "pins": pins, "bitsFor": bitsFor,
        ])
        let pinnedPlanFile = try #require(try await server.succeeded(pinnedPlan)["result"] as? String)
        let cliPinnedBytes = try Data(contentsOf: cliPinnedPlan)
        #expect(try await server.body("/v1/plans/\(pinnedPlan)") == cliPinnedBytes)
        let pinnedMatrices = try #require((try JSONSerialization.jsonObject(with: cliPinnedBytes) as? [String: Any])?["matrices"] as? [[String: Any]])
        #expect(pinnedMatrices.filter { $0["dense"] as? Bool == true }.count == 1)
        for (bad, field) in [("q_proj=8:2,8:3", "pins[0]"), ("q_proj=kep", "pins"), ("lm_head=keep", "pins"), ("q_proj=16:100000", "pins")] {
            let cli = try DeltaplanProcess.run(["plan", store, "--budget", "1/4", "--pin", bad, "--out", dir.url.appendingPathComponent("x.json").path],
                                               logs: dir.url)
            #expect(cli.status != 0)
            let response = try await server.request("POST", "/v1/plans", json: ["analysis": analysis, "budget": "1/4", "pins": [bad]])
            #expect(response.status == 400, "\(bad): \(response.json)")
            let message = try #require((response.json["error"] as? [String: Any])?["message"] as? String)
            // The library's message, with the field each face names (the option or the request field).
            let library: (String) -> String = { name in
                do throws(OverrideError) {
                    let overrides = try Overrides(pins: [bad], bitsFor: [], pinField: { _ in name })
                    try overrides.checkPresets()
                    return "(parsed)"
                } catch { return "\(error)" }
            }
            let cliText = library("--pin"), serviceText = library("pins[0]")
            if cliText == "(parsed)" {
                // Found against the store: the very same text from both faces.
                let tail = try #require(message.components(separatedBy: "field '\(field)': ").last)
                #expect(cli.errors.contains(tail), "\(bad): CLI says \(cli.errors), the service \(message)")
            } else {
                #expect(cli.errors.contains(cliText), "\(bad): \(cli.errors)")
                #expect(message == "field '\(field)': \(serviceText)", "\(bad): \(message)")
            }
        }

        // A comparison of strategies and both baselines at two budgets; only the time each took differs.
        try? FileManager.default.removeItem(at: measured)
        let cliComparison = dir.url.appendingPathComponent("cli-comparison.json")
        try runCLI(["compare", store, "--budgets", "1/16,1/10", "--strategies", "greedy,exact,preset:delta-come,low-rank,bitdelta",
                    "--seed", "3", "--scope", "matrix", "--bits", "16,8,3,2", "--accounting", "paper", "--group-size", "32",
                    "--order", "paper", "--method", "rtn", "--calibration", pair.calibration.path, "--format", "json",
                    "--pin", "o_proj=drop", "--bits-for", "mlp=8,3,2", "--out", cliComparison.path], logs: dir.url)
        try? FileManager.default.removeItem(at: measured)
        let comparison = try await server.submit("/v1/comparisons", [
            "analysis": analysis, "budgets": ["1/16", "1/10"], "strategies": ["greedy", "exact", "preset:delta-come", "low-rank", "bitdelta"],
            "seed": 3, "scope": "matrix", "bits": [16, 8, 3, 2], "accounting": "paper", "groupSize": 32, "order": "paper",
            "method": "rtn", "calibration": pair.calibration.path, "pins": ["o_proj=drop"], "bitsFor": ["mlp=8,3,2"],
        ])
        let comparisonFile = try #require(try await server.succeeded(comparison)["result"] as? String)
        let cliComparisonBytes = try Data(contentsOf: cliComparison)
        #expect(try withoutTimes(Data(contentsOf: URL(fileURLWithPath: comparisonFile))) == withoutTimes(cliComparisonBytes))
        #expect(try withoutTimes(await server.body("/v1/comparisons/\(comparison)")) == withoutTimes(cliComparisonBytes))
        // Every row was compared, and only `seconds` was set aside: one per row; 5 candidates × 2
        // budgets are rows or notes (a preset that does not fit a budget, low-rank's 16 bits that
        // the bits-for rule takes from the MLP matrices), and one note says that bitdelta ignores the pins.
        let parsed = try #require(try JSONSerialization.jsonObject(with: cliComparisonBytes) as? [String: Any])
        let rows = (parsed["rows"] as? [Any])?.count ?? 0, noteTexts = parsed["notes"] as? [String] ?? []
        #expect(rows + noteTexts.count == 11 && rows >= 6, "\(rows) rows, notes: \(noteTexts)")
        #expect(noteTexts.filter { $0.hasPrefix("low-rank") && $0.contains("16-bit vectors are not available for model.layers.0.mlp.") }.count == 2, "\(noteTexts)")
        #expect(noteTexts.contains { $0.contains("bitdelta is not a plan: its rows ignore the pins") })
        #expect(try timesRemoved(from: cliComparisonBytes) == rows)

        // A fleet of two analyses of the pair (the second with another seed), one with a quality floor.
        let second = try await server.submit("/v1/analyses", (paths as [String: Any]).merging(["seed": 9]) { a, _ in a })
        let secondStore = try #require(try await server.succeeded(second)["result"] as? String)
        let cliFleet = dir.url.appendingPathComponent("cli-fleet")
        try runCLI(["fleet", "--store", "math=\(store)", "--store", "code=\(secondStore)", "--weight", "math=2", "--max-error", "code=0.5",
                    "--budget", "1/12", "--strategy", "genetic", "--bits", "8,4,3,2", "--seed", "4", "--accounting", "paper",
                    "--group-size", "64", "--order", "paper", "--method", "rtn", "--pin", "o_proj=drop", "--bits-for", "mlp=8,4,2",
                    "--out", cliFleet.path], logs: dir.url)
        let fleet = try await server.submit("/v1/fleets", [
            "members": [["name": "math", "analysis": analysis, "weight": 2], ["name": "code", "analysis": second, "maxError": 0.5]],
            "budget": "1/12", "strategy": "genetic", "bits": [8, 4, 3, 2], "seed": 4, "accounting": "paper", "groupSize": 64,
            "order": "paper", "method": "rtn", "pins": ["o_proj=drop"], "bitsFor": ["mlp=8,4,2"],
        ])
        let fleetDirectory = URL(fileURLWithPath: try #require(try await server.succeeded(fleet)["result"] as? String))
        let cliFleetFiles = try fileContents(under: cliFleet)
        #expect(cliFleetFiles.keys.sorted() == ["code.json", "fleet.json", "math.json"])
        #expect(try fileContents(under: fleetDirectory) == cliFleetFiles)
        #expect(try await server.body("/v1/fleets/\(fleet)") == cliFleetFiles["fleet.json"])
        #expect(try await server.body("/v1/fleets/\(fleet)/plans/code") == cliFleetFiles["code.json"])
        let codePlan = try Plan.decode(try #require(cliFleetFiles["code.json"]), file: "code.json")
        #expect(codePlan.overrides?.pins.map(\.description) == ["o_proj=drop"])
        #expect(codePlan.matrices.filter { $0.pin != nil }.allSatisfy { $0.segments.isEmpty && $0.name.contains("o_proj") })

        // The pinned plan compressed by each face: the same artifact, the kept matrix stored dense.
        let cliPinnedArtifact = dir.url.appendingPathComponent("cli-pinned-artifact")
        try runCLI(["compress", store, "--plan", pinnedPlanFile, "--base", pair.base.path, "--finetuned", pair.finetuned.path,
                    "--calibration", pair.calibration.path, "--out", cliPinnedArtifact.path], logs: dir.url)
        let pinnedCompression = try await server.submit("/v1/compressions", ["plan": pinnedPlan].merging(paths) { a, _ in a })
        let pinnedArtifact = try #require(try await server.succeeded(pinnedCompression)["result"] as? String)
        let cliPinnedFiles = try fileContents(under: cliPinnedArtifact)
        #expect(try fileContents(under: URL(fileURLWithPath: pinnedArtifact)) == cliPinnedFiles)
        #expect(String(decoding: cliPinnedFiles["manifest.json"] ?? Data(), as: UTF8.self).contains("q_proj.weight.dense"))

        // A compression of the service's plan, with the quantizer options away from their defaults.
        let cliArtifact = dir.url.appendingPathComponent("cli-artifact")
        try runCLI(["compress", store, "--plan", planFile, "--base", pair.base.path, "--finetuned", pair.finetuned.path,
                    "--calibration", pair.calibration.path, "--method", "gptq", "--order", "feedback", "--dampening", "0.05",
                    "--out", cliArtifact.path], logs: dir.url)
        let compression = try await server.submit("/v1/compressions", [
            "plan": plan, "method": "gptq", "order": "feedback", "dampening": 0.05,
        ].merging(paths) { a, _ in a })
        let artifact = try #require(try await server.succeeded(compression)["result"] as? String)
        let artifactFiles = try fileContents(under: URL(fileURLWithPath: artifact))
        #expect(artifactFiles.keys.sorted() == (try fileContents(under: cliArtifact).keys.sorted()))
        for (name, bytes) in try fileContents(under: cliArtifact) {
            #expect(artifactFiles[name] == bytes, "artifact file \(name)")
        }
        // The options reached the artifact: another damping gives other bytes.
        let otherArtifact = dir.url.appendingPathComponent("cli-artifact-default-damping")
        try runCLI(["compress", store, "--plan", planFile, "--base", pair.base.path, "--finetuned", pair.finetuned.path,
                    "--calibration", pair.calibration.path, "--order", "feedback", "--out", otherArtifact.path], logs: dir.url)
        #expect(try Data(contentsOf: otherArtifact.appendingPathComponent("delta.safetensors"))
                != artifactFiles["delta.safetensors"])

        // An evaluation of the service's artifact (its checkpoints and calibration from the compression job).
        let evaluated = try DeltaplanProcess(["evaluate", "--artifact", artifact, "--base", pair.base.path, "--finetuned", pair.finetuned.path,
                                              "--calibration", pair.calibration.path, "--format", "json"], logs: dir.url)
        evaluated.process.waitUntilExit()
        #expect(evaluated.process.terminationStatus == 0, "\(evaluated.errors)")
        let evaluation = try await server.submit("/v1/evaluations", ["compression": compression])
        let report = try Data(contentsOf: URL(fileURLWithPath: try #require(try await server.succeeded(evaluation)["result"] as? String)))
        #expect(report + Data("\n".utf8) == Data(evaluated.output.utf8))
        #expect(try await server.body("/v1/evaluations/\(evaluation)") == report)
    }

    /// Runs the CLI as its own process (the server's binary) and requires success.
    private func runCLI(_ arguments: [String], logs: URL, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let run = try DeltaplanProcess.run(arguments, logs: logs)
        try #require(run.status == 0, "deltaplan \(arguments.joined(separator: " ")): \(run.errors)", sourceLocation: sourceLocation)
    }

    /// A comparison's JSON with every `seconds` (the only field that measures the run) set to 0.
    private func withoutTimes(_ data: Data) throws -> Data {
        try JSONSerialization.data(withJSONObject: zeroTimes(try JSONSerialization.jsonObject(with: data)).value, options: [.sortedKeys])
    }

    private func timesRemoved(from data: Data) throws -> Int { zeroTimes(try JSONSerialization.jsonObject(with: data)).count }

    private func zeroTimes(_ value: Any) -> (value: Any, count: Int) {
        switch value {
        case let object as [String: Any]:
            var out: [String: Any] = [:], count = 0
            for (key, item) in object {
                if key == "seconds" {
                    out[key] = 0
                    count += 1
                } else {
                    let (v, c) = zeroTimes(item)
                    out[key] = v
                    count += c
                }
            }
            return (out, count)
        case let array as [Any]:
            let items = array.map(zeroTimes)
            return (items.map(\.value), items.reduce(0) { $0 + $1.count })
        default:
            return (value, 0)
        }
    }
}

extension ServeProcess {
    /// Submits a job (202 required) and returns its id.
    func submit(_ path: String, _ json: [String: Any], sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        let response = try await request("POST", path, json: json)
        try #require(response.status == 202, "POST \(path): \(response.status) \(response.json)", sourceLocation: sourceLocation)
        return try #require(response.json["id"] as? String, sourceLocation: sourceLocation)
    }

    /// Waits for a job to end and requires that it succeeded.
    func succeeded(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> [String: Any] {
        let job = try await waitForJob(id, "ended") { ["succeeded", "failed", "cancelled"].contains($0["state"] as? String ?? "") }
        try #require(job["state"] as? String == "succeeded", "job \(id): \(job)", sourceLocation: sourceLocation)
        return job
    }

    /// The body of `GET path` as bytes (200 required).
    func body(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Data {
        let (data, response) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)\(path)")!)
        try #require((response as? HTTPURLResponse)?.statusCode == 200, "GET \(path): \(String(decoding: data, as: UTF8.self))",
                     sourceLocation: sourceLocation)
        return data
    }
}
