import Checkpoint
import Foundation
import ModelProfiles

/// An allocation plan as written to disk: versioned JSON that a separate compressor can consume.
/// The schema is documented in `Docs/plan-format.md`.
///
/// Encoding is deterministic (sorted keys, shortest round-trip Double formatting, optional values
/// written as `null`), so equal plans give byte-identical files.
///
/// Format 2 added pins and bits-for rules (``overrides``, ``Matrix/pin``, ``Matrix/bits``) and
/// dense matrices (``Matrix/dense``, a `keep` pin); format 1 plans (none of them) are still read.
public struct Plan: Codable, Sendable, Equatable {
    /// The format version this build writes.
    public static let currentFormatVersion = 2
    /// The versions readers accept.
    public static let readableFormatVersions: ClosedRange<Int> = 1...2

    /// Where the plan's matrices came from.
    public struct Source: Codable, Sendable, Equatable {
        /// `store` (an analysis store, with measured spectra) or `profile` (shapes only).
        public var kind: String
        /// The profile name, or the store's path or name as given.
        public var name: String
        /// SHA-256 (hex) of the store manifest, or of the profile's canonical JSON.
        public var hash: String

        public init(kind: String, name: String, hash: String) {
            self.kind = kind
            self.name = name
            self.hash = hash
        }
    }

    public struct BudgetRecord: Codable, Sendable, Equatable {
        /// The budget as the user gave it (`1/16`, `850MiB`, `1.0bpp`).
        public var given: String
        /// The budget in bits under the plan's accounting, over all planned matrices.
        public var bits: Int
        /// For a plan asked to meet a quality instead of a budget (`plan --max-error`): the target;
        /// `bits` is then the smallest budget found whose plan meets it. Absent otherwise.
        public var target: ErrorTarget?

        public init(given: String, bits: Int, target: ErrorTarget? = nil) {
            self.given = given
            self.bits = bits
            self.target = target
        }
    }

    public struct StrategyRecord: Codable, Sendable, Equatable {
        /// `preset`, `greedy`, `genetic` or `exact`.
        public var name: String
        /// The preset's name for `preset`, else null.
        @EncodedAsNull public var preset: String?
        /// The strategy's numeric parameters (e.g. the genetic options), sorted by key; empty when none.
        public var parameters: [String: Double]
        public var seed: UInt64

        public init(name: String, preset: String? = nil, parameters: [String: Double] = [:], seed: UInt64) {
            self.name = name
            self.preset = preset
            self.parameters = parameters
            self.seed = seed
        }
    }

    /// One planned matrix.
    public struct Matrix: Codable, Sendable, Equatable {
        public var name: String
        public var type: LayerType
        /// `[h_out, h_in]`.
        public var shape: [Int]
        /// Consecutive from 0, strictly decreasing bits; vectors past the last `end` are dropped.
        public var segments: [Segment]
        /// ΔW is stored whole as a dense F16 `h_out × h_in` tensor (a `keep` pin); `segments` is
        /// then empty. False in format-1 plans.
        public var dense: Bool
        public var storageBits: Int
        /// Predicted ‖(ΔW − ΔŴ)X‖²; null for shape-only plans.
        @EncodedAsNull public var predictedError: Double?
        /// `predictedError / ‖ΔW X‖²`; null for shape-only plans.
        @EncodedAsNull public var predictedRelativeError: Double?
        /// The pin that fixed this matrix before the search (one of the plan's ``Plan/overrides``);
        /// null when the search planned it.
        @EncodedAsNull public var pin: Pin?
        /// The widths this matrix could use, from a bits-for rule (a subset of the plan's `bits`);
        /// null: the plan's.
        @EncodedAsNull public var bits: [Int]?

