import Foundation
import Testing
@testable import Optimizer

/// Hostile plan files (issue #12, item 4; Fuzz/run.sh fuzzes `Plan.decode`): numbers whose sums
/// or products overflow, group sizes that overflow ⌈n/g⌉ downstream, overlapping segments,
/// predicted errors that are negative or not finite. Each is `PlanFileError.invalid` naming the
/// file and the field, never a trap.
@Suite struct HostilePlanTests {
    /// The JSON object of a valid plan, to damage.
    func validObject() throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: PlanFileTests.smallPlan().encoded()) as? [String: Any])
    }

    func expectInvalid(_ object: [String: Any], field: String, mentioning text: String,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        try expectInvalid(JSONSerialization.data(withJSONObject: object), field: field, mentioning: text, sourceLocation: sourceLocation)
    }

    func expectInvalid(_ data: Data, field: String, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let error = #expect(throws: PlanFileError.self, sourceLocation: sourceLocation) { try Plan.decode(data, file: "hostile.json") }
        guard case let .invalid(file, found, reason)? = error else {
            Issue.record("got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(file == "hostile.json" && found == field, "\(found): \(reason)", sourceLocation: sourceLocation)
        #expect(reason.contains(text), "\(reason)", sourceLocation: sourceLocation)
    }

    /// Reviewed while writing the fuzz harness: a plan with groupSize = Int.max validated, then
    /// trapped in `compress` and `Artifact(at:)`, where ⌈h_in / g⌉ = (h_in + g − 1) / g overflows.
    @Test("A group size beyond 2²⁰ (Int.max overflowed ⌈n/g⌉ downstream)", arguments: [0, -128, (1 << 20) + 1, Int.max])
    func groupSize(_ value: Int) throws {
        var plan = try validObject()
        plan["groupSize"] = value
        try expectInvalid(plan, field: "groupSize", mentioning: "must be in 1…1048576, got \(value)")
    }

    @Test("Shapes whose dense bits 16 · h_out · h_in overflow")
    func hugeShape() throws {
        var plan = try validObject()
        var matrices = try #require(plan["matrices"] as? [[String: Any]])
        matrices[2]["shape"] = [1 << 32, 1 << 31]  // 2⁶³ parameters
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[2].shape", mentioning: "too large")
        // Each fits, their sum does not: reported at the matrix that overflows it.
        matrices[2]["shape"] = [1 << 29, 1 << 29]  // 16 · 2⁵⁸ = 2⁶²
        matrices[3]["shape"] = [1 << 29, 1 << 29]
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[3].shape", mentioning: "overflows 64 bits")
    }

    /// Found by review: the matrices' storage bits were summed with `+`, which traps on overflow.
    @Test("Storage bits whose sum overflows")
    func storageBitsOverflow() throws {
        var plan = try validObject()
        var matrices = try #require(plan["matrices"] as? [[String: Any]])
        matrices[0]["storageBits"] = Int.max
        matrices[1]["storageBits"] = Int.max
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[1].storageBits", mentioning: "overflow")
    }

    @Test("Overlapping segments")
    func overlappingSegments() throws {
        var plan = try validObject()
        var matrices = try #require(plan["matrices"] as? [[String: Any]])
        matrices[0]["segments"] = [["start": 0, "end": 4, "bits": 8], ["start": 2, "end": 6, "bits": 3]]
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[0].segments[1].start", mentioning: "must be 4")
    }

    @Test("Negative or zero dimensions and negative storage bits")
    func negativeNumbers() throws {
        var plan = try validObject()
        var matrices = try #require(plan["matrices"] as? [[String: Any]])
        let good = matrices[1]
        matrices[1]["shape"] = [-512, 512]
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[1].shape", mentioning: "two positive dimensions")
        matrices[1] = good
        matrices[1]["storageBits"] = -1
        plan["matrices"] = matrices
        try expectInvalid(plan, field: "matrices[1].storageBits", mentioning: "negative")
    }

    /// Negative predictions are read: under the paired objective a matrix's predicted error is a
    /// sample estimate that can dip below zero, and `compress` must take the plans `plan` writes
    /// (the companion's capture → plan → compress loop makes such plans).
    @Test("Predicted errors that are negative are read as written")
    func negativePredictions() throws {
        var plan = try validObject()
        var matrices = try #require(plan["matrices"] as? [[String: Any]])
        matrices[0]["predictedError"] = -1.5
        plan["matrices"] = matrices
        let decoded = try Plan.decode(try JSONSerialization.data(withJSONObject: plan), file: "negative.json")
        #expect(decoded.matrices[0].predictedError == -1.5)
    }

    /// JSON has no NaN or ∞; a literal too large for a Double is the nearest a file gets.
    @Test("A predicted error too large for a Double is refused")
    func infinitePrediction() throws {
        let text = String(decoding: try JSONSerialization.data(withJSONObject: validObject(), options: [.sortedKeys]), as: UTF8.self)
        let hostile = text.replacingOccurrences(of: #""predictedError":null"#, with: #""predictedError":1e999"#)
        #expect(hostile != text)
        do {
            _ = try Plan.decode(Data(hostile.utf8), file: "hostile.json")
            Issue.record("accepted a predicted error of 1e999")
        } catch {
            // Foundation's decoder refuses the literal as invalid JSON (naming no field or position:
            // its error carries none), before any check of ours sees an infinite value.
            guard case let .invalid(file, field, reason) = error else { Issue.record("got \(error)"); return }
            #expect(file == "hostile.json" && field == "" && reason.contains("not valid JSON"), "\(error)")
        }
    }
}
