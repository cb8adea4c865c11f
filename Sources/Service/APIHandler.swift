import Foundation
import ModelProfiles
import OpenAPIRuntime

/// The API's operations (the generated `APIProtocol`): each takes the contract's decoded request
/// and answers one of the contract's responses. Validation happens here, synchronously and
/// cheaply; heavy work is queued. Errors are thrown as ``APIError`` and rendered by
/// ``ServiceMiddleware``.
struct APIHandler: APIProtocol {
    let state: ServiceState
    var validator: RequestValidator { state.validator }
    var store: any JobQueue { state.store }

    /// How the generated code encodes and decodes: dates with fractional seconds (as jobs record
    /// them), JSON with sorted keys.
    static let configuration = Configuration(dateTranscoder: .iso8601WithFractionalSeconds,
                                             jsonEncodingOptions: [.sortedKeys, .withoutEscapingSlashes])

    func health(_ input: Operations.Health.Input) async throws -> Operations.Health.Output {
        .ok(.init(body: .json(.init(status: .ok))))
    }

    func metrics(_ input: Operations.Metrics.Input) async throws -> Operations.Metrics.Output {
        let text = state.metrics.exposition(jobsByState: try await store.countsByState(),
                                            workers: state.pool.workers, busyWorkers: state.pool.busyWorkers)
        return .ok(.init(body: .plainText(HTTPBody(text))))
    }

    func openapi(_ input: Operations.Openapi.Input) async throws -> Operations.Openapi.Output {
        .ok(.init(body: .json(VerbatimJSON(state.contract.json))))
    }

    func listProfiles(_ input: Operations.ListProfiles.Input) async throws -> Operations.ListProfiles.Output {
        let models = state.library.models.map { m in
            let matrices = m.expandedMatrices()
            return Components.Schemas.ModelProfile(
                name: m.name, description: m.description, family: m.family, layers: m.layers, dtype: m.dtype,
                matrices: matrices.count, plannedParameters: matrices.reduce(0) { $0 + $1.rows * $1.columns })
        }
        let presets = state.library.presets.map { p in
            Components.Schemas.Preset(name: p.name, description: p.description,
                                      segments: p.segments.map { .init(bits: $0.bits, count: $0.count) })
        }
        return .ok(.init(body: .json(.init(models: models, presets: presets))))
    }

    /// A queued job's 202 answer; wakes a worker.
    func accepted(_ job: Job) throws -> Components.Responses.Accepted {
        state.pool.wake()
        return .init(headers: .init(location: "/v1/jobs/\(job.id)"), body: .json(try job.contract))
    }
}

extension Job {
    /// The contract's view of a job.
    var contract: Components.Schemas.Job {
        get throws(APIError) {
            let parameters: OpenAPIObjectContainer
            do { parameters = try JSONDecoder().decode(OpenAPIObjectContainer.self, from: self.parameters) } catch {
                throw .internalError("job \(id): unreadable parameters: \(error)")
            }
            return .init(
                id: id, kind: libraryValue(kind, as: Components.Schemas.JobKind.self),
                state: libraryValue(state, as: Components.Schemas.JobState.self), parameters: parameters,
                progress: .init(fraction: progress, message: progressMessage),
                createdAt: Date(timeIntervalSince1970: createdAt), startedAt: startedAt.map { Date(timeIntervalSince1970: $0) },
                finishedAt: finishedAt.map { Date(timeIntervalSince1970: $0) }, error: error, result: result,
                cancelRequested: cancelRequested, attempts: attempts)
        }
    }
}

/// The value of `E` that a contract (or library) enum value names, by raw value. The contract's
/// enums and the library's have the same values (tested), so a miss is our bug.
func libraryValue<E: RawRepresentable>(_ value: some RawRepresentable<String>, as: E.Type) -> E where E.RawValue == String {
    guard let converted = E(rawValue: value.rawValue) else {
        preconditionFailure("'\(value.rawValue)' of \(type(of: value)) is no \(E.self): openapi.yaml and the library disagree")
    }
    return converted
}