        public init(name: String, type: LayerType, shape: [Int], segments: [Segment], dense: Bool = false, storageBits: Int,
                    predictedError: Double? = nil, predictedRelativeError: Double? = nil, pin: Pin? = nil, bits: [Int]? = nil) {
            precondition(!dense || segments.isEmpty, "a dense matrix has no segments")
            self.name = name
            self.type = type
            self.shape = shape
            self.segments = segments
            self.dense = dense
            self.storageBits = storageBits
            self.predictedError = predictedError
            self.predictedRelativeError = predictedRelativeError
            self.pin = pin
            self.bits = bits
        }

        /// Decodes every field; `dense` absent (a format-1 plan) is false.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            type = try c.decode(LayerType.self, forKey: .type)
            shape = try c.decode([Int].self, forKey: .shape)
            segments = try c.decode([Segment].self, forKey: .segments)
            dense = try c.decodeIfPresent(Bool.self, forKey: .dense) ?? false
            storageBits = try c.decode(Int.self, forKey: .storageBits)
            _predictedError = try c.decode(EncodedAsNull<Double>.self, forKey: .predictedError)
            _predictedRelativeError = try c.decode(EncodedAsNull<Double>.self, forKey: .predictedRelativeError)
            _pin = try c.decode(EncodedAsNull<Pin>.self, forKey: .pin)
            _bits = try c.decode(EncodedAsNull<[Int]>.self, forKey: .bits)
        }

