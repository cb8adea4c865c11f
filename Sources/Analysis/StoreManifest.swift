import Foundation
import ModelProfiles

/// `manifest.json` of a spectrum store: what was analyzed, from which inputs, with which options,
/// and the status and scalar results of every matrix. Encoded with sorted keys and no timings, so
/// the same inputs and options give the same manifest byte for byte; its SHA-256 is the store's
/// identity, which plans record.
public struct StoreManifest: Codable, Sendable, Equatable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var toolVersion: String
    public var inputs: Inputs
    public var options: AnalysisOptions
    /// True when no calibration was given: H = I for every matrix.
    public var dataFree: Bool
    /// What the calibration file declared (format version, probes, objective, samples, source);
    /// nil when data-free, and in stores written before format 2 (whose files were all version 1).
    public var calibrationFile: CalibrationFileRecord?
    /// True only when every matrix is done: later stages refuse an incomplete store.
    public var complete: Bool
    /// Tensors passed over with `--skip-mismatched`, with the reason.
    public var skipped: [SkippedTensor]
    public var matrices: [MatrixRecord]

    public struct Inputs: Codable, Sendable, Equatable {
        public var base: InputRecord
        public var finetuned: InputRecord
        public var calibration: InputRecord?
    }

    /// An input path as given, and the fingerprint of each of its files.
    public struct InputRecord: Codable, Sendable, Equatable {
        public var path: String
        public var files: [FileFingerprint]
    }

    /// A calibration file's format version and metadata.
    public struct CalibrationFileRecord: Codable, Sendable, Equatable {
        public var formatVersion: Int
        public var metadata: CalibrationMetadata

        public init(formatVersion: Int, metadata: CalibrationMetadata) {
            self.formatVersion = formatVersion
            self.metadata = metadata
        }
    }

    public struct SkippedTensor: Codable, Sendable, Equatable {
        public var name: String
        public var reason: String
    }

    public enum Status: String, Codable, Sendable { case pending, done }

    /// Where H came from for a matrix.
    public enum CalibrationSource: String, Codable, Sendable {
        /// The Gram of a calibration entry.
        case gram
        /// No entry for this module; H = I by `--allow-missing-calibration`.
        case identityMissing = "identity-missing"
        /// No calibration at all (data-free store); H = I.
        case identityDataFree = "identity-data-free"
    }

    public struct MatrixRecord: Codable, Sendable, Equatable {
        public var name: String
        public var type: LayerType
        /// h_out.
        public var rows: Int
        /// h_in.
        public var columns: Int
        /// dtypes of the inputs, `base/finetuned` when they differ (e.g. `BF16` or `BF16/F32`).
        public var inputDType: String
        public var status: Status
        public var calibration: CalibrationSource
        /// The calibration entry used (the module's own or a shared one).
        public var calibrationEntry: String?
        /// Which statistics the calibration file had for this module (H full or diagonal, G, paired
        /// rows, the objective they support); nil with H = I, and in stores written before format 2.
        public var statistics: CalibrationStatistics?
        // Filled when done:
        /// The matrix's file in the store, relative to it, with its SHA-256 and size.
        public var file: String?
        public var fileSHA256: String?
        public var fileSize: Int?
        /// `full` (gesdd) or `randomized`.
        public var svd: String?
        /// How many singular values are stored (all min(h_out, h_in), or the top ones).
        public var singularValueCount: Int?
        /// How many singular vector pairs are stored (the largest rank a plan can use).
        public var storedRank: Int?
        /// ‖ΔW‖²_F.
        public var weightEnergy: Double?
        /// ‖ΔW X‖² = tr(ΔW H ΔWᵀ).
        public var activationEnergy: Double?
        /// BitDelta baseline: ‖(ΔW − s·sign(ΔW)) X‖² with s = mean |ΔW|.
        public var bitDeltaError: Double?
        /// BitDelta's weight error ‖ΔW − s·sign(ΔW)‖²_F.
        public var bitDeltaWeightError: Double?
        /// The sensitivity objective the matrix file's `objective_weight` and `objective_dropped`
        /// measure (`kronecker` or `paired`); nil when the module had input statistics only.
        public var objective: ErrorObjective?
        /// L(ΔW) under that objective (Docs/calibration-format.md).
        public var objectiveEnergy: Double?
        /// L(ΔW − s·sign(ΔW)): the BitDelta baseline under that objective.
        public var bitDeltaObjectiveError: Double?

        public var moduleName: String { Selection.moduleName(of: name) }
    }
}

extension StoreManifest {
    /// The strongest error objective the statistics of every calibrated matrix support: nil for a
    /// data-free store. Matrices with H = I (`--allow-missing-calibration`) are left out (every
    /// report marks them); a store written before format 2 recorded no statistics and supports
    /// `activation`.
    public var supportedObjective: ErrorObjective? {
        guard !dataFree else { return nil }
        let calibrated = matrices.filter { $0.calibration == .gram }
        guard !calibrated.isEmpty else { return nil }
        let statistics = calibrated.map {
            $0.statistics ?? CalibrationStatistics(inputGram: .full, outputGram: .absent, pairedRows: 0)
        }
        return CalibrationStatistics.commonObjective(statistics)
    }

    /// The strongest objective whose costs `analyze` stored for every matrix: `paired` or
    /// `kronecker` when every matrix has that projection, else `activation`.
    public var supportedSensitivity: ErrorObjective {
        let done = matrices.filter { $0.status == .done }
        for candidate in [ErrorObjective.paired, .kronecker] where !done.isEmpty && done.allSatisfy({ $0.objective == candidate }) {
            return candidate
        }
        return .activation
    }

    static func encode(_ manifest: StoreManifest) -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try! encoder.encode(manifest) + Data("\n".utf8)
    }
}
