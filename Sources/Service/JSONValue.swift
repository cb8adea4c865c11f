import Foundation

/// A JSON document as a value: request bodies are read into it so that unknown fields and wrong
/// types are reported by name, and job parameters are embedded in responses as they were stored.
enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let i = try? c.decode(Int64.self) { self = .int(i) }
        else if let d = try? c.decode(Double.self) { self = .double(d) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(b): try c.encode(b)
        case let .int(i): try c.encode(i)
        case let .double(d): try c.encode(d)
        case let .string(s): try c.encode(s)
        case let .array(a): try c.encode(a)
        case let .object(o): try c.encode(o)
        }
    }

    /// The JSON type name, for error messages.
    var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int, .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    /// Parses `data`; anything but a JSON object is `invalidJSON`.
    static func parseObject(_ data: Data) throws(APIError) -> [String: JSONValue] {
        guard !data.isEmpty else { throw .invalidJSON("the body is empty") }
        let value: JSONValue
        do { value = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw .invalidJSON("malformed JSON")
        }
        guard case let .object(object) = value else { throw .invalidJSON("expected an object, got \(value.typeName)") }
        return object
    }

    /// Deterministic bytes: sorted keys, no escaped slashes.
    func encoded(pretty: Bool = false) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        // Encoding a tree of strings, numbers and containers cannot fail (doubles are finite by construction).
        return (try? encoder.encode(self)) ?? Data("null".utf8)
    }
}

/// Reads the fields of a request object, rejecting unknown keys and naming the field in every error.
struct FieldReader {
    let object: [String: JSONValue]

    init(_ object: [String: JSONValue], allowed: Set<String>) throws(APIError) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            throw .unknownField(field: key, allowed: Array(allowed))
        }
        self.object = object
    }

    private func present(_ key: String) -> JSONValue? {
        guard let v = object[key], v != .null else { return nil }
        return v
    }

    func string(_ key: String) throws(APIError) -> String? {
        guard let v = present(key) else { return nil }
        guard case let .string(s) = v else { throw .invalidField(field: key, reason: "expected a string, got \(v.typeName)") }
        return s
    }

    func requiredString(_ key: String) throws(APIError) -> String {
        guard let s = try string(key) else { throw .invalidField(field: key, reason: "required") }
        guard !s.isEmpty else { throw .invalidField(field: key, reason: "must not be empty") }
        return s
    }

    func strings(_ key: String) throws(APIError) -> [String]? {
        guard let v = present(key) else { return nil }
        guard case let .array(items) = v else { throw .invalidField(field: key, reason: "expected an array of strings, got \(v.typeName)") }
        var result: [String] = []
        for (i, item) in items.enumerated() {
            guard case let .string(s) = item else {
                throw .invalidField(field: "\(key)[\(i)]", reason: "expected a string, got \(item.typeName)")
            }
            result.append(s)
        }
        return result
    }

    func integer(_ key: String, in range: ClosedRange<Int64>) throws(APIError) -> Int64? {
        guard let v = present(key) else { return nil }
        let i: Int64
        switch v {
        case let .int(n): i = n
        case let .double(d) where d.rounded() == d && abs(d) < 9.0e15: i = Int64(d)
        default: throw .invalidField(field: key, reason: "expected an integer, got \(v.typeName)")
        }
        guard range.contains(i) else {
            throw .invalidField(field: key, reason: "must be in \(range.lowerBound)...\(range.upperBound), got \(i)")
        }
        return i
    }

    func bool(_ key: String) throws(APIError) -> Bool? {
        guard let v = present(key) else { return nil }
        guard case let .bool(b) = v else { throw .invalidField(field: key, reason: "expected a boolean, got \(v.typeName)") }
        return b
    }

    /// A string that must be one of an enum's raw values.
    func choice<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(APIError) -> E? where E.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let e = E(rawValue: s) else {
            throw .invalidField(field: key, reason: "expected one of \(E.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return e
    }
}
