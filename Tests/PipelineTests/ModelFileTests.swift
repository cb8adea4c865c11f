import ArtifactFormat
import Checkpoint
import ContentHash
import Foundation
import Optimizer
import Testing
@testable import Pipeline

/// The fine-tuned model's non-tensor files: compress stores them, the reader verifies them, merge
/// writes them byte for byte.
@Suite struct ModelFileTests {
    /// Compress records exactly the carried files (names, sizes, SHA-256 of the originals) and
    /// stores them byte for byte under `model-files/`; the stray files are left out.
    @Test func compressRecordsTheModelFiles() throws {
        let f = try ArtifactFixture.get()
        let a = try Artifact(at: f.exactArtifact)
        #expect(a.manifest.formatVersion == ArtifactManifest.currentFormatVersion)
        let records = try #require(a.manifest.modelFiles)
        #expect(records.map(\.name) == f.modelFiles.keys.sorted())
        let folder = a.url.appendingPathComponent("model-files")
        for r in records {
            let original = try Data(contentsOf: f.paths.finetuned.appendingPathComponent(r.name))
            #expect(original == f.modelFiles[r.name], "\(r.name)")
            #expect(r.size == original.count, "\(r.name)")
            #expect(r.sha256 == Digest.sha256(original), "\(r.name)")
            #expect(try Data(contentsOf: folder.appendingPathComponent(r.name)) == original, "\(r.name)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted() == f.modelFiles.keys.sorted())
        // The delta file says which format it belongs to.
        let delta = try SafetensorsFile(contentsOf: a.url.appendingPathComponent("delta.safetensors"))
        #expect(delta.metadata["deltaplan.artifact.format"] == String(ArtifactManifest.currentFormatVersion))
    }

    /// Merge writes every model file byte-identical to the fine-tuned original, nothing from the
    /// base directory (its config.json differs) and none of the stray files.
    @Test func mergeWritesTheModelFilesByteForByte() throws {
        let f = try ArtifactFixture.get()
        let a = try Artifact(at: f.exactArtifact)
        let out = f.url("merged-files-\(UUID().uuidString)")
        let summary = try merge(base: f.paths.base, artifact: a, to: out)
        #expect(summary.modelFiles == f.modelFiles.keys.sorted())
        for name in f.modelFiles.keys {
            #expect(try Data(contentsOf: out.appendingPathComponent(name)) == Data(contentsOf: f.paths.finetuned.appendingPathComponent(name)),
                    "\(name)")
        }
        let baseConfig = try Data(contentsOf: f.paths.base.appendingPathComponent("config.json"))
        #expect(try Data(contentsOf: out.appendingPathComponent("config.json")) != baseConfig)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == (f.modelFiles.keys + ["model.safetensors"]).sorted())
        // No temporary directory left beside it.
        let siblings = try FileManager.default.contentsOfDirectory(atPath: out.deletingLastPathComponent().path)
        #expect(!siblings.contains { $0.hasPrefix(".\(out.lastPathComponent)") })
    }

    /// A fine-tuned directory without model files gives an empty list (format 2: present, empty),
    /// no `model-files/` folder, and a merge of weights only.
    @Test func aFineTunedDirectoryWithoutModelFiles() throws {
        let f = try ArtifactFixture.get()
        let a = try Artifact(at: f.presetArtifact)
        #expect(a.manifest.modelFiles == [])
        #expect(!FileManager.default.fileExists(atPath: a.url.appendingPathComponent("model-files").path))
        let out = f.url("merged-nofiles-\(UUID().uuidString)")
        let summary = try merge(base: f.paths.base, artifact: a, to: out)
        #expect(summary.modelFiles.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["model.safetensors"])
    }

