import Foundation

/// `GET /v1/jobs[/{id}]`, `DELETE /v1/jobs/{id}` and the stored results of plan, comparison and
/// evaluation jobs.
extension APIHandler {
    func listJobs(_ input: Operations.ListJobs.Input) async throws -> Operations.ListJobs.Output {
        let query = input.query
        let jobs = try await store.jobs(state: query.state.map { libraryValue($0, as: JobState.self) },
                                        kind: query.kind.map { libraryValue($0, as: JobKind.self) },
                                        limit: query.limit ?? 100)
        return .ok(.init(body: .json(.init(jobs: try jobs.map { job throws(APIError) in try job.contract }))))
    }

    func getJob(_ input: Operations.GetJob.Input) async throws -> Operations.GetJob.Output {
        let id = input.path.id
        guard let job = try await store.job(id: id) else { throw APIError.notFound("no job \(id)") }
        return .ok(.init(body: .json(try job.contract)))
    }

    func cancelJob(_ input: Operations.CancelJob.Input) async throws -> Operations.CancelJob.Output {
        let id = input.path.id
        switch try await store.cancel(id: id) {
        case .notFound: throw APIError.notFound("no job \(id)")
        case let .cancelled(job): return .ok(.init(body: .json(try job.contract)))
        case let .requested(job):
            state.pool.requestCancel(id: job.id)
            return .accepted(.init(body: .json(try job.contract)))
        case let .finished(job):
            throw APIError.jobFinished("job \(id) already \(job.state.rawValue); only queued or running jobs can be cancelled")
        }
    }

    func getPlan(_ input: Operations.GetPlan.Input) async throws -> Operations.GetPlan.Output {
        .ok(.init(body: .json(try await result(input.path.id, kind: .plan))))
    }

    func getComparison(_ input: Operations.GetComparison.Input) async throws -> Operations.GetComparison.Output {
        .ok(.init(body: .json(try await result(input.path.id, kind: .comparison))))
    }

    func getEvaluation(_ input: Operations.GetEvaluation.Input) async throws -> Operations.GetEvaluation.Output {
        .ok(.init(body: .json(try await result(input.path.id, kind: .evaluation))))
    }

    func getFleet(_ input: Operations.GetFleet.Input) async throws -> Operations.GetFleet.Output {
        .ok(.init(body: .json(try await result(input.path.id, kind: .fleet, file: "fleet.json"))))
    }

    func getFleetPlan(_ input: Operations.GetFleetPlan.Input) async throws -> Operations.GetFleetPlan.Output {
        let (id, name) = (input.path.id, input.path.name)
        guard let job = try await store.job(id: id), job.kind == .fleet else { throw APIError.notFound("no fleet job \(id)") }
        let members = (try? JSONDecoder().decode(FleetJobParameters.self, from: job.parameters))?.members.map(\.name) ?? []
        guard members.contains(name) else { throw APIError.notFound("fleet job \(id) has no member '\(name)'") }
        return .ok(.init(body: .json(try await result(id, kind: .fleet, file: "\(name).json"))))
    }

    /// The JSON result of a succeeded job of `kind` (a plan, a comparison, an evaluation report): its
    /// result file, or `file` in its result directory.
    private func result(_ id: String, kind: JobKind, file: String? = nil) async throws -> VerbatimJSON {
        let name = kind.rawValue
        guard let job = try await store.job(id: id), job.kind == kind else { throw APIError.notFound("no \(name) job \(id)") }
        guard job.state == .succeeded, let result = job.result else {
            throw APIError.notReady(kind: kind, message: "\(name) job \(id) is \(job.state.rawValue), not succeeded"
                                        + (job.error.map { ": \($0)" } ?? ""))
        }
        let url = file.map { URL(fileURLWithPath: result).appendingPathComponent($0) } ?? URL(fileURLWithPath: result)
        do { return VerbatimJSON(try Data(contentsOf: url)) } catch {
            throw APIError.internalError("\(name) job \(id): cannot read \(url.path): \(error.localizedDescription)")
        }
    }
}
