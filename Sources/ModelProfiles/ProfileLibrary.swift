import Foundation

/// An error in a profile or preset file, or a name that names none.
public enum ProfileError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read.
    case unreadable(file: String, reason: String)
    /// The file is not valid JSON of the expected form; `field` is the JSON path at fault.
    case invalid(file: String, field: String, reason: String)
    case unknownModel(String, available: [String])
    case unknownPreset(String, available: [String])
    case duplicate(name: String, files: [String])

    public var description: String {
        switch self {
        case let .unreadable(file, reason): "cannot read profile \(file): \(reason)"
        case let .invalid(file, field, reason): "invalid profile \(file), field '\(field)': \(reason)"
        case let .unknownModel(name, available):
            "no model profile named '\(name)' (available: \(available.joined(separator: ", ")))"
        case let .unknownPreset(name, available):
            "no precision preset named '\(name)' (available: \(available.joined(separator: ", ")))"
        case let .duplicate(name, files): "profile name '\(name)' is defined twice: \(files.joined(separator: ", "))"
        }
    }
}

/// The model profiles and precision presets of a `Profiles/` directory, validated on load.
public struct ProfileLibrary: Sendable {
    public private(set) var models: [ModelProfile] = []
    public private(set) var presets: [PrecisionPreset] = []

    /// The bit-widths a plan may use.
    public static let bitWidths: Set<Int> = [16, 8, 4, 3, 2, 1]

    /// The profiles shipped with DeltaPlan (the package's `Profiles/` directory, bundled as a resource).
    public static func builtIn() throws(ProfileError) -> ProfileLibrary {
        guard let url = Bundle.module.url(forResource: "Profiles", withExtension: nil) else {
            throw .unreadable(file: "Profiles", reason: "the built-in profiles are missing from the installation")
        }
        return try ProfileLibrary(directory: url)
    }

    /// Loads `models/*.json` and `presets/*.json` below `directory`, sorted by name.
    public init(directory: URL) throws(ProfileError) {
        var modelFiles: [String: String] = [:], presetFiles: [String: String] = [:]
        for file in try Self.jsonFiles(in: directory.appendingPathComponent("models")) {
            let model: ModelProfile = try Self.decode(file)
            try Self.validate(model, file: file.path)
            if let other = modelFiles[model.name] { throw .duplicate(name: model.name, files: [other, file.path]) }
            modelFiles[model.name] = file.path
            models.append(model)
        }
        for file in try Self.jsonFiles(in: directory.appendingPathComponent("presets")) {
            let preset: PrecisionPreset = try Self.decode(file)
            try Self.validate(preset, file: file.path)
            if let other = presetFiles[preset.name] { throw .duplicate(name: preset.name, files: [other, file.path]) }
            presetFiles[preset.name] = file.path
            presets.append(preset)
        }
        models.sort { $0.name < $1.name }
        presets.sort { $0.name < $1.name }
    }

    public func model(named name: String) throws(ProfileError) -> ModelProfile {
        guard let m = models.first(where: { $0.name == name }) else {
            throw .unknownModel(name, available: models.map(\.name))
        }
        return m
    }

    public func preset(named name: String) throws(ProfileError) -> PrecisionPreset {
        guard let p = presets.first(where: { $0.name == name }) else {
            throw .unknownPreset(name, available: presets.map(\.name))
        }
        return p
    }

    // MARK: Loading and validation

    private static func jsonFiles(in directory: URL) throws(ProfileError) -> [URL] {
        do {
            return try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
                .filter { $0.pathExtension == "json" }
                .sorted { $0.lastPathComponent < $1.lastPathComponent }
        } catch {
            throw .unreadable(file: directory.path, reason: error.localizedDescription)
        }
    }

    private static func decode<T: Decodable>(_ file: URL) throws(ProfileError) -> T {
        let data: Data
        do { data = try Data(contentsOf: file) } catch {
            throw .unreadable(file: file.path, reason: error.localizedDescription)
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw .invalid(file: file.path, field: path(context.codingPath + [key]), reason: "missing")
        } catch let DecodingError.typeMismatch(type, context) {
            throw .invalid(file: file.path, field: path(context.codingPath), reason: "expected \(type)")
        } catch let DecodingError.valueNotFound(type, context) {
            throw .invalid(file: file.path, field: path(context.codingPath), reason: "expected \(type), found null")
        } catch let DecodingError.dataCorrupted(context) {
            throw .invalid(file: file.path, field: path(context.codingPath), reason: context.debugDescription)
        } catch {
            throw .invalid(file: file.path, field: "", reason: "\(error)")
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            .trimmingPrefix(".").description
    }

    static func validate(_ m: ModelProfile, file: String) throws(ProfileError) {
        func fail(_ field: String, _ reason: String) -> ProfileError { .invalid(file: file, field: field, reason: reason) }
        if m.name.isEmpty { throw fail("name", "must not be empty") }
        if m.layers < 1 { throw fail("layers", "must be at least 1, got \(m.layers)") }
        if m.matrices.isEmpty { throw fail("matrices", "must list at least one matrix") }
        var names = Set<String>()
        for (i, t) in m.matrices.enumerated() {
            if t.shape.count != 2 || t.shape.contains(where: { $0 < 1 }) {
                throw fail("matrices[\(i)].shape", "a matrix needs two positive dimensions [h_out, h_in], got \(t.shape)")
            }
            if !names.insert(t.name).inserted { throw fail("matrices[\(i)].name", "duplicate name \(t.name)") }
        }
        for (i, t) in m.tensors.enumerated() {
            if t.shape.isEmpty || t.shape.contains(where: { $0 < 1 }) {
                throw fail("tensors[\(i)].shape", "needs positive dimensions, got \(t.shape)")
            }
            if !names.insert(t.name).inserted { throw fail("tensors[\(i)].name", "duplicate name \(t.name)") }
        }
    }

    static func validate(_ p: PrecisionPreset, file: String) throws(ProfileError) {
        func fail(_ field: String, _ reason: String) -> ProfileError { .invalid(file: file, field: field, reason: reason) }
        if p.name.isEmpty { throw fail("name", "must not be empty") }
        if p.segments.isEmpty { throw fail("segments", "must have at least one segment") }
        for (i, s) in p.segments.enumerated() {
            if !bitWidths.contains(s.bits) {
                throw fail("segments[\(i)].bits", "must be one of \(bitWidths.sorted(by: >)), got \(s.bits)")
            }
            if i > 0, s.bits > p.segments[i - 1].bits {
                throw fail("segments[\(i)].bits", "bit-widths must not increase along the singular index")
            }
            if let c = s.count, c < 1 { throw fail("segments[\(i)].count", "must be positive, got \(c)") }
            if s.count == nil, i != p.segments.count - 1 {
                throw fail("segments[\(i)].count", "only the last segment may omit its count (fill to the budget)")
            }
        }
    }
}
