import Foundation
import Hummingbird

/// An error answered to an API client: an HTTP status, a stable machine-readable code and a
/// message naming the field, path or job at fault. Rendered as the contract's `ErrorResponse`,
/// `{"error": {"code": "...", "message": "...", "details": {...}?}}`; every code is a case of its
/// `ErrorCode` enum (``specCode``), so a code the contract does not list does not compile.
public enum APIError: Error, Equatable, CustomStringConvertible {
    /// 400: the body is not JSON, or not a JSON object.
    case invalidJSON(String)
    /// 400: a field is missing, of the wrong type or out of range.
    case invalidField(field: String, reason: String)
    /// 400: the body has a field this endpoint does not know; `allowed` are the fields its
    /// schema in the contract has.
    case unknownField(field: String, allowed: [String])
    /// 400: `strategy` is not 'preset:NAME', 'greedy', 'genetic' or 'exact', or names no preset.
    case unknownStrategy(field: String, value: String, reason: String)
    /// 400: a budget string the CLI would reject too.
    case malformedBudget(field: String, message: String)
    /// 400: the budget cannot hold the smallest plan; names the smallest feasible size.
    case infeasibleBudget(message: String, unit: String, budgetBits: Int, smallestFeasibleBits: Int)
    /// 400: a plan request the library refuses (e.g. a search strategy without measured spectra).
    case invalidPlanRequest(message: String)
    /// 401: missing or wrong bearer token.
    case unauthorized
    /// 404: no such job, plan, route or profile.
    case notFound(String)
    /// 405: the path is the contract's, the method is not one of its operations there (`allowed`,
    /// sent as the `Allow` header).
    case methodNotAllowed(allowed: [String])
    /// 409: a job a request needs (of `kind`) has not succeeded.
    case notReady(kind: JobKind, message: String)
    /// 409: cancelling a job that already finished.
    case jobFinished(String)
    /// 413: the body is larger than the limit.
    case bodyTooLarge(limit: Int)
    /// 422: a path lies outside every `--allow-root`, or does not exist.
    case pathNotAllowed(field: String, path: String, reason: String)
    /// 500: a failure of the server itself (never for bad input).
    case internalError(String)

    public var status: HTTPResponse.Status {
        switch self {
        case .invalidJSON, .invalidField, .unknownField, .unknownStrategy, .malformedBudget, .infeasibleBudget,
             .invalidPlanRequest: .badRequest
        case .unauthorized: .unauthorized
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .notReady, .jobFinished: .conflict
        case .bodyTooLarge: .contentTooLarge
        case .pathNotAllowed: .unprocessableContent
        case .internalError: .internalServerError
        }
    }

    /// The stable code, as the contract spells it.
    public var code: String { specCode.rawValue }

    var specCode: Components.Schemas.ErrorCode {
        switch self {
        case .invalidJSON: .invalidJson
        case .invalidField: .invalidField
        case .unknownField: .unknownField
        case .unknownStrategy: .unknownStrategy
        case .malformedBudget: .malformedBudget
        case .infeasibleBudget: .infeasibleBudget
        case .invalidPlanRequest: .invalidPlanRequest
        case .unauthorized: .unauthorized
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case let .notReady(kind, _):
            switch kind {
            case .analysis: .analysisNotReady
            case .plan: .planNotReady
            case .comparison: .comparisonNotReady
            case .compression: .compressionNotReady
            case .evaluation: .evaluationNotReady
            case .fleet: .fleetNotReady
            case .merge: preconditionFailure("no request needs a finished merge job")
            }
        case .jobFinished: .jobFinished
        case .bodyTooLarge: .bodyTooLarge
        case .pathNotAllowed: .pathNotAllowed
        case .internalError: .internalError
        }
    }

    public var description: String {
        switch self {
        case let .invalidJSON(reason): "the request body is not a JSON object: \(reason)"
        case let .invalidField(field, reason): "field '\(field)': \(reason)"
        case let .unknownField(field, allowed):
            "unknown field '\(field)'; this endpoint accepts \(allowed.isEmpty ? "the fields of its schema in GET /v1/openapi.json" : allowed.sorted().joined(separator: ", "))"
        case let .unknownStrategy(field, value, reason): "field '\(field)': unknown strategy '\(value)': \(reason)"
        case let .malformedBudget(_, message): message
        case let .infeasibleBudget(message, _, _, _): "field 'budget': \(message)"
        case let .invalidPlanRequest(message): message
        case .unauthorized: "missing or wrong bearer token (Authorization: Bearer <token>)"
        case let .notFound(message): message
        case let .methodNotAllowed(allowed): "method not allowed on this route; it takes \(allowed.joined(separator: ", "))"
        case let .notReady(_, message), let .jobFinished(message): message
        case let .bodyTooLarge(limit): "the request body is larger than \(limit) bytes"
        case let .pathNotAllowed(field, path, reason): "field '\(field)': path '\(path)' \(reason)"
        case let .internalError(message): message
        }
    }

    /// Extra machine-readable facts, where a client can act on them.
    var details: Components.Schemas.ErrorDetails? {
        switch self {
        case let .infeasibleBudget(_, unit, budgetBits, smallest):
            .init(unit: unit, budgetBits: budgetBits, smallestFeasibleBits: smallest, smallestFeasibleBytes: (smallest + 7) / 8)
        case let .unknownField(field, _), let .invalidField(field, _), let .unknownStrategy(field, _, _),
             let .malformedBudget(field, _), let .pathNotAllowed(field, _, _):
            .init(field: field)
        default: nil
        }
    }

    /// The JSON body.
    var body: Components.Schemas.ErrorResponse {
        .init(error: .init(code: specCode, message: description, details: details))
    }
}
