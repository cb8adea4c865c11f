import Analysis
import Checkpoint
import Foundation
import LinearAlgebra
import Testing

/// Calibration files (Docs/calibration-format.md): what `CalibrationSet.write` writes reads back
/// exactly, version-1 files are unchanged byte for byte, and every violation has its own error.
@Suite struct CalibrationFormatTests {
    /// The streaming writer writes, entry by entry and in any order, the bytes `CalibrationSet.write`
    /// writes for the same format-1 entries.
    @Test func streamingWriterMatchesTheBatchWriter() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let g = SeededGenerator(seed: 3)
        let xa = Matrix<Float>.gaussian(rows: 6, columns: 4, using: g), xb = Matrix<Float>.gaussian(rows: 3, columns: 5, using: g)
        let entries = [CalibrationEntry(module: "l.q", gram: try multiply(xa, xa, transposeB: true), tokenCount: 4, inputs: xa),
                       CalibrationEntry(module: "l.down", gram: try multiply(xb, xb, transposeB: true), tokenCount: 5)]
        let aliases = ["l.k": "l.q", "l.v": "l.q"]
        try CalibrationSet.write(entries, aliases: aliases, to: dir("batch.safetensors"))
        let writer = try CalibrationWriter(url: dir("stream.safetensors"), entries: [
            CalibrationWriter.Layout(module: "l.q", width: 6, inputRows: 4), CalibrationWriter.Layout(module: "l.down", width: 3, inputRows: 0),
        ], aliases: aliases)
        try writer.write(entries[1])
        try writer.write(entries[0])
        try writer.finish()
        #expect(try Data(contentsOf: dir("stream.safetensors")) == Data(contentsOf: dir("batch.safetensors")))
    }

    /// A v2 file with every kind of statistic — full and diagonal H, inputs, full and diagonal G,
    /// gradient rows for an entry and for an aliased module — reads back bit for bit.
    @Test func version2RoundTrip() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let g = SeededGenerator(seed: 11)
        let (hIn, hOut, n) = (5, 3, 4)
        let x = Matrix<Float>.gaussian(rows: hIn, columns: n, using: g)
        let h = try multiply(x, x, transposeB: true)
        let gq = Matrix<Float>.gaussian(rows: hOut, columns: n, using: g), gk = Matrix<Float>.gaussian(rows: hOut, columns: n, using: g)
        let outQ = try multiply(gq, gq, transposeB: true)
        let diagonalK: [Float] = (0..<hOut).map { Float($0) + 0.5 }
        let diagonalD: [Float] = (0..<7).map { Float($0) * 2 + 1 }
        let metadata = CalibrationMetadata(probes: 2, objective: .nextTokenFisher,
                                           samples: CalibrationSamples(rows: n, tokens: 40, probes: 2, seed: 9), source: "unit test ✓")
        try CalibrationSet.write(
            [CalibrationEntry(module: "l.q", gram: h, tokenCount: 40, inputs: x, outputGram: .full(outQ), grads: gq),
             CalibrationEntry(module: "l.down", gram: .diagonal(diagonalD), tokenCount: 40)],
            outputs: [CalibrationOutputs(module: "l.k", outputGram: .diagonal(diagonalK), grads: gk)],
            aliases: ["l.k": "l.q"], metadata: metadata, to: dir("c.safetensors"))

        let raw = try SafetensorsFile(contentsOf: dir("c.safetensors"))
        #expect(raw.metadata[CalibrationSet.formatKey] == "2")
        #expect(try raw.info("l.down.gram").shape == [7] && raw.info("l.k.out_gram").shape == [3])
        #expect(try raw.info("l.q.grads").shape == [n, hOut] && raw.info("l.q.inputs").shape == [n, hIn])

        let set = try CalibrationSet(url: dir("c.safetensors"))
        #expect(set.formatVersion == 2 && set.metadata == metadata)
        #expect(set.aliases == ["l.k": "l.q"])
        #expect(set.entryNames == ["l.down", "l.q"] && set.moduleNames == ["l.down", "l.k", "l.q"])
        #expect(set.entry(for: "l.k") == "l.q" && set.entry(for: "l.v") == nil)
        #expect(try set.gram(ofEntry: "l.q") == h && !set.gramIsDiagonal(ofEntry: "l.q"))
        #expect(set.gramIsDiagonal(ofEntry: "l.down") && set.width(ofEntry: "l.down") == 7 && set.tokenCount(ofEntry: "l.down") == 40)
        #expect(try set.gramDiagonal(ofEntry: "l.down") == diagonalD)
        #expect(try set.gram(ofEntry: "l.down") == Matrix(diagonal: diagonalD))
        #expect(try set.gramDiagonal(ofEntry: "l.q") == (0..<hIn).map { h[$0, $0] })
        #expect(try set.inputs(ofEntry: "l.q") == x && set.inputs(ofEntry: "l.down") == nil)
        #expect(try set.outputGram(ofModule: "l.q") == outQ)
        #expect(try set.outputGram(ofModule: "l.k") == Matrix(diagonal: diagonalK))
        #expect(try set.outputGram(ofModule: "l.down") == nil)
        #expect(set.outputWidth(ofModule: "l.k") == hOut && set.outputWidth(ofModule: "l.down") == nil)
        let pq = try #require(try set.pairedSamples(ofModule: "l.q")), pk = try #require(try set.pairedSamples(ofModule: "l.k"))
        #expect(pq.inputs == x && pq.grads == gq && pk.inputs == x && pk.grads == gk)
        #expect(try set.pairedSamples(ofModule: "l.down") == nil)
        #expect(set.statistics(ofModule: "l.q") == CalibrationStatistics(inputGram: .full, outputGram: .full, pairedRows: n))
        #expect(set.statistics(ofModule: "l.k") == CalibrationStatistics(inputGram: .full, outputGram: .diagonal, pairedRows: n))
        #expect(set.statistics(ofModule: "l.down") == CalibrationStatistics(inputGram: .diagonal, outputGram: .absent, pairedRows: 0))
        #expect(set.statistics(ofModule: "l.q")?.objective == .paired && set.statistics(ofModule: "l.down")?.objective == .activation)

        let summary = CalibrationSummary(set)
        #expect(summary.objective == .activation)  // l.down has H only
        #expect(summary.modules.map(\.module) == ["l.down", "l.k", "l.q"])
        let k = summary.modules[1]
        #expect(k.aliasOf == "l.q" && k.inputWidth == hIn && k.outputWidth == hOut && k.tokens == 40 && k.inputRows == n)
        #expect(k.gram == .full && k.outputGram == .diagonal && k.gradRows == n)
        #expect(summary.modules[0].gram == .diagonal && summary.modules[0].outputGram == .absent && summary.modules[0].gradRows == nil)
        #expect(try JSONDecoder().decode(CalibrationSummary.self, from: Data(summary.json().utf8)) == summary)
        let text = summary.text()
        #expect(text.contains("format 2") && text.contains("next-token-fisher") && text.contains("unit test ✓") && text.contains("seed 9"))
    }

    /// Without format-2 statistics the writer produces the version-1 bytes: the header spelled out
    /// here by hand (tensors sorted by name, 8-byte padding, data ordered by element size).
    @Test func version1FilesAreUnchangedByteForByte() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try CalibrationSet.write([CalibrationEntry(module: "m", gram: Matrix(diagonal: [1, 2]), tokenCount: 3)],
                                 aliases: ["k": "m"], to: dir("c.safetensors"))
        var header = #"{"__metadata__":{"deltaplan.aliases":"{\"k\":\"m\"}"},"#
            + #""m.count":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"#
            + #""m.gram":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#
        header += String(repeating: " ", count: (8 - header.utf8.count % 8) % 8)
        let floats: [Float] = [1, 0, 0, 2]
        let expected = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) } + Array(header.utf8)
            + withUnsafeBytes(of: Int64(3).littleEndian) { Array($0) } + floats.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian) { Array($0) } }
        #expect(try [UInt8](Data(contentsOf: dir("c.safetensors"))) == expected)
        let set = try CalibrationSet(url: dir("c.safetensors"))
        #expect(set.formatVersion == 1 && set.metadata.isEmpty && set.statistics(ofModule: "k")?.inputGram == .full)
    }

    /// What the Python companion writes without sensitivities: format 2, samples with probes 0, an
    /// F64 Gram, no output statistics.
    @Test func companionFileWithoutSensitivities() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try SafetensorsFile.write(BadCalibration.valid(), metadata: [
            CalibrationSet.formatKey: "2", CalibrationSet.samplesKey: #"{"rows": 4, "tokens": 10, "probes": 0, "seed": 0}"#,
            CalibrationSet.sourceKey: "deltaplan-model capture",
        ], to: dir("c.safetensors"))
        let set = try CalibrationSet(url: dir("c.safetensors"))
        #expect(set.metadata.samples == CalibrationSamples(rows: 4, tokens: 10, probes: 0, seed: 0))
        #expect(set.statistics(ofModule: "m.q")?.objective == .activation)
    }

    @Test(arguments: BadCalibration.cases)
    func invalidFileIsRefused(_ bad: BadCalibration) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        var tensors = Dictionary(uniqueKeysWithValues: BadCalibration.valid(version2: true).map { ($0.declaration.name, $0) })
        var metadata = BadCalibration.validMetadata
        bad.edit(&tensors, &metadata)
        let url = dir("c.safetensors")
        try SafetensorsFile.write(tensors.values.sorted { $0.declaration.name < $1.declaration.name }, metadata: metadata, to: url)
        #expect(throws: AnalysisError.calibration(bad.expected(url.path))) { try CalibrationSet(url: url) }
        #expect(bad.expected(url.path).description.contains(url.path))
    }

    /// The unedited file of `invalidFileIsRefused` opens: each case breaks exactly one thing.
    @Test func validFixtureOpens() throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        try SafetensorsFile.write(BadCalibration.valid(version2: true), metadata: BadCalibration.validMetadata, to: dir("c.safetensors"))
        let set = try CalibrationSet(url: dir("c.safetensors"))
        #expect(set.moduleNames == ["m.d", "m.k", "m.q"] && set.pairedRows(ofModule: "m.k") == 4)
    }

    @Test(arguments: ["m.q.gram", "m.q.inputs", "m.q.out_gram", "m.k.grads"])
    func nonFiniteValuesAreFoundWhenRead(tensor: String) throws {
        let dir = TemporaryDirectory()
        defer { dir.cleanUp() }
        let tensors = BadCalibration.valid(version2: true).map { p -> TensorPayload in
            guard p.declaration.name == tensor, case let .floats(values) = p.contents else { return p }
            var bad = values
            bad[values.count - 1] = tensor.hasSuffix("grads") ? .infinity : .nan
            return TensorPayload(name: tensor, dtype: p.declaration.dtype, shape: p.declaration.shape, contents: .floats(bad))
        }
        let url = dir("c.safetensors")
        try SafetensorsFile.write(tensors, metadata: BadCalibration.validMetadata, to: url)
        let set = try CalibrationSet(url: url)  // opening reads no values
        let module = String(tensor.split(separator: ".").prefix(2).joined(separator: "."))
        #expect(throws: AnalysisError.calibration(.nonFinite(file: url.path, entry: module, tensor: tensor))) {
            switch tensor {
            case "m.q.gram": _ = try set.gram(ofEntry: "m.q")
            case "m.q.inputs": _ = try set.inputs(ofEntry: "m.q")
            case "m.q.out_gram": _ = try set.outputGram(ofModule: "m.q")
            default: _ = try set.pairedSamples(ofModule: "m.k")
            }
        }
    }
}

