import Analysis
import Foundation
import ModelProfiles
import Optimizer
import Pipeline
import Quantization

/// The parameters of a plan job (a plan from an analysis store), as validated by `POST /v1/plans`.
public struct PlanJobParameters: Codable, Sendable, Equatable {
    /// The analysis job id and its store directory.
    public var analysis: String
    public var analysisStore: String
    /// The budget as given, or nil when the plan is asked to meet `target` instead.
    public var budget: String?
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
    /// The quantizer the error model measures and the store's calibration file (nil: GPTQ, and the
    /// calibration the store records; also in jobs persisted before they were options).
    public var method: QuantizationMethod?
    public var calibration: String?
    /// A quality target instead of a budget (`plan --max-error`).
    public var target: ErrorTarget?
    /// `plan --pin` and `--bits-for` as given (``Overrides``' texts); nil when none (and in jobs
    /// persisted before pins).
    public var pins: [String]?
    public var bitsFor: [String]?
    /// `plan --verify`: re-solve rounds after measuring the plan; nil: not verified.
    public var verify: Int?
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
    public var method: QuantizationMethod?
    public var calibration: String?
    public var pins: [String]?
    public var bitsFor: [String]?
}

extension Overrides {
    /// The pins and bits-for rules a job's parameters record (parsed as the request's were).
    init(jobPins pins: [String]?, bitsFor: [String]?) throws(OverrideError) {
        try self.init(pins: pins ?? [], bitsFor: bitsFor ?? [])
    }
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
    /// `CompressionOptions`' (nil: its defaults; the order then is the plan's).
    public var method: QuantizationMethod?
    public var order: SegmentOrder?
    public var dampening: Double?
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

/// The parameters of a fleet job, as validated by `POST /v1/fleets`.
public struct FleetJobParameters: Codable, Sendable, Equatable {
    public struct Member: Codable, Sendable, Equatable {
        public var name: String
        /// The analysis job id and its store directory.
        public var analysis: String
        public var analysisStore: String
        public var weight: Double
        public var maxRelativeError: Double?
    }

    public var members: [Member]
    public var budget: String
    public var strategy: String
    public var bits: [Int]
    public var seed: UInt64
    public var accounting: Accounting
    public var groupSize: Int
    public var order: SegmentOrder
    public var method: QuantizationMethod
    /// As ``PlanJobParameters``, for every member.
    public var pins: [String]?
    public var bitsFor: [String]?
}

/// The parameters of a merge job, as validated by `POST /v1/merges`.
public struct MergeJobParameters: Codable, Sendable, Equatable {
    public var compression: String?
    public var artifact: String
    public var base: String
}

/// Validation shared by the endpoints, with the library's parsers: every failure is an
/// ``APIError`` naming the field.
struct RequestValidator: Sendable {
    let roots: AllowedRoots
    let library: ProfileLibrary

    func budget(_ text: String, field: String) throws(APIError) -> GivenBudget {
        do { return try GivenBudget(parsing: text, field: field) } catch {
            throw .malformedBudget(field: field, message: error.description)
        }
    }

    /// 'preset:NAME' with a known preset, or a search strategy (``Strategy/init(parsing:library:)``).
    func strategy(_ text: String, field: String) throws(APIError) -> Strategy {
        do { return try Strategy(parsing: text, library: library) } catch {
            throw .unknownStrategy(field: field, value: text, reason: error.reason)
        }
    }

    /// A strategy or a baseline (`low-rank`, `bitdelta`), as comparisons take them (``Candidate/init(parsing:library:)``).
    func candidate(_ text: String, field: String) throws(APIError) -> Candidate {
        do { return try Candidate(parsing: text, library: library) } catch {
            throw .unknownStrategy(field: field, value: text, reason: error.reason)
        }
    }

