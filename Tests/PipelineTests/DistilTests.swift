import ArtifactFormat
import Checkpoint
import ContentHash
import Foundation
import LinearAlgebra
import Testing
@testable import Pipeline

/// `deltaplan distil export` and `apply` on the fixture's exact artifact: the exported factors
/// rebuild ΔŴ, and applying a fitted file changes σ and the scales of Û and V̂ᵀ as it says and nothing else.
@Suite struct DistilTests {
    /// The fixture's exact plan with its first 3-bit segment at 1 bit, compressed: segments of 16, 1
    /// and 2…8 bits, so every layout of V̂ᵀ's and Û's F16 parameters is distilled.
    private static let mixed: Result<URL, any Error> = Result {
        let f = try ArtifactFixture.get()
        var plan = f.exactPlan
        let (m, j) = plan.matrices.indices.lazy.compactMap { m in plan.matrices[m].segments.firstIndex { $0.bits == 3 }.map { (m, $0) } }.first!
        plan.matrices[m].segments[j].bits = 1
        let out = f.url("mixed-\(UUID().uuidString).artifact")
        try compress(store: f.store, plan: plan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"), to: out)
        return out
    }

    /// Every segment's exported factors, by prefix: (u row-major `h_out × c`, σ, vᵀ row-major `c × h_in`).
    private func factors(_ file: SafetensorsFile, _ record: ArtifactManifest.MatrixRecord) throws -> [(u: [Float], sigma: [Float], vt: [Float])] {
        try record.segments.map { s in
            (try file.floats(s.prefix + ".u"), try file.floats(s.prefix + ".sigma"), try file.floats(s.prefix + ".vt"))
        }
    }

    /// Σ_j u_j diag(σ_j) vt_j in Float64, row-major, with σ_j replaced by `sigma(j)` when given.
    private func rebuild(_ parts: [(u: [Float], sigma: [Float], vt: [Float])], rows: Int, columns: Int,
                         sigma: ((Int) -> [Double])? = nil) -> [Double] {
        var out = [Double](repeating: 0, count: rows * columns)
        for (j, p) in parts.enumerated() {
            let s = sigma?(j) ?? p.sigma.map(Double.init)
            for r in 0..<rows { for k in 0..<s.count {
                let a = Double(p.u[r * s.count + k]) * s[k]
                for c in 0..<columns { out[r * columns + c] += a * Double(p.vt[k * columns + c]) }
            } }
        }
        return out
    }

    /// The width in columns of a group of V̂ᵀ's multipliers in a segment (the export's widths).
    private func vtWidth(_ s: ArtifactManifest.SegmentRecord, _ record: ArtifactManifest.MatrixRecord) -> Int {
        s.bits == 1 ? record.shape[1] : min(record.groupSize, record.shape[1])
    }

    /// The number of groups of V̂ᵀ's multipliers in a segment.
    private func vtGroups(_ s: ArtifactManifest.SegmentRecord, _ record: ArtifactManifest.MatrixRecord) -> Int {
        (record.shape[1] + vtWidth(s, record) - 1) / vtWidth(s, record)
    }

    /// Writes a fitted file: per segment σ·(1 + i mod 3 / 2); for every other segment, Û row
    /// multipliers 1 − (i mod 5) / 10 (a segment without them keeps its rows); for every segment
    /// whose index is not a multiple of 3, V̂ᵀ group multipliers 1 + ((k + g) mod 4) / 8 (row k,
    /// group g); the artifact hash, and one note.
    private func sigmaFile(_ artifact: Artifact, _ exported: SafetensorsFile, at url: URL, hash: String? = nil,
                           change: (inout [String: [Float]]) -> Void = { _ in }) throws -> [String: [Float]] {
        var sigma: [String: [Float]] = [:], rowsOf: [String: Int] = [:]
        for record in artifact.manifest.matrices { for (j, s) in record.segments.enumerated() {
            let name = s.prefix + ".sigma"
            sigma[name] = try exported.floats(name).enumerated().map { i, v in v * (1 + Float(i % 3) / 2) }
            if j % 2 == 0 { sigma[s.prefix + ".u_rows"] = (0..<record.shape[0]).map { 1 - Float($0 % 5) / 10 } }
            if j % 3 != 0 {
                let c = s.end - s.start, groups = vtGroups(s, record)
                sigma[s.prefix + ".vt_groups"] = (0..<(c * groups)).map { 1 + Float(($0 / groups + $0 % groups) % 4) / 8 }
                rowsOf[s.prefix + ".vt_groups"] = c
            }
        } }
        change(&sigma)
        let writer = try SafetensorsWriter(url: url, tensors: sigma.map { name, values in
            TensorDeclaration(name: name, dtype: .f32, shape: rowsOf[name].map { [$0, values.count / $0] } ?? [values.count])
        },
                                           metadata: [Distillation.artifactKey: hash ?? artifact.manifest.delta.sha256,
                                                      "deltaplan.distil.note": "test"])
        for (name, values) in sigma { try writer.write(name, floats: values) }
        try writer.finish()
        return sigma
    }

    @Test func exportedFactorsRebuildTheArtifactsDelta() throws {
        let f = try ArtifactFixture.get()
        let a = try Artifact(at: try Self.mixed.get())
        let out = f.url("factors-\(UUID().uuidString).safetensors")
        let written = try exportFactors(of: a, to: out)
        let file = try SafetensorsFile(contentsOf: out)
        #expect(file.metadata[Distillation.artifactKey] == a.manifest.delta.sha256)
        #expect(written.matrices == a.manifest.matrices.count)
        #expect(file.tensors.count == 3 * a.manifest.matrices.reduce(0) { $0 + $1.segments.count })
        // Each segment's width of a group of V̂ᵀ's scales: the group size, a whole row at 1 bit.
        let widths = try JSONDecoder().decode([String: Int].self, from: Data(file.metadata[Distillation.vtGroupColumnsKey, default: ""].utf8))
        var expected: [String: Int] = [:]
        for record in a.manifest.matrices { for s in record.segments {
            expected[s.prefix] = vtWidth(s, record)
        } }
        #expect(widths == expected)
        let bits = Set(a.manifest.matrices.flatMap { $0.segments.map(\.bits) })
        #expect(bits.isSuperset(of: [16, 1]) && bits.contains { (2...8).contains($0) }, "\(bits): the artifact should hold segments of 16, 1 and 2…8 bits")
        for record in a.manifest.matrices {
            let (rows, columns) = (record.shape[0], record.shape[1])
            let rebuilt = rebuild(try factors(file, record), rows: rows, columns: columns)
            let hat = try a.reconstruction(of: record)
            var diff = 0.0, norm = 0.0
            for r in 0..<rows { for c in 0..<columns {
                diff += pow(rebuilt[r * columns + c] - Double(hat[r, c]), 2)
                norm += pow(Double(hat[r, c]), 2)
            } }
            #expect(norm > 0 && diff.squareRoot() <= 1e-5 * norm.squareRoot(), "\(record.name): \(diff.squareRoot()) of \(norm.squareRoot())")
        }
    }

    @Test func applyingChangesOnlySigmaAndTheRowScales() throws {
        let f = try ArtifactFixture.get()
        let mixed = try Self.mixed.get()
        let a = try Artifact(at: mixed)
        let manifestBefore = try Data(contentsOf: mixed.appendingPathComponent(ArtifactManifest.fileName))
        let exportedURL = f.url("factors-\(UUID().uuidString).safetensors")
        _ = try exportFactors(of: a, to: exportedURL)
        let exported = try SafetensorsFile(contentsOf: exportedURL)
        let sigmaURL = f.url("sigma-\(UUID().uuidString).safetensors")
        let sigma = try sigmaFile(a, exported, at: sigmaURL)
        let out = f.url("distilled-\(UUID().uuidString)")
        let manifest = try applyDistillation(sigmaURL, to: a, out: out, toolVersion: "test")

        let b = try Artifact(at: out)   // checksums of the new files verified
        #expect(b.manifest == manifest)
        #expect(manifest.distillation == .init(path: sigmaURL.path, sha256: try Digest.sha256(fileAt: sigmaURL),
                                        replacedFrom: a.manifest.delta.sha256, metadata: ["deltaplan.distil.note": "test"]))
        #expect(manifest.plan == a.manifest.plan && manifest.matrices == a.manifest.matrices && manifest.totals == a.manifest.totals)
        #expect(manifest.delta.size == a.manifest.delta.size && manifest.delta.sha256 != a.manifest.delta.sha256)
        func halves(_ bytes: [UInt8]) -> [Float] {
            (0..<(bytes.count / 2)).map { Float(Float16(bitPattern: UInt16(bytes[2 * $0]) | UInt16(bytes[2 * $0 + 1]) << 8)) }
        }
        var rescaled = Set<String>()
        for record in a.manifest.matrices { for s in record.segments {
            guard let rows = sigma[s.prefix + ".u_rows"] else { continue }
            // Each row's F16 scales (or 16-bit values) times its multiplier, rounded once to F16.
            let name = s.prefix + (s.bits == 16 ? ArtifactTensor.uValues : ArtifactTensor.uScales)
            let old = halves(try a.tensorBytes(name)), perRow = old.count / record.shape[0]
            #expect(halves(try b.tensorBytes(name)) == old.indices.map { Float(Float16(old[$0] * rows[$0 / perRow])) }, "\(name)")
            rescaled.insert(name)
        } }
        for record in a.manifest.matrices { for s in record.segments {
            guard let groups = sigma[s.prefix + ".vt_groups"] else { continue }
            // V̂ᵀ's row k: at 16 bits each value times the multiplier of its column's group; at 1 bit its one
            // scale times the row's one multiplier; else the scale of group g times multiplier g.
            let c = s.end - s.start, columns = record.shape[1], g = vtGroups(s, record)
            let name = s.prefix + (s.bits == 16 ? ArtifactTensor.vValues : ArtifactTensor.vScales)
            let old = halves(try a.tensorBytes(name))
            var expected: [Float] = []
            for k in 0..<c {
                if s.bits == 16 {
                    expected += (0..<columns).map { Float(Float16(old[k * columns + $0] * groups[k * g + $0 / record.groupSize])) }
                } else {
                    expected += (0..<g).map { Float(Float16(old[k * g + $0] * groups[k * g + $0])) }
                }
            }
            #expect(halves(try b.tensorBytes(name)) == expected, "\(name)")
            rescaled.insert(name)
        } }
        #expect(!rescaled.isEmpty)
        for record in a.manifest.tensors where !rescaled.contains(record.name) {
            if let values = sigma[record.name] {
                #expect(halves(try b.tensorBytes(record.name)) == values.map { Float(Float16($0)) }, "\(record.name)")
            } else {
                #expect(try b.tensorBytes(record.name) == a.tensorBytes(record.name), "\(record.name) changed")
            }
        }
        for record in a.manifest.modelFiles ?? [] { #expect(try b.modelFileContents(record) == a.modelFileContents(record)) }
        // ΔŴ of the new artifact = Σ diag(r) u diag(F16(σ')) vt of the exported factors, in Float64, up to
        // the F16 rounding of the rescaled Û scales (relative 2⁻¹¹ each).
        for record in a.manifest.matrices {
            let (rows, columns) = (record.shape[0], record.shape[1])
            let parts = try factors(exported, record).enumerated().map { j, p in
                let s = record.segments[j], c = p.sigma.count
                let multipliers = sigma[s.prefix + ".u_rows"] ?? [Float](repeating: 1, count: rows)
                let g = vtGroups(s, record), width = vtWidth(s, record)
                let groups = sigma[s.prefix + ".vt_groups"] ?? [Float](repeating: 1, count: c * g)
                return (u: p.u.indices.map { p.u[$0] * multipliers[$0 / c] }, sigma: p.sigma,
                        vt: p.vt.indices.map { p.vt[$0] * groups[($0 / columns) * g + ($0 % columns) / width] })
            }
            let expected = rebuild(parts, rows: rows, columns: columns) { j in
                sigma[record.segments[j].prefix + ".sigma"]!.map { Double(Float16($0)) }
            }
            let hat = try b.reconstruction(of: record)
            var diff = 0.0, norm = 0.0
            for r in 0..<rows { for c in 0..<columns {
                diff += pow(expected[r * columns + c] - Double(hat[r, c]), 2)
                norm += pow(expected[r * columns + c], 2)
            } }
            #expect(diff.squareRoot() <= 1e-3 * norm.squareRoot(), "\(record.name)")
        }
        // The artifact given is untouched.
        #expect(try Data(contentsOf: mixed.appendingPathComponent(ArtifactManifest.fileName)) == manifestBefore)
        _ = try Artifact(at: mixed)
    }

