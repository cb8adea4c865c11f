import Foundation
import Hummingbird

/// An error answered to an API client: an HTTP status, a stable machine-readable code and a
/// message naming the field, path or job at fault. Rendered as
/// `{"error": {"code": "...", "message": "...", "details": {...}?}}`.
public enum APIError: Error, Equatable, CustomStringConvertible {
    /// 400: the body is not JSON, or not a JSON object.
    case invalidJSON(String)
    /// 400: a field is missing, of the wrong type or out of range.
    case invalidField(field: String, reason: String)
    /// 400: the body has a field this endpoint does not know.
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
    /// 409: the job is in a state that does not allow the request.
    case conflict(code: String, message: String)
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
        case .conflict: .conflict
        case .bodyTooLarge: .contentTooLarge
        case .pathNotAllowed: .unprocessableContent
        case .internalError: .internalServerError
        }
    }

    public var code: String {
        switch self {
        case .invalidJSON: "invalid_json"
        case .invalidField: "invalid_field"
        case .unknownField: "unknown_field"
        case .unknownStrategy: "unknown_strategy"
        case .malformedBudget: "malformed_budget"
        case .infeasibleBudget: "infeasible_budget"
        case .invalidPlanRequest: "invalid_plan_request"
        case .unauthorized: "unauthorized"
        case .notFound: "not_found"
        case let .conflict(code, _): code
        case .bodyTooLarge: "body_too_large"
        case .pathNotAllowed: "path_not_allowed"
        case .internalError: "internal_error"
        }
    }

    public var description: String {
        switch self {
        case let .invalidJSON(reason): "the request body is not a JSON object: \(reason)"
        case let .invalidField(field, reason): "field '\(field)': \(reason)"
        case let .unknownField(field, allowed):
            "unknown field '\(field)'; this endpoint accepts \(allowed.sorted().joined(separator: ", "))"
        case let .unknownStrategy(field, value, reason): "field '\(field)': unknown strategy '\(value)': \(reason)"
        case let .malformedBudget(_, message): message
        case let .infeasibleBudget(message, _, _, _): "field 'budget': \(message)"
        case let .invalidPlanRequest(message): message
        case .unauthorized: "missing or wrong bearer token (Authorization: Bearer <token>)"
        case let .notFound(message): message
        case let .conflict(_, message): message
        case let .bodyTooLarge(limit): "the request body is larger than \(limit) bytes"
        case let .pathNotAllowed(field, path, reason): "field '\(field)': path '\(path)' \(reason)"
        case let .internalError(message): message
        }
    }

    /// Extra machine-readable facts, where a client can act on them.
    var details: [String: JSONValue]? {
        switch self {
        case let .infeasibleBudget(_, unit, budgetBits, smallest):
            ["unit": .string(unit), "budgetBits": .int(Int64(budgetBits)),
             "smallestFeasibleBits": .int(Int64(smallest)), "smallestFeasibleBytes": .int(Int64((smallest + 7) / 8))]
        case let .unknownField(field, _), let .invalidField(field, _), let .unknownStrategy(field, _, _),
             let .malformedBudget(field, _), let .pathNotAllowed(field, _, _):
            ["field": .string(field)]
        default: nil
        }
    }

    /// The JSON body.
    var body: JSONValue {
        var error: [String: JSONValue] = ["code": .string(code), "message": .string(description)]
        if let details { error["details"] = .object(details) }
        return .object(["error": .object(error)])
    }
}