/// A valid calibration file broken in one way, and the error it must give.
struct BadCalibration: Sendable, CustomTestStringConvertible {
    let label: String
    let edit: @Sendable (inout [String: TensorPayload], inout [String: String]) -> Void
    let expected: @Sendable (String) -> CalibrationError

    var testDescription: String { label }

    static func f32(_ name: String, _ shape: [Int], dtype: DType = .f32) -> TensorPayload {
        let count = shape.reduce(1, *)
        return TensorPayload(name: name, dtype: dtype, shape: shape, contents: .floats((0..<count).map { Float($0 % 7) + 1 }))
    }

    /// An integer tensor with every element `value`, little-endian in `dtype`.
    static func count(_ name: String, _ value: Int64, dtype: DType = .i64, shape: [Int] = [1]) -> TensorPayload {
        let element = (0..<dtype.byteSize).map { UInt8(truncatingIfNeeded: value >> (8 * Int64($0))) }
        return TensorPayload(name: name, dtype: dtype, shape: shape,
                             contents: .bytes(Array(repeatElement(element, count: shape.reduce(1, *)).joined())))
    }

    /// Entry `m.q` (h_in 3, 4 input rows), `m.d` (diagonal F64 H, no rows); with version 2, `m.q`
    /// has a full G and gradient rows (h_out 2), and `m.k` (aliased to `m.q`) a diagonal G and rows.
    static func valid(version2: Bool = false) -> [TensorPayload] {
        var tensors = [f32("m.q.gram", [3, 3]), count("m.q.count", 10), f32("m.q.inputs", [4, 3])]
        if version2 {
            tensors += [f32("m.d.gram", [3], dtype: .f64), count("m.d.count", 10), f32("m.q.out_gram", [2, 2]), f32("m.q.grads", [4, 2]),
                        f32("m.k.out_gram", [2], dtype: .f64), f32("m.k.grads", [4, 2])]
        }
        return tensors
    }

