import Foundation
import HTTPTypes
import OpenAPIRuntime

/// Checks every request against the contract before the generated code decodes it: the JSON
/// body against the operation's request schema, the query against its parameters' schemas
/// (``Contract/validateBody(_:operationID:)``). The body arrives already bounded by
/// ``ServiceMiddleware`` (413 above the limit).
struct ContractMiddleware: ServerMiddleware {
    let contract: Contract

    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        try contract.validateQuery(Self.queryItems(request.path ?? ""), operationID: operationID)
        guard contract.requestSchema(operationID: operationID) != nil else { return try await next(request, body, metadata) }
        let data: Data
        if let body { data = try await Data(collecting: body, upTo: .max) } else { data = Data() }
        _ = try contract.validateBody(data, operationID: operationID)
        return try await next(request, HTTPBody(data), metadata)
    }

    /// The decoded `name=value` pairs of a request target's query.
    static func queryItems(_ target: String) -> [(name: String, value: String)] {
        guard let question = target.firstIndex(of: "?") else { return [] }
        return target[target.index(after: question)...].split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(s)
            }
            return (decode(parts[0]), parts.count > 1 ? decode(parts[1]) : "")
        }
    }
}

/// Writes `Location` as the URI reference it is. The runtime encodes every header value in the
/// RFC 6570 simple style, which percent-encodes `/`: `/v1/jobs/ID` would leave as
/// `%2Fv1%2Fjobs%2FID`. The value is our own path (a job id is a UUID), so decoding restores it
/// exactly.
struct LocationHeaderMiddleware: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        var (response, responseBody) = try await next(request, body, metadata)
        if let location = response.headerFields[.location], let decoded = location.removingPercentEncoding {
            response.headerFields[.location] = decoded
        }
        return (response, responseBody)
    }
}
