/// How a matrix's segments are quantized relative to each other: what a plan's error model
/// measured and what `compress` does, recorded in plans and artifacts.
///
/// Both orders quantize each segment's V̂ᵀ rows with the same algorithm (GPTQ under H, or RTN);
/// they differ in what U and σ are fitted to, and in the 2…8-bit grids: the feedback order
/// searches each group's clipping range for the least squared error, the paper's takes min–max.
public enum SegmentOrder: String, Sendable, Codable, CaseIterable, Hashable {
    /// Error feedback: segments in order, each segment's U quantized toward the least-squares
    /// target under H given its V̂ (of the residual ΔW − Σ earlier ΔŴ), then its σ refitted;
    /// quantization grids with searched clipping ranges. The default.
    case feedback
    /// Delta-CoMe as published: U quantized toward the SVD's U, σ kept; segments independent.
    case paper

    public static let `default` = SegmentOrder.feedback
}