    /// A single-file fine-tuned checkpoint (the `.safetensors` path) carries nothing, though its
    /// directory holds model files. The plan keeps no vectors, so compress only carries tensors.
    @Test func aSingleFileFineTunedCheckpointCarriesNothing() throws {
        let f = try ArtifactFixture.get()
        var plan = f.exactPlan
        for i in plan.matrices.indices {
            plan.matrices[i].segments = []
            plan.matrices[i].storageBits = 0
        }
        plan.totals.storageBits = 0
        let file = f.paths.finetuned.appendingPathComponent(Checkpoint.singleFileName)
        let manifest = try compress(store: f.store, plan: plan, calibration: f.calibration,
                                    options: CompressionOptions(finetuned: file, toolVersion: "test"),
                                    to: f.url("single-\(UUID().uuidString)"))
        #expect(manifest.modelFiles == [])
        #expect(try ModelFiles.collect(in: file).isEmpty)
        #expect(try ModelFiles.collect(in: f.paths.finetuned).map(\.name) == f.modelFiles.keys.sorted())
    }
}

/// `ModelFiles.collect`: which entries of a directory are carried, and which links are followed.
@Suite struct ModelFileCollectionTests {
    func directory(_ name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("deltaplan-modelfiles-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func write(_ text: String, _ url: URL) throws { try Data(text.utf8).write(to: url) }

    /// The allowlist: names and suffixes carried; hidden files, weights, indexes, adapter and
    /// training files, subfolders left out.
    @Test func theRuleSelectsTheModelFilesOnly() throws {
        let dir = try directory("rule")
        defer { try? FileManager.default.removeItem(at: dir) }
        let carried = ["added_tokens.json", "chat_template.json", "config.json", "configuration_x.py", "merges.txt",
                       "preprocessor_config.json", "qwen.tiktoken", "sentencepiece.bpe.model", "spiece.model", "vocab.json", "vocab.txt"]
        let left = [".config.json", ".x.py", "adapter_config.json", "adapter_model.safetensors", "model.safetensors",
                    "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json", "optimizer.pt",
                    "README.md", "trainer_state.json", "training_args.bin", "x.model"]
        for name in carried + left { try write(name, dir.appendingPathComponent(name)) }
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("tokenizer"), withIntermediateDirectories: true)
        try write("{}", dir.appendingPathComponent("tokenizer/tokenizer.json"))
        let found = try ModelFiles.collect(in: dir)
        #expect(found.map(\.name) == carried)
        for name in carried { #expect(ModelFiles.carries(name), "\(name)") }
        for name in left { #expect(!ModelFiles.carries(name), "\(name)") }
    }

    /// A link to a file inside the directory is followed (the target's bytes are carried under the
    /// link's name); a link out of it, a broken link, a folder or a FIFO with a carried name, and a
    /// file over the size cap are errors naming the file.
    @Test func linksInsideAreFollowedAndEverythingElseIsRefused() throws {
        let dir = try directory("links"), outside = try directory("outside")
        defer { try? FileManager.default.removeItem(at: dir); try? FileManager.default.removeItem(at: outside) }
        let fm = FileManager.default
        try fm.createDirectory(at: dir.appendingPathComponent("real"), withIntermediateDirectories: true)
        try write("{\"vocab\": 1}", dir.appendingPathComponent("real/vocab.json"))
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("vocab.json").path, withDestinationPath: "real/vocab.json")
        let found = try ModelFiles.collect(in: dir)
        #expect(found.map(\.name) == ["vocab.json"])
        #expect(found.first?.url.resolvingSymlinksInPath().path == dir.appendingPathComponent("real/vocab.json").resolvingSymlinksInPath().path)

        func expectRefused(_ name: String, _ text: String, maxFileBytes: Int = ModelFiles.maxFileBytes,
                           sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try ModelFiles.collect(in: dir, maxFileBytes: maxFileBytes)
                Issue.record("collected \(name)", sourceLocation: sourceLocation)
            } catch {
                guard case let .modelFile(path, _) = error else { Issue.record("unexpected \(error)", sourceLocation: sourceLocation); return }
                #expect(path.hasSuffix("/" + name), sourceLocation: sourceLocation)
                #expect(error.description.contains(text), "\(error)", sourceLocation: sourceLocation)
            }
        }
        let secret = outside.appendingPathComponent("secret")
        try write("not a model file", secret)
        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("config.json").path, withDestinationPath: secret.path)
        expectRefused("config.json", "outside the checkpoint directory")
        try fm.removeItem(at: dir.appendingPathComponent("config.json"))

        try fm.createSymbolicLink(atPath: dir.appendingPathComponent("config.json").path, withDestinationPath: "nowhere.json")
        expectRefused("config.json", "broken symbolic link")
        try fm.removeItem(at: dir.appendingPathComponent("config.json"))

        try fm.createDirectory(at: dir.appendingPathComponent("tokenizer.json"), withIntermediateDirectories: true)
        expectRefused("tokenizer.json", "not a regular file")
        try fm.removeItem(at: dir.appendingPathComponent("tokenizer.json"))

        #expect(mkfifo(dir.appendingPathComponent("merges.txt").path, 0o600) == 0)
        expectRefused("merges.txt", "not a regular file")
        try fm.removeItem(at: dir.appendingPathComponent("merges.txt"))

        expectRefused("vocab.json", "more than the 8", maxFileBytes: 8)
    }

