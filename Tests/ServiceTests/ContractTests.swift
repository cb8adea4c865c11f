import ArgumentParser
import ContentHash
import Foundation
import ModelProfiles
import Optimizer
import Quantization
import Testing
@testable import Service
@testable import deltaplan

/// `openapi.yaml` against the library and the CLI: the defaults and enums it states are theirs,
/// every error code the server answers is listed, and every rule it states for requests is one
/// the server enforces.
@Suite("Contract")
struct ContractTests {
    let contract = Contract.bundled

    func schema(_ name: String) throws -> JSONValue { try #require(contract.schema(name), "no schema \(name)") }

    func property(_ schema: String, _ name: String) throws -> JSONValue {
        contract.resolve(try #require(try self.schema(schema)["properties"]?[name], "\(schema).\(name)"))
    }

    func strings(_ value: JSONValue?) -> [String]? {
        guard case let .array(items)? = value else { return nil }
        return items.compactMap { if case let .string(s) = $0 { s } else { nil } }
    }

    @Test("the committed generated code is what openapi.yaml generates (GeneratedSources/openapi.sha256, by .ci/openapi-generate)")
    func generatedSourcesAreCurrent() throws {
        let service = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/Service").standardizedFileURL
        let generated = service.appendingPathComponent("GeneratedSources")
        var recorded: [String: String] = [:]
        for line in try String(contentsOf: generated.appendingPathComponent("openapi.sha256"), encoding: .utf8).split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2 { recorded[String(parts[0])] = String(parts[1]) }
        }
        let inputs = try Data(contentsOf: service.appendingPathComponent("openapi.yaml"))
            + Data(contentsOf: service.appendingPathComponent("openapi-generator-config.yaml"))
        #expect(recorded["inputs"] == Digest.sha256(inputs),
                "openapi.yaml or openapi-generator-config.yaml changed since the code was generated: run .ci/openapi-generate")
        let files = try FileManager.default.contentsOfDirectory(atPath: generated.path).filter { $0.hasSuffix(".swift") }
            .sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        #expect(!files.isEmpty)
        var outputs = Data()
        for file in files { outputs += try Data(contentsOf: generated.appendingPathComponent(file)) }
        #expect(recorded["outputs"] == Digest.sha256(outputs), "a generated file was edited: run .ci/openapi-generate")
        // The bundled document, served at /v1/openapi.json, is that file.
        #expect(contract.document == (try Contract(yaml: String(decoding: try Data(contentsOf: service.appendingPathComponent("openapi.yaml")),
                                                                as: UTF8.self))).document)
    }

    @Test("the contract's defaults are the library's and the CLI's")
    func defaults() throws {
        let cliPlan = try #require(try DeltaPlan.parseAsRoot(["plan", "--profile", "llama-2-7b", "--budget", "1/16"]) as? PlanCommand)
        let cliCompare = try #require(try DeltaPlan.parseAsRoot(["compare", "store"]) as? CompareCommand)
        let storage = StorageModel()
        for request in ["PlanRequest", "ComparisonRequest"] {
            // Bits: every width the library has, then 0; the CLI's --bits default, parsed.
            let bits = try property(request, "bits")["default"]
            let expected = JSONValue.array((ProfileLibrary.bitWidths.sorted(by: >) + [0]).map { .int(Int64($0)) })
            #expect(bits == expected, "\(request).bits")
            #expect(ProfileLibrary.bitWidths.sorted(by: >) == BitMenu.default)
            #expect(cliPlan.bits == BitMenu.default && cliCompare.bits == BitMenu.default)
            #expect(try BitMenu.parse([16, 8, 4, 3, 2, 1, 0]) == BitMenu.default)
            // Storage: artifact accounting, group size 128.
            #expect(try property(request, "accounting")["default"] == .string(StorageModel.defaultAccounting.rawValue))
            #expect(try property(request, "groupSize")["default"] == .int(Int64(StorageModel.defaultGroupSize)))
            #expect(storage.accounting == StorageModel.defaultAccounting && storage.groupSize == StorageModel.defaultGroupSize)
            #expect(cliPlan.storageOptions.accounting == storage.accounting && cliPlan.storageOptions.groupSize == storage.groupSize)
            #expect(cliCompare.accounting == storage.accounting && cliCompare.groupSize == storage.groupSize)
            #expect(try property(request, "seed")["default"] == .int(Int64(cliPlan.seed)))
            #expect(cliCompare.seed == cliPlan.seed)
        }
        // The strategy's default depends on what is planned from.
        let strategy = try property("PlanRequest", "strategy")
        #expect(strategy["x-default-with-analysis"] == .string(Strategy.defaultName(hasErrorModel: true)))
        #expect(strategy["x-default-with-profile"] == .string(Strategy.defaultName(hasErrorModel: false)))
        #expect(Strategy.defaultName(hasErrorModel: true) == "exact" && Strategy.defaultName(hasErrorModel: false) == "preset:delta-come")
        #expect(strings(try property("ComparisonRequest", "strategies")["default"]) == Candidate.defaultNames)
        #expect(try property("AnalysisRequest", "seed")["default"] == .int(0))
        // The quantizer and its damping: the library's defaults, which the CLI's commands take.
        let cliCompress = try #require(try DeltaPlan.parseAsRoot(["compress", "store", "--plan", "p.json", "--out", "a"]) as? Compress)
        #expect(try schema("QuantizationMethod")["default"] == .string(QuantizationMethod.default.rawValue))
        #expect(cliPlan.method == .default && cliCompare.method == .default && cliCompress.method == .default)
        #expect(try schema("Dampening")["default"] == .double(QuantizationMethod.defaultDampening))
        #expect(cliCompress.dampening == QuantizationMethod.defaultDampening)
        #expect(try schema("ErrorUnit")["default"] == .string(cliPlan.storageOptions.errorUnit.rawValue))
        #expect(MeasurementOptions().dampening == QuantizationMethod.defaultDampening && MeasurementOptions().groupSize == StorageModel.defaultGroupSize)
        // The options each job kind takes, as the CLI's command for it takes them.
        for (request, command) in [("PlanRequest", "plan"), ("ComparisonRequest", "compare")] {
            for field in ["method", "objective", "order", "calibration", "scope", "bits", "seed", "accounting", "groupSize"]
                + (request == "PlanRequest" ? ["budget", "maxError", "errorUnit", "strategy", "verify"] : ["budgets", "strategies"]) {
                #expect(try schema(request)["properties"]?[field] != nil, "\(request).\(field), as `\(command)` takes it")
            }
        }
        for field in ["method", "order", "dampening", "calibration", "base", "finetuned", "planFile"] {
            #expect(try schema("CompressionRequest")["properties"]?[field] != nil, "CompressionRequest.\(field), as `compress` takes it")
        }
    }

    @Test("the contract's enums are the library's values")
    func enums() throws {
        func values(_ name: String) throws -> [String] { try #require(strings(try schema(name)["enum"]), "\(name)") }
        #expect(try values("Scope") == Scope.allCases.map(\.rawValue))
        #expect(try values("Accounting") == Accounting.allCases.map(\.rawValue))
        #expect(try values("Objective") == ErrorObjective.allCases.map(\.rawValue))
        #expect(try values("SegmentOrder") == SegmentOrder.allCases.map(\.rawValue))
        #expect(try values("QuantizationMethod") == QuantizationMethod.allCases.map(\.rawValue))
        #expect(try values("ErrorUnit") == ErrorTarget.Unit.allCases.map(\.rawValue))
        #expect(try values("JobKind") == JobKind.allCases.map(\.rawValue))
        #expect(try values("JobState") == JobState.allCases.map(\.rawValue))
        // The menu's items: the library's widths and 0.
        guard case let .array(widths)? = try schema("BitsMenu")["items"]?["enum"] else { Issue.record("BitsMenu.items.enum"); return }
        let menu = widths.compactMap { if case let .int(w) = $0 { Int(w) } else { nil } }
        #expect(Set(menu) == Set(ProfileLibrary.bitWidths).union([0]) && menu.count == widths.count)
        // Baselines are documented where they are accepted.
        let strategies = try property("ComparisonRequest", "strategies")
        for baseline in Candidate.baselines {
            #expect(strategies["description"].map { "\($0)" }?.contains(baseline) == true, "\(baseline)")
        }
    }

    @Test("every error code the server answers is in the contract, and every listed one is answered")
    func errorCodes() throws {
        let listed = try #require(strings(try schema("ErrorCode")["enum"]))
        let errors: [APIError] = [
            .invalidJSON("x"), .invalidField(field: "f", reason: "r"), .unknownField(field: "f", allowed: []),
            .unknownStrategy(field: "f", value: "v", reason: "r"), .malformedBudget(field: "f", message: "m"),
            .infeasibleBudget(message: "m", unit: "u", budgetBits: 1, smallestFeasibleBits: 2), .invalidPlanRequest(message: "m"),
            .unauthorized, .notFound("m"), .methodNotAllowed(allowed: ["GET"]), .jobFinished("m"), .bodyTooLarge(limit: 1),
            .pathNotAllowed(field: "f", path: "p", reason: "r"), .internalError("m"),
        ] + JobKind.allCases.filter { $0 != .merge }.map { APIError.notReady(kind: $0, message: "m") }
        #expect(Set(errors.map(\.code)) == Set(listed))
        for code in ["comparison_not_ready", "compression_not_ready", "evaluation_not_ready", "analysis_not_ready", "plan_not_ready"] {
            #expect(listed.contains(code), "\(code)")
        }
        #expect(listed.count == Set(listed).count)
    }

    @Test("every request rule the contract states is one the validator enforces")
    func validatorCoversTheContract() {
        #expect(contract.unsupportedKeywords() == [])
    }

    @Test("3.1, every request schema closed (additionalProperties: false), every operation answers its errors")
    func shape() throws {
        #expect(contract.document["openapi"] == .string("3.1.0"))
        guard case let .object(paths)? = contract.document["paths"] else { Issue.record("paths"); return }
        var operations = 0
        for (path, item) in paths {
            guard case let .object(methods) = item else { continue }
            for (method, operation) in methods {
                operations += 1
                guard case let .string(id)? = operation["operationId"] else { Issue.record("\(method) \(path): no operationId"); continue }
                if let schema = contract.requestSchema(operationID: id) {
                    #expect(contract.resolve(schema)["additionalProperties"] == .bool(false), "\(id)")
                    #expect(operation["responses"]?["400"] != nil && operation["responses"]?["413"] != nil, "\(id)")
                }
                if path != "/healthz" { #expect(operation["responses"]?["401"] != nil, "\(id)") }
            }
        }
        #expect(operations == 19)
    }
}

/// The validator on its own: what each keyword refuses, and the field it names.
@Suite("Contract validation")
struct ContractValidationTests {
    let contract = Contract.bundled

    func refusal(_ body: String, _ operation: String) -> APIError? {
        do { _ = try contract.validateBody(Data(body.utf8), operationID: operation); return nil } catch { return error }
    }

    @Test("refusals name the field", arguments: [
        (#"{"profile":"p","budget":"1/16","bits":"16,8"}"#, "submitPlan", "invalid_field", "bits"),
        (#"{"profile":"p","budget":"1/16","bits":[16,5]}"#, "submitPlan", "invalid_field", "bits[1]"),
        (#"{"profile":"p","budget":"1/16","bits":[16,16]}"#, "submitPlan", "invalid_field", "bits[1]"),
        (#"{"profile":"p","budget":"1/16","bits":[]}"#, "submitPlan", "invalid_field", "bits"),
        (#"{"profile":"p","budget":5}"#, "submitPlan", "invalid_field", "budget"),
        (#"{"profile":"p","budget":"1/16","seed":-1}"#, "submitPlan", "invalid_field", "seed"),
        (#"{"profile":"p","budget":"1/16","seed":1.5}"#, "submitPlan", "invalid_field", "seed"),
        (#"{"profile":"p","budget":"1/16","groupSize":0}"#, "submitPlan", "invalid_field", "groupSize"),
        (#"{"profile":"p","budget":"1/16","groupSize":2097152}"#, "submitPlan", "invalid_field", "groupSize"),
        (#"{"profile":"p","budget":"1/16","scope":"galaxy"}"#, "submitPlan", "invalid_field", "scope"),
        (#"{"profile":"p","budget":"1/16","strategy":null}"#, "submitPlan", "invalid_field", "strategy"),
        (#"{"analysis":"a","maxError":0}"#, "submitPlan", "invalid_field", "maxError"),
        (#"{"analysis":"a","maxError":-1.5}"#, "submitPlan", "invalid_field", "maxError"),
        (#"{"analysis":"a","budget":"1/16","verify":11}"#, "submitPlan", "invalid_field", "verify"),
        (#"{"analysis":"a","budget":"1/16","verify":-1}"#, "submitPlan", "invalid_field", "verify"),
        (#"{"base":"/b","finetuned":"/f","plan":"p","dampening":-0.25}"#, "submitCompression", "invalid_field", "dampening"),
        (#"{"profile":"p","budget":"1/16","colour":"blue"}"#, "submitPlan", "unknown_field", "colour"),
        (#"{"analysis":"a","budgets":"1/16"}"#, "submitComparison", "invalid_field", "budgets"),
        (#"{"analysis":"a","budgets":["1/16",7]}"#, "submitComparison", "invalid_field", "budgets[1]"),
        (#"{"analysis":"a","budgets":[]}"#, "submitComparison", "invalid_field", "budgets"),
        (#"{"analysis":"a","budgets":["1/16"],"strategies":[]}"#, "submitComparison", "invalid_field", "strategies"),
        (#"{"analysis":"a","budgets":["1/16"],"bits":"16,4,0"}"#, "submitComparison", "invalid_field", "bits"),
        (#"{"base":"/a","finetuned":"/b","maxRank":0}"#, "submitAnalysis", "invalid_field", "maxRank"),
        (#"{"base":"/a","finetuned":"/b","maxRank":"3"}"#, "submitAnalysis", "invalid_field", "maxRank"),
        (#"{"base":"/a","finetuned":"/b","skipMismatched":"yes"}"#, "submitAnalysis", "invalid_field", "skipMismatched"),
        (#"{"base":"/a","finetuned":"/b","include":"q_proj"}"#, "submitAnalysis", "invalid_field", "include"),
        (#"{"base":"","finetuned":"/b"}"#, "submitAnalysis", "invalid_field", "base"),
        (#"{"base":"/a"}"#, "submitAnalysis", "invalid_field", "finetuned"),
        (#"{"base":"/a","finetuned":"/b","plan":3}"#, "submitCompression", "invalid_field", "plan"),
        (#"{"compression":"c","artifact":["/a"]}"#, "submitEvaluation", "invalid_field", "artifact"),
        (#"{"compression":"c","extra":1}"#, "submitMerge", "unknown_field", "extra"),
        ("[1]", "submitPlan", "invalid_json", ""),
        ("{not json", "submitPlan", "invalid_json", ""),
        ("", "submitPlan", "invalid_json", ""),
    ])
    func refusals(body: String, operation: String, code: String, field: String) throws {
        let error = try #require(refusal(body, operation), "\(body) was accepted")
        #expect(error.code == code, "\(body): \(error)")
        if !field.isEmpty {
            #expect(error.details?.field == field, "\(body): \(error)")
            #expect(error.description.contains("'\(field)'"), "\(error)")
        }
    }

    @Test("valid bodies pass, with every optional field")
    func accepted() {
        #expect(refusal(#"{"profile":"p","budget":"1/16","strategy":"greedy","scope":"type","bits":[16,4,0],"seed":3,"accounting":"paper","groupSize":64,"objective":"paired","order":"paper"}"#, "submitPlan") == nil)
        #expect(refusal(#"{"analysis":"a","budgets":["1/16"],"strategies":["exact","low-rank","bitdelta"],"bits":[8,0]}"#, "submitComparison") == nil)
        #expect(refusal(#"{"base":"/a","finetuned":"/b","calibration":"/c","include":["q"],"exclude":[],"maxRank":16,"seed":0,"skipMismatched":true,"allowMissingCalibration":false}"#, "submitAnalysis") == nil)
    }

    @Test("unknown fields list the schema's fields, from the contract")
    func unknownFieldListsTheSchema() throws {
        let error = try #require(refusal(#"{"base":"/a","finetuned":"/b","colour":1}"#, "submitAnalysis"))
        guard case let .unknownField(field, allowed) = error else { Issue.record("\(error)"); return }
        #expect(field == "colour")
        #expect(Set(allowed) == ["base", "finetuned", "calibration", "include", "exclude", "maxRank", "seed", "skipMismatched",
                                 "allowMissingCalibration"])
    }

    @Test("query parameters: enums and ranges")
    func query() {
        func refusal(_ items: [(String, String)]) -> APIError? {
            do { try contract.validateQuery(items.map { (name: $0.0, value: $0.1) }, operationID: "listJobs"); return nil } catch { return error }
        }
        #expect(refusal([("state", "queued"), ("kind", "plan"), ("limit", "1000")]) == nil)
        #expect(refusal([("other", "x")]) == nil)
        for (items, field) in [([("state", "sleeping")], "state"), ([("kind", "x")], "kind"), ([("limit", "0")], "limit"),
                               ([("limit", "1001")], "limit"), ([("limit", "ten")], "limit")] {
            let error = refusal(items)
            #expect(error?.code == "invalid_field" && error?.description.contains(field) == true, "\(items): \(String(describing: error))")
        }
    }
}

/// The contract enforced by the live server, over HTTP.
@Suite("Contract over HTTP")
struct ContractHTTPTests {
    @Test("every request schema refuses an unknown field and a wrongly typed one, naming it; chunked bodies obey the limit")
    func everyEndpoint() async throws {
        let data = try temporaryDirectory("contract-data")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data, maxBodyBytes: 4096)) { client in
            let endpoints: [(String, [String: Any])] = [
                ("/v1/analyses", ["base": "/a", "finetuned": "/b"]),
                ("/v1/plans", ["profile": "llama-2-7b", "budget": "1/16"]),
                ("/v1/comparisons", ["analysis": "a", "budgets": ["1/16"]]),
                ("/v1/compressions", ["base": "/a", "finetuned": "/b", "planFile": "/p"]),
                ("/v1/evaluations", ["artifact": "/a"]),
                ("/v1/merges", ["artifact": "/a"]),
                ("/v1/fleets", ["members": [["name": "a", "analysis": "a"]], "budget": "1/16"]),
            ]
            for (path, valid) in endpoints {
                var body = valid
                body["zzUnknown"] = 1
                let unknown = try await client.post(path, json: body)
                #expect(unknown.status == 400 && unknown.errorCode == "unknown_field" && unknown.errorMessage.contains("zzUnknown"),
                        "\(path): \(unknown.text)")
                // Every field of the schema, sent as an object: a 400 naming it.
                let properties = Contract.bundled.resolve(try #require(Contract.bundled.requestSchema(operationID: operationID(path))))["properties"]
                guard case let .object(fields)? = properties else { Issue.record("\(path): no properties"); continue }
                for field in fields.keys.sorted() {
                    var wrong = valid
                    wrong[field] = ["an": "object"]
                    let r = try await client.post(path, json: wrong)
                    #expect(r.status == 400 && r.errorCode == "invalid_field" && r.errorMessage.contains("'\(field)'"),
                            "\(path) \(field): \(r.text)")
                    #expect((r.json["error"] as? [String: Any])?["details"] as? [String: String] == ["field": field])
                }
            }
            // A chunked body over the limit is refused like one with a Content-Length.
            let big = try JSONSerialization.data(withJSONObject: ["base": String(repeating: "a", count: 5000), "finetuned": "/b"])
            let chunked = try await client.request("POST", "/v1/analyses", body: big, chunked: true)
            #expect(chunked.status == 413 && chunked.errorCode == "body_too_large", "\(chunked.text)")
            // And a small chunked body is read.
            let small = try await client.request("POST", "/v1/plans", body: try JSONSerialization.data(withJSONObject: paperPlanRequest),
                                                 chunked: true)
            #expect(small.status == 200, "\(small.text)")
        }
    }

    @Test("a method the contract does not have at a path is 405 with Allow (schemathesis ST204); other paths stay 404")
    func methodNotAllowed() async throws {
        let data = try temporaryDirectory("contract-405")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            for (method, path, allow) in [("TRACE", "/v1/profiles", "GET"), ("PUT", "/healthz", "GET"), ("GET", "/v1/plans", "POST"),
                                          ("PATCH", "/v1/jobs/\(UUID().uuidString)", "DELETE, GET"), ("DELETE", "/v1/plans/x", "GET")] {
                let r = try await client.request(method, path)
                #expect(r.status == 405 && r.errorCode == "method_not_allowed", "\(method) \(path): \(r.text)")
                #expect(r.headers["allow"] == allow, "\(method) \(path)")
            }
            for path in ["/v1/nowhere", "/v1/jobs/a/b", "/"] {
                let r = try await client.request("GET", path)
                #expect(r.status == 404 && r.errorCode == "not_found", "\(path): \(r.text)")
            }
        }
    }

    @Test("a body sent as another media type, or an Accept the operation cannot answer, is a 400 naming the header")
    func mediaTypes() async throws {
        let data = try temporaryDirectory("contract-media")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            let body = try JSONSerialization.data(withJSONObject: paperPlanRequest)
            let form = try await client.request("POST", "/v1/plans", body: body, headers: ["Content-Type": "text/plain"])
            #expect(form.status == 400 && form.errorCode == "invalid_field", "\(form.text)")
            #expect((form.json["error"] as? [String: Any])?["details"] as? [String: String] == ["field": "Content-Type"])
            let html = try await client.get("/v1/profiles", headers: ["Accept": "text/html"])
            #expect(html.status == 400 && html.errorCode == "invalid_field" && html.errorMessage.contains("Accept"), "\(html.text)")
            #expect(try await client.get("/v1/profiles", headers: ["Accept": "text/html, */*;q=0.8"]).status == 200)
        }
    }

    func operationID(_ path: String) -> String {
        ["/v1/analyses": "submitAnalysis", "/v1/plans": "submitPlan", "/v1/comparisons": "submitComparison",
         "/v1/compressions": "submitCompression", "/v1/evaluations": "submitEvaluation", "/v1/merges": "submitMerge",
         "/v1/fleets": "submitFleet"][path] ?? ""
    }

    @Test("defaults: a plan without bits, accounting or group size is the plan with the library's defaults")
    func defaultsOverHTTP() async throws {
        let data = try temporaryDirectory("contract-defaults")
        defer { try? FileManager.default.removeItem(at: data) }
        try await withServer(ServiceConfiguration(dataDirectory: data)) { client in
            let implicit = try await client.post("/v1/plans", json: ["profile": "llama-2-7b", "budget": "1/16"])
            let explicit = try await client.post("/v1/plans", json: [
                "profile": "llama-2-7b", "budget": "1/16", "strategy": "preset:delta-come", "bits": [16, 8, 4, 3, 2, 1, 0],
                "accounting": "artifact", "groupSize": 128, "seed": 0, "scope": "type",
            ])
            #expect(implicit.status == 200 && explicit.status == 200, "\(implicit.text)")
            #expect(implicit.body == explicit.body)
            let plan = try Plan.decode(implicit.body, file: "response")
            #expect(plan.accounting == StorageModel().accounting && plan.groupSize == StorageModel().groupSize)
        }
    }
}
