/// Predicted calibration-activation error ‖(ΔW − ΔŴ)X‖² of an allocation for one matrix.
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
        let weights = zip(spectrum.singularValues, spectrum.inputEnergy).map { $0 * $0 * $1 }
        // Energy of the vectors that were never stored: what the stored ones do not explain.
        let unstored = max(0, spectrum.activationEnergy - weights.reduce(0, +))
        let dropped = spectrum.droppedWeights ?? weights
        var suffix = [Double](repeating: unstored, count: r + 1)
        for i in stride(from: r - 1, through: 0, by: -1) { suffix[i] = suffix[i + 1] + dropped[i] }
        suffixDropped = suffix
        prefixQuantized = spectrum.relativeQuantizationError.mapValues { e in
            var p = [Double](repeating: 0, count: r + 1)
            for i in 0..<r { p[i + 1] = p[i] + weights[i] * e[i] }
            return p
        }
    }

    /// Bit-widths this matrix can be allocated (those with measured errors).
    public var availableBits: [Int] { prefixQuantized.keys.sorted(by: >) }

    /// Whether `allocation` fits this matrix: rank within the stored vectors, only measured bit-widths.
    public func admits(_ allocation: Allocation) -> Bool {
        allocation.rank <= spectrum.storedRank && allocation.counts.keys.allSatisfy { prefixQuantized[$0] != nil }
    }

    /// Predicted ‖(ΔW − ΔŴ)X‖² of `allocation`. Precondition: ``admits(_:)``.
    public func error(of allocation: Allocation) -> Double {
        precondition(admits(allocation), "allocation \(allocation.counts) does not fit \(spectrum.name)")
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

    /// `error / ‖ΔW X‖²`, or 0 for a zero delta.
    public func relative(_ error: Double) -> Double {
        spectrum.activationEnergy > 0 ? error / spectrum.activationEnergy : 0
    }
}