    /// A Hugging Face hub cache snapshot: every file is a link to `<repo>/blobs/`, which is followed;
    /// a link elsewhere is still refused.
    @Test func hubCacheSnapshotsAreFollowedIntoTheirBlobs() throws {
        let cache = try directory("hub"), outside = try directory("hub-outside")
        defer { try? FileManager.default.removeItem(at: cache); try? FileManager.default.removeItem(at: outside) }
        let fm = FileManager.default
        let repo = cache.appendingPathComponent("models--org--tuned")
        let snapshot = repo.appendingPathComponent("snapshots/0123abcd")
        try fm.createDirectory(at: repo.appendingPathComponent("blobs"), withIntermediateDirectories: true)
        try fm.createDirectory(at: snapshot, withIntermediateDirectories: true)
        try write("{\"model_type\": \"llama\"}", repo.appendingPathComponent("blobs/9f86d08"))
        try fm.createSymbolicLink(atPath: snapshot.appendingPathComponent("config.json").path, withDestinationPath: "../../blobs/9f86d08")
        let found = try ModelFiles.collect(in: snapshot)
        #expect(found.map(\.name) == ["config.json"])
        #expect(try Data(contentsOf: try #require(found.first).url) == Data("{\"model_type\": \"llama\"}".utf8))

        try write("elsewhere", outside.appendingPathComponent("t"))
        try fm.createSymbolicLink(atPath: snapshot.appendingPathComponent("tokenizer.json").path,
                                  withDestinationPath: outside.appendingPathComponent("t").path)
        #expect(throws: ArtifactError.self) { try ModelFiles.collect(in: snapshot) }
    }
}

