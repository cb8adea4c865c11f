import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import Testing

@Suite struct AnalyzerResumeTests {
    /// One OpenBLAS thread, as the CLI runs: stores compared byte for byte must not depend on
    /// another suite changing the thread count between their runs.
    init() { BLASThreads.count = 1 }

    /// An interrupted run leaves a store later stages refuse; a rerun completes it, and the result
    /// is byte-identical to an uninterrupted run.
    @Test func interruptedRunResumesToTheSameStore() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        func analyzer(_ store: String) -> Analyzer {
            Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                     options: AnalysisOptions(), store: dir(store))
        }
        var finished = 0
        #expect(throws: CancellationError.self) {
            try analyzer("store").run(progress: { if case .matrixFinished = $0 { finished += 1 } }, shouldStop: { finished >= 3 })
        }
        #expect(finished == 3)
        #expect(throws: AnalysisError.self) { try SpectrumStore(at: dir("store")) }
        // What a kill during a manifest write leaves: the writer's temporary beside the manifest.
        let leftover = dir("store/.manifest.json.\(UUID().uuidString).tmp")
        try Data("{\"partial".utf8).write(to: leftover)
        var resumedFrom = -1
        try analyzer("store").run(progress: { event in
            if case let .started(matrices) = event { resumedFrom = matrices.filter(\.alreadyDone).count }
        })
        #expect(resumedFrom == 3)
        try analyzer("fresh").run()
        let resumed = try Data(contentsOf: dir("store/manifest.json")), fresh = try Data(contentsOf: dir("fresh/manifest.json"))
        #expect(resumed == fresh)
        #expect(!FileManager.default.fileExists(atPath: leftover.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir("store").path).sorted()
                == FileManager.default.contentsOfDirectory(atPath: dir("fresh").path).sorted())
    }

    /// A half-written matrix (its file damaged, or a stray temporary file) is detected and redone.
    @Test func damagedMatrixFileIsRedone() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        let analyzer = Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                options: AnalysisOptions(), store: dir("store"))
        let first = try analyzer.run()
        let record = first.matrices[2]
        let file = dir("store").appendingPathComponent(record.file!)
        let original = try Data(contentsOf: file)
        var damaged = original
        damaged[damaged.count - 3] ^= 0xFF
        try damaged.write(to: file)
        try Data("partial".utf8).write(to: dir("store/matrices/.00004.safetensors.tmp"))
        var redone: [String] = []
        let second = try analyzer.run(progress: { if case let .matrixStarted(_, _, name, _, _) = $0 { redone.append(name) } })
        #expect(redone == [record.name])
        #expect(try Data(contentsOf: file) == original)
        #expect(!FileManager.default.fileExists(atPath: dir("store/matrices/.00004.safetensors.tmp").path))
        #expect(second.identity == first.identity)
    }

    @Test func changedInputsInvalidateTheStore() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let paths = try writePair(in: dir.url)
        try Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                     options: AnalysisOptions(), store: dir("store")).run()
        // Other options.
        let otherOptions = Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                                    options: AnalysisOptions(maxRank: 5), store: dir("store"))
        #expect { try otherOptions.run() } throws: { error in
            guard case let .storeMismatch(_, reason) = error as? AnalysisError else { return false }
            return reason.contains("options")
        }
        // A different fine-tuned checkpoint (another seed) at the same path.
        let other = try writePair(in: dir("other"), seed: 99)
        try FileManager.default.removeItem(at: paths.finetuned)
        try FileManager.default.copyItem(at: other.finetuned, to: paths.finetuned)
        let changed = Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: paths.calibration,
                               options: AnalysisOptions(), store: dir("store"))
        #expect { try changed.run() } throws: { error in
            guard case let .storeMismatch(_, reason) = error as? AnalysisError else { return false }
            return reason.contains("fine-tuned checkpoint")
        }
        // Without the calibration it was made with.
        let noCalibration = Analyzer(base: paths.base, finetuned: paths.finetuned, calibration: nil,
                                     options: AnalysisOptions(), store: dir("store"))
        #expect(throws: AnalysisError.self) { try noCalibration.run() }
    }
}

@Suite struct AnalyzerBadInputTests {
    let dir = TemporaryDirectory()
    let w = (0..<24).map { Float($0) / 10 }

    func analyze(_ base: [(String, [Int], [Float])], _ finetuned: [(String, [Int], [Float])],
                 calibration: URL? = nil, options: AnalysisOptions = AnalysisOptions(), dtype: DType = .f32) throws -> SpectrumStore {
        try writeTensors(base, to: dir("b.safetensors"), dtype: dtype)
        try writeTensors(finetuned, to: dir("f.safetensors"))
        defer { try? FileManager.default.removeItem(at: dir("store")) }
        return try Analyzer(base: dir("b.safetensors"), finetuned: dir("f.safetensors"), calibration: calibration,
                            options: options, store: dir("store")).run()
    }

    func expectError(_ expected: AnalysisError, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        #expect(throws: expected, sourceLocation: sourceLocation) { try body() }
    }

    @Test func tensorOnOneSide() throws {
        defer { dir.cleanUp() }
        let q = ("m.layers.0.self_attn.q_proj.weight", [4, 6], w), k = ("m.layers.0.self_attn.k_proj.weight", [4, 6], w)
        expectError(.missingOnOneSide(tensor: k.0, presentIn: dir("f.safetensors").path, missingFrom: dir("b.safetensors").path)) {
            _ = try analyze([q], [q, k])
        }
        let store = try analyze([q], [q, k], options: AnalysisOptions(skipMismatched: true))
        #expect(store.matrices.map(\.name) == [q.0])
        #expect(store.manifest.skipped.map(\.name) == [k.0])
    }