    /// The bit menu as ``BitMenu/parse(_:field:)-([Int],_)`` reads a list (duplicates and widths the
    /// library does not have are refused there).
    func bits(_ widths: [Int]) throws(APIError) -> [Int] {
        do { return try BitMenu.parse(widths, field: "bits") } catch {
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

    /// `pins` and `bitsFor` with the library's parser (``Overrides/init(pins:bitsFor:pinField:bitsForField:)``),
    /// the presets pins name checked; and, given an analysis store, matched against its matrices
    /// (``StorePlanning/check(_:against:menu:measurement:library:)``) so that a pattern that
    /// matches nothing is a 400, not a failed job.
    func overrides(
        pins: [String]?, bitsFor: [String]?, store: String?, menu: [Int], measurement: MeasurementOptions
    ) throws(APIError) -> Overrides {
        func field(_ error: OverrideError) -> String {
            switch error {
            case let .malformed(field, _, _): field
            case .emptyMenu: "bitsFor"
            case let .noMatch(kind, _, _), let .conflict(kind, _, _, _): kind == "pin" ? "pins" : "bitsFor"
            case .unknownPreset, .beyondRank, .widthUnavailable: "pins"
            }
        }
        let overrides: Overrides
        do throws(OverrideError) {
            overrides = try Overrides(pins: pins ?? [], bitsFor: bitsFor ?? [], pinField: { "pins[\($0)]" },
                                      bitsForField: { "bitsFor[\($0)]" })
            try overrides.checkPresets(in: library)
        } catch { throw .invalidField(field: field(error), reason: error.description) }
        guard let store, !overrides.isEmpty else { return overrides }
        let opened: SpectrumStore
        do { opened = try SpectrumStore(at: URL(fileURLWithPath: store)) } catch {
            throw .internalError("cannot open the analysis store \(store): \(error)")
        }
        do throws(OverrideError) {
            try StorePlanning.check(overrides, against: opened, menu: menu, measurement: measurement, library: library)
        } catch { throw .invalidField(field: field(error), reason: error.description) }
        return overrides
    }

    /// `include`/`exclude` must compile as the analyzer's patterns.
    func selection(include: [String], exclude: [String]) throws(APIError) {
        do { _ = try Selection(include: include, exclude: exclude) } catch {
            throw .invalidField(field: include.isEmpty ? "exclude" : "include", reason: error.description)
        }
    }
}

/// Shared plan options of `POST /v1/plans` and `POST /v1/comparisons`, as domain values; what a
/// request leaves out takes the library's defaults (which the contract's `default:`s state).
struct PlanOptions {
    /// Nil when the request gives none: each strategy then runs at its ``Strategy/defaultScope``.
    var scope: Scope?
    var bits: [Int]
    var seed: UInt64
    var storage: StorageModel
    /// Error-model options, for plans from an analysis and comparisons (nil when not given).
    var objective: ErrorObjective?
    var order: SegmentOrder?
    var method: QuantizationMethod?

    var accounting: Accounting { storage.accounting }
    var groupSize: Int { storage.groupSize }
    /// The measurement these options ask for (the defaults where not given).
    var measurement: MeasurementOptions {
        MeasurementOptions(method: method ?? .default, order: order ?? .default, groupSize: groupSize)
    }

    init(scope: Components.Schemas.Scope?, bits: Components.Schemas.BitsMenu?, seed: Int?, accounting: Components.Schemas.Accounting?,
         groupSize: Int?, objective: Components.Schemas.Objective?, order: Components.Schemas.SegmentOrder?,
         method: Components.Schemas.QuantizationMethod?, validator: RequestValidator) throws(APIError) {
        self.scope = scope.map { libraryValue($0, as: Scope.self) }
        self.bits = try bits.map { widths throws(APIError) in try validator.bits(widths.map(\.rawValue)) } ?? BitMenu.default
        // The contract bounds both (seed ≥ 0, groupSize ≥ 1) and ContractMiddleware enforces it;
        // checked again here because a negative value would trap.
        guard let seed = UInt64(exactly: seed ?? 0) else { throw .invalidField(field: "seed", reason: "must not be negative") }
        self.seed = seed
        let groupSize = groupSize ?? StorageModel.defaultGroupSize
        guard groupSize >= 1 else { throw .invalidField(field: "groupSize", reason: "must be positive") }
        storage = StorageModel(accounting: accounting.map { libraryValue($0, as: Accounting.self) } ?? StorageModel.defaultAccounting,
                               groupSize: groupSize)
        self.objective = objective.map { libraryValue($0, as: ErrorObjective.self) }
        self.order = order.map { libraryValue($0, as: SegmentOrder.self) }
        self.method = method.map { libraryValue($0, as: QuantizationMethod.self) }
    }
}

extension Encodable {
    /// Deterministic JSON for storage as job parameters.
    func parametersJSON() throws(APIError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do { return try encoder.encode(self) } catch { throw .internalError("cannot encode job parameters: \(error)") }
    }
}
