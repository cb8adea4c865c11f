import Foundation
import Testing
@testable import Analysis
import Checkpoint
import LinearAlgebra
import ModelProfiles

/// Energy statistics of a spectrum: the fraction of Σσ² in the top k values, and the effective
/// rank exp(entropy of σ²/Σσ²) (as SPECTRUM.md of the development pair defines them).
private struct Energy {
    let fractions: [Double]
    init<S: BinaryFloatingPoint>(_ sigma: [S]) {
        let squares = sigma.map { Double($0) * Double($0) }
        let total = squares.reduce(0, +)
        var running = 0.0
        fractions = squares.map { running += $0 / total; return running }
    }
    func top(_ k: Int) -> Double { fractions[min(k, fractions.count) - 1] }
    var effectiveRank: Double {
        var previous = 0.0, entropy = 0.0
        for f in fractions {
            let p = f - previous
            previous = f
            if p > 0 { entropy -= p * log(p) }
        }
        return exp(entropy)
    }
    /// The smallest k whose top-k fraction reaches `level`.
    func rank(reaching level: Double) -> Int { (fractions.firstIndex { $0 >= level } ?? fractions.count - 1) + 1 }
}

@Suite struct DeltaSpectrumTests {
    static let members: [(DeltaSpectrum.Family, Double, Double)] = [DeltaSpectrum.attention, DeltaSpectrum.mlp].flatMap { family in
        [(-2.0, -2.0), (-2, 2), (0, 0), (2, -2), (2, 2)].map { (family, $0.0, $0.1) }
    }

    /// Every member's values: min(m, n) of them, positive, strictly decreasing, Σσ² = 1.
    @Test(arguments: [(64, 64), (172, 64), (64, 172), (1, 9), (384, 1536), (4096, 4096)])
    func valuesArePositiveDecreasingAndNormalised(rows: Int, columns: Int) {
        for (family, z1, z2) in Self.members {
            let sigma = family.member(z1, z2).values(rows: rows, columns: columns)
            #expect(sigma.count == min(rows, columns))
            #expect(sigma.allSatisfy { $0 > 0 && $0.isFinite })
            #expect(zip(sigma, sigma.dropFirst()).allSatisfy { $0 > $1 })
            #expect(abs(sigma.reduce(0) { $0 + $1 * $1 } - 1) < 1e-12)
        }
    }

    /// The Marchenko–Pastur edge of a square matrix is the quarter-circle law: singular values
    /// s ∈ [0, 2] with density √(4 − s²)/π, so the fraction above s is
    /// 1 − (s·√(4 − s²)/2 + 2·asin(s/2))/π (closed form, independent of the quadrature).
    @Test func squareEdgeIsTheQuarterCircle() {
        let r = 1000
        let edge = DeltaSpectrum.edgeProfile(aspect: 1, count: r)
        for i in stride(from: 0, to: r, by: 37) {
            let s = 2 * edge[i]
            let above = 1 - (s * (4 - s * s).squareRoot() / 2 + 2 * asin(s / 2)) / Double.pi
            #expect(abs(above - (Double(i) + 0.5) / Double(r)) < 1e-5, "t = \((Double(i) + 0.5) / Double(r)): \(above)")
        }
        // A rectangular matrix's edge ends at (1 − √c)/(1 + √c), not at 0.
        let c = 0.25, last = DeltaSpectrum.edgeProfile(aspect: c, count: 4096).last!
        #expect(abs(last - (1 - c.squareRoot()) / (1 + c.squareRoot())) < 2e-3)
    }

