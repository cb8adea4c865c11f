/// The error objective a module's statistics support (Docs/calibration-format.md, "How the
/// statistics are used"), weakest first:
/// - `activation`: ‖E X‖² = tr(E H Eᵀ), from H alone;
/// - `kronecker`: tr(G E H Eᵀ) / N, from H and the output Gram G;
/// - `paired`: (N / n) Σᵢ (gᵢᵀ E xᵢ)², from n paired input and gradient rows.
public enum ErrorObjective: String, Codable, Sendable, CaseIterable, Comparable {
    case activation, kronecker, paired

    private var strength: Int {
        switch self {
        case .activation: 0
        case .kronecker: 1
        case .paired: 2
        }
    }

    public static func < (a: ErrorObjective, b: ErrorObjective) -> Bool {
        a.strength < b.strength
    }
}
