import Checkpoint
import ContentHash
import Foundation
import ModelProfiles
import Testing
@testable import Optimizer

@Suite struct PlanFileTests {
    /// Llama-2-7B scaled by 1/8 with 2 layers: 512×512 attention, 1376×512 / 512×1376 MLP.
    static func smallPlan(seed: UInt64 = 7) throws -> Plan {
        let library = try ProfileLibrary.builtIn()
        let profile = try library.model(named: "llama-2-7b").scaled(by: 1.0 / 8, layers: 2)
        return try planFromShapes(profile: profile, preset: library.preset(named: "delta-come"), budget: .ratio(1.0 / 16),
                                  storage: StorageModel(), scope: .type, seed: seed, toolVersion: "0.1.0")
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("planio-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func roundTripAndByteIdenticalOutput() throws {
        let plan = try Self.smallPlan()
        let again = try Self.smallPlan()
        #expect(try plan.encoded() == again.encoded())
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.json"), b = dir.appendingPathComponent("b.json")
        try plan.write(to: a)
        try again.write(to: b)
        try again.write(to: b)  // overwriting works (rename over an existing file)
        #expect(try Data(contentsOf: a) == Data(contentsOf: b))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["a.json", "b.json"])  // no temp left
        let read = try Plan.read(from: a)
        #expect(read == plan)
        #expect(try read.encoded() == plan.encoded())
        // A different seed gives a different file.
        #expect(try Self.smallPlan(seed: 8).encoded() != plan.encoded())
    }

    /// Two writers of one plan file in one process (issue #12: a pid-only temporary name made them
    /// collide): both succeed, the file is one of the two plans, and no temporary file is left.
    @Test func concurrentWritersOfOnePlanFile() async throws {
        let plans = [try Self.smallPlan(seed: 7), try Self.smallPlan(seed: 8)]
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("plan.json")
        for _ in 0..<8 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for plan in plans + plans { group.addTask { try plan.write(to: url) } }
                try await group.waitForAll()
            }
            #expect(try plans.contains(Plan.read(from: url)))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["plan.json"])
        }
    }

    /// A plan that cannot be written names its file; nothing is left behind.
    @Test func unwritablePlanNamesItsFile() throws {
        let dir = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("missing/plan.json")
        let error = #expect(throws: PlanFileError.self) { try Self.smallPlan().write(to: url) }
        guard case let .unwritable(file, _)? = error else {
            Issue.record("expected unwritable, got \(String(describing: error))")
            return
        }
        #expect(file == url.path)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == [])
    }

    @Test func fieldsAndNullsAreWritten() throws {
        let plan = try Self.smallPlan()
        let object = try #require(JSONSerialization.jsonObject(with: plan.encoded()) as? [String: Any])
        #expect(object["formatVersion"] as? Int == Plan.currentFormatVersion)
        let matrices = try #require(object["matrices"] as? [[String: Any]])
        #expect(matrices.count == 14)
        #expect(matrices[0]["predictedError"] is NSNull)
        // Format 2's fields are written whether or not they apply.
        #expect(object["overrides"] is NSNull)
        #expect(matrices[0]["pin"] is NSNull && matrices[0]["bits"] is NSNull && matrices[0]["dense"] as? Bool == false)
        #expect(matrices[0]["shape"] as? [Int] == [512, 512])
        let source = try #require(object["source"] as? [String: Any])
        #expect(source["kind"] as? String == "profile")
        #expect((source["hash"] as? String)?.count == 64)
        let totals = try #require(object["totals"] as? [String: Any])
        #expect(totals["predictedRelativeError"] is NSNull)
        // Shape-only: nothing measured, no segment order; a plan written before orders existed
        // (no key at all) reads as nil too.
        #expect(object["segmentOrder"] is NSNull)
        var old = object
        old["segmentOrder"] = nil
        #expect(try Plan.decode(JSONSerialization.data(withJSONObject: old), file: "old.json").segmentOrder == nil)
        var measured = plan
        measured.segmentOrder = .paper
        #expect(try Plan.decode(measured.encoded(), file: "p.json").segmentOrder == .paper)
        // The quantizer likewise: null when nothing was measured, absent in older plans, kept when given.
        #expect(object["quantizer"] is NSNull)
        old["quantizer"] = nil
        #expect(try Plan.decode(JSONSerialization.data(withJSONObject: old), file: "old.json").quantizer == nil)
        measured.quantizer = .init(method: "rtn", dampening: 0.05)
        #expect(try Plan.decode(measured.encoded(), file: "p.json").quantizer == .init(method: "rtn", dampening: 0.05))
        // Totals are consistent with the matrices: α = storage / (16 · parameters).
        let storage = plan.matrices.reduce(0) { $0 + $1.storageBits }
        let parameters = plan.matrices.reduce(0) { $0 + $1.shape[0] * $1.shape[1] }
        #expect(plan.totals.storageBits == storage)
        #expect(plan.totals.storageBytes == (storage + 7) / 8)
        #expect(abs(plan.totals.alpha - Double(storage) / Double(16 * parameters)) < 1e-15)
        #expect(abs(plan.totals.bitsPerParameter - 16 * plan.totals.alpha) < 1e-12)
        #expect(plan.totals.storageBits <= plan.budget.bits)
    }

    @Test func rejectsWrongVersionAndMissingFields() throws {
        let good = try #require(JSONSerialization.jsonObject(with: Self.smallPlan().encoded()) as? [String: Any])
        func data(_ o: [String: Any]) throws -> Data { try JSONSerialization.data(withJSONObject: o) }

        var v3 = good
        v3["formatVersion"] = 3
        #expect(throws: PlanFileError.unsupportedVersion(file: "p.json", found: 3, supported: 2)) {
            try Plan.decode(data(v3), file: "p.json")
        }
        // A format-1 plan (written before pins: no `overrides`, `dense`, `pin`, `bits`) still reads,
        // as the same plan; one that claims format 1 but has format 2's fields does not.
        var v1 = good
        v1["formatVersion"] = 1
        v1["overrides"] = nil
        v1["matrices"] = try #require(good["matrices"] as? [[String: Any]]).map { m in
            m.filter { !["dense", "pin", "bits"].contains($0.key) }
        }
        var old = try Plan.decode(data(v1), file: "v1.json")
        #expect(old.formatVersion == 1)
        old.formatVersion = Plan.currentFormatVersion
        #expect(old == (try Self.smallPlan()))
        var v1Pinned = good
        v1Pinned["formatVersion"] = 1
        v1Pinned["overrides"] = ["pins": [["pattern": "q_proj", "spec": "drop"]], "bitsFor": []]
        #expect(throws: PlanFileError.invalid(file: "p.json", field: "formatVersion",
                                              reason: "1 has no pins, bits-for rules or dense matrices (formatVersion 2 added them)")) {
            try Plan.decode(data(v1Pinned), file: "p.json")
        }
        var noVersion = good
        noVersion["formatVersion"] = nil
        #expect(throws: PlanFileError.invalid(file: "p.json", field: "formatVersion", reason: "missing")) {
            try Plan.decode(data(noVersion), file: "p.json")
        }
        var noTotals = good
        noTotals["totals"] = nil
        #expect(throws: PlanFileError.invalid(file: "p.json", field: "totals", reason: "missing")) {
            try Plan.decode(data(noTotals), file: "p.json")
        }
        var noStorage = good
        var matrices = try #require(good["matrices"] as? [[String: Any]])
        matrices[3]["storageBits"] = nil
        noStorage["matrices"] = matrices
        do {
            _ = try Plan.decode(data(noStorage), file: "p.json")
            Issue.record("accepted a matrix without storageBits")
        } catch {
            #expect(String(describing: error).contains("matrices"))
            #expect(String(describing: error).contains("storageBits"))
            #expect(String(describing: error).contains("p.json"))
        }
        var gap = good
        var m2 = try #require(good["matrices"] as? [[String: Any]])
        m2[0]["segments"] = [["start": 0, "end": 2, "bits": 8], ["start": 3, "end": 10, "bits": 3]]
        gap["matrices"] = m2
        #expect(throws: PlanFileError.invalid(file: "p.json", field: "matrices[0].segments[1].start",
                                              reason: "must be 2 (segments are consecutive from 0)")) {
            try Plan.decode(data(gap), file: "p.json")
        }
        // A matrix planned twice (its storage counted twice in the totals, so only the name is wrong).
        var twice = good
        var m3 = try #require(good["matrices"] as? [[String: Any]])
        m3.append(m3[1])
        twice["matrices"] = m3
        var totals = try #require(good["totals"] as? [String: Any])
        totals["storageBits"] = try #require(totals["storageBits"] as? Int) + (try #require(m3[1]["storageBits"] as? Int))
        twice["totals"] = totals
        let name = try #require(m3[1]["name"] as? String)
        #expect(throws: PlanFileError.invalid(file: "p.json", field: "matrices[\(m3.count - 1)].name",
                                              reason: "\(name) is also matrices[1]; a matrix is planned once")) {
            try Plan.decode(data(twice), file: "p.json")
        }
        #expect(throws: PlanFileError.self) { try Plan.decode(Data("not json".utf8), file: "p.json") }
    }

    @Test func readingAMissingFileNamesIt() {
        do {
            _ = try Plan.read(from: URL(fileURLWithPath: "/nonexistent/plan.json"))
            Issue.record("read a missing file")
        } catch {
            #expect(error.description.contains("/nonexistent/plan.json"))
        }
    }

    /// A store plan: errors come from the error model. Two 4×3 matrices with σ = (3, 2, 1), g = 1,
    /// ‖ΔW X‖² = 14, eᵢ(8) = 0.01, eᵢ(3) = 0.2; preset 8×1 + 3×fill.
    @Test func storePlanRecordsPredictedErrors() throws {
        let spectrum = { (name: String, type: LayerType) in
            MatrixSpectrum(name: name, type: type, rows: 4, columns: 3, singularValues: [3, 2, 1], inputEnergy: [1, 1, 1],
                           activationEnergy: 14, weightEnergy: 14,
                           relativeQuantizationError: [8: [0.01, 0.01, 0.01], 3: [0.2, 0.2, 0.2]])
        }
        let models = [ErrorModel(spectrum("a", .attention)), ErrorModel(spectrum("m", .mlp))]
        let storage = StorageModel(accounting: .paper)
        // Budget per matrix (matrix scope, total 2·(8·7 + 3·7) = 154): 8·1·7 = 56 for vector 0, then
        // 3·7 = 21 per vector at 3 bits: ⌊(77 − 56)/21⌋ = 1. Allocation {8: 1, 3: 1}.
        let problem = PlanningProblem(models: models, storage: storage, budgetBits: 154, scope: .matrix, menu: [8, 3])
        let preset = PrecisionPreset(name: "p", description: "", segments: [.init(bits: 8, count: 1), .init(bits: 3, count: nil)])
        let plan = try makePlan(problem, strategy: .preset(preset), seed: 1, budget: .init(given: "154B", bits: 154),
                                source: .init(kind: "store", name: "s", hash: Digest.sha256(Array("manifest".utf8))),
                                toolVersion: "t")
        // Error: 9·0.01 + 4·0.2 + 1 (dropped) = 1.89 per matrix.
        for m in plan.matrices {
            #expect(m.segments == [Segment(start: 0, end: 1, bits: 8), Segment(start: 1, end: 2, bits: 3)])
            #expect(abs(try #require(m.predictedError) - 1.89) < 1e-12)
            #expect(abs(try #require(m.predictedRelativeError) - 1.89 / 14) < 1e-12)
            #expect(m.storageBits == 77)
        }
        #expect(abs(try #require(plan.totals.predictedError) - 3.78) < 1e-12)
        #expect(abs(try #require(plan.totals.predictedRelativeError) - 3.78 / 28) < 1e-12)
        #expect(plan.strategy == .init(name: "preset", preset: "p", seed: 1))
        var withGap = plan
        withGap.recordGap(toExactError: 3.5)
        #expect(abs(try #require(withGap.report.gapToExact).relative - 0.28 / 3.5) < 1e-12)
        let back = try Plan.decode(withGap.encoded(), file: "x")
        #expect(back == withGap)
    }

    /// FIPS 180-4 test vectors, for swift-crypto's SHA-256 (`Digest`) and the planner's own.
    @Test(arguments: [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256KnownVectors(message: String, digest: String) {
        #expect(Digest.sha256(Array(message.utf8)) == digest)
        #expect(sha256Hex(Array(message.utf8)) == digest)
    }

    /// The planner's SHA-256 agrees with swift-crypto's on every length around the 64-byte block
    /// and padding boundaries (55, 56, 63, 64, 119, 120, ...) and on random contents.
    @Test func sha256AgreesWithSwiftCrypto() {
        var rng = MersenneTwister(seed: 7)
        for length in 0...300 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next32()) }
            #expect(sha256Hex(bytes) == Digest.sha256(bytes), "length \(length)")
        }
    }
}
