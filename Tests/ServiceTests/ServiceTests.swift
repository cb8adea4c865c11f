import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Synchronization
import Testing
@testable import Service

/// The canonical shape-only plan request of the benchmark and the README.
var paperPlanRequest: [String: Any] { [
    "profile": "llama-2-7b", "budget": "1/16", "strategy": "preset:delta-come", "accounting": "paper",
] }

@Suite("Service API")
struct ServiceAPITests {
    @Test("analysis job runs to a complete store; shape-only plan is byte-identical to the library/CLI call")
    func fullFlow() async throws {
        let root = try temporaryDirectory("flow"), data = try temporaryDirectory("flow-data")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: data) }
        let pair = try syntheticPair(in: root)
        // Model files of the fine-tuned directory, which the compression stores and the merge writes.
        let modelFiles = ["config.json": Data(#"{"model_type": "llama"}"#.utf8), "tokenizer.json": Data(#"{"version": "1.0"}"#.utf8)]
        for (name, bytes) in modelFiles { try bytes.write(to: pair.finetuned.appendingPathComponent(name)) }
        let configuration = ServiceConfiguration(dataDirectory: data, allowedRoots: [root])
        try await withServer(configuration) { client in
            #expect(try await client.get("/healthz").status == 200)
            let submitted = try await client.post("/v1/analyses", json: [
                "base": pair.base.path, "finetuned": pair.finetuned.path, "calibration": pair.calibration.path,
            ])
            #expect(submitted.status == 202)
            let id = try #require(submitted.json["id"] as? String)
            #expect(submitted.headers["location"] == "/v1/jobs/\(id)")
            #expect(["queued", "running"].contains(submitted.json["state"] as? String))

            let job = try await waitForJob(client, id, states: ["succeeded", "failed", "cancelled"])
            #expect(job["state"] as? String == "succeeded", "\(job)")
            #expect((job["progress"] as? [String: Any])?["fraction"] as? Double == 1)
            let storePath = try #require(job["result"] as? String)
            #expect(storePath == data.appendingPathComponent("analyses/\(id)").path)
            let store = try SpectrumStore(at: URL(fileURLWithPath: storePath))
            #expect(store.matrices.count == 7)

            let listed = try await client.get("/v1/jobs?state=succeeded").json["jobs"] as? [[String: Any]]
            #expect(listed?.map { $0["id"] as? String } == [id])
            #expect((try await client.get("/v1/jobs?state=queued").json["jobs"] as? [Any])?.isEmpty == true)

            // Shape-only plan: the same library call `deltaplan plan --profile` makes, same bytes.
            let planned = try await client.post("/v1/plans", json: paperPlanRequest)
            #expect(planned.status == 200)
            let library = try ProfileLibrary.builtIn()
            let expected = try planFromShapes(
                profile: try library.model(named: "llama-2-7b"), preset: try library.preset(named: "delta-come"),
                budget: try GivenBudget(parsing: "1/16"),
                storage: StorageModel(accounting: .paper, groupSize: 128), scope: .type,
                menu: try BitMenu.parse("16,8,4,3,2,1,0"), seed: 0, toolVersion: DeltaPlanVersion.string).encoded()
            #expect(planned.body == expected)
            let plan = try Plan.decode(planned.body, file: "response")
            // A repeated request (served from the plan cache) gives the same bytes; another budget another plan.
            #expect(try await client.post("/v1/plans", json: paperPlanRequest).body == expected)
            var other = paperPlanRequest
            other["budget"] = "1/8"
            let otherPlan = try Plan.decode(try await client.post("/v1/plans", json: other).body, file: "response")
            #expect(otherPlan.budget.bits == 2 * plan.budget.bits)
            // And it is a valid plan within its budget.
            #expect(plan.totals.storageBits <= plan.budget.bits)
            // α = 1/16 of the F16 size is one bit per planned parameter.
            let parameters = try library.model(named: "llama-2-7b").expandedMatrices().reduce(0) { $0 + $1.rows * $1.columns }
            #expect(plan.budget.bits == parameters)

            // A plan from the analysis runs as a job; its plan is byte-identical to `deltaplan plan STORE`'s.
            let fromAnalysis = try await client.post("/v1/plans", json: ["analysis": id, "budget": "1/16", "strategy": "greedy"])
            #expect(fromAnalysis.status == 202)
            let planID = try #require(fromAnalysis.json["id"] as? String)
            let finished = try await waitForJob(client, planID, states: ["succeeded", "failed"])
            #expect(finished["state"] as? String == "succeeded")
            let served = try await client.get("/v1/plans/\(planID)")
            #expect(served.status == 200)
            let storeURL = JobContext.analysisStore(id: id, in: data)
            let cliPlan = try StorePlanning(store: storeURL).plan(
                budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(), scope: Strategy.greedy.defaultScope,
                menu: try BitMenu.parse("16,8,4,3,2,1,0"), strategy: .greedy, seed: 0).encoded()
            #expect(served.body == cliPlan)

            // The error-model options travel too: the paper's segment order and the activation
            // objective give the library's plan with those options, recorded in the job.
            let paperOrder = try await client.post("/v1/plans", json: [
                "analysis": id, "budget": "1/16", "strategy": "exact", "order": "paper", "objective": "activation",
            ])
            #expect(paperOrder.status == 202, "\(paperOrder.json)")
            let paperID = try #require(paperOrder.json["id"] as? String)
            let paperJob = try await waitForJob(client, paperID, states: ["succeeded", "failed"])
            #expect(paperJob["state"] as? String == "succeeded", "\(paperJob["error"] ?? "")")
            let recorded = paperJob["parameters"] as? [String: Any]
            #expect(recorded?["order"] as? String == "paper" && recorded?["objective"] as? String == "activation")
            let paperPlan = try await client.get("/v1/plans/\(paperID)").body
            let libraryPaperPlan = try StorePlanning(store: storeURL, measurement: MeasurementOptions(order: .paper), objective: .activation)
                .plan(budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(), scope: .global,
                      menu: try BitMenu.parse("16,8,4,3,2,1,0"), strategy: .exact, seed: 0).encoded()
            #expect(paperPlan == libraryPaperPlan)
            #expect(try Plan.decode(paperPlan, file: "response").segmentOrder == .paper)
            // A verified plan (`plan --verify 1`): the library's verified plan, byte for byte.
            let verify = try await client.post("/v1/plans", json: ["analysis": id, "budget": "1/16", "strategy": "exact", "verify": 1])
            #expect(verify.status == 202, "\(verify.json)")
            let verifyID = try #require(verify.json["id"] as? String)
            let verifyJob = try await waitForJob(client, verifyID, states: ["succeeded", "failed"])
            #expect(verifyJob["state"] as? String == "succeeded", "\(verifyJob["error"] ?? "")")
            let verifying = try StorePlanning(store: storeURL)
            func exact(_ planning: StorePlanning) throws -> Plan {
                try planning.plan(budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(), scope: .global,
                                  menu: try BitMenu.parse("16,8,4,3,2,1,0"), strategy: .exact, seed: 0)
            }
            let libraryVerified = try verifying.verified(try exact(verifying), rounds: 1, replan: { try? exact($0) }).encoded()
            #expect(try await client.get("/v1/plans/\(verifyID)").body == libraryVerified)
            #expect(try Plan.decode(libraryVerified, file: "verified").report.verification != nil)
            // A profile plan has no error model: the options are refused, not dropped.
            var withOrder = paperPlanRequest
            withOrder["order"] = "paper"
            let refused = try await client.post("/v1/plans", json: withOrder)
            #expect(refused.status == 400 && refused.errorCode == "invalid_field" && refused.errorMessage.contains("order"), "\(refused.text)")
            for (field, value) in [("method", "rtn" as Any), ("calibration", pair.calibration.path as Any), ("maxError", 0.05 as Any),
                                   ("verify", 0 as Any)] {
                var withOption = paperPlanRequest
                withOption[field] = value
                let refused = try await client.post("/v1/plans", json: withOption)
                #expect(refused.status == 400 && refused.errorCode == "invalid_field" && refused.errorMessage.contains(field), "\(refused.text)")
            }
            // A quality target instead of a budget, never both; a positive one, with its unit.
            for (body, field) in [
                (["analysis": id, "budget": "1/16", "maxError": 0.05] as [String: Any], "maxError"),
                (["analysis": id] as [String: Any], "budget"),
                (["analysis": id, "maxError": 0], "maxError"),
                (["analysis": id, "maxError": -0.5], "maxError"),
                (["analysis": id, "budget": "1/16", "errorUnit": "absolute"], "errorUnit"),
            ] {
                let refused = try await client.post("/v1/plans", json: body)
                #expect(refused.status == 400 && refused.errorCode == "invalid_field" && refused.errorMessage.contains(field), "\(body): \(refused.text)")
            }
            // A compression's damping is a fraction ≥ 0; a quantizer is one the library has.
            for (field, value) in [("dampening", -0.5 as Any), ("dampening", -1 as Any), ("method", "awq" as Any)] {
                let refused = try await client.post("/v1/compressions", json: [
                    "base": pair.base.path, "finetuned": pair.finetuned.path, "plan": planID, field: value,
                ])
                #expect(refused.status == 400 && refused.errorCode == "invalid_field" && refused.errorMessage.contains(field), "\(refused.text)")
            }

            // The plan compresses into an artifact that opens and verifies.
            let compression = try await client.post("/v1/compressions", json: [
                "base": pair.base.path, "finetuned": pair.finetuned.path, "plan": planID,
            ])
            #expect(compression.status == 202)
            let compressionID = try #require(compression.json["id"] as? String)
            let compressed = try await waitForJob(client, compressionID, states: ["succeeded", "failed"])
            #expect(compressed["state"] as? String == "succeeded", "\(compressed["error"] ?? "")")
            let artifactPath = try #require(compressed["result"] as? String)
            let artifact = try Artifact(at: URL(fileURLWithPath: artifactPath))
            #expect(artifact.manifest.matrices.count == 7)

            // The artifact evaluates (checkpoints and calibration from the compression job) to the
            // library's report, byte for byte, served at /v1/evaluations/{id}.
            #expect(try await client.get("/v1/evaluations/\(compressionID)").status == 404)
            let evaluation = try await client.post("/v1/evaluations", json: ["compression": compressionID])
            #expect(evaluation.status == 202)
            let evaluationID = try #require(evaluation.json["id"] as? String)
            let evaluated = try await waitForJob(client, evaluationID, states: ["succeeded", "failed"])
            #expect(evaluated["state"] as? String == "succeeded", "\(evaluated["error"] ?? "")")
            let report = try await client.get("/v1/evaluations/\(evaluationID)")
            #expect(report.status == 200)
            let libraryReport = try evaluate(artifact: artifact, base: pair.base, finetuned: pair.finetuned,
                                        calibration: try CalibrationSet(url: pair.calibration), store: try SpectrumStore(at: storeURL))
            #expect(try JSONDecoder().decode(EvaluationReport.self, from: report.body) == libraryReport)

            // And merges into a checkpoint whose carried tensors and model files are the fine-tuned
            // ones, bit for bit.
            let merge = try await client.post("/v1/merges", json: ["compression": compressionID])
            #expect(merge.status == 202)
            let mergeID = try #require(merge.json["id"] as? String)
            let merged = try await waitForJob(client, mergeID, states: ["succeeded", "failed"])
            #expect(merged["state"] as? String == "succeeded", "\(merged["error"] ?? "")")
            let checkpoint = try Checkpoint(at: URL(fileURLWithPath: try #require(merged["result"] as? String)))
            let finetunedCheckpoint = try Checkpoint(at: pair.finetuned)
            #expect(!artifact.manifest.carried.isEmpty)
            for c in artifact.manifest.carried {
                #expect(try checkpoint.rawBytes(c.name) == finetunedCheckpoint.rawBytes(c.name), "\(c.name)")
            }
            #expect(Set(checkpoint.tensors.map(\.name)) == Set(finetunedCheckpoint.tensors.map(\.name)))
            #expect(artifact.manifest.modelFiles?.map(\.name) == modelFiles.keys.sorted())
            for (name, bytes) in modelFiles { #expect(try Data(contentsOf: checkpoint.url.appendingPathComponent(name)) == bytes, "\(name)") }

            let comparison = try await client.post("/v1/comparisons", json: ["analysis": id, "budgets": ["1/16", "1/32"]])
            #expect(comparison.status == 202)
            let comparisonID = try #require(comparison.json["id"] as? String)
            #expect(try await waitForJob(client, comparisonID, states: ["succeeded", "failed"])["state"] as? String == "succeeded")
            let compared = try JSONDecoder().decode(Comparison.self, from: try await client.get("/v1/comparisons/\(comparisonID)").body)
            #expect(Set(compared.rows.map(\.budget)) == ["1/16", "1/32"])
            #expect(compared.rows.contains { $0.strategy == "exact" && $0.scope == .global })

            // A comparison with the baselines and a bit menu of its own: both are honoured (and the
            // menu recorded), as `deltaplan compare` does; the exact rows equal the library's with
            // that menu, not with the default one.
            let narrow = try await client.post("/v1/comparisons", json: [
                "analysis": id, "budgets": ["1/16"], "strategies": ["exact", "low-rank", "bitdelta"], "bits": [16, 4, 0],
            ])
            #expect(narrow.status == 202, "\(narrow.json)")
            let narrowID = try #require(narrow.json["id"] as? String)
            let narrowJob = try await waitForJob(client, narrowID, states: ["succeeded", "failed"])
            #expect(narrowJob["state"] as? String == "succeeded", "\(narrowJob["error"] ?? "")")
            #expect((narrowJob["parameters"] as? [String: Any])?["bits"] as? [Int] == [16, 4])
            let narrowed = try JSONDecoder().decode(Comparison.self, from: try await client.get("/v1/comparisons/\(narrowID)").body)
            #expect(Set(narrowed.rows.map(\.strategy)) == ["exact", "low-rank", "bitdelta"])
            let planning = try StorePlanning(store: JobContext.analysisStore(id: id, in: data))
            func exactError(_ menu: [Int]) throws -> Double {
                try planning.plan(budget: try GivenBudget(parsing: "1/16"), storage: StorageModel(), scope: .global,
                                  menu: menu, strategy: .exact, seed: 0).totals.predictedError ?? .nan
            }
            let narrowExact = try #require(narrowed.rows.first { $0.strategy == "exact" }?.predictedError)
            #expect(narrowExact == (try exactError([16, 4])))
            #expect(narrowExact > (try exactError([16, 8, 4, 3, 2, 1])))
            let profiles = try await client.get("/v1/profiles").json
            #expect((profiles["models"] as? [[String: Any]])?.contains { $0["name"] as? String == "llama-2-7b" } == true)
            #expect((profiles["presets"] as? [[String: Any]])?.contains { $0["name"] as? String == "delta-come" } == true)
        }
    }

    @Test("a registered plan runner's plan is served by GET /v1/plans/{id}")
    func planJobResult() async throws {
        let root = try temporaryDirectory("planjob"), data = try temporaryDirectory("planjob-data")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: data) }
        let pair = try syntheticPair(in: root)
        // Wiring a plan runner is one registry entry; this one plans the store's shapes with a preset.
        var runners = JobRunners.builtIn()
        runners[.plan] = JobRunner(resumable: false) { context in
            let p = try context.decodeParameters(PlanJobParameters.self)
            let store = try SpectrumStore(at: URL(fileURLWithPath: p.analysisStore))
            let library = try ProfileLibrary.builtIn()
            let profile = try library.model(named: "llama-2-7b").scaled(by: 1.0 / 64, layers: 1)
            #expect(store.matrices.count == profile.expandedMatrices().count)
            let plan = try planFromShapes(profile: profile, preset: try library.preset(named: "delta-come"),
                                          budget: try GivenBudget(parsing: p.budget ?? ""),
                                          storage: StorageModel(accounting: p.accounting, groupSize: p.groupSize),
                                          scope: p.scope, menu: p.bits, seed: p.seed, toolVersion: DeltaPlanVersion.string)
            try FileManager.default.createDirectory(at: context.planFile.deletingLastPathComponent(), withIntermediateDirectories: true)
            try plan.write(to: context.planFile)
            return context.planFile.path
        }
        try await withServer(ServiceConfiguration(dataDirectory: data, allowedRoots: [root]), runners: runners) { client in
            let analysis = try await client.post("/v1/analyses", json: ["base": pair.base.path, "finetuned": pair.finetuned.path])
            let analysisID = try #require(analysis.json["id"] as? String)
            #expect(try await waitForJob(client, analysisID, states: ["succeeded", "failed"])["state"] as? String == "succeeded")
            let submitted = try await client.post("/v1/plans", json: ["analysis": analysisID, "budget": "1/2", "strategy": "preset:delta-come", "accounting": "paper"])
            #expect(submitted.status == 202)
            let planID = try #require(submitted.json["id"] as? String)
            let job = try await waitForJob(client, planID, states: ["succeeded", "failed"])
            #expect(job["state"] as? String == "succeeded", "\(job)")
            let served = try await client.get("/v1/plans/\(planID)")
            #expect(served.status == 200)
            #expect(served.body == (try Data(contentsOf: data.appendingPathComponent("plans/\(planID).json"))))
            #expect(try Plan.decode(served.body, file: "response").budget.given == "1/2")
            // An analysis job is not a plan.
            #expect(try await client.get("/v1/plans/\(analysisID)").status == 404)
        }
    }

    @Test("bad input gets 400/404/409/413/422 JSON errors naming the field, never a 500")
    func errors() async throws {
        let root = try temporaryDirectory("errors"), data = try temporaryDirectory("errors-data")
        let outside = try temporaryDirectory("errors-outside")
        defer { for d in [root, data, outside] { try? FileManager.default.removeItem(at: d) } }
        let pair = try syntheticPair(in: root)
        let secret = outside.appendingPathComponent("secret.safetensors")
        try Data("x".utf8).write(to: secret)
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("escape"), withDestinationURL: outside)
        let planFile = root.appendingPathComponent("plan.json")
        try Data("{}".utf8).write(to: planFile)

        try await withServer(ServiceConfiguration(dataDirectory: data, allowedRoots: [root])) { client in
            func expectError(_ r: HTTPResult, _ status: Int, _ code: String, naming field: String? = nil,
                             sourceLocation: SourceLocation = #_sourceLocation) {
                #expect(r.status == status, "\(r.text)", sourceLocation: sourceLocation)
                #expect(r.errorCode == code, "\(r.text)", sourceLocation: sourceLocation)
                if let field { #expect(r.errorMessage.contains(field), "\(r.errorMessage)", sourceLocation: sourceLocation) }
                #expect(r.headers["content-type"]?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
            }
            var plan = paperPlanRequest
            plan["strategy"] = "simulated-annealing"
            expectError(try await client.post("/v1/plans", json: plan), 400, "unknown_strategy", naming: "strategy")
            plan["strategy"] = "preset:no-such-preset"
            expectError(try await client.post("/v1/plans", json: plan), 400, "unknown_strategy", naming: "no-such-preset")
            plan["strategy"] = "greedy"
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_plan_request", naming: "strategy")
            plan = paperPlanRequest
            plan["budget"] = "12 parsecs"
            expectError(try await client.post("/v1/plans", json: plan), 400, "malformed_budget", naming: "budget")
            plan["budget"] = 5
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "budget")
            plan["budget"] = "1B"
            let infeasible = try await client.post("/v1/plans", json: plan)
            expectError(infeasible, 400, "infeasible_budget", naming: "smallest feasible")
            let details = try #require((infeasible.json["error"] as? [String: Any])?["details"] as? [String: Any])
            let smallest = try #require(details["smallestFeasibleBits"] as? Int)
            #expect(smallest > (details["budgetBits"] as? Int ?? .max))
            plan = paperPlanRequest
            plan["colour"] = "blue"
            expectError(try await client.post("/v1/plans", json: plan), 400, "unknown_field", naming: "colour")
            plan = paperPlanRequest
            plan["profile"] = "gpt-17"
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "profile")
            plan["analysis"] = "x"
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "analysis")
            // Fleets: member names name files; floors need a search; members are analyses of this server.
            func fleet(_ members: [[String: Any]], strategy: String = "exact") -> [String: Any] {
                ["members": members, "budget": "1/16", "strategy": strategy]
            }
            for name in ["../escape", ".hidden", "fleet", "a b"] {
                expectError(try await client.post("/v1/fleets", json: fleet([["name": name, "analysis": "x"]])), 400, "invalid_field",
                            naming: "members[0].name")
            }
            expectError(try await client.post("/v1/fleets", json: fleet([["name": "a", "analysis": "x"], ["name": "a", "analysis": "y"]])),
                        400, "invalid_field", naming: "members[1].name")
            expectError(try await client.post("/v1/fleets", json: fleet([["name": "a", "analysis": "x", "maxError": 0.1]],
                                                                          strategy: "preset:delta-come")),
                        400, "invalid_field", naming: "members[0].maxError")
            expectError(try await client.post("/v1/fleets", json: fleet([["name": "a", "analysis": "x", "weight": -1]])), 400, "invalid_field",
                        naming: "members[0].weight")
            expectError(try await client.post("/v1/fleets", json: fleet([["name": "a", "analysis": "no-such-job"]])), 404, "not_found",
                        naming: "members[0].analysis")
            expectError(try await client.post("/v1/fleets", json: fleet([])), 400, "invalid_field", naming: "members")
            expectError(try await client.get("/v1/fleets/no-such-job"), 404, "not_found")
            plan = paperPlanRequest
            plan["scope"] = "galaxy"
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "scope")
            plan = paperPlanRequest
            plan["bits"] = [16, 5]
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "bits")
            // A field of the wrong type is a 400 naming it, never dropped: bits is an array of integers.
            plan["bits"] = "16,8,4"
            expectError(try await client.post("/v1/plans", json: plan), 400, "invalid_field", naming: "bits")
            expectError(try await client.request("POST", "/v1/plans", body: Data("{not json".utf8)), 400, "invalid_json")
            expectError(try await client.request("POST", "/v1/plans", body: Data("[1]".utf8)), 400, "invalid_json")
            expectError(try await client.post("/v1/analyses", json: ["base": pair.base.path]), 400, "invalid_field", naming: "finetuned")
            expectError(try await client.post("/v1/analyses", json: ["base": pair.base.path, "finetuned": pair.finetuned.path, "maxRank": -3]),
                        400, "invalid_field", naming: "maxRank")
            expectError(try await client.post("/v1/comparisons", json: ["analysis": "nope", "budgets": ["1/16"]]),
                        404, "not_found", naming: "analysis")

            // 404
            expectError(try await client.get("/v1/jobs/\(UUID().uuidString)"), 404, "not_found")
            expectError(try await client.delete("/v1/jobs/nope"), 404, "not_found")
            expectError(try await client.get("/v1/plans/nope"), 404, "not_found")
            expectError(try await client.get("/v1/nowhere"), 404, "not_found")
            expectError(try await client.get("/v1/jobs?state=sleeping"), 400, "invalid_field", naming: "state")

            // 413: one byte over the 1 MiB limit.
            let big = Data(repeating: UInt8(ascii: " "), count: (1 << 20) + 1)
            expectError(try await client.request("POST", "/v1/analyses", body: big), 413, "body_too_large")

            // 422: `..`, a symlink out of the root, an absolute path elsewhere, a relative path.
            for (path, label) in [
                (root.path + "/models/../../" + outside.lastPathComponent + "/secret.safetensors", "dotdot"),
                (root.path + "/escape/secret.safetensors", "symlink"),
                (secret.path, "absolute"),
                ("models/base", "relative"),
            ] {
                let r = try await client.post("/v1/analyses", json: ["base": path, "finetuned": pair.finetuned.path])
                #expect(r.status == 422, "\(label): \(r.text)")
                #expect(r.errorCode == "path_not_allowed", "\(label)")
                #expect(r.errorMessage.contains("'base'"), "\(label): \(r.errorMessage)")
            }
            let outsideCalibration = try await client.post("/v1/analyses", json: [
                "base": pair.base.path, "finetuned": pair.finetuned.path, "calibration": root.path + "/escape/secret.safetensors",
            ])
            expectError(outsideCalibration, 422, "path_not_allowed", naming: "calibration")

            // 409: cancelling a finished job. A compression of a file that is no plan is accepted (the
            // path is allowed), then fails naming the file.
            let compression = try await client.post("/v1/compressions", json: [
                "base": pair.base.path, "finetuned": pair.finetuned.path, "planFile": planFile.path,
            ])
            #expect(compression.status == 202, "\(compression.text)")
            let id = try #require(compression.json["id"] as? String)
            let failed = try await waitForJob(client, id, states: ["failed", "succeeded"])
            #expect(failed["state"] as? String == "failed")
            #expect((failed["error"] as? String)?.contains(planFile.path) == true, "\(failed["error"] ?? "")")
            expectError(try await client.delete("/v1/jobs/\(id)"), 409, "job_finished", naming: id)

            // Evaluations and merges: exactly one artifact source; a compression that is no
            // compression job, or did not succeed; an artifact path outside the roots.
            expectError(try await client.post("/v1/evaluations", json: ["base": pair.base.path]), 400, "invalid_field", naming: "artifact")
            expectError(try await client.post("/v1/merges", json: ["compression": id, "artifact": root.path]), 400, "invalid_field",
                        naming: "compression")
            expectError(try await client.post("/v1/merges", json: ["compression": "nope"]), 404, "not_found", naming: "compression")
            expectError(try await client.post("/v1/evaluations", json: ["compression": id]), 409, "compression_not_ready", naming: id)
            expectError(try await client.post("/v1/merges", json: ["artifact": secret.path, "base": pair.base.path]), 422,
                        "path_not_allowed", naming: "artifact")
            expectError(try await client.post("/v1/evaluations", json: ["artifact": root.path]), 400, "invalid_field", naming: "base")

            // None of the above was a 500.
            let metrics = try await client.get("/metrics").text
            #expect(!metrics.contains("status=\"500\""))
        }
    }

    @Test("bearer token: 401 without or with a wrong token, 200 with it; /healthz stays open")
    func auth() async throws {
        let data = try temporaryDirectory("auth-data")
        defer { try? FileManager.default.removeItem(at: data) }
        let tokenFile = data.appendingPathComponent("token")
        try Data("s3cret-token\n".utf8).write(to: tokenFile)
        let token = try ServiceConfiguration.readToken(from: tokenFile)
        #expect(token == "s3cret-token")
        try await withServer(ServiceConfiguration(dataDirectory: data, token: token)) { client in
            var anonymous = client
            anonymous.token = nil
            let denied = try await anonymous.get("/v1/profiles")
            #expect(denied.status == 401)
            #expect(denied.errorCode == "unauthorized")
            #expect(denied.headers["www-authenticate"] == "Bearer")
            #expect(try await anonymous.get("/metrics").status == 401)
            #expect(try await anonymous.post("/v1/plans", json: paperPlanRequest).status == 401)
            var wrong = client
            wrong.token = "s3cret-tokem"
            #expect(try await wrong.get("/v1/profiles").status == 401)
            wrong.token = "s3cret-token-and-more"
            #expect(try await wrong.get("/v1/profiles").status == 401)
            #expect(try await anonymous.get("/v1/profiles", headers: ["Authorization": "Basic czNjcmV0LXRva2Vu"]).status == 401)
            #expect(try await client.get("/v1/profiles").status == 200)
            #expect(try await client.post("/v1/plans", json: paperPlanRequest).status == 200)
            #expect(try await anonymous.get("/healthz").status == 200)
        }
        // Without a token file, no header is needed.
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            let open = try await client.get("/v1/profiles")
            #expect(open.status == 200)
        }
    }

    @Test("constant-time comparison agrees with ==")
    func tokenComparison() {
        for (a, b) in [("", ""), ("a", ""), ("abc", "abc"), ("abc", "abd"), ("abc", "abcd"), ("é", "e"), ("token", "Token")] {
            #expect(constantTimeEqual(a, b) == (a == b), "\(a) vs \(b)")
        }
    }

    @Test("a server stopped mid-analysis resumes the job after a restart on the same data dir")
    func restartMidAnalysis() async throws {
        let root = try temporaryDirectory("restart"), data = try temporaryDirectory("restart-data")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: data) }
        let pair = try syntheticPair(in: root)
        let configuration = ServiceConfiguration(dataDirectory: data, allowedRoots: [root])
        let id = try await withServer(configuration, runners: analysisHeldAfterFirstMatrix()) { client in
            let r = try await client.post("/v1/analyses", json: ["base": pair.base.path, "finetuned": pair.finetuned.path])
            let id = try #require(r.json["id"] as? String)
            // Wait until the first matrix is stored; the runner is then held until the shutdown.
            try await waitForFirstMatrix(client, id)
            return id
        }
        // The stopped server put the job back in the queue, with the matrices it had running in the
        // store (the job works on cores / workers matrices at once; each running one finishes).
        let store = try JobStore(path: data.appendingPathComponent("jobs.sqlite").path)
        let stopped = try #require(try store.jobNow(id: id))
        #expect(stopped.state == .queued)
        #expect(stopped.attempts == 1)
        #expect(throws: AnalysisError.self) { try SpectrumStore(at: data.appendingPathComponent("analyses/\(id)")) }
        let partial = try SpectrumStore(at: data.appendingPathComponent("analyses/\(id)"), requireComplete: false)
        #expect(partial.matrices.count >= 1)

        try await withServer(configuration) { client in
            let job = try await waitForJob(client, id, states: ["succeeded", "failed", "cancelled"])
            #expect(job["state"] as? String == "succeeded", "\(job)")
            #expect(job["attempts"] as? Int == 2)
            let resumed = try SpectrumStore(at: data.appendingPathComponent("analyses/\(id)"))
            #expect(resumed.matrices.count == 7)
        }
    }

    @Test("jobs a crash left running are re-queued (resumable), failed (not resumable) or cancelled (cancel asked)")
    func crashRecovery() async throws {
        let data = try temporaryDirectory("crash-data")
        defer { try? FileManager.default.removeItem(at: data) }
        let store = try JobStore(path: data.appendingPathComponent("jobs.sqlite").path)
        let analysis = try await store.create(kind: .analysis, parameters: Data("{}".utf8))
        let compression = try await store.create(kind: .compression, parameters: Data("{}".utf8))
        let cancelled = try await store.create(kind: .analysis, parameters: Data("{}".utf8))
        for job in [analysis, compression, cancelled] { try store.forceState(id: job.id, .running) }
        #expect(try await store.cancel(id: cancelled.id) == .requested(try store.jobNow(id: cancelled.id)!))
        let partial = JobContext.analysisStore(id: cancelled.id, in: data)
        try FileManager.default.createDirectory(at: partial, withIntermediateDirectories: true)

        // A new start (the state is built before any worker runs), with compressions not resumable.
        var runners = JobRunners.builtIn()
        runners[.compression] = .unavailable(.compression, needs: "a test runner that cannot resume")
        _ = try buildState(ServiceConfiguration(dataDirectory: data), runners: runners, logger: testLogger)
        #expect(try store.jobNow(id: analysis.id)?.state == .queued)
        let failed = try #require(try store.jobNow(id: compression.id))
        #expect(failed.state == .failed)
        #expect(failed.error?.contains("cannot resume") == true)
        #expect(failed.finishedAt != nil)
        #expect(try store.jobNow(id: cancelled.id)?.state == .cancelled)
        #expect(!FileManager.default.fileExists(atPath: partial.path))
        #expect(try await store.countsByState()[.running] == 0)
    }

    @Test("cancelling: a queued job at once, a running analysis at its next matrix with the partial store removed")
    func cancel() async throws {
        let root = try temporaryDirectory("cancel"), data = try temporaryDirectory("cancel-data")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: data) }
        let pair = try syntheticPair(in: root)
        let configuration = ServiceConfiguration(dataDirectory: data, allowedRoots: [root], workers: 1)
        try await withServer(configuration, runners: analysisHeldAfterFirstMatrix()) { client in
            let body = ["base": pair.base.path, "finetuned": pair.finetuned.path]
            let first = try #require(try await client.post("/v1/analyses", json: body).json["id"] as? String)
            try await waitForFirstMatrix(client, first)
            // The only worker is busy: a second job waits in the queue, the API still answers.
            let second = try #require(try await client.post("/v1/analyses", json: body).json["id"] as? String)
            #expect(try await client.post("/v1/plans", json: paperPlanRequest).status == 200)
            #expect(try await client.get("/healthz").status == 200)
            let metrics = try await client.get("/metrics").text
            #expect(metrics.contains("deltaplan_jobs{state=\"running\"} 1"))
            #expect(metrics.contains("deltaplan_jobs{state=\"queued\"} 1"))
            #expect(metrics.contains("deltaplan_workers_busy 1"))

            let cancelQueued = try await client.delete("/v1/jobs/\(second)")
            #expect(cancelQueued.status == 200)
            #expect(cancelQueued.json["state"] as? String == "cancelled")

            #expect(FileManager.default.fileExists(atPath: data.appendingPathComponent("analyses/\(first)").path))
            let cancelRunning = try await client.delete("/v1/jobs/\(first)")
            #expect(cancelRunning.status == 202)
            #expect(cancelRunning.json["cancelRequested"] as? Bool == true)
            let job = try await waitForJob(client, first, states: ["cancelled", "succeeded", "failed"])
            #expect(job["state"] as? String == "cancelled", "\(job)")
            #expect(!FileManager.default.fileExists(atPath: data.appendingPathComponent("analyses/\(first)").path))
            #expect(try await client.delete("/v1/jobs/\(first)").status == 409)
        }
    }

    @Test("a cancelled plan job stops in its measurement pass at the next matrix and writes no plan")
    func planCancelledDuringMeasurement() throws {
        let root = try temporaryDirectory("plan-cancel"), data = try temporaryDirectory("plan-cancel-data")
        defer { try? FileManager.default.removeItem(at: root); try? FileManager.default.removeItem(at: data) }
        let pair = try syntheticPair(in: root)
        let store = root.appendingPathComponent("store")
        let matrices = try Analyzer(base: pair.base, finetuned: pair.finetuned, calibration: pair.calibration,
                                    options: AnalysisOptions(), store: store).run().matrices.count
        let parameters = PlanJobParameters(
            analysis: "analysis", analysisStore: store.path, budget: "1/8", strategy: "exact", scope: .global,
            bits: [16, 8, 4, 3, 2, 1], seed: 0, accounting: .artifact, groupSize: 128)
        let measured = Mutex(0)
        let context = JobContext(
            id: "plan", kind: .plan, parameters: try JSONEncoder().encode(parameters), dataDirectory: data,
            reportProgress: { _, message in if message.hasPrefix("measured ") { measured.withLock { $0 += 1 } } },
            stopReason: { measured.withLock { $0 } >= 1 ? .cancelled : nil })
        #expect(matrices > 1)
        #expect(throws: CancellationError.self) { try JobRunner.plan.run(context) }
        #expect(measured.withLock { $0 } == 1)
        #expect(!FileManager.default.fileExists(atPath: context.planFile.path))
    }

    @Test("/metrics: job-state gauges, request counters and latency histograms in Prometheus text format")
    func metrics() async throws {
        let data = try temporaryDirectory("metrics-data")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            for _ in 0..<3 { #expect(try await client.post("/v1/plans", json: paperPlanRequest).status == 200) }
            #expect(try await client.get("/v1/jobs/nope").status == 404)
            let response = try await client.get("/metrics")
            #expect(response.headers["content-type"]?.hasPrefix("text/plain") == true)
            let lines = response.text.split(separator: "\n").map(String.init)
            for state in JobState.allCases {
                #expect(lines.contains("deltaplan_jobs{state=\"\(state.rawValue)\"} 0"))
            }
            #expect(lines.contains("# TYPE deltaplan_jobs gauge"))
            #expect(lines.contains("deltaplan_http_requests_total{route=\"/v1/plans\",method=\"POST\",status=\"200\"} 3"))
            #expect(lines.contains("deltaplan_http_requests_total{route=\"/v1/jobs/{id}\",method=\"GET\",status=\"404\"} 1"))
            #expect(lines.contains("deltaplan_http_request_duration_seconds_count{route=\"/v1/plans\",method=\"POST\",status=\"200\"} 3"))
            #expect(lines.contains("deltaplan_http_request_duration_seconds_bucket{route=\"/v1/plans\",method=\"POST\",status=\"200\",le=\"+Inf\"} 3"))
            // Every sample line is `name{labels} value` or `name value` with a numeric value.
            for line in lines where !line.hasPrefix("#") {
                let value = line.split(separator: " ").last.map(String.init) ?? ""
                #expect(Double(value) != nil, "\(line)")
            }
        }
    }

    @Test("the OpenAPI document is JSON and describes every route")
    func openAPI() async throws {
        let data = try temporaryDirectory("openapi-data")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            let document = try await client.get("/v1/openapi.json").json
            #expect(document["openapi"] as? String == "3.1.0")
            // The document served is the bundled openapi.yaml, as JSON.
            let served = try await client.get("/v1/openapi.json")
            #expect(served.headers["content-type"]?.hasPrefix("application/json") == true)
            #expect(served.body == Contract.bundled.json)
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let routes: [(String, String)] = [
                ("/healthz", "get"), ("/metrics", "get"), ("/v1/openapi.json", "get"), ("/v1/profiles", "get"),
                ("/v1/analyses", "post"), ("/v1/plans", "post"), ("/v1/plans/{id}", "get"), ("/v1/comparisons", "post"), ("/v1/comparisons/{id}", "get"),
                ("/v1/compressions", "post"), ("/v1/evaluations", "post"), ("/v1/evaluations/{id}", "get"), ("/v1/merges", "post"),
                ("/v1/jobs", "get"), ("/v1/jobs/{id}", "get"), ("/v1/jobs/{id}", "delete"),
                ("/v1/fleets", "post"), ("/v1/fleets/{id}", "get"), ("/v1/fleets/{id}/plans/{name}", "get"),
            ]
            for (path, method) in routes { #expect(paths[path]?[method] != nil, "\(method) \(path)") }
            #expect(paths.values.reduce(0) { $0 + $1.count } == routes.count)
        }
    }
}

