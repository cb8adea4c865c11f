import Foundation
import Testing
@testable import ModelProfiles

@Suite struct ProfileLibraryTests {
    @Test func builtInProfilesLoad() throws {
        let lib = try ProfileLibrary.builtIn()
        for name in ["llama-2-7b", "llama-2-13b", "mistral-7b-v0.1", "llama-3-8b", "bert-base"] {
            _ = try lib.model(named: name)
        }
        for name in ["delta-come", "single-2", "single-3", "single-4", "single-8", "low-rank"] {
            _ = try lib.preset(named: name)
        }
        #expect(throws: ProfileError.self) { try lib.model(named: "gpt-5") }
    }

    @Test func llama2SevenBHas224ProjectionsOfTheRightShapes() throws {
        let m = try ProfileLibrary.builtIn().model(named: "llama-2-7b").expandedMatrices()
        #expect(m.count == 224)
        #expect(m.filter { $0.type == .attention }.allSatisfy { $0.rows == 4096 && $0.columns == 4096 })
        let mlp = m.filter { $0.type == .mlp }
        #expect(mlp.filter { $0.rows == 11008 && $0.columns == 4096 }.count == 64)
        #expect(mlp.filter { $0.rows == 4096 && $0.columns == 11008 }.count == 32)
        // 6.74 B parameters in all for Llama-2-7B; the projections are 6.48 B of them.
        let params = m.reduce(0) { $0 + $1.rows * $1.columns }
        #expect(params == 32 * (4 * 4096 * 4096 + 3 * 11008 * 4096))
        #expect(m[0].name == "model.layers.0.self_attn.q_proj.weight")
        #expect(m[0].inputGroup == "model.layers.0.self_attn.attention")
        #expect(m[1].inputGroup == m[0].inputGroup)   // q and k share their input
        #expect(m[3].inputGroup != m[0].inputGroup)   // o_proj reads the attention output
    }

    @Test func groupedQueryProfilesHaveNarrowKeyValueProjections() throws {
        let lib = try ProfileLibrary.builtIn()
        for name in ["llama-3-8b", "mistral-7b-v0.1"] {
            let k = try lib.model(named: name).expandedMatrices().filter { $0.name.hasSuffix("k_proj.weight") }
            #expect(k.count == 32 && k.allSatisfy { $0.rows == 1024 && $0.columns == 4096 })
        }
    }

    @Test func scalingKeepsEqualDimensionsEqual() throws {
        let p = try ProfileLibrary.builtIn().model(named: "llama-3-8b").scaled(by: 1.0 / 64, layers: 2)
        let m = p.expandedMatrices()
        #expect(m.count == 14)
        #expect(m[0].rows == 64 && m[0].columns == 64)
        #expect(m[1].rows == 16)
        #expect(m[4].rows == 224)
    }

    @Test func invalidFilesNameTheFieldAtFault() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("profiles-\(UUID())")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("models"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("presets"), withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let preset = dir.appendingPathComponent("presets/bad.json")
        try #"{"name": "bad", "description": "", "segments": [{"bits": 2, "count": 4}, {"bits": 8}]}"#
            .write(to: preset, atomically: true, encoding: .utf8)
        #expect(throws: ProfileError.invalid(file: preset.path, field: "segments[1].bits",
                                             reason: "bit-widths must not increase along the singular index")) {
            try ProfileLibrary(directory: dir)
        }
        try #"{"name": "bad", "description": "", "segments": [{"bits": 5}]}"#
            .write(to: preset, atomically: true, encoding: .utf8)
        #expect(throws: ProfileError.self) { try ProfileLibrary(directory: dir) }
        try FileManager.default.removeItem(at: preset)
        let model = dir.appendingPathComponent("models/m.json")
        try #"{"name": "m", "description": "", "family": "x", "layers": 2, "dtype": "F32", "matrices": [{"name": "w", "type": "attention", "input": "a"}], "tensors": []}"#
            .write(to: model, atomically: true, encoding: .utf8)
        #expect(throws: ProfileError.invalid(file: model.path, field: "matrices[0].shape", reason: "missing")) {
            try ProfileLibrary(directory: dir)
        }
    }
}

@Suite struct MatrixNameTests {
    /// Every built-in profile's matrices read back as their layer and their template's kind.
    @Test func profileNamesGiveTheirLayerAndKind() throws {
        for model in try ProfileLibrary.builtIn().models {
            for m in model.scaled(by: 1, layers: 3).expandedMatrices() {
                let name = MatrixName(m.name)
                #expect(name.layer == m.layer, "\(m.name)")
                #expect(name.template + ".weight" == m.name.replacingOccurrences(of: ".\(m.layer).", with: ".{layer}."))
                #expect(m.name.hasSuffix(".\(name.kind).weight"))
            }
        }
    }

    @Test func namesWithoutALayerAreTheirOwnKind() {
        let embeddings = MatrixName("model.embed_tokens.weight")
        #expect(embeddings.layer == nil && embeddings.kind == "model.embed_tokens" && embeddings.template == "model.embed_tokens")
        #expect(MatrixName("lm_head.weight").kind == "lm_head")
        #expect(MatrixName("weight").kind == "weight")
        // Only the first number is the layer; an expert's index stays in the kind.
        let expert = MatrixName("model.layers.7.mlp.experts.3.w1.weight")
        #expect(expert.layer == 7 && expert.kind == "mlp.experts.3.w1")
        // A number as the last component is no layer.
        #expect(MatrixName("blocks.12").layer == nil)
    }

    @Test func shortLabelsAreTheShortestDistinctSuffixes() {
        #expect(MatrixName.shortLabels(["self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"]) == ["q_proj", "k_proj", "down_proj"])
        #expect(MatrixName.shortLabels(["attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense"])
                == ["query", "attention.output.dense", "intermediate.dense", "output.dense"])
        #expect(MatrixName.shortLabels(["a.x", "b.x"]) == ["a.x", "b.x"])
    }
}
