import Analysis
import ArtifactFormat
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Optimizer
import Pipeline
import Quantization
import Testing

/// Pins through the pipeline: a plan with `keep`, `drop` and explicit segments, compressed,
/// merged and evaluated on a small synthetic pair (BF16 checkpoints, calibration inputs kept).
@Suite struct PinnedArtifactTests {
    /// - The plan holds the pins (kept: dense, 16·h·w bits; dropped: no segments; explicit
    ///   segments with `fill` = the stored rank) and a bits-for rule, within the budget.
    /// - `compress` stores the kept ΔW as one F16 tensor (`<name>.dense`, `[h_out, h_in]`) of
    ///   exactly the plan's bits; the artifact reopens (every check passes).
    /// - `merge` with F32 planned matrices adds it exactly: base + F16(W_ft − W_base) to the last
    ///   bit, computed here independently; the dropped matrix comes out as the base, byte for byte;
    ///   in the base's BF16 the kept matrix is the fine-tuned weight up to that F16 rounding and
    ///   the BF16 rounding of the sum.
    /// - `evaluate` measures the kept matrix's error as the F16 rounding alone (against a Float64
    ///   reference over the calibration rows), predicted 0; the dropped one's as the whole delta
    ///   (relative 1), as predicted.
    @Test func keptAndDroppedMatricesRoundTrip() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (paths, store) = try analyzedPair(dir)
        let names = store.matrices.map(\.name)
        let kept = try #require(names.first { $0.contains("q_proj") }), dropped = try #require(names.first { $0.contains("k_proj") })
        let pinned = try #require(names.first { $0.contains("v_proj") })
        let overrides = try Overrides(pins: ["q_proj=keep", "k_proj=drop", "v_proj=8:2,3:fill"], bitsFor: ["mlp=4,2"])
        let plan = try StorePlanning(store: store.url).plan(
            budget: try GivenBudget(parsing: "1/4"), storage: StorageModel(), scope: .global, menu: BitMenu.default, strategy: .exact,
            seed: 0, overrides: overrides)
        let byName = Dictionary(uniqueKeysWithValues: plan.matrices.map { ($0.name, $0) })
        let q = try #require(byName[kept]), k = try #require(byName[dropped]), v = try #require(byName[pinned])
        #expect(q.dense && q.segments.isEmpty && q.storageBits == 16 * q.shape[0] * q.shape[1] && q.pin == overrides.pins[0])
        #expect(!k.dense && k.segments.isEmpty && k.pin == overrides.pins[1])
        let rank = try #require(store.record(named: pinned)?.storedRank)
        #expect(v.segments == [Segment(start: 0, end: 2, bits: 8), Segment(start: 2, end: rank, bits: 3)])
        for m in plan.matrices where m.name.contains("mlp") {
            #expect(m.bits == [4, 2] && m.segments.allSatisfy { [4, 2].contains($0.bits) }, "\(m.name)")
        }
        #expect(plan.totals.storageBits <= plan.budget.bits)
        #expect(plan.overrides == overrides)

        let calibration = try CalibrationSet(url: paths.calibration)
        let artifactURL = dir.appendingPathComponent("artifact")
        try compress(store: store, plan: plan, calibration: calibration, options: CompressionOptions(toolVersion: "test"), to: artifactURL)
        let artifact = try Artifact(at: artifactURL)
        let record = try #require(artifact.matrix(named: kept))
        #expect(record.isDense && record.segments.isEmpty && record.storedBytes * 8 == q.storageBits)
        #expect(artifact.manifest.formatVersion == ArtifactManifest.currentFormatVersion)
        let tensor = try #require(artifact.manifest.tensors.first { $0.name == kept + ".dense" })
        #expect(tensor.dtype == "F16" && tensor.shape == q.shape)
        #expect(try #require(artifact.matrix(named: dropped)).storedBytes == 0)
        // Dense matrices came with format 3: a manifest claiming format 2, or a record that is not
        // dense where the plan's matrix is, is refused naming the matrix.
        for (label, change) in [("format 2", { (m: inout ArtifactManifest) in m.formatVersion = 2 }),
                                ("not dense", { (m: inout ArtifactManifest) in
                                    m.matrices = m.matrices.map { var r = $0; if r.name == kept { r.dense = nil }; return r } })] {
            let copy = dir.appendingPathComponent("artifact-\(label.replacingOccurrences(of: " ", with: "-"))")
            try FileManager.default.copyItem(at: artifactURL, to: copy)
            try rewriteManifest(copy, change)
            do {
                _ = try Artifact(at: copy)
                Issue.record("\(label): accepted")
            } catch {
                guard case let .corrupt(_, file, reason) = error else { Issue.record("\(label): \(error)"); continue }
                #expect(file == "manifest.json" && reason.contains("dense"), "\(label): \(reason)")
            }
        }

