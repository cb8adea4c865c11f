import Foundation
import Yams

/// The service's contract: `openapi.yaml` (OpenAPI 3.1), the one definition of every request,
/// response, error body and error code. The server's types and routing are generated from the
/// same file at build time (swift-openapi-generator); at run time it is served as JSON at
/// `GET /v1/openapi.json` and drives request validation (``Contract/validateBody(_:operationID:)``),
/// so the checks the generated decoders do not make (ranges, lengths, item counts, unique items)
/// come from the document too, not from lists in the code.
struct Contract: Sendable {
    /// The document as a JSON tree.
    let document: JSONValue
    /// The document as JSON bytes (sorted keys, pretty-printed), as served.
    let json: Data
    /// The operations by `operationId`.
    let operations: [String: JSONValue]

    /// The bundled `openapi.yaml`. A missing or unreadable resource is a build defect, not an
    /// environmental failure: trap.
    static let bundled: Contract = {
        guard let url = Bundle.module.url(forResource: "openapi", withExtension: "yaml") else {
            preconditionFailure("openapi.yaml is not in the Service bundle")
        }
        do { return try Contract(yaml: String(contentsOf: url, encoding: .utf8)) } catch {
            preconditionFailure("openapi.yaml: \(error)")
        }
    }()

    init(yaml: String) throws {
        guard let node = try Yams.compose(yaml: yaml) else { throw ContractError("the document is empty") }
        let document = try JSONValue(yaml: node)
        guard case let .object(paths)? = document["paths"] else { throw ContractError("no 'paths'") }
        var operations: [String: JSONValue] = [:]
        for (_, item) in paths {
            guard case let .object(methods) = item else { continue }
            for (_, operation) in methods {
                if case let .string(id)? = operation["operationId"] { operations[id] = operation }
            }
        }
        self.document = document
        self.json = document.encoded(pretty: true)
        self.operations = operations
    }

    /// The methods (upper case, sorted) the document has at a request path, matching its path
    /// templates segment by segment (`{id}` takes any one segment); nil for a path it does not have.
    func methods(atPath path: String) -> [String]? {
        guard case let .object(paths)? = document["paths"] else { return nil }
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        for (template, item) in paths {
            let parts = template.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == segments.count,
                  zip(parts, segments).allSatisfy({ part, segment in
                      part.hasPrefix("{") && part.hasSuffix("}") ? !segment.isEmpty : part == segment
                  }),
                  case let .object(methods) = item else { continue }
            return methods.keys.map { $0.uppercased() }.sorted()
        }
        return nil
    }

    /// The operation with this `operationId`.
    func operation(_ id: String) -> JSONValue? { operations[id] }

    /// The JSON schema of an operation's request body, if it has one.
    func requestSchema(operationID: String) -> JSONValue? {
        operations[operationID]?["requestBody"]?["content"]?["application/json"]?["schema"]
    }

    /// The query parameters of an operation: name and schema.
    func queryParameters(operationID: String) -> [(name: String, schema: JSONValue)] {
        guard case let .array(parameters)? = operations[operationID]?["parameters"] else { return [] }
        return parameters.compactMap { p in
            let p = resolve(p)
            guard p["in"] == .string("query"), case let .string(name)? = p["name"], let schema = p["schema"] else { return nil }
            return (name, schema)
        }
    }

    /// `value` with a local `$ref` (`#/components/...`) followed, repeatedly; other values as they are.
    func resolve(_ value: JSONValue) -> JSONValue {
        var value = value
        while case let .string(ref)? = value["$ref"] {
            guard ref.hasPrefix("#/") else { preconditionFailure("openapi.yaml: only local references are used, got \(ref)") }
            var target = document
            for component in ref.dropFirst(2).split(separator: "/") {
                guard let next = target[String(component)] else { preconditionFailure("openapi.yaml: dangling reference \(ref)") }
                target = next
            }
            value = target
        }
        return value
    }

    /// A named schema of `components/schemas`, resolved.
    func schema(_ name: String) -> JSONValue? {
        document["components"]?["schemas"]?[name].map(resolve)
    }
}

/// `openapi.yaml` cannot be read as a document.
struct ContractError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

extension JSONValue {
    /// A YAML node as JSON, with the YAML core schema's scalar types (tags resolved by Yams).
    init(yaml node: Node) throws {
        switch node {
        case let .scalar(scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null: self = .null
            case .bool: self = .bool(node.bool ?? false)
            case .int:
                guard let i = node.int else { throw ContractError("integer out of range: \(scalar.string)") }
                self = .int(Int64(i))
            case .float:
                guard let d = node.float, d.isFinite else { throw ContractError("not a finite number: \(scalar.string)") }
                self = .double(d)
            default: self = .string(scalar.string)
            }
        case let .sequence(sequence):
            self = .array(try sequence.map { try JSONValue(yaml: $0) })
        case let .mapping(mapping):
            var object: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard let name = key.string else { throw ContractError("a mapping key is not a string") }
                guard object[name] == nil else { throw ContractError("duplicate key '\(name)'") }
                object[name] = try JSONValue(yaml: value)
            }
            self = .object(object)
        case .alias:
            throw ContractError("YAML aliases are not used in openapi.yaml")
        }
    }

    /// The member `key` of an object (nil for anything else).
    subscript(key: String) -> JSONValue? {
        guard case let .object(object) = self else { return nil }
        return object[key]
    }
}