    static let validMetadata = [
        CalibrationSet.formatKey: "2", CalibrationSet.aliasesKey: #"{"m.k": "m.q"}"#, CalibrationSet.probesKey: "2",
        CalibrationSet.objectiveKey: "hidden-gauss-newton", CalibrationSet.samplesKey: #"{"rows": 4, "tokens": 10, "probes": 2, "seed": 5}"#,
        CalibrationSet.sourceKey: "hand-built",
    ]

    static func tensor(_ label: String, _ payload: TensorPayload, _ expected: @escaping @Sendable (String) -> CalibrationError) -> BadCalibration {
        BadCalibration(label: label, edit: { t, _ in t[payload.declaration.name] = payload }, expected: expected)
    }

    static func removing(_ label: String, _ name: String, _ expected: @escaping @Sendable (String) -> CalibrationError) -> BadCalibration {
        BadCalibration(label: label, edit: { t, _ in t[name] = nil }, expected: expected)
    }

    static func metadata(_ label: String, _ key: String, _ value: String?, _ expected: @escaping @Sendable (String) -> CalibrationError) -> BadCalibration {
        BadCalibration(label: label, edit: { _, m in m[key] = value }, expected: expected)
    }

    static let cases: [BadCalibration] = [
        metadata("format 3", CalibrationSet.formatKey, "3") { .unsupportedFormatVersion(file: $0, found: 3, supported: 2) },
        metadata("format 'two'", CalibrationSet.formatKey, "two") { .invalidFormatVersion(file: $0, value: "two") },
        metadata("format 0", CalibrationSet.formatKey, "0") { .invalidFormatVersion(file: $0, value: "0") },
        BadCalibration(label: "diagonal H in a version-1 file", edit: { t, m in
            m = [:]
            t = ["m.d.gram": f32("m.d.gram", [3]), "m.d.count": count("m.d.count", 1)]
        }, expected: { .needsFormat2(file: $0, tensor: "m.d.gram") }),
        BadCalibration(label: "output Gram in a version-1 file", edit: { t, m in
            m = [:]
            t = ["m.q.gram": f32("m.q.gram", [3, 3]), "m.q.count": count("m.q.count", 1), "m.q.out_gram": f32("m.q.out_gram", [2, 2])]
        }, expected: { .needsFormat2(file: $0, tensor: "m.q.out_gram") }),
        tensor("no module name", f32(".gram", [2, 2])) { .emptyModuleName(file: $0, tensor: ".gram") },
        tensor("BF16 gram", f32("m.q.gram", [3, 3], dtype: .bf16)) {
            .wrongDType(file: $0, entry: "m.q", tensor: "m.q.gram", dtype: "BF16", expected: "F32 or F64")
        },
        tensor("F64 inputs", f32("m.q.inputs", [4, 3], dtype: .f64)) {
            .wrongDType(file: $0, entry: "m.q", tensor: "m.q.inputs", dtype: "F64", expected: "F32")
        },
        tensor("F16 grads", f32("m.k.grads", [4, 2], dtype: .f16)) {
            .wrongDType(file: $0, entry: "m.k", tensor: "m.k.grads", dtype: "F16", expected: "F32")
        },
        tensor("F16 output Gram", f32("m.q.out_gram", [2, 2], dtype: .f16)) {
            .wrongDType(file: $0, entry: "m.q", tensor: "m.q.out_gram", dtype: "F16", expected: "F32 or F64")
        },
        tensor("I32 count", count("m.q.count", 1, dtype: .i32, shape: [2])) {
            .wrongDType(file: $0, entry: "m.q", tensor: "m.q.count", dtype: "I32", expected: "I64")
        },
        tensor("non-square gram", f32("m.q.gram", [3, 2])) {
            .wrongShape(file: $0, entry: "m.q", tensor: "m.q.gram", shape: [3, 2], expected: "a square [h_in, h_in] matrix or its [h_in] diagonal, h_in ≥ 1")
        },
        tensor("3-D gram", f32("m.q.gram", [3, 3, 1])) {
            .wrongShape(file: $0, entry: "m.q", tensor: "m.q.gram", shape: [3, 3, 1], expected: "a square [h_in, h_in] matrix or its [h_in] diagonal, h_in ≥ 1")
        },
        tensor("two counts", count("m.q.count", 1, shape: [2])) {
            .wrongShape(file: $0, entry: "m.q", tensor: "m.q.count", shape: [2], expected: "one element ([1])")
        },
        tensor("inputs of another width", f32("m.q.inputs", [4, 2])) {
            .wrongShape(file: $0, entry: "m.q", tensor: "m.q.inputs", shape: [4, 2], expected: "[n, 3], n ≥ 1")
        },
        tensor("non-square output Gram", f32("m.q.out_gram", [2, 3])) {
            .wrongShape(file: $0, entry: "m.q", tensor: "m.q.out_gram", shape: [2, 3],
                        expected: "a square [h_out, h_out] matrix or its [h_out] diagonal, h_out ≥ 1")
        },
        tensor("1-D grads", f32("m.k.grads", [8])) {
            .wrongShape(file: $0, entry: "m.k", tensor: "m.k.grads", shape: [8], expected: "[n, h_out], n ≥ 1, h_out ≥ 1")
        },
        removing("no count", "m.q.count") { .missingCount(file: $0, entry: "m.q") },
        tensor("count 0", count("m.q.count", 0)) { .invalidCount(file: $0, entry: "m.q", count: 0) },
        tensor("inputs without gram", f32("m.x.inputs", [4, 3])) { .orphanTensor(file: $0, entry: "m.x", tensor: "m.x.inputs") },
        tensor("count without gram", count("m.x.count", 1)) { .orphanTensor(file: $0, entry: "m.x", tensor: "m.x.count") },
        metadata("aliases not an object", CalibrationSet.aliasesKey, "[1]") {
            .invalidMetadata(file: $0, key: CalibrationSet.aliasesKey, reason: "must be a JSON object of module names to module names")
        },
        metadata("probes 0", CalibrationSet.probesKey, "0") {
            .invalidMetadata(file: $0, key: CalibrationSet.probesKey, reason: "must be a positive integer, got '0'")
        },
        metadata("unknown objective", CalibrationSet.objectiveKey, "fisher") {
            .invalidMetadata(file: $0, key: CalibrationSet.objectiveKey, reason: "must be one of hidden-gauss-newton, next-token-fisher, got 'fisher'")
        },
        metadata("samples without seed", CalibrationSet.samplesKey, #"{"rows": 4, "tokens": 10, "probes": 2}"#) {
            .invalidMetadata(file: $0, key: CalibrationSet.samplesKey, reason: samplesReason(#"{"rows": 4, "tokens": 10, "probes": 2}"#))
        },
        metadata("fractional samples", CalibrationSet.samplesKey, #"{"rows": 4.5, "tokens": 10, "probes": 2, "seed": 1}"#) {
            .invalidMetadata(file: $0, key: CalibrationSet.samplesKey, reason: samplesReason(#"{"rows": 4.5, "tokens": 10, "probes": 2, "seed": 1}"#))
        },
        metadata("negative samples", CalibrationSet.samplesKey, #"{"rows": -1, "tokens": 10, "probes": 2, "seed": 1}"#) {
            .invalidMetadata(file: $0, key: CalibrationSet.samplesKey, reason: samplesReason(#"{"rows": -1, "tokens": 10, "probes": 2, "seed": 1}"#))
        },
        metadata("samples' probes differ", CalibrationSet.samplesKey, #"{"rows": 4, "tokens": 10, "probes": 3, "seed": 1}"#) {
            .invalidMetadata(file: $0, key: CalibrationSet.samplesKey, reason: "probes 3 differs from deltaplan.probes 2")
        },
        metadata("samples' rows differ", CalibrationSet.samplesKey, #"{"rows": 5, "tokens": 10, "probes": 2, "seed": 1}"#) {
            .invalidMetadata(file: $0, key: CalibrationSet.samplesKey, reason: "rows 5, but m.k.grads has 4 rows")
        },
        metadata("alias shadows an entry", CalibrationSet.aliasesKey, #"{"m.d": "m.q", "m.k": "m.q"}"#) {
            .aliasShadowsEntry(file: $0, module: "m.d", target: "m.q")
        },
        metadata("alias to a missing entry", CalibrationSet.aliasesKey, #"{"m.k": "m.nothing"}"#) {
            .aliasToMissingEntry(file: $0, module: "m.k", target: "m.nothing")
        },
        metadata("alias chain", CalibrationSet.aliasesKey, #"{"m.k": "m.q", "m.v": "m.k"}"#) {
            .aliasChain(file: $0, module: "m.v", target: "m.k", next: "m.q")
        },
        metadata("output Gram without H", CalibrationSet.aliasesKey, nil) {
            .outputStatisticsWithoutGram(file: $0, module: "m.k", tensor: "m.k.out_gram")
        },
        BadCalibration(label: "grads without any H", edit: { t, m in
            m[CalibrationSet.aliasesKey] = nil
            t["m.k.out_gram"] = nil
        }, expected: { .gradsWithoutInputs(file: $0, module: "m.k", tensor: "m.k.grads") }),
        BadCalibration(label: "grads without input rows", edit: { t, _ in
            t["m.d.grads"] = f32("m.d.grads", [4, 2])
        }, expected: { .gradsWithoutInputs(file: $0, module: "m.d", tensor: "m.d.grads") }),
        tensor("grads wider than the output Gram", f32("m.q.grads", [4, 3])) {
            .outputWidthMismatch(file: $0, module: "m.q", tensor: "m.q.grads", columns: 3, outputGramWidth: 2)
        },
        tensor("grads of an alias with other rows", f32("m.k.grads", [5, 2])) {
            .sampleRowMismatch(file: $0, module: "m.k", tensor: "m.k.grads", rows: 5, inputs: "m.q.inputs", inputRows: 4)
        },
    ]

    static func samplesReason(_ text: String) -> String {
        #"must be a JSON object {"rows": n, "tokens": N, "probes": P, "seed": s} of non-negative integers, got '"# + text + "'"
    }
}
