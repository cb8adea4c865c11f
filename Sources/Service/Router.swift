import Foundation
import Hummingbird
import ModelProfiles
import Optimizer

/// What every handler shares: the job store, the worker pool, the validator and the metrics.
public struct ServiceState: Sendable {
    public let configuration: ServiceConfiguration
    public let store: JobStore
    let pool: WorkerPool
    let metrics: ServiceMetrics
    let validator: RequestValidator
    let library: ProfileLibrary
    let planCache = PlanCache()
}

/// The API's routes (see ``openAPIDocument`` for the contract).
public func buildRouter(_ state: ServiceState) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.middlewares.add(ServiceMiddleware(token: state.configuration.token, maxBodyBytes: state.configuration.maxBodyBytes,
                                             metrics: state.metrics))
    let api = JobsController(state: state)

    router.get("/healthz") { _, _ in jsonResponse(.object(["status": .string("ok")])) }
    router.get("/metrics") { _, _ in
        let text = state.metrics.exposition(jobsByState: try await state.store.countsByState(),
                                            workers: state.pool.workers, busyWorkers: state.pool.busyWorkers)
        return bytesResponse(Data(text.utf8), contentType: "text/plain; version=0.0.4; charset=utf-8")
    }
    router.get("/v1/openapi.json") { _, _ in bytesResponse(Data(openAPIDocument.utf8), contentType: "application/json") }
    router.get("/v1/profiles") { _, _ in api.profiles() }
    router.post("/v1/analyses") { request, _ in try await api.submitAnalysis(try await api.body(request)) }
    router.post("/v1/plans") { request, _ in try await api.submitPlan(try await api.body(request)) }
    router.post("/v1/comparisons") { request, _ in try await api.submitComparison(try await api.body(request)) }
    router.post("/v1/compressions") { request, _ in try await api.submitCompression(try await api.body(request)) }
    router.post("/v1/evaluations") { request, _ in try await api.submitEvaluation(try await api.body(request)) }
    router.post("/v1/merges") { request, _ in try await api.submitMerge(try await api.body(request)) }
    router.get("/v1/jobs") { request, _ in try await api.list(request.uri.queryParameters) }
    router.get("/v1/jobs/{id}") { _, context in try await api.get(context.parameters.get("id") ?? "") }
    router.delete("/v1/jobs/{id}") { _, context in try await api.cancel(context.parameters.get("id") ?? "") }
    router.get("/v1/plans/{id}") { _, context in try await api.result(context.parameters.get("id") ?? "", kind: .plan) }
    router.get("/v1/comparisons/{id}") { _, context in try await api.result(context.parameters.get("id") ?? "", kind: .comparison) }
    router.get("/v1/evaluations/{id}") { _, context in try await api.result(context.parameters.get("id") ?? "", kind: .evaluation) }
    return router
}

/// The handlers. Validation happens here, synchronously and cheaply; heavy work is queued.
struct JobsController: Sendable {
    let state: ServiceState
    var validator: RequestValidator { state.validator }
    var store: JobStore { state.store }

    /// The body as a JSON object, at most `maxBodyBytes`.
    func body(_ request: Request) async throws(APIError) -> [String: JSONValue] {
        var request = request
        let buffer: ByteBuffer
        do { buffer = try await request.collectBody(upTo: state.configuration.maxBodyBytes) } catch {
            if let e = error as? any HTTPResponseError, e.status == .contentTooLarge {
                throw .bodyTooLarge(limit: state.configuration.maxBodyBytes)
            }
            throw .invalidJSON("cannot read the body: \(error)")
        }
        return try JSONValue.parseObject(Data(buffer.readableBytesView))
    }

    private func accepted(_ job: Job) -> Response {
        state.pool.wake()
        return jsonResponse(job.json, status: .accepted, headers: [.location: "/v1/jobs/\(job.id)"])
    }

    // MARK: Submissions

