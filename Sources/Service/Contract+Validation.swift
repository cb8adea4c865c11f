import Foundation

/// Request validation against the contract: the subset of JSON Schema that `openapi.yaml` uses
/// for requests (`type`, `enum`, `properties`, `required`, `additionalProperties: false`,
/// `items`, `minItems`, `maxItems`, `uniqueItems`, `minLength`, `minimum`, `exclusiveMinimum`, `maximum`, local
/// `$ref`). Every failure is an ``APIError`` naming the field (`budgets[1]` inside arrays).
///
/// The generated decoders check types, enums, required and unknown fields too, but say less
/// (and nothing about ranges); this runs first, on the raw JSON, so every rejection carries the
/// field's name. A keyword the document uses for requests and this does not know traps in the
/// tests that validate every request schema (``Contract/unsupportedKeywords``).
extension Contract {
    /// The keywords ``validate(_:against:at:)`` understands; annotations are ignored.
    static let validationKeywords: Set<String> = [
        "$ref", "type", "enum", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "uniqueItems", "minLength", "minimum", "exclusiveMinimum", "maximum",
    ]
    static let annotationKeywords: Set<String> = ["description", "default", "examples", "format"]

    /// The body of operation `operationID` as a JSON object, checked against its request schema.
    func validateBody(_ data: Data, operationID: String) throws(APIError) -> JSONValue {
        guard let schema = requestSchema(operationID: operationID) else { return .null }
        guard !data.isEmpty else { throw .invalidJSON("the body is empty") }
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch { throw .invalidJSON("malformed JSON") }
        guard case .object = value else { throw .invalidJSON("expected an object, got \(value.typeName)") }
        try validate(value, against: schema, at: "")
        return value
    }

    /// The query of operation `operationID` checked against its query parameters' schemas.
    /// Parameters the operation does not declare are ignored.
    func validateQuery(_ items: [(name: String, value: String)], operationID: String) throws(APIError) {
        for (name, schema) in queryParameters(operationID: operationID) {
            for item in items where item.name == name {
                let value: JSONValue
                if resolve(schema)["type"] == .string("integer") {
                    guard let i = Int64(item.value) else {
                        throw .invalidField(field: name, reason: "expected an integer, got '\(item.value)'")
                    }
                    value = .int(i)
                } else {
                    value = .string(item.value)
                }
                try validate(value, against: schema, at: name)
            }
        }
    }

