import Foundation
import HTTPTypes
import OpenAPIRuntime

/// A stored JSON document answered byte for byte: a plan (the CLI's `plan --out` bytes), a
/// comparison, an evaluation report, the OpenAPI document. The contract's schemas `Plan`,
/// `Comparison`, `Evaluation` and `OpenAPIDocument` are generated as this type
/// (`typeOverrides` in openapi-generator-config.yaml).
///
/// The generated serializer can only encode a value with a `JSONEncoder`, which would re-format
/// the document. So encoding hands the bytes to ``VerbatimResponseMiddleware`` (through a task
/// local that the middleware binds around the operation) and writes a placeholder, which the
/// middleware replaces with the bytes. The handoff happens when, and only when, the serializer
/// writes this value as a response body: the status and content type stay the generated ones.
struct VerbatimJSON: Codable, Hashable, Sendable {
    let bytes: Data

    init(_ bytes: Data) { self.bytes = bytes }

    init(from decoder: any Decoder) throws {
        bytes = try JSONValue(from: decoder).encoded()
    }

    func encode(to encoder: any Encoder) throws {
        guard let slot = Self.slot else {
            throw EncodingError.invalidValue(self, .init(codingPath: encoder.codingPath,
                                                         debugDescription: "VerbatimJSON is written only through VerbatimResponseMiddleware"))
        }
        slot.store(bytes)
        var container = encoder.singleValueContainer()
        try container.encodeNil()
    }

    /// Where encoding leaves the bytes; bound by ``VerbatimResponseMiddleware`` for one operation.
    @TaskLocal static var slot: Slot?

    /// `@unchecked Sendable`: `bytes` is guarded by `lock`.
    final class Slot: @unchecked Sendable {
        private let lock = NSLock()
        private var stored: Data?

        func store(_ data: Data) { lock.withLock { stored = data } }
        var bytes: Data? { lock.withLock { stored } }
    }
}

/// Replaces the placeholder body of a response whose value was a ``VerbatimJSON`` with its bytes.
struct VerbatimResponseMiddleware: ServerMiddleware {
    func intercept(
        _ request: HTTPRequest, body: HTTPBody?, metadata: ServerRequestMetadata, operationID: String,
        next: @Sendable (HTTPRequest, HTTPBody?, ServerRequestMetadata) async throws -> (HTTPResponse, HTTPBody?)
    ) async throws -> (HTTPResponse, HTTPBody?) {
        let slot = VerbatimJSON.Slot()
        var (response, responseBody) = try await VerbatimJSON.$slot.withValue(slot) { try await next(request, body, metadata) }
        if let bytes = slot.bytes {
            response.headerFields[.contentLength] = nil
            responseBody = HTTPBody(bytes)
        }
        return (response, responseBody)
    }
}
