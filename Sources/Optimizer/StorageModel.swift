/// How the bits of an allocation are counted.
public enum Accounting: String, Sendable, Codable, CaseIterable {
    /// What the quantization backend actually writes: the payload plus per-group scales and
    /// zeros, per-row 1-bit scales and the singular values (see ``StorageModel``).
    case artifact
    /// The paper's budget equation: the payload `k·r·(h_out + h_in)` only.
    case paper
}

/// Storage of one matrix's allocation, in bits.
///
/// A segment of `r` vectors at `k` bits in an `h_out × h_in` matrix (`rows × columns`) stores
/// `r` rows of Vᵀ (length `h_in`) and `r` columns of U (length `h_out`):
///
/// - payload: `k · r · (h_out + h_in)`.
/// - `k ≥ 2` (GPTQ or RTN, asymmetric, group size `g`): a scale and a zero in F16 (32 bits) per
///   group. Vᵀ rows are grouped along `h_in`: `r · ⌈h_in/g⌉` groups. U is quantized as an
///   `h_out × r` weight whose input dimension is the segment, grouped along `r`:
///   `h_out · ⌈r/g⌉` groups.
/// - `k = 1` (sign times one scale per row): an F16 scale per row of Vᵀ and of U, `16 · (r + h_out)`.
/// - `k = 16`: F16 values, no metadata.
/// - the segment's singular values in F16: `16 · r`.
///
/// Under ``Accounting/paper`` only the payload counts. Complexity O(number of segments).
public struct StorageModel: Hashable, Sendable {
    /// The group sizes a plan file may record (and the service accepts): beyond 2²⁰ a group is
    /// wider than any matrix, and sizes near `Int.max` overflow ⌈n/g⌉.
    public static let groupSizes: ClosedRange<Int> = 1...(1 << 20)

    public var accounting: Accounting
    public var groupSize: Int

    /// Values per F16 scale/zero pair: GPTQ's usual 128, the paper's and the brief's.
    public static let defaultGroupSize = 128
    public static let defaultAccounting = Accounting.artifact

    public init(accounting: Accounting = defaultAccounting, groupSize: Int = defaultGroupSize) {
        precondition(groupSize > 0, "group size must be positive")
        self.accounting = accounting
        self.groupSize = groupSize
    }

    /// Bits of `count` vectors at `bits` bits in a `rows × columns` matrix (0 for 0 bits or 0 vectors).
    public func segmentBits(bits: Int, count: Int, rows: Int, columns: Int) -> Int {
        guard bits > 0, count > 0 else { return 0 }
        let payload = bits * count * (rows + columns)
        guard accounting == .artifact else { return payload }
        let metadata: Int
        switch bits {
        case 16: metadata = 0
        case 1: metadata = 16 * (count + rows)
        default:
            metadata = 32 * (count * ceilDiv(columns, groupSize) + rows * ceilDiv(count, groupSize))
        }
        return payload + metadata + 16 * count
    }

    /// Bits of a whole allocation in a `rows × columns` matrix: Σ of its segments, or for a
    /// ``Allocation/dense`` one the F16 size of ΔW, ``denseBits(rows:columns:)`` (under either
    /// accounting: every one of its bits is payload).
    public func bits(of allocation: Allocation, rows: Int, columns: Int) -> Int {
        if allocation.isDense { return Self.denseBits(rows: rows, columns: columns) }
        return allocation.counts.reduce(0) { $0 + segmentBits(bits: $1.key, count: $1.value, rows: rows, columns: columns) }
    }

    /// The F16 size of the delta itself, `16 · h_out · h_in` bits: what α is relative to.
    public static func denseBits(rows: Int, columns: Int) -> Int { 16 * rows * columns }
}

@inline(__always) func ceilDiv(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
