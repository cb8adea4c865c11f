import Analysis
import ArtifactFormat
import Checkpoint
import ContentHash
import Foundation
import Optimizer
import Pipeline
import Testing

/// Hostile artifacts, stores and checkpoints given to `merge` and `compress` (issue #12, item 4;
/// Fuzz/run.sh fuzzes the artifact-manifest reader): each is a named error naming the file and
/// the tensor or field, never a trap and never a silently wrong result. Damaged copies of the
/// shared fixture, with their checksums recomputed (an attacker computes checksums too).
@Suite struct HostileInputTests {
    /// Found by fuzz-manifest (Fuzz/run.sh, first minute): `Artifact(at:)` built
    /// `Segment(start:end:bits:)` from the manifest's matrix records before comparing them with the
    /// plan, and that initializer traps on start > end.
    @Test("A matrix record whose segment ends before it starts (fuzz finding)")
    func invertedSegmentRecord() throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "inverted-segment-\(UUID().uuidString)")
        try rewriteManifest(copy) { m in
            m.matrices[0].segments[0].start = 5
            m.matrices[0].segments[0].end = 2
        }
        try ArtifactRejectionTests().expectCorrupt(copy, mentioning: "matrices[0].segments differ from the plan's")
    }

    @Test("A delta file named anything but delta.safetensors (a path out of the artifact)",
          arguments: ["../exact.artifact/delta.safetensors", "/etc/passwd", "model-files/config.json"])
    func deltaFileName(_ name: String) throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "delta-name-\(UUID().uuidString)")
        try rewriteManifest(copy) { $0.delta.name = name }
        try ArtifactRejectionTests().expectCorrupt(copy, mentioning: "delta.name is '\(name)'")
    }

    @Test("A tensor record whose byte count is wrong or negative", arguments: [1, -1_000_000])
    func tensorByteCount(_ change: Int) throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "bytes-\(UUID().uuidString)")
        var name = ""
        try rewriteManifest(copy) { m in
            name = m.tensors[3].name
            m.tensors[3].bytes = change > 0 ? m.tensors[3].bytes + change : change
        }
        try ArtifactRejectionTests().expectCorrupt(copy, mentioning: "tensor \(name) is ")
    }

    /// The writer never stores NaN or ±∞ (it refuses values F16 cannot hold); merge used to add
    /// them into the merged weights.
    @Test("NaN or ∞ in a stored σ, scale or value", arguments: [".sigma", ".v.scales", ".u.zeros"])
    func nonFiniteStoredValue(_ suffix: String) throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "nan-\(UUID().uuidString)")
        let deltaURL = copy.appendingPathComponent(ArtifactManifest.deltaFileName)
        let file = try SafetensorsFile(contentsOf: deltaURL)
        let target = try #require(file.tensors.first { $0.name.hasSuffix(suffix) }).name
        var damaged: [UInt8] = []
        let payloads = try file.tensors.map { t in
            var bytes = try file.rawBytes(t.name)
            if t.name == target {
                bytes[2] = 0x00
                bytes[3] = suffix == ".sigma" ? 0x7C : 0x7E  // F16 +∞, NaN
                damaged = bytes
            }
            return TensorPayload(name: t.name, dtype: t.dtype, shape: t.shape, contents: .bytes(bytes))
        }
        try SafetensorsFile.write(payloads, metadata: file.metadata, to: deltaURL)
        try rewriteManifest(copy) { m in
            let i = try #require(m.tensors.firstIndex { $0.name == target })
            m.tensors[i].sha256 = Digest.sha256(damaged)
            m.delta.sha256 = try Digest.sha256(fileAt: deltaURL)
            m.delta.size = try #require((FileManager.default.attributesOfItem(atPath: deltaURL.path)[.size] as? NSNumber)?.intValue)
        }
        try ArtifactRejectionTests().expectCorrupt(copy, mentioning: "tensor \(target) holds NaN or infinite values")
    }

    /// A base whose planned matrix holds NaN under the same header and size (what merge checks of
    /// the base) is not the analyzed base, which held none.
    @Test("merge refuses a base with NaN in a planned matrix, naming it")
    func nonFiniteBase() throws {
        let f = try ArtifactFixture.get()
        let base = f.url("nan-base-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        let source = try SafetensorsFile(contentsOf: f.paths.base.appendingPathComponent(Checkpoint.singleFileName))
        let artifact = try Artifact(at: f.exactArtifact)
        let planned = try #require(artifact.manifest.matrices.first).name
        var bytes = try Data(contentsOf: source.url)
        let info = try source.info(planned)
        #expect(info.dtype == .bf16)
        let at = source.dataStart + info.dataOffsets.lowerBound + 2 * 17
        bytes[at] = 0xC0
        bytes[at + 1] = 0x7F  // BF16 NaN
        try bytes.write(to: base.appendingPathComponent(Checkpoint.singleFileName))
        do {
            try merge(base: base, artifact: artifact, to: f.url("never-\(UUID().uuidString)"))
            Issue.record("merged a base holding NaN")
        } catch {
            guard case let .inputMismatch(input, path, reason) = error else { Issue.record("got \(error)"); return }
            #expect(input == "base" && path == base.path)
            #expect(reason.contains("\(planned) holds NaN or infinite values (element 17"), "\(reason)")
        }
    }

    /// A store matrix file whose u_t and v_t shapes were changed (one row moved from v_t to u_t:
    /// same bytes, same file size, same manifest, so the store's identity and the plan still match).
    /// `factors(of:)` filled a Matrix with the wrong element count: a precondition trap in compress.
    @Test("compress refuses a store matrix file whose factor shapes disagree with the manifest")
    func reshapedStoreFactors() throws {
        let f = try ArtifactFixture.get()
        let store = try damagedStoreCopy(f) { file, record in
            let r = try #require(record.storedRank)
            let (u, v) = (try file.rawBytes("u_t"), try file.rawBytes("v_t"))
            let moved = 4 * record.columns  // one F32 row of v_t (= one of u_t: the matrix is square)
            return [TensorPayload(name: "u_t", dtype: .f32, shape: [r + 1, record.rows], contents: .bytes(u + v.prefix(moved))),
                    TensorPayload(name: "v_t", dtype: .f32, shape: [r - 1, record.columns], contents: .bytes(Array(v.dropFirst(moved))))]
        }
        try expectCompressRefuses(store, f, mentioning: "u_t has shape")
    }

    @Test("compress refuses a store matrix file holding NaN, naming the file and tensor")
    func nonFiniteStoreFactors() throws {
        let f = try ArtifactFixture.get()
        let store = try damagedStoreCopy(f) { file, _ in
            var v = try file.rawBytes("v_t")
            v.replaceSubrange(8..<12, with: [0x00, 0x00, 0xC0, 0x7F])  // F32 NaN
            return [TensorPayload(name: "v_t", dtype: .f32, shape: try file.info("v_t").shape, contents: .bytes(v))]
        }
        try expectCompressRefuses(store, f, mentioning: "v_t holds NaN or infinite values")
    }

    /// The first square matrix the exact plan keeps vectors of.
    private func target(_ f: ArtifactFixture) throws -> String {
        try #require(f.exactPlan.matrices.first { $0.shape[0] == $0.shape[1] && !$0.segments.isEmpty }).name
    }

    /// A copy of the fixture's store whose ``target(_:)`` matrix file is rewritten by `change`
    /// (tensors it returns replace theirs), under the same manifest.
    private func damagedStoreCopy(
        _ f: ArtifactFixture, _ change: (SafetensorsFile, StoreManifest.MatrixRecord) throws -> [TensorPayload]
    ) throws -> SpectrumStore {
        let copy = f.url("damaged-store-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: f.store.url, to: copy)
        let record = try #require(f.store.record(named: try target(f)))
        let url = copy.appendingPathComponent(try #require(record.file))
        let file = try SafetensorsFile(contentsOf: url)
        let replaced = try change(file, record)
        let payloads = try file.tensors.map { t in
            try replaced.first { $0.declaration.name == t.name }
                ?? TensorPayload(name: t.name, dtype: t.dtype, shape: t.shape, contents: .bytes(file.rawBytes(t.name)))
        }
        try SafetensorsFile.write(payloads, metadata: file.metadata, to: url)
        let size = (try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue
        #expect(size == record.fileSize, "the damaged file must keep its size to pass the store's own check")
        let store = try SpectrumStore(at: copy)
        #expect(store.identity == f.store.identity)
        return store
    }

    private func expectCompressRefuses(_ store: SpectrumStore, _ f: ArtifactFixture, mentioning text: String,
                                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let record = try #require(store.record(named: try target(f)))
        do {
            try compress(store: store, plan: f.exactPlan, calibration: f.calibration, options: CompressionOptions(toolVersion: "test"),
                         to: f.url("never-\(UUID().uuidString)"))
            Issue.record("compress accepted a damaged store", sourceLocation: sourceLocation)
        } catch {
            guard case let .quantization(.store(.storeCorrupt(path, file, reason))) = error else {
                Issue.record("got \(error)", sourceLocation: sourceLocation)
                return
            }
            #expect(path == store.url.path && file == record.file, sourceLocation: sourceLocation)
            #expect(reason.contains(text), "\(reason)", sourceLocation: sourceLocation)
        }
    }
}
