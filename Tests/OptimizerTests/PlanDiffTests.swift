import Testing
import ModelProfiles
@testable import Optimizer

@Suite struct PlanDiffTests {
    static func plan(_ preset: String, profile: String = "llama-2-7b", layers: Int = 2) throws -> Plan {
        let library = try ProfileLibrary.builtIn()
        return try planFromShapes(profile: try library.model(named: profile).scaled(by: 1.0 / 8, layers: layers),
                                  preset: try library.preset(named: preset), budget: .ratio(1.0 / 16), storage: StorageModel(),
                                  scope: .type, toolVersion: "test")
    }

    /// Two presets at one budget: every matrix differs, and the per-type storage adds up to each
    /// plan's total; a plan against itself differs nowhere.
    @Test func presetsDifferEverywhereAndTypesAddUp() throws {
        let a = try Self.plan("delta-come"), b = try Self.plan("single-3")
        let diff = try PlanDiff(a, b)
        #expect(diff.matrices.count == a.matrices.count)
        #expect(diff.matrices.map(\.name) == a.matrices.map(\.name))
        #expect(diff.types.reduce(0) { $0 + $1.a.storageBits } == a.totals.storageBits)
        #expect(diff.types.reduce(0) { $0 + $1.b.storageBits } == b.totals.storageBits)
        #expect(diff.types.reduce(0) { $0 + $1.parameters } * 16 == a.totals.denseBits)
        #expect(diff.types.allSatisfy { $0.a.predictedError == nil })  // shape-only plans predict nothing
        let same = try PlanDiff(a, a)
        #expect(same.matrices.isEmpty)
        #expect(same.types.map(\.a) == same.types.map(\.b))
    }

    /// Plans of different matrices are refused, naming the matrix and the plan that lacks it.
    @Test func plansOfOtherMatricesAreRefused() throws {
        let two = try Self.plan("delta-come"), three = try Self.plan("delta-come", layers: 3)
        #expect(throws: PlanFileError.invalid(file: "two.json", field: "matrices",
                                             reason: "has no matrix 'model.layers.2.self_attn.q_proj.weight', which three.json plans")) {
            try PlanDiff(two, three, a: "two.json", b: "three.json")
        }
        do { _ = try PlanDiff(three, two, a: "three.json", b: "two.json"); Issue.record("accepted") } catch {
            #expect(error.description.contains("two.json") && error.description.contains("layers.2"))
        }
    }
}