    /// Each bad fitted file is refused naming the file and the tensor, and nothing appears at `--out`.
    @Test(arguments: ["another artifact", "missing", "extra", "shape", "rows shape", "groups shape", "overflow", "out exists"])
    func badSigmaFilesAreRefused(_ fault: String) throws {
        let f = try ArtifactFixture.get()
        let a = try Artifact(at: f.exactArtifact)
        let exportedURL = f.url("factors-\(UUID().uuidString).safetensors")
        _ = try exportFactors(of: a, to: exportedURL)
        let exported = try SafetensorsFile(contentsOf: exportedURL)
        let first = a.manifest.matrices[0].segments[0].prefix + ".sigma", firstRows = a.manifest.matrices[0].segments[0].prefix + ".u_rows"
        let grouped = a.manifest.matrices.first { $0.segments.count > 1 }!.segments[1]   // j = 1: has V̂ᵀ group multipliers
        let firstGroups = grouped.prefix + ".vt_groups"
        let sigmaURL = f.url("sigma-\(UUID().uuidString).safetensors")
        _ = try sigmaFile(a, exported, at: sigmaURL, hash: fault == "another artifact" ? String(repeating: "0", count: 64) : nil) { sigma in
            switch fault {
            case "missing": sigma[first] = nil
            case "extra": sigma["not.a.segment.sigma"] = [1]
            case "shape": sigma[first]!.append(1)
            case "rows shape": sigma[firstRows]!.append(1)
            case "groups shape": sigma[firstGroups]! += [Float](repeating: 1, count: grouped.end - grouped.start)
            case "overflow": sigma[first]![0] = 1e6
            default: break
            }
        }
        let out = f.url("distilled-\(UUID().uuidString)")
        if fault == "out exists" { try FileManager.default.createDirectory(at: out, withIntermediateDirectories: false) }
        let expected = [
            "another artifact": "was fitted for the artifact", "missing": "\(first) is missing", "extra": "not.a.segment.sigma",
            "shape": "\(first) has shape", "rows shape": "\(firstRows) has shape", "groups shape": "\(firstGroups) has shape",
            "overflow": "\(first): element 0 becomes 1000000.0, beyond F16", "out exists": "already exists",
        ][fault]!
        do {
            _ = try applyDistillation(sigmaURL, to: a, out: out, toolVersion: "test")
            Issue.record("\(fault): accepted")
        } catch {
            #expect(error.description.contains(expected), "\(fault): \(error)")
            if fault != "out exists" && fault != "overflow" { #expect(error.description.contains(sigmaURL.path), "\(error)") }
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: f.directory.path).filter { $0.contains(out.lastPathComponent) }
        #expect(leftovers == (fault == "out exists" ? [out.lastPathComponent] : []), "\(leftovers)")
    }
}