    func submitAnalysis(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: ["base", "finetuned", "calibration", "include", "exclude", "maxRank", "seed",
                                                  "skipMismatched", "allowMissingCalibration"])
        let base = try validator.path(try r.requiredString("base"), field: "base")
        let finetuned = try validator.path(try r.requiredString("finetuned"), field: "finetuned")
        let calibration = try r.string("calibration").map { text throws(APIError) in try validator.path(text, field: "calibration") }
        let include = try r.strings("include") ?? [], exclude = try r.strings("exclude") ?? []
        try validator.selection(include: include, exclude: exclude)
        let parameters = AnalysisJobParameters(
            base: base, finetuned: finetuned, calibration: calibration, include: include, exclude: exclude,
            maxRank: try r.integer("maxRank", in: 1...(1 << 24)).map(Int.init),
            seed: UInt64(try r.integer("seed", in: 0...Int64.max) ?? 0),
            skipMismatched: try r.bool("skipMismatched") ?? false,
            allowMissingCalibration: try r.bool("allowMissingCalibration") ?? false)
        return accepted(try await store.create(kind: .analysis, parameters: try parameters.parametersJSON()))
    }

    func submitPlan(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: PlanOptions.fields.union(["analysis", "profile", "budget", "strategy"]))
        let analysisID = try r.string("analysis"), profileName = try r.string("profile")
        guard (analysisID == nil) != (profileName == nil) else {
            throw APIError.invalidField(field: analysisID == nil ? "profile" : "analysis",
                                        reason: "give exactly one of 'analysis' (an analysis job id) or 'profile' (a model profile name)")
        }
        let budgetText = try r.requiredString("budget")
        let budget = try validator.budget(budgetText, field: "budget")
        let strategy = try r.string("strategy") ?? Strategy.defaultName(hasErrorModel: analysisID != nil)
        try validator.strategy(strategy, field: "strategy")
        let options = try PlanOptions(r, validator: validator)
        let scope: Scope
        do { scope = try options.scope ?? Strategy(parsing: strategy, library: state.library).defaultScope } catch {
            throw APIError.invalidField(field: "strategy", reason: "\(error)")
        }

        if let profileName {
            for (field, given) in [("objective", options.objective != nil), ("order", options.order != nil)] where given {
                throw APIError.invalidField(field: field, reason: "applies to plans from an analysis (a profile plan has no error model)")
            }
            // Shape-only: cheap (O(matrices · log rank)), answered at once with the same library
            // call and bytes as `deltaplan plan --profile ... --out`.
            let profile = try validator.profile(profileName)
            guard strategy.hasPrefix("preset:") else {
                throw APIError.invalidPlanRequest(message: "field 'strategy': " + PlanRequestError.strategyNeedsErrorModel(strategy: strategy).description)
            }
            let key = [profileName, budgetText, strategy, scope.rawValue, options.bits.map(String.init).joined(separator: ","),
                       "\(options.seed)", options.accounting.rawValue, "\(options.groupSize)"].joined(separator: "\u{1F}")
            if let cached = state.planCache.value(for: key) { return bytesResponse(cached, contentType: "application/json") }
            let preset = try state.library.preset(named: String(strategy.dropFirst("preset:".count)))
            let plan: Plan
            do {
                plan = try planFromShapes(profile: profile, preset: preset, budget: budget,
                                          storage: options.storage, scope: scope, menu: options.bits, seed: options.seed,
                                          toolVersion: DeltaPlanVersion.string)
            } catch {
                switch error {
                case let .infeasible(.infeasibleBudget(unit, bits, smallest)):
                    throw APIError.infeasibleBudget(message: error.description, unit: unit, budgetBits: bits, smallestFeasibleBits: smallest)
                case .presetOutsideMenu, .infeasible(.bitWidthUnavailable): throw APIError.invalidField(field: "bits", reason: error.description)
                case .strategyNeedsErrorModel: throw APIError.invalidPlanRequest(message: error.description)
                }
            }
            let encoded = try plan.encoded()
            state.planCache.insert(encoded, for: key)
            return bytesResponse(encoded, contentType: "application/json")
        }
        let (analysis, storePath) = try await succeededAnalysis(analysisID!, field: "analysis")
        let parameters = PlanJobParameters(analysis: analysis, analysisStore: storePath, budget: budgetText, strategy: strategy,
                                           scope: scope, bits: options.bits, seed: options.seed,
                                           accounting: options.accounting, groupSize: options.groupSize,
                                           objective: options.objective, order: options.order)
        return accepted(try await store.create(kind: .plan, parameters: try parameters.parametersJSON()))
    }

    func submitComparison(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: PlanOptions.fields.union(["analysis", "budgets", "strategies"]))
        let (analysis, storePath) = try await succeededAnalysis(try r.requiredString("analysis"), field: "analysis")
        guard let budgets = try r.strings("budgets"), !budgets.isEmpty else {
            throw APIError.invalidField(field: "budgets", reason: "required: a non-empty array of budgets ('1/16', '850MiB', '1bpp')")
        }
        for (i, b) in budgets.enumerated() { _ = try validator.budget(b, field: "budgets[\(i)]") }
        let strategies = try r.strings("strategies") ?? Candidate.defaultNames
        guard !strategies.isEmpty else { throw APIError.invalidField(field: "strategies", reason: "must not be empty") }
        for (i, s) in strategies.enumerated() { try validator.strategy(s, field: "strategies[\(i)]", baselines: true) }
        let options = try PlanOptions(r, validator: validator)
        let parameters = ComparisonJobParameters(analysis: analysis, analysisStore: storePath, budgets: budgets, strategies: strategies,
                                                 scope: options.scope, seed: options.seed, accounting: options.accounting,
                                                 groupSize: options.groupSize, bits: options.bits,
                                                 objective: options.objective, order: options.order)
        return accepted(try await store.create(kind: .comparison, parameters: try parameters.parametersJSON()))
    }

    func submitCompression(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: ["base", "finetuned", "calibration", "plan", "planFile"])
        let base = try validator.path(try r.requiredString("base"), field: "base")
        let finetuned = try validator.path(try r.requiredString("finetuned"), field: "finetuned")
        let calibration = try r.string("calibration").map { text throws(APIError) in try validator.path(text, field: "calibration") }
        let planID = try r.string("plan"), planPath = try r.string("planFile")
        guard (planID == nil) != (planPath == nil) else {
            throw APIError.invalidField(field: planID == nil ? "planFile" : "plan",
                                        reason: "give exactly one of 'plan' (a plan job id) or 'planFile' (a server-side plan JSON)")
        }
        let planFile: String
        if let planID {
            guard let job = try await store.job(id: planID), job.kind == .plan else {
                throw APIError.notFound("field 'plan': no plan job \(planID)")
            }
            guard job.state == .succeeded, let result = job.result else {
                throw APIError.conflict(code: "plan_not_ready", message: "field 'plan': plan job \(planID) is \(job.state.rawValue), not succeeded")
            }
            planFile = result
        } else {
            planFile = try validator.path(planPath!, field: "planFile")
        }
        let parameters = CompressionJobParameters(base: base, finetuned: finetuned, calibration: calibration, plan: planID, planFile: planFile)
        return accepted(try await store.create(kind: .compression, parameters: try parameters.parametersJSON()))
    }

    func submitEvaluation(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: ["compression", "artifact", "base", "finetuned", "calibration"])
        let source = try await artifactSource(r)
        let base = try validator.path(try r.string("base") ?? source.compression?.base ?? r.requiredString("base"), field: "base")
        let finetuned = try validator.path(try r.string("finetuned") ?? source.compression?.finetuned ?? r.requiredString("finetuned"),
                                           field: "finetuned")
        let calibration = try (try r.string("calibration") ?? source.compression?.calibration).map { text throws(APIError) in
            try validator.path(text, field: "calibration")
        }
        let parameters = EvaluationJobParameters(compression: source.id, artifact: source.artifact, base: base, finetuned: finetuned,
                                                 calibration: calibration)
        return accepted(try await store.create(kind: .evaluation, parameters: try parameters.parametersJSON()))
    }

    func submitMerge(_ object: [String: JSONValue]) async throws -> Response {
        let r = try FieldReader(object, allowed: ["compression", "artifact", "base"])
        let source = try await artifactSource(r)
        let base = try validator.path(try r.string("base") ?? source.compression?.base ?? r.requiredString("base"), field: "base")
        let parameters = MergeJobParameters(compression: source.id, artifact: source.artifact, base: base)
        return accepted(try await store.create(kind: .merge, parameters: try parameters.parametersJSON()))
    }

    /// The artifact named by exactly one of `compression` (a succeeded compression job id: its
    /// artifact, and its parameters as defaults for the checkpoints) or `artifact` (a server-side
    /// artifact directory under an --allow-root).
    private func artifactSource(_ r: FieldReader) async throws -> (id: String?, artifact: String, compression: CompressionJobParameters?) {
        let id = try r.string("compression"), path = try r.string("artifact")
        guard (id == nil) != (path == nil) else {
            throw APIError.invalidField(field: id == nil ? "artifact" : "compression",
                                        reason: "give exactly one of 'compression' (a compression job id) or 'artifact' (a server-side artifact directory)")
        }
        guard let id else { return (nil, try validator.path(path!, field: "artifact"), nil) }
        guard let job = try await store.job(id: id), job.kind == .compression else {
            throw APIError.notFound("field 'compression': no compression job \(id)")
        }
        guard job.state == .succeeded, let result = job.result else {
            throw APIError.conflict(code: "compression_not_ready",
                                    message: "field 'compression': compression job \(id) is \(job.state.rawValue), not succeeded")
        }
        let parameters: CompressionJobParameters
        do { parameters = try JSONDecoder().decode(CompressionJobParameters.self, from: job.parameters) } catch {
            throw APIError.internalError("compression job \(id): unreadable parameters: \(error)")
        }
        return (id, result, parameters)
    }

    /// The job id and store directory of a succeeded analysis job named by `field`.
    private func succeededAnalysis(_ id: String, field: String) async throws -> (String, String) {
        guard let job = try await store.job(id: id), job.kind == .analysis else {
            throw APIError.notFound("field '\(field)': no analysis job \(id)")
        }
        guard job.state == .succeeded, let result = job.result else {
            throw APIError.conflict(code: "analysis_not_ready",
                                    message: "field '\(field)': analysis job \(id) is \(job.state.rawValue), not succeeded")
        }
        return (job.id, result)
    }

    // MARK: Jobs

    func get(_ id: String) async throws -> Response {
        guard let job = try await store.job(id: id) else { throw APIError.notFound("no job \(id)") }
        return jsonResponse(job.json)
    }

    func list(_ query: Parameters) async throws -> Response {
        var state: JobState?, kind: JobKind?
        if let s = query.get("state") {
            guard let v = JobState(rawValue: s) else {
                throw APIError.invalidField(field: "state", reason: "expected one of \(JobState.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
            }
            state = v
        }
        if let k = query.get("kind") {
            guard let v = JobKind(rawValue: k) else {
                throw APIError.invalidField(field: "kind", reason: "expected one of \(JobKind.allCases.map(\.rawValue).joined(separator: ", ")), got '\(k)'")
            }
            kind = v
        }
        var limit = 100
        if let l = query.get("limit") {
            guard let v = Int(l), (1...1000).contains(v) else {
                throw APIError.invalidField(field: "limit", reason: "expected an integer in 1...1000, got '\(l)'")
            }
            limit = v
        }
        let jobs = try await store.jobs(state: state, kind: kind, limit: limit)
        return jsonResponse(.object(["jobs": .array(jobs.map(\.json))]))
    }

    func cancel(_ id: String) async throws -> Response {
        switch try await store.cancel(id: id) {
        case .notFound: throw APIError.notFound("no job \(id)")
        case let .cancelled(job): return jsonResponse(job.json)
        case let .requested(job):
            state.pool.requestCancel(id: job.id)
            return jsonResponse(job.json, status: .accepted)
        case let .finished(job):
            throw APIError.conflict(code: "job_finished", message: "job \(id) already \(job.state.rawValue); only queued or running jobs can be cancelled")
        }
    }

    /// The JSON result file of a succeeded job of `kind` (a plan, a comparison, an evaluation report).
    func result(_ id: String, kind: JobKind) async throws -> Response {
        let name = kind.rawValue
        guard let job = try await store.job(id: id), job.kind == kind else { throw APIError.notFound("no \(name) job \(id)") }
        guard job.state == .succeeded, let result = job.result else {
            throw APIError.conflict(code: "\(name)_not_ready", message: "\(name) job \(id) is \(job.state.rawValue), not succeeded"
                                        + (job.error.map { ": \($0)" } ?? ""))
        }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: result)) } catch {
            throw APIError.internalError("\(name) job \(id): cannot read \(result): \(error.localizedDescription)")
        }
        return bytesResponse(data, contentType: "application/json")
    }

    func profiles() -> Response {
        let models: [JSONValue] = state.library.models.map { m in
            let matrices = m.expandedMatrices()
            return .object([
                "name": .string(m.name), "description": .string(m.description), "family": .string(m.family),
                "layers": .int(Int64(m.layers)), "dtype": .string(m.dtype), "matrices": .int(Int64(matrices.count)),
                "plannedParameters": .int(Int64(matrices.reduce(0) { $0 + $1.rows * $1.columns })),
            ])
        }
        let presets: [JSONValue] = state.library.presets.map { p in
            .object([
                "name": .string(p.name), "description": .string(p.description),
                "segments": .array(p.segments.map { s in
                    .object(["bits": .int(Int64(s.bits)), "count": s.count.map { .int(Int64($0)) } ?? .null])
                }),
            ])
        }
        return jsonResponse(.object(["models": .array(models), "presets": .array(presets)]))
    }
}