    /// At the development pair's shapes the fitted family stays within what the pair shows
    /// (SPECTRUM.md: attention top-2 0.11–0.48, top-34 0.67–0.86, top-128 0.94–0.98, effective
    /// rank 28–91; MLP 0.11–0.23, 0.53–0.71, 0.85–0.96, 67–141), with a margin for members one
    /// standard deviation out, and its last half holds about what the pair's does (attention
    /// 0.6–1.7%, MLP 1.5–7.5%; the constant floor this model replaced put 9–12% there).
    @Test func energyAtTheDevelopmentPairShapes() {
        for (family, shape, top2, top34, top128, effective, lastHalf) in [
            (DeltaSpectrum.attention, (384, 384), 0.08...0.55, 0.62...0.90, 0.92...0.99, 20.0...110, 0.03),
            (DeltaSpectrum.mlp, (1536, 384), 0.07...0.30, 0.45...0.78, 0.80...0.97, 50.0...170, 0.085),
            (DeltaSpectrum.mlp, (384, 1536), 0.07...0.30, 0.45...0.78, 0.80...0.97, 50.0...170, 0.085),
        ] {
            for z1 in [-1.0, 0, 1] {
                for z2 in [-1.0, 0, 1] {
                    let e = Energy(family.member(z1, z2).values(rows: shape.0, columns: shape.1))
                    let label = "\(shape) z = (\(z1), \(z2))"
                    #expect(top2.contains(e.top(2)), "\(label): top-2 \(e.top(2))")
                    #expect(top34.contains(e.top(34)), "\(label): top-34 \(e.top(34))")
                    #expect(top128.contains(e.top(128)), "\(label): top-128 \(e.top(128))")
                    #expect(effective.contains(e.effectiveRank), "\(label): effective rank \(e.effectiveRank)")
                    #expect(1 - e.top(192) < lastHalf, "\(label): the last half holds \(1 - e.top(192))")
                }
            }
        }
    }

    /// The scaling assumption: the normalised shape lives on the relative index, so the energy
    /// in the top fraction t of the rank is the same at rank 384 and 4096; a 4096-wide delta is
    /// high-rank (90% of its energy needs more than a tenth of the rank) with no flat tail (its
    /// last half holds under 10% of the energy; the constant floor put about half there).
    @Test func shapeScalesWithTheRank() {
        for (family, aspect) in [(DeltaSpectrum.attention, 1), (DeltaSpectrum.mlp, 4)] {
            let small = Energy(family.central.values(rows: 384 * aspect, columns: 384))
            let large = Energy(family.central.values(rows: 4096 * aspect, columns: 4096))
            for t in [0.05, 0.1, 0.25, 0.5] {
                #expect(abs(small.top(Int(384 * t)) - large.top(Int(4096 * t))) < 0.02, "t = \(t)")
            }
            #expect(large.rank(reaching: 0.9) > 410)
            #expect(1 - large.top(2048) < 0.1)
        }
    }

    @Test func drawsAreDeterministicAndVary() {
        var a = Xoshiro256(seed: 4), b = Xoshiro256(seed: 4)
        let first = (0..<8).map { _ in DeltaSpectrum.attention.draw(using: &a) }
        #expect(first == (0..<8).map { _ in DeltaSpectrum.attention.draw(using: &b) })
        #expect(Set(first.map(\.exponent)).count == 8)
    }
}

@Suite struct SyntheticDeltaTests {
    /// The delta of every matrix has exactly the requested singular values, with either spectra:
    /// an independent Float64 SVD (`gesdd`) of the generated ΔW against the spectrum scaled to its
    /// target norm (4.5% of the base's expected norm in the last layer), within 10⁻⁵ of the
    /// largest (Float rounding through the block products).
    @Test(arguments: [SyntheticPair.Spectra.fitted, .powerLawWithFloor])
    func deltaHasTheRequestedSpectrum(spectra: SyntheticPair.Spectra) throws {
        let profile = try tinyProfile(layers: 2)
        let pair = SyntheticPair(profile: profile, seed: 12, spectra: spectra)
        for m in profile.expandedMatrices() where m.layer == 1 {
            let delta = pair.delta(for: m)
            #expect(delta.rows == m.columns && delta.columns == m.rows)
            var g = pair.generator(m.name, "delta")
            let target = 0.045 * 0.02 * Double(m.rows * m.columns).squareRoot()
            let expected = spectra.values(for: m, using: &g).map { $0 * target }
            let actual = try svd(Matrix<Double>(delta), vectors: .none).singularValues
            #expect(actual.count == expected.count)
            for i in expected.indices {
                #expect(abs(actual[i] - expected[i]) < 1e-5 * expected[0], "\(m.name) σ\(i): \(actual[i]) vs \(expected[i])")
            }
        }
    }