        /// The allocation the segments describe (``Allocation/dense`` for a dense matrix).
        public var allocation: Allocation { dense ? .dense : Allocation(segments: segments) }
    }

    public struct Totals: Codable, Sendable, Equatable {
        public var storageBits: Int
        /// ⌈storageBits / 8⌉.
        public var storageBytes: Int
        /// Σ 16 · h_out · h_in over the planned matrices: what α is relative to.
        public var denseBits: Int
        /// storageBits / denseBits.
        public var alpha: Double
        /// storageBits / Σ h_out · h_in (= 16 α).
        public var bitsPerParameter: Double
        @EncodedAsNull public var predictedError: Double?
        /// Σ predicted error / Σ ‖ΔW X‖².
        @EncodedAsNull public var predictedRelativeError: Double?
    }

    /// The gap of this plan's predicted error to the exact optimum's, filled by a caller that also ran `exact`.
    public struct GapToExact: Codable, Sendable, Equatable {
        /// The exact strategy's predicted error at the same budget.
        public var exactError: Double
        /// predictedError − exactError (≥ 0 up to rounding).
        public var absolute: Double
        /// absolute / exactError (0 when exactError is 0).
        public var relative: Double

        public init(error: Double, exactError: Double) {
            self.exactError = exactError
            absolute = error - exactError
            relative = exactError > 0 ? (error - exactError) / exactError : 0
        }
    }

    /// What the strategy reports beyond the allocation. Fields that do not apply are null.
    public struct Report: Codable, Sendable, Equatable {
        /// Greedy: one entry per stage of the staged search, in order.
        @EncodedAsNull public var greedyPath: [String]?
        /// Genetic: best predicted error after each generation.
        @EncodedAsNull public var convergence: [Double]?
        @EncodedAsNull public var generations: Int?
        @EncodedAsNull public var evaluations: Int?
        /// Exact: a lower bound on the optimum's predicted error, and the relative gap
        /// (predictedError − lowerBound) / lowerBound of the plan to it.
        @EncodedAsNull public var exactLowerBound: Double?
        @EncodedAsNull public var exactGap: Double?
        /// Greedy and genetic: the gap to the exact optimum (see ``GapToExact``).
        @EncodedAsNull public var gapToExact: GapToExact?
        /// Verified plans (`plan --verify`): the plan's own segments were quantized and measured,
        /// and its predicted errors are those measurements (see ``Verification``).
        @EncodedAsNull public var verification: Verification?

        public init(greedyPath: [String]? = nil, convergence: [Double]? = nil, generations: Int? = nil,
                    evaluations: Int? = nil, exactLowerBound: Double? = nil, exactGap: Double? = nil,
                    gapToExact: GapToExact? = nil, verification: Verification? = nil) {
            self.greedyPath = greedyPath
            self.convergence = convergence
            self.generations = generations
            self.evaluations = evaluations
            self.exactLowerBound = exactLowerBound
            self.exactGap = exactGap
            self.gapToExact = gapToExact
            self.verification = verification
        }
    }

    /// How a verified plan's predicted errors were obtained: each matrix's segments quantized as
    /// `compress` quantizes them (same method, order, group size and damping) and ΔŴ's error
    /// measured against the checkpoints' ΔW in the plan's objective on the store's calibration,
    /// what `evaluate` then reports as actual. `rounds` re-solves followed, each with every
    /// matrix's quantization part rescaled to match its last measurement; the plan kept is the
    /// measured one with the lowest total.
    public struct Verification: Codable, Sendable, Equatable {
        /// Re-solves run (at most the `--verify` rounds asked for; fewer when a re-solve returned
        /// a plan already measured).
        public var rounds: Int
        /// Distinct plans quantized and measured.
        public var plansMeasured: Int
        /// The error model's prediction for this plan's allocations (uncorrected): the plan's
        /// predicted error before its measurement.
        public var modelPredictedError: Double
        /// modelPredictedError / Σ L(ΔW).
        public var modelPredictedRelativeError: Double

        public init(rounds: Int, plansMeasured: Int, modelPredictedError: Double, modelPredictedRelativeError: Double) {
            self.rounds = rounds
            self.plansMeasured = plansMeasured
            self.modelPredictedError = modelPredictedError
            self.modelPredictedRelativeError = modelPredictedRelativeError
        }
    }

    /// The quantizer a store plan's predicted errors were measured with: `method` (`gptq`, `rtn`;
    /// matrices without calibration use RTN either way) and GPTQ's damping, a fraction of
    /// mean(diag H). What `compress` must use for the predictions to describe its artifact.
    public struct Quantizer: Codable, Sendable, Equatable {
        public var method: String
        public var dampening: Double

        public init(method: String, dampening: Double) {
            self.method = method
            self.dampening = dampening
        }
    }

    public var formatVersion: Int
    public var toolVersion: String
    public var source: Source
    public var budget: BudgetRecord
    public var accounting: Accounting
    public var groupSize: Int
    public var scope: Scope
    public var strategy: StrategyRecord
    /// Allowed positive bit-widths, descending (0 is always allowed).
    public var bits: [Int]
    public var matrices: [Matrix]
    public var totals: Totals
    public var report: Report
    /// The objective the predicted errors measure (`activation`: ‖(ΔW − ΔŴ)X‖²; `kronecker`,
    /// `paired`: the sensitivity objectives of Docs/calibration-format.md); null for shape-only
    /// plans, which predict nothing.
    @EncodedAsNull public var objective: ErrorObjective?
    /// The segment order the predicted errors were measured in (store plans), the one `compress`
    /// should use; null for shape-only plans (nothing measured) and for plans written before
    /// orders existed (those were measured in the paper's order).
    @EncodedAsNull public var segmentOrder: SegmentOrder?
    /// The quantizer the predicted errors were measured with (store plans); null for shape-only
    /// plans and plans written before it was recorded.
    @EncodedAsNull public var quantizer: Quantizer?
    /// The pins and bits-for rules the plan was made with, as given; null when none.
    @EncodedAsNull public var overrides: Overrides?

    /// Builds a plan from its matrices, computing the totals.
    ///
    /// `objectiveEnergies[i]` is the cost of matrix i's whole delta under `objective` when predicted
    /// errors are known (store plans); the total relative error is Σ error / Σ energy. Pass nil for
    /// shape-only plans.
    public init(
        toolVersion: String, source: Source, budget: BudgetRecord, storage: StorageModel, scope: Scope,
        strategy: StrategyRecord, bits: [Int], matrices: [Matrix], objectiveEnergies: [Double]? = nil,
        objective: ErrorObjective? = nil, report: Report = Report(), segmentOrder: SegmentOrder? = nil,
        overrides: Overrides? = nil
    ) {
        precondition((objectiveEnergies == nil) == (objective == nil), "energies and their objective go together")
        self.objective = objective
        formatVersion = Self.currentFormatVersion
        self.toolVersion = toolVersion
        self.source = source
        self.budget = budget
        accounting = storage.accounting
        groupSize = storage.groupSize
        self.scope = scope
        self.strategy = strategy
        self.bits = bits
        self.matrices = matrices
        let storageBits = matrices.reduce(0) { $0 + $1.storageBits }
        let parameters = matrices.reduce(0) { $0 + $1.shape[0] * $1.shape[1] }
        var error: Double?, relative: Double?
        if let energies = objectiveEnergies {
            precondition(energies.count == matrices.count, "one energy per matrix")
            let e = matrices.reduce(0.0) { $0 + ($1.predictedError ?? 0) }
            let total = energies.reduce(0, +)
            error = e
            relative = total > 0 ? e / total : 0
        }
        totals = Totals(
            storageBits: storageBits, storageBytes: (storageBits + 7) / 8, denseBits: 16 * parameters,
            alpha: parameters > 0 ? Double(storageBits) / Double(16 * parameters) : 0,
            bitsPerParameter: parameters > 0 ? Double(storageBits) / Double(parameters) : 0,
            predictedError: error, predictedRelativeError: relative)
        self.report = report
        self.segmentOrder = segmentOrder
        self.overrides = overrides.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Records the gap to the exact optimum's predicted error `exactError` (greedy and genetic plans).
    public mutating func recordGap(toExactError exactError: Double) {
        guard let e = totals.predictedError else { return }
        report.gapToExact = GapToExact(error: e, exactError: exactError)
    }
}

