import ArtifactFormat
import Checkpoint
import ContentHash
import LinearAlgebra
import Optimizer
import Testing
@testable import Analysis
@testable import Quantization

/// The paper's order (``SegmentOrder/paper``) is the quantization DeltaPlan did before error
/// feedback existed, bit for bit.
@Suite struct PaperOrderTests {
    static let hessian = Fixture.correlatedHessian(width: 160, tokens: 640, seed: 41)
    static let factors = Fixture.factors(rows: 96, columns: 160, rank: 64, hessian: hessian, seed: 42)
    static let plan = [Segment(start: 0, end: 2, bits: 16), Segment(start: 2, end: 6, bits: 8), Segment(start: 6, end: 16, bits: 3),
                       Segment(start: 16, end: 40, bits: 2), Segment(start: 40, end: 48, bits: 1)]

    /// SHA-256 of every segment's artifact bytes (``ArtifactTensor/encode(_:prefix:)``, names
    /// sorted, each name followed by its bytes), recorded with the code of commit 8f38ace, before
    /// segment orders existed, on this repository's machine (x86-64, OpenBLAS 0.3.21; the same
    /// with 1 and 2 BLAS threads). The products are small (96 × 160, rank 64, GPTQ blocks of 128
    /// columns). Another BLAS may round a product differently; the digests then need recording
    /// again from that commit.
    @Test(arguments: [(QuantizationMethod.gptq, true), (.rtn, true), (.gptq, false)])
    func segmentsAreTheOriginalBytes(method: QuantizationMethod, calibrated: Bool) throws {
        let expected: [String: String] = [
            "gptq-true": "c92ef2d551fac24883663fcdc6332b2376ef6e4f3e63f98fe20b7e0432a5f3dd",
            "rtn-true": "fbe3c94908be26e1ddd3c5ec9e1476be5d161b7f715b79bd8d24ffe1b38fa288",
            "gptq-false": "fbe3c94908be26e1ddd3c5ec9e1476be5d161b7f715b79bd8d24ffe1b38fa288",
        ]
        let options = SegmentOptions(method: method, order: .paper)
        let h = calibrated ? Self.hessian : nil
        var bytes: [UInt8] = []
        let segments = try quantizeSegments(Self.factors, segments: Self.plan, hessian: h, options: options)
        for (j, q) in segments.enumerated() {
            let encoded = ArtifactTensor.encode(q, prefix: "m.seg\(j)")
            for name in encoded.keys.sorted() { bytes += Array(name.utf8) + encoded[name]! }
            // In sequence or on its own: the paper's segments do not depend on each other.
            let alone = try quantizeSegment(Self.factors, segment: Self.plan[j], hessian: h, options: options)
            #expect(ArtifactTensor.encode(alone, prefix: "m.seg\(j)") == encoded)
            #expect(q.feedbackWarnings.isEmpty)
        }
        #expect(Digest.sha256(bytes) == expected["\(method)-\(calibrated)"])
    }

    /// The paper's measurement is the old split of the paper's segment (up to the rounding of the
    /// products: the measurement forms its Grams from `c × c` products, K − Q − Qᵀ + N, where
    /// ``attributedErrors(of:factors:hessian:)`` multiplies by H; so no digest pins the tables).
    @Test func measurementIsThePaperSplit() throws {
        let f = Self.factors, h = Self.hessian
        let table = try measureQuantizationErrors(f, hessian: h, options: MeasurementOptions(order: .paper, bits: [3]))
        let q = try quantizeSegment(f, segment: Segment(start: 0, end: 64, bits: 3), hessian: h, options: SegmentOptions(order: .paper))
        let split = try attributedErrors(of: q, factors: f, hessian: h)
        let scale = split.reduce(0) { $0 + abs($1) }   // the terms cancel: compare at the segment's scale
        for i in 0..<64 {
            let w = Double(f.singularValues[i]) * Double(f.singularValues[i]) * f.inputEnergy[i]
            #expect(abs(table[3]![i] * w - split[i]) <= 1e-5 * scale, "vector \(i)")
        }
    }
}
