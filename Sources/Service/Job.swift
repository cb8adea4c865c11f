import Foundation

/// What a job does. Each kind has a ``JobRunner`` in ``JobRunners``.
public enum JobKind: String, Codable, Sendable, CaseIterable {
    /// `deltaplan analyze`: SVD spectra of every selected delta into a spectrum store.
    case analysis
    /// A plan from an analysis store (error model + search).
    case plan
    /// Strategies compared across budgets on an analysis store.
    case comparison
    /// Compression of a delta with a plan.
    case compression
    /// An artifact's actual errors against the true delta (`deltaplan evaluate`).
    case evaluation
    /// base + Δ̂ written as a Hugging Face checkpoint (`deltaplan merge`).
    case merge
    /// Several analyses of fine-tunes of one base planned under one budget (`deltaplan fleet`).
    case fleet
}

/// The life of a job: queued → running → succeeded | failed | cancelled. A running job interrupted
/// by a shutdown goes back to queued; one interrupted by a crash is re-queued at the next start.
public enum JobState: String, Codable, Sendable, CaseIterable {
    case queued, running, succeeded, failed, cancelled

    /// Succeeded, failed and cancelled jobs never change again.
    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// One job as stored in `jobs.sqlite` (table `job`). Times are Unix seconds.
public struct Job: Sendable, Equatable {
    public var id: String
    public var kind: JobKind
    /// The validated request, as JSON (paths already resolved).
    public var parameters: Data
    public var state: JobState
    /// In [0, 1].
    public var progress: Double
    public var progressMessage: String
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var error: String?
    /// Where the result lives: a store directory or a file under the data directory.
    public var result: String?
    /// A cancel was asked while the job ran; the worker stops it at its next check.
    public var cancelRequested: Bool
    /// How many times a worker started it (more than 1 after restarts).
    public var attempts: Int
}
