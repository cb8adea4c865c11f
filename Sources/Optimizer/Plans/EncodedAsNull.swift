/// An optional that is always written: `null` when absent, where synthesized `Codable` would leave
/// the key out. The plan and comparison formats promise every field, present or null
/// (`Docs/plan-format.md`); a missing key still decodes as nil.
@propertyWrapper
public struct EncodedAsNull<Value: Codable>: Codable {
    public var wrappedValue: Value?

    public init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        wrappedValue = c.decodeNil() ? nil : try c.decode(Value.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}

extension EncodedAsNull: Sendable where Value: Sendable {}
extension EncodedAsNull: Equatable where Value: Equatable {}

extension KeyedDecodingContainer {
    /// Used by synthesized decoding of an ``EncodedAsNull`` property: a missing key is nil.
    func decode<V>(_: EncodedAsNull<V>.Type, forKey key: Key) throws -> EncodedAsNull<V> {
        EncodedAsNull(wrappedValue: try decodeIfPresent(V.self, forKey: key))
    }
}
