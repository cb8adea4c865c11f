import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization

/// `POST /v1/analyses`, `/v1/plans`, `/v1/comparisons`, `/v1/compressions`, `/v1/evaluations`,
/// `/v1/merges`: the contract's request types into job parameters (domain values, paths
/// resolved), with the library's own parsers.
extension APIHandler {
    func submitAnalysis(_ input: Operations.SubmitAnalysis.Input) async throws -> Operations.SubmitAnalysis.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        let include = r.include ?? [], exclude = r.exclude ?? []
        try validator.selection(include: include, exclude: exclude)
        let parameters = AnalysisJobParameters(
            base: try validator.path(r.base, field: "base"), finetuned: try validator.path(r.finetuned, field: "finetuned"),
            calibration: try r.calibration.map { text throws(APIError) in try validator.path(text, field: "calibration") },
            include: include, exclude: exclude, maxRank: r.maxRank, seed: try nonNegative(r.seed ?? 0, field: "seed"),
            skipMismatched: r.skipMismatched ?? false, allowMissingCalibration: r.allowMissingCalibration ?? false)
        return .accepted(try accepted(try await store.create(kind: .analysis, parameters: try parameters.parametersJSON())))
    }

    func submitPlan(_ input: Operations.SubmitPlan.Input) async throws -> Operations.SubmitPlan.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        guard (r.analysis == nil) != (r.profile == nil) else {
            throw APIError.invalidField(field: r.analysis == nil ? "profile" : "analysis",
                                        reason: "give exactly one of 'analysis' (an analysis job id) or 'profile' (a model profile name)")
        }
        guard (r.budget == nil) != (r.maxError == nil) else {
            throw APIError.invalidField(field: r.budget == nil ? "budget" : "maxError",
                                        reason: "give exactly one of 'budget' or 'maxError' (a quality target)")
        }
        if r.errorUnit != nil, r.maxError == nil {
            throw APIError.invalidField(field: "errorUnit", reason: "is the unit of 'maxError', which is not given")
        }
        let strategyName = r.strategy ?? Strategy.defaultName(hasErrorModel: r.analysis != nil)
        let strategy = try validator.strategy(strategyName, field: "strategy")
        let options = try PlanOptions(scope: r.scope, bits: r.bits, seed: r.seed, accounting: r.accounting,
                                      groupSize: r.groupSize, objective: r.objective, order: r.order, method: r.method,
                                      validator: validator)
        let scope = options.scope ?? strategy.defaultScope

        if let profileName = r.profile {
            for (field, given) in [("objective", options.objective != nil), ("order", options.order != nil),
                                   ("method", options.method != nil), ("calibration", r.calibration != nil),
                                   ("maxError", r.maxError != nil), ("pins", r.pins != nil), ("bitsFor", r.bitsFor != nil),
                                   ("verify", r.verify != nil)] where given {
                throw APIError.invalidField(field: field, reason: "applies to plans from an analysis (a profile plan has no error model)")
            }
            let budgetText = r.budget ?? ""
            let budget = try validator.budget(budgetText, field: "budget")
            // Shape-only: cheap (O(matrices · log rank)), answered at once with the same library
            // call and bytes as `deltaplan plan --profile ... --out`.
            let profile = try validator.profile(profileName)
            guard case let .preset(preset) = strategy else {
                throw APIError.invalidPlanRequest(message: "field 'strategy': " + PlanRequestError.strategyNeedsErrorModel(strategy: strategyName).description)
            }
            let key = [profileName, budgetText, strategyName, scope.rawValue, options.bits.map(String.init).joined(separator: ","),
                       "\(options.seed)", options.accounting.rawValue, "\(options.groupSize)"].joined(separator: "\u{1F}")
            if let cached = state.planCache.value(for: key) { return .ok(.init(body: .json(VerbatimJSON(cached)))) }
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
                case .strategyNeedsErrorModel, .infeasible(.pinsExceedBudget), .infeasible(.pinnedPresetInfeasible), .infeasible(.overrides):
                    throw APIError.invalidPlanRequest(message: error.description)
                }
            }
            let encoded = try plan.encoded()
            state.planCache.insert(encoded, for: key)
            return .ok(.init(body: .json(VerbatimJSON(encoded))))
        }
        let (analysis, storePath) = try await succeededAnalysis(r.analysis ?? "", field: "analysis")
        let calibration = try r.calibration.map { text throws(APIError) in try validator.path(text, field: "calibration") }
        if let budget = r.budget { _ = try validator.budget(budget, field: "budget") }
        _ = try validator.overrides(pins: r.pins, bitsFor: r.bitsFor, store: storePath, menu: options.bits,
                                    measurement: options.measurement)
        let parameters = PlanJobParameters(analysis: analysis, analysisStore: storePath, budget: r.budget, strategy: strategyName,
                                           scope: scope, bits: options.bits, seed: options.seed,
                                           accounting: options.accounting, groupSize: options.groupSize,
                                           objective: options.objective, order: options.order, method: options.method,
                                           calibration: calibration,
                                           target: r.maxError.map { ErrorTarget(error: $0, unit: libraryValue(r.errorUnit ?? .relative, as: ErrorTarget.Unit.self)) },
                                           pins: r.pins, bitsFor: r.bitsFor, verify: r.verify)
        return .accepted(try accepted(try await store.create(kind: .plan, parameters: try parameters.parametersJSON())))
    }

    func submitComparison(_ input: Operations.SubmitComparison.Input) async throws -> Operations.SubmitComparison.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        let (analysis, storePath) = try await succeededAnalysis(r.analysis, field: "analysis")
        for (i, b) in r.budgets.enumerated() { _ = try validator.budget(b, field: "budgets[\(i)]") }
        let strategies = r.strategies ?? Candidate.defaultNames
        for (i, s) in strategies.enumerated() { _ = try validator.candidate(s, field: "strategies[\(i)]") }
        let options = try PlanOptions(scope: r.scope, bits: r.bits, seed: r.seed, accounting: r.accounting,
                                      groupSize: r.groupSize, objective: r.objective, order: r.order, method: r.method,
                                      validator: validator)
        let calibration = try r.calibration.map { text throws(APIError) in try validator.path(text, field: "calibration") }
        _ = try validator.overrides(pins: r.pins, bitsFor: r.bitsFor, store: storePath, menu: options.bits,
                                    measurement: options.measurement)
        let parameters = ComparisonJobParameters(analysis: analysis, analysisStore: storePath, budgets: r.budgets, strategies: strategies,
                                                 scope: options.scope, seed: options.seed, accounting: options.accounting,
                                                 groupSize: options.groupSize, bits: options.bits,
                                                 objective: options.objective, order: options.order, method: options.method,
                                                 calibration: calibration, pins: r.pins, bitsFor: r.bitsFor)
        return .accepted(try accepted(try await store.create(kind: .comparison, parameters: try parameters.parametersJSON())))
    }

    func submitFleet(_ input: Operations.SubmitFleet.Input) async throws -> Operations.SubmitFleet.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        _ = try validator.budget(r.budget, field: "budget")
        let strategyName = r.strategy ?? Strategy.exact.name
        let strategy = try validator.strategy(strategyName, field: "strategy")
        let options = try PlanOptions(scope: nil, bits: r.bits, seed: r.seed, accounting: r.accounting, groupSize: r.groupSize,
                                      objective: nil, order: r.order, method: r.method, validator: validator)
        // The request's own fields first (names, floors), for every member; then the analysis
        // jobs they refer to, so that a bad name is a 400 even beside an unknown analysis.
        var names = Set<String>()
        for (i, m) in r.members.enumerated() {
            do throws(FleetError) { try FleetStore.checkName(m.name) } catch {
                throw APIError.invalidField(field: "members[\(i)].name", reason: error.description)
            }
            guard names.insert(m.name).inserted else {
                throw APIError.invalidField(field: "members[\(i)].name", reason: "'\(m.name)' names two members")
            }
            if m.maxError != nil, case .preset = strategy {
                throw APIError.invalidField(field: "members[\(i)].maxError", reason: FleetPlanningError.floorsNeedSearch(strategy: strategyName).description)
            }
        }
        _ = try validator.overrides(pins: r.pins, bitsFor: r.bitsFor, store: nil, menu: options.bits, measurement: options.measurement)
        var members: [FleetJobParameters.Member] = []
        for (i, m) in r.members.enumerated() {
            let (analysis, storePath) = try await succeededAnalysis(m.analysis, field: "members[\(i)].analysis")
            members.append(.init(name: m.name, analysis: analysis, analysisStore: storePath, weight: m.weight ?? 1,
                                 maxRelativeError: m.maxError))
            _ = try validator.overrides(pins: r.pins, bitsFor: r.bitsFor, store: storePath, menu: options.bits,
                                        measurement: options.measurement)
        }
        let parameters = FleetJobParameters(members: members, budget: r.budget, strategy: strategyName, bits: options.bits,
                                            seed: options.seed, accounting: options.accounting, groupSize: options.groupSize,
                                            order: options.order ?? .default, method: options.method ?? .default,
                                            pins: r.pins, bitsFor: r.bitsFor)
        return .accepted(try accepted(try await store.create(kind: .fleet, parameters: try parameters.parametersJSON())))
    }

    func submitCompression(_ input: Operations.SubmitCompression.Input) async throws -> Operations.SubmitCompression.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        let base = try validator.path(r.base, field: "base")
        let finetuned = try validator.path(r.finetuned, field: "finetuned")
        let calibration = try r.calibration.map { text throws(APIError) in try validator.path(text, field: "calibration") }
        let planFile: String
        switch (r.plan, r.planFile) {
        case let (planID?, nil):
            guard let job = try await store.job(id: planID), job.kind == .plan else {
                throw APIError.notFound("field 'plan': no plan job \(planID)")
            }
            guard job.state == .succeeded, let result = job.result else {
                throw APIError.notReady(kind: .plan, message: "field 'plan': plan job \(planID) is \(job.state.rawValue), not succeeded")
            }
            planFile = result
        case let (nil, path?):
            planFile = try validator.path(path, field: "planFile")
        default:
            throw APIError.invalidField(field: r.plan == nil ? "planFile" : "plan",
                                        reason: "give exactly one of 'plan' (a plan job id) or 'planFile' (a server-side plan JSON)")
        }
        let parameters = CompressionJobParameters(base: base, finetuned: finetuned, calibration: calibration, plan: r.plan, planFile: planFile,
                                                  method: r.method.map { libraryValue($0, as: QuantizationMethod.self) },
                                                  order: r.order.map { libraryValue($0, as: SegmentOrder.self) },
                                                  dampening: r.dampening)
        return .accepted(try accepted(try await store.create(kind: .compression, parameters: try parameters.parametersJSON())))
    }

    func submitEvaluation(_ input: Operations.SubmitEvaluation.Input) async throws -> Operations.SubmitEvaluation.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        let source = try await artifactSource(compression: r.compression, artifact: r.artifact)
        let base = try validator.path(try required("base", r.base ?? source.compression?.base), field: "base")
        let finetuned = try validator.path(try required("finetuned", r.finetuned ?? source.compression?.finetuned), field: "finetuned")
        let calibration = try (r.calibration ?? source.compression?.calibration).map { text throws(APIError) in
            try validator.path(text, field: "calibration")
        }
        let parameters = EvaluationJobParameters(compression: source.id, artifact: source.artifact, base: base, finetuned: finetuned,
                                                 calibration: calibration)
        return .accepted(try accepted(try await store.create(kind: .evaluation, parameters: try parameters.parametersJSON())))
    }

    func submitMerge(_ input: Operations.SubmitMerge.Input) async throws -> Operations.SubmitMerge.Output {
        guard case let .json(r) = input.body else { preconditionFailure("one content type") }
        let source = try await artifactSource(compression: r.compression, artifact: r.artifact)
        let base = try validator.path(try required("base", r.base ?? source.compression?.base), field: "base")
        let parameters = MergeJobParameters(compression: source.id, artifact: source.artifact, base: base)
        return .accepted(try accepted(try await store.create(kind: .merge, parameters: try parameters.parametersJSON())))
    }

    /// `value` as a UInt64. The contract says `minimum: 0` and ContractMiddleware enforces it;
    /// checked again because a negative value would trap.
    private func nonNegative(_ value: Int, field: String) throws(APIError) -> UInt64 {
        guard let v = UInt64(exactly: value) else { throw .invalidField(field: field, reason: "must not be negative") }
        return v
    }

    /// `value`, or `invalidField(field, "required")`: for fields required only when no job supplies them.
    private func required(_ field: String, _ value: String?) throws(APIError) -> String {
        guard let value else { throw .invalidField(field: field, reason: "required") }
        return value
    }

    /// The artifact named by exactly one of `compression` (a succeeded compression job id: its
    /// artifact, and its parameters as defaults for the checkpoints) or `artifact` (a server-side
    /// artifact directory under an --allow-root).
    private func artifactSource(compression id: String?, artifact path: String?) async throws
        -> (id: String?, artifact: String, compression: CompressionJobParameters?)
    {
        switch (id, path) {
        case let (nil, path?):
            return (nil, try validator.path(path, field: "artifact"), nil)
        case let (id?, nil):
            guard let job = try await store.job(id: id), job.kind == .compression else {
                throw APIError.notFound("field 'compression': no compression job \(id)")
            }
            guard job.state == .succeeded, let result = job.result else {
                throw APIError.notReady(kind: .compression,
                                        message: "field 'compression': compression job \(id) is \(job.state.rawValue), not succeeded")
            }
            let parameters: CompressionJobParameters
            do { parameters = try JSONDecoder().decode(CompressionJobParameters.self, from: job.parameters) } catch {
                throw APIError.internalError("compression job \(id): unreadable parameters: \(error)")
            }
            return (id, result, parameters)
        default:
            throw APIError.invalidField(field: id == nil ? "artifact" : "compression",
                                        reason: "give exactly one of 'compression' (a compression job id) or 'artifact' (a server-side artifact directory)")
        }
    }

    /// The job id and store directory of a succeeded analysis job named by `field`.
    private func succeededAnalysis(_ id: String, field: String) async throws -> (String, String) {
        guard let job = try await store.job(id: id), job.kind == .analysis else {
            throw APIError.notFound("field '\(field)': no analysis job \(id)")
        }
        guard job.state == .succeeded, let result = job.result else {
            throw APIError.notReady(kind: .analysis, message: "field '\(field)': analysis job \(id) is \(job.state.rawValue), not succeeded")
        }
        return (job.id, result)
    }
}
