import Foundation
import ModelProfiles

/// What the probes behind a calibration file's output statistics differentiate
/// (`deltaplan.objective`, see Docs/calibration-format.md).
public enum ProbeObjective: String, Codable, Sendable, CaseIterable {
    /// Encoders: r ~ N(0, I) on the last hidden state (its Gauss–Newton quadratic).
    case hiddenGaussNewton = "hidden-gauss-newton"
    /// Causal LMs: the log-probability of a next token sampled from the model (the Fisher).
    case nextTokenFisher = "next-token-fisher"
}

/// `deltaplan.samples`: how the n paired (token, probe) rows were drawn, shared by every module.
public struct CalibrationSamples: Codable, Sendable, Equatable {
    /// n, the sampled rows (0 when none).
    public var rows: Int
    /// N, the calibration tokens.
    public var tokens: Int
    /// P, the probes per token (0 without output statistics).
    public var probes: Int
    public var seed: UInt64

    public init(rows: Int, tokens: Int, probes: Int, seed: UInt64) {
        self.rows = rows
        self.tokens = tokens
        self.probes = probes
        self.seed = seed
    }
}

/// The file-level metadata of a calibration file beyond its aliases (all optional).
public struct CalibrationMetadata: Codable, Sendable, Equatable {
    /// `deltaplan.probes`: P, the probes per token behind `.out_gram`.
    public var probes: Int?
    /// `deltaplan.objective`.
    public var objective: ProbeObjective?
    /// `deltaplan.samples`.
    public var samples: CalibrationSamples?
    /// `deltaplan.source`: free text naming the tool and model.
    public var source: String?

    public init(probes: Int? = nil, objective: ProbeObjective? = nil, samples: CalibrationSamples? = nil, source: String? = nil) {
        self.probes = probes
        self.objective = objective
        self.samples = samples
        self.source = source
    }

    public var isEmpty: Bool { probes == nil && objective == nil && samples == nil && source == nil }
}

/// How a Gram matrix was given: the full symmetric matrix, its diagonal only, or not at all.
public enum GramForm: String, Codable, Sendable {
    case full, diagonal, absent
}

/// Which statistics a calibration file holds for one module.
public struct CalibrationStatistics: Codable, Sendable, Equatable {
    /// H: `full` or `diagonal` (never `absent`: a module without H has no statistics).
    public var inputGram: GramForm
    /// G: `full`, `diagonal` or `absent`.
    public var outputGram: GramForm
    /// n, the paired input and gradient rows (0 when the module has no `.grads`).
    public var pairedRows: Int
    /// The strongest objective these statistics support.
    public var objective: ErrorObjective

    public init(inputGram: GramForm, outputGram: GramForm, pairedRows: Int) {
        self.inputGram = inputGram
        self.outputGram = outputGram
        self.pairedRows = pairedRows
        objective = pairedRows > 0 ? .paired : outputGram != .absent ? .kronecker : .activation
    }

    /// Every objective these statistics support (`activation` always; `kronecker` with G; `paired`
    /// with paired rows — which need not come with G).
    public var supportedObjectives: Set<ErrorObjective> {
        var set: Set<ErrorObjective> = [.activation]
        if outputGram != .absent { set.insert(.kronecker) }
        if pairedRows > 0 { set.insert(.paired) }
        return set
    }

    /// The strongest objective every one of `statistics` supports; nil for none.
    public static func commonObjective(_ statistics: [CalibrationStatistics]) -> ErrorObjective? {
        guard let first = statistics.first else { return nil }
        let common = statistics.dropFirst().reduce(first.supportedObjectives) { $0.intersection($1.supportedObjectives) }
        return common.max()
    }
}
