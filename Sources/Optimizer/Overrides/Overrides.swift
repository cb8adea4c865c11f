import Foundation
import ModelProfiles

/// What the user fixes before a search: pins (`--pin REGEX=SPEC`) and per-matrix bit menus
/// (`--bits-for REGEX=16,8,4`). Parsed and printed here, for the CLI, the service and plan files
/// alike; ``resolve(names:ranks:available:menu:library:)`` matches them against a problem's matrices.
///
/// Patterns are ICU regular expressions, unanchored, as `analyze --include` takes them: a pattern
/// selects every matrix whose name it matches anywhere (`layers\.0\.` selects layer 0).
public struct Overrides: Sendable, Equatable, Codable {
    public var pins: [Pin]
    public var bitsFor: [BitsFor]

    public init(pins: [Pin] = [], bitsFor: [BitsFor] = []) {
        self.pins = pins
        self.bitsFor = bitsFor
    }

    public var isEmpty: Bool { pins.isEmpty && bitsFor.isEmpty }

    /// Parses the texts the CLI's `--pin` and `--bits-for` (and the service's `pins`, `bitsFor`)
    /// take; `field(i)` names the i-th text of each list in errors.
    public init(
        pins: [String], bitsFor: [String], pinField: (Int) -> String = { _ in "--pin" },
        bitsForField: (Int) -> String = { _ in "--bits-for" }
    ) throws(OverrideError) {
        var parsedPins: [Pin] = [], parsedBits: [BitsFor] = []
        for (i, text) in pins.enumerated() { parsedPins.append(try Pin(parsing: text, field: pinField(i))) }
        for (i, text) in bitsFor.enumerated() { parsedBits.append(try BitsFor(parsing: text, field: bitsForField(i))) }
        self.init(pins: parsedPins, bitsFor: parsedBits)
    }

    /// Every preset a pin names exists in `library` (nil: the built-in presets); checked before any
    /// work, and again when pins are resolved.
    public func checkPresets(in library: ProfileLibrary? = nil) throws(OverrideError) {
        for pin in pins { _ = try pin.preset(in: library) }
    }
}

/// A pin: every matrix whose name `pattern` matches gets `spec`, fixed before the search.
///
/// Written `REGEX=SPEC` (split at the last `=`: a pattern may contain `=`, a spec never does):
/// - a preset name (`delta-come`, `single-3`, also `preset:delta-come`): the preset applied to
///   that matrix alone, at its share of the plan's budget (`⌊B · dense(matrix) / dense(all)⌋`,
///   the `matrix` scope's share) — its fixed segments, then its last width filled as far as the
///   share allows;
/// - explicit segments, `8:2,3:32,2:fill`: `BITS:COUNT` pairs, widths from 16, 8, 4, 3, 2, 1
///   strictly decreasing, counts ≥ 1; `fill` (last pair only) takes every stored vector the
///   others leave;
/// - `keep`: ΔW carried whole as a dense F16 tensor (its 16·h_out·h_in bits count against the
///   budget; ``Allocation/dense``);
/// - `drop`: Δ̂ = 0, no segments.
public struct Pin: Sendable, Equatable, Codable, CustomStringConvertible {
    public enum Spec: Sendable, Equatable, CustomStringConvertible {
        /// A preset by name (``ProfileLibrary/preset(named:)``), as written (with or without `preset:`).
        case preset(String)
        /// Explicit segments; `count == nil` (the last only) fills the stored vectors.
        case segments([PrecisionPreset.Segment])
        case keep
        case drop

        public var description: String {
            switch self {
            case let .preset(name): name
            case let .segments(parts): parts.map { "\($0.bits):\($0.count.map(String.init) ?? "fill")" }.joined(separator: ",")
            case .keep: "keep"
            case .drop: "drop"
            }
        }
    }

    /// The accepted forms of SPEC, for errors and `--help`.
    public static let acceptedSpecs =
        "a preset name (see `deltaplan profiles`), segments BITS:COUNT from the widest ('8:2,3:32,2:fill'; 'fill' = the stored vectors left), 'keep' (ΔW dense in F16) or 'drop'"

    public var pattern: String
    public var spec: Spec