@Suite("Plan cache")
struct PlanCacheTests {
    @Test("keeps at most `capacity` entries, dropping the oldest first")
    func eviction() {
        let cache = PlanCache(capacity: 2)
        cache.insert(Data([1]), for: "a")
        cache.insert(Data([2]), for: "b")
        cache.insert(Data([9]), for: "a")  // already present: no change, no reordering
        #expect(cache.value(for: "a") == Data([1]))
        cache.insert(Data([3]), for: "c")
        #expect(cache.value(for: "a") == nil)
        #expect(cache.value(for: "b") == Data([2]))
        #expect(cache.value(for: "c") == Data([3]))
    }
}

@Suite("Allowed roots")
struct AllowedRootsTests {
    @Test("component-wise containment after resolving symlinks")
    func containment() throws {
        let base = try temporaryDirectory("roots")
        defer { try? FileManager.default.removeItem(at: base) }
        let root = base.appendingPathComponent("models"), sibling = base.appendingPathComponent("models-evil")
        for d in [root, sibling, root.appendingPathComponent("a")] {
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        }
        try FileManager.default.createSymbolicLink(at: root.appendingPathComponent("inner"), withDestinationURL: root.appendingPathComponent("a"))
        let roots = try AllowedRoots([root])
        #expect(try roots.resolve(root.path + "/a", field: "f") == root.path + "/a")
        #expect(try roots.resolve(root.path + "/inner", field: "f") == root.path + "/a")
        #expect(try roots.resolve(root.path + "/a/..", field: "f") == root.path)
        #expect(throws: APIError.self) { try roots.resolve(sibling.path, field: "f") }
        #expect(throws: APIError.self) { try roots.resolve(root.path + "/../models-evil", field: "f") }
        #expect(throws: APIError.self) { try roots.resolve(root.path + "/missing", field: "f") }
        #expect(throws: ServiceSetupError.self) { try AllowedRoots([base.appendingPathComponent("nope")]) }
    }
}
