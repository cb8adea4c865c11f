import Analysis
import Foundation
import ModelProfiles
import Optimizer

/// The parameters of a plan job (a plan from an analysis store), as validated by `POST /v1/plans`.
public struct PlanJobParameters: Codable, Sendable, Equatable {
    /// The analysis job id and its store directory.
    public var analysis: String
    public var analysisStore: String
    public var budget: String
    public var strategy: String
    public var scope: Scope
    public var bits: [Int]
    public var seed: UInt64
    public var accounting: Accounting
    public var groupSize: Int
    /// What the plan minimizes (nil: the strongest the store supports) and the segment order its
    /// errors are measured in (nil in jobs persisted before orders: the default).
    public var objective: ErrorObjective?
    public var order: SegmentOrder?
}

/// The parameters of a comparison job, as validated by `POST /v1/comparisons`.
public struct ComparisonJobParameters: Codable, Sendable, Equatable {
    public var analysis: String
    public var analysisStore: String
    public var budgets: [String]
    public var strategies: [String]
    /// Nil: each strategy at its default scope (see `StorePlanning.compare`).
    public var scope: Scope?
    public var seed: UInt64
    public var accounting: Accounting
    public var groupSize: Int
    /// The bit menu; nil in jobs persisted before comparisons recorded it (the default menu).
    public var bits: [Int]?
    /// As ``PlanJobParameters``.
    public var objective: ErrorObjective?
    public var order: SegmentOrder?
}

/// The parameters of a compression job, as validated by `POST /v1/compressions`.
public struct CompressionJobParameters: Codable, Sendable, Equatable {
    public var base: String
    public var finetuned: String
    public var calibration: String?
    /// The plan job id, when the plan came from one.
    public var plan: String?
    /// The plan file (resolved).
    public var planFile: String
}

/// The parameters of an evaluation job, as validated by `POST /v1/evaluations`.
public struct EvaluationJobParameters: Codable, Sendable, Equatable {
    /// The compression job id, when the artifact came from one.
    public var compression: String?
    /// The artifact directory (resolved).
    public var artifact: String
    public var base: String
    public var finetuned: String
    /// Nil: the calibration recorded in the artifact's store.
    public var calibration: String?
}

/// The parameters of a merge job, as validated by `POST /v1/merges`.
public struct MergeJobParameters: Codable, Sendable, Equatable {
    public var compression: String?
    public var artifact: String
    public var base: String
}

/// Validation shared by the endpoints: every failure is an ``APIError`` naming the field.
struct RequestValidator: Sendable {
    let roots: AllowedRoots
    let library: ProfileLibrary

    static let searchStrategies = ["greedy", "genetic", "exact"]
    func budget(_ text: String, field: String) throws(APIError) -> GivenBudget {
        do { return try GivenBudget(parsing: text, field: field) } catch {
            throw .malformedBudget(field: field, message: error.description)
        }
    }

    /// 'preset:NAME' with a known preset, or a search strategy.
    /// `baselines`: also accept ``StorePlanning/baselines`` (`low-rank`, `bitdelta`), as comparisons do.
    func strategy(_ text: String, field: String, baselines: Bool = false) throws(APIError) {
        if baselines, Candidate.baselines.contains(text) { return }
        if text.hasPrefix("preset:") {
            let name = String(text.dropFirst("preset:".count))
            guard library.presets.contains(where: { $0.name == name }) else {
                throw .unknownStrategy(field: field, value: text,
                                       reason: "no preset named '\(name)'; presets: \(library.presets.map(\.name).joined(separator: ", "))")
            }
        } else if !Self.searchStrategies.contains(text) {
            throw .unknownStrategy(field: field, value: text, reason: "expected 'preset:NAME', 'greedy', 'genetic' or 'exact'"
                                   + (baselines ? ", or a baseline: \(Candidate.baselines.joined(separator: ", "))" : ""))
        }
    }

    func bits(_ text: String) throws(APIError) -> [Int] {
        do { return try BitMenu.parse(text, field: "bits") } catch {
            throw .invalidField(field: "bits", reason: error.description)
        }
    }

    func profile(_ name: String) throws(APIError) -> ModelProfile {
        do { return try library.model(named: name) } catch {
            throw .invalidField(field: "profile", reason: "\(error); see GET /v1/profiles")
        }
    }

    func path(_ text: String, field: String) throws(APIError) -> String {
        try roots.resolve(text, field: field)
    }

    /// `include`/`exclude` must compile as the analyzer's patterns.
    func selection(include: [String], exclude: [String]) throws(APIError) {
        do { _ = try Selection(include: include, exclude: exclude) } catch {
            throw .invalidField(field: include.isEmpty ? "exclude" : "include", reason: error.description)
        }
    }
}

/// Shared plan options of `POST /v1/plans` and `POST /v1/comparisons`.
struct PlanOptions {
    /// Nil when the request gives none: each strategy then runs at its ``Strategy/defaultScope``.
    var scope: Scope?
    var bits: [Int]
    var seed: UInt64
    var accounting: Accounting
    var groupSize: Int
    /// Error-model options, for plans from an analysis and comparisons (nil when not given).
    var objective: ErrorObjective?
    var order: SegmentOrder?

    /// The fields every plan and comparison request may carry.
    static let fields: Set<String> = ["scope", "bits", "seed", "accounting", "groupSize", "objective", "order"]

    init(_ r: FieldReader, validator: RequestValidator) throws(APIError) {
        scope = try r.choice("scope", Scope.self)
        bits = try validator.bits(try r.string("bits") ?? BitMenu.text(BitMenu.default))
        seed = UInt64(try r.integer("seed", in: 0...Int64.max) ?? 0)
        accounting = try r.choice("accounting", Accounting.self) ?? StorageModel.defaultAccounting
        groupSize = try r.integer("groupSize", in: 1...(1 << 20)).map(Int.init) ?? StorageModel.defaultGroupSize
        objective = try r.choice("objective", ErrorObjective.self)
        order = try r.choice("order", SegmentOrder.self)
    }

    var storage: StorageModel { StorageModel(accounting: accounting, groupSize: groupSize) }
}

extension Encodable {
    /// Deterministic JSON for storage as job parameters.
    func parametersJSON() throws(APIError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return try encoder.encode(self) } catch { throw .internalError("cannot encode job parameters: \(error)") }
    }
}
