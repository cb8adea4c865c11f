import Foundation
import Hummingbird
import OpenAPIRuntime

/// The outer middleware of the API, outermost first: measure the request, turn every error into
/// the contract's JSON error body, check the bearer token, refuse over-long bodies (by their
/// Content-Length, and by counting a body sent without one).
struct ServiceMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let maxBodyBytes: Int
    let metrics: ServiceMetrics
    /// For 405: the methods the contract has at a path.
    let contract: Contract

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response: Response
        do {
            if let token, request.uri.path != "/healthz" {
                guard let given = Self.bearerToken(request), constantTimeEqual(given, token) else { throw APIError.unauthorized }
            }
            var request = request
            if let length = request.headers[.contentLength].flatMap({ Int($0) }) {
                guard length <= maxBodyBytes else { throw APIError.bodyTooLarge(limit: maxBodyBytes) }
            } else if request.headers[.transferEncoding] != nil {
                // A streamed body: collect it here, up to the limit, so that nothing later reads more.
                _ = try await request.collectBody(upTo: maxBodyBytes)
            }
            response = try await next(request, context)
        } catch {
            var apiError = Self.apiError(error, bodyLimit: maxBodyBytes)
            // No route for this method: a 405 where the contract has the path with other methods.
            if case .notFound = apiError, (error as? any HTTPResponseError)?.status == .notFound,
               let allowed = contract.methods(atPath: request.uri.path), !allowed.isEmpty {
                apiError = .methodNotAllowed(allowed: allowed)
            }
            response = errorResponse(apiError)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        metrics.recordRequest(route: context.endpointPath ?? "unmatched", method: request.method.rawValue,
                              status: response.status.code, seconds: seconds)
        return response
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let prefix = "Bearer "
        guard header.count > prefix.count, header.lowercased().hasPrefix(prefix.lowercased()) else { return nil }
        return String(header.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
    }

    /// Maps any thrown error to an API error: ours as they are (also from inside the generated
    /// code, which wraps them in `ServerError`); a request the generated decoders refused as a 400
    /// naming the field; Hummingbird's by status (unknown route → 404, wrong method → 405, too
    /// large → 413); anything else is a server bug (500).
    static func apiError(_ error: any Error, bodyLimit: Int) -> APIError {
        if let error = error as? APIError { return error }
        if let error = error as? ServerError {
            if let underlying = error.underlyingError as? APIError { return underlying }
            if let decoding = error.underlyingError as? DecodingError { return APIError(decoding) }
            // The runtime's own refusals of a request are 400s: a Content-Type or an Accept that
            // is not the contract's names the header; anything else is about the body.
            switch error.httpStatus {
            case .unsupportedMediaType: return .invalidField(field: "Content-Type", reason: error.causeDescription)
            case .notAcceptable: return .invalidField(field: "Accept", reason: error.causeDescription)
            case let status where (400..<500).contains(status.code): return .invalidJSON(error.causeDescription)
            default: break
            }
            return .internalError("\(error.operationID): \(error.causeDescription): \(error.underlyingError)")
        }
        if let error = error as? any HTTPResponseError {
            switch error.status {
            case .notFound: return .notFound("no such route")
            case .contentTooLarge: return .bodyTooLarge(limit: bodyLimit)
            case .methodNotAllowed: return .methodNotAllowed(allowed: [])
            case .badRequest: return .invalidJSON("\(error)")
            default: return .internalError("\(error)")
            }
        }
        return .internalError("\(error)")
    }
}

extension APIError {
    /// A request body the generated decoder refused: the field is the coding path
    /// (`budgets[1]`); an undocumented key is `unknown_field` (`additionalProperties: false`).
    init(_ error: DecodingError) {
        func field(_ path: [any CodingKey]) -> String {
            path.reduce(into: "") { text, key in
                if let index = key.intValue { text += "[\(index)]" } else { text += text.isEmpty ? key.stringValue : ".\(key.stringValue)" }
            }
        }
        switch error {
        case let .typeMismatch(type, context):
            self = .invalidField(field: field(context.codingPath), reason: "expected \(type)")
        case let .valueNotFound(_, context):
            self = .invalidField(field: field(context.codingPath), reason: "must not be null")
        case let .keyNotFound(key, context):
            self = .invalidField(field: field(context.codingPath + [key]), reason: "required")
        case let .dataCorrupted(context):
            if context.debugDescription.hasPrefix("Additional properties are disabled") {
                self = .unknownField(field: field(context.codingPath), allowed: [])
            } else if context.codingPath.isEmpty {
                self = .invalidJSON(context.debugDescription)
            } else {
                self = .invalidField(field: field(context.codingPath), reason: context.debugDescription)
            }
        @unknown default:
            self = .invalidJSON("\(error)")
        }
    }
}

/// Compares two strings in time that depends on their lengths only, not on where they differ.
func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8), y = Array(b.utf8)
    var difference = UInt8(x.count == y.count ? 0 : 1)
    let n = max(x.count, y.count)
    for i in 0..<n {
        difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return difference == 0
}

func bytesResponse(_ data: Data, status: HTTPResponse.Status = .ok, contentType: String, headers: HTTPFields = [:]) -> Response {
    var fields = headers
    fields[.contentType] = contentType
    return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

/// The contract's error body, with the same JSON options as every other response.
func errorResponse(_ error: APIError) -> Response {
    var headers: HTTPFields = [:]
    if error == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
    if case let .methodNotAllowed(allowed) = error, !allowed.isEmpty { headers[.allow] = allowed.joined(separator: ", ") }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    // A tree of strings, integers and an enum: encoding cannot fail.
    let data = (try? encoder.encode(error.body)) ?? Data(#"{"error":{"code":"internal_error","message":"unencodable error"}}"#.utf8)
    return bytesResponse(data, status: error.status, contentType: "application/json; charset=utf-8", headers: headers)
}