    /// Parses `REGEX=SPEC`; `field` names the option (or request field) in errors.
    public init(parsing text: String, field: String = "--pin") throws(OverrideError) {
        func fail(_ reason: String) -> OverrideError { .malformed(field: field, text: text, reason: reason) }
        let (pattern, specText) = try splitRule(text, field: field, what: "SPEC")
        self.pattern = pattern
        spec = try Self.parseSpec(specText, fail: fail)
    }

    /// A pin from its two parts, as plan files record them (``init(parsing:field:)``'s rules).
    public init(pattern: String, spec: String, field: String) throws(OverrideError) {
        try self.init(parsing: "\(pattern)=\(spec)", field: field)
    }

    private static func parseSpec(_ text: String, fail: (String) -> OverrideError) throws(OverrideError) -> Spec {
        switch text {
        case "keep": return .keep
        case "drop": return .drop
        default: break
        }
        if text.hasPrefix("preset:") || !text.contains(":") {
            let name = text.hasPrefix("preset:") ? String(text.dropFirst("preset:".count)) : text
            guard !name.isEmpty, !name.contains(","), !name.contains(":"), name.allSatisfy({ !$0.isWhitespace }) else {
                throw fail("'\(text)' is not a SPEC; expected \(acceptedSpecs)")
            }
            return .preset(text)
        }
        var parts: [PrecisionPreset.Segment] = []
        let pieces = text.split(separator: ",", omittingEmptySubsequences: false)
        for (i, piece) in pieces.enumerated() {
            let pair = piece.split(separator: ":", omittingEmptySubsequences: false)
            guard pair.count == 2, let bits = Int(pair[0]) else {
                throw fail("segment '\(piece)' is not BITS:COUNT; expected \(acceptedSpecs)")
            }
            guard ProfileLibrary.bitWidths.contains(bits) else {
                throw fail("segment '\(piece)': \(bits) is not a bit-width (16, 8, 4, 3, 2 or 1; dropped vectors are simply left out)")
            }
            if let last = parts.last, bits >= last.bits {
                throw fail("segment '\(piece)': bit-widths must strictly decrease (widest first), \(bits) follows \(last.bits)")
            }
            if pair[1] == "fill" {
                guard i == pieces.count - 1 else { throw fail("segment '\(piece)': only the last segment can 'fill'") }
                parts.append(.init(bits: bits, count: nil))
            } else {
                guard let count = Int(pair[1]), count >= 1 else {
                    throw fail("segment '\(piece)': the count must be a positive integer or 'fill'")
                }
                parts.append(.init(bits: bits, count: count))
            }
        }
        return .segments(parts)
    }

    /// The preset a ``Spec/preset(_:)`` pin names, from `library` (nil: the built-in presets);
    /// nil for other specs.
    public func preset(in library: ProfileLibrary? = nil) throws(OverrideError) -> PrecisionPreset? {
        guard case let .preset(text) = spec else { return nil }
        let name = text.hasPrefix("preset:") ? String(text.dropFirst("preset:".count)) : text
        do throws(ProfileError) {
            let presets = if let library { library } else { try ProfileLibrary.builtIn() }
            return try presets.preset(named: name)
        } catch {
            throw .unknownPreset(pin: description, reason: error.description)
        }
    }

    /// `REGEX=SPEC`, the form ``init(parsing:field:)`` reads.
    public var description: String { "\(pattern)=\(spec)" }

    private enum CodingKeys: String, CodingKey { case pattern, spec }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pattern, forKey: .pattern)
        try c.encode(spec.description, forKey: .spec)
    }

    /// Decodes `{pattern, spec}` with ``init(parsing:field:)``: a plan file's pins pass the parser
    /// the CLI's do.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let pattern = try c.decode(String.self, forKey: .pattern), spec = try c.decode(String.self, forKey: .spec)
        do { try self.init(pattern: pattern, spec: spec, field: "pin") } catch {
            throw DecodingError.dataCorruptedError(forKey: .spec, in: c, debugDescription: error.description)
        }
    }
}

/// A per-matrix bit menu: every matrix whose name `pattern` matches may use only `bits` (within
/// the plan's `--bits`). Written `REGEX=16,8,4` (``BitMenu/parse(_:field:)``'s list).
public struct BitsFor: Sendable, Equatable, Codable, CustomStringConvertible {
    public var pattern: String
    /// Distinct positive widths, descending.
    public var bits: [Int]