// MARK: - Encoding, writing, reading

/// Why a plan file cannot be written or read.
public enum PlanFileError: Error, Equatable, CustomStringConvertible {
    case unreadable(file: String, reason: String)
    case unwritable(file: String, reason: String)
    case unsupportedVersion(file: String, found: Int, supported: Int)
    /// The JSON is not a plan; `field` is the JSON path at fault.
    case invalid(file: String, field: String, reason: String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): "cannot read plan \(file): \(reason)"
        case let .unwritable(file, reason): "cannot write plan \(file): \(reason)"
        case let .unsupportedVersion(file, found, supported):
            "plan \(file) has formatVersion \(found); this build reads formatVersion \(Plan.readableFormatVersions.lowerBound) to \(supported)"
        case let .invalid(file, field, reason): "invalid plan \(file), field '\(field)': \(reason)"
        }
    }
}

extension Plan {
    /// Deterministic JSON: sorted keys, pretty-printed, trailing newline.
    public func encoded() throws(PlanFileError) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        do {
            var data = try encoder.encode(self)
            data.append(0x0A)
            return data
        } catch {
            throw .unwritable(file: "<memory>", reason: "cannot encode: \(error)")
        }
    }

    /// Writes the plan atomically and durably with ``AtomicFile`` (a uniquely named temporary file
    /// in the same directory, fsync, `rename(2)`, directory fsync).
    public func write(to url: URL) throws(PlanFileError) {
        let data: Data
        do { data = try encoded() } catch { throw .unwritable(file: url.path, reason: "\(error)") }
        do { try AtomicFile.write(data: data, to: url) } catch {
            if case let .writeFailed(_, reason) = error { throw .unwritable(file: url.path, reason: reason) }
            throw .unwritable(file: url.path, reason: "\(error)")
        }
    }

    public static func read(from url: URL) throws(PlanFileError) -> Plan {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadable(file: url.path, reason: error.localizedDescription)
        }
        return try decode(data, file: url.path)
    }

    /// Decodes and validates a plan: the format version first, then every field, then the segments.
    public static func decode(_ data: Data, file: String) throws(PlanFileError) -> Plan {
        struct Version: Decodable { var formatVersion: Int }
        let version: Version = try decodeMapping(Version.self, data, file: file)
        guard readableFormatVersions.contains(version.formatVersion) else {
            throw .unsupportedVersion(file: file, found: version.formatVersion, supported: currentFormatVersion)
        }
        let plan: Plan = try decodeMapping(Plan.self, data, file: file)
        try plan.validate(file: file)
        return plan
    }

    private static func decodeMapping<T: Decodable>(_: T.Type, _ data: Data, file: String) throws(PlanFileError) -> T {
        func path(_ keys: [any CodingKey]) -> String {
            let p = keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return p.hasPrefix(".") ? String(p.dropFirst()) : p
        }
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, context) {
            throw .invalid(file: file, field: path(context.codingPath + [key]), reason: "missing")
        } catch let DecodingError.typeMismatch(type, context) {
            throw .invalid(file: file, field: path(context.codingPath), reason: "expected \(type)")
        } catch let DecodingError.valueNotFound(type, context) {
            throw .invalid(file: file, field: path(context.codingPath), reason: "expected \(type), found null")
        } catch let DecodingError.dataCorrupted(context) {
            throw .invalid(file: file, field: path(context.codingPath), reason: context.debugDescription)
        } catch {
            throw .invalid(file: file, field: "", reason: "\(error)")
        }
    }

    /// A matrix's pin, menu and dense form against the plan: a pin is one of ``overrides``';
    /// `keep` ⇔ dense (with no segments), `drop` ⇒ no segments; a menu is a subset of ``bits``,
    /// given when the plan has bits-for rules, and holds the segments' widths. (Whether a rule's
    /// pattern matches the matrix is not checked: a hostile plan's pattern could take exponential
    /// time to match, and readers of artifacts validate the plan they embed.)
    private func validateOverrides(of m: Matrix, at: String, fail: (String, String) -> PlanFileError) throws(PlanFileError) {
        if m.dense {
            if !m.segments.isEmpty { throw fail("\(at).segments", "must be empty: the matrix is dense") }
            if m.pin?.spec != .keep { throw fail("\(at).dense", "a dense matrix is one a 'keep' pin fixed; its pin is \(m.pin.map { "'\($0)'" } ?? "null")") }
        }
        if let pin = m.pin {
            guard overrides?.pins.contains(pin) == true else { throw fail("\(at).pin", "'\(pin)' is not one of the plan's overrides.pins") }
            if pin.spec == .keep, !m.dense { throw fail("\(at).dense", "must be true: the matrix is pinned 'keep'") }
            if pin.spec == .drop, !m.segments.isEmpty { throw fail("\(at).segments", "must be empty: the matrix is pinned 'drop'") }
        }
        if let own = m.bits {
            if own.isEmpty || own != own.sorted(by: >) || Set(own).count != own.count || !own.allSatisfy(bits.contains) {
                throw fail("\(at).bits", "must list distinct widths of the plan's bits \(bits) in descending order, got \(own)")
            }
            guard overrides?.bitsFor.isEmpty == false else { throw fail("\(at).bits", "the plan has no overrides.bitsFor rule") }
            for (j, s) in m.segments.enumerated() where !own.contains(s.bits) {
                throw fail("\(at).segments[\(j)].bits", "\(s.bits) is not in the matrix's bits \(own)")
            }
        }
    }

    /// Semantic checks a decoder cannot make. Sums and products of the file's numbers are checked
    /// for overflow: a hostile plan gets a named error, never a trap.
    func validate(file: String) throws(PlanFileError) {
        func fail(_ field: String, _ reason: String) -> PlanFileError { .invalid(file: file, field: field, reason: reason) }
        if !StorageModel.groupSizes.contains(groupSize) {
            throw fail("groupSize", "must be in \(StorageModel.groupSizes.lowerBound)…\(StorageModel.groupSizes.upperBound), got \(groupSize)")
        }
        if bits.isEmpty || bits != bits.sorted(by: >) || Set(bits).count != bits.count
            || !bits.allSatisfy(ProfileLibrary.bitWidths.contains) {
            throw fail("bits", "must list distinct widths from \(ProfileLibrary.bitWidths.sorted(by: >)) in descending order, got \(bits)")
        }
        if formatVersion == 1, overrides != nil || matrices.contains(where: { $0.dense || $0.pin != nil || $0.bits != nil }) {
            throw fail("formatVersion", "1 has no pins, bits-for rules or dense matrices (formatVersion 2 added them)")
        }
        var seen: [String: Int] = [:]
        var denseBits = 0, storageBits = 0
        for (i, m) in matrices.enumerated() {
            let at = "matrices[\(i)]"
            if let first = seen.updateValue(i, forKey: m.name) {
                throw fail("\(at).name", "\(m.name) is also matrices[\(first)]; a matrix is planned once")
            }
            guard m.shape.count == 2, m.shape.allSatisfy({ $0 > 0 }) else {
                throw fail("\(at).shape", "needs two positive dimensions [h_out, h_in], got \(m.shape)")
            }
            // Σ 16 · h_out · h_in (the totals' denseBits) must fit in an Int.
            let (parameters, o1) = m.shape[0].multipliedReportingOverflow(by: m.shape[1])
            let (matrixBits, o2) = parameters.multipliedReportingOverflow(by: 16)
            let (dense, o3) = denseBits.addingReportingOverflow(matrixBits)
            if o1 || o2 || o3 { throw fail("\(at).shape", "\(m.shape) is too large: 16 · h_out · h_in over the plan overflows 64 bits") }
            denseBits = dense
            var expected = 0, last = Int.max
            for (j, s) in m.segments.enumerated() {
                if s.start != expected { throw fail("\(at).segments[\(j)].start", "must be \(expected) (segments are consecutive from 0)") }
                if s.end <= s.start { throw fail("\(at).segments[\(j)].end", "must exceed start \(s.start)") }
                if !bits.contains(s.bits) { throw fail("\(at).segments[\(j)].bits", "\(s.bits) is not in the plan's bits \(bits)") }
                if s.bits >= last { throw fail("\(at).segments[\(j)].bits", "bit-widths must strictly decrease") }
                expected = s.end
                last = s.bits
            }
            if expected > min(m.shape[0], m.shape[1]) {
                throw fail("\(at).segments", "keeps \(expected) vectors, more than the rank \(min(m.shape[0], m.shape[1]))")
            }
            if m.dense, m.storageBits != matrixBits {
                throw fail("\(at).storageBits", "is \(m.storageBits); a dense matrix takes 16 · h_out · h_in = \(matrixBits) bits")
            }
            try validateOverrides(of: m, at: at, fail: fail)
            if m.storageBits < 0 { throw fail("\(at).storageBits", "must not be negative") }
            let (sum, overflow) = storageBits.addingReportingOverflow(m.storageBits)
            if overflow { throw fail("\(at).storageBits", "\(m.storageBits) makes the plan's storage bits overflow 64 bits") }
            storageBits = sum
            // Finite, not necessarily ≥ 0: under the paired objective a matrix's predicted error is
            // a sample estimate that can dip below zero (the planner writes such plans).
            for (field, value) in [("predictedError", m.predictedError), ("predictedRelativeError", m.predictedRelativeError)] {
                if let value, !value.isFinite { throw fail("\(at).\(field)", "must be a finite number, got \(value)") }
            }
        }
        if storageBits != totals.storageBits {
            throw fail("totals.storageBits", "is \(totals.storageBits), the matrices sum to \(storageBits)")
        }
        for (field, value) in [("predictedError", totals.predictedError), ("predictedRelativeError", totals.predictedRelativeError)] {
            if let value, !value.isFinite { throw fail("totals.\(field)", "must be a finite number, got \(value)") }
        }
    }
}
