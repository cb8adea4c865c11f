import Foundation
import Hummingbird

/// The one middleware of the API, outermost first: measure the request, turn every error into a
/// JSON error body, refuse over-long bodies by their Content-Length, check the bearer token.
struct ServiceMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let maxBodyBytes: Int
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = DispatchTime.now().uptimeNanoseconds
        let response: Response
        do {
            if let token, request.uri.path != "/healthz" {
                guard let given = Self.bearerToken(request), constantTimeEqual(given, token) else { throw APIError.unauthorized }
            }
            if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maxBodyBytes {
                throw APIError.bodyTooLarge(limit: maxBodyBytes)
            }
            response = try await next(request, context)
        } catch {
            response = errorResponse(Self.apiError(error, bodyLimit: maxBodyBytes))
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

    /// Maps any thrown error to an API error: ours as they are, Hummingbird's by status (unknown
    /// route → 404, too large → 413), anything else is a server bug (500).
    static func apiError(_ error: any Error, bodyLimit: Int) -> APIError {
        if let error = error as? APIError { return error }
        if let error = error as? any HTTPResponseError {
            switch error.status {
            case .notFound: return .notFound("no such route")
            case .contentTooLarge: return .bodyTooLarge(limit: bodyLimit)
            case .methodNotAllowed: return .conflict(code: "method_not_allowed", message: "method not allowed on this route")
            case .badRequest: return .invalidJSON("\(error)")
            default: return .internalError("\(error)")
            }
        }
        return .internalError("\(error)")
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

/// A JSON response with deterministic bytes.
func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
    bytesResponse(value.encoded(), status: status, contentType: "application/json", headers: headers)
}

func bytesResponse(_ data: Data, status: HTTPResponse.Status = .ok, contentType: String, headers: HTTPFields = [:]) -> Response {
    var fields = headers
    fields[.contentType] = contentType
    return Response(status: status, headers: fields, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
}

func errorResponse(_ error: APIError) -> Response {
    var headers: HTTPFields = [:]
    if error == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
    return jsonResponse(error.body, status: error.status, headers: headers)
}
