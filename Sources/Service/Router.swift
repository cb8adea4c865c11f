import Foundation
import Hummingbird
import ModelProfiles
import OpenAPIHummingbird
import OpenAPIRuntime
import Optimizer

/// What every handler shares: the job store, the worker pool, the validator and the metrics.
public struct ServiceState: Sendable {
    public let configuration: ServiceConfiguration
    public let store: any JobQueue
    let pool: WorkerPool
    let metrics: ServiceMetrics
    let validator: RequestValidator
    let library: ProfileLibrary
    let planCache = PlanCache()
    let contract = Contract.bundled
}

/// The API's routes: every operation of the contract (`openapi.yaml`), registered by the code
/// generated from it and answered by ``APIHandler``.
///
/// Outermost first: ``ServiceMiddleware`` (metrics, error bodies, body limit, bearer token);
/// then, per operation, ``ContractMiddleware`` (the request against the contract),
/// ``VerbatimResponseMiddleware`` (stored documents byte for byte) and
/// ``LocationHeaderMiddleware``; then the generated decoding, the handler and the generated encoding.
public func buildRouter(_ state: ServiceState) -> Router<BasicRequestContext> {
    let router = Router(context: BasicRequestContext.self)
    router.middlewares.add(ServiceMiddleware(token: state.configuration.token, maxBodyBytes: state.configuration.maxBodyBytes,
                                             metrics: state.metrics, contract: state.contract))
    do {
        try APIHandler(state: state).registerHandlers(
            on: router, configuration: APIHandler.configuration,
            middlewares: [ContractMiddleware(contract: state.contract), VerbatimResponseMiddleware(), LocationHeaderMiddleware()])
    } catch {
        // Registration fails only for a malformed server URL or path template: our bug.
        preconditionFailure("cannot register the API's routes: \(error)")
    }
    return router
}