extension ArtifactRejectionTests {
    /// A model file changed, missing, shortened, replaced by a link, or an extra file in
    /// `model-files/`: the reader names the file.
    @Test(arguments: ["flipped", "missing", "truncated", "link", "extra"])
    func damagedModelFileIsRejectedByName(damage: String) throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "modelfile-\(damage)-\(UUID().uuidString)")
        let file = copy.appendingPathComponent("model-files/tokenizer.model")
        var bytes = try Data(contentsOf: file)
        var name = "model-files/tokenizer.model"
        switch damage {
        case "flipped":
            bytes[1000] ^= 0x01
            try bytes.write(to: file)
        case "missing": try FileManager.default.removeItem(at: file)
        case "truncated": try bytes.dropLast().write(to: file)
        case "link":
            // Same bytes, but a link (to a copy outside the artifact) instead of a file.
            let target = f.url("linked-\(UUID().uuidString)")
            try bytes.write(to: target)
            try FileManager.default.removeItem(at: file)
            try FileManager.default.createSymbolicLink(atPath: file.path, withDestinationPath: target.path)
        default:
            name = "model-files/adapter_config.json"
            try Data("{}".utf8).write(to: copy.appendingPathComponent(name))
        }
        try expectCorrupt(copy, mentioning: name)
    }

    /// Model file names that could escape `model-files/` or the merged directory, or replace its
    /// weights, are refused.
    @Test(arguments: ["../config.json", "sub/config.json", ".hidden", "model.safetensors", "model.safetensors.index.json", ""])
    func unsafeModelFileNamesAreRejected(name: String) throws {
        let f = try ArtifactFixture.get()
        let copy = try f.copy(f.exactArtifact, as: "unsafe-name-\(UUID().uuidString)")
        try rewriteManifest(copy) { m in m.modelFiles?[0].name = name }
        try expectCorrupt(copy, mentioning: "is not a plain file name")
    }

    /// Format 1 (before model files) is still read and merged, to the same weights, with no model
    /// files; a format-1 manifest that lists model files, a format-2 one without the list, and
    /// format 3 are refused.
    @Test func formatOneArtifactsStillMerge() throws {
        let f = try ArtifactFixture.get()
        let v1 = try f.copy(f.exactArtifact, as: "v1-\(UUID().uuidString)")
        try FileManager.default.removeItem(at: v1.appendingPathComponent("model-files"))
        // The delta file of a format-1 artifact says "1" in its metadata.
        let deltaURL = v1.appendingPathComponent("delta.safetensors")
        let delta = try SafetensorsFile(contentsOf: deltaURL)
        var metadata = delta.metadata
        metadata["deltaplan.artifact.format"] = "1"
        let payloads = try delta.tensors.map {
            TensorPayload(name: $0.name, dtype: $0.dtype, shape: $0.shape, contents: .bytes(try delta.rawBytes($0.name)))
        }
        try SafetensorsFile.write(payloads, metadata: metadata, to: deltaURL)
        try rewriteManifest(v1) { m in
            m.formatVersion = 1
            m.modelFiles = nil
            m.delta.sha256 = try Digest.sha256(fileAt: deltaURL)
            m.delta.size = (try FileManager.default.attributesOfItem(atPath: deltaURL.path)[.size] as! NSNumber).intValue
        }
        let manifestText = try String(contentsOf: v1.appendingPathComponent("manifest.json"), encoding: .utf8)
        #expect(!manifestText.contains("modelFiles"))

        let a = try Artifact(at: v1)
        #expect(a.manifest.formatVersion == 1 && a.manifest.modelFiles == nil)
        let out1 = f.url("merged-v1-\(UUID().uuidString)"), out2 = f.url("merged-v2-\(UUID().uuidString)")
        let summary = try merge(base: f.paths.base, artifact: a, to: out1)
        #expect(summary.modelFiles.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out1.path) == ["model.safetensors"])
        try merge(base: f.paths.base, artifact: try Artifact(at: f.exactArtifact), to: out2)
        #expect(try Data(contentsOf: out1.appendingPathComponent("model.safetensors")) == Data(contentsOf: out2.appendingPathComponent("model.safetensors")))

        let listed = try f.copy(v1, as: "v1-listed-\(UUID().uuidString)")
        try rewriteManifest(listed) { m in m.modelFiles = [] }
        try expectCorrupt(listed, mentioning: "formatVersion 1 has no modelFiles")
        let unlisted = try f.copy(f.exactArtifact, as: "v2-unlisted-\(UUID().uuidString)")
        try rewriteManifest(unlisted) { m in m.modelFiles = nil }
        try expectCorrupt(unlisted, mentioning: "modelFiles is missing")
        // Format 2 (before dense matrices) still reads; a version after this build's is refused.
        let v2 = try f.copy(f.exactArtifact, as: "v2-\(UUID().uuidString)")
        try rewriteManifest(v2) { m in m.formatVersion = 2 }
        #expect(try Artifact(at: v2).manifest.formatVersion == 2)
        let v4 = try f.copy(f.exactArtifact, as: "v4-\(UUID().uuidString)")
        try rewriteManifest(v4) { m in m.formatVersion = 4 }
        try expectCorrupt(v4, mentioning: "formatVersion 4")
    }
}