        // Merge: exact in Float32, the base for the dropped matrix, the fine-tuned weight in BF16.
        let base = try Checkpoint(at: paths.base), finetuned = try Checkpoint(at: paths.finetuned)
        let wb = try base.floats(kept), wf = try finetuned.floats(kept)
        let f32 = dir.appendingPathComponent("merged-f32")
        try merge(base: paths.base, artifact: artifact, to: f32, plannedDType: .f32)
        let merged32 = try Checkpoint(at: f32).floats(kept)
        let inexact = (0..<wb.count).filter { merged32[$0] != wb[$0] + Float(Float16(wf[$0] - wb[$0])) }.count
        #expect(inexact == 0, "\(inexact) elements of \(kept) are not base + F16(ΔW)")
        let bf16 = dir.appendingPathComponent("merged")
        try merge(base: paths.base, artifact: artifact, to: bf16)
        let merged = try Checkpoint(at: bf16)
        #expect(try merged.rawBytes(dropped) == base.rawBytes(dropped))
        let wm = try merged.floats(kept)
        for t in 0..<wm.count {
            let delta = Double(wf[t]) - Double(wb[t]), rounding = abs(Double(Float16(Float(delta))) - delta)
            let halfULP = pow(2, Double(max(abs(wm[t]), abs(wf[t])).exponent) - 8)  // BF16: 8 significant bits
            #expect(abs(Double(wm[t]) - Double(wf[t])) <= halfULP + rounding, "\(kept)[\(t)]: \(wm[t]) vs \(wf[t])")
        }

        // Evaluate: the kept matrix's error is its F16 rounding (Float64 reference over the same
        // calibration rows); the dropped matrix's is the whole delta.
        let report = try evaluate(artifact: artifact, base: paths.base, finetuned: paths.finetuned, calibration: calibration, store: store)
        let qe = try #require(report.matrices.first { $0.name == kept }), ke = try #require(report.matrices.first { $0.name == dropped })
        let entry = try #require(store.record(named: kept)?.calibrationEntry)
        let x = try #require(try calibration.inputs(ofEntry: entry))
        let (rows, columns) = (q.shape[0], q.shape[1])
        var error = 0.0, energy = 0.0
        for n in 0..<x.columns {
            for i in 0..<rows {
                var e = 0.0, d = 0.0
                for j in 0..<columns {
                    let delta = Double(wf[i * columns + j] - wb[i * columns + j])
                    e += (delta - Double(Float16(Float(delta)))) * Double(x[j, n])
                    d += delta * Double(x[j, n])
                }
                error += e * e
                energy += d * d
            }
        }
        #expect(qe.errorSource == "inputs")
        #expect(abs(qe.plan.activationError - error) <= 1e-3 * error + 1e-12 * energy, "\(qe.plan.activationError) vs \(error)")
        #expect(abs(qe.activationEnergy - energy) <= 1e-5 * energy)
        #expect(qe.plan.relativeActivationError < 1e-6, "kept: \(qe.plan.relativeActivationError)")
        #expect(qe.predictedError == 0 && qe.actualOverPredicted == nil)
        #expect(abs(ke.plan.relativeActivationError - 1) < 1e-9 && abs(ke.plan.relativeWeightError - 1) < 1e-9)
        #expect(abs(try #require(ke.predictedRelativeError) - 1) < 1e-6)
        #expect(report.total.predictedRelativeError != nil && report.total.actualOverPredicted != nil)
    }

    /// A kept ΔW that F16 cannot hold is refused by name, before an artifact is written.
    @Test func keepingADeltaBeyondF16IsRefused() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (paths, store) = try analyzedPair(dir, seed: 3)
        let plan = try StorePlanning(store: store.url).plan(
            budget: try GivenBudget(parsing: "1/2"), storage: StorageModel(), scope: .global, menu: BitMenu.default, strategy: .exact,
            seed: 0, overrides: try Overrides(pins: ["q_proj=keep"], bitsFor: []))
        let kept = try #require(plan.matrices.first { $0.dense }).name
        // The same store, whose fine-tuned file now differs from the base by 10⁵ in one element of
        // the kept matrix: compress it from an override path (checked by size and header only).
        let finetuned = dir.appendingPathComponent("finetuned-huge")
        try FileManager.default.createDirectory(at: finetuned, withIntermediateDirectories: true)
        let source = try Checkpoint(at: paths.finetuned)
        var declarations: [TensorDeclaration] = [], payloads: [(String, [Float])] = []
        for t in source.tensors {
            var values = try source.floats(t.name)
            if t.name == kept { values[5] = 1e5 }
            declarations.append(TensorDeclaration(name: t.name, dtype: t.info.dtype, shape: t.info.shape))
            payloads.append((t.name, values))
        }
        let writer = try SafetensorsWriter(url: finetuned.appendingPathComponent(Checkpoint.singleFileName), tensors: declarations,
                                           metadata: source.files.first?.metadata ?? [:])
        for (name, values) in payloads { try writer.write(name, floats: values) }
        try writer.finish()
        let out = dir.appendingPathComponent("artifact")
        let calibration = try CalibrationSet(url: paths.calibration)
        do {
            try compress(store: store, plan: plan, calibration: calibration,
                         options: CompressionOptions(finetuned: finetuned, toolVersion: "test"), to: out)
            Issue.record("a ΔW beyond F16 was kept")
        } catch {
            guard case let .unrepresentable(tensor, reason) = error else { Issue.record("\(error)"); return }
            #expect(tensor == kept && reason.contains("element 5") && reason.contains("F16"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: out.path))
    }
}
