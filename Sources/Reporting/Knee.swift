import Foundation

/// The knee of a sampled curve: where it bends most, as the point farthest from its chord.
///
/// Definition. Sort the points by x and map them to the plot's axes, u = log₁₀ x on a log axis
/// (else u = x) and likewise v from y, then scale u and v to [0, 1] by their ranges, as the plot
/// box does (so units and the log's base do not matter). The chord is the segment from the first
/// to the last point. The knee is the interior point with the largest perpendicular distance to
/// that chord,
///
///     d_i = |(u_n − u_0)(v_0 − v_i) − (u_0 − u_i)(v_n − v_0)| / ‖(u_n − u_0, v_n − v_0)‖,
///
/// provided that distance is at least `minimumBend` × the chord's length: a curve that is a
/// straight line on the chosen axes (a power law on log–log axes) has no knee. This is the
/// discrete form of the "maximum distance to the chord" rule (Kneedle, Satopää et al. 2011):
/// for a smooth curve the farthest point is where the tangent is parallel to the chord.
/// Because distances are measured on the plot's axes, the knee is the bend the reader sees. A
/// curve symmetric about its middle on these axes (equal ranges in u and v) has its knee where
/// its tangent has the chord's slope, exactly (``KneeTests`` checks a hyperbola).
///
/// Cost: O(n log n) for the sort. Points a log axis cannot show (≤ 0) and non-finite ones are
/// ignored; fewer than three distinct x values give no knee.
public enum Knee {
    /// The knee's index into `points` (as given, not sorted), or nil when there is none.
    public static func index(of points: [(x: Double, y: Double)], logX: Bool, logY: Bool,
                             minimumBend: Double = 0.02) -> Int? {
        let usable = points.indices.filter { i in
            let p = points[i]
            return p.x.isFinite && p.y.isFinite && (!logX || p.x > 0) && (!logY || p.y > 0)
        }
        let raw = usable.map { i in
            (index: i, u: logX ? log10(points[i].x) : points[i].x, v: logY ? log10(points[i].y) : points[i].y)
        }.sorted { $0.u < $1.u }
        guard let uLow = raw.first?.u, let uHigh = raw.last?.u, let vLow = raw.map(\.v).min(), let vHigh = raw.map(\.v).max(),
              uHigh > uLow, vHigh > vLow, Set(raw.map(\.u)).count >= 3 else { return nil }
        let mapped = raw.map { (index: $0.index, u: ($0.u - uLow) / (uHigh - uLow), v: ($0.v - vLow) / (vHigh - vLow)) }
        guard let first = mapped.first, let last = mapped.last else { return nil }
        let du = last.u - first.u, dv = last.v - first.v
        let length = (du * du + dv * dv).squareRoot()
        var best: (index: Int, distance: Double)?
        for p in mapped.dropFirst().dropLast() where p.u > first.u && p.u < last.u {
            let distance = abs(du * (first.v - p.v) - (first.u - p.u) * dv) / length
            if distance > (best?.distance ?? 0) { best = (p.index, distance) }
        }
        guard let best, best.distance >= minimumBend * length else { return nil }
        return best.index
    }
}
