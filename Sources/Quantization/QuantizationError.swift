import Analysis
import LinearAlgebra

/// Why a quantization or a measurement pass was refused. Every case names the matrix, tensor,
/// file or option the user must fix.
public enum QuantizationError: Error, Equatable, CustomStringConvertible {
    /// An option is out of its range (`bits` outside 1…8 or 16, a non-positive group size, …).
    case invalidOption(option: String, reason: String)
    /// The operands' shapes do not fit (a Hessian that is not `columns × columns`, say).
    case shapeMismatch(what: String, expected: Shape, found: Shape)
    /// The input (`what`: a weight, a Hessian, singular values) contains NaN or ±∞.
    case nonFiniteInput(what: String)
    /// A value is too large for the F16 scale / value storage of the artifact.
    case notRepresentableInF16(what: String, value: Double)
    /// The Hessian stayed not positive definite after every damping retry.
    case hessianNotPositiveDefinite(what: String, lastDampening: Double)
    /// The calibration given is not the one the store was analyzed with.
    case calibrationMismatch(store: String, reason: String)
    /// The store or one of its error tables cannot be read or written.
    case store(AnalysisError)
    /// A measurement pass run in shards cannot be finalized yet (a shard not run, a table missing
    /// or damaged): the reason names the shard to rerun.
    case shards(store: String, reason: String)
    case io(path: String, reason: String)
    /// `shouldStop` asked for a stop (a cancelled service job); nothing partial was published.
    case stopped

    public var description: String {
        switch self {
        case let .invalidOption(option, reason): "\(option): \(reason)"
        case let .shapeMismatch(what, expected, found): "\(what): expected \(expected), got \(found)"
        case let .nonFiniteInput(what): "\(what) contains NaN or infinite values"
        case let .notRepresentableInF16(what, value):
            "\(what): \(value) does not fit in F16 (largest finite F16 is 65504)"
        case let .hessianNotPositiveDefinite(what, damp):
            "\(what): the Hessian is not positive definite even with dampening \(damp) × mean(diag H)"
        case let .calibrationMismatch(store, reason):
            "the calibration does not match the store \(store): \(reason); pass the calibration file the store was analyzed with"
        case let .store(error): error.description
        case let .shards(store, reason): "the measurement pass of \(store): \(reason)"
        case let .io(path, reason): "\(path): \(reason)"
        case .stopped: "stopped on request before it finished"
        }
    }
}

/// Something a quantizer did that the caller should know about, but that did not stop it.
public enum QuantizationWarning: Sendable, Hashable, CustomStringConvertible {
    /// Cholesky of the damped Hessian failed at `dampening` (fraction of mean(diag H)); the
    /// quantizer retried with `retriedWith`.
    case dampingIncreased(dampening: Double, retriedWith: Double)
    /// `count` columns had H_jj = 0 (no input ever reached them): set to H_jj = 1, W[:, j] = 0.
    case deadColumns(count: Int)
    /// Error feedback: the damped system `system` was not positive definite at `dampening`
    /// (fraction of each diagonal entry); retried with `retriedWith`.
    case feedbackDampingIncreased(system: String, dampening: Double, retriedWith: Double)
    /// Error feedback gave up on `system` and kept the paper's values (U's target: the SVD's U;
    /// the σ refit: σ̂ = F16(σ)).
    case feedbackFellBack(system: String, reason: String)

    public var description: String {
        switch self {
        case let .dampingIncreased(d, next):
            "Hessian not positive definite with dampening \(d); retried with \(next)"
        case let .deadColumns(count): "\(count) dead input column(s) (H_jj = 0) zeroed"
        case let .feedbackDampingIncreased(system, d, next):
            "error feedback: \(system) not positive definite with dampening \(d); retried with \(next)"
        case let .feedbackFellBack(system, reason): "error feedback: \(system): \(reason); kept the paper's values"
        }
    }
}