    /// Checks `value` against `schema`; `path` names it in errors.
    func validate(_ value: JSONValue, against schema: JSONValue, at path: String) throws(APIError) {
        let schema = resolve(schema)
        if let types = schema["type"].map(Self.typeNames) {
            guard types.contains(where: { value.isOfType($0) }) else {
                throw .invalidField(field: path, reason: "expected \(types.map(Self.article).joined(separator: " or ")), got \(value.typeName)")
            }
        }
        if case let .array(allowed)? = schema["enum"], !allowed.contains(value) {
            throw .invalidField(field: path, reason: "expected one of \(allowed.map(\.literal).joined(separator: ", ")), got \(value.literal)")
        }
        switch value {
        case let .object(object):
            var properties: [String: JSONValue] = [:]
            if case let .object(p)? = schema["properties"] { properties = p }
            if schema["additionalProperties"] == .bool(false) {
                for key in object.keys.sorted() where properties[key] == nil {
                    throw .unknownField(field: Self.member(path, key), allowed: Array(properties.keys))
                }
            }
            if case let .array(required)? = schema["required"] {
                for case let .string(key) in required where object[key] == nil {
                    throw .invalidField(field: Self.member(path, key), reason: "required")
                }
            }
            for key in object.keys.sorted() {
                if let property = properties[key], let member = object[key] {
                    try validate(member, against: property, at: Self.member(path, key))
                }
            }
        case let .array(items):
            if case let .int(least)? = schema["minItems"], items.count < least {
                throw .invalidField(field: path, reason: least == 1 ? "must not be empty" : "needs at least \(least) items, got \(items.count)")
            }
            if case let .int(most)? = schema["maxItems"], items.count > most {
                throw .invalidField(field: path, reason: "takes at most \(most) items, got \(items.count)")
            }
            if schema["uniqueItems"] == .bool(true) {
                for (i, item) in items.enumerated() where items[..<i].contains(item) {
                    throw .invalidField(field: "\(path)[\(i)]", reason: "\(item.literal) is listed twice")
                }
            }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { try validate(item, against: itemSchema, at: "\(path)[\(i)]") }
            }
        case let .string(text):
            if case let .int(least)? = schema["minLength"], text.count < least {
                throw .invalidField(field: path, reason: least == 1 ? "must not be empty" : "must be at least \(least) characters long")
            }
        case .int, .double:
            let x = value.number!
            if let least = schema["minimum"]?.number, x < least {
                throw .invalidField(field: path, reason: "must be at least \(schema["minimum"]!.literal), got \(value.literal)")
            }
            if let bound = schema["exclusiveMinimum"]?.number, x <= bound {
                throw .invalidField(field: path, reason: "must be more than \(schema["exclusiveMinimum"]!.literal), got \(value.literal)")
            }
            if let most = schema["maximum"]?.number, x > most {
                throw .invalidField(field: path, reason: "must be at most \(schema["maximum"]!.literal), got \(value.literal)")
            }
        case .bool, .null:
            break
        }
    }

    /// Keywords of the request schemas (and the query parameters' schemas) this validator does
    /// not understand, as `operationID: keyword`; empty when every rule of the document is enforced.
    func unsupportedKeywords() -> [String] {
        var found: Set<String> = []
        func visit(_ schema: JSONValue, _ owner: String) {
            if case let .string(ref)? = schema["$ref"] { visit(resolve(.object(["$ref": .string(ref)])), owner); return }
            guard case let .object(keywords) = schema else { return }
            for (keyword, value) in keywords {
                if keyword.hasPrefix("x-") || Self.annotationKeywords.contains(keyword) { continue }
                guard Self.validationKeywords.contains(keyword) else { found.insert("\(owner): \(keyword)"); continue }
                switch keyword {
                case "properties": if case let .object(p) = value { p.values.forEach { visit($0, owner) } }
                case "items": visit(value, owner)
                case "additionalProperties": if case .object = value { found.insert("\(owner): additionalProperties (schema)") }
                default: break
                }
            }
        }
        for (id, _) in operations {
            if let schema = requestSchema(operationID: id) { visit(schema, id) }
            for (_, schema) in queryParameters(operationID: id) { visit(schema, id) }
        }
        return found.sorted()
    }

    private static func typeNames(_ type: JSONValue) -> [String] {
        switch type {
        case let .string(name): [name]
        case let .array(names): names.compactMap { if case let .string(n) = $0 { n } else { nil } }
        default: []
        }
    }

    private static func article(_ type: String) -> String {
        switch type {
        case "integer": "an integer"
        case "array": "an array"
        case "object": "an object"
        case "null": "null"
        default: "a \(type)"
        }
    }

    private static func member(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }
}

extension JSONValue {
    /// Whether this value is of the JSON Schema type `name`. Integers are integer literals only.
    func isOfType(_ name: String) -> Bool {
        switch (name, self) {
        case ("null", .null), ("boolean", .bool), ("integer", .int), ("number", .int), ("number", .double),
             ("string", .string), ("array", .array), ("object", .object): true
        default: false
        }
    }

    /// The value as it would be written in JSON, shortened, for error messages.
    /// An integer or a double as a Double (nil for other values).
    var number: Double? {
        switch self {
        case let .int(n): Double(n)
        case let .double(x): x
        default: nil
        }
    }

    var literal: String {
        let text = String(decoding: encoded(), as: UTF8.self)
        return text.count > 60 ? String(text.prefix(57)) + "..." : text
    }
}