    @Test func shapeMismatch() throws {
        defer { dir.cleanUp() }
        expectError(.shapeMismatch(tensor: "a.q_proj.weight", base: [4, 6], finetuned: [6, 4])) {
            _ = try analyze([("a.q_proj.weight", [4, 6], w)], [("a.q_proj.weight", [6, 4], w)])
        }
    }

    @Test func unsupportedDType() throws {
        defer { dir.cleanUp() }
        let ints = (0..<24).map { _ in UInt8(1) } + Array(repeating: 0, count: 72)
        try SafetensorsFile.write([TensorPayload(name: "a.q_proj.weight", dtype: .i32, shape: [4, 6], contents: .bytes(ints))],
                                  to: dir("b.safetensors"))
        try writeTensors([("a.q_proj.weight", [4, 6], w)], to: dir("f.safetensors"))
        #expect(throws: AnalysisError.unsupportedDType(tensor: "a.q_proj.weight", dtype: "I32", file: dir("b.safetensors").path)) {
            try Analyzer(base: dir("b.safetensors"), finetuned: dir("f.safetensors"), calibration: nil,
                         options: AnalysisOptions(), store: dir("store")).run()
        }
    }

    @Test func nonFiniteDelta() throws {
        defer { dir.cleanUp() }
        var bad = w
        bad[5] = .nan
        bad[7] = .infinity
        expectError(.nonFiniteDelta(tensor: "a.q_proj.weight", count: 2)) {
            _ = try analyze([("a.q_proj.weight", [4, 6], w)], [("a.q_proj.weight", [4, 6], bad)])
        }
    }

    @Test func nothingSelected() throws {
        defer { dir.cleanUp() }
        #expect(throws: AnalysisError.self) { _ = try analyze([("embed.weight", [4, 6], w)], [("embed.weight", [4, 6], w)]) }
        // Included explicitly, an embedding is analyzed (type "other").
        let store = try analyze([("embed.weight", [4, 6], w)], [("embed.weight", [4, 6], w.map { $0 * 2 })],
                                options: AnalysisOptions(include: ["^embed"]))
        #expect(store.matrices.first?.type == .other)
    }

    @Test func calibrationWidthMismatchAndMissingEntries() throws {
        defer { dir.cleanUp() }
        let q = ("m.q_proj.weight", [4, 6], w), k = ("m.k_proj.weight", [4, 6], w), v = ("m.v_proj.weight", [4, 6], w)
        let ft = [q, k, v].map { ($0.0, $0.1, $0.2.map { $0 + 0.5 }) }
        // q has an entry of the wrong width.
        try CalibrationSet.write([CalibrationEntry(module: "m.q_proj", gram: .identity(5), tokenCount: 3)], to: dir("c.safetensors"))
        expectError(.calibrationWidthMismatch(module: "m.q_proj", expected: 6, found: 5, file: dir("c.safetensors").path)) {
            _ = try analyze([q, k, v], ft, calibration: dir("c.safetensors"))
        }
        // q has an entry, k shares it by alias, v has none: every missing module is listed.
        try CalibrationSet.write([CalibrationEntry(module: "m.q_proj", gram: .identity(6), tokenCount: 3)],
                                 aliases: ["m.k_proj": "m.q_proj"], to: dir("c.safetensors"))
        expectError(.missingCalibration(modules: ["m.v_proj"], file: dir("c.safetensors").path)) {
            _ = try analyze([q, k, v], ft, calibration: dir("c.safetensors"))
        }
        try CalibrationSet.write([CalibrationEntry(module: "m.q_proj", gram: .identity(6), tokenCount: 3)],
                                 aliases: ["m.k_proj": "m.q_proj"], to: dir("c.safetensors"))
        let store = try analyze([q, k, v], ft, calibration: dir("c.safetensors"), options: AnalysisOptions(allowMissingCalibration: true))
        #expect(store.record(named: "m.v_proj.weight")?.calibration == .identityMissing)
        #expect(store.record(named: "m.k_proj.weight")?.calibrationEntry == "m.q_proj")
    }

    @Test func malformedCalibration() throws {
        defer { dir.cleanUp() }
        try SafetensorsFile.write([TensorPayload(name: "m.q_proj.gram", dtype: .f32, shape: [6, 6], contents: .floats(Array(repeating: 0, count: 36)))],
                                  to: dir("c.safetensors"))
        #expect(throws: AnalysisError.calibration(.missingCount(file: dir("c.safetensors").path, entry: "m.q_proj"))) {
            try CalibrationSet(url: dir("c.safetensors"))
        }
    }
}

@Suite struct SyntheticPairTests {
    @Test func sameSeedSameBytesOtherSeedOtherBytes() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let a = try writePair(in: dir("a"), seed: 4), b = try writePair(in: dir("b"), seed: 4), c = try writePair(in: dir("c"), seed: 5)
        for keyPath in [\SyntheticPair.Paths.base, \.finetuned] {
            let fa = try Data(contentsOf: a[keyPath: keyPath].appendingPathComponent("model.safetensors"))
            #expect(fa == (try Data(contentsOf: b[keyPath: keyPath].appendingPathComponent("model.safetensors"))))
            #expect(fa != (try Data(contentsOf: c[keyPath: keyPath].appendingPathComponent("model.safetensors"))))
        }
        #expect(try Data(contentsOf: a.calibration) == (try Data(contentsOf: b.calibration)))
        // Every tensor of the profile is there, in BF16, with the profile's shapes.
        let checkpoint = try Checkpoint(at: a.base)
        let profile = try tinyProfile()
        #expect(checkpoint.tensors.count == profile.expandedMatrices().count + profile.expandedTensors().count)
        #expect(checkpoint.tensors.allSatisfy { $0.info.dtype == .bf16 })
    }
}