    /// Read back from the BF16 files, the deltas keep the fitted shape (the rounding of both
    /// checkpoints moves the energy fractions by less than 0.01) and the target size (3% of the
    /// base's norm in a one-layer model).
    @Test func writtenDeltasKeepTheShape() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let profile = try tinyProfile()
        let pair = SyntheticPair(profile: profile, seed: 8, tokens: 16, sampleRows: 0)
        let paths = try pair.write(to: dir.url)
        let base = try Checkpoint(at: paths.base)
        for m in profile.expandedMatrices() {
            let delta = try referenceDelta(m.name, base: paths.base, finetuned: paths.finetuned)
            let sigma = try svd(delta, vectors: .none).singularValues
            var g = pair.generator(m.name, "delta")
            let model = Energy(DeltaSpectrum.family(of: m.type).draw(using: &g).values(rows: m.rows, columns: m.columns))
            let read = Energy(sigma)
            for k in [2, 8, 32] { #expect(abs(read.top(k) - model.top(k)) < 0.01, "\(m.name) top-\(k)") }
            let baseValues = try base.doubles(m.name)
            let baseNorm = baseValues.reduce(0) { $0 + $1 * $1 }.squareRoot()
            #expect(abs(delta.frobeniusNorm / baseNorm - 0.03) < 0.001, "\(m.name): ‖ΔW‖/‖W‖ = \(delta.frobeniusNorm / baseNorm)")
        }
    }

    /// The same bytes with two threads as with one; another seed changes every file.
    @Test func twoThreadsWriteTheSameBytes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let profile = try tinyProfile(layers: 2)
        let one = try SyntheticPair(profile: profile, seed: 6, tokens: 40, sampleRows: 20).write(to: dir("one"))
        let two = try SyntheticPair(profile: profile, seed: 6, tokens: 40, sampleRows: 20)
            .write(to: dir("two"), parallelism: Parallelism(threads: 2))
        let other = try SyntheticPair(profile: profile, seed: 7, tokens: 40, sampleRows: 20).write(to: dir("other"))
        for keyPath in [\SyntheticPair.Paths.base, \.finetuned] {
            let file = { (paths: SyntheticPair.Paths) in
                try Data(contentsOf: paths[keyPath: keyPath].appendingPathComponent(Checkpoint.singleFileName))
            }
            #expect(try file(one) == file(two))
            #expect(try file(one) != file(other))
        }
        #expect(try Data(contentsOf: one.calibration) == Data(contentsOf: two.calibration))
        #expect(try Data(contentsOf: one.calibration) != Data(contentsOf: other.calibration))
    }

    /// An embedding-sized tensor is generated in chunks of whole rows, each from its own
    /// generator: the chunks tile the tensor in order.
    @Test func chunksTileTheTensor() throws {
        let t = try #require(try tinyProfile().expandedTensors().first { $0.shape.count == 2 })
        let size = 10 * t.shape[1] + 3
        let chunks = SyntheticPair.chunks(of: t, size: size)
        var next = 0
        for (i, work) in chunks.enumerated() {
            guard case let .chunk(tensor, elements, index) = work else { Issue.record("not a chunk"); continue }
            #expect(tensor == t && index == i && elements.lowerBound == next)
            #expect(elements.count <= size && elements.count % t.shape[1] == 0)
            next = elements.upperBound
        }
        #expect(next == t.shape.reduce(1, *) && chunks.count == (t.shape[0] + 9) / 10)
    }
}
