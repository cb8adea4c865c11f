/// How a matrix's segments are quantized relative to each other: what a plan's error model
/// measured and what `compress` does, recorded in plans and artifacts.
///
/// Both orders quantize each segment's V̂ᵀ rows the same way (GPTQ under H, or RTN); they differ
/// in what U and σ are fitted to.
public enum SegmentOrder: String, Sendable, Codable, CaseIterable, Hashable {
    /// Error feedback: segments in order, each segment's U quantized toward the least-squares
    /// target under H given its V̂ (of the residual ΔW − Σ earlier ΔŴ), then its σ refitted.
    /// The default.
    case feedback
    /// Delta-CoMe as published: U quantized toward the SVD's U, σ kept; segments independent.
    case paper

    public static let `default` = SegmentOrder.feedback
}
