/// Predicted error of an allocation for one matrix under the spectrum's objective: the
/// calibration-activation error ‖(ΔW − ΔŴ)X‖², or a sensitivity objective L (Docs/calibration-format.md).
///
/// Under a sensitivity objective the same structure holds with σᵢ² wᵢ in place of σᵢ² gᵢ, except
/// that the cost of the dropped vectors is the store's exact `dropped` suffix (the paired
/// objective keeps the cross terms between dropped vectors, which need not vanish there): the
/// cost of truncating the SVD, or with error feedback (paired stores) the cost of what the kept
/// vectors' least-squares U leaves of the dropped ones (`StorePlanning` picks the suffix).
///
/// With ΔW = Σᵢ σᵢ uᵢ vᵢᵀ and orthonormal U, the error of dropping vector i is exactly σᵢ² gᵢ
/// (gᵢ = vᵢᵀ H vᵢ) and dropped vectors do not interact; with error feedback the kept vectors absorb
/// part of the dropped ones and dropping costs the spectrum's ``MatrixSpectrum/droppedWeights``
/// instead (a suffix sum either way). A vector kept at k bits costs σᵢ² gᵢ eᵢ(k), with eᵢ(k)
/// measured; cross terms between the quantization errors of different vectors, and between
/// quantization and truncation errors, are ignored (the model's one assumption).
///
/// Prefix sums make any allocation cost O(number of segments) to evaluate after an O(r·|bits|)
/// set-up. Sums are accumulated in Double.
public struct ErrorModel: Sendable {
    public let spectrum: MatrixSpectrum
    /// suffixDropped[r] = error of dropping every vector from r on (including unstored ones).
    private let suffixDropped: [Double]
    /// prefixQuantized[k][r] = Σ_{i<r} σᵢ² gᵢ eᵢ(k).
    private let prefixQuantized: [Int: [Double]]

    public init(_ spectrum: MatrixSpectrum) {
        self.spectrum = spectrum
        let r = spectrum.storedRank
        let weights: [Double]
        if let s = spectrum.sensitivity {
            weights = zip(spectrum.singularValues, s.vectorWeights).map { $0 * $0 * $1 }
            suffixDropped = s.dropped
        } else {
            weights = zip(spectrum.singularValues, spectrum.inputEnergy).map { $0 * $0 * $1 }
            // Energy of the vectors that were never stored: what the stored ones do not explain.
            let unstored = max(0, spectrum.activationEnergy - weights.reduce(0, +))
            let dropped = spectrum.droppedWeights ?? weights
            var suffix = [Double](repeating: unstored, count: r + 1)
            for i in stride(from: r - 1, through: 0, by: -1) { suffix[i] = suffix[i + 1] + dropped[i] }
            suffixDropped = suffix
        }
        prefixQuantized = spectrum.relativeQuantizationError.mapValues { e in
            var p = [Double](repeating: 0, count: r + 1)
            for i in 0..<r { p[i + 1] = p[i] + weights[i] * e[i] }
            return p
        }
    }

    /// Bit-widths this matrix can be allocated (those with measured errors).
    public var availableBits: [Int] { prefixQuantized.keys.sorted(by: >) }

    /// Whether `allocation` fits this matrix: rank within the stored vectors, only measured
    /// bit-widths (a ``Allocation/dense`` allocation always fits).
    public func admits(_ allocation: Allocation) -> Bool {
        allocation.isDense || allocation.rank <= spectrum.storedRank && allocation.counts.keys.allSatisfy { prefixQuantized[$0] != nil }
    }

    /// Predicted ‖(ΔW − ΔŴ)X‖² of `allocation`. Precondition: ``admits(_:)``. A
    /// ``Allocation/dense`` allocation predicts 0: its only error is the F16 rounding of ΔW
    /// (relative ≈ 2⁻²² per element in the normal range), which the model does not count.
    public func error(of allocation: Allocation) -> Double {
        precondition(admits(allocation), "allocation \(allocation.counts) does not fit \(spectrum.name)")
        if allocation.isDense { return 0 }
        var total = suffixDropped[allocation.rank]
        for s in allocation.segments { total += quantizedError(bits: s.bits, from: s.start, to: s.end) }
        return total
    }

    /// Predicted error of the vectors `[start, end)` quantized at `bits` bits.
    public func quantizedError(bits: Int, from start: Int, to end: Int) -> Double {
        guard let p = prefixQuantized[bits] else { preconditionFailure("no measured error at \(bits) bits") }
        return p[end] - p[start]
    }

    /// Predicted error when every vector from `rank` on is dropped and the first `rank` are exact.
    public func droppedError(from rank: Int) -> Double { suffixDropped[rank] }

    /// `error / L(ΔW)` (the objective's cost of the whole delta: ‖ΔW X‖² for the activation
    /// objective), or 0 for a zero delta.
    public func relative(_ error: Double) -> Double {
        spectrum.objectiveEnergy > 0 ? error / spectrum.objectiveEnergy : 0
    }
}