    /// Parses `REGEX=16,8,4`; `field` names the option (or request field) in errors.
    public init(parsing text: String, field: String = "--bits-for") throws(OverrideError) {
        let (pattern, list) = try splitRule(text, field: field, what: "BITS")
        self.pattern = pattern
        do { bits = try BitMenu.parse(list, field: field) } catch {
            guard case let .malformed(_, _, reason) = error else { preconditionFailure() }
            throw .malformed(field: field, text: text, reason: reason)
        }
    }

    /// `REGEX=16,8,4`.
    public var description: String { "\(pattern)=\(BitMenu.text(bits))" }

    private enum CodingKeys: String, CodingKey { case pattern, bits }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pattern, forKey: .pattern)
        try c.encode(bits, forKey: .bits)
    }

    /// Decodes `{pattern, bits}` with ``init(parsing:field:)``.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let pattern = try c.decode(String.self, forKey: .pattern), bits = try c.decode([Int].self, forKey: .bits)
        do { try self.init(parsing: "\(pattern)=\(BitMenu.text(bits))", field: "bitsFor") } catch {
            throw DecodingError.dataCorruptedError(forKey: .bits, in: c, debugDescription: error.description)
        }
    }
}

/// `REGEX=VALUE` split at the last `=`, the pattern checked to compile.
private func splitRule(_ text: String, field: String, what: String) throws(OverrideError) -> (String, String) {
    guard let equals = text.lastIndex(of: "=") else {
        throw .malformed(field: field, text: text, reason: "expected REGEX=\(what)")
    }
    let pattern = String(text[..<equals]), value = String(text[text.index(after: equals)...])
    guard !pattern.isEmpty else { throw .malformed(field: field, text: text, reason: "the pattern before '=' is empty") }
    guard !value.isEmpty else { throw .malformed(field: field, text: text, reason: "nothing after '='; expected REGEX=\(what)") }
    guard (try? NSRegularExpression(pattern: pattern)) != nil else {
        throw .malformed(field: field, text: text, reason: "'\(pattern)' is not a valid regular expression")
    }
    return (pattern, value)
}

/// Why pins or bits-for rules cannot be used. Every case names the rule as the user wrote it,
/// and the matrix when one is at fault.
public enum OverrideError: Error, Equatable, CustomStringConvertible {
    /// Bad syntax: `field` is the option or request field, `text` the rule as given.
    case malformed(field: String, text: String, reason: String)
    case unknownPreset(pin: String, reason: String)
    /// A rule's pattern matches no planned matrix (`kind`: `pin` or `bits-for rule`).
    case noMatch(kind: String, rule: String, matrices: Int)
    /// Two rules of one kind match `matrix` and say different things.
    case conflict(kind: String, matrix: String, first: String, second: String)
    /// A pin keeps more vectors of `matrix` than it stores.
    case beyondRank(pin: String, matrix: String, vectors: Int, storedRank: Int)
    /// A pin puts `bits`-bit vectors in `matrix`, whose menu does not have them.
    case widthUnavailable(pin: String, matrix: String, bits: Int, menu: [Int])
    /// A bits-for rule leaves `matrix` no width of the plan's menu.
    case emptyMenu(rule: String, matrix: String, menu: [Int])

    public var description: String {
        switch self {
        case let .malformed(field, text, reason): "invalid \(field) '\(text)': \(reason)"
        case let .unknownPreset(pin, reason): "pin '\(pin)': \(reason); SPEC is \(Pin.acceptedSpecs)"
        case let .noMatch(kind, rule, matrices):
            "\(kind) '\(rule)' matches none of the \(matrices) planned matrices (patterns are unanchored regular expressions over the matrix names)"
        case let .conflict(kind, matrix, first, second):
            "\(kind)s '\(first)' and '\(second)' both match \(matrix) and disagree; make the patterns exclusive or the \(kind)s equal"
        case let .beyondRank(pin, matrix, vectors, rank):
            "pin '\(pin)' keeps \(vectors) vectors of \(matrix), which has \(rank) stored (its analysis's rank)"
        case let .widthUnavailable(pin, matrix, bits, menu):
            "pin '\(pin)' puts \(bits)-bit vectors in \(matrix), whose widths are \(menu.isEmpty ? "none" : BitMenu.text(menu)) "
                + "(the plan's --bits, its --bits-for rule, and the widths measured)"
        case let .emptyMenu(rule, matrix, menu):
            "bits-for rule '\(rule)' leaves \(matrix) no width: the plan's bits for it are \(BitMenu.text(menu))"
        }
    }
}
