import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import ModelProfiles
import Testing
import _GGUFTestSupport

/// `calibration import-imatrix`: llama.cpp GGUF imatrices (written here by a builder made from the
/// GGUF spec and llama.cpp's imatrix layout) become diagonal calibration files.
@Suite struct ImatrixImportTests {
    static let parts = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]

    /// Deterministic positive sums of squares.
    static func sums(_ n: Int, seed: UInt64) -> [Float] {
        let g = SeededGenerator(seed: seed)
        return (0..<n).map { _ in Float(abs(g.gaussian(sigma: 40))) + 1e-3 }
    }

    /// An imatrix of the tiny profile's one layer (h 64, MLP 172) and `output.weight`, as llama.cpp
    /// writes it: per weight `<w>.in_sum2` F32 [n], `<w>.counts` F32 [1] and, in newer files,
    /// `<w>.in_sum` F32 [n].
    static func builder(layers: Int = 1, count: Float = 512, extra: [GGUFBuilder.Tensor] = []) -> (GGUFBuilder, [String: [Float]]) {
        var tensors: [GGUFBuilder.Tensor] = [], expected: [String: [Float]] = [:]
        var seed: UInt64 = 1
        var weights = (0..<layers).flatMap { layer in parts.map { "blk.\(layer).\($0).weight" } }
        weights.append("output.weight")
        for weight in weights {
            let width = weight.contains("ffn_down") ? 172 : 64
            let values = sums(width, seed: seed)
            seed += 1
            expected[weight] = values
            tensors += [.f32(weight + ".in_sum2", values), .f32(weight + ".counts", [count]), .f32(weight + ".in_sum", [Float](repeating: 0.5, count: width))]
        }
        let builder = GGUFBuilder(metadata: [
            ("general.type", .string("imatrix")),
            ("imatrix.datasets", .array(elementType: 8, [.string("wiki.train.raw")])),
            ("imatrix.chunk_count", .uint32(4)), ("imatrix.chunk_size", .uint32(128)),
        ], tensors: tensors + extra)
        return (builder, expected)
    }

    static func write(_ builder: GGUFBuilder, to url: URL) throws { try Data(builder.bytes()).write(to: url) }

    @Test func namesMapToHuggingFaceModules() {
        #expect(ImatrixImport.moduleName(forWeight: "blk.0.attn_q.weight") == "model.layers.0.self_attn.q_proj")
        #expect(ImatrixImport.moduleName(forWeight: "blk.31.attn_output.weight") == "model.layers.31.self_attn.o_proj")
        #expect(ImatrixImport.moduleName(forWeight: "blk.7.ffn_down.weight") == "model.layers.7.mlp.down_proj")
        #expect(ImatrixImport.moduleName(forWeight: "blk.2.ffn_gate.weight") == "model.layers.2.mlp.gate_proj")
        #expect(ImatrixImport.moduleName(forWeight: "output.weight") == "lm_head")
        for unknown in ["blk.0.attn_qkv.weight", "blk.01.attn_q.weight", "blk.-1.attn_q.weight", "blk.0.attn_q", "token_embd.weight",
                        "blk.0.ffn_gate_exps.weight", "x.blk.0.attn_q.weight"] {
            #expect(ImatrixImport.moduleName(forWeight: unknown) == nil, "\(unknown)")
        }
    }

    /// Import → `CalibrationSet`: every gram is diagonal and equals in_sum2 bit for bit, counts are
    /// the token counts, the source names the dataset; the result analyzes the matching pair, with
    /// gᵢ = Σⱼ dⱼ vᵢⱼ² against a Float64 computation.
    @Test func roundTripAndAnalyze() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let (builder, expected) = Self.builder()
        try Self.write(builder, to: dir("imatrix.gguf"))
        let report = try ImatrixImport(source: dir("imatrix.gguf"), profile: try tinyProfile()).run(to: dir("calib.safetensors"))
        #expect(report.modules.count == 8 && report.skipped.isEmpty && report.tokens == 512)
        #expect(report.datasets == ["wiki.train.raw"] && report.chunkCount == 4 && report.chunkSize == 128)

        let set = try CalibrationSet(url: dir("calib.safetensors"))
        #expect(set.formatVersion == 2 && set.aliases.isEmpty)
        #expect(set.metadata.source == "llama.cpp imatrix imatrix.gguf (datasets: wiki.train.raw; 4 chunks of 128 tokens)")
        for (weight, sums) in expected {
            let module = try #require(ImatrixImport.moduleName(forWeight: weight))
            #expect(set.entry(for: module) == module)
            #expect(set.gramIsDiagonal(ofEntry: module) && set.tokenCount(ofEntry: module) == 512)
            #expect(try set.gramDiagonal(ofEntry: module).map(\.bitPattern) == sums.map(\.bitPattern), "\(weight)")
            #expect(set.statistics(ofModule: module) == CalibrationStatistics(inputGram: .diagonal, outputGram: .absent, pairedRows: 0))
        }
        #expect(try set.gram(ofEntry: "model.layers.0.mlp.down_proj") == Matrix(diagonal: expected["blk.0.ffn_down.weight"]!))

        let paths = try writePair(in: dir("pair"))
        let store = try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: dir("calib.safetensors"),
                                 options: AnalysisOptions(), store: dir("store")).run()
        #expect(store.manifest.supportedObjective == .activation)
        for record in store.matrices {
            #expect(record.statistics?.inputGram == .diagonal)
            let d = try set.gramDiagonal(ofEntry: record.calibrationEntry!).map(Double.init)
            let factors = try store.factors(of: record)
            for i in 0..<factors.storedRank {
                let reference = (0..<d.count).reduce(0.0) { $0 + d[$1] * Double(factors.v[$1, i]) * Double(factors.v[$1, i]) }
                #expect(relativeDifference(factors.inputEnergy[i], reference) < 1e-5, "\(record.name) g\(i)")
            }
        }
    }

    @Test func unknownNamesAreAnErrorOrSkippedAndListed() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let (builder, _) = Self.builder(extra: [.f32("blk.0.attn_qkv.weight.in_sum2", [1, 2]), .f32("blk.0.attn_qkv.weight.counts", [9]),
                                                .f32("rope_freqs", [1])])
        try Self.write(builder, to: dir("imatrix.gguf"))
        let path = dir("imatrix.gguf").path
        #expect(throws: AnalysisError.imatrix(.unknownNames(file: path, names: ["blk.0.attn_qkv.weight", "rope_freqs"]))) {
            try ImatrixImport(source: dir("imatrix.gguf")).run(to: dir("calib.safetensors"))
        }
        #expect(!FileManager.default.fileExists(atPath: dir("calib.safetensors").path))
        let report = try ImatrixImport(source: dir("imatrix.gguf"), skipUnknown: true).run(to: dir("calib.safetensors"))
        #expect(report.skipped == ["blk.0.attn_qkv.weight", "rope_freqs"] && report.modules.count == 8)
        #expect(try CalibrationSet(url: dir("calib.safetensors")).entryNames.count == 8)
    }

    /// One bad imatrix per import error.
    @Test func badImatricesAreRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let url = dir("imatrix.gguf"), path = url.path
        func expectError(_ builder: GGUFBuilder, profile: ModelProfile? = nil, skipUnknown: Bool = false, _ expected: ImatrixError,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
            try Self.write(builder, to: url)
            #expect(throws: AnalysisError.imatrix(expected), sourceLocation: sourceLocation) {
                try ImatrixImport(source: url, profile: profile, skipUnknown: skipUnknown).run(to: dir("calib.safetensors"))
            }
        }
        var notImatrix = Self.builder().0
        notImatrix.metadata[0] = ("general.type", .string("model"))
        try expectError(notImatrix, .notAnImatrix(file: path, type: "model"))
        notImatrix.metadata.removeFirst()
        try expectError(notImatrix, .notAnImatrix(file: path, type: nil))

        var noCounts = Self.builder().0
        noCounts.tensors.removeAll { $0.name == "blk.0.attn_k.weight.counts" }
        try expectError(noCounts, .incompleteEntry(file: path, weight: "blk.0.attn_k.weight", missing: ".counts"))
        var noSums = Self.builder().0
        noSums.tensors.removeAll { $0.name == "blk.0.attn_k.weight.in_sum2" }
        try expectError(noSums, .incompleteEntry(file: path, weight: "blk.0.attn_k.weight", missing: ".in_sum2"))

        let experts = GGUFBuilder(metadata: [("general.type", .string("imatrix"))], tensors: [
            .f32("blk.0.ffn_gate_exps.weight.in_sum2", [Float](repeating: 1, count: 64 * 8), dimensions: [64, 8]),
            .f32("blk.0.ffn_gate_exps.weight.counts", [Float](repeating: 3, count: 8), dimensions: [1, 8]),
        ])
        try expectError(experts, skipUnknown: true, .mixtureOfExperts(file: path, tensor: "blk.0.ffn_gate_exps.weight.in_sum2", experts: 8))

        func single(_ sums: GGUFBuilder.Tensor, _ counts: GGUFBuilder.Tensor = .f32("blk.0.attn_q.weight.counts", [10])) -> GGUFBuilder {
            GGUFBuilder(metadata: [("general.type", .string("imatrix"))], tensors: [sums, counts])
        }
        let half = GGUFBuilder.Tensor(name: "blk.0.attn_q.weight.in_sum2", dimensions: [2], type: 1, data: [0, 0x3C, 0, 0x3C])
        try expectError(single(half), .wrongType(file: path, tensor: "blk.0.attn_q.weight.in_sum2", type: "F16"))
        try expectError(single(.f32("blk.0.attn_q.weight.in_sum2", [1, 2, 3, 4], dimensions: [2, 1, 2])),
                        .wrongShape(file: path, tensor: "blk.0.attn_q.weight.in_sum2", dimensions: [2, 1, 2], expected: "[n_embd] or [n_embd, n_mat]"))
        try expectError(single(.f32("blk.0.attn_q.weight.in_sum2", [1, 2]), .f32("blk.0.attn_q.weight.counts", [0])),
                        .invalidCount(file: path, tensor: "blk.0.attn_q.weight.counts", value: 0))
        try expectError(single(.f32("blk.0.attn_q.weight.in_sum2", [1, -2])),
                        .invalidSum(file: path, tensor: "blk.0.attn_q.weight.in_sum2", index: 1, value: -2))
        try expectError(single(.f32("blk.0.attn_q.weight.in_sum2", [.infinity, 2])),
                        .invalidSum(file: path, tensor: "blk.0.attn_q.weight.in_sum2", index: 0, value: .infinity))
        try expectError(single(.f32("blk.0.attn_q.weight.in_sum2", [1, 2])), profile: try tinyProfile(),
                        .widthMismatch(file: path, tensor: "blk.0.attn_q.weight.in_sum2", module: "model.layers.0.self_attn.q_proj",
                                       expected: 64, found: 2, profile: try tinyProfile().name))
        try expectError(Self.builder(layers: 2).0, profile: try tinyProfile(),
                        .notInProfile(file: path, tensor: "blk.1.attn_k.weight.in_sum2", module: "model.layers.1.self_attn.k_proj",
                                      profile: try tinyProfile().name))
        let onlyUnknown = GGUFBuilder(metadata: [("general.type", .string("imatrix"))], tensors: [
            .f32("blk.0.attn_qkv.weight.in_sum2", [1]), .f32("blk.0.attn_qkv.weight.counts", [1]),
        ])
        try expectError(onlyUnknown, skipUnknown: true, .nothingImported(file: path))

        let bert = try ProfileLibrary.builtIn().model(named: "bert-base")
        #expect(throws: AnalysisError.imatrix(.profileNotSupported(profile: "bert-base", family: "bert"))) {
            try ImatrixImport(source: url, profile: bert).run(to: dir("calib.safetensors"))
        }
        // GGUF errors pass through with the file named.
        var broken = Self.builder().0
        broken.magic = Array("GGUX".utf8)
        try Self.write(broken, to: url)
        #expect(throws: AnalysisError.gguf(.badMagic(path: path, found: Array("GGUX".utf8)))) {
            try ImatrixImport(source: url).run(to: dir("calib.safetensors"))
        }
    }
}
